//! Values as a target takes them: PostgreSQL text input (bound as text and
//! cast to the column's type in the statement), MySQL/MariaDB statement
//! parameters. The target column's kind picks the form where engines
//! differ (a MySQL TIME beyond 24 h goes to an `interval`, a PostgreSQL
//! uuid to a `binary(16)` or a `char(36)`); a value the column can't hold
//! without loss is refused with the reason (docs/type-mapping.md).

use std::fmt::Write;

use crate::event::value::{Array, Date, DateTime, Value, write_hms};

/// What a target column holds, from its type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Decimal,
    Float,
    Text,
    Bytes,
    Bit,
    Date,
    Time,
    Interval,
    Timestamp,
    TimestampTz,
    Year,
    Json,
    Uuid,
    Geometry,
    Array(Box<Kind>),
    Other,
}

impl Kind {
    /// From PostgreSQL's `format_type` text (`integer`, `numeric(10,2)`,
    /// `timestamp(3) with time zone`, `text[]`).
    pub fn of_postgres(t: &str) -> Kind {
        if let Some(elem) = t.strip_suffix("[]") {
            return Kind::Array(Box::new(Kind::of_postgres(elem)));
        }
        let base = t.split('(').next().unwrap_or(t).trim();
        match base {
            "boolean" => Kind::Bool,
            "smallint" | "integer" | "bigint" | "oid" => Kind::Int,
            "numeric" | "money" => Kind::Decimal,
            "real" | "double precision" => Kind::Float,
            "text" | "character varying" | "character" | "\"char\"" | "name" | "citext" => {
                Kind::Text
            }
            "bytea" => Kind::Bytes,
            "bit" | "bit varying" => Kind::Bit,
            "date" => Kind::Date,
            "interval" => Kind::Interval,
            "json" | "jsonb" => Kind::Json,
            "uuid" => Kind::Uuid,
            "geometry" | "geography" => Kind::Geometry,
            _ if base.starts_with("time") && !base.starts_with("timestamp") => Kind::Time,
            _ if t.starts_with("timestamp") && t.ends_with("with time zone") => Kind::TimestampTz,
            _ if t.starts_with("timestamp") => Kind::Timestamp,
            _ => Kind::Other,
        }
    }

    /// From MySQL's `COLUMN_TYPE` (`int(11) unsigned`, `enum('a','b')`).
    pub fn of_mysql(column_type: &str) -> Kind {
        let t = column_type.to_ascii_lowercase();
        let base = t.split(['(', ' ']).next().unwrap_or(&t).to_string();
        match base.as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => Kind::Int,
            "decimal" | "numeric" => Kind::Decimal,
            "float" | "double" | "real" => Kind::Float,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" | "inet4" | "inet6" => Kind::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                if t.starts_with("binary(16)") {
                    Kind::Uuid
                } else {
                    Kind::Bytes
                }
            }
            "bit" => Kind::Bit,
            "date" => Kind::Date,
            "time" => Kind::Time,
            "datetime" => Kind::Timestamp,
            "timestamp" => Kind::TimestampTz,
            "year" => Kind::Year,
            "json" => Kind::Json,
            "uuid" => Kind::Text,
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" | "geomcollection" => Kind::Geometry,
            _ => Kind::Other,
        }
    }
}

/// A value the target column can't take, and why.
pub type Refused = String;

const DAY_MICROS: i64 = 86_400_000_000;

