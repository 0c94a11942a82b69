//! Debezium-compatible JSON envelope for change events.
//!
//! The envelope is Debezium's (`before`, `after`, `source`, `transaction`,
//! `op`, `ts_ms`, `ts_us`, `ts_ns`) plus tidemark's `position`. Value
//! encodings follow Debezium's connectors with the options below; where
//! Debezium's default loses data the default here is a lossless one. The full
//! mapping is in docs/json-format.md.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::value::{Date, DateTime, InfiniteKind, Value, write_fraction, write_hms};
use super::{ChangeEvent, ColumnDef, Connector, Op, Position, TableSchema};

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
}

impl JsonEncoder {
    pub fn new(opts: JsonOptions, name: impl Into<String>, task: impl Into<String>) -> Self {
        JsonEncoder {
            opts,
            name: name.into(),
            task: task.into(),
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
        // Serializing plain data into a Vec cannot fail: every map key is a string.
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
        if self.enc.transaction_metadata() {
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
    match &ev.position {
        Position::Binlog(b) => format!("{}:{}", b.file, b.tx_pos),
        Position::Lsn(l) => format!("{}:{}", ev.tx.xid.unwrap_or_default(), l.commit_lsn),
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
        m.serialize_entry("snapshot", if ev.op == Op::Read { "true" } else { "false" })?;
        m.serialize_entry("db", &ev.db())?;
        match &ev.position {
            Position::Binlog(b) => {
                m.serialize_entry("sequence", &None::<()>)?;
                m.serialize_entry("ts_us", &(ts_ms * 1000))?;
                m.serialize_entry("ts_ns", &(ts_ms * 1_000_000))?;
                m.serialize_entry("table", &table_name)?;
                m.serialize_entry("server_id", &ev.tx.server_id)?;
                m.serialize_entry("gtid", &ev.tx.gtid)?;
                m.serialize_entry("file", &*b.file)?;
                m.serialize_entry("pos", &b.tx_pos)?;
                m.serialize_entry("row", &ev.source_offset)?;
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
                m.serialize_entry("lsn", &ev.source_offset)?;
                m.serialize_entry("commit_lsn", &l.commit_lsn)?;
                m.serialize_entry("xmin", &None::<()>)?;
                m.serialize_entry("origin", &None::<()>)?;
                m.serialize_entry("origin_lsn", &None::<()>)?;
            }
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

struct ValueJson<'a> {
    enc: &'a JsonEncoder,
    col: &'a ColumnDef,
    v: &'a Value,
    connector: Connector,
}

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let opts = &self.enc.opts;
        let pg = self.connector == Connector::Postgres;
        match self.v {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => match opts.bigint_unsigned_handling {
                BigintUnsignedHandling::Exact => s.serialize_u64(*u),
                BigintUnsignedHandling::Long => s.serialize_i64(*u as i64),
                BigintUnsignedHandling::Precise => {
                    s.serialize_str(&BASE64.encode(twos_complement(&u.to_string())))
                }
            },
            Value::Float(f) if f.is_finite() => s.serialize_f32(*f),
            Value::Double(d) if d.is_finite() => s.serialize_f64(*d),
            Value::Float(f) => s.serialize_str(non_finite(f64::from(*f))),
            Value::Double(d) => s.serialize_str(non_finite(*d)),
            Value::Decimal(text) => serialize_decimal(s, text, self.col, opts.decimal_handling),
            Value::Text(t) | Value::Enum(t) | Value::Set(t) | Value::Json(t) => s.serialize_str(t),
            Value::Network(t) | Value::Other(t) => s.serialize_str(t),
            Value::Composite(t) => s.serialize_str(t),
            Value::Bytes(b) => s.serialize_str(&self.binary(b)),
            Value::Bits { bytes, len } => {
                if pg {
                    // Lossless: keeps the length and leading zeros of bit strings.
                    s.serialize_str(&bit_string(bytes, *len))
                } else {
                    // Debezium's Bits: little-endian bytes.
                    let le: Vec<u8> = bytes.iter().rev().copied().collect();
                    s.serialize_str(&self.binary(&le))
                }
            }
            Value::Date(d) => match d.epoch_days() {
                Some(days) => s.serialize_i64(days),
                None => self.zero(s, &zero_date_text(d)),
            },
            Value::Time(t) => {
                if pg && t.precision <= 3 {
                    s.serialize_i64(t.micros / 1000)
                } else {
                    s.serialize_i64(t.micros)
                }
            }
            Value::TimeTz {
                micros,
                offset_secs,
            } => {
                let mut out = String::with_capacity(24);
                write_hms(
                    &mut out,
                    (*micros).max(0) as u64,
                    iso_fraction_digits(*micros),
                );
                write_offset(&mut out, *offset_secs);
                s.serialize_str(&out)
            }
            Value::DateTime(dt) => match dt.epoch_micros() {
                Some(us) if dt.precision <= 3 => s.serialize_i64(us.div_euclid(1000)),
                Some(us) => s.serialize_i64(us),
                None => self.zero(s, &zero_datetime_text(dt)),
            },
            Value::Timestamp {
                epoch_micros,
                precision,
            } => {
                let digits = if pg {
                    iso_fraction_digits(*epoch_micros)
                } else {
                    *precision
                };
                s.serialize_str(&iso_utc(*epoch_micros, digits))
            }
            Value::Infinite { kind, negative } => {
                let text = if *negative { "-infinity" } else { "infinity" };
                match kind {
                    InfiniteKind::Date | InfiniteKind::Timestamp | InfiniteKind::TimestampTz => {
                        s.serialize_str(text)
                    }
                }
            }
            Value::Year(y) => s.serialize_u16(*y),
            Value::Geometry { srid, wkb } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("wkb", &self.binary(wkb))?;
                m.serialize_entry("srid", srid)?;
                m.end()
            }
            Value::Interval {
                months,
                days,
                micros,
            } => match opts.interval_handling {
                IntervalHandling::String => s.serialize_str(&iso_interval(*months, *days, *micros)),
                IntervalHandling::Numeric => {
                    // Debezium's approximation: 30.4375-day months.
                    let month_us = 2_629_800_000_000_i64;
                    s.serialize_i64(
                        i64::from(*months) * month_us + i64::from(*days) * 86_400_000_000 + micros,
                    )
                }
            },
            Value::Uuid(u) => s.serialize_str(&format_uuid(u)),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.elements.len()))?;
                if a.dims.len() <= 1 {
                    for v in &a.elements {
                        seq.serialize_element(&self.with(v))?;
                    }
                } else {
                    // Nested arrays, one level per dimension.
                    let inner: usize = a.dims[1..].iter().map(|&d| d as usize).product();
                    for chunk in a.elements.chunks(inner.max(1)) {
                        let sub = super::value::Array {
                            dims: a.dims[1..].to_vec(),
                            elements: chunk.to_vec(),
                        };
                        seq.serialize_element(&self.with(&Value::Array(Box::new(sub))))?;
                    }
                }
                seq.end()
            }
            Value::Unchanged => s.serialize_str(self.enc.placeholder()),
        }
    }
}

