//! Booleans, numbers, money, bytea, uuid and bit strings.
//!
//! Each function takes the UTF-8 text of one value and returns the
//! [`Value`] or a short reason why the text is not valid.

use crate::event::value::Value;

pub(super) fn bool(s: &str) -> Result<Value, &'static str> {
    match s {
        "t" => Ok(Value::Bool(true)),
        "f" => Ok(Value::Bool(false)),
        _ => Err("expected t or f"),
    }
}

/// An integer within `min..=max`, the range of the column's type.
pub(super) fn int(s: &str, min: i64, max: i64) -> Result<Value, &'static str> {
    let v: i64 = s.parse().map_err(|_| "not an integer in range")?;
    if (min..=max).contains(&v) {
        Ok(Value::Int(v))
    } else {
        Err("out of range for the type")
    }
}

// Rust's float parsing accepts PostgreSQL's `NaN`, `Infinity` and
// `-Infinity` spellings, and parsing f32 directly avoids double rounding.
pub(super) fn float4(s: &str) -> Result<Value, &'static str> {
    s.parse().map(Value::Float).map_err(|_| "not a number")
}

pub(super) fn float8(s: &str) -> Result<Value, &'static str> {
    s.parse().map(Value::Double).map_err(|_| "not a number")
}

/// Numeric text is kept as sent; it is only checked for shape.
pub(super) fn numeric(s: &str) -> Result<Value, &'static str> {
    if matches!(s, "NaN" | "Infinity" | "-Infinity") || is_decimal(s) {
        Ok(Value::Decimal(s.to_owned()))
    } else {
        Err("not a decimal number")
    }
}

/// `[-]digits[.digits]`, as numeric_out writes it.
fn is_decimal(s: &str) -> bool {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

/// `$12,345.67`, `-$1.00` or `($1.00)` → `12345.67`, `-1.00`, `-1.00`.
///
/// Assumes `lc_monetary` C or en_US style: `$` and `,` are dropped, `.` is
/// the decimal point. Any other character is an error rather than a guess,
/// since in other locales `.` or `,` may mean the opposite.
pub(super) fn money(s: &str) -> Result<Value, &'static str> {
    let (negative, body) = match s.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        Some(inner) => (true, inner),
        None => (false, s),
    };
    let mut negative = negative;
    let mut digits = String::with_capacity(body.len() + 1);
    let mut seen_point = false;
    for c in body.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '$' | ',' if !seen_point => {}
            '-' if !negative && digits.is_empty() => negative = true,
            '.' if !seen_point => {
                if digits.is_empty() {
                    digits.push('0');
                }
                digits.push('.');
                seen_point = true;
            }
            _ => return Err("not a money amount in C/en_US format"),
        }
    }
    if !is_decimal(&digits) {
        return Err("not a money amount in C/en_US format");
    }
    if negative {
        digits.insert(0, '-');
    }
    Ok(Value::Decimal(digits))
}

/// Hex format `\x0aff`, or the legacy escape format (`\\` for a backslash,
/// `\ooo` octal for other bytes, everything else literal).
pub(super) fn bytea(s: &str) -> Result<Value, &'static str> {
    if let Some(hex) = s.strip_prefix("\\x") {
        if hex.len() % 2 != 0 {
            return Err("odd number of hex digits");
        }
        let out: Option<Vec<u8>> = hex
            .as_bytes()
            .chunks_exact(2)
            .map(|pair| Some(hex_digit(pair.first()?)? << 4 | hex_digit(pair.get(1)?)?))
            .collect();
        return out.map(Value::Bytes).ok_or("invalid hex digit");
    }
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                out.push(b'\\');
                rest = tail;
            }
            [a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', tail @ ..] => {
                out.push((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
                rest = tail;
            }
            _ => return Err("invalid escape sequence"),
        }
    }
    Ok(Value::Bytes(out))
}

