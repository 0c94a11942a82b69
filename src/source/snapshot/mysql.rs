//! Reading MySQL/MariaDB chunks consistently.
//!
//! MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` makes the read
//! view without any lock; the binlog point it matches is bounded (see
//! [`mariadb_snapshot`]) and the reconciler settles the transactions in
//! between. MySQL reports no snapshot position at all; there a chunk
//! takes `FLUSH TABLES WITH READ LOCK` just long enough to open its
//! snapshot and read the binlog position (RELOAD privilege), which stalls
//! writers for that moment.
//!
//! Rows are read with the binary protocol (exact floats, typed temporal
//! values) in UTC, and converted to the values the binlog gives for the
//! same row ([`super::mysql_values`]).

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params};
use mysql_common::value::Value as MyValue;

use super::mysql_values::{self, ColumnInfo};
use super::reconcile::{Chunk, InFlight, Visibility};
use super::{EngineTable, Job, KeyPart, SnapTable};
use crate::event::{BinlogPosition, ColumnDefault, Connector, Position, Value};
use crate::select::TableFilter;
use crate::source::SourceError;
use crate::source::mysql::MysqlSource;
use crate::source::mysql::errors::classify;
use crate::source::mysql::rows::ColumnKind;
use crate::source::mysql::server::master_status;

#[derive(Clone)]
pub struct MysqlEngine {
    source: Arc<MysqlSource>,
    filter: TableFilter,
}

impl std::fmt::Debug for MysqlEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MysqlEngine")
    }
}

