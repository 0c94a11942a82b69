//! Debezium-compatible JSON envelope for change events.
//!
//! The envelope is Debezium's (`before`, `after`, `source`, `transaction`,
//! `op`, `ts_ms`, `ts_us`, `ts_ns`) plus tidemark's `position`. Value
//! encodings follow Debezium's connectors with the options below; where
//! Debezium's default loses data the default here is a lossless one. The full
//! mapping is in docs/json-format.md.

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::value::Value;
use super::{ChangeEvent, Connector, Op, Position, TableSchema};

/// Placeholder Debezium writes for a value the source did not send.
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// How values are written. Field names follow Debezium's options.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JsonOptions {
    /// `string` (default: exact text), `precise` (Debezium's default: base64
    /// of the unscaled two's-complement integer, scale in the schema), or
    /// `double` (may round).
    #[serde(default)]
    pub decimal_handling: DecimalHandling,
    /// `exact` (default: the full value as a JSON integer), `long` (Debezium's
    /// default: wraps above 2^63-1, so 18446744073709551615 becomes -1), or
    /// `precise` (Debezium's Decimal bytes with scale 0).
    #[serde(default)]
    pub bigint_unsigned_handling: BigintUnsignedHandling,
    /// `base64` (default, as Debezium's `bytes`) or `hex`.
    #[serde(default)]
    pub binary_handling: BinaryHandling,
    /// `string` (default: ISO-8601 `P1Y2M3DT4H5M6.789S`, lossless) or
    /// `numeric` (Debezium's default: microseconds with 30.4375-day months).
    #[serde(default)]
    pub interval_handling: IntervalHandling,
    /// Zero dates (`0000-00-00`): `string` (default: MySQL's own text) or
    /// `null` (Debezium).
    #[serde(default)]
    pub zero_date_handling: ZeroDateHandling,
    /// Text written for a value the source did not send (PostgreSQL unchanged
    /// TOAST). Default: Debezium's `__debezium_unavailable_value`.
    #[serde(default)]
    pub unavailable_value_placeholder: Option<String>,
    /// Write the `transaction` block (`id`, `total_order`,
    /// `data_collection_order`). Default true.
    #[serde(default)]
    pub transaction_metadata: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DecimalHandling {
    #[default]
    String,
    Precise,
    Double,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BigintUnsignedHandling {
    #[default]
    Exact,
    Long,
    Precise,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BinaryHandling {
    #[default]
    Base64,
    Hex,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IntervalHandling {
    #[default]
    String,
    Numeric,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ZeroDateHandling {
    #[default]
    String,
    Null,
}

/// Writes events as JSON lines.
#[derive(Debug, Clone)]
pub struct JsonEncoder {
    opts: JsonOptions,
    /// `source.name`: Debezium's topic prefix; the task id by default.
    name: String,
    task: String,
    source_cache: fast::SourceCache,
}

impl JsonEncoder {
    pub fn new(opts: JsonOptions, name: impl Into<String>, task: impl Into<String>) -> Self {
        JsonEncoder {
            opts,
            name: name.into(),
            task: task.into(),
            source_cache: fast::SourceCache::default(),
        }
    }

    /// Appends the event's JSON value (no newline) to `out`.
    /// `now_ns` is the processing time written as `ts_ms`/`ts_us`/`ts_ns`.
    pub fn encode(&self, ev: &ChangeEvent, now_ns: i64, out: &mut Vec<u8>) {
        let env = Envelope {
            enc: self,
            ev,
            now_ns,
        };
        if ev.op == Op::Ddl {
            // Serializing plain data into a Vec cannot fail: every map key is a string.
            let _ = env.serialize(&mut serde_json::Serializer::new(out));
        } else {
            self.write_envelope(&env, out);
        }
    }

    /// [`JsonEncoder::encode`] through serde alone: what the hand-written
    /// path must match byte for byte.
    #[cfg(test)]
    pub fn encode_serde(&self, ev: &ChangeEvent, now_ns: i64, out: &mut Vec<u8>) {
        let env = Envelope {
            enc: self,
            ev,
            now_ns,
        };
        let _ = env.serialize(&mut serde_json::Serializer::new(out));
    }

    /// The event's key: `{"<key column>": value, ...}`, `None` when the table
    /// has no key or the event has no row.
    pub fn encode_key(&self, ev: &ChangeEvent, out: &mut Vec<u8>) -> bool {
        let Some(table) = ev.table.as_deref() else {
            return false;
        };
        let Some(row) = ev.after.as_ref().or(ev.before.as_ref()) else {
            return false;
        };
        if table.key.is_empty() {
            return false;
        }
        let key = KeyJson {
            enc: self,
            table,
            row,
            connector: ev.connector,
        };
        let _ = key.serialize(&mut serde_json::Serializer::new(out));
        true
    }

    fn transaction_metadata(&self) -> bool {
        self.opts.transaction_metadata.unwrap_or(true)
    }

    fn placeholder(&self) -> &str {
        self.opts
            .unavailable_value_placeholder
            .as_deref()
            .unwrap_or(UNAVAILABLE_VALUE)
    }
}

struct Envelope<'a> {
    enc: &'a JsonEncoder,
    ev: &'a ChangeEvent,
    now_ns: i64,
}

impl<'a> Serialize for Envelope<'a> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ev: &'a ChangeEvent = self.ev;
        let mut m = s.serialize_map(None)?;
        if ev.op == Op::Ddl {
            // Debezium's schema-change record, plus tidemark's kind and position.
            let ddl = ev.ddl.as_deref();
            m.serialize_entry("source", &SourceJson(self))?;
            m.serialize_entry("ts_ms", &(self.now_ns / 1_000_000))?;
            m.serialize_entry("databaseName", &ev.db().unwrap_or(""))?;
            m.serialize_entry("schemaName", &None::<&str>)?;
            m.serialize_entry("ddl", &ddl.map(|d| d.statement.as_str()))?;
            m.serialize_entry("tableChanges", &[(); 0])?;
            m.serialize_entry("ddl_kind", &ddl.map(|d| d.kind.name()))?;
            m.serialize_entry("position", &PositionJson(&ev.position))?;
            return m.end();
        }
        let table = ev.table.as_deref();
        let row = |r: &'a Option<Vec<Value>>| -> Option<RowJson<'a>> {
            r.as_ref().and_then(|values| {
                table.map(|table| RowJson {
                    enc: self.enc,
                    table,
                    values,
                    connector: ev.connector,
                })
            })
        };
        m.serialize_entry("before", &row(&ev.before))?;
        m.serialize_entry("after", &row(&ev.after))?;
        m.serialize_entry("source", &SourceJson(self))?;
        if self.enc.transaction_metadata() && ev.tx.snapshot.is_none() {
            m.serialize_entry("transaction", &TransactionJson(ev))?;
        } else {
            m.serialize_entry("transaction", &None::<()>)?;
        }
        m.serialize_entry("op", ev.op.code())?;
        m.serialize_entry("ts_ms", &(self.now_ns / 1_000_000))?;
        m.serialize_entry("ts_us", &(self.now_ns / 1_000))?;
        m.serialize_entry("ts_ns", &self.now_ns)?;
        m.serialize_entry("position", &PositionJson(&ev.position))?;
        m.end()
    }
}

struct PositionJson<'a>(&'a Position);

