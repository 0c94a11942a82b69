//! Reading PostgreSQL chunks consistently.
//!
//! Each chunk runs in a `REPEATABLE READ READ ONLY` transaction; its first
//! statement takes the snapshot and reads, right after, the snapshot's
//! transaction lists (`pg_current_snapshot()`) and the WAL insert position,
//! the chunk's point. Transactions committing before that point that the
//! snapshot doesn't see are reconciled by [`super::reconcile`]. Before the
//! snapshot is taken, the WAL insert position is registered as the chunk's
//! head, so the stream holds back what might follow the chunk.
//!
//! Rows are read with the simple query protocol, as the types' text
//! output: the form pgoutput sends, and decoded by the same code as streamed values; the table's
//! schema is built from the catalog as a Relation message would describe
//! it, so both carry the same schema version.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;
use tokio_postgres::SimpleQueryMessage;

use super::reconcile::{Chunk, InFlight, PgSnapshot, Visibility};
use super::{EngineTable, Job, KeyPart, SnapTable};
use crate::config::{PostgresSourceConfig, TlsConfig};
use crate::event::position::parse_lsn;
use crate::event::{Connector, LsnPosition, Position, Value};
use crate::select::TableFilter;
use crate::source::SourceError;
use crate::source::postgres::pgoutput::{Column, Relation, ReplicaIdentity};
use crate::source::postgres::types::{self, PgType, TypeDef};
use crate::source::postgres::{catalog, connect, setup, stream};

#[derive(Clone)]
pub struct PgEngine {
    publication: String,
    url: String,
    tls: TlsConfig,
    task: String,
    filter: TableFilter,
}

impl std::fmt::Debug for PgEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgEngine")
    }
}

/// How to read one table.
#[derive(Debug)]
pub struct PgTable {
    /// `SELECT c1, ... FROM "schema"."table"`.
    select: String,
    /// `"schema"."table"`.
    from: String,
    /// Quoted chunk key columns and their types (`format_type`).
    key: Vec<(String, String)>,
    types: Vec<PgType>,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `(k1, k2) > ('v1'::t1, 'v2'::t2)`: the bounds as literals in the
/// types' input form (rows are read with the simple query protocol, whose
/// text results are exactly the types' output, as pgoutput sends them).
fn compare(key: &[(String, String)], op: &str, bound: &[KeyPart]) -> String {
    let cols: Vec<&str> = key.iter().map(|(k, _)| k.as_str()).collect();
    let vals: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| {
            let text = match bound.get(i) {
                Some(KeyPart::Text(t)) => t.clone(),
                Some(KeyPart::Int(i)) => i.to_string(),
                Some(KeyPart::UInt(u)) => u.to_string(),
                Some(KeyPart::Double(d)) => d.to_string(),
                Some(KeyPart::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(KeyPart::Null) | None => return "NULL".to_string(),
            };
            format!("'{}'::{ty}", text.replace('\'', "''"))
        })
        .collect();
    format!("({}) {op} ({})", cols.join(", "), vals.join(", "))
}

/// The first `n` values of a row of key columns, as bounds.
fn key_parts(r: &tokio_postgres::SimpleQueryRow, n: usize) -> Vec<KeyPart> {
    (0..n)
        .map(|i| match r.get(i) {
            Some(s) => KeyPart::Text(s.to_string()),
            None => KeyPart::Null,
        })
        .collect()
}

/// The rows of a simple query, each value as text (`None`: NULL).
fn text_rows(
    messages: Vec<SimpleQueryMessage>,
) -> impl Iterator<Item = tokio_postgres::SimpleQueryRow> {
    messages.into_iter().filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

fn denied(what: &str, table: &str, e: tokio_postgres::Error) -> SourceError {
    if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
        return SourceError::definite(format!(
            "{what}: the tidemark user may not read {table}; GRANT SELECT ON {table} TO the tidemark user (a snapshot reads every selected table)"
        ))
        .caused_by(e);
    }
    sql_error(what, e)
}

fn sql_error(what: &str, e: tokio_postgres::Error) -> SourceError {
    if e.is_closed() || e.code().is_none() {
        SourceError::transient(what.to_string()).caused_by(e)
    } else {
        SourceError::definite(what.to_string()).caused_by(e)
    }
}

/// PostgreSQL keeps WAL for a slot without a time limit unless
/// `max_slot_wal_keep_size` caps it; that cap is in bytes, so it is
/// reported with a rough time at 16 MiB/s of WAL.
pub async fn log_retention(client: &mut Client) -> Option<(u64, String)> {
    let row = client
        .query_one(
            "SELECT pg_size_bytes(current_setting('max_slot_wal_keep_size'))::int8",
            &[],
        )
        .await
        .ok()?;
    let bytes: i64 = row.get(0);
    (bytes >= 0).then(|| {
        (
            (bytes as u64) / (16 << 20),
            format!("max_slot_wal_keep_size ({} MiB)", bytes >> 20),
        )
    })
}

impl PgEngine {
    pub fn new(cfg: &PostgresSourceConfig, task: &str, filter: TableFilter) -> PgEngine {
        PgEngine {
            publication: cfg.publication.clone(),
            url: cfg.url.clone(),
            tls: cfg.tls.clone(),
            task: task.to_string(),
            filter,
        }
    }

