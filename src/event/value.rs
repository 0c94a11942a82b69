//! Column values: one variant per kind of source value, each lossless.

/// A decoded column value.
///
/// Every MySQL/MariaDB and PostgreSQL type maps to one variant without loss;
/// how each is written as JSON is in `event::json` and docs/json-format.md.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Exact decimal text (`-12.50`), or `NaN` / `Infinity` / `-Infinity`.
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    /// A bit string, big-endian: the last bit of the last byte is bit 0.
    Bits {
        bytes: Vec<u8>,
        len: u32,
    },
    Enum(String),
    /// SET labels joined by commas.
    Set(String),
    Date(Date),
    /// Time of day or duration, signed.
    Time(Time),
    TimeTz {
        micros: i64,
        offset_secs: i32,
    },
    /// Wall-clock date and time without a zone (MySQL DATETIME, PostgreSQL timestamp).
    DateTime(DateTime),
    /// An instant (MySQL TIMESTAMP, PostgreSQL timestamptz).
    Timestamp {
        epoch_micros: i64,
        precision: u8,
    },
    /// PostgreSQL `infinity` / `-infinity` of a date or timestamp type.
    Infinite {
        kind: InfiniteKind,
        negative: bool,
    },
    Year(u16),
    /// JSON document text.
    Json(String),
    Geometry {
        srid: u32,
        wkb: Vec<u8>,
    },
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    Uuid([u8; 16]),
    /// inet, cidr, macaddr in the server's text form.
    Network(String),
    Array(Box<Array>),
    /// Composite value as JSON object text.
    Composite(String),
    /// Any other type, in the server's text form.
    Other(String),
    /// The source did not send this column (PostgreSQL unchanged TOAST value,
    /// MySQL minimal row image): keep the value the target already has.
    Unchanged,
}

impl Value {
    /// About how many bytes the value holds (its text or bytes; 8 for a
    /// number or a time): what flow control counts.
    pub fn approx_size(&self) -> usize {
        match self {
            Value::Null | Value::Unchanged => 0,
            Value::Bool(_) => 1,
            Value::Decimal(s)
            | Value::Text(s)
            | Value::Enum(s)
            | Value::Set(s)
            | Value::Json(s)
            | Value::Network(s)
            | Value::Composite(s)
            | Value::Other(s) => s.len(),
            Value::Bytes(b) | Value::Bits { bytes: b, .. } | Value::Geometry { wkb: b, .. } => {
                b.len()
            }
            Value::Uuid(_) => 16,
            Value::Array(_) => 64,
            _ => 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfiniteKind {
    Date,
    Timestamp,
    TimestampTz,
}

/// A calendar date. Zero dates (MySQL `0000-00-00`, or zero parts such as
/// `2024-00-10`) keep their zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    /// Signed microseconds; MySQL TIME ranges over ±838:59:59.999999.
    pub micros: i64,
    /// Declared fractional-second digits (0..=6).
    pub precision: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub date: Date,
    pub micros_of_day: u64,
    /// Declared fractional-second digits (0..=6).
    pub precision: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Length of each dimension; empty for an empty array.
    pub dims: Vec<u32>,
    /// Elements in row-major order.
    pub elements: Vec<Value>,
}

impl Date {
    /// A zero date or one with a zero month/day part, which has no calendar day.
    pub fn is_zero(&self) -> bool {
        self.month == 0 || self.day == 0
    }

    /// Days since 1970-01-01 (proleptic Gregorian). `None` for zero dates.
    pub fn epoch_days(&self) -> Option<i64> {
        if self.is_zero() || self.month > 12 || self.day > 31 {
            return None;
        }
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some(era * 146_097 + doe - 719_468)
    }

    /// The date `days` after 1970-01-01.
    pub fn from_epoch_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (y + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }
}

impl DateTime {
    /// Microseconds since the epoch, reading the wall-clock value as UTC.
    pub fn epoch_micros(&self) -> Option<i64> {
        let days = self.date.epoch_days()?;
        Some(days * 86_400_000_000 + self.micros_of_day as i64)
    }
}

pub const MICROS_PER_SEC: i64 = 1_000_000;

/// Writes `HH:MM:SS[.ffffff]` (hours may exceed 24) for a non-negative
/// duration, with `precision` fractional digits.
pub fn write_hms(out: &mut String, micros: u64, precision: u8) {
    use std::fmt::Write;
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    write_fraction(out, frac, precision);
}

/// Writes `.` and the first `precision` digits of a 6-digit microsecond fraction.
pub fn write_fraction(out: &mut String, frac_micros: u64, precision: u8) {
    use std::fmt::Write;
    if precision > 0 {
        let p = precision.min(6) as u32;
        let v = frac_micros / 10u64.pow(6 - p);
        let _ = write!(out, ".{:0width$}", v, width = p as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_days_round_trip() {
        for (y, m, d, days) in [
            (1970, 1, 1, 0),
            (2024, 2, 29, 19782),
            (1000, 1, 1, -354285),
            (9999, 12, 31, 2932896),
            (1, 1, 1, -719162),
            (2000, 1, 1, 10957),
        ] {
            let date = Date {
                year: y,
                month: m,
                day: d,
            };
            assert_eq!(date.epoch_days(), Some(days), "{date:?}");
            assert_eq!(Date::from_epoch_days(days), date);
        }
        assert_eq!(
            Date {
                year: 0,
                month: 0,
                day: 0
            }
            .epoch_days(),
            None
        );
    }

    #[test]
    fn hms_formats_long_and_fractional_times() {
        let mut s = String::new();
        write_hms(&mut s, 3_020_399_999_000, 3);
        assert_eq!(s, "838:59:59.999");
        s.clear();
        write_hms(&mut s, 45_296_000_000, 0);
        assert_eq!(s, "12:34:56");
    }
}
