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
pub(crate) mod tests {
    use super::*;
    use mysql_common::binlog::decimal::Decimal;

    /// Encodes decimal text as a DECIMAL(precision, scale) column (decimal2bin).
    pub(crate) fn dec_bytes(text: &str, precision: usize, scale: usize) -> Vec<u8> {
        let (neg, t) = match text.strip_prefix('-') {
            Some(t) => (true, t),
            None => (false, text),
        };
        let (i, f) = t.split_once('.').unwrap_or((t, ""));
        let intg = precision - scale;
        let i = format!("{:0>intg$}", i.trim_start_matches('0'));
        let f = format!("{f:0<scale$}");
        let mut out = Vec::new();
        let mut put = |digits: &str| {
            if digits.is_empty() {
                return;
            }
            let v: u64 = digits.parse().unwrap();
            let n = DIG2BYTES[digits.len()];
            out.extend_from_slice(&v.to_be_bytes()[8 - n..]);
        };
        let lead = intg % 9;
        put(&i[..lead]);
        for c in i.as_bytes()[lead..].chunks(9) {
            put(std::str::from_utf8(c).unwrap());
        }
        for c in f.as_bytes().chunks(9) {
            put(std::str::from_utf8(c).unwrap());
        }
        if neg {
            for b in out.iter_mut() {
                *b = !*b;
            }
        }
        out[0] ^= 0x80;
        out
    }