/// How to read one table.
#[derive(Debug)]
pub struct MysqlTable {
    /// `SELECT <columns> FROM <table>`.
    select: String,
    /// `` `db`.`table` ``.
    from: String,
    /// Quoted chunk key columns, in key order.
    key: Vec<String>,
    kinds: Vec<ColumnKind>,
    connector: Connector,
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `key > lo` for a key of `key.len()` columns, as a condition the
/// optimizer turns into a range scan: `k1 >= ? AND (k1 > ? OR (k1 = ? AND
/// k2 > ?) ...)`; parameters appended to `params`.
fn after(key: &[String], lo: &[KeyPart], params: &mut Vec<MyValue>) -> String {
    let mut ors = Vec::new();
    for i in 0..key.len() {
        let mut ands = Vec::new();
        for (j, k) in key.iter().enumerate().take(i) {
            ands.push(format!("{k} = ?"));
            params.push(param(lo.get(j)));
        }
        ands.push(format!("{} > ?", key[i]));
        params.push(param(lo.get(i)));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    let first = key.first().map_or(String::new(), |k| {
        params.insert(0, param(lo.first()));
        format!("{k} >= ? AND ")
    });
    format!("{first}({})", ors.join(" OR "))
}

fn param(p: Option<&KeyPart>) -> MyValue {
    match p {
        None | Some(KeyPart::Null) => MyValue::NULL,
        Some(KeyPart::Int(i)) => MyValue::Int(*i),
        Some(KeyPart::UInt(u)) => MyValue::UInt(*u),
        Some(KeyPart::Double(d)) => MyValue::Double(*d),
        Some(KeyPart::Text(t)) => MyValue::Bytes(t.as_bytes().to_vec()),
        Some(KeyPart::Bytes(b)) => MyValue::Bytes(b.clone()),
    }
}

/// A key value as the server sent it, to give back as a parameter.
fn key_part(v: MyValue) -> KeyPart {
    match v {
        MyValue::NULL => KeyPart::Null,
        MyValue::Int(i) => KeyPart::Int(i),
        MyValue::UInt(u) => KeyPart::UInt(u),
        MyValue::Float(f) => KeyPart::Double(f64::from(f)),
        MyValue::Double(d) => KeyPart::Double(d),
        MyValue::Bytes(b) => match String::from_utf8(b) {
            Ok(s) => KeyPart::Text(s),
            Err(e) => KeyPart::Bytes(e.into_bytes()),
        },
        MyValue::Date(y, m, d, h, i, s, us) => {
            KeyPart::Text(format!("{y:04}-{m:02}-{d:02} {h:02}:{i:02}:{s:02}.{us:06}"))
        }
        MyValue::Time(neg, d, h, i, s, us) => KeyPart::Text(format!(
            "{}{}:{i:02}:{s:02}.{us:06}",
            if neg { "-" } else { "" },
            u64::from(d) * 24 + u64::from(h)
        )),
    }
}

fn denied(what: &str, table: &str, e: mysql_async::Error) -> SourceError {
    if let mysql_async::Error::Server(s) = &e
        && matches!(s.code, 1142 | 1143 | 1044)
    {
        return SourceError::definite(format!(
            "{what}: the tidemark user may not read {table}; GRANT SELECT ON {table} TO the tidemark user (a snapshot reads every selected table)"
        ))
        .caused_by(e);
    }
    classify(what, e)
}

/// Opens a MariaDB snapshot and bounds the binlog point it reflects:
/// every transaction before `from` is in it, none at or after `at`.
///
/// MariaDB records the exact point with the read view and reports it as
/// `binlog_snapshot_file/position`, but `SHOW STATUS` hands it over
/// through one server-wide variable that every session's `SHOW STATUS`
/// writes before reading (MariaDB 10.11 at least): under concurrent
/// sessions one may read another's value, later than its own snapshot,
/// and rows would go out behind changes they lack. So the point is not
/// asked for; it is bounded instead, in one round trip:
///
/// - `from`: the same status read *before* the snapshot is taken. Whoever
///   wrote it (this session: the last commit in the binlog; another: its
///   snapshot or last commit) wrote a point whose transactions had all
///   become visible before this snapshot was opened.
/// - `at`: the binlog end (`SHOW MASTER STATUS`) read after: a transaction
///   the snapshot sees was written to the binlog before it committed.
///
/// Rows of keys that transactions between the two touch are dropped from
/// the chunk when those go out before it (see [`super::reconcile`]).
async fn mariadb_snapshot(
    conn: &mut Conn,
) -> Result<(BinlogPosition, BinlogPosition), SourceError> {
    let what = "opening a snapshot";
    let mut result = conn
        .query_iter(
            "ROLLBACK; SHOW STATUS LIKE 'binlog_snapshot_%'; START TRANSACTION WITH CONSISTENT SNAPSHOT; SHOW MASTER STATUS",
        )
        .await
        .map_err(|e| classify(what, e))?;
    let mut sets: Vec<Vec<mysql_async::Row>> = Vec::new();
    while sets.len() < 4 {
        sets.push(result.collect().await.map_err(|e| classify(what, e))?);
        if result.is_empty() {
            break;
        }
    }
    drop(result);
    let text = |row: &mysql_async::Row, i: usize| -> Option<String> {
        row.get_opt::<String, _>(i).and_then(Result::ok)
    };
    let (mut file, mut pos) = (None, None);
    for row in sets.get(1).into_iter().flatten() {
        match text(row, 0).map(|n| n.to_ascii_lowercase()).as_deref() {
            Some("binlog_snapshot_file") => file = text(row, 1),
            Some("binlog_snapshot_position") => {
                pos = text(row, 1).and_then(|p| p.parse::<u64>().ok())
            }
            _ => {}
        }
    }
    let end = sets
        .get(3)
        .and_then(|rows| rows.first())
        .and_then(|row| Some((text(row, 0)?, text(row, 1)?.parse::<u64>().ok()?)));
    let Some((end_file, end_pos)) = end.filter(|(f, _)| !f.is_empty()) else {
        return Err(SourceError::definite(
            "the server reports no binlog position (SHOW MASTER STATUS is empty): the snapshot needs log_bin on (it streams the binlog anyway)",
        ));
    };
    // MariaDB sets it when it opens a binlog file, commits or not.
    let from = match (file, pos) {
        (Some(f), Some(p)) if !f.is_empty() => BinlogPosition::start_of(&f, p),
        _ => {
            return Err(SourceError::definite(
                "the server reports no binlog_snapshot_file/position (SHOW STATUS LIKE 'binlog_snapshot_%'): the snapshot needs log_bin on and a MariaDB server",
            ));
        }
    };
    Ok((from, BinlogPosition::start_of(&end_file, end_pos)))
}

/// `binlog_expire_logs_seconds` (or `expire_logs_days`), when set.
pub async fn log_retention(conn: &mut Conn) -> Option<(u64, String)> {
    let secs: Option<u64> = conn
        .query_first("SELECT @@binlog_expire_logs_seconds")
        .await
        .ok()
        .flatten();
    if let Some(s) = secs.filter(|&s| s > 0) {
        return Some((s, "binlog_expire_logs_seconds".into()));
    }
    let days: Option<f64> = conn
        .query_first("SELECT @@expire_logs_days")
        .await
        .ok()
        .flatten();
    days.filter(|&d| d > 0.0)
        .map(|d| ((d * 86_400.0) as u64, "expire_logs_days".into()))
}

impl MysqlEngine {
    pub fn new(source: Arc<MysqlSource>, filter: TableFilter) -> MysqlEngine {
        MysqlEngine { source, filter }
    }

    pub async fn connect(&self) -> Result<Conn, SourceError> {
        let mut conn = self.source.connect().await?;
        conn.query_drop(
            "SET time_zone = '+00:00', NAMES utf8mb4; SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        )
        .await
        .map_err(|e| classify("preparing a snapshot connection", e))?;
        Ok(conn)
    }

    async fn connector(conn: &mut Conn) -> Result<Connector, SourceError> {
        let v: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| classify("reading the server version", e))?;
        Ok(if v.is_some_and(|v| v.contains("MariaDB")) {
            Connector::Mariadb
        } else {
            Connector::Mysql
        })
    }

    pub async fn tables(
        &self,
        conn: &mut Conn,
        names: Option<&[String]>,
    ) -> Result<Vec<SnapTable>, SourceError> {
        let listed: Vec<(String, String, Option<u64>)> = conn
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES
                  WHERE TABLE_TYPE = 'BASE TABLE'
                    AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
                  ORDER BY TABLE_SCHEMA, TABLE_NAME",
            )
            .await
            .map_err(|e| classify("listing tables for the snapshot", e))?;
        let connector = Self::connector(conn).await?;
        // information_schema lists only what the user may see: a selected
        // database missing there is one it can't read (or a typo), not an
        // empty one.
        let visible: Vec<String> = conn
            .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
            .await
            .map_err(|e| classify("listing databases for the snapshot", e))?;
        for db in self.filter.literal_dbs() {
            if !visible.iter().any(|v| v == db) {
                return Err(SourceError::definite(format!(
                    "database {db} (in filter.include) is not visible to the tidemark user: it doesn't exist, or the user has no privilege on it. A snapshot reads its tables: GRANT SELECT ON `{db}`.* TO the tidemark user"
                )));
            }
        }
        let mut out = Vec::new();
        for (db, table, rows) in listed {
            let name = format!("{db}.{table}");
            let wanted = match names {
                Some(n) => n.contains(&name) && self.filter.selects(&db, &table),
                None => self.filter.selects(&db, &table),
            };
            if !wanted {
                continue;
            }
            out.push(
                self.table(conn, &db, &table, rows.unwrap_or(0), connector)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn table(
        &self,
        conn: &mut Conn,
        db: &str,
        table: &str,
        estimated_rows: u64,
        connector: Connector,
    ) -> Result<SnapTable, SourceError> {
        type Col = (
            String,
            String,
            String,
            Option<String>,
            String,
            Option<u64>,
            Option<u64>,
            Option<u64>,
            Option<u64>,
            Option<String>,
            String,
        );
        let cols: Vec<Col> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, IS_NULLABLE,
                        NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, CHARACTER_OCTET_LENGTH,
                        COLUMN_DEFAULT, EXTRA
                   FROM information_schema.COLUMNS
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(|e| classify("reading information_schema.COLUMNS", e))?;
        let mariadb = connector == Connector::Mariadb;
        let defaults: Vec<Option<ColumnDefault>> = cols
            .iter()
            .map(|c| portable_default(c.9.as_deref(), &c.10, &c.1, mariadb))
            .collect();
        let columns: Vec<ColumnInfo> = cols
            .into_iter()
            .map(
                |(name, dt, ct, cs, nullable, np, ns, dp, ol, _, _)| ColumnInfo {
                    name,
                    data_type: dt.to_ascii_lowercase(),
                    column_type: ct,
                    charset: cs,
                    nullable: nullable == "YES",
                    numeric_precision: np,
                    numeric_scale: ns,
                    datetime_precision: dp,
                    octet_length: ol,
                },
            )
            .collect();
        // Unique indexes, primary first, with their columns in order.
        let idx: Vec<(String, String, String)> = conn
            .exec(
                "SELECT INDEX_NAME, COLUMN_NAME, NULLABLE FROM information_schema.STATISTICS
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0
                  ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
                (db, table),
            )
            .await
            .map_err(|e| classify("reading information_schema.STATISTICS", e))?;
        let position = |c: &str| columns.iter().position(|x| x.name == c);
        let mut primary = Vec::new();
        let mut unique: Vec<(String, Vec<usize>, bool)> = Vec::new();
        for (index, col, nullable) in idx {
            let Some(i) = position(&col) else { continue };
            if index == "PRIMARY" {
                primary.push(i);
            } else {
                match unique.last_mut() {
                    Some((n, cols, nn)) if *n == index => {
                        cols.push(i);
                        *nn &= nullable != "YES";
                    }
                    _ => unique.push((index, vec![i], nullable != "YES")),
                }
            }
        }
        // The unique keys go with the schema: tables a database target
        // creates get them (the binlog doesn't carry them).
        let uniques: Vec<Vec<usize>> = unique.iter().map(|(_, c, _)| c.clone()).collect();
        let chunk_key = if primary.is_empty() {
            unique
                .into_iter()
                .find(|(_, _, not_null)| *not_null)
                .map(|(_, c, _)| c)
                .unwrap_or_default()
        } else {
            primary.clone()
        };
        let codec = mysql_values::table_codec(db, table, &columns, primary).map_err(|e| {
            SourceError::definite(format!("table {db}.{table} can't be snapshotted: {e}"))
        })?;
        let select = format!(
            "SELECT {} FROM {}.{}",
            columns
                .iter()
                .map(|c| quote(&c.name))
                .collect::<Vec<_>>()
                .join(", "),
            quote(db),
            quote(table)
        );
        let schema = {
            let mut t = (*codec.schema).clone();
            t.uniques = uniques;
            t.defaults = defaults;
            std::sync::Arc::new(t)
        };
        Ok(SnapTable {
            name: format!("{db}.{table}"),
            schema,
            chunk_key: chunk_key.clone(),
            estimated_rows,
            engine: EngineTable::Mysql(MysqlTable {
                select,
                from: format!("{}.{}", quote(db), quote(table)),
                key: chunk_key
                    .iter()
                    .filter_map(|&i| columns.get(i).map(|c| quote(&c.name)))
                    .collect(),
                kinds: codec.kinds,
                connector,
            }),
        })
    }

    pub async fn max_key(
        &self,
        conn: &mut Conn,
        t: &SnapTable,
    ) -> Result<Option<Vec<KeyPart>>, SourceError> {
        let EngineTable::Mysql(m) = &t.engine else {
            return Err(super::mismatch());
        };
        let desc: Vec<String> = m.key.iter().map(|k| format!("{k} DESC")).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT 1",
            m.key.join(", "),
            m.from,
            desc.join(", ")
        );
        let row: Option<mysql_async::Row> = conn
            .query_first(sql)
            .await
            .map_err(|e| denied("finding the table's last key", &t.name, e))?;
        Ok(row.map(|r| r.unwrap().into_iter().map(key_part).collect()))
    }

    pub async fn boundary(
        &self,
        conn: &mut Conn,
        t: &SnapTable,
        lo: Option<&[KeyPart]>,
        n: u64,
        upto: &[KeyPart],
    ) -> Result<Option<Vec<KeyPart>>, SourceError> {
        let EngineTable::Mysql(m) = &t.engine else {
            return Err(super::mismatch());
        };
        let keys = m.key.join(", ");
        let from = &m.from;
        let mut params = Vec::new();
        let mut conds = Vec::new();
        if let Some(lo) = lo {
            conds.push(after(&m.key, lo, &mut params));
        }
        let mut p = Vec::new();
        conds.push(format!("NOT ({})", after(&m.key, upto, &mut p)));
        params.extend(p);
        let filter = format!(" WHERE {}", conds.join(" AND "));
        // Two keys: the chunk's last, and whether any row follows it (if
        // none does, this is the table's last chunk, without an empty one
        // after it).
        let sql = format!(
            "SELECT {keys} FROM {from}{filter} ORDER BY {keys} LIMIT 2 OFFSET {}",
            n.saturating_sub(1)
        );
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, Params::Positional(params))
            .await
            .map_err(|e| denied("finding a chunk boundary", &t.name, e))?;
        if rows.len() < 2 {
            return Ok(None);
        }
        Ok(rows
            .into_iter()
            .next()
            .map(|r| r.unwrap().into_iter().map(key_part).collect()))
    }

    pub async fn read(
        &self,
        conn: &mut Conn,
        job: &Job,
        id: u64,
        in_flight: &InFlight,
    ) -> Result<Chunk, SourceError> {
        let t = &job.table;
        let EngineTable::Mysql(m) = &t.engine else {
            return Err(super::mismatch());
        };
        let (at, visibility) = match m.connector {
            Connector::Mariadb => {
                // The stream waits while the snapshot's lower bound is not
                // known yet (one round trip).
                in_flight.set(id, Position::Binlog(BinlogPosition::start_of("", 0)));
                let (from, at) = mariadb_snapshot(conn).await?;
                in_flight.set(id, Position::Binlog(from.clone()));
                (at, Visibility::From(Position::Binlog(from)))
            }
            _ => {
                let (file, pos) = master_status(conn, m.connector).await?;
                in_flight.set(id, Position::Binlog(BinlogPosition::start_of(&file, pos)));
                conn.query_drop("FLUSH TABLES WITH READ LOCK").await.map_err(|e| {
                    if let mysql_async::Error::Server(s) = &e
                        && matches!(s.code, 1227 | 1044)
                    {
                        return SourceError::definite("a MySQL snapshot takes FLUSH TABLES WITH READ LOCK for a moment per chunk to read the binlog position its snapshot matches: GRANT RELOAD ON *.* TO the tidemark user").caused_by(e);
                    }
                    classify("locking tables to open a snapshot", e)
                })?;
                let started = conn
                    .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    .await
                    .map_err(|e| classify("starting a snapshot transaction", e));
                let status = match started {
                    Ok(()) => master_status(conn, m.connector).await,
                    Err(e) => Err(e),
                };
                let unlocked = conn.query_drop("UNLOCK TABLES").await;
                let (f, p) = status?;
                unlocked.map_err(|e| classify("unlocking tables", e))?;
                (BinlogPosition::start_of(&f, p), Visibility::Exact)
            }
        };
        let read_at_ms = crate::store::now_ms();
        let mut params = Vec::new();
        let mut conds = Vec::new();
        if let Some(lo) = &job.lo {
            conds.push(after(&m.key, lo, &mut params));
        }
        if let Some(hi) = &job.hi {
            let mut p = Vec::new();
            conds.push(format!("NOT ({})", after(&m.key, hi, &mut p)));
            params.extend(p);
        }
        let mut sql = m.select.clone();
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        if !m.key.is_empty() {
            sql.push_str(" ORDER BY ");
            sql.push_str(&m.key.join(", "));
        }
        let mut rows: Vec<Vec<Value>> = Vec::new();
        {
            let mut result = conn
                .exec_iter(sql, Params::Positional(params))
                .await
                .map_err(|e| denied("reading a snapshot chunk", &t.name, e))?;
            while let Some(row) = result
                .next()
                .await
                .map_err(|e| classify("reading a snapshot chunk", e))?
            {
                let values = row.unwrap();
                let mut out = Vec::with_capacity(values.len());
                for (v, kind) in values.into_iter().zip(&m.kinds) {
                    out.push(
                        mysql_values::value(kind, v).map_err(|e| {
                            SourceError::definite(format!("a row of {}: {e}", t.name))
                        })?,
                    );
                }
                rows.push(out);
            }
        }
        conn.query_drop("COMMIT")
            .await
            .map_err(|e| classify("ending a snapshot transaction", e))?;
        Ok(Chunk {
            id,
            job: job.clone(),
            schema: t.schema.clone(),
            at: Position::Binlog(at),
            visibility,
            rows,
            read_at_ms,
            connector: m.connector,
            spoiled: false,
            superseded: 0,
            permit: None,
        })
    }
}

/// A default as `information_schema.COLUMNS` tells it, where another
/// engine (or server) can declare it: constants and the time of the
/// insert. MariaDB quotes string constants (`'it''s'`, `NULL` for none)
/// and spells expressions as such; MySQL gives the bare value and marks
/// expressions `DEFAULT_GENERATED` in EXTRA. Bit and binary literals,
/// zero dates and expressions: `None`.
fn portable_default(
    raw: Option<&str>,
    extra: &str,
    data_type: &str,
    mariadb: bool,
) -> Option<ColumnDefault> {
    let raw = raw?;
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("current_timestamp") || lower == "now()" {
        return Some(ColumnDefault::CurrentTimestamp);
    }
    if matches!(
        data_type.to_ascii_lowercase().as_str(),
        "bit" | "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
    ) || raw.starts_with("0000-00-00")
        || raw.starts_with("'0000-00-00")
    {
        return None;
    }
    if !mariadb {
        let generated = extra.to_ascii_uppercase().contains("DEFAULT_GENERATED");
        return (!generated).then(|| ColumnDefault::Text(raw.to_string()));
    }
    if raw == "NULL" {
        return None;
    }
    if raw.starts_with('\'') {
        return crate::source::mysql::ddl::string_literal(raw).map(ColumnDefault::Text);
    }
    ColumnDefault::number(raw)
}

#[cfg(test)]
mod default_tests {
    use super::*;

    #[test]
    fn mariadb_and_mysql_defaults_read_as_constants_or_the_insert_time() {
        let text = |t: &str| Some(ColumnDefault::Text(t.into()));
        let maria = |raw: &str, ty: &str| portable_default(Some(raw), "", ty, true);
        assert_eq!(maria("'it''s'", "varchar"), text("it's"));
        assert_eq!(maria("'a\\\\b'", "varchar"), text("a\\b"));
        assert_eq!(maria("-5", "int"), text("-5"));
        assert_eq!(maria("1.50", "decimal"), text("1.50"));
        assert_eq!(
            maria("current_timestamp(3)", "datetime"),
            Some(ColumnDefault::CurrentTimestamp)
        );
        assert_eq!(maria("NULL", "varchar"), None);
        assert_eq!(maria("'NULL'", "varchar"), text("NULL"));
        assert_eq!(maria("(1 + 2)", "int"), None);
        assert_eq!(maria("b'101'", "bit"), None);
        assert_eq!(maria("'0000-00-00'", "date"), None);
        assert_eq!(portable_default(None, "", "int", true), None);
        // MySQL: bare values; expressions marked in EXTRA.
        assert_eq!(
            portable_default(Some("it's"), "", "varchar", false),
            text("it's")
        );
        assert_eq!(
            portable_default(
                Some("CURRENT_TIMESTAMP"),
                "DEFAULT_GENERATED",
                "timestamp",
                false
            ),
            Some(ColumnDefault::CurrentTimestamp)
        );
        assert_eq!(
            portable_default(Some("(rand())"), "DEFAULT_GENERATED", "double", false),
            None
        );
    }
}
