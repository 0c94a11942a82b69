//! MySQL/MariaDB snapshot rows → the values streaming gives for the same row.
//!
//! The snapshot reads rows with prepared statements (binary protocol,
//! session `time_zone = '+00:00'`, connection charset utf8mb4) and describes
//! tables from `information_schema.COLUMNS`. A row read this way must become
//! exactly the [`Value`]s that the binlog decoder (`source::mysql::rows`)
//! gives for the same row, and the table the same [`TableSchema`] (and so the
//! same `version`) that `source::mysql::schema::build` makes from a table map
//! with full metadata (binlog_row_metadata=FULL).

use std::sync::Arc;

use mysql_common::value::Value as Wire;

use crate::event::value::{Date, DateTime, Time, Value};
use crate::event::{ColumnDef, TableSchema};
use crate::source::mysql::charset::Charset;
use crate::source::mysql::rows::ColumnKind;
use crate::source::mysql::schema::TableCodec;

/// One column as information_schema.COLUMNS describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    /// DATA_TYPE, lower case: "int", "varchar", "decimal", "datetime", "enum", ...
    pub data_type: String,
    /// COLUMN_TYPE: "int(10) unsigned", "enum('a','b')", "decimal(10,2)", "bit(5)", "binary(16)", ...
    pub column_type: String,
    /// CHARACTER_SET_NAME (None for non-character columns).
    pub charset: Option<String>,
    /// IS_NULLABLE = 'YES'.
    pub nullable: bool,
    pub numeric_precision: Option<u64>,
    pub numeric_scale: Option<u64>,
    pub datetime_precision: Option<u64>,
    /// CHARACTER_OCTET_LENGTH (bytes), for CHAR/BINARY/VARCHAR/...
    pub octet_length: Option<u64>,
}

/// The column kinds and schema streaming would use for this table.
/// `key`: indices of the primary key columns in key order.
pub fn table_codec(
    db: &str,
    table: &str,
    columns: &[ColumnInfo],
    key: Vec<usize>,
) -> Result<TableCodec, String> {
    if let Some(k) = key.iter().find(|&&k| k >= columns.len()) {
        return Err(format!(
            "{db}.{table}: primary key column index {k} is beyond the table's {} columns",
            columns.len()
        ));
    }
    let mut kinds = Vec::with_capacity(columns.len());
    let mut defs = Vec::with_capacity(columns.len());
    for c in columns {
        let kind = column_kind(c).map_err(|e| format!("{db}.{table}: {e}"))?;
        defs.push(ColumnDef {
            name: c.name.clone(),
            type_name: kind.type_name(),
            nullable: c.nullable,
        });
        kinds.push(kind);
    }
    let version = TableSchema::fingerprint(&defs, &key);
    Ok(TableCodec {
        schema: Arc::new(TableSchema {
            merged: None,
            db: db.to_string(),
            schema: None,
            name: table.to_string(),
            columns: defs,
            key,
            uniques: Vec::new(),
            before_complete: true,
            defaults: Vec::new(),
            version,
        }),
        kinds,
        selected: true,
    })
}

