//! Dates, times, timestamps and intervals in `DateStyle` ISO and
//! `IntervalStyle` postgres output.
//!
//! BC years become astronomical years (1 BC is year 0, 44 BC is -43), the
//! numbering `Date` and its epoch-day arithmetic use.

use crate::event::value::{Date, DateTime, InfiniteKind, Time, Value};

const MICROS_PER_SEC: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

pub(super) fn date(s: &str) -> Result<Value, &'static str> {
    if let Some(v) = infinite(s, InfiniteKind::Date) {
        return Ok(v);
    }
    let (body, bc) = split_bc(s);
    let mut p = Scanner::new(body);
    let date = p.date(bc)?;
    p.end()?;
    Ok(Value::Date(date))
}

/// `HH:MM:SS[.ffffff]`; `24:00:00` is a valid time of day.
pub(super) fn time(s: &str, precision: u8) -> Result<Value, &'static str> {
    let mut p = Scanner::new(s);
    let micros = p.time_of_day(true)?;
    p.end()?;
    Ok(Value::Time(Time { micros, precision }))
}

/// `HH:MM:SS[.ffffff]±HH[:MM[:SS]]`.
pub(super) fn timetz(s: &str) -> Result<Value, &'static str> {
    let mut p = Scanner::new(s);
    let micros = p.time_of_day(true)?;
    let offset_secs = p.utc_offset()?;
    p.end()?;
    Ok(Value::TimeTz {
        micros,
        offset_secs,
    })
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]`.
pub(super) fn timestamp(s: &str, precision: u8) -> Result<Value, &'static str> {
    if let Some(v) = infinite(s, InfiniteKind::Timestamp) {
        return Ok(v);
    }
    let (body, bc) = split_bc(s);
    let mut p = Scanner::new(body);
    let date = p.date(bc)?;
    p.expect(b' ')?;
    let micros = p.time_of_day(false)?;
    p.end()?;
    Ok(Value::DateTime(DateTime {
        date,
        micros_of_day: u64::try_from(micros).map_err(|_| "negative time")?,
        precision,
    }))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]][ BC]`, as an instant.
pub(super) fn timestamptz(s: &str, precision: u8) -> Result<Value, &'static str> {
    if let Some(v) = infinite(s, InfiniteKind::TimestampTz) {
        return Ok(v);
    }
    let (body, bc) = split_bc(s);
    let mut p = Scanner::new(body);
    let date = p.date(bc)?;
    p.expect(b' ')?;
    let micros = p.time_of_day(false)?;
    let offset_secs = p.utc_offset()?;
    p.end()?;
    let epoch_micros = date
        .epoch_days()
        .and_then(|days| days.checked_mul(MICROS_PER_DAY))
        .and_then(|us| us.checked_add(micros))
        .and_then(|us| us.checked_sub(i64::from(offset_secs) * MICROS_PER_SEC))
        .ok_or("out of range")?;
    Ok(Value::Timestamp {
        epoch_micros,
        precision,
    })
}

/// `IntervalStyle` postgres: `[N year[s]] [N mon[s]] [N day[s]] [±H:MM:SS[.f]]`,
/// each number signed; the time part is printed when nonzero or when it is
/// the only part (`00:00:00`).
///
/// PostgreSQL 17's infinite intervals keep their internal encoding: every
/// field at its maximum (`infinity`) or minimum (`-infinity`).
pub(super) fn interval(s: &str) -> Result<Value, &'static str> {
    match s {
        "infinity" => return Ok(interval_value(i32::MAX, i32::MAX, i64::MAX)),
        "-infinity" => return Ok(interval_value(i32::MIN, i32::MIN, i64::MIN)),
        _ => {}
    }
    let (mut months, mut days, mut micros) = (0i64, 0i64, None);
    let mut words = s.split(' ');
    while let Some(word) = words.next() {
        if micros.is_some() {
            return Err("text after the time part");
        }
        if word.contains(':') {
            micros = Some(interval_time(word)?);
            continue;
        }
        let n: i64 = word.parse().map_err(|_| "expected a number or a time")?;
        let unit = words.next().ok_or("number without a unit")?;
        let (total, per_unit) = match unit {
            "year" | "years" => (&mut months, 12),
            "mon" | "mons" => (&mut months, 1),
            "day" | "days" => (&mut days, 1),
            _ => return Err("unknown unit"),
        };
        *total = n
            .checked_mul(per_unit)
            .and_then(|v| total.checked_add(v))
            .ok_or("out of range")?;
    }
    let months = i32::try_from(months).map_err(|_| "months out of range")?;
    let days = i32::try_from(days).map_err(|_| "days out of range")?;
    Ok(interval_value(months, days, micros.unwrap_or(0)))
}

