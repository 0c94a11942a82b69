//! Type resolution and decoding through [`decode_text`] for every built-in
//! class; the per-format edge cases live next to each parser.

use bytes::Bytes;

use super::*;
use crate::event::value::{Date, DateTime, InfiniteKind, Time};

fn b(oid: u32) -> PgType {
    builtin(oid, -1).expect("a built-in oid")
}

fn dec(oid: u32, text: &str) -> Result<Value, TypeError> {
    decode_text(&b(oid), text.as_bytes())
}

fn dec_mod(oid: u32, typmod: i32, text: &str) -> Result<Value, TypeError> {
    decode_text(
        &builtin(oid, typmod).expect("a built-in oid"),
        text.as_bytes(),
    )
}

#[test]
fn builtin_scalars_and_arrays() {
    let int4 = b(23);
    assert_eq!(
        (int4.name.as_str(), &int4.kind),
        ("int4", &PgKind::Builtin(Builtin::Int4))
    );
    let arr = builtin(1231, 655_366).expect("_numeric");
    assert_eq!(arr.name, "_numeric");
    let PgKind::Array(elem) = &arr.kind else {
        panic!("not an array: {arr:?}");
    };
    assert_eq!(
        (elem.oid, elem.typmod, elem.name.as_str()),
        (1700, 655_366, "numeric")
    );
    for (oid, array_oid) in [
        (16, 1000),
        (17, 1001),
        (20, 1016),
        (21, 1005),
        (23, 1007),
        (25, 1009),
        (114, 199),
        (700, 1021),
        (701, 1022),
        (1042, 1014),
        (1043, 1015),
        (1082, 1182),
        (1114, 1115),
        (1184, 1185),
        (2950, 2951),
        (3802, 3807),
    ] {
        let a = b(array_oid);
        assert!(matches!(&a.kind, PgKind::Array(e) if e.oid == oid), "{a:?}");
    }
    assert_eq!(builtin(16_384, -1), None);
    assert_eq!(builtin(0, -1), None);
}

#[test]
fn builtin_oids_match_pg_type() {
    for (oid, name) in [
        (16, "bool"),
        (17, "bytea"),
        (18, "char"),
        (19, "name"),
        (20, "int8"),
        (21, "int2"),
        (23, "int4"),
        (25, "text"),
        (26, "oid"),
        (114, "json"),
        (142, "xml"),
        (650, "cidr"),
        (700, "float4"),
        (701, "float8"),
        (774, "macaddr8"),
        (790, "money"),
        (829, "macaddr"),
        (869, "inet"),
        (1042, "bpchar"),
        (1043, "varchar"),
        (1082, "date"),
        (1083, "time"),
        (1114, "timestamp"),
        (1184, "timestamptz"),
        (1186, "interval"),
        (1266, "timetz"),
        (1560, "bit"),
        (1562, "varbit"),
        (1700, "numeric"),
        (2950, "uuid"),
        (3220, "pg_lsn"),
        (3614, "tsvector"),
        (3802, "jsonb"),
        (199, "_json"),
        (1000, "_bool"),
        (1001, "_bytea"),
        (1005, "_int2"),
        (1007, "_int4"),
        (1009, "_text"),
        (1014, "_bpchar"),
        (1015, "_varchar"),
        (1016, "_int8"),
        (1020, "_box"),
        (1021, "_float4"),
        (1022, "_float8"),
        (1115, "_timestamp"),
        (1182, "_date"),
        (1185, "_timestamptz"),
        (1231, "_numeric"),
        (2951, "_uuid"),
        (3807, "_jsonb"),
    ] {
        assert_eq!(b(oid).name, name, "oid {oid}");
    }
}

#[test]
fn builtin_table_has_no_duplicate_oids() {
    let mut oids: Vec<u32> = BUILTINS.iter().flat_map(|&(e, a, _, _)| [e, a]).collect();
    let n = oids.len();
    oids.sort_unstable();
    oids.dedup();
    assert_eq!(oids.len(), n);
}