/// One column kind from information_schema (errors name the column and type).
pub fn column_kind(c: &ColumnInfo) -> Result<ColumnKind, String> {
    let err = |why: &str| format!("column {} ({}): {why}", c.name, c.column_type);
    let data_type = c.data_type.to_ascii_lowercase();
    // "int(10) unsigned zerofill", "bigint unsigned"
    let unsigned = c
        .column_type
        .split_whitespace()
        .any(|w| w.eq_ignore_ascii_case("unsigned"));
    let args = type_args(&c.column_type);
    let arg = |i: usize| args.get(i).copied();
    let charset = c
        .charset
        .as_deref()
        .map_or(Charset::Binary, Charset::from_name);
    let octets = || -> Result<usize, String> {
        c.octet_length
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| err("no CHARACTER_OCTET_LENGTH"))
    };
    let fsp = || -> Result<u8, String> {
        let p = c.datetime_precision.or(arg(0)).unwrap_or(0);
        u8::try_from(p)
            .ok()
            .filter(|&p| p <= 6)
            .ok_or_else(|| err(&format!("fractional-second precision {p} above 6")))
    };
    let blob = |len_bytes: u8| ColumnKind::Blob { len_bytes, charset };
    Ok(match data_type.as_str() {
        "tinyint" => ColumnKind::Int { bytes: 1, unsigned },
        "smallint" => ColumnKind::Int { bytes: 2, unsigned },
        "mediumint" => ColumnKind::Int { bytes: 3, unsigned },
        "int" => ColumnKind::Int { bytes: 4, unsigned },
        "bigint" => ColumnKind::Int { bytes: 8, unsigned },
        "float" => ColumnKind::Float,
        "double" => ColumnKind::Double,
        "decimal" => {
            let p = c.numeric_precision.or(arg(0)).unwrap_or(10);
            let s = c.numeric_scale.or(arg(1)).unwrap_or(0);
            match (u8::try_from(p), u8::try_from(s)) {
                (Ok(precision), Ok(scale))
                    if (1..=65).contains(&precision) && scale <= 38 && scale <= precision =>
                {
                    ColumnKind::Decimal { precision, scale }
                }
                _ => return Err(err(&format!("invalid DECIMAL({p},{s})"))),
            }
        }
        "bit" => {
            let n = c.numeric_precision.or(arg(0)).unwrap_or(1);
            match u8::try_from(n) {
                Ok(n) if (1..=64).contains(&n) => ColumnKind::Bit {
                    bits: u32::from(n),
                    bytes: n.div_ceil(8),
                },
                _ => return Err(err(&format!("invalid BIT({n})"))),
            }
        }
        "enum" | "set" => {
            let labels = parse_labels(&c.column_type);
            if labels.is_empty() {
                return Err(err("no labels in COLUMN_TYPE"));
            }
            let n = labels.len();
            if data_type == "enum" {
                // get_enum_pack_length: index 0 is the '' error value.
                ColumnKind::Enum {
                    pack: if n < 256 { 1 } else { 2 },
                    labels: labels.into(),
                }
            } else {
                if n > 64 {
                    return Err(err(&format!("{n} SET members, above 64")));
                }
                // get_set_pack_length: one bit per member, 5..8 bytes as 8.
                let bytes = n.div_ceil(8);
                ColumnKind::Set {
                    pack: if bytes > 4 { 8 } else { bytes as u8 },
                    labels: labels.into(),
                }
            }
        }
        "char" | "binary" => {
            let len = octets()?;
            ColumnKind::FixedString {
                len_bytes: if len > 255 { 2 } else { 1 },
                charset,
                pad_to: (charset == Charset::Binary).then_some(len),
            }
        }
        "varchar" | "varbinary" => ColumnKind::VarString {
            len_bytes: if octets()? > 255 { 2 } else { 1 },
            charset,
        },
        "tinytext" | "tinyblob" => blob(1),
        "text" | "blob" => blob(2),
        "mediumtext" | "mediumblob" => blob(3),
        "longtext" | "longblob" => blob(4),
        "json" => ColumnKind::Json { len_bytes: 4 },
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => {
            ColumnKind::Geometry { len_bytes: 4 }
        }
        "vector" => ColumnKind::Vector { len_bytes: 4 },
        "date" => ColumnKind::Date,
        "time" => ColumnKind::Time2 { fsp: fsp()? },
        "datetime" => ColumnKind::DateTime2 { fsp: fsp()? },
        "timestamp" => ColumnKind::Timestamp2 { fsp: fsp()? },
        "year" => ColumnKind::Year,
        other => {
            return Err(err(&format!(
                "data type {other} is not supported by snapshots"
            )));
        }
    })
}