fn interval_value(months: i32, days: i32, micros: i64) -> Value {
    Value::Interval {
        months,
        days,
        micros,
    }
}

/// `[±]H:MM:SS[.ffffff]`, hours unbounded.
fn interval_time(word: &str) -> Result<i64, &'static str> {
    let mut p = Scanner::new(word);
    let negative = p.eat(b'-');
    if !negative {
        p.eat(b'+');
    }
    let magnitude = interval_magnitude(&mut p)?;
    // Widened so that the magnitude of i64::MIN, one past i64::MAX, fits.
    let signed = if negative { -magnitude } else { magnitude };
    i64::try_from(signed).map_err(|_| "time part out of range")
}

fn interval_magnitude(p: &mut Scanner) -> Result<i128, &'static str> {
    let hours = p.number(1, 12)?;
    p.expect(b':')?;
    let minutes = p.number(2, 2)?;
    p.expect(b':')?;
    let seconds = p.number(2, 2)?;
    let fraction = p.fraction()?;
    p.end()?;
    if minutes >= 60 || seconds >= 60 {
        return Err("minutes or seconds out of range");
    }
    let secs = (i128::from(hours) * 60 + i128::from(minutes)) * 60 + i128::from(seconds);
    Ok(secs * i128::from(MICROS_PER_SEC) + i128::from(fraction))
}

fn infinite(s: &str, kind: InfiniteKind) -> Option<Value> {
    let negative = match s {
        "infinity" => false,
        "-infinity" => true,
        _ => return None,
    };
    Some(Value::Infinite { kind, negative })
}

fn split_bc(s: &str) -> (&str, bool) {
    match s.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (s, false),
    }
}

