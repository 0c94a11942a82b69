//! Column values as JSON: the type mapping of docs/json-format.md.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use super::{
    BigintUnsignedHandling, BinaryHandling, DecimalHandling, IntervalHandling, JsonEncoder,
    ZeroDateHandling,
};
use crate::event::value::{Date, DateTime, InfiniteKind, Value, write_fraction, write_hms};
use crate::event::{ColumnDef, Connector};

pub(super) struct ValueJson<'a> {
    pub(super) enc: &'a JsonEncoder,
    pub(super) col: &'a ColumnDef,
    pub(super) v: &'a Value,
    pub(super) connector: Connector,
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
                        let sub = crate::event::value::Array {
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
pub fn iso_interval(months: i32, days: i32, micros: i64) -> String {
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