/// A value read with the binary protocol → the value the binlog gives.
pub fn value(kind: &ColumnKind, v: Wire) -> Result<Value, String> {
    if matches!(v, Wire::NULL) {
        return Ok(Value::Null);
    }
    let mismatch = |v: &Wire| {
        format!(
            "{} column: unexpected value from the server: {}",
            kind.type_name(),
            describe(v)
        )
    };
    let fail = |why: String| format!("{} column: {why}", kind.type_name());
    match (kind, v) {
        (ColumnKind::Int { bytes, unsigned }, v @ (Wire::Int(_) | Wire::UInt(_))) => {
            int(*bytes, *unsigned, &v).ok_or_else(|| mismatch(&v))
        }
        (ColumnKind::Float, Wire::Float(f)) => Ok(Value::Float(f)),
        (ColumnKind::Double, Wire::Double(d)) => Ok(Value::Double(d)),
        (ColumnKind::Decimal { precision, scale }, Wire::Bytes(b)) => {
            decimal_text(&b, *precision, *scale)
                .map(Value::Decimal)
                .map_err(fail)
        }
        (ColumnKind::Bit { bits, bytes }, Wire::Bytes(b)) => bit(b, *bits, *bytes).map_err(fail),
        (ColumnKind::Enum { .. }, Wire::Bytes(b)) => utf8(b).map(Value::Enum).map_err(fail),
        (ColumnKind::Set { .. }, Wire::Bytes(b)) => utf8(b).map(Value::Set).map_err(fail),
        (
            ColumnKind::FixedString {
                charset, pad_to, ..
            },
            Wire::Bytes(mut b),
        ) => Ok(match pad_to {
            // BINARY(n): the binlog strips trailing zeros and rows.rs pads
            // them back; the server already sends all n bytes.
            Some(n) if b.len() < *n => {
                b.resize(*n, 0);
                Value::Bytes(b)
            }
            _ => {
                if *charset != Charset::Binary {
                    // CHAR values lose their trailing spaces in the binlog
                    // (Field_string::pack) as on retrieval; this only matters
                    // under PAD_CHAR_TO_FULL_LENGTH.
                    let keep = b.iter().rposition(|&x| x != b' ').map_or(0, |i| i + 1);
                    b.truncate(keep);
                }
                text_or_bytes(*charset, b)
            }
        }),
        (
            ColumnKind::VarString { charset, .. } | ColumnKind::Blob { charset, .. },
            Wire::Bytes(b),
        ) => Ok(text_or_bytes(*charset, b)),
        (ColumnKind::Json { .. }, Wire::Bytes(b)) => {
            if b.is_empty() {
                // As jsonb::to_text reads an empty binary document.
                Ok(Value::Json("null".into()))
            } else {
                utf8(b).map(Value::Json).map_err(fail)
            }
        }
        (ColumnKind::Geometry { .. }, Wire::Bytes(mut b)) => {
            let Some(srid) = b.first_chunk::<4>().map(|s| u32::from_le_bytes(*s)) else {
                return Err(fail(format!(
                    "a {}-byte value is too short for a SRID",
                    b.len()
                )));
            };
            let wkb = b.split_off(4);
            Ok(Value::Geometry { srid, wkb })
        }
        (ColumnKind::Vector { .. }, Wire::Bytes(b)) => vector(&b).map_err(fail),
        (ColumnKind::Date, v @ Wire::Date(..)) => match v {
            Wire::Date(y, m, d, 0, 0, 0, 0) => Ok(Value::Date(Date {
                year: i32::from(y),
                month: m,
                day: d,
            })),
            v => Err(mismatch(&v)),
        },
        (ColumnKind::Time2 { fsp }, Wire::Time(neg, days, h, m, s, us)) => {
            time(neg, days, h, m, s, us, *fsp).map_err(fail)
        }
        (ColumnKind::TimeOld, Wire::Time(neg, days, h, m, s, us)) => {
            time(neg, days, h, m, s, us, 0).map_err(fail)
        }
        (ColumnKind::DateTime2 { fsp }, Wire::Date(y, mo, d, h, mi, s, us)) => {
            datetime(y, mo, d, h, mi, s, us, *fsp)
                .map(Value::DateTime)
                .map_err(fail)
        }
        (ColumnKind::DateTimeOld, Wire::Date(y, mo, d, h, mi, s, us)) => {
            datetime(y, mo, d, h, mi, s, us, 0)
                .map(Value::DateTime)
                .map_err(fail)
        }
        (ColumnKind::Timestamp2 { fsp }, Wire::Date(y, mo, d, h, mi, s, us)) => {
            timestamp(y, mo, d, h, mi, s, us, *fsp).map_err(fail)
        }
        (ColumnKind::TimestampOld, Wire::Date(y, mo, d, h, mi, s, us)) => {
            timestamp(y, mo, d, h, mi, s, us, 0).map_err(fail)
        }
        (ColumnKind::Year, v @ (Wire::Int(_) | Wire::UInt(_))) => {
            let y = match v {
                Wire::Int(i) => u16::try_from(i).ok(),
                Wire::UInt(u) => u16::try_from(u).ok(),
                _ => None,
            };
            match y {
                Some(y) if y == 0 || (1901..=2155).contains(&y) => Ok(Value::Year(y)),
                _ => Err(mismatch(&v)),
            }
        }
        (_, v) => Err(mismatch(&v)),
    }
}

/// Numbers between the parentheses of a COLUMN_TYPE: `decimal(10,2)` → [10, 2].
fn type_args(column_type: &str) -> Vec<u64> {
    let Some((_, rest)) = column_type.split_once('(') else {
        return Vec::new();
    };
    let inner = rest.split_once(')').map_or(rest, |(inner, _)| inner);
    inner
        .split(',')
        .map_while(|a| a.trim().parse().ok())
        .collect()
}