/// The PostgreSQL text input of `v` for a column of kind `k`; `None` is NULL.
/// `Value::Unchanged` never reaches here (the statement leaves the column).
pub fn pg_text(v: &Value, k: &Kind) -> Result<Option<String>, Refused> {
    let s = match v {
        Value::Null | Value::Unchanged => return Ok(None),
        Value::Bool(b) => match k {
            Kind::Int | Kind::Decimal => if *b { "1" } else { "0" }.into(),
            Kind::Bit => if *b { "1" } else { "0" }.into(),
            _ => if *b { "t" } else { "f" }.into(),
        },
        Value::Int(i) => match k {
            Kind::Bool => if *i != 0 { "t" } else { "f" }.into(),
            _ => i.to_string(),
        },
        Value::UInt(u) => match k {
            Kind::Bool => if *u != 0 { "t" } else { "f" }.into(),
            _ => u.to_string(),
        },
        Value::Float(f) => float_text(f64::from(*f), Some(*f)),
        Value::Double(f) => float_text(*f, None),
        Value::Decimal(d) => d.clone(),
        Value::Text(t) => match k {
            Kind::Bytes => hex_bytea(t.as_bytes()),
            _ => no_nul(t)?.to_string(),
        },
        Value::Bytes(b) => {
            match k {
                Kind::Text | Kind::Json => match std::str::from_utf8(b) {
                    Ok(t) => no_nul(t)?.to_string(),
                    Err(_) => return Err(
                        "bytes that are not UTF-8 don't fit a text column: map the column to bytea"
                            .into(),
                    ),
                },
                Kind::Uuid if b.len() == 16 => {
                    let mut u = [0u8; 16];
                    u.copy_from_slice(b);
                    crate::event::json::values::format_uuid(&u)
                }
                _ => hex_bytea(b),
            }
        }
        Value::Bits { bytes, len } => match k {
            Kind::Bool if *len == 1 => if bits_value(bytes) != 0 { "t" } else { "f" }.into(),
            Kind::Int | Kind::Decimal => bits_value(bytes).to_string(),
            Kind::Bytes => hex_bytea(bytes),
            _ => bit_string(bytes, *len),
        },
        Value::Enum(s) | Value::Set(s) => no_nul(s)?.to_string(),
        Value::Date(d) => pg_date(d)?,
        Value::Time(t) => match k {
            Kind::Time if (0..=DAY_MICROS).contains(&t.micros) => signed_hms(t.micros, t.precision),
            Kind::Time => {
                return Err(format!(
                    "time {} is outside PostgreSQL's time range (00:00:00 to 24:00:00): map the column to interval",
                    signed_hms(t.micros, t.precision)
                ));
            }
            _ => signed_hms(t.micros, t.precision),
        },
        Value::TimeTz {
            micros,
            offset_secs,
        } => {
            let mut s = signed_hms(*micros, 6);
            write_offset(&mut s, *offset_secs);
            s
        }
        Value::DateTime(dt) => pg_datetime(dt)?,
        Value::Timestamp { epoch_micros, .. } => {
            let mut s = utc_text(*epoch_micros, true)?;
            if *k != Kind::Timestamp {
                s.push_str("+00");
            }
            s
        }
        Value::Infinite { negative, .. } => if *negative { "-infinity" } else { "infinity" }.into(),
        Value::Year(y) => y.to_string(),
        Value::Json(j) => j.clone(),
        Value::Geometry { wkb, .. } => hex_bytea(wkb),
        Value::Interval {
            months,
            days,
            micros,
        } => format!("{months} mons {days} days {micros} microseconds"),
        Value::Uuid(u) => match k {
            Kind::Bytes => hex_bytea(u),
            _ => crate::event::json::values::format_uuid(u),
        },
        Value::Network(s) | Value::Other(s) => no_nul(s)?.to_string(),
        Value::Composite(j) => match k {
            Kind::Json | Kind::Text => j.clone(),
            _ => {
                return Err(
                    "a composite value goes to a json, jsonb or text column on the target (tidemark carries it as JSON)".into(),
                );
            }
        },
        Value::Array(a) => match k {
            Kind::Array(elem) => pg_array(a, elem)?,
            _ => json_array(a)?,
        },
    };
    Ok(Some(s))
}

