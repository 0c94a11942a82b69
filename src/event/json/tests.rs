//! Tests of the JSON encoding.

use super::values::*;
use super::*;
use crate::event::ColumnDef;
use crate::event::value::Time;
use crate::event::value::{Date, DateTime};
use crate::event::{BinlogPosition, TxMeta};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::sync::Arc;

fn col(name: &str, ty: &str) -> ColumnDef {
    ColumnDef {
        name: name.into(),
        type_name: ty.into(),
        nullable: true,
    }
}

fn encode_one(connector: Connector, ty: &str, v: Value, opts: JsonOptions) -> serde_json::Value {
    let table = Arc::new(TableSchema {
        merged: None,
        db: "d".into(),
        schema: None,
        name: "t".into(),
        columns: vec![col("v", ty)],
        key: vec![],
        uniques: Vec::new(),
        before_complete: true,
        defaults: Vec::new(),
        version: 0,
    });
    let ev = ChangeEvent {
        op: Op::Create,
        position: Position::Binlog(BinlogPosition::start_of("f.000001", 4)),
        tx: Arc::new(TxMeta::default()),
        table: Some(table),
        before: None,
        after: Some(vec![v]),
        ddl: None,
        source_offset: 0,
        tx_order: 1,
        table_order: 1,
        connector,
        copying: false,
    };
    let mut out = Vec::new();
    JsonEncoder::new(opts, "fx", "t1").encode(&ev, 0, &mut out);
    let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    parsed["after"]["v"].clone()
}

fn mysql(ty: &str, v: Value) -> serde_json::Value {
    encode_one(Connector::Mariadb, ty, v, JsonOptions::default())
}

#[test]
fn twos_complement_matches_java_biginteger() {
    // Values from Debezium's fixtures (DECIMAL(38,9) unscaled).
    let b = twos_complement("12345678901234567890123456789123456789");
    assert_eq!(BASE64.encode(b), "CUmw9vACMxPESZBQ5NhfFQ==");
    let b = twos_complement("-99999999999999999999999999999999999999");
    assert_eq!(BASE64.encode(b), "tMSzV6V5O4X2dd3AAAAAAQ==");
    assert_eq!(twos_complement("0"), vec![0]);
    assert_eq!(twos_complement("128"), vec![0, 128]);
    assert_eq!(twos_complement("-128"), vec![0x80]);
    assert_eq!(twos_complement("-129"), vec![0xff, 0x7f]);
    assert_eq!(twos_complement("1234567"), vec![0x12, 0xd6, 0x87]);
}

#[test]
fn decimal_modes() {
    let v = || Value::Decimal("12345678901234567890123456789.123456789".into());
    assert_eq!(
        mysql("decimal(38,9)", v()),
        serde_json::json!("12345678901234567890123456789.123456789")
    );
    let precise = JsonOptions {
        decimal_handling: DecimalHandling::Precise,
        ..Default::default()
    };
    assert_eq!(
        encode_one(Connector::Mariadb, "decimal(38,9)", v(), precise.clone()),
        serde_json::json!("CUmw9vACMxPESZBQ5NhfFQ==")
    );
    assert_eq!(
        encode_one(
            Connector::Postgres,
            "numeric",
            Value::Decimal("123456789012345678901234567890.123456789012".into()),
            precise.clone()
        ),
        serde_json::json!({"scale": 12, "value": "AWrOkK3/Ves0I3mVVuiQoDoU"})
    );
    // NaN stays NaN, where Debezium writes null.
    assert_eq!(
        encode_one(
            Connector::Postgres,
            "numeric",
            Value::Decimal("NaN".into()),
            precise
        ),
        serde_json::json!("NaN")
    );
}

#[test]
fn unsigned_bigint_is_exact_by_default() {
    assert_eq!(
        mysql("bigint unsigned", Value::UInt(u64::MAX)),
        serde_json::json!(18446744073709551615u64)
    );
    let long = JsonOptions {
        bigint_unsigned_handling: BigintUnsignedHandling::Long,
        ..Default::default()
    };
    assert_eq!(
        encode_one(
            Connector::Mariadb,
            "bigint unsigned",
            Value::UInt(u64::MAX),
            long
        ),
        serde_json::json!(-1)
    );
}