    pub async fn connect(&self) -> Result<Client, SourceError> {
        let target = connect::Target::parse(&self.url)?;
        let app = format!("{}/snapshot", setup::application_name(&self.task));
        let client = connect::sql(&target, &self.tls, &app, "tasks.source.tls").await?;
        client
            .batch_execute(
                "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'; SET extra_float_digits = 1; SET standard_conforming_strings = on",
            )
            .await
            .map_err(|e| sql_error("preparing a snapshot connection", e))?;
        Ok(client)
    }

    pub async fn tables(
        &self,
        client: &mut Client,
        names: Option<&[String]>,
    ) -> Result<Vec<SnapTable>, SourceError> {
        let db: String = client
            .query_one("SELECT current_database()::text", &[])
            .await
            .map_err(|e| sql_error("reading the database name", e))?
            .get(0);
        let rows = client
            .query(
                "SELECT n.nspname::text, c.relname::text, c.oid::int8,
                        greatest(c.reltuples, 0)::int8, c.relreplident::text
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind = 'r' AND NOT c.relispartition
                    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                    AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
                  ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(|e| sql_error("listing tables for the snapshot", e))?;
        // A table's changes stream only once the publication has it (the
        // reader adds selected tables as it starts): a chunk read before
        // that would miss the changes in between.
        let mut waited = 0;
        loop {
            let missing = setup::unpublished(client, &self.publication, &self.filter).await?;
            let missing: Vec<String> = missing
                .into_iter()
                .map(|(s, t)| format!("{s}.{t}"))
                .filter(|n| names.is_none_or(|names| names.contains(n)))
                .collect();
            if missing.is_empty() {
                break;
            }
            if waited >= 300 {
                return Err(SourceError::definite(format!(
                    "tables {} are selected but not in publication {}, so their changes can't be captured after a snapshot: ALTER PUBLICATION {} ADD TABLE them (or let tidemark manage the publication: create_publication = true)",
                    missing.join(", "),
                    self.publication,
                    self.publication
                )));
            }
            waited += 1;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut out = Vec::new();
        for r in rows {
            let (schema, table): (String, String) = (r.get(0), r.get(1));
            let name = format!("{schema}.{table}");
            let wanted =
                self.filter.selects(&schema, &table) && names.is_none_or(|n| n.contains(&name));
            if !wanted {
                continue;
            }
            let oid: i64 = r.get(2);
            let estimate: i64 = r.get(3);
            let ident: String = r.get(4);
            out.push(
                self.table(client, &db, &schema, &table, oid, estimate, &ident)
                    .await?,
            );
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn table(
        &self,
        client: &Client,
        db: &str,
        schema: &str,
        table: &str,
        oid: i64,
        estimate: i64,
        ident: &str,
    ) -> Result<SnapTable, SourceError> {
        let rel_id = u32::try_from(oid).unwrap_or_default();
        // Columns, with the replica identity key flag pgoutput sets and
        // the unique NOT NULL index a table without primary key chunks by.
        let cols = client
            .query(
                "SELECT a.attname::text, a.atttypid::int8, a.atttypmod,
                        format_type(a.atttypid, a.atttypmod),
                        coalesce(a.attnum = ANY(ri.indkey::int2[]), false)
                   FROM pg_catalog.pg_attribute a
                   LEFT JOIN pg_catalog.pg_index ri
                     ON ri.indrelid = a.attrelid
                    AND CASE $2::text WHEN 'i' THEN ri.indisreplident ELSE ri.indisprimary END
                  WHERE a.attrelid::int8 = $1 AND a.attnum > 0 AND NOT a.attisdropped
                    AND a.attgenerated = ''
                  ORDER BY a.attnum",
                &[&oid, &ident],
            )
            .await
            .map_err(|e| sql_error("reading the table's columns", e))?;
        let identity = match ident {
            "f" => ReplicaIdentity::Full,
            "n" => ReplicaIdentity::Nothing,
            "i" => ReplicaIdentity::Index,
            _ => ReplicaIdentity::Default,
        };
        let mut columns = Vec::new();
        let mut type_names = Vec::new();
        for c in &cols {
            let in_key: bool = c.get(4);
            let key = match identity {
                ReplicaIdentity::Full => true,
                ReplicaIdentity::Nothing => false,
                _ => in_key,
            };
            columns.push(Column {
                flags: u8::from(key),
                name: c.get(0),
                type_oid: u32::try_from(c.get::<_, i64>(1)).unwrap_or_default(),
                typmod: c.get(2),
            });
            type_names.push(c.get::<_, String>(3));
        }
        let relation = Relation {
            xid: None,
            rel_id,
            namespace: schema.to_string(),
            name: table.to_string(),
            replica_identity: identity,
            columns,
        };
        let info = catalog::load_relation(client, rel_id)
            .await
            .map_err(|e| sql_error("reading the table's keys", e))?;
        let oids: Vec<u32> = relation.columns.iter().map(|c| c.type_oid).collect();
        let defs: HashMap<u32, TypeDef> =
            catalog::load_types(client, &oids, |o| types::builtin(o, -1).is_some())
                .await
                .map_err(|e| sql_error("reading the table's types", e))?;
        let (schema_def, pg_types) = stream::relation_schema(db, &relation, &info, &defs);
        let position = |n: &str| relation.columns.iter().position(|c| c.name == n);
        let mut chunk_key: Vec<usize> = info
            .primary_key
            .iter()
            .filter_map(|k| position(k))
            .collect();
        if chunk_key.is_empty() {
            let idx = client
                .query(
                    "SELECT array_agg(a.attname::text ORDER BY k.ord)
                       FROM pg_catalog.pg_index i
                       CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                      WHERE i.indrelid::int8 = $1 AND i.indisunique AND i.indpred IS NULL
                        AND i.indexprs IS NULL
                      GROUP BY i.indexrelid
                     HAVING bool_and(a.attnotnull)
                      ORDER BY i.indexrelid LIMIT 1",
                    &[&oid],
                )
                .await
                .map_err(|e| sql_error("reading the table's unique indexes", e))?;
            if let Some(r) = idx.first() {
                let names: Vec<String> = r.get(0);
                chunk_key = names.iter().filter_map(|k| position(k)).collect();
            }
        }
        let qualified = format!("{}.{}", quote(schema), quote(table));
        let select = format!(
            "SELECT {} FROM {qualified}",
            relation
                .columns
                .iter()
                .map(|c| quote(&c.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let key = chunk_key
            .iter()
            .filter_map(|&i| {
                Some((
                    quote(&relation.columns.get(i)?.name),
                    type_names.get(i)?.clone(),
                ))
            })
            .collect();
        Ok(SnapTable {
            name: format!("{schema}.{table}"),
            schema: schema_def,
            chunk_key,
            estimated_rows: u64::try_from(estimate).unwrap_or(0),
            engine: EngineTable::Postgres(PgTable {
                select,
                from: qualified,
                key,
                types: pg_types,
            }),
        })
    }

    pub async fn max_key(
        &self,
        client: &mut Client,
        t: &SnapTable,
    ) -> Result<Option<Vec<KeyPart>>, SourceError> {
        let EngineTable::Postgres(p) = &t.engine else {
            return Err(super::mismatch());
        };
        let keys: Vec<&str> = p.key.iter().map(|(k, _)| k.as_str()).collect();
        let desc: Vec<String> = keys.iter().map(|k| format!("{k} DESC")).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT 1",
            keys.join(", "),
            p.from,
            desc.join(", ")
        );
        let rows: Vec<_> = text_rows(
            client
                .simple_query(&sql)
                .await
                .map_err(|e| denied("finding the table's last key", &t.name, e))?,
        )
        .collect();
        Ok(rows.first().map(|r| key_parts(r, keys.len())))
    }

    pub async fn boundary(
        &self,
        client: &mut Client,
        t: &SnapTable,
        lo: Option<&[KeyPart]>,
        n: u64,
        upto: &[KeyPart],
    ) -> Result<Option<Vec<KeyPart>>, SourceError> {
        let EngineTable::Postgres(p) = &t.engine else {
            return Err(super::mismatch());
        };
        let keys: Vec<&str> = p.key.iter().map(|(k, _)| k.as_str()).collect();
        let from = &p.from;
        let mut conds = Vec::new();
        if let Some(lo) = lo {
            conds.push(compare(&p.key, ">", lo));
        }
        conds.push(compare(&p.key, "<=", upto));
        let filter = format!(" WHERE {}", conds.join(" AND "));
        // Two keys: the chunk's last, and whether any row follows it (if
        // none does, this is the table's last chunk, without an empty one
        // after it).
        let sql = format!(
            "SELECT {keys} FROM {from}{filter} ORDER BY {keys} LIMIT 2 OFFSET {}",
            n.saturating_sub(1),
            keys = keys.join(", "),
        );
        let rows: Vec<_> = text_rows(
            client
                .simple_query(&sql)
                .await
                .map_err(|e| denied("finding a chunk boundary", &t.name, e))?,
        )
        .collect();
        if rows.len() < 2 {
            return Ok(None);
        }
        Ok(rows.first().map(|r| key_parts(r, keys.len())))
    }

    pub async fn read(
        &self,
        client: &mut Client,
        job: &Job,
        id: u64,
        in_flight: &InFlight,
    ) -> Result<Chunk, SourceError> {
        let t = &job.table;
        let EngineTable::Postgres(p) = &t.engine else {
            return Err(super::mismatch());
        };
        let head: String = client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .map_err(|e| sql_error("reading the WAL position", e))?
            .get(0);
        let head = parse_lsn(&head)
            .ok_or_else(|| SourceError::definite(format!("unreadable WAL position {head:?}")))?;
        in_flight.set(
            id,
            Position::Lsn(LsnPosition {
                commit_lsn: head,
                index: 0,
            }),
        );
        let tx = client
            .transaction()
            .await
            .map_err(|e| sql_error("starting a snapshot transaction", e))?;
        tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(|e| sql_error("starting a snapshot transaction", e))?;
        let snap = tx
            .query_one(
                "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text,
                        (extract(epoch from clock_timestamp()) * 1000)::int8",
                &[],
            )
            .await
            .map_err(|e| sql_error("taking a snapshot", e))?;
        let (snapshot_text, at_text, read_at_ms): (String, String, i64) =
            (snap.get(0), snap.get(1), snap.get(2));
        let snapshot = parse_snapshot(&snapshot_text).ok_or_else(|| {
            SourceError::definite(format!("unreadable snapshot {snapshot_text:?}"))
        })?;
        let at = parse_lsn(&at_text)
            .ok_or_else(|| SourceError::definite(format!("unreadable WAL position {at_text:?}")))?;
        let mut conds = Vec::new();
        if let Some(lo) = &job.lo {
            conds.push(compare(&p.key, ">", lo));
        }
        if let Some(hi) = &job.hi {
            conds.push(compare(&p.key, "<=", hi));
        }
        let mut sql = p.select.clone();
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        if !p.key.is_empty() {
            sql.push_str(" ORDER BY ");
            sql.push_str(
                &p.key
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        let result = tx
            .simple_query(&sql)
            .await
            .map_err(|e| denied("reading a snapshot chunk", &t.name, e))?;
        let mut rows = Vec::with_capacity(result.len());
        for r in text_rows(result) {
            let mut values = Vec::with_capacity(p.types.len());
            for (i, ty) in p.types.iter().enumerate() {
                values.push(match r.get(i) {
                    None => Value::Null,
                    Some(s) => types::decode_text(ty, s.as_bytes()).map_err(|e| {
                        SourceError::definite(format!(
                            "a value of {} column {}: {e}",
                            t.name,
                            t.schema.columns.get(i).map_or("?", |c| c.name.as_str())
                        ))
                    })?,
                });
            }
            rows.push(values);
        }
        tx.commit()
            .await
            .map_err(|e| sql_error("ending a snapshot transaction", e))?;
        Ok(Chunk {
            id,
            job: job.clone(),
            schema: t.schema.clone(),
            at: Position::Lsn(LsnPosition {
                commit_lsn: at,
                index: 0,
            }),
            visibility: Visibility::Pg(snapshot),
            rows,
            read_at_ms,
            connector: Connector::Postgres,
            spoiled: false,
            superseded: 0,
            permit: None,
        })
    }
}

/// `xmin:xmax:xip1,xip2` (pg_snapshot's text form).
pub fn parse_snapshot(s: &str) -> Option<PgSnapshot> {
    let mut parts = s.split(':');
    let xmin = parts.next()?.parse().ok()?;
    let xmax = parts.next()?.parse().ok()?;
    let xip: HashSet<u64> = match parts.next()? {
        "" => HashSet::new(),
        list => list
            .split(',')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?,
    };
    Some(PgSnapshot { xmin, xmax, xip })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_parse_and_see_what_committed_before() {
        let s = parse_snapshot("100:105:101,103").unwrap();
        assert!(s.sees(99));
        assert!(s.sees(100) && s.sees(102) && s.sees(104));
        assert!(!s.sees(101) && !s.sees(103) && !s.sees(105) && !s.sees(200));
        assert_eq!(parse_snapshot("5:5:").unwrap().xip.len(), 0);
        assert!(parse_snapshot("5:x:").is_none());
        // 64-bit xids: a 32-bit xid is widened by the snapshot's epoch.
        let e = (3u64 << 32) + 10;
        let s = parse_snapshot(&format!("{e}:{}:", e + 5)).unwrap();
        assert!(s.sees(9) && !s.sees(15));
        // Just below the epoch boundary: from the previous epoch.
        assert!(s.sees(u64::from(u32::MAX)));
    }
}