impl<'a> ValueJson<'a> {
    fn with<'b>(&'b self, v: &'b Value) -> ValueJson<'b> {
        ValueJson {
            enc: self.enc,
            col: self.col,
            v,
            connector: self.connector,
        }
    }

    fn binary(&self, b: &[u8]) -> String {
        match self.enc.opts.binary_handling {
            BinaryHandling::Base64 => BASE64.encode(b),
            BinaryHandling::Hex => {
                let mut s = String::with_capacity(b.len() * 2);
                for x in b {
                    let _ = write!(s, "{x:02x}");
                }
                s
            }
        }
    }

    fn zero<S: Serializer>(&self, s: S, text: &str) -> Result<S::Ok, S::Error> {
        match self.enc.opts.zero_date_handling {
            ZeroDateHandling::String => s.serialize_str(text),
            ZeroDateHandling::Null => s.serialize_none(),
        }
    }
}

fn non_finite(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn serialize_decimal<S: Serializer>(
    s: S,
    text: &str,
    col: &ColumnDef,
    mode: DecimalHandling,
) -> Result<S::Ok, S::Error> {
    let special = matches!(text, "NaN" | "Infinity" | "-Infinity");
    match mode {
        DecimalHandling::String => s.serialize_str(text),
        DecimalHandling::Double => match text.parse::<f64>() {
            Ok(d) if d.is_finite() => s.serialize_f64(d),
            _ => s.serialize_str(text),
        },
        // Debezium writes null here; the text keeps the value.
        DecimalHandling::Precise if special => s.serialize_str(text),
        DecimalHandling::Precise => {
            let scale = text.split_once('.').map_or(0, |(_, f)| f.len());
            let digits: String = text.chars().filter(|c| *c != '.').collect();
            let unscaled = BASE64.encode(twos_complement(&digits));
            if col.type_name == "numeric" {
                // PostgreSQL numeric without a declared scale: VariableScaleDecimal.
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("scale", &scale)?;
                m.serialize_entry("value", &unscaled)?;
                m.end()
            } else {
                s.serialize_str(&unscaled)
            }
        }
    }
}

/// Big-endian two's-complement bytes of a decimal integer text (`-123`),
/// as Java's `BigInteger.toByteArray`.
pub fn twos_complement(int_text: &str) -> Vec<u8> {
    let (neg, digits) = match int_text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, int_text),
    };
    // Magnitude, big-endian base 256.
    let mut mag: Vec<u8> = vec![0];
    for c in digits.bytes().filter(u8::is_ascii_digit) {
        let mut carry = u32::from(c - b'0');
        for byte in mag.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let first_nonzero = mag.iter().position(|&b| b != 0).unwrap_or(mag.len());
    let mut mag = mag.split_off(first_nonzero);
    if mag.is_empty() {
        return vec![0];
    }
    if neg {
        // Two's complement: invert and add one.
        for b in mag.iter_mut() {
            *b = !*b;
        }
        for b in mag.iter_mut().rev() {
            let (v, overflow) = b.overflowing_add(1);
            *b = v;
            if !overflow {
                break;
            }
        }
        if mag[0] & 0x80 == 0 {
            mag.insert(0, 0xff);
        }
    } else if mag[0] & 0x80 != 0 {
        mag.insert(0, 0);
    }
    mag
}

