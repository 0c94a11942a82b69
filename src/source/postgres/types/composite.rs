//! Composite (row) values: `(1,"a b",,"x""y")` becomes the JSON object text
//! `{"id":1,"name":"a b","note":null,"q":"x\"y"}`, keys in field order.
//!
//! Field values are decoded with their own types and rendered much as
//! PostgreSQL's `to_json` would: numbers and booleans bare, json embedded,
//! arrays as nested JSON arrays, nested composites as objects, temporal
//! values as ISO-8601 strings, bytea as `\x` hex strings. Intervals, which
//! have no lossless ISO form, become `{"months":..,"days":..,"micros":..}`.

use std::fmt::Write;

use super::{Field, PgType, TypeError, decode_text};
use crate::event::json::format_uuid;
use crate::event::value::{Date, Value};

pub(super) fn decode(ty: &PgType, fields: &[Field], text: &[u8]) -> Result<Value, TypeError> {
    let err = |reason| TypeError::new(ty, text, reason);
    let mut raw = split_fields(text).map_err(err)?;
    // A row without columns prints as `()`, which reads as one null field.
    if fields.is_empty() && raw == [None] {
        raw.clear();
    }
    if raw.len() != fields.len() {
        return Err(err("number of fields does not match the type"));
    }
    let mut out = String::from("{");
    for (i, (field, raw)) in fields.iter().zip(raw).enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, &field.name);
        out.push(':');
        let value = match raw {
            None => Value::Null,
            Some(t) => decode_text(&field.ty, &t)?,
        };
        write_value(&mut out, &value);
    }
    out.push('}');
    Ok(Value::Composite(out))
}

/// Splits `(a,"b c",,)` into fields the way record_in reads them: quotes
/// may open and close anywhere in a field, `""` inside quotes and `\c`
/// anywhere stand for the character, and a field of no characters at all is
/// null (while `""` is the empty string).
fn split_fields(text: &[u8]) -> Result<Vec<Option<Vec<u8>>>, &'static str> {
    let mut rest = text.strip_prefix(b"(").ok_or("expected '('")?;
    let mut fields = Vec::new();
    loop {
        let mut field = Vec::new();
        let mut present = false;
        let mut quoted = false;
        let end = loop {
            let (&b, tail) = rest.split_first().ok_or("unterminated row")?;
            rest = tail;
            match (b, rest) {
                (b'"', [b'"', tail @ ..]) if quoted => {
                    field.push(b'"');
                    rest = tail;
                }
                (b'"', _) => {
                    quoted = !quoted;
                    present = true;
                }
                (b'\\', [c, tail @ ..]) => {
                    field.push(*c);
                    rest = tail;
                    present = true;
                }
                (b'\\', []) => return Err("dangling backslash"),
                (b',' | b')', _) if !quoted => break b,
                _ => {
                    field.push(b);
                    present = true;
                }
            }
        };
        fields.push(present.then_some(field));
        if end == b')' {
            break;
        }
    }
    if !rest.is_empty() {
        return Err("unexpected text after the row");
    }
    Ok(fields)
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        // Unchanged cannot occur inside a row; null is the safe reading.
        Value::Null | Value::Unchanged => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => push_display(out, i),
        Value::UInt(u) => push_display(out, u),
        Value::Year(y) => push_display(out, y),
        Value::Float(f) => write_float(out, f64::from(*f), f),
        Value::Double(d) => write_float(out, *d, d),
        Value::Decimal(t) if matches!(t.as_str(), "NaN" | "Infinity" | "-Infinity") => {
            write_str(out, t)
        }
        Value::Decimal(t) | Value::Json(t) | Value::Composite(t) => out.push_str(t),
        Value::Text(t) | Value::Enum(t) | Value::Set(t) | Value::Network(t) | Value::Other(t) => {
            write_str(out, t)
        }
        Value::Bytes(b) => write_str(out, &hex("\\x", b)),
        Value::Bits { bytes, len } => write_str(out, &bit_text(bytes, *len)),
        Value::Date(d) => write_str(out, &date_text(d)),
        Value::Time(t) => {
            let mut s = String::new();
            if t.micros < 0 {
                s.push('-');
            }
            clock(&mut s, t.micros.unsigned_abs());
            write_str(out, &s);
        }
        Value::TimeTz {
            micros,
            offset_secs,
        } => {
            let mut s = String::new();
            clock(&mut s, micros.unsigned_abs());
            offset(&mut s, *offset_secs);
            write_str(out, &s);
        }
        Value::DateTime(dt) => {
            let mut s = date_text(&dt.date);
            s.push('T');
            clock(&mut s, dt.micros_of_day);
            write_str(out, &s);
        }
        Value::Timestamp { epoch_micros, .. } => {
            const DAY: i64 = 86_400_000_000;
            let mut s = date_text(&Date::from_epoch_days(epoch_micros.div_euclid(DAY)));
            s.push('T');
            clock(&mut s, epoch_micros.rem_euclid(DAY).unsigned_abs());
            s.push('Z');
            write_str(out, &s);
        }
        Value::Infinite { negative, .. } => {
            write_str(out, if *negative { "-infinity" } else { "infinity" })
        }
        Value::Interval {
            months,
            days,
            micros,
        } => {
            let _ = write!(
                out,
                r#"{{"months":{months},"days":{days},"micros":{micros}}}"#
            );
        }
        Value::Uuid(u) => write_str(out, &format_uuid(u)),
        Value::Geometry { srid, wkb } => {
            let _ = write!(out, r#"{{"srid":{srid},"wkb":"{}"}}"#, hex("", wkb));
        }
        Value::Array(a) => write_array(out, &a.dims, &a.elements),
    }
}