fn days_in_month(year: i32, month: u8) -> u8 {
    let leap = year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads ASCII fields left to right.
struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(s: &'a str) -> Self {
        Scanner {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, b: u8) -> Result<(), &'static str> {
        if self.eat(b) {
            Ok(())
        } else {
            Err("unexpected character")
        }
    }

    fn end(&self) -> Result<(), &'static str> {
        if self.pos == self.s.len() {
            Ok(())
        } else {
            Err("unexpected trailing text")
        }
    }

    /// `min..=max` decimal digits (at most 18, so the value fits).
    fn number(&mut self, min: usize, max: usize) -> Result<u64, &'static str> {
        let start = self.pos;
        let mut v: u64 = 0;
        while self.pos - start < max.min(18) {
            let Some(d) = self.peek().filter(u8::is_ascii_digit) else {
                break;
            };
            v = v * 10 + u64::from(d - b'0');
            self.pos += 1;
        }
        if self.pos - start < min {
            return Err("expected digits");
        }
        Ok(v)
    }

    /// `[.f{1,6}]` as microseconds.
    fn fraction(&mut self) -> Result<i64, &'static str> {
        if !self.eat(b'.') {
            return Ok(0);
        }
        let (mut micros, mut place) = (0, 100_000);
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            if place == 0 {
                return Err("more than 6 fractional digits");
            }
            micros += i64::from(d - b'0') * place;
            place /= 10;
            self.pos += 1;
        }
        if place == 100_000 {
            return Err("expected digits after '.'");
        }
        Ok(micros)
    }

    /// `YYYY-MM-DD`, the year at least 4 digits; `bc` turns it astronomical.
    fn date(&mut self, bc: bool) -> Result<Date, &'static str> {
        let year = self.number(4, 9)?;
        self.expect(b'-')?;
        let month = self.number(2, 2)?;
        self.expect(b'-')?;
        let day = self.number(2, 2)?;
        let year = i32::try_from(year).map_err(|_| "year out of range")?;
        if year == 0 {
            return Err("there is no year 0");
        }
        let year = if bc { 1 - year } else { year };
        let month = u8::try_from(month).ok().filter(|m| (1..=12).contains(m));
        let month = month.ok_or("month out of range")?;
        let day = u8::try_from(day)
            .ok()
            .filter(|d| (1..=days_in_month(year, month)).contains(d))
            .ok_or("day out of range")?;
        Ok(Date { year, month, day })
    }

    /// `HH:MM:SS[.ffffff]` as microseconds since midnight.
    fn time_of_day(&mut self, allow_24: bool) -> Result<i64, &'static str> {
        let hour = self.number(2, 2)?;
        self.expect(b':')?;
        let minute = self.number(2, 2)?;
        self.expect(b':')?;
        let second = self.number(2, 2)?;
        let fraction = self.fraction()?;
        let micros = i64::try_from((hour * 60 + minute) * 60 + second)
            .map_err(|_| "time out of range")?
            * MICROS_PER_SEC
            + fraction;
        let max_hour = if allow_24 { 24 } else { 23 };
        if hour > max_hour || minute >= 60 || second >= 60 || micros > MICROS_PER_DAY {
            return Err("time of day out of range");
        }
        Ok(micros)
    }

    /// `±HH[:MM[:SS]]` as seconds east of UTC.
    fn utc_offset(&mut self) -> Result<i32, &'static str> {
        let negative = if self.eat(b'-') {
            true
        } else if self.eat(b'+') {
            false
        } else {
            return Err("expected a UTC offset");
        };
        let hours = self.number(2, 2)?;
        let minutes = if self.eat(b':') {
            self.number(2, 2)?
        } else {
            0
        };
        let seconds = if self.eat(b':') {
            self.number(2, 2)?
        } else {
            0
        };
        if minutes >= 60 || seconds >= 60 {
            return Err("UTC offset out of range");
        }
        // Two-digit fields: at most 99:59:59, well within i32.
        let secs = i32::try_from(hours * 3600 + minutes * 60 + seconds)
            .map_err(|_| "UTC offset out of range")?;
        Ok(if negative { -secs } else { secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(year: i32, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    fn iv(months: i32, days: i32, micros: i64) -> Result<Value, &'static str> {
        Ok(interval_value(months, days, micros))
    }

    #[test]
    fn dates_including_extremes_bc_and_infinity() {
        assert_eq!(date("0001-01-01"), Ok(Value::Date(d(1, 1, 1))));
        assert_eq!(date("2024-02-29"), Ok(Value::Date(d(2024, 2, 29))));
        assert_eq!(date("5874897-12-31"), Ok(Value::Date(d(5_874_897, 12, 31))));
        assert_eq!(date("0044-03-15 BC"), Ok(Value::Date(d(-43, 3, 15))));
        assert_eq!(date("0001-12-31 BC"), Ok(Value::Date(d(0, 12, 31))));
        assert_eq!(date("4714-11-24 BC"), Ok(Value::Date(d(-4713, 11, 24))));
        // 1 BC (year 0) is a leap year, 2 BC is not.
        assert_eq!(date("0001-02-29 BC"), Ok(Value::Date(d(0, 2, 29))));
        assert!(date("0002-02-29 BC").is_err());
        let inf = |negative| {
            Ok(Value::Infinite {
                kind: InfiniteKind::Date,
                negative,
            })
        };
        assert_eq!(date("infinity"), inf(false));
        assert_eq!(date("-infinity"), inf(true));
        for s in [
            "",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
            "2024-04-31",
            "0000-01-01",
            "24-01-01",
            "2024-1-01",
            "2024-01-01 AD",
            "2024-01-01 ",
            "Infinity",
            "2024-01-01 BC BC",
            "+2024-01-01",
        ] {
            assert!(date(s).is_err(), "{s}");
        }
    }

    #[test]
    fn times_with_precision_and_24_00() {
        let t = |micros, precision| Ok(Value::Time(Time { micros, precision }));
        assert_eq!(time("00:00:00", 6), t(0, 6));
        assert_eq!(time("12:34:56", 0), t(45_296_000_000, 0));
        assert_eq!(time("23:59:59.999999", 6), t(86_399_999_999, 6));
        assert_eq!(time("01:02:03.5", 3), t(3_723_500_000, 3));
        assert_eq!(time("24:00:00", 6), t(86_400_000_000, 6));
        for s in [
            "24:00:00.000001",
            "24:00:01",
            "12:60:00",
            "12:00:60",
            "12:34",
            "1:02:03",
            "12:34:56.1234567",
            "12:34:56.",
        ] {
            assert!(time(s, 6).is_err(), "{s}");
        }
    }

    #[test]
    fn times_with_zone_offsets() {
        let tz = |micros, offset_secs| {
            Ok(Value::TimeTz {
                micros,
                offset_secs,
            })
        };
        assert_eq!(timetz("12:34:56+05:30"), tz(45_296_000_000, 19_800));
        assert_eq!(timetz("12:34:56.789-08"), tz(45_296_789_000, -28_800));
        assert_eq!(timetz("00:00:00+05:30:15"), tz(0, 19_815));
        assert_eq!(timetz("00:00:00+00"), tz(0, 0));
        assert_eq!(timetz("24:00:00-15:59"), tz(86_400_000_000, -57_540));
        for s in [
            "12:34:56",
            "12:34:56+5",
            "12:34:56 +05",
            "12:34:56+05:60",
            "12:34:56+05:30:1",
        ] {
            assert!(timetz(s).is_err(), "{s}");
        }
    }

    #[test]
    fn timestamps_without_zone() {
        let dt = |date, micros_of_day, precision| {
            Ok(Value::DateTime(DateTime {
                date,
                micros_of_day,
                precision,
            }))
        };
        assert_eq!(
            timestamp("2024-01-02 03:04:05", 6),
            dt(d(2024, 1, 2), 11_045_000_000, 6)
        );
        assert_eq!(
            timestamp("2024-01-02 03:04:05.123456", 6),
            dt(d(2024, 1, 2), 11_045_123_456, 6)
        );
        assert_eq!(
            timestamp("2024-01-02 03:04:05.5", 1),
            dt(d(2024, 1, 2), 11_045_500_000, 1)
        );
        assert_eq!(
            timestamp("0044-03-15 12:00:00 BC", 0),
            dt(d(-43, 3, 15), 43_200_000_000, 0)
        );
        assert_eq!(
            timestamp("294276-12-31 23:59:59.999999", 6),
            dt(d(294_276, 12, 31), 86_399_999_999, 6)
        );
        assert_eq!(
            timestamp("-infinity", 6),
            Ok(Value::Infinite {
                kind: InfiniteKind::Timestamp,
                negative: true
            })
        );
        for s in [
            "2024-01-02T03:04:05",
            "2024-01-02 24:00:00",
            "2024-01-02 03:04",
            "2024-01-02 03:04:05.1234567",
            "2024-01-02 03:04:05+00",
            "2024-01-02",
        ] {
            assert!(timestamp(s, 6).is_err(), "{s}");
        }
    }

    #[test]
    fn timestamps_with_zone_are_instants() {
        let ts = |epoch_micros| {
            Ok(Value::Timestamp {
                epoch_micros,
                precision: 6,
            })
        };
        let instant = 1_704_164_645_000_000; // 2024-01-02 03:04:05 UTC
        for s in [
            "2024-01-02 03:04:05+00",
            "2024-01-02 05:04:05+02",
            "2024-01-01 19:04:05-08",
            "2024-01-02 08:34:05+05:30",
            "2024-01-02 03:04:05+00:00:00",
        ] {
            assert_eq!(timestamptz(s, 6), ts(instant), "{s}");
        }
        assert_eq!(
            timestamptz("2024-01-02 08:34:05.5+05:30", 6),
            ts(instant + 500_000)
        );
        assert_eq!(timestamptz("1970-01-01 00:00:00+00", 6), ts(0));
        assert_eq!(timestamptz("1969-12-31 23:59:59.999999+00", 6), ts(-1));
        // Local mean time offsets have seconds.
        assert_eq!(
            timestamptz("1850-01-01 00:00:00-04:56:02", 6),
            ts(-3_786_825_600_000_000 + 17_762_000_000)
        );
        // 0001-01-01 00:00:00 UTC is 719162 days before the epoch; 1 BC is a leap year.
        assert_eq!(
            timestamptz("0001-01-01 00:00:00+00 BC", 6),
            ts(-(719_162 + 366) * MICROS_PER_DAY)
        );
        assert_eq!(
            timestamptz("infinity", 3),
            Ok(Value::Infinite {
                kind: InfiniteKind::TimestampTz,
                negative: false
            })
        );
        assert_eq!(
            timestamptz("2024-01-02 03:04:05+00", 0),
            Ok(Value::Timestamp {
                epoch_micros: instant,
                precision: 0
            })
        );
        for s in [
            "2024-01-02 03:04:05",
            "2024-01-02 03:04:05 BC+00",
            "2024-01-02 03:04:05Z",
            "2024-01-02 03:04:05+0530",
        ] {
            assert!(timestamptz(s, 6).is_err(), "{s}");
        }
    }

    #[test]
    fn intervals_in_postgres_style() {
        assert_eq!(
            interval("1 year 2 mons 3 days 04:05:06.789"),
            iv(14, 3, 14_706_789_000)
        );
        assert_eq!(
            interval("-1 mons -2 days +03:04:05"),
            iv(-1, -2, 11_045_000_000)
        );
        assert_eq!(interval("00:00:00"), iv(0, 0, 0));
        assert_eq!(interval("-00:00:01.5"), iv(0, 0, -1_500_000));
        assert_eq!(interval("1 day -00:00:01"), iv(0, 1, -1_000_000));
        assert_eq!(interval("10 years"), iv(120, 0, 0));
        assert_eq!(interval("-178000000 years"), iv(-2_136_000_000, 0, 0));
        assert_eq!(interval("1 mon"), iv(1, 0, 0));
        assert_eq!(interval("-1 years -1 mons"), iv(-13, 0, 0));
        assert_eq!(interval("1 year -1 mons +1 day"), iv(11, 1, 0));
        assert_eq!(interval("-2147483648 days"), iv(0, i32::MIN, 0));
        assert_eq!(interval("838:59:59.999999"), iv(0, 0, 3_020_399_999_999));
        assert_eq!(interval("-2562047788:00:54.775808"), iv(0, 0, i64::MIN));
        assert_eq!(interval("2562047788:00:54.775807"), iv(0, 0, i64::MAX));
        assert_eq!(interval("infinity"), iv(i32::MAX, i32::MAX, i64::MAX));
        assert_eq!(interval("-infinity"), iv(i32::MIN, i32::MIN, i64::MIN));
        for s in [
            "",
            "1",
            "1 fortnight",
            "01:02",
            "00:00:00 1 day",
            "2562047788:00:54.775808",
            "2147483648 days",
            "178956971 years",
            "1 day  00:00:01",
            "@ 1 day",
            "P1D",
            "1 day 00:60:00",
            "--00:00:01",
        ] {
            assert!(interval(s).is_err(), "{s}");
        }
    }
}
