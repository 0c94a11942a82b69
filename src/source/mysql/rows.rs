//! Row images of MySQL/MariaDB rows events → [`Value`]s.
//!
//! Pure decoding: the column kinds come from the table map (see
//! `schema.rs`), the bytes from the rows event. Formats follow the server's
//! `Field::pack` for each type (sql/field.cc) and the packed temporal formats
//! of MySQL 5.6.4+ / MariaDB 10.1+.

use std::sync::Arc;

use super::charset::Charset;
use super::jsonb;
use super::reader::{DecodeError, Reader};
use crate::event::value::{Date, DateTime, Time, Value};

/// How one column's value is stored in a row image.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    /// TINYINT..BIGINT: width in bytes.
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// BIT(n): `bits` in `bytes` big-endian bytes.
    Bit {
        bits: u32,
        bytes: u8,
    },
    /// Labels from the table map; empty when the server didn't send them.
    Enum {
        pack: u8,
        labels: Arc<[String]>,
    },
    Set {
        pack: u8,
        labels: Arc<[String]>,
    },
    /// CHAR/BINARY: length prefix of 1 or 2 bytes; BINARY(n) is zero-padded
    /// back to `pad_to` bytes (the binlog strips trailing zeros).
    FixedString {
        len_bytes: u8,
        charset: Charset,
        pad_to: Option<usize>,
    },
    /// VARCHAR/VARBINARY.
    VarString {
        len_bytes: u8,
        charset: Charset,
    },
    /// BLOB/TEXT (and MariaDB JSON, a LONGTEXT).
    Blob {
        len_bytes: u8,
        charset: Charset,
    },
    /// MySQL's binary JSON.
    Json {
        len_bytes: u8,
    },
    Geometry {
        len_bytes: u8,
    },
    /// MySQL 9 VECTOR: float32 elements.
    Vector {
        len_bytes: u8,
    },
    Date,
    /// Pre-5.6 TIME, DATETIME, TIMESTAMP.
    TimeOld,
    DateTimeOld,
    TimestampOld,
    Time2 {
        fsp: u8,
    },
    DateTime2 {
        fsp: u8,
    },
    Timestamp2 {
        fsp: u8,
    },
    Year,
    Null,
}

impl ColumnKind {
    /// SQL-ish type name written to the schema (`int unsigned`, `varchar`).
    pub fn type_name(&self) -> String {
        match self {
            ColumnKind::Int { bytes, unsigned } => {
                let base = match bytes {
                    1 => "tinyint",
                    2 => "smallint",
                    3 => "mediumint",
                    4 => "int",
                    _ => "bigint",
                };
                if *unsigned {
                    format!("{base} unsigned")
                } else {
                    base.to_string()
                }
            }
            ColumnKind::Float => "float".into(),
            ColumnKind::Double => "double".into(),
            ColumnKind::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColumnKind::Bit { bits, .. } => format!("bit({bits})"),
            ColumnKind::Enum { .. } => "enum".into(),
            ColumnKind::Set { .. } => "set".into(),
            ColumnKind::FixedString { charset, .. } => if *charset == Charset::Binary {
                "binary"
            } else {
                "char"
            }
            .into(),
            ColumnKind::VarString { charset, .. } => if *charset == Charset::Binary {
                "varbinary"
            } else {
                "varchar"
            }
            .into(),
            ColumnKind::Blob { charset, .. } => if *charset == Charset::Binary {
                "blob"
            } else {
                "text"
            }
            .into(),
            ColumnKind::Json { .. } => "json".into(),
            ColumnKind::Geometry { .. } => "geometry".into(),
            ColumnKind::Vector { .. } => "vector".into(),
            ColumnKind::Date => "date".into(),
            ColumnKind::TimeOld => "time".into(),
            ColumnKind::DateTimeOld => "datetime".into(),
            ColumnKind::TimestampOld => "timestamp".into(),
            ColumnKind::Time2 { fsp } => format!("time({fsp})"),
            ColumnKind::DateTime2 { fsp } => format!("datetime({fsp})"),
            ColumnKind::Timestamp2 { fsp } => format!("timestamp({fsp})"),
            ColumnKind::Year => "year".into(),
            ColumnKind::Null => "null".into(),
        }
    }
}