/// A MySQL/MariaDB statement parameter for `v` in a column of kind `k`.
pub fn mysql_value(v: &Value, k: &Kind) -> Result<mysql_async::Value, Refused> {
    use mysql_async::Value as M;
    let text = |s: String| Ok(M::Bytes(s.into_bytes()));
    match v {
        Value::Null | Value::Unchanged => Ok(M::NULL),
        Value::Bool(b) => Ok(M::Int(i64::from(*b))),
        Value::Int(i) => Ok(M::Int(*i)),
        Value::UInt(u) => Ok(M::UInt(*u)),
        Value::Float(f) if f.is_finite() => Ok(M::Float(*f)),
        Value::Double(f) if f.is_finite() => Ok(M::Double(*f)),
        Value::Float(_) | Value::Double(_) => match k {
            Kind::Text | Kind::Other => text(float_text(v_f64(v), None)),
            _ => Err("MySQL has no NaN or Infinity: map the column to a text type".into()),
        },
        Value::Decimal(d) => {
            if matches!(d.as_str(), "NaN" | "Infinity" | "-Infinity") && *k != Kind::Text {
                return Err(format!(
                    "MySQL DECIMAL has no {d}: map the column to a text type"
                ));
            }
            text(d.clone())
        }
        Value::Text(t) => text(t.clone()),
        Value::Bytes(b) => Ok(M::Bytes(b.clone())),
        Value::Bits { bytes, len } => match k {
            Kind::Text | Kind::Other => text(bit_string(bytes, *len)),
            Kind::Bit if *len > 64 => Err(format!(
                "a bit string of {len} bits doesn't fit MySQL BIT (64 at most): map the column to varchar"
            )),
            Kind::Bit | Kind::Bytes => Ok(M::Bytes(bytes.clone())),
            _ if *len <= 64 => Ok(M::UInt(bits_value(bytes))),
            _ => text(bit_string(bytes, *len)),
        },
        Value::Enum(s) | Value::Set(s) => text(s.clone()),
        Value::Date(d) => {
            if d.year < 0 || d.year > 9999 {
                return Err(format!(
                    "date year {} is outside MySQL's range (0000 to 9999)",
                    d.year
                ));
            }
            text(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        }
        Value::Time(t) => {
            const MAX: i64 = (838 * 3600 + 59 * 60 + 59) * 1_000_000 + 999_999;
            if t.micros.abs() > MAX && *k == Kind::Time {
                return Err(format!(
                    "time {} is outside MySQL's TIME range (±838:59:59.999999)",
                    signed_hms(t.micros, t.precision)
                ));
            }
            text(signed_hms(t.micros, t.precision))
        }
        Value::TimeTz {
            micros,
            offset_secs,
        } => {
            let mut s = signed_hms(*micros, 6);
            write_offset(&mut s, *offset_secs);
            text(s)
        }
        Value::DateTime(dt) => {
            if dt.date.year < 0 || dt.date.year > 9999 {
                return Err(format!(
                    "year {} is outside MySQL's DATETIME range (0000 to 9999)",
                    dt.date.year
                ));
            }
            let mut s = format!(
                "{:04}-{:02}-{:02} ",
                dt.date.year, dt.date.month, dt.date.day
            );
            write_hms(&mut s, dt.micros_of_day, dt.precision);
            text(s)
        }
        Value::Timestamp { epoch_micros, .. } => {
            let s = utc_text(*epoch_micros, false)?;
            text(s)
        }
        Value::Infinite { negative, .. } => match k {
            Kind::Text | Kind::Other => {
                text(if *negative { "-infinity" } else { "infinity" }.into())
            }
            _ => Err(format!(
                "{}infinity has no MySQL date or time value: map the column to varchar, or filter the rows",
                if *negative { "-" } else { "" }
            )),
        },
        Value::Year(y) => Ok(M::UInt(u64::from(*y))),
        Value::Json(j) => text(j.clone()),
        Value::Geometry { srid, wkb } => match k {
            Kind::Geometry => {
                let mut b = Vec::with_capacity(wkb.len() + 4);
                b.extend_from_slice(&srid.to_le_bytes());
                b.extend_from_slice(wkb);
                Ok(M::Bytes(b))
            }
            _ => Ok(M::Bytes(wkb.clone())),
        },
        Value::Interval {
            months,
            days,
            micros,
        } => match k {
            Kind::Time if *months == 0 => {
                let total = i64::from(*days)
                    .checked_mul(DAY_MICROS)
                    .and_then(|d| d.checked_add(*micros))
                    .ok_or("interval too long for TIME")?;
                mysql_value(
                    &Value::Time(crate::event::value::Time {
                        micros: total,
                        precision: 6,
                    }),
                    k,
                )
            }
            _ => text(crate::event::json::values::iso_interval(
                *months, *days, *micros,
            )),
        },
        Value::Uuid(u) => match k {
            Kind::Uuid | Kind::Bytes => Ok(M::Bytes(u.to_vec())),
            _ => text(crate::event::json::values::format_uuid(u)),
        },
        Value::Network(s) | Value::Other(s) | Value::Composite(s) => text(s.clone()),
        Value::Array(a) => text(json_array(a)?),
    }
}

fn v_f64(v: &Value) -> f64 {
    match v {
        Value::Float(f) => f64::from(*f),
        Value::Double(f) => *f,
        _ => 0.0,
    }
}

fn float_text(x: f64, single: Option<f32>) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if let Some(f) = single {
        // Shortest text that reads back as the same f32.
        format!("{f:?}")
    } else {
        format!("{x:?}")
    }
}

