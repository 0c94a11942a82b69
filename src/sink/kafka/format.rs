//! Kafka messages of change events: key, value and headers, in Debezium's
//! JSON envelope (with or without Kafka Connect's `schema` part) or
//! protobuf; tombstones after deletes; transaction metadata (`BEGIN`/`END`)
//! records; dead-letter records. Pure: no I/O.

use std::sync::Arc;

use prost::Message as _;
use serde_json::{Value as J, json};

use super::config::KafkaFormat;
use super::schema::{self, Quirks};
use crate::event::json::{JsonEncoder, JsonOptions, transaction_id};
use crate::event::{BinlogPosition, ChangeEvent, LsnPosition, Op, Position, TableSchema};

/// Header with the event's position (`Position`'s text form).
pub const H_POSITION: &str = "tidemark.position";
/// Header with the task id.
pub const H_TASK: &str = "tidemark.task";
/// Header with the op (`c`, `u`, `d`, `r`, `t`, `ddl`, `begin`, `end`, `dead-letter`).
pub const H_OP: &str = "tidemark.op";
/// Header with the table (`db.table` / `schema.table`), when there is one.
pub const H_TABLE: &str = "tidemark.table";
/// Header `1` on the tombstone that follows a delete (same position).
pub const H_PART: &str = "tidemark.part";

/// One message to produce.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: Arc<str>,
    /// The key as written.
    pub key: Option<Vec<u8>>,
    /// The key's schemaless JSON, which partitioning hashes when it differs
    /// from `key` (with `schemas = true`).
    pub hash_key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
    pub position: Position,
    /// 0 for an event's message, 1 for the tombstone after it.
    pub part: u8,
    pub op: &'static str,
    pub table: Option<String>,
}

impl Msg {
    /// Bytes partitioning hashes (`None`: partition 0).
    pub fn partition_key(&self) -> Option<&[u8]> {
        self.hash_key.as_deref().or(self.key.as_deref())
    }

    /// Size as the producer counts it (key + value; headers are small).
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len)
    }

    /// The resume order of messages in one partition: (position, part).
    pub fn order_key(&self) -> (&Position, u8) {
        (&self.position, self.part)
    }
}

/// Turns events into messages.
pub struct Formatter {
    json: JsonEncoder,
    opts: JsonOptions,
    format: KafkaFormat,
    schemas: bool,
    tombstones: bool,
    prefix: String,
    task: String,
    /// Key and envelope schema of the last table seen (for plain messages).
    cache: Option<(Arc<TableSchema>, Arc<[u8]>)>,
    /// The last table's key schema JSON, when its key columns' types alone
    /// describe it (the common case: it is the same for every row).
    key_cache: Option<(Arc<TableSchema>, Arc<[u8]>)>,
}

impl Formatter {
    pub fn new(
        opts: JsonOptions,
        format: KafkaFormat,
        schemas: bool,
        tombstones: bool,
        prefix: &str,
        task: &str,
    ) -> Formatter {
        Formatter {
            json: JsonEncoder::new(opts.clone(), prefix, task),
            opts,
            format,
            schemas: schemas && format == KafkaFormat::Json,
            tombstones,
            prefix: prefix.to_string(),
            task: task.to_string(),
            cache: None,
            key_cache: None,
        }
    }

    /// Appends the messages of `ev` (one, or two with a tombstone) to `out`.
    pub fn event(&mut self, ev: &ChangeEvent, topic: Arc<str>, now_ns: i64, out: &mut Vec<Msg>) {
        let table_name = ev.table.as_ref().map(|t| t.qualified_name());
        let (key, hash_key) = self.key(ev);
        let mut value = Vec::with_capacity(512);
        match self.format {
            KafkaFormat::Protobuf => {
                let mut pb = crate::event::proto::to_proto(ev, now_ns / 1_000_000);
                if let Some(s) = pb.source.as_mut() {
                    s.task = self.task.clone();
                }
                // Encoding into a Vec can't run out of room.
                let _ = pb.encode(&mut value);
            }
            KafkaFormat::Json if self.schemas => {
                let schema = self.value_schema(ev);
                value.extend_from_slice(b"{\"schema\":");
                value.extend_from_slice(&schema);
                value.extend_from_slice(b",\"payload\":");
                self.json.encode(ev, now_ns, &mut value);
                value.push(b'}');
            }
            KafkaFormat::Json => self.json.encode(ev, now_ns, &mut value),
        }
        let tombstone = self.tombstones && ev.op == Op::Delete && key.is_some();
        let msg = Msg {
            topic,
            key,
            hash_key,
            value: Some(value),
            position: ev.position.clone(),
            part: 0,
            op: ev.op.code(),
            table: table_name,
        };
        if tombstone {
            let t = Msg {
                value: None,
                part: 1,
                ..msg.clone()
            };
            out.push(msg);
            out.push(t);
        } else {
            out.push(msg);
        }
    }