#[test]
fn temporal_values_match_debezium_adaptive_mode() {
    let date = Date {
        year: 2024,
        month: 2,
        day: 29,
    };
    assert_eq!(mysql("date", Value::Date(date)), serde_json::json!(19782));
    let dt = |precision| {
        Value::DateTime(DateTime {
            date,
            micros_of_day: 86_399_999_999,
            precision,
        })
    };
    assert_eq!(
        mysql("datetime", dt(0)),
        serde_json::json!(1709251199999i64)
    );
    assert_eq!(
        mysql("datetime(6)", dt(6)),
        serde_json::json!(1709251199999999i64)
    );
    assert_eq!(
        mysql(
            "time(3)",
            Value::Time(Time {
                micros: -3_020_399_999_000,
                precision: 3
            })
        ),
        serde_json::json!(-3020399999000i64)
    );
    assert_eq!(
        mysql(
            "timestamp(6)",
            Value::Timestamp {
                epoch_micros: 1_000_000,
                precision: 6
            }
        ),
        serde_json::json!("1970-01-01T00:00:01.000000Z")
    );
    assert_eq!(
        mysql(
            "timestamp(6)",
            Value::Timestamp {
                epoch_micros: 2_147_483_647_999_999,
                precision: 6
            }
        ),
        serde_json::json!("2038-01-19T03:14:07.999999Z")
    );
    assert_eq!(mysql("year", Value::Year(2155)), serde_json::json!(2155));
}

#[test]
fn zero_dates_are_kept_as_text_or_null_on_request() {
    let zero = Date {
        year: 0,
        month: 0,
        day: 0,
    };
    assert_eq!(
        mysql("date", Value::Date(zero)),
        serde_json::json!("0000-00-00")
    );
    let zdt = Value::DateTime(DateTime {
        date: zero,
        micros_of_day: 0,
        precision: 6,
    });
    assert_eq!(
        mysql("datetime(6)", zdt.clone()),
        serde_json::json!("0000-00-00 00:00:00.000000")
    );
    let null = JsonOptions {
        zero_date_handling: ZeroDateHandling::Null,
        ..Default::default()
    };
    assert_eq!(
        encode_one(Connector::Mariadb, "datetime(6)", zdt, null),
        serde_json::Value::Null
    );
}

#[test]
fn bits_floats_and_binary() {
    assert_eq!(
        mysql(
            "bit(10)",
            Value::Bits {
                bytes: vec![0x02, 0xAB],
                len: 10
            }
        ),
        serde_json::json!("qwI=")
    );
    assert_eq!(
        encode_one(
            Connector::Postgres,
            "varbit",
            Value::Bits {
                bytes: vec![0x05],
                len: 4
            },
            JsonOptions::default()
        ),
        serde_json::json!("0101")
    );
    assert_eq!(
        mysql("double", Value::Double(f64::NAN)),
        serde_json::json!("NaN")
    );
    assert_eq!(
        mysql("double", Value::Double(f64::NEG_INFINITY)),
        serde_json::json!("-Infinity")
    );
    assert_eq!(
        mysql("float", Value::Float(1.23456)),
        serde_json::json!(1.23456)
    );
    assert_eq!(
        mysql("binary(4)", Value::Bytes(vec![0xde, 0xad, 0xbe, 0])),
        serde_json::json!("3q2+AA==")
    );
}