/// Columns of a bitmap that are set, for the row image's column list.
pub fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1)
}

/// Decodes one row image: the null bitmap for the present columns, then
/// each present non-null value. Columns absent from `present` become
/// [`Value::Unchanged`] (minimal row images).
pub fn decode_row(
    kinds: &[ColumnKind],
    present: &[u8],
    r: &mut Reader<'_>,
) -> Result<Vec<Value>, DecodeError> {
    decode_row_json(kinds, present, r, &mut JsonImage::Plain)
}

/// How JSON columns of a row image are read (MySQL 8 partial JSON updates).
pub enum JsonImage<'a> {
    Plain,
    /// Before image of a partial update: keep each JSON column's document.
    Collect(&'a mut Vec<(usize, jsonb::Json)>),
    /// After image of a partial update: JSON columns flagged in `partial`
    /// (one bit per JSON column) hold diffs against the before documents.
    Partial {
        partial: &'a [u8],
        before: &'a [(usize, jsonb::Json)],
    },
}

/// [`decode_row`] with control over JSON columns.
pub fn decode_row_json(
    kinds: &[ColumnKind],
    present: &[u8],
    r: &mut Reader<'_>,
    json: &mut JsonImage<'_>,
) -> Result<Vec<Value>, DecodeError> {
    let present_count = (0..kinds.len()).filter(|&i| bit(present, i)).count();
    let nulls = r.take(present_count.div_ceil(8), "row null bitmap")?;
    let mut out = Vec::with_capacity(kinds.len());
    let mut image_idx = 0;
    let mut json_seen = 0;
    for (i, kind) in kinds.iter().enumerate() {
        // Index among the table's JSON columns, for the partial-update bitmap.
        let json_idx = json_seen;
        if matches!(kind, ColumnKind::Json { .. }) {
            json_seen += 1;
        }
        if !bit(present, i) {
            out.push(Value::Unchanged);
            continue;
        }
        let is_null = bit(nulls, image_idx);
        image_idx += 1;
        if is_null {
            out.push(Value::Null);
        } else if let (ColumnKind::Json { len_bytes }, false) =
            (kind, matches!(json, JsonImage::Plain))
        {
            let bytes = length_prefixed(r, *len_bytes)?;
            let doc = match json {
                JsonImage::Partial { partial, before } if bit(partial, json_idx) => {
                    let diffs = jsonb::decode_diffs(bytes)?;
                    let base = before
                        .iter()
                        .find(|(c, _)| *c == i)
                        .map(|(_, d)| d.clone())
                        .ok_or_else(|| {
                            r.err(format!(
                                "partial JSON update of column {} without a before image",
                                i + 1
                            ))
                        })?;
                    jsonb::apply_diffs(base, &diffs).map_err(|e| r.err(e))?
                }
                _ => jsonb::decode(bytes)?,
            };
            let mut text = String::new();
            jsonb::render(&doc, &mut text);
            if let JsonImage::Collect(docs) = json {
                docs.push((i, doc));
            }
            out.push(Value::Json(text));
        } else {
            let v = decode_value(kind, r).map_err(|mut e| {
                e.what = format!("column {} ({}): {}", i + 1, kind.type_name(), e.what);
                e
            })?;
            out.push(v);
        }
    }
    Ok(out)
}

fn length_prefixed<'a>(r: &mut Reader<'a>, len_bytes: u8) -> Result<&'a [u8], DecodeError> {
    let n = r.uint_le(usize::from(len_bytes), "length prefix")?;
    let n = usize::try_from(n).map_err(|_| r.err("value length overflows"))?;
    r.take(n, "value")
}

fn text_or_bytes(charset: Charset, bytes: &[u8]) -> Value {
    if charset == Charset::Binary {
        return Value::Bytes(bytes.to_vec());
    }
    match charset.decode(bytes) {
        Some(s) => Value::Text(s),
        // Bytes that are not valid in the column's character set (or a
        // character set without a decoder) are kept as they are.
        None => Value::Bytes(bytes.to_vec()),
    }
}