fn bit_string(bytes: &[u8], len: u32) -> String {
    let total = bytes.len() * 8;
    let len = (len as usize).min(total);
    let mut out = String::with_capacity(len);
    for i in (total - len)..total {
        let bit = bytes[i / 8] >> (7 - (i % 8)) & 1;
        out.push(if bit == 1 { '1' } else { '0' });
    }
    out
}

/// Java's ISO time formatting: 0, 3 or 6 fractional digits, as needed.
fn iso_fraction_digits(micros: i64) -> u8 {
    let frac = micros.rem_euclid(1_000_000);
    if frac == 0 {
        0
    } else if frac % 1000 == 0 {
        3
    } else {
        6
    }
}

fn write_offset(out: &mut String, offset_secs: i32) {
    if offset_secs == 0 {
        out.push('Z');
        return;
    }
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let a = offset_secs.unsigned_abs();
    let _ = write!(out, "{sign}{:02}:{:02}", a / 3600, (a / 60) % 60);
    if !a.is_multiple_of(60) {
        let _ = write!(out, ":{:02}", a % 60);
    }
}

/// `2038-01-19T03:14:07.999999Z` with `digits` fractional digits.
pub fn iso_utc(epoch_micros: i64, digits: u8) -> String {
    let days = epoch_micros.div_euclid(86_400_000_000);
    let us = epoch_micros.rem_euclid(86_400_000_000) as u64;
    let d = Date::from_epoch_days(days);
    let mut out = String::with_capacity(32);
    write_year(&mut out, d.year);
    let _ = write!(out, "-{:02}-{:02}T", d.month, d.day);
    write_hms(&mut out, us, 0);
    write_fraction(&mut out, us % 1_000_000, digits);
    out.push('Z');
    out
}

fn write_year(out: &mut String, year: i32) {
    if (0..=9999).contains(&year) {
        let _ = write!(out, "{year:04}");
    } else {
        let _ = write!(out, "{year:+05}");
    }
}