    /// (key as written, schemaless key for partitioning when different).
    fn key(&mut self, ev: &ChangeEvent) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let mut payload = Vec::new();
        let has_key = if ev.op == Op::Ddl {
            let db = ev.db().unwrap_or("");
            // Serializing a string map can't fail.
            let _ = serde_json::to_writer(&mut payload, &json!({ "databaseName": db }));
            true
        } else if ev.op == Op::Truncate {
            // Debezium's truncate records have no key.
            false
        } else {
            self.json.encode_key(ev, &mut payload)
        };
        if !has_key {
            return (None, None);
        }
        if !self.schemas {
            return (Some(payload), None);
        }
        let key_schema: Arc<[u8]> = match (&ev.table, ev.op) {
            (_, Op::Ddl) => serde_json::to_vec(&schema::schema_change_key_schema(ev.connector))
                .unwrap_or_default()
                .into(),
            (Some(t), _) => {
                let row = ev.after.as_deref().or(ev.before.as_deref()).unwrap_or(&[]);
                let plain = !t.key.iter().any(|&k| {
                    row.get(k)
                        .is_some_and(|v| schema::written_as_text(v, &self.opts))
                });
                match &self.key_cache {
                    Some((c, bytes)) if plain && (Arc::ptr_eq(c, t) || **c == **t) => bytes.clone(),
                    _ => {
                        let s = schema::key_schema(
                            t,
                            row,
                            ev.connector,
                            &self.opts,
                            &schema::schema_base(&self.prefix, t),
                        );
                        let bytes: Arc<[u8]> = serde_json::to_vec(&s).unwrap_or_default().into();
                        if plain {
                            self.key_cache = Some((t.clone(), bytes.clone()));
                        }
                        bytes
                    }
                }
            }
            (None, _) => return (Some(payload), None),
        };
        let mut key = Vec::with_capacity(payload.len() + key_schema.len() + 24);
        key.extend_from_slice(b"{\"schema\":");
        key.extend_from_slice(&key_schema);
        key.extend_from_slice(b",\"payload\":");
        key.extend_from_slice(&payload);
        key.push(b'}');
        (Some(key), Some(payload))
    }

    /// The value schema's JSON for `ev`, from the cache when the column
    /// types describe it.
    fn value_schema(&mut self, ev: &ChangeEvent) -> Arc<[u8]> {
        let Some(table) = ev.table.as_ref().filter(|_| ev.op != Op::Ddl) else {
            let s = schema::schema_change_value_schema(ev.connector, ev.db().is_none());
            return serde_json::to_vec(&s).unwrap_or_default().into();
        };
        let images: Vec<&[crate::event::Value]> = [ev.before.as_deref(), ev.after.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let q = Quirks::of(table, &images, &self.opts);
        if q.is_plain()
            && let Some((t, v)) = &self.cache
            && (Arc::ptr_eq(t, table) || **t == **table)
        {
            return v.clone();
        }
        let s = schema::envelope_schema(table, &images, &q, ev.connector, &self.opts, &self.prefix);
        let bytes: Arc<[u8]> = serde_json::to_vec(&s).unwrap_or_default().into();
        if q.is_plain() {
            self.cache = Some((table.clone(), bytes.clone()));
        }
        bytes
    }

    fn wrap(&self, key_schema: J, value_schema: J, key: J, value: J) -> (Vec<u8>, Vec<u8>) {
        if self.schemas {
            (
                serde_json::to_vec(&json!({"schema": key_schema, "payload": key}))
                    .unwrap_or_default(),
                serde_json::to_vec(&json!({"schema": value_schema, "payload": value}))
                    .unwrap_or_default(),
            )
        } else {
            (
                serde_json::to_vec(&key).unwrap_or_default(),
                serde_json::to_vec(&value).unwrap_or_default(),
            )
        }
    }

    /// A transaction metadata record (always JSON: the protobuf schema has
    /// no message for it).
    pub fn tx_record(&self, tx: &TxRecord, topic: Arc<str>) -> Msg {
        let key = json!({ "id": tx.id });
        let value = match tx.status {
            TxStatus::Begin => json!({
                "status": "BEGIN", "id": tx.id, "event_count": null,
                "data_collections": null, "ts_ms": tx.ts_ms,
            }),
            TxStatus::End => json!({
                "status": "END", "id": tx.id, "event_count": tx.event_count,
                "data_collections": tx.per_table.iter()
                    .map(|(t, n)| json!({"data_collection": t, "event_count": n}))
                    .collect::<Vec<_>>(),
                "ts_ms": tx.ts_ms,
            }),
        };
        let hash = serde_json::to_vec(&key).unwrap_or_default();
        let (k, v) = self.wrap(
            schema::transaction_key_schema(),
            schema::transaction_value_schema(),
            key,
            value,
        );
        Msg {
            topic,
            hash_key: self.schemas.then_some(hash),
            key: Some(k),
            value: Some(v),
            position: tx.position.clone(),
            part: 0,
            op: match tx.status {
                TxStatus::Begin => "begin",
                TxStatus::End => "end",
            },
            table: None,
        }
    }

    /// A small record standing in for a message too large to write.
    pub fn dead_letter(&self, m: &Msg, limit: u64, error: &str, topic: Arc<str>) -> Msg {
        let value = json!({
            "task": self.task,
            "position": m.position.to_string(),
            "topic": &*m.topic,
            "table": m.table,
            "op": m.op,
            "tombstone": m.value.is_none(),
            "size": m.size(),
            "limit": limit,
            "error": error,
        });
        Msg {
            topic,
            key: m.partition_key().map(<[u8]>::to_vec),
            hash_key: None,
            value: Some(serde_json::to_vec(&value).unwrap_or_default()),
            position: m.position.clone(),
            part: m.part,
            op: "dead-letter",
            table: m.table.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Begin,
    End,
}

/// A transaction metadata record to write.
#[derive(Debug, Clone, PartialEq)]
pub struct TxRecord {
    pub status: TxStatus,
    pub id: String,
    /// BEGIN: before every event of the transaction; END: the whole
    /// transaction ([`Position::tx_end`]).
    pub position: Position,
    pub ts_ms: i64,
    pub event_count: u64,
    pub per_table: Vec<(String, u64)>,
}

/// Follows transaction boundaries to emit BEGIN and END records with event
/// counts per table. Snapshot reads and DDL have no transaction metadata,
/// as in Debezium.
#[derive(Default)]
pub struct TxTracker {
    open: Option<TxRecord>,
}

impl TxTracker {
    /// Records `ev`; returns the END of the previous transaction and the
    /// BEGIN of this one when `ev` starts a new transaction.
    pub fn event(&mut self, ev: &ChangeEvent) -> (Option<TxRecord>, Option<TxRecord>) {
        if matches!(ev.op, Op::Read | Op::Ddl) {
            return (None, None);
        }
        let end = ev.position.tx_end();
        let mut closed = None;
        if self.open.as_ref().is_some_and(|o| o.position != end) {
            closed = self.open.take();
        }
        let mut begun = None;
        let open = self.open.get_or_insert_with(|| {
            let b = TxRecord {
                status: TxStatus::Begin,
                id: transaction_id(ev),
                position: tx_start(&ev.position),
                ts_ms: ev.tx.commit_ts_ms,
                event_count: 0,
                per_table: Vec::new(),
            };
            begun = Some(b.clone());
            TxRecord {
                status: TxStatus::End,
                position: end,
                ..b
            }
        });
        // Sources number a transaction's events (counting those skipped on
        // a resume), so after a restart in the middle of a transaction the
        // counts still cover the whole of it.
        open.event_count = (open.event_count + 1).max(ev.tx_order);
        if let Some(t) = &ev.table {
            let name = t.qualified_name();
            match open.per_table.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c = (*c + 1).max(ev.table_order),
                None => open.per_table.push((name, ev.table_order.max(1))),
            }
        }
        (closed, begun)
    }

    /// Called with each batch's `end`: returns the END record once the open
    /// transaction is complete.
    pub fn batch_end(&mut self, end: &Position) -> Option<TxRecord> {
        let done = self
            .open
            .as_ref()
            .is_some_and(|o| end.partial_cmp(&o.position).is_some_and(|c| c.is_ge()));
        if done { self.open.take() } else { None }
    }
}

/// A position before every event of `p`'s transaction.
pub fn tx_start(p: &Position) -> Position {
    match p {
        Position::Binlog(b) => Position::Binlog(BinlogPosition::start_of(&b.file, b.tx_pos)),
        Position::Lsn(l) => Position::Lsn(LsnPosition {
            commit_lsn: l.commit_lsn,
            index: 0,
        }),
        Position::Snapshot(s) => Position::Snapshot(crate::event::SnapshotPosition {
            at: s.at.clone(),
            seq: s.seq,
            row: 0,
        }),
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