pub fn decode_value(kind: &ColumnKind, r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    Ok(match kind {
        ColumnKind::Int { bytes, unsigned } => {
            let n = usize::from(*bytes);
            let raw = r.uint_le(n, "integer")?;
            if *unsigned {
                Value::UInt(raw)
            } else {
                let shift = 64 - 8 * n as u32;
                Value::Int(((raw << shift) as i64) >> shift)
            }
        }
        ColumnKind::Float => Value::Float(f32::from_bits(r.uint_le(4, "float")? as u32)),
        ColumnKind::Double => Value::Double(f64::from_bits(r.uint_le(8, "double")?)),
        ColumnKind::Decimal { precision, scale } => {
            Value::Decimal(decode_decimal(r, *precision, *scale)?)
        }
        ColumnKind::Bit { bits, bytes } => {
            let b = r.take(usize::from(*bytes), "bit value")?;
            if *bits == 1 {
                Value::Bool(b.last().is_some_and(|x| x & 1 == 1))
            } else {
                Value::Bits {
                    bytes: b.to_vec(),
                    len: *bits,
                }
            }
        }
        ColumnKind::Enum { pack, labels } => {
            let idx = r.uint_le(usize::from(*pack), "enum index")? as usize;
            match idx {
                // Index 0 is the '' error value of non-strict inserts.
                0 => Value::Enum(String::new()),
                _ if labels.is_empty() => Value::Int(idx as i64),
                _ => Value::Enum(
                    labels
                        .get(idx - 1)
                        .ok_or_else(|| {
                            r.err(format!(
                                "enum index {idx} beyond the {} labels of the column",
                                labels.len()
                            ))
                        })?
                        .clone(),
                ),
            }
        }
        ColumnKind::Set { pack, labels } => {
            let bits = r.uint_le(usize::from(*pack), "set bits")?;
            if labels.is_empty() {
                Value::UInt(bits)
            } else {
                let mut s = String::new();
                for i in 0..64 {
                    if bits >> i & 1 == 1 {
                        let label = labels.get(i).ok_or_else(|| {
                            r.err(format!(
                                "set member {i} beyond the {} labels of the column",
                                labels.len()
                            ))
                        })?;
                        if !s.is_empty() {
                            s.push(',');
                        }
                        s.push_str(label);
                    }
                }
                Value::Set(s)
            }
        }
        ColumnKind::FixedString {
            len_bytes,
            charset,
            pad_to,
        } => {
            let b = length_prefixed(r, *len_bytes)?;
            match pad_to {
                Some(n) if b.len() < *n => {
                    let mut v = b.to_vec();
                    v.resize(*n, 0);
                    Value::Bytes(v)
                }
                _ => text_or_bytes(*charset, b),
            }
        }
        ColumnKind::VarString { len_bytes, charset } | ColumnKind::Blob { len_bytes, charset } => {
            text_or_bytes(*charset, length_prefixed(r, *len_bytes)?)
        }
        ColumnKind::Json { len_bytes } => {
            let b = length_prefixed(r, *len_bytes)?;
            Value::Json(jsonb::to_text(b)?)
        }
        ColumnKind::Geometry { len_bytes } => {
            let b = length_prefixed(r, *len_bytes)?;
            let mut g = Reader::new(b);
            let srid = g.uint_le(4, "geometry SRID")? as u32;
            Value::Geometry {
                srid,
                wkb: g.rest().to_vec(),
            }
        }
        ColumnKind::Vector { len_bytes } => {
            let b = length_prefixed(r, *len_bytes)?;
            if b.len() % 4 != 0 {
                return Err(r.err("vector length is not a multiple of 4"));
            }
            let mut s = String::from("[");
            for (i, c) in b.chunks_exact(4).enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                s.push_str(&serde_json::to_string(&f).unwrap_or_else(|_| "null".into()));
            }
            s.push(']');
            Value::Json(s)
        }
        ColumnKind::Date => {
            let v = r.uint_le(3, "date")?;
            Value::Date(Date {
                year: (v >> 9) as i32,
                month: ((v >> 5) & 15) as u8,
                day: (v & 31) as u8,
            })
        }
        ColumnKind::Year => {
            let y = r.u8("year")?;
            Value::Year(if y == 0 { 0 } else { 1900 + u16::from(y) })
        }
        ColumnKind::TimeOld => {
            let raw = r.uint_le(3, "time")? as i64;
            let v = (raw << 40) >> 40; // sign-extend 24 bits
            let (neg, a) = (v < 0, v.unsigned_abs() as i64);
            let secs = (a / 10000) * 3600 + (a / 100 % 100) * 60 + a % 100;
            Value::Time(Time {
                micros: if neg { -secs } else { secs } * 1_000_000,
                precision: 0,
            })
        }
        ColumnKind::DateTimeOld => {
            let v = r.uint_le(8, "datetime")?;
            let (d, t) = (v / 1_000_000, v % 1_000_000);
            Value::DateTime(DateTime {
                date: Date {
                    year: (d / 10000) as i32,
                    month: (d / 100 % 100) as u8,
                    day: (d % 100) as u8,
                },
                micros_of_day: ((t / 10000) * 3600 + (t / 100 % 100) * 60 + t % 100) * 1_000_000,
                precision: 0,
            })
        }
        ColumnKind::TimestampOld => timestamp(r.uint_le(4, "timestamp")? as i64, 0, 0),
        ColumnKind::Timestamp2 { fsp } => {
            let secs = r.uint_be(4, "timestamp")? as i64;
            let frac = match fsp {
                1 | 2 => r.uint_be(1, "timestamp fraction")? as i64 * 10_000,
                3 | 4 => r.uint_be(2, "timestamp fraction")? as i64 * 100,
                5 | 6 => r.uint_be(3, "timestamp fraction")? as i64,
                _ => 0,
            };
            if frac >= 1_000_000 {
                return Err(r.err(format!("timestamp fraction {frac} out of range")));
            }
            timestamp(secs, frac, *fsp)
        }
        ColumnKind::Time2 { fsp } => {
            let packed = packed_time2(r, *fsp, 3, 0x80_0000)?;
            let neg = packed < 0;
            let p = packed.unsigned_abs();
            let hms = p >> 24;
            let frac = p % (1 << 24);
            let hour = (hms >> 12) % (1 << 10);
            let minute = (hms >> 6) % (1 << 6);
            let second = hms % (1 << 6);
            let micros = ((hour * 3600 + minute * 60 + second) * 1_000_000 + frac) as i64;
            Value::Time(Time {
                micros: if neg { -micros } else { micros },
                precision: *fsp,
            })
        }
        ColumnKind::DateTime2 { fsp } => {
            let packed = packed_time2(r, *fsp, 5, 0x80_0000_0000)?;
            let p = packed.unsigned_abs();
            let ymdhms = p >> 24;
            let frac = p % (1 << 24);
            let ymd = ymdhms >> 17;
            let ym = ymd >> 5;
            let hms = ymdhms % (1 << 17);
            Value::DateTime(DateTime {
                date: Date {
                    year: (ym / 13) as i32,
                    month: (ym % 13) as u8,
                    day: (ymd % (1 << 5)) as u8,
                },
                micros_of_day: ((hms >> 12) * 3600 + ((hms >> 6) % 64) * 60 + hms % 64) * 1_000_000
                    + frac,
                precision: *fsp,
            })
        }
        ColumnKind::Null => Value::Null,
    })
}