fn push_display(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

/// Shortest round-trip digits, in exponent form when plain digits would be long.
fn write_float(out: &mut String, magnitude: f64, v: impl std::fmt::Display + std::fmt::LowerExp) {
    if !magnitude.is_finite() {
        let text = if magnitude.is_nan() {
            "NaN"
        } else if magnitude > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        };
        write_str(out, text);
    } else if magnitude == 0.0 || (1e-6..1e21).contains(&magnitude.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

/// Nested JSON arrays, one level per dimension, from row-major elements.
fn write_array(out: &mut String, dims: &[u32], elements: &[Value]) {
    out.push('[');
    let inner = dims.get(1..).unwrap_or_default();
    if inner.is_empty() {
        for (i, v) in elements.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_value(out, v);
        }
    } else {
        let size = inner
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
            .unwrap_or(elements.len());
        for (i, chunk) in elements.chunks(size.max(1)).enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_array(out, inner, chunk);
        }
    }
    out.push(']');
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(prefix: &str, bytes: &[u8]) -> String {
    let mut s = String::with_capacity(prefix.len() + bytes.len() * 2);
    s.push_str(prefix);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The last `len` bits of `bytes`, most significant first.
fn bit_text(bytes: &[u8], len: u32) -> String {
    let total = bytes.len().saturating_mul(8);
    let skip = total.saturating_sub(usize::try_from(len).unwrap_or(total));
    bytes
        .iter()
        .flat_map(|b| {
            (0..8)
                .rev()
                .map(move |i| if b >> i & 1 == 1 { '1' } else { '0' })
        })
        .skip(skip)
        .collect()
}

/// ISO-8601 date with an astronomical year: `-0043-03-15` is 44 BC.
fn date_text(d: &Date) -> String {
    let sign = if d.year < 0 { "-" } else { "" };
    format!(
        "{sign}{:04}-{:02}-{:02}",
        d.year.unsigned_abs(),
        d.month,
        d.day
    )
}

/// `HH:MM:SS` and, if nonzero, the fraction without trailing zeros.
fn clock(out: &mut String, micros: u64) {
    let secs = micros / 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let frac = micros % 1_000_000;
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// `+05:30`, `-08:00`, `+05:30:15`.
fn offset(out: &mut String, offset_secs: i32) {
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let a = offset_secs.unsigned_abs();
    let _ = write!(out, "{sign}{:02}:{:02}", a / 3600, a / 60 % 60);
    if !a.is_multiple_of(60) {
        let _ = write!(out, ":{:02}", a % 60);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PgKind, builtin};
    use super::*;

    fn field(name: &str, oid: u32) -> Field {
        Field {
            name: name.into(),
            ty: builtin(oid, -1).expect("a built-in type"),
        }
    }

    fn row(fields: Vec<Field>) -> PgType {
        PgType {
            oid: 16_500,
            typmod: -1,
            name: "row_t".into(),
            kind: PgKind::Composite(fields),
        }
    }

    /// Decodes and checks that the result is valid JSON equal to `want`.
    fn json(ty: &PgType, text: &str) -> serde_json::Value {
        match decode_text(ty, text.as_bytes()) {
            Ok(Value::Composite(s)) => serde_json::from_str(&s).expect("valid JSON"),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn quoting_nulls_and_empty_strings() {
        let ty = row(vec![
            field("id", 23),
            field("name", 25),
            field("note", 25),
            field("q", 25),
        ]);
        assert_eq!(
            decode_text(&ty, br#"(1,"a b",,"x""y")"#),
            Ok(Value::Composite(
                r#"{"id":1,"name":"a b","note":null,"q":"x\"y"}"#.into()
            ))
        );
        assert_eq!(
            json(&ty, r#"(,"",a"b c"d,"back\\slash\"")"#),
            serde_json::json!({"id": null, "name": "", "note": "ab cd", "q": "back\\slash\""})
        );
        assert_eq!(
            json(&ty, "(2,\"line\nbreak\ttab\u{1}\",é,)"),
            serde_json::json!({"id": 2, "name": "line\nbreak\ttab\u{1}", "note": "é", "q": null})
        );
    }

    #[test]
    fn nested_composites_and_arrays() {
        let inner = row(vec![field("b", 23), field("c", 25)]);
        let ty = row(vec![
            field("a", 23),
            Field {
                name: "inner".into(),
                ty: inner,
            },
            field("arr", 1007),
            field("grid", 1009),
        ]);
        assert_eq!(
            json(
                &ty,
                r#"(1,"(2,""x y"")","{1,2,NULL}","{{a,""b c""},{NULL,d}}")"#
            ),
            serde_json::json!({
                "a": 1,
                "inner": {"b": 2, "c": "x y"},
                "arr": [1, 2, null],
                "grid": [["a", "b c"], [null, "d"]],
            })
        );
        assert_eq!(
            json(&ty, "(1,,{},)"),
            serde_json::json!({"a": 1, "inner": null, "arr": [], "grid": null})
        );
    }

    #[test]
    fn field_values_render_as_json() {
        let ty = row(vec![
            field("n", 1700),
            field("nan", 1700),
            field("f", 701),
            field("big", 701),
            field("inf", 700),
            field("ok", 16),
            field("d", 1082),
            field("ts", 1114),
            field("tstz", 1184),
            field("t", 1083),
            field("tz", 1266),
            field("iv", 1186),
            field("u", 2950),
            field("by", 17),
            field("bits", 1562),
            field("j", 3802),
        ]);
        let text = concat!(
            r#"(12.50,NaN,0.1,1e+300,-Infinity,t,"0044-03-15 BC","2024-01-02 03:04:05.5","#,
            r#""2024-01-02 05:04:05+02",24:00:00,"12:00:00-05:30","1 day 00:00:01","#,
            r#"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,"\\x00ff",0101,"{""k"": [1, 2]}")"#
        );
        assert_eq!(
            json(&ty, text),
            serde_json::json!({
                "n": 12.5, "nan": "NaN", "f": 0.1, "big": 1e300, "inf": "-Infinity",
                "ok": true, "d": "-0043-03-15", "ts": "2024-01-02T03:04:05.5",
                "tstz": "2024-01-02T03:04:05Z", "t": "24:00:00", "tz": "12:00:00-05:30",
                "iv": {"months": 0, "days": 1, "micros": 1_000_000},
                "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "by": "\\x00ff",
                "bits": "0101", "j": {"k": [1, 2]},
            })
        );
        let Ok(Value::Composite(s)) = decode_text(&ty, text.as_bytes()) else {
            panic!("not a composite");
        };
        // Numbers stay exact and in shortest form.
        assert!(
            s.starts_with(r#"{"n":12.50,"nan":"NaN","f":0.1,"big":1e300,"#),
            "{s}"
        );
    }

    #[test]
    fn rows_without_fields() {
        assert_eq!(
            decode_text(&row(vec![]), b"()"),
            Ok(Value::Composite("{}".into()))
        );
    }

    #[test]
    fn malformed_rows_are_errors() {
        let ty = row(vec![field("a", 23), field("b", 25)]);
        for s in [
            "",
            "1,a",
            "(1,a",
            "(1)",
            "(1,a,b)",
            "(1,a)x",
            r#"(1,"a)"#,
            "(1,a\\",
            "(x,a)",
        ] {
            assert!(decode_text(&ty, s.as_bytes()).is_err(), "{s}");
        }
        let err = decode_text(&ty, b"(1,a,b)").err();
        assert_eq!(err.map(|e| e.type_name), Some("row_t".into()));
        let err = decode_text(&ty, b"(x,a)").err();
        assert_eq!(err.map(|e| e.type_name), Some("int4".into()));
    }
}
