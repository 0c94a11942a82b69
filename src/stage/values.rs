//! Values as the rules read them: one text form per value (what masks
//! hash and keep the start of, and how filters see dates and times).

use std::borrow::Cow;
use std::fmt::Write;

use crate::event::Value;
use crate::event::value::{Date, write_fraction, write_hms};

/// The value's text: the same for equal values whatever the engine
/// (`2024-01-31`, `2024-01-31 12:00:00.5`, `2024-01-31T12:00:00Z`,
/// `12.50`, hex for bytes).
pub fn text_form(v: &Value) -> String {
    match bytes_form(v) {
        Cow::Borrowed(b) => String::from_utf8_lossy(b).into_owned(),
        Cow::Owned(b) => String::from_utf8(b).unwrap_or_default(),
    }
}

/// The bytes a hash mask hashes: the text form, raw bytes for bytes.
pub fn bytes_form(v: &Value) -> Cow<'_, [u8]> {
    let s = match v {
        Value::Text(s)
        | Value::Decimal(s)
        | Value::Enum(s)
        | Value::Set(s)
        | Value::Json(s)
        | Value::Network(s)
        | Value::Composite(s)
        | Value::Other(s) => return Cow::Borrowed(s.as_bytes()),
        Value::Bytes(b) => return Cow::Borrowed(b),
        Value::Null | Value::Unchanged => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Year(y) => y.to_string(),
        Value::Date(d) => date(d),
        Value::DateTime(dt) => {
            let mut s = date(&dt.date);
            s.push(' ');
            write_hms(&mut s, dt.micros_of_day, dt.precision);
            s
        }
        Value::Timestamp {
            epoch_micros,
            precision,
        } => {
            let days = epoch_micros.div_euclid(86_400_000_000);
            let us = epoch_micros.rem_euclid(86_400_000_000) as u64;
            let mut s = date(&Date::from_epoch_days(days));
            s.push('T');
            write_hms(&mut s, us - us % 1_000_000, 0);
            write_fraction(&mut s, us % 1_000_000, *precision);
            s.push('Z');
            s
        }
        Value::Time(t) => {
            let mut s = String::new();
            if t.micros < 0 {
                s.push('-');
            }
            write_hms(&mut s, t.micros.unsigned_abs(), t.precision);
            s
        }
        Value::TimeTz {
            micros,
            offset_secs,
        } => {
            let mut s = String::new();
            write_hms(&mut s, (*micros).max(0) as u64, 6);
            let _ = write!(s, "{offset_secs:+}");
            s
        }
        Value::Uuid(u) => {
            let mut s = String::with_capacity(36);
            for (i, b) in u.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        Value::Bits { bytes, len } => {
            let mut s = String::with_capacity(*len as usize);
            for i in (0..*len).rev() {
                let byte = bytes.len().wrapping_sub(1 + (i / 8) as usize);
                let bit = bytes.get(byte).map_or(0, |b| (b >> (i % 8)) & 1);
                s.push(if bit == 1 { '1' } else { '0' });
            }
            s
        }
        Value::Geometry { srid, wkb } => {
            let mut s = format!("{srid}:");
            for b in wkb {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        Value::Interval {
            months,
            days,
            micros,
        } => format!("P{months}M{days}DT{micros}U"),
        Value::Infinite { negative, .. } => {
            if *negative { "-infinity" } else { "infinity" }.to_string()
        }
        Value::Array(a) => format!("{:?}", a.elements),
    };
    Cow::Owned(s.into_bytes())
}

fn date(d: &Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::value::DateTime;

    #[test]
    fn text_forms_are_iso_and_exact() {
        let d = Date {
            year: 2024,
            month: 1,
            day: 31,
        };
        assert_eq!(text_form(&Value::Date(d)), "2024-01-31");
        assert_eq!(
            text_form(&Value::DateTime(DateTime {
                date: d,
                micros_of_day: 43_200_500_000,
                precision: 3
            })),
            "2024-01-31 12:00:00.500"
        );
        assert_eq!(
            text_form(&Value::Timestamp {
                epoch_micros: 1_706_702_400_000_000,
                precision: 0
            }),
            "2024-01-31T12:00:00Z"
        );
        assert_eq!(text_form(&Value::Decimal("12.50".into())), "12.50");
        assert_eq!(
            text_form(&Value::Bits {
                bytes: vec![0b101],
                len: 3
            }),
            "101"
        );
        assert_eq!(
            text_form(&Value::Uuid([0x12; 16])),
            "12121212-1212-1212-1212-121212121212"
        );
    }
}