/// A TIMESTAMP value; second 0 is MySQL's zero timestamp, which has no
/// instant and is kept as a zero date-time.
fn timestamp(secs: i64, frac: i64, fsp: u8) -> Value {
    if secs == 0 && frac == 0 {
        return Value::DateTime(DateTime {
            date: Date {
                year: 0,
                month: 0,
                day: 0,
            },
            micros_of_day: 0,
            precision: fsp,
        });
    }
    Value::Timestamp {
        epoch_micros: secs * 1_000_000 + frac,
        precision: fsp,
    }
}

/// Reads the packed (int part << 24 | fraction) form shared by TIME2 and
/// DATETIME2: `int_bytes` big-endian bytes offset by `int_ofs`, then the
/// fraction bytes for `fsp` (my_time_packed_from_binary).
fn packed_time2(
    r: &mut Reader<'_>,
    fsp: u8,
    int_bytes: usize,
    int_ofs: i64,
) -> Result<i64, DecodeError> {
    if fsp > 6 {
        return Err(r.err(format!("fractional precision {fsp} above 6")));
    }
    if int_bytes == 3 && fsp >= 5 {
        // TIME(5..6) is one 6-byte big-endian value.
        return Ok(r.uint_be(6, "time")? as i64 - 0x8000_0000_0000);
    }
    let mut int = r.uint_be(int_bytes, "temporal")? as i64 - int_ofs;
    let frac = match fsp {
        1 | 2 => {
            let mut f = r.uint_be(1, "fraction")? as i64;
            if int < 0 && f != 0 {
                int += 1;
                f -= 0x100;
            }
            f * 10_000
        }
        3 | 4 => {
            let mut f = r.uint_be(2, "fraction")? as i64;
            if int < 0 && f != 0 {
                int += 1;
                f -= 0x10000;
            }
            f * 100
        }
        5 | 6 => r.uint_be(3, "fraction")? as i64,
        _ => 0,
    };
    Ok((int << 24) + frac)
}