#[test]
fn intervals_uuids_and_timetz() {
    let v = encode_one(
        Connector::Postgres,
        "interval",
        Value::Interval {
            months: 14,
            days: 3,
            micros: 14_706_789_000,
        },
        JsonOptions::default(),
    );
    assert_eq!(v, serde_json::json!("P1Y2M3DT4H5M6.789S"));
    let numeric = JsonOptions {
        interval_handling: IntervalHandling::Numeric,
        ..Default::default()
    };
    let v = encode_one(
        Connector::Postgres,
        "interval",
        Value::Interval {
            months: 14,
            days: 3,
            micros: 14_706_789_000,
        },
        numeric,
    );
    assert_eq!(v, serde_json::json!(37091106789000i64));
    let u: [u8; 16] = [
        0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a,
        0x11,
    ];
    assert_eq!(format_uuid(&u), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    let v = encode_one(
        Connector::Postgres,
        "timetz",
        Value::TimeTz {
            micros: 45_296_789_012,
            offset_secs: 19_800,
        },
        JsonOptions::default(),
    );
    assert_eq!(v, serde_json::json!("12:34:56.789012+05:30"));
}

#[test]
fn fast_path_writes_what_serde_writes() {
    use crate::event::{LsnPosition, SnapshotMark, SnapshotPosition};
    let table = Arc::new(TableSchema {
        merged: None,
        db: "d".into(),
        schema: Some("public".into()),
        name: "t\"x".into(),
        columns: vec![
            col("id", "bigint"),
            col("t", "text"),
            col("n", "numeric"),
            col("b", "bytea"),
            col("u", "text"),
            col("f", "double"),
            col("nul", "text"),
        ],
        key: vec![0],
        uniques: Vec::new(),
        before_complete: true,
        defaults: Vec::new(),
        version: 1,
    });
    let row = |id: i64, text: &str| {
        vec![
            Value::Int(id),
            Value::Text(text.into()),
            Value::Decimal("-12.50".into()),
            Value::Bytes(vec![0, 255, 7]),
            Value::Unchanged,
            Value::Double(0.1),
            Value::Null,
        ]
    };
    let at = Arc::new(Position::Binlog(BinlogPosition::start_of(
        "mysql-bin.000007",
        4242,
    )));
    let snap_tx = Arc::new(TxMeta {
        commit_ts_ms: 1_700_000_000_123,
        snapshot: Some(SnapshotMark::True),
        ..TxMeta::default()
    });
    let mut events = Vec::new();
    for (connector, position, op, tx) in [
        (
            Connector::Mariadb,
            Position::Binlog(BinlogPosition {
                file: "mysql-bin.000007".into(),
                tx_pos: 100,
                event_pos: 150,
                row: 2,
            }),
            Op::Update,
            Arc::new(TxMeta {
                gtid: Some("0-1-9".into()),
                server_id: 1,
                commit_ts_ms: 5,
                ..TxMeta::default()
            }),
        ),
        (
            Connector::Postgres,
            Position::Lsn(LsnPosition {
                commit_lsn: 0x16_B374_D848,
                index: 3,
            }),
            Op::Delete,
            Arc::new(TxMeta {
                xid: Some(77),
                commit_ts_ms: 9,
                ..TxMeta::default()
            }),
        ),
        (
            Connector::Mariadb,
            Position::Snapshot(SnapshotPosition {
                at: at.clone(),
                seq: 3,
                row: 1,
            }),
            Op::Read,
            snap_tx.clone(),
        ),
        (
            Connector::Mariadb,
            Position::Snapshot(SnapshotPosition { at, seq: 3, row: 2 }),
            Op::Read,
            snap_tx,
        ),
    ] {
        events.push(ChangeEvent {
            op,
            position,
            tx,
            table: Some(table.clone()),
            before: (op == Op::Update || op == Op::Delete).then(|| row(1, "old \"quoted\"\n\u{1}")),
            after: (op != Op::Delete).then(|| row(2, "🦀 tide 🌊 ünï \\ x")),
            ddl: None,
            source_offset: 12,
            tx_order: 1,
            table_order: 1,
            connector,
            copying: false,
        });
    }
    for opts in [
        JsonOptions::default(),
        JsonOptions {
            transaction_metadata: Some(false),
            ..JsonOptions::default()
        },
    ] {
        let enc = JsonEncoder::new(opts, "fx", "t1");
        for ev in &events {
            // Twice: the second snapshot row comes from the source cache.
            for _ in 0..2 {
                let (mut fast, mut serde) = (Vec::new(), Vec::new());
                enc.encode(ev, 1_700_000_000_123_456_789, &mut fast);
                enc.encode_serde(ev, 1_700_000_000_123_456_789, &mut serde);
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(serde).unwrap()
                );
            }
        }
    }
}