fn zero_date_text(d: &Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

fn zero_datetime_text(dt: &DateTime) -> String {
    let mut out = zero_date_text(&dt.date);
    out.push(' ');
    write_hms(&mut out, dt.micros_of_day, dt.precision);
    out
}

/// ISO-8601 duration as Debezium's `interval.handling.mode=string`.
fn iso_interval(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::from("P");
    let _ = write!(out, "{}Y{}M{}DT", months / 12, months % 12, days);
    let neg = micros < 0;
    let a = micros.unsigned_abs();
    let secs = a / 1_000_000;
    let frac = a % 1_000_000;
    let sign = if neg { "-" } else { "" };
    let _ = write!(
        out,
        "{sign}{}H{sign}{}M{sign}{}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        let _ = write!(out, ".{}", f.trim_end_matches('0'));
    }
    out.push('S');
    out
}

pub fn format_uuid(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::value::Time;
    use crate::event::{BinlogPosition, TxMeta};
    use std::sync::Arc;

    fn col(name: &str, ty: &str) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            type_name: ty.into(),
            nullable: true,
        }
    }

    fn encode_one(
        connector: Connector,
        ty: &str,
        v: Value,
        opts: JsonOptions,
    ) -> serde_json::Value {
        let table = Arc::new(TableSchema {
            db: "d".into(),
            schema: None,
            name: "t".into(),
            columns: vec![col("v", ty)],
            key: vec![],
            version: 0,
        });
        let ev = ChangeEvent {
            op: Op::Create,
            position: Position::Binlog(BinlogPosition::start_of("f.000001", 4)),
            tx: Arc::new(TxMeta::default()),
            table: Some(table),
            before: None,
            after: Some(vec![v]),
            ddl: None,
            source_offset: 0,
            tx_order: 1,
            table_order: 1,
            connector,
        };
        let mut out = Vec::new();
        JsonEncoder::new(opts, "fx", "t1").encode(&ev, 0, &mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        parsed["after"]["v"].clone()
    }

    fn mysql(ty: &str, v: Value) -> serde_json::Value {
        encode_one(Connector::Mariadb, ty, v, JsonOptions::default())
    }

    #[test]
    fn twos_complement_matches_java_biginteger() {
        // Values from Debezium's fixtures (DECIMAL(38,9) unscaled).
        let b = twos_complement("12345678901234567890123456789123456789");
        assert_eq!(BASE64.encode(b), "CUmw9vACMxPESZBQ5NhfFQ==");
        let b = twos_complement("-99999999999999999999999999999999999999");
        assert_eq!(BASE64.encode(b), "tMSzV6V5O4X2dd3AAAAAAQ==");
        assert_eq!(twos_complement("0"), vec![0]);
        assert_eq!(twos_complement("128"), vec![0, 128]);
        assert_eq!(twos_complement("-128"), vec![0x80]);
        assert_eq!(twos_complement("-129"), vec![0xff, 0x7f]);
        assert_eq!(twos_complement("1234567"), vec![0x12, 0xd6, 0x87]);
    }

    #[test]
    fn decimal_modes() {
        let v = || Value::Decimal("12345678901234567890123456789.123456789".into());
        assert_eq!(
            mysql("decimal(38,9)", v()),
            serde_json::json!("12345678901234567890123456789.123456789")
        );
        let precise = JsonOptions {
            decimal_handling: DecimalHandling::Precise,
            ..Default::default()
        };
        assert_eq!(
            encode_one(Connector::Mariadb, "decimal(38,9)", v(), precise.clone()),
            serde_json::json!("CUmw9vACMxPESZBQ5NhfFQ==")
        );
        assert_eq!(
            encode_one(
                Connector::Postgres,
                "numeric",
                Value::Decimal("123456789012345678901234567890.123456789012".into()),
                precise.clone()
            ),
            serde_json::json!({"scale": 12, "value": "AWrOkK3/Ves0I3mVVuiQoDoU"})
        );
        // NaN stays NaN, where Debezium writes null.
        assert_eq!(
            encode_one(
                Connector::Postgres,
                "numeric",
                Value::Decimal("NaN".into()),
                precise
            ),
            serde_json::json!("NaN")
        );
    }

    #[test]
    fn unsigned_bigint_is_exact_by_default() {
        assert_eq!(
            mysql("bigint unsigned", Value::UInt(u64::MAX)),
            serde_json::json!(18446744073709551615u64)
        );
        let long = JsonOptions {
            bigint_unsigned_handling: BigintUnsignedHandling::Long,
            ..Default::default()
        };
        assert_eq!(
            encode_one(
                Connector::Mariadb,
                "bigint unsigned",
                Value::UInt(u64::MAX),
                long
            ),
            serde_json::json!(-1)
        );
    }

    #[test]
    fn temporal_values_match_debezium_adaptive_mode() {
        let date = Date {
            year: 2024,
            month: 2,
            day: 29,
        };
        assert_eq!(mysql("date", Value::Date(date)), serde_json::json!(19782));
        let dt = |precision| {
            Value::DateTime(DateTime {
                date,
                micros_of_day: 86_399_999_999,
                precision,
            })
        };
        assert_eq!(
            mysql("datetime", dt(0)),
            serde_json::json!(1709251199999i64)
        );
        assert_eq!(
            mysql("datetime(6)", dt(6)),
            serde_json::json!(1709251199999999i64)
        );
        assert_eq!(
            mysql(
                "time(3)",
                Value::Time(Time {
                    micros: -3_020_399_999_000,
                    precision: 3
                })
            ),
            serde_json::json!(-3020399999000i64)
        );
        assert_eq!(
            mysql(
                "timestamp(6)",
                Value::Timestamp {
                    epoch_micros: 1_000_000,
                    precision: 6
                }
            ),
            serde_json::json!("1970-01-01T00:00:01.000000Z")
        );
        assert_eq!(
            mysql(
                "timestamp(6)",
                Value::Timestamp {
                    epoch_micros: 2_147_483_647_999_999,
                    precision: 6
                }
            ),
            serde_json::json!("2038-01-19T03:14:07.999999Z")
        );
        assert_eq!(mysql("year", Value::Year(2155)), serde_json::json!(2155));
    }

    #[test]
    fn zero_dates_are_kept_as_text_or_null_on_request() {
        let zero = Date {
            year: 0,
            month: 0,
            day: 0,
        };
        assert_eq!(
            mysql("date", Value::Date(zero)),
            serde_json::json!("0000-00-00")
        );
        let zdt = Value::DateTime(DateTime {
            date: zero,
            micros_of_day: 0,
            precision: 6,
        });
        assert_eq!(
            mysql("datetime(6)", zdt.clone()),
            serde_json::json!("0000-00-00 00:00:00.000000")
        );
        let null = JsonOptions {
            zero_date_handling: ZeroDateHandling::Null,
            ..Default::default()
        };
        assert_eq!(
            encode_one(Connector::Mariadb, "datetime(6)", zdt, null),
            serde_json::Value::Null
        );
    }

    #[test]
    fn bits_floats_and_binary() {
        assert_eq!(
            mysql(
                "bit(10)",
                Value::Bits {
                    bytes: vec![0x02, 0xAB],
                    len: 10
                }
            ),
            serde_json::json!("qwI=")
        );
        assert_eq!(
            encode_one(
                Connector::Postgres,
                "varbit",
                Value::Bits {
                    bytes: vec![0x05],
                    len: 4
                },
                JsonOptions::default()
            ),
            serde_json::json!("0101")
        );
        assert_eq!(
            mysql("double", Value::Double(f64::NAN)),
            serde_json::json!("NaN")
        );
        assert_eq!(
            mysql("double", Value::Double(f64::NEG_INFINITY)),
            serde_json::json!("-Infinity")
        );
        assert_eq!(
            mysql("float", Value::Float(1.23456)),
            serde_json::json!(1.23456)
        );
        assert_eq!(
            mysql("binary(4)", Value::Bytes(vec![0xde, 0xad, 0xbe, 0])),
            serde_json::json!("3q2+AA==")
        );
    }

    #[test]
    fn intervals_uuids_and_timetz() {
        let v = encode_one(
            Connector::Postgres,
            "interval",
            Value::Interval {
                months: 14,
                days: 3,
                micros: 14_706_789_000,
            },
            JsonOptions::default(),
        );
        assert_eq!(v, serde_json::json!("P1Y2M3DT4H5M6.789S"));
        let numeric = JsonOptions {
            interval_handling: IntervalHandling::Numeric,
            ..Default::default()
        };
        let v = encode_one(
            Connector::Postgres,
            "interval",
            Value::Interval {
                months: 14,
                days: 3,
                micros: 14_706_789_000,
            },
            numeric,
        );
        assert_eq!(v, serde_json::json!(37091106789000i64));
        let u: [u8; 16] = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        assert_eq!(format_uuid(&u), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        let v = encode_one(
            Connector::Postgres,
            "timetz",
            Value::TimeTz {
                micros: 45_296_789_012,
                offset_secs: 19_800,
            },
            JsonOptions::default(),
        );
        assert_eq!(v, serde_json::json!("12:34:56.789012+05:30"));
    }
}
