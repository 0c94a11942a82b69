//! Queries to the server outside the binlog stream: binlog position,
//! column catalog for servers without full row metadata, GTID sets.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::errors::{classify, grant_hint};
use super::schema::{CatalogColumn, CatalogTable};
use crate::event::Connector;
use crate::source::SourceError;

pub(crate) async fn master_status(
    conn: &mut Conn,
    connector: Connector,
) -> Result<(String, u64), SourceError> {
    // MySQL 8.4 renamed SHOW MASTER STATUS.
    let row: Result<Option<mysql_async::Row>, _> = conn.query_first("SHOW MASTER STATUS").await;
    let row = match row {
        Ok(r) => r,
        Err(_) => conn
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .map_err(|e| classify("reading the binlog position", e))?,
    };
    let row = row.ok_or_else(|| {
        SourceError::definite(format!(
            "the server reports no binlog position (is log_bin on?); GRANT {} to the tidemark user",
            grant_hint(connector)
        ))
    })?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    match (file, pos) {
        (Some(f), Some(p)) => Ok((f, p)),
        _ => Err(SourceError::definite("unreadable SHOW MASTER STATUS row")),
    }
}

pub(super) async fn load_catalog(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<CatalogTable, SourceError> {
    let rows: Vec<(String, String, Option<String>, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(|e| classify("reading information_schema.COLUMNS", e))?;
    Ok(CatalogTable {
        columns: rows
            .into_iter()
            .map(|(name, ty, charset, key)| CatalogColumn {
                name,
                unsigned: ty.contains("unsigned"),
                labels: parse_labels(&ty),
                charset,
                primary_key: key == "PRI",
            })
            .collect(),
    })
}

/// A MySQL GTID set (`uuid:1-100:200,uuid2:5`) for COM_BINLOG_DUMP_GTID.
pub(super) fn parse_gtid_set(
    text: &str,
) -> Result<Vec<mysql_common::packets::Sid<'static>>, SourceError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            part.parse::<mysql_common::packets::Sid<'static>>()
                .map_err(|e| {
                    SourceError::definite(format!(
                        "source.start.gtid {part:?} is not a MySQL GTID set (uuid:first-last[:first-last...]): {e}"
                    ))
                })
        })
        .collect()
}

/// Labels of `enum('a','b''c')` / `set(...)` column types.
fn parse_labels(ty: &str) -> Vec<String> {
    let Some(inner) = ty
        .strip_prefix("enum(")
        .or_else(|| ty.strip_prefix("set("))
        .and_then(|s| s.strip_suffix(')'))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '\'') => quoted = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                quoted = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, c) => cur.push(c),
            (false, _) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_gtid_sets() {
        let sids = parse_gtid_set(
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:11-18, 3e11fa47-71ca-11e1-9e33-c80aa9429563:7",
        )
        .unwrap();
        assert_eq!(sids.len(), 2);
        assert_eq!(sids[0].intervals().len(), 2);
        assert!(parse_gtid_set("0-1-100").is_err());
        assert!(parse_gtid_set("not-a-uuid:1").is_err());
    }

    #[test]
    fn enum_labels_from_column_type() {
        assert_eq!(parse_labels("enum('a','b''c','')"), vec!["a", "b'c", ""]);
        assert_eq!(parse_labels("set('x')"), vec!["x"]);
        assert!(parse_labels("int(11)").is_empty());
    }
}