    #[test]
    fn decimals_agree_with_mysql_common() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let p = (next() % 65 + 1) as usize;
            let s = (next() % (p.min(30) as u64 + 1)) as usize;
            let int: String = (0..p - s)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            let frac: String = (0..s)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            let sign = if next() % 2 == 0 { "-" } else { "" };
            let text = if s > 0 {
                format!("{sign}{int}.{frac}")
            } else {
                format!("{sign}{int}")
            };
            let bytes = dec_bytes(&text, p, s);
            let ours = decode_decimal(&mut Reader::new(&bytes), p as u8, s as u8).unwrap();
            let theirs = Decimal::read_bin(&bytes[..], p, s, false)
                .unwrap()
                .to_string();
            let theirs = if theirs.starts_with("-")
                && theirs.trim_start_matches(['-', '0', '.']).is_empty()
            {
                theirs[1..].to_string()
            } else {
                theirs
            };
            assert_eq!(ours, theirs, "{text} ({p},{s})");
        }
    }

    #[test]
    fn decimals_match_known_encodings() {
        // DECIMAL(38,9) values from Debezium's fixtures, encoded by
        // mysql_common's reference implementation.
        for (text, p, s) in [
            ("12345678901234567890123456789.123456789", 38u8, 9u8),
            ("-99999999999999999999999999999.999999999", 38, 9),
            ("0.000000000", 38, 9),
            ("-0.500000000", 38, 9),
            ("1.500", 10, 3),
            ("-12345", 5, 0),
            ("0.12", 2, 2),
        ] {
            let bytes = dec_bytes(text, p as usize, s as usize);
            assert_eq!(bytes.len(), decimal_size(p, s), "{text}");
            let got = decode_decimal(&mut Reader::new(&bytes), p, s).unwrap();
            assert_eq!(got, text);
        }
    }

    #[test]
    fn decimal_rejects_bad_metadata_and_digits() {
        assert!(decode_decimal(&mut Reader::new(&[0; 20]), 5, 9).is_err());
        assert!(decode_decimal(&mut Reader::new(&[0; 2]), 10, 2).is_err());
        // A 9-digit group holding 10^9 is corrupt.
        let mut b = vec![0x80 | 0x3b, 0x9a, 0xca, 0x00];
        b[0] = 0x80 ^ 0x3b ^ 0x80 | 0x80;
        assert!(decode_decimal(&mut Reader::new(&b), 9, 0).is_err());
    }

    fn one(kind: ColumnKind, bytes: &[u8]) -> Value {
        let mut r = Reader::new(bytes);
        let v = decode_value(&kind, &mut r).unwrap();
        assert!(r.is_empty(), "{kind:?} left {} bytes", r.remaining());
        v
    }

    #[test]
    fn integers_of_every_width() {
        let i = |bytes, unsigned| ColumnKind::Int { bytes, unsigned };
        assert_eq!(one(i(1, false), &[0x80]), Value::Int(-128));
        assert_eq!(one(i(1, true), &[0xff]), Value::UInt(255));
        assert_eq!(one(i(3, false), &[0, 0, 0x80]), Value::Int(-8388608));
        assert_eq!(one(i(3, true), &[0xff, 0xff, 0xff]), Value::UInt(16777215));
        assert_eq!(one(i(8, true), &[0xff; 8]), Value::UInt(u64::MAX));
        assert_eq!(
            one(i(8, false), &[0, 0, 0, 0, 0, 0, 0, 0x80]),
            Value::Int(i64::MIN)
        );
    }

    #[test]
    fn temporal_types() {
        // DATETIME2(6) 2024-02-29 23:59:59.999999
        let ym: u64 = 2024 * 13 + 2;
        let ymd = ym << 5 | 29;
        let hms: u64 = 23 << 12 | 59 << 6 | 59;
        let int = (ymd << 17 | hms) + 0x80_0000_0000;
        let mut b = int.to_be_bytes()[3..].to_vec();
        b.extend_from_slice(&999_999u32.to_be_bytes()[1..]);
        let v = one(ColumnKind::DateTime2 { fsp: 6 }, &b);
        let Value::DateTime(dt) = v else {
            panic!("{v:?}")
        };
        assert_eq!(dt.epoch_micros(), Some(1_709_251_199_999_999));

        // TIME2(3) -838:59:59.999 (as the server packs it: int part + 1, fraction - 0x10000)
        let secs_packed: i64 = 838 << 12 | 59 << 6 | 59;
        let int = -secs_packed - 1 + 0x80_0000;
        let frac = 0x10000 - 9990;
        let mut b = (int as u32).to_be_bytes()[1..].to_vec();
        b.extend_from_slice(&(frac as u16).to_be_bytes());
        assert_eq!(
            one(ColumnKind::Time2 { fsp: 3 }, &b),
            Value::Time(Time {
                micros: -3_020_399_999_000,
                precision: 3
            })
        );
        // TIME2(0) 12:34:56
        let int = (12 << 12 | 34 << 6 | 56) + 0x80_0000u32;
        assert_eq!(
            one(ColumnKind::Time2 { fsp: 0 }, &int.to_be_bytes()[1..]),
            Value::Time(Time {
                micros: 45_296_000_000,
                precision: 0
            })
        );
        // TIMESTAMP2(6) 1970-01-01 00:00:01.000000 and the zero timestamp.
        assert_eq!(
            one(ColumnKind::Timestamp2 { fsp: 6 }, &[0, 0, 0, 1, 0, 0, 0]),
            Value::Timestamp {
                epoch_micros: 1_000_000,
                precision: 6
            }
        );
        assert!(matches!(
            one(ColumnKind::Timestamp2 { fsp: 0 }, &[0, 0, 0, 0]),
            Value::DateTime(DateTime {
                date: Date { year: 0, .. },
                ..
            })
        ));
        // DATE 2024-02-29 and YEAR.
        let d: u32 = 2024 << 9 | 2 << 5 | 29;
        assert_eq!(
            one(ColumnKind::Date, &d.to_le_bytes()[..3]),
            Value::Date(Date {
                year: 2024,
                month: 2,
                day: 29
            })
        );
        assert_eq!(one(ColumnKind::Year, &[255]), Value::Year(2155));
        assert_eq!(one(ColumnKind::Year, &[0]), Value::Year(0));
    }

    #[test]
    fn strings_enums_sets_bits() {
        let labels: Arc<[String]> = vec!["small".into(), "medium".into(), "large".into()].into();
        assert_eq!(
            one(
                ColumnKind::Enum {
                    pack: 1,
                    labels: labels.clone()
                },
                &[2]
            ),
            Value::Enum("medium".into())
        );
        assert!(
            decode_value(
                &ColumnKind::Enum { pack: 1, labels },
                &mut Reader::new(&[9])
            )
            .is_err()
        );
        let set: Arc<[String]> = vec!["a".into(), "b".into(), "c".into(), "d".into()].into();
        assert_eq!(
            one(
                ColumnKind::Set {
                    pack: 1,
                    labels: set
                },
                &[0b101]
            ),
            Value::Set("a,c".into())
        );
        assert_eq!(
            one(
                ColumnKind::FixedString {
                    len_bytes: 1,
                    charset: Charset::Binary,
                    pad_to: Some(4)
                },
                &[3, 0xde, 0xad, 0xbe]
            ),
            Value::Bytes(vec![0xde, 0xad, 0xbe, 0])
        );
        assert_eq!(
            one(
                ColumnKind::VarString {
                    len_bytes: 1,
                    charset: Charset::Other(encoding_rs::WINDOWS_1252)
                },
                b"\x04caf\xe9"
            ),
            Value::Text("café".into())
        );
        // Invalid UTF-8 in a utf8mb4 column is kept as bytes.
        assert_eq!(
            one(
                ColumnKind::Blob {
                    len_bytes: 2,
                    charset: Charset::Utf8
                },
                &[1, 0, 0xff]
            ),
            Value::Bytes(vec![0xff])
        );
        assert_eq!(
            one(ColumnKind::Bit { bits: 10, bytes: 2 }, &[0x02, 0xab]),
            Value::Bits {
                bytes: vec![0x02, 0xab],
                len: 10
            }
        );
        assert_eq!(
            one(ColumnKind::Bit { bits: 1, bytes: 1 }, &[1]),
            Value::Bool(true)
        );
    }

    #[test]
    fn row_with_nulls_and_minimal_image() {
        let kinds = vec![
            ColumnKind::Int {
                bytes: 4,
                unsigned: false,
            },
            ColumnKind::VarString {
                len_bytes: 1,
                charset: Charset::Utf8,
            },
            ColumnKind::Int {
                bytes: 1,
                unsigned: false,
            },
        ];
        // Columns 0 and 1 present; column 1 null.
        let bytes = [0b10, 7, 0, 0, 0];
        let row = decode_row(&kinds, &[0b011], &mut Reader::new(&bytes)).unwrap();
        assert_eq!(row, vec![Value::Int(7), Value::Null, Value::Unchanged]);
    }

    #[test]
    fn truncated_rows_are_errors_at_every_length() {
        let kinds = vec![
            ColumnKind::Int {
                bytes: 8,
                unsigned: true,
            },
            ColumnKind::Decimal {
                precision: 38,
                scale: 9,
            },
            ColumnKind::Blob {
                len_bytes: 2,
                charset: Charset::Utf8,
            },
            ColumnKind::DateTime2 { fsp: 6 },
        ];
        let mut full = vec![0u8];
        full.extend_from_slice(&[1; 8]);
        full.extend_from_slice(&dec_bytes("1.000000000", 38, 9));
        full.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
        full.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert!(decode_row(&kinds, &[0xf], &mut Reader::new(&full)).is_ok());
        for n in 0..full.len() {
            let e = decode_row(&kinds, &[0xf], &mut Reader::new(&full[..n]));
            assert!(e.is_err(), "prefix {n} decoded");
        }
    }
}