fn hex_digit(b: &u8) -> Option<u8> {
    char::from(*b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11` (either case).
pub(super) fn uuid(s: &str) -> Result<Value, &'static str> {
    const ERR: &str = "not a UUID in 8-4-4-4-12 hex form";
    let groups: Vec<&str> = s.split('-').collect();
    if groups.iter().map(|g| g.len()).ne([8, 4, 4, 4, 12]) {
        return Err(ERR);
    }
    let hex: Vec<u8> = groups.concat().into_bytes();
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = match pair {
            [hi, lo] => hex_digit(hi).zip(hex_digit(lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        }
        .ok_or(ERR)?;
    }
    Ok(Value::Uuid(out))
}

/// `1010101011` → bytes `[0x02, 0xAB]`, len 10: right-aligned, so the
/// string's last bit is the lowest bit of the last byte. `as_bool` is set
/// for `bit(1)` columns, which decode as booleans.
pub(super) fn bits(s: &str, as_bool: bool) -> Result<Value, &'static str> {
    let bits: Vec<bool> = s
        .bytes()
        .map(|b| match b {
            b'0' => Ok(false),
            b'1' => Ok(true),
            _ => Err("not a bit string"),
        })
        .collect::<Result<_, _>>()?;
    if as_bool {
        return match bits.as_slice() {
            [bit] => Ok(Value::Bool(*bit)),
            _ => Err("bit(1) value is not one bit long"),
        };
    }
    let len = u32::try_from(bits.len()).map_err(|_| "bit string too long")?;
    let mut bytes = vec![0u8; bits.len().div_ceil(8)];
    // Chunks from the end: the first (shortest) chunk pads the first byte.
    for (byte, chunk) in bytes.iter_mut().rev().zip(bits.rchunks(8)) {
        *byte = chunk.iter().fold(0, |acc, &bit| acc << 1 | u8::from(bit));
    }
    Ok(Value::Bits { bytes, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        assert_eq!(bool("t"), Ok(Value::Bool(true)));
        assert_eq!(bool("f"), Ok(Value::Bool(false)));
        assert!(bool("true").is_err() && bool("").is_err());
    }

    #[test]
    fn integers_and_their_ranges() {
        let i8r = (i64::MIN, i64::MAX);
        assert_eq!(
            int("-9223372036854775808", i8r.0, i8r.1),
            Ok(Value::Int(i64::MIN))
        );
        assert_eq!(
            int("9223372036854775807", i8r.0, i8r.1),
            Ok(Value::Int(i64::MAX))
        );
        assert!(int("9223372036854775808", i8r.0, i8r.1).is_err());
        assert_eq!(int("-32768", -32768, 32767), Ok(Value::Int(-32768)));
        assert!(int("32768", -32768, 32767).is_err());
        assert_eq!(
            int("4294967295", 0, 4_294_967_295),
            Ok(Value::Int(4_294_967_295))
        );
        assert!(int("-1", 0, 4_294_967_295).is_err());
        assert!(int("1.0", i8r.0, i8r.1).is_err() && int("", i8r.0, i8r.1).is_err());
    }

    #[test]
    fn floats_including_special_values() {
        assert_eq!(float4("1.1"), Ok(Value::Float(1.1)));
        assert_eq!(float4("3.4028235e+38"), Ok(Value::Float(f32::MAX)));
        assert_eq!(float4("-Infinity"), Ok(Value::Float(f32::NEG_INFINITY)));
        assert_eq!(float8("Infinity"), Ok(Value::Double(f64::INFINITY)));
        assert_eq!(float8("-Infinity"), Ok(Value::Double(f64::NEG_INFINITY)));
        assert_eq!(
            float8("1.7976931348623157e+308"),
            Ok(Value::Double(f64::MAX))
        );
        assert_eq!(float8("5e-324"), Ok(Value::Double(5e-324)));
        assert_eq!(float8("-0"), Ok(Value::Double(-0.0)));
        assert!(matches!(float4("NaN"), Ok(Value::Float(f)) if f.is_nan()));
        assert!(matches!(float8("NaN"), Ok(Value::Double(f)) if f.is_nan()));
        assert!(float8("1,5").is_err() && float8("").is_err());
    }

    #[test]
    fn numerics_keep_their_text() {
        let huge = format!("-{}.{}", "9".repeat(131_072), "0".repeat(16_383));
        for s in [
            "0",
            "-12.50",
            "0.000001",
            "NaN",
            "Infinity",
            "-Infinity",
            &huge,
        ] {
            assert_eq!(numeric(s), Ok(Value::Decimal(s.to_owned())));
        }
        for s in ["", "-", "1.", ".5", "1e5", "+1", "nan", "1.2.3", "--1"] {
            assert!(numeric(s).is_err(), "{s}");
        }
    }

    #[test]
    fn money_in_c_locale_format() {
        for (s, want) in [
            ("$12,345.67", "12345.67"),
            ("-$92,233,720,368,547,758.08", "-92233720368547758.08"),
            ("$92,233,720,368,547,758.07", "92233720368547758.07"),
            ("$0.00", "0.00"),
            ("($1.50)", "-1.50"),
            ("$.05", "0.05"),
            ("$1,000", "1000"),
        ] {
            assert_eq!(money(s), Ok(Value::Decimal(want.to_owned())), "{s}");
        }
        for s in [
            "",
            "$",
            "1.234,56 €",
            "€12.00",
            "$1.00.00",
            "--$1",
            "$1.0,0",
            "(-$1.00)",
        ] {
            assert!(money(s).is_err(), "{s}");
        }
    }

    #[test]
    fn bytea_hex_and_escape_formats() {
        assert_eq!(bytea("\\x"), Ok(Value::Bytes(vec![])));
        assert_eq!(
            bytea("\\x00ff7Fab"),
            Ok(Value::Bytes(vec![0, 0xff, 0x7f, 0xab]))
        );
        assert!(bytea("\\x0").is_err() && bytea("\\xzz").is_err());
        assert_eq!(bytea(""), Ok(Value::Bytes(vec![])));
        assert_eq!(
            bytea("ab\\\\c\\000\\377\\x"),
            Err("invalid escape sequence"),
            "\\x inside the escape format is not an escape"
        );
        assert_eq!(
            bytea("ab\\\\c\\000\\377"),
            Ok(Value::Bytes(vec![b'a', b'b', b'\\', b'c', 0, 0xff]))
        );
        assert!(bytea("\\400").is_err() && bytea("\\12").is_err() && bytea("\\").is_err());
    }

    #[test]
    fn uuids() {
        let want = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        assert_eq!(
            uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Ok(Value::Uuid(want))
        );
        assert_eq!(
            uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            Ok(Value::Uuid(want))
        );
        for s in [
            "",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
            "a0eebc99-9c0b-4ef8-bb6d6-bb9bd380a11",
            "+0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            assert!(uuid(s).is_err(), "{s}");
        }
    }

    #[test]
    fn bit_strings_are_right_aligned() {
        let b = |s| bits(s, false);
        assert_eq!(
            b("1010101011"),
            Ok(Value::Bits {
                bytes: vec![0x02, 0xab],
                len: 10
            })
        );
        assert_eq!(
            b(""),
            Ok(Value::Bits {
                bytes: vec![],
                len: 0
            })
        );
        assert_eq!(
            b("101"),
            Ok(Value::Bits {
                bytes: vec![0x05],
                len: 3
            })
        );
        assert_eq!(
            b("1000000000000001"),
            Ok(Value::Bits {
                bytes: vec![0x80, 0x01],
                len: 16
            })
        );
        assert!(b("102").is_err());
        assert_eq!(bits("1", true), Ok(Value::Bool(true)));
        assert_eq!(bits("0", true), Ok(Value::Bool(false)));
        assert!(bits("10", true).is_err());
    }
}