#[test]
fn every_builtin_class_decodes() {
    let text = |s: &str| Ok(Value::Text(s.into()));
    assert_eq!(dec(16, "t"), Ok(Value::Bool(true)));
    assert_eq!(dec(21, "-32768"), Ok(Value::Int(-32_768)));
    assert!(dec(21, "32768").is_err());
    assert_eq!(dec(23, "2147483647"), Ok(Value::Int(2_147_483_647)));
    assert!(dec(23, "2147483648").is_err());
    assert_eq!(dec(20, "-9223372036854775808"), Ok(Value::Int(i64::MIN)));
    assert_eq!(dec(26, "4294967295"), Ok(Value::Int(4_294_967_295)));
    assert_eq!(dec(700, "Infinity"), Ok(Value::Float(f32::INFINITY)));
    assert_eq!(dec(701, "-1.5e-300"), Ok(Value::Double(-1.5e-300)));
    assert_eq!(
        dec(1700, "-Infinity"),
        Ok(Value::Decimal("-Infinity".into()))
    );
    assert_eq!(
        dec(790, "-$1,234.56"),
        Ok(Value::Decimal("-1234.56".into()))
    );
    assert_eq!(dec(25, "héllo"), text("héllo"));
    assert_eq!(dec(1043, ""), text(""));
    assert_eq!(dec(1042, "ab   "), text("ab   "));
    assert_eq!(dec(19, "pg_class"), text("pg_class"));
    assert_eq!(dec(18, "x"), text("x"));
    assert_eq!(dec(142, "<a>b</a>"), text("<a>b</a>"));
    assert_eq!(
        dec(17, "\\xdeadbeef"),
        Ok(Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]))
    );
    assert_eq!(
        dec(114, r#"{"a": [1, 2]}"#),
        Ok(Value::Json(r#"{"a": [1, 2]}"#.into()))
    );
    assert_eq!(dec(3802, "[]"), Ok(Value::Json("[]".into())));
    for (oid, s) in [
        (869, "192.168.0.1/24"),
        (650, "10.0.0.0/8"),
        (829, "08:00:2b:01:02:03"),
        (774, "08:00:2b:01:02:03:04:05"),
    ] {
        assert_eq!(dec(oid, s), Ok(Value::Network(s.into())));
    }
    assert_eq!(
        dec(1082, "2024-01-02"),
        Ok(Value::Date(Date {
            year: 2024,
            month: 1,
            day: 2
        }))
    );
    assert_eq!(
        dec(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").map(|v| matches!(v, Value::Uuid(_))),
        Ok(true)
    );
    for (oid, s) in [
        (3614, "'a' 'b':2"),
        (3220, "16/B374D848"),
        (600, "(1,2)"),
        (3904, "[1,5)"),
    ] {
        assert_eq!(dec(oid, s), Ok(Value::Other(s.into())));
    }
}

#[test]
fn typmod_sets_time_precision() {
    let t = |precision| {
        Ok(Value::Time(Time {
            micros: 1_500_000,
            precision,
        }))
    };
    assert_eq!(dec_mod(1083, -1, "00:00:01.5"), t(6));
    assert_eq!(dec_mod(1083, 3, "00:00:01.5"), t(3));
    assert_eq!(dec_mod(1083, 0, "00:00:01.5"), t(0));
    assert_eq!(
        dec_mod(1114, 2, "2024-01-02 00:00:00"),
        Ok(Value::DateTime(DateTime {
            date: Date {
                year: 2024,
                month: 1,
                day: 2
            },
            micros_of_day: 0,
            precision: 2
        }))
    );
    assert_eq!(
        dec_mod(1184, 0, "1970-01-01 00:00:00+00"),
        Ok(Value::Timestamp {
            epoch_micros: 0,
            precision: 0
        })
    );
    assert_eq!(
        dec(1184, "-infinity"),
        Ok(Value::Infinite {
            kind: InfiniteKind::TimestampTz,
            negative: true
        })
    );
    assert_eq!(
        dec(1266, "01:00:00+01"),
        Ok(Value::TimeTz {
            micros: 3_600_000_000,
            offset_secs: 3600
        })
    );
    assert_eq!(
        dec(1186, "1 year"),
        Ok(Value::Interval {
            months: 12,
            days: 0,
            micros: 0
        })
    );
}

#[test]
fn bit_one_is_a_boolean_other_bit_strings_are_bits() {
    assert_eq!(dec_mod(1560, 1, "1"), Ok(Value::Bool(true)));
    assert_eq!(
        dec_mod(1560, 10, "1010101011"),
        Ok(Value::Bits {
            bytes: vec![0x02, 0xab],
            len: 10
        })
    );
    // varbit(1) is not bit(1).
    assert_eq!(
        dec_mod(1562, 1, "1"),
        Ok(Value::Bits {
            bytes: vec![1],
            len: 1
        })
    );
    assert_eq!(
        dec_mod(1561, 1, "{1,0}"),
        Ok(Value::Array(Box::new(crate::event::value::Array {
            dims: vec![2],
            elements: vec![Value::Bool(true), Value::Bool(false)]
        })))
    );
}

fn catalog() -> HashMap<u32, TypeDef> {
    let mut c = HashMap::new();
    c.insert(
        16_400,
        TypeDef::Enum {
            name: "mood".into(),
        },
    );
    c.insert(
        16_401,
        TypeDef::Array {
            name: "_mood".into(),
            element_oid: 16_400,
        },
    );
    c.insert(
        16_402,
        TypeDef::Domain {
            name: "short_text".into(),
            base_oid: 1043,
            base_typmod: 24,
        },
    );
    c.insert(
        16_403,
        TypeDef::Composite {
            name: "pair".into(),
            fields: vec![
                FieldDef {
                    name: "m".into(),
                    type_oid: 16_400,
                    typmod: -1,
                },
                FieldDef {
                    name: "s".into(),
                    type_oid: 16_402,
                    typmod: -1,
                },
            ],
        },
    );
    c.insert(
        16_404,
        TypeDef::Other {
            name: "citext".into(),
        },
    );
    c.insert(
        16_405,
        TypeDef::Domain {
            name: "pos_box".into(),
            base_oid: 603,
            base_typmod: -1,
        },
    );
    c.insert(
        16_406,
        TypeDef::Array {
            name: "_pos_box".into(),
            element_oid: 16_405,
        },
    );
    // A domain over itself: a broken catalog must not recurse forever.
    c.insert(
        16_407,
        TypeDef::Domain {
            name: "loop".into(),
            base_oid: 16_407,
            base_typmod: -1,
        },
    );
    c
}

#[test]
fn user_types_resolve_through_the_catalog() {
    let c = catalog();
    let r = |oid| resolve(oid, -1, &c);
    assert_eq!(
        decode_text(&r(16_400), b"happy"),
        Ok(Value::Enum("happy".into()))
    );
    let moods = decode_text(&r(16_401), b"{happy,sad}");
    assert_eq!(
        moods,
        Ok(Value::Array(Box::new(crate::event::value::Array {
            dims: vec![2],
            elements: vec![Value::Enum("happy".into()), Value::Enum("sad".into())]
        })))
    );
    let domain = r(16_402);
    assert!(matches!(&domain.kind, PgKind::Domain(base) if base.oid == 1043 && base.typmod == 24));
    assert_eq!(
        decode_text(&domain, b"abc "),
        Ok(Value::Text("abc ".into()))
    );
    assert_eq!(
        decode_text(&r(16_403), br#"(sad,"x ""y""")"#),
        Ok(Value::Composite(r#"{"m":"sad","s":"x \"y\""}"#.into()))
    );
    assert_eq!(
        decode_text(&r(16_404), b"MiXeD"),
        Ok(Value::Other("MiXeD".into()))
    );
    assert_eq!(r(16_404).name, "citext");
    let missing = r(99_999);
    assert_eq!(
        (missing.name.as_str(), &missing.kind),
        ("99999", &PgKind::Unknown)
    );
    assert_eq!(decode_text(&missing, b"?"), Ok(Value::Other("?".into())));
    assert_eq!(r(23), b(23));
}

#[test]
fn domain_over_box_keeps_the_semicolon_delimiter() {
    let c = catalog();
    let ty = resolve(16_406, -1, &c);
    let Ok(Value::Array(a)) = decode_text(&ty, b"{(1,1),(0,0);(2,2),(1,1)}") else {
        panic!("not an array");
    };
    assert_eq!(a.dims, vec![2]);
}

#[test]
fn catalog_cycles_end_in_unknown() {
    let c = catalog();
    let mut ty = resolve(16_407, -1, &c);
    let mut depth = 0;
    while let PgKind::Domain(base) = ty.kind {
        ty = *base;
        depth += 1;
    }
    assert_eq!((ty.kind, depth), (PgKind::Unknown, MAX_TYPE_DEPTH));
}

#[test]
fn decode_column_maps_pgoutput_values() {
    let ty = b(23);
    assert_eq!(decode_column(&ty, &ColumnValue::Null), Ok(Value::Null));
    assert_eq!(
        decode_column(&ty, &ColumnValue::Unchanged),
        Ok(Value::Unchanged)
    );
    assert_eq!(
        decode_column(&ty, &ColumnValue::Text(Bytes::from_static(b"42"))),
        Ok(Value::Int(42))
    );
    assert!(
        decode_column(
            &ty,
            &ColumnValue::Binary(Bytes::from_static(&[0, 0, 0, 42]))
        )
        .is_err()
    );
}

#[test]
fn errors_name_the_type_and_cut_long_text() {
    let long = "x".repeat(500);
    let err = dec(1082, &long).expect_err("an error");
    assert_eq!(err.type_name, "date");
    assert_eq!(err.text.chars().count(), 101);
    assert!(err.text.ends_with('…'));
    let err = dec(23, "12a").expect_err("an error");
    assert_eq!(
        err.to_string(),
        r#"invalid int4 value "12a": not an integer in range"#
    );
    let err = decode_text(&b(25), b"\xff").expect_err("an error");
    assert_eq!(
        (err.reason, err.text.as_str()),
        ("not valid UTF-8", "\u{fffd}")
    );
}

/// xorshift64*: deterministic, so a failure reproduces.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn random_text_never_panics() {
    let c = catalog();
    let types: Vec<PgType> = BUILTINS
        .iter()
        .flat_map(|&(e, a, _, _)| [b(e), b(a)])
        .chain((16_400..=16_407).map(|oid| resolve(oid, -1, &c)))
        .collect();
    // Characters that matter to some parser, so that inputs get past the first check.
    let alphabet = b"0123456789-+:. ,;{}()[]=\"\\xtfNULnaInfiyBCe$";
    let mut state = 0x9e37_79b9_7f4a_7c15;
    let mut accepted = 0;
    for _ in 0..20_000 {
        let ty = &types[next(&mut state) as usize % types.len()];
        let len = next(&mut state) as usize % 24;
        let text: Vec<u8> = (0..len)
            .map(|_| alphabet[next(&mut state) as usize % alphabet.len()])
            .collect();
        if decode_text(ty, &text).is_ok() {
            accepted += 1;
        }
    }
    // Text, json and Other types accept anything: the loop did run.
    assert!(accepted > 0);
}