impl Serialize for PositionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// Debezium's transaction id: the GTID when there is one.
pub fn transaction_id(ev: &ChangeEvent) -> String {
    if let Some(g) = &ev.tx.gtid {
        return g.clone();
    }
    match ev.position.stream_position() {
        Position::Binlog(b) => format!("{}:{}", b.file, b.tx_pos),
        Position::Lsn(l) => format!("{}:{}", ev.tx.xid.unwrap_or_default(), l.commit_lsn),
        Position::Snapshot(_) => String::new(),
    }
}

struct TransactionJson<'a>(&'a ChangeEvent);

impl Serialize for TransactionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ev = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("id", &transaction_id(ev))?;
        m.serialize_entry("total_order", &ev.tx_order)?;
        m.serialize_entry("data_collection_order", &ev.table_order)?;
        m.end()
    }
}

struct SourceJson<'a>(&'a Envelope<'a>);

impl Serialize for SourceJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let env = self.0;
        let ev = env.ev;
        let ts_ms = ev.tx.commit_ts_ms;
        let table = ev.table.as_deref();
        let table_name = table
            .map(|t| t.name.as_str())
            .or_else(|| ev.ddl.as_deref().and_then(|d| d.table.as_deref()));
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("version", concat!("tidemark-", env!("CARGO_PKG_VERSION")))?;
        m.serialize_entry("connector", ev.connector.name())?;
        m.serialize_entry("name", &env.enc.name)?;
        m.serialize_entry("ts_ms", &ts_ms)?;
        let snapshot = match ev.tx.snapshot {
            Some(mark) => mark.name(),
            None if ev.op == Op::Read => "true",
            None => "false",
        };
        m.serialize_entry("snapshot", snapshot)?;
        m.serialize_entry("db", &ev.db())?;
        let snapshot_row = matches!(ev.position, Position::Snapshot(_));
        match ev.position.stream_position() {
            Position::Binlog(b) => {
                m.serialize_entry("sequence", &None::<()>)?;
                m.serialize_entry("ts_us", &(ts_ms * 1000))?;
                m.serialize_entry("ts_ns", &(ts_ms * 1_000_000))?;
                m.serialize_entry("table", &table_name)?;
                m.serialize_entry("server_id", &ev.tx.server_id)?;
                m.serialize_entry("gtid", &ev.tx.gtid)?;
                m.serialize_entry("file", &*b.file)?;
                m.serialize_entry("pos", &b.tx_pos)?;
                m.serialize_entry("row", &if snapshot_row { 0 } else { ev.source_offset })?;
                m.serialize_entry("thread", &None::<()>)?;
                m.serialize_entry("query", &None::<()>)?;
            }
            Position::Lsn(l) => {
                m.serialize_entry("sequence", &None::<()>)?;
                m.serialize_entry("ts_us", &(ts_ms * 1000))?;
                m.serialize_entry("ts_ns", &(ts_ms * 1_000_000))?;
                m.serialize_entry("schema", &table.and_then(|t| t.schema.as_deref()))?;
                m.serialize_entry("table", &table_name)?;
                m.serialize_entry("txId", &ev.tx.xid)?;
                if snapshot_row {
                    m.serialize_entry("lsn", &l.commit_lsn)?;
                } else {
                    m.serialize_entry("lsn", &ev.source_offset)?;
                    m.serialize_entry("commit_lsn", &l.commit_lsn)?;
                }
                m.serialize_entry("xmin", &None::<()>)?;
                m.serialize_entry("origin", &None::<()>)?;
                m.serialize_entry("origin_lsn", &None::<()>)?;
            }
            Position::Snapshot(_) => {}
        }
        m.serialize_entry("task", &env.enc.task)?;
        m.end()
    }
}

struct RowJson<'a> {
    enc: &'a JsonEncoder,
    table: &'a TableSchema,
    values: &'a [Value],
    connector: Connector,
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.values.len()))?;
        for (col, v) in self.table.columns.iter().zip(self.values) {
            m.serialize_entry(
                &col.name,
                &ValueJson {
                    enc: self.enc,
                    col,
                    v,
                    connector: self.connector,
                },
            )?;
        }
        m.end()
    }
}

struct KeyJson<'a> {
    enc: &'a JsonEncoder,
    table: &'a TableSchema,
    row: &'a [Value],
    connector: Connector,
}

impl Serialize for KeyJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.table.key.len()))?;
        for &k in &self.table.key {
            if let (Some(col), Some(v)) = (self.table.columns.get(k), self.row.get(k)) {
                m.serialize_entry(
                    &col.name,
                    &ValueJson {
                        enc: self.enc,
                        col,
                        v,
                        connector: self.connector,
                    },
                )?;
            }
        }
        m.end()
    }
}

mod fast;
pub mod values;

use values::ValueJson;
pub use values::{format_uuid, iso_utc, twos_complement};

#[cfg(test)]
mod tests;
