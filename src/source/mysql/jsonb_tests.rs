//! Tests of `jsonb.rs`.

use super::*;

fn sample() -> Json {
    Json::Object(vec![
        ("a".into(), Json::Number("1".into())),
        (
            "b".into(),
            Json::Array(vec![Json::Bool(true), Json::Null, Json::String("x".into())]),
        ),
        ("big".into(), Json::Number("12345678901234567890".into())),
    ])
}

#[test]
fn round_trips_small_and_large_containers() {
    for large in [false, true] {
        let (ty, body) = encode::value(&sample(), large);
        let mut bytes = vec![ty];
        bytes.extend(body);
        assert_eq!(
            to_text(&bytes).unwrap(),
            r#"{"a": 1, "b": [true, null, "x"], "big": 12345678901234567890}"#
        );
    }
    assert_eq!(to_text(&[]).unwrap(), "null");
    assert_eq!(to_text(&encode::doc(&Json::Array(vec![]))).unwrap(), "[]");
    assert_eq!(
        to_text(&encode::doc(&Json::String("é\"\n".into()))).unwrap(),
        r#""é\"\n""#
    );
}

#[test]
fn inline_int16_and_opaque_decimal_and_datetime() {
    // [int16 -2] as a small array with an inlined value.
    let bytes = [SMALL_ARRAY, 1, 0, 7, 0, INT16, 0xfe, 0xff];
    assert_eq!(to_text(&bytes).unwrap(), "[-2]");
    // Opaque DECIMAL(5,2) 123.45
    let dec = crate::source::mysql::rows::tests::dec_bytes("123.45", 5, 2);
    let mut b = vec![OPAQUE, 246, (dec.len() + 2) as u8, 5, 2];
    b.extend(dec);
    assert_eq!(to_text(&b).unwrap(), "123.45");
    // Opaque DATETIME 2024-02-29 23:59:59.5
    let ym: u64 = 2024 * 13 + 2;
    let int = ((ym << 5 | 29) << 17) | (23 << 12 | 59 << 6 | 59);
    let packed = (int << 24 | 500_000) as i64;
    let mut b = vec![OPAQUE, 12, 8];
    b.extend_from_slice(&packed.to_le_bytes());
    assert_eq!(to_text(&b).unwrap(), "\"2024-02-29 23:59:59.500000\"");
}

#[test]
fn malformed_documents_are_errors_not_panics() {
    let good = encode::doc(&sample());
    for n in 1..good.len() {
        let _ = to_text(&good[..n]); // must not panic
    }
    let mut seed = 7u64;
    for _ in 0..5000 {
        let len = (seed % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        let _ = to_text(&bytes);
    }
    // Deep nesting is refused.
    let mut j = Json::Null;
    for _ in 0..150 {
        j = Json::Array(vec![j]);
    }
    assert!(to_text(&encode::doc(&j)).is_err());
}

#[test]
fn partial_updates_apply_to_the_before_image() {
    let mut diffs = Vec::new();
    for (op, path, v) in [
        (0u8, "$.a", Some(Json::Number("2".into()))),
        (1, "$.b[0]", Some(Json::String("first".into()))),
        (2, "$.big", None),
        (1, "$.\"new key\"", Some(Json::Bool(false))),
    ] {
        diffs.push(op);
        diffs.push(path.len() as u8);
        diffs.extend_from_slice(path.as_bytes());
        if let Some(v) = v {
            let b = encode::doc(&v);
            diffs.push(b.len() as u8);
            diffs.extend(b);
        }
    }
    let parsed = decode_diffs(&diffs).unwrap();
    assert_eq!(parsed.len(), 4);
    let after = apply_diffs(sample(), &parsed).unwrap();
    let mut s = String::new();
    render(&after, &mut s);
    assert_eq!(
        s,
        r#"{"a": 2, "b": ["first", true, null, "x"], "new key": false}"#
    );
    assert!(parse_path("a.b").is_err());
    assert_eq!(
        parse_path("$[3].x").unwrap(),
        vec![PathLeg::Index(3), PathLeg::Key("x".into())]
    );
}