/// Labels of an `enum('a','b''c')` / `set(...)` COLUMN_TYPE, which the
/// server writes with append_unescaped: `'` doubled, `\` `NUL` `\n` `\r`
/// backslash-escaped.
fn parse_labels(column_type: &str) -> Vec<String> {
    let Some((_, inner)) = column_type.split_once('(') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if !quoted {
            match c {
                '\'' => quoted = true,
                ')' => break,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' => {
                if chars.as_str().starts_with('\'') {
                    chars.next();
                    cur.push('\'');
                } else {
                    quoted = false;
                    out.push(std::mem::take(&mut cur));
                }
            }
            '\\' => match chars.next() {
                Some('0') => cur.push('\0'),
                Some('n') => cur.push('\n'),
                Some('r') => cur.push('\r'),
                Some('t') => cur.push('\t'),
                Some('Z') => cur.push('\x1a'),
                Some(other) => cur.push(other),
                None => break,
            },
            c => cur.push(c),
        }
    }
    out
}

/// What the server sent, for errors (never the content of strings).
fn describe(v: &Wire) -> String {
    match v {
        Wire::NULL => "NULL".into(),
        Wire::Bytes(b) => format!("a {}-byte string", b.len()),
        Wire::Int(i) => format!("integer {i}"),
        Wire::UInt(u) => format!("unsigned integer {u}"),
        Wire::Float(f) => format!("float {f}"),
        Wire::Double(d) => format!("double {d}"),
        Wire::Date(y, mo, d, h, mi, s, us) => {
            format!("date-time {y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
        }
        Wire::Time(neg, days, h, m, s, us) => format!(
            "time {}{days}d {h:02}:{m:02}:{s:02}.{us:06}",
            if *neg { "-" } else { "" }
        ),
    }
}

fn utf8(b: Vec<u8>) -> Result<String, String> {
    String::from_utf8(b).map_err(|e| format!("the server sent invalid UTF-8 ({e})"))
}

/// An integer of a `bytes`-wide column; `None` when out of its range.
fn int(bytes: u8, unsigned: bool, v: &Wire) -> Option<Value> {
    let n = match *v {
        Wire::Int(i) => i128::from(i),
        Wire::UInt(u) => i128::from(u),
        _ => return None,
    };
    let bits = 8 * u32::from(bytes.clamp(1, 8));
    if unsigned {
        u64::try_from(n)
            .ok()
            .filter(|_| n < 1i128 << bits)
            .map(Value::UInt)
    } else {
        let half = 1i128 << (bits - 1);
        i64::try_from(n)
            .ok()
            .filter(|_| (-half..half).contains(&n))
            .map(Value::Int)
    }
}

/// The server's DECIMAL text in decode_decimal's form: no `+`, no leading
/// zeros, `0` before the point, exactly `scale` decimals, no sign on zero.
fn decimal_text(b: &[u8], precision: u8, scale: u8) -> Result<String, String> {
    let bad = || format!("{:?} is not a DECIMAL value", String::from_utf8_lossy(b));
    let text = std::str::from_utf8(b).map_err(|_| bad())?;
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    let scale = usize::from(scale);
    let frac = match (frac.get(..scale), frac.get(scale..)) {
        (Some(keep), Some(extra)) if extra.bytes().all(|c| c == b'0') => keep,
        (Some(_), Some(_)) => {
            return Err(format!("{text:?} has more than {scale} decimals"));
        }
        _ => frac,
    };
    if int.len() > usize::from(precision).saturating_sub(scale) {
        return Err(format!(
            "{text:?} has more integer digits than DECIMAL({precision},{scale}) holds"
        ));
    }
    let zero = int.is_empty() && frac.bytes().all(|c| c == b'0');
    let mut out = String::with_capacity(int.len() + scale + 3);
    if negative && !zero {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if scale > 0 {
        out.push('.');
        out.push_str(frac);
        out.extend(std::iter::repeat_n('0', scale - frac.len()));
    }
    Ok(out)
}

/// BIT(n): big-endian bytes brought to the binlog's width.
fn bit(mut b: Vec<u8>, bits: u32, bytes: u8) -> Result<Value, String> {
    let width = usize::from(bytes);
    if b.len() > width {
        let extra = b.len() - width;
        if b.iter().take(extra).any(|&x| x != 0) {
            return Err(format!(
                "a {}-byte value does not fit in BIT({bits})",
                b.len()
            ));
        }
        b.drain(..extra);
    } else if b.len() < width {
        let mut padded = vec![0; width - b.len()];
        padded.append(&mut b);
        b = padded;
    }
    let spare = (u32::from(bytes) * 8).saturating_sub(bits);
    if (1..8).contains(&spare) && b.first().is_some_and(|&x| x >> (8 - spare) != 0) {
        return Err(format!("the value has bits above BIT({bits})"));
    }
    Ok(if bits == 1 {
        Value::Bool(b.last().is_some_and(|x| x & 1 == 1))
    } else {
        Value::Bits {
            bytes: b,
            len: bits,
        }
    })
}

/// Character columns: the server converted the value to utf8mb4, so valid
/// UTF-8 is the text; as in rows.rs, `binary` columns and bytes that don't
/// decode stay bytes, and so do character sets without a decoder (the
/// binlog gives their raw bytes, which match these for ASCII text).
fn text_or_bytes(charset: Charset, b: Vec<u8>) -> Value {
    match charset {
        Charset::Binary | Charset::Unsupported => Value::Bytes(b),
        Charset::Utf8 | Charset::Utf32 | Charset::Other(_) => match String::from_utf8(b) {
            Ok(s) => Value::Text(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
    }
}

/// VECTOR: little-endian float32 elements → JSON array text, as rows.rs.
fn vector(b: &[u8]) -> Result<Value, String> {
    let (chunks, rest) = b.as_chunks::<4>();
    if !rest.is_empty() {
        return Err("vector length is not a multiple of 4".into());
    }
    let mut s = String::from("[");
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let f = f32::from_le_bytes(*c);
        s.push_str(&serde_json::to_string(&f).unwrap_or_else(|_| "null".into()));
    }
    s.push(']');
    Ok(Value::Json(s))
}

fn micros_of_day(h: u8, m: u8, s: u8, us: u32) -> Result<u64, String> {
    if h > 23 || m > 59 || s > 59 || us > 999_999 {
        return Err(format!("invalid time of day {h}:{m}:{s}.{us:06}"));
    }
    Ok((u64::from(h) * 3600 + u64::from(m) * 60 + u64::from(s)) * 1_000_000 + u64::from(us))
}

fn time(neg: bool, days: u32, h: u8, m: u8, s: u8, us: u32, fsp: u8) -> Result<Value, String> {
    let day = i64::try_from(micros_of_day(h, m, s, us)?).map_err(|e| e.to_string())?;
    let micros = i64::from(days) * 86_400_000_000 + day;
    Ok(Value::Time(Time {
        micros: if neg { -micros } else { micros },
        precision: fsp,
    }))
}

#[allow(clippy::too_many_arguments)]
fn datetime(
    y: u16,
    mo: u8,
    d: u8,
    h: u8,
    mi: u8,
    s: u8,
    us: u32,
    fsp: u8,
) -> Result<DateTime, String> {
    Ok(DateTime {
        date: Date {
            year: i32::from(y),
            month: mo,
            day: d,
        },
        micros_of_day: micros_of_day(h, mi, s, us)?,
        precision: fsp,
    })
}

/// A TIMESTAMP read in a `+00:00` session: the UTC wall clock of the instant.
/// The zero timestamp (and second 0, which is how the binlog stores it)
/// becomes the zero date-time, as rows.rs `timestamp(0, 0, fsp)` does.
#[allow(clippy::too_many_arguments)]
fn timestamp(
    y: u16,
    mo: u8,
    d: u8,
    h: u8,
    mi: u8,
    s: u8,
    us: u32,
    fsp: u8,
) -> Result<Value, String> {
    let dt = datetime(y, mo, d, h, mi, s, us, fsp)?;
    let zero = Value::DateTime(DateTime {
        date: Date {
            year: 0,
            month: 0,
            day: 0,
        },
        micros_of_day: 0,
        precision: fsp,
    });
    if y == 0 && mo == 0 && d == 0 && dt.micros_of_day == 0 {
        return Ok(zero);
    }
    let epoch_micros = dt
        .epoch_micros()
        .ok_or_else(|| format!("{y:04}-{mo:02}-{d:02} is not a calendar date"))?;
    // The binlog holds TIMESTAMP seconds as 4 unsigned bytes.
    if !(0..=i64::from(u32::MAX) * 1_000_000 + 999_999).contains(&epoch_micros) {
        return Err(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} is outside the TIMESTAMP range (is the session time_zone '+00:00'?)"
        ));
    }
    Ok(if epoch_micros == 0 {
        zero
    } else {
        Value::Timestamp {
            epoch_micros,
            precision: fsp,
        }
    })
}

#[cfg(test)]
#[path = "mysql_values_tests.rs"]
mod tests;