const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Size in bytes of a binary DECIMAL(precision, scale).
pub fn decimal_size(precision: u8, scale: u8) -> usize {
    let intg = usize::from(precision.saturating_sub(scale));
    let frac = usize::from(scale);
    intg / 9 * 4 + DIG2BYTES[intg % 9] + frac / 9 * 4 + DIG2BYTES[frac % 9]
}

/// Decodes MySQL's binary DECIMAL into exact text with `scale` fractional
/// digits (decimal2bin's format).
pub fn decode_decimal(r: &mut Reader<'_>, precision: u8, scale: u8) -> Result<String, DecodeError> {
    if precision == 0 || precision > 65 || scale > 38 || scale > precision {
        return Err(r.err(format!("invalid DECIMAL({precision},{scale}) metadata")));
    }
    let bytes = r.take(decimal_size(precision, scale), "decimal")?;
    let Some(first) = bytes.first() else {
        return Err(r.err("empty decimal"));
    };
    // The sign is the inverted top bit; negative values are stored inverted.
    let negative = first & 0x80 == 0;
    let mask: u8 = if negative { 0xff } else { 0 };
    let mut buf: Vec<u8> = bytes.iter().map(|b| b ^ mask).collect();
    buf[0] ^= 0x80;

    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    let mut g = Reader::new(&buf);
    let mut int_digits = String::new();
    let group = |g: &mut Reader<'_>, digits: usize| -> Result<String, DecodeError> {
        let v = g.uint_be(DIG2BYTES[digits], "decimal digits")?;
        if v >= 10u64.pow(digits as u32) {
            return Err(g.err(format!("decimal group {v} has more than {digits} digits")));
        }
        Ok(format!("{v:0digits$}"))
    };
    if intg % 9 > 0 {
        int_digits.push_str(&group(&mut g, intg % 9)?);
    }
    for _ in 0..intg / 9 {
        int_digits.push_str(&group(&mut g, 9)?);
    }
    let mut frac_digits = String::with_capacity(frac);
    for _ in 0..frac / 9 {
        frac_digits.push_str(&group(&mut g, 9)?);
    }
    if frac % 9 > 0 {
        frac_digits.push_str(&group(&mut g, frac % 9)?);
    }
    let int_part = int_digits.trim_start_matches('0');
    let is_zero = int_part.is_empty() && frac_digits.bytes().all(|b| b == b'0');
    let mut out = String::with_capacity(int_part.len() + frac + 3);
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(if int_part.is_empty() { "0" } else { int_part });
    if frac > 0 {
        out.push('.');
        out.push_str(&frac_digits);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "rows_tests.rs"]
pub(crate) mod tests;
