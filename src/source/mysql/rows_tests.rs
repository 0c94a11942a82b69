//! Tests of `rows.rs`.

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
        let theirs =
            if theirs.starts_with("-") && theirs.trim_start_matches(['-', '0', '.']).is_empty() {
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