fn no_nul(s: &str) -> Result<&str, Refused> {
    if s.contains('\0') {
        Err("PostgreSQL text can't hold a NUL character (\\0): map the column to bytea".into())
    } else {
        Ok(s)
    }
}

fn hex_bytea(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn bits_value(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .take(8)
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// `len` bits, most significant first, from big-endian bytes whose last
/// bit is bit 0.
fn bit_string(bytes: &[u8], len: u32) -> String {
    let total = bytes.len() as u32 * 8;
    let mut s = String::with_capacity(len as usize);
    for i in (0..len).rev() {
        let set = i < total && {
            let byte = bytes[(bytes.len() - 1) - (i / 8) as usize];
            byte >> (i % 8) & 1 == 1
        };
        s.push(if set { '1' } else { '0' });
    }
    s
}

fn signed_hms(micros: i64, precision: u8) -> String {
    let mut s = String::with_capacity(20);
    if micros < 0 {
        s.push('-');
    }
    write_hms(&mut s, micros.unsigned_abs(), precision);
    s
}

fn write_offset(s: &mut String, offset_secs: i32) {
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let a = offset_secs.unsigned_abs();
    let _ = write!(
        s,
        "{sign}{:02}:{:02}:{:02}",
        a / 3600,
        (a / 60) % 60,
        a % 60
    );
}

fn pg_date(d: &Date) -> Result<String, Refused> {
    if d.is_zero() {
        return Err(format!(
            "zero date {:04}-{:02}-{:02} has no PostgreSQL value: map the column to text, or clean the source rows",
            d.year, d.month, d.day
        ));
    }
    Ok(if d.year <= 0 {
        format!("{:04}-{:02}-{:02} BC", 1 - d.year, d.month, d.day)
    } else {
        format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
    })
}

fn pg_datetime(dt: &DateTime) -> Result<String, Refused> {
    let date = pg_date(&dt.date)?;
    let (day, bc) = match date.strip_suffix(" BC") {
        Some(d) => (d.to_string(), " BC"),
        None => (date, ""),
    };
    let mut s = day;
    s.push(' ');
    write_hms(&mut s, dt.micros_of_day, dt.precision);
    s.push_str(bc);
    Ok(s)
}

/// The UTC wall clock of an instant, `YYYY-MM-DD HH:MM:SS.ffffff`.
fn utc_text(epoch_micros: i64, allow_bc: bool) -> Result<String, Refused> {
    let days = epoch_micros.div_euclid(DAY_MICROS);
    let us = epoch_micros.rem_euclid(DAY_MICROS) as u64;
    let d = Date::from_epoch_days(days);
    if d.year <= 0 && !allow_bc {
        return Err(format!("year {} is outside MySQL's range", d.year));
    }
    if d.year > 9999 && !allow_bc {
        return Err(format!("year {} is outside MySQL's range", d.year));
    }
    // Whole seconds without a fraction; otherwise all six digits.
    let dt = DateTime {
        date: d,
        micros_of_day: us,
        precision: if us.is_multiple_of(1_000_000) { 0 } else { 6 },
    };
    let s = pg_datetime(&dt)?;
    Ok(s)
}

/// A PostgreSQL array literal: `{"a","b"}`, nested per dimension.
fn pg_array(a: &Array, elem: &Kind) -> Result<String, Refused> {
    let mut items = Vec::with_capacity(a.elements.len());
    for e in &a.elements {
        items.push(match pg_text(e, elem)? {
            None => "NULL".to_string(),
            Some(t) => {
                let mut q = String::with_capacity(t.len() + 2);
                q.push('"');
                for c in t.chars() {
                    if c == '"' || c == '\\' {
                        q.push('\\');
                    }
                    q.push(c);
                }
                q.push('"');
                q
            }
        });
    }
    Ok(nest(&items, &a.dims))
}

fn nest(items: &[String], dims: &[u32]) -> String {
    match dims {
        [] => "{}".into(),
        [_] => format!("{{{}}}", items.join(",")),
        [_, rest @ ..] => {
            let inner: usize = rest.iter().map(|&d| d as usize).product::<usize>().max(1);
            let parts: Vec<String> = items.chunks(inner).map(|c| nest(c, rest)).collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

/// An array as a JSON array, for engines without arrays.
fn json_array(a: &Array) -> Result<String, Refused> {
    let mut items = Vec::with_capacity(a.elements.len());
    for e in &a.elements {
        items.push(match e {
            Value::Null => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Double(f) if f.is_finite() => format!("{f:?}"),
            Value::Float(f) if f.is_finite() => format!("{f:?}"),
            Value::Json(j) | Value::Composite(j) => j.clone(),
            other => match pg_text(other, &Kind::Text)? {
                Some(t) => serde_json::to_string(&t).map_err(|e| e.to_string())?,
                None => "null".into(),
            },
        });
    }
    Ok(nest_json(&items, &a.dims))
}

fn nest_json(items: &[String], dims: &[u32]) -> String {
    match dims {
        [] => "[]".into(),
        [_] => format!("[{}]", items.join(",")),
        [_, rest @ ..] => {
            let inner: usize = rest.iter().map(|&d| d as usize).product::<usize>().max(1);
            let parts: Vec<String> = items.chunks(inner).map(|c| nest_json(c, rest)).collect();
            format!("[{}]", parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::value::Time;

    fn pg(v: Value, k: Kind) -> Option<String> {
        pg_text(&v, &k).expect("renders")
    }

    #[test]
    fn kinds_come_from_type_names() {
        assert_eq!(
            Kind::of_postgres("integer[]"),
            Kind::Array(Box::new(Kind::Int))
        );
        assert_eq!(
            Kind::of_postgres("timestamp(3) with time zone"),
            Kind::TimestampTz
        );
        assert_eq!(
            Kind::of_postgres("timestamp without time zone"),
            Kind::Timestamp
        );
        assert_eq!(Kind::of_postgres("time(6) with time zone"), Kind::Time);
        assert_eq!(Kind::of_postgres("character varying(20)"), Kind::Text);
        assert_eq!(Kind::of_mysql("bigint(20) unsigned"), Kind::Int);
        assert_eq!(Kind::of_mysql("enum('a','b')"), Kind::Text);
        assert_eq!(Kind::of_mysql("binary(16)"), Kind::Uuid);
        assert_eq!(Kind::of_mysql("timestamp(6)"), Kind::TimestampTz);
    }

    #[test]
    fn postgres_text_keeps_every_digit_and_zone() {
        assert_eq!(
            pg(Value::UInt(u64::MAX), Kind::Decimal).as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(pg(Value::Double(0.1), Kind::Float).as_deref(), Some("0.1"));
        assert_eq!(pg(Value::Float(1.1), Kind::Float).as_deref(), Some("1.1"));
        assert_eq!(
            pg(Value::Double(f64::NAN), Kind::Float).as_deref(),
            Some("NaN")
        );
        assert_eq!(
            pg(
                Value::Timestamp {
                    epoch_micros: 1_500_000,
                    precision: 6
                },
                Kind::TimestampTz
            )
            .as_deref(),
            Some("1970-01-01 00:00:01.500000+00")
        );
        assert_eq!(
            pg(
                Value::Timestamp {
                    epoch_micros: -1_000_000,
                    precision: 0
                },
                Kind::Timestamp
            )
            .as_deref(),
            Some("1969-12-31 23:59:59")
        );
        assert_eq!(
            pg(
                Value::Time(Time {
                    micros: 3_020_399_000_000,
                    precision: 0
                }),
                Kind::Interval
            )
            .as_deref(),
            Some("838:59:59")
        );
        assert!(
            pg_text(
                &Value::Time(Time {
                    micros: -1,
                    precision: 6
                }),
                &Kind::Time
            )
            .is_err()
        );
        assert_eq!(
            pg(
                Value::Bits {
                    bytes: vec![0b101],
                    len: 3
                },
                Kind::Bit
            )
            .as_deref(),
            Some("101")
        );
        assert_eq!(
            pg(Value::Bytes(vec![0, 255]), Kind::Bytes).as_deref(),
            Some("\\x00ff")
        );
        let zero = Value::Date(Date {
            year: 0,
            month: 0,
            day: 0,
        });
        let e = pg_text(&zero, &Kind::Date).expect_err("zero dates are refused");
        assert!(e.contains("zero date"), "{e}");
        assert_eq!(
            pg(
                Value::Date(Date {
                    year: -43,
                    month: 3,
                    day: 15
                }),
                Kind::Date
            )
            .as_deref(),
            Some("0044-03-15 BC")
        );
    }

    #[test]
    fn arrays_nest_and_quote() {
        let a = Array {
            dims: vec![2, 2],
            elements: vec![
                Value::Text("a\"b".into()),
                Value::Null,
                Value::Text("c\\d".into()),
                Value::Text("e,f".into()),
            ],
        };
        assert_eq!(
            pg(
                Value::Array(Box::new(a.clone())),
                Kind::Array(Box::new(Kind::Text))
            )
            .as_deref(),
            Some(r#"{{"a\"b",NULL},{"c\\d","e,f"}}"#)
        );
        assert_eq!(
            pg(Value::Array(Box::new(a)), Kind::Json).as_deref(),
            Some(r#"[["a\"b",null],["c\\d","e,f"]]"#)
        );
    }

    #[test]
    fn mysql_refuses_what_it_cannot_hold() {
        let inf = Value::Infinite {
            kind: crate::event::value::InfiniteKind::Timestamp,
            negative: false,
        };
        let e = mysql_value(&inf, &Kind::Timestamp).expect_err("no infinity in MySQL");
        assert!(e.contains("infinity"), "{e}");
        assert!(mysql_value(&Value::Decimal("NaN".into()), &Kind::Decimal).is_err());
        assert_eq!(
            mysql_value(
                &Value::Time(Time {
                    micros: -3_600_000_000,
                    precision: 0
                }),
                &Kind::Time
            ),
            Ok(mysql_async::Value::Bytes(b"-01:00:00".to_vec()))
        );
        assert_eq!(
            mysql_value(&Value::Uuid([1; 16]), &Kind::Uuid),
            Ok(mysql_async::Value::Bytes(vec![1; 16]))
        );
        assert_eq!(
            mysql_value(
                &Value::Timestamp {
                    epoch_micros: 1_000_001,
                    precision: 6
                },
                &Kind::TimestampTz
            ),
            Ok(mysql_async::Value::Bytes(
                b"1970-01-01 00:00:01.000001".to_vec()
            ))
        );
    }
}
