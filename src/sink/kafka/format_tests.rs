use std::sync::Arc;

use prost::Message as _;
use serde_json::{Value as J, json};

use super::*;
use crate::event::proto::pb;
use crate::event::value::Value;
use crate::event::{ColumnDef, Connector, TxMeta};

fn table() -> Arc<TableSchema> {
    Arc::new(TableSchema {
        merged: None,
        db: "fxdb".into(),
        schema: None,
        name: "t".into(),
        columns: vec![
            ColumnDef {
                name: "id".into(),
                type_name: "int".into(),
                nullable: false,
            },
            ColumnDef {
                name: "v".into(),
                type_name: "varchar".into(),
                nullable: true,
            },
        ],
        key: vec![0],
        uniques: Vec::new(),
        before_complete: true,
        defaults: Vec::new(),
        version: 1,
    })
}

fn ev(op: Op, tx_pos: u64, row: u32) -> ChangeEvent {
    let image = Some(vec![Value::Int(7), Value::Text("x".into())]);
    ChangeEvent {
        op,
        position: Position::Binlog(BinlogPosition {
            file: "b.000001".into(),
            tx_pos,
            event_pos: tx_pos + 10,
            row,
        }),
        tx: Arc::new(TxMeta {
            gtid: Some(format!("0-1-{tx_pos}")),
            server_id: 1,
            commit_ts_ms: 1000,
            xid: None,
            snapshot: None,
        }),
        table: Some(table()),
        before: if op == Op::Create {
            None
        } else {
            image.clone()
        },
        after: if op == Op::Delete { None } else { image },
        ddl: None,
        source_offset: u64::from(row),
        tx_order: 1,
        table_order: 1,
        connector: Connector::Mariadb,
        copying: false,
    }
}

fn fmt(format: KafkaFormat, schemas: bool) -> Formatter {
    Formatter::new(JsonOptions::default(), format, schemas, true, "fx", "t1")
}

fn parse(b: &Option<Vec<u8>>) -> J {
    serde_json::from_slice(b.as_deref().unwrap()).unwrap()
}

#[test]
fn json_without_schema_is_debeziums_payload() {
    let mut out = Vec::new();
    fmt(KafkaFormat::Json, false).event(
        &ev(Op::Create, 4, 0),
        "fx.fxdb.t".into(),
        5_000_000,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(parse(&out[0].key), json!({"id": 7}));
    let v = parse(&out[0].value);
    assert_eq!(v["after"], json!({"id": 7, "v": "x"}));
    assert_eq!(v["op"], json!("c"));
    assert_eq!(out[0].partition_key(), Some(&br#"{"id":7}"#[..]));
}

#[test]
fn json_with_schema_wraps_key_and_value() {
    let mut out = Vec::new();
    fmt(KafkaFormat::Json, true).event(&ev(Op::Update, 4, 0), "fx.fxdb.t".into(), 0, &mut out);
    let k = parse(&out[0].key);
    assert_eq!(k["payload"], json!({"id": 7}));
    assert_eq!(k["schema"]["name"], json!("fx.fxdb.t.Key"));
    assert_eq!(
        k["schema"]["fields"],
        json!([{"type": "int32", "optional": false, "field": "id"}])
    );
    // Partitioning hashes the payload only, as without schemas.
    assert_eq!(out[0].partition_key(), Some(&br#"{"id":7}"#[..]));
    let v = parse(&out[0].value);
    assert_eq!(v["schema"]["name"], json!("fx.fxdb.t.Envelope"));
    assert_eq!(v["schema"]["fields"][0]["name"], json!("fx.fxdb.t.Value"));
    assert_eq!(v["payload"]["before"]["v"], json!("x"));
    let names: Vec<&str> = v["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    let payload_keys: Vec<&String> = v["payload"].as_object().unwrap().keys().collect();
    assert_eq!(names.len(), payload_keys.len());
    for k in payload_keys {
        assert!(names.contains(&k.as_str()), "{k} not in the schema");
    }
}

#[test]
fn delete_is_followed_by_a_tombstone() {
    let mut out = Vec::new();
    fmt(KafkaFormat::Json, false).event(&ev(Op::Delete, 4, 0), "fx.fxdb.t".into(), 0, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].key, out[0].key);
    assert!(out[1].value.is_none());
    assert_eq!((out[0].part, out[1].part), (0, 1));
    let mut f = Formatter::new(
        JsonOptions::default(),
        KafkaFormat::Json,
        false,
        false,
        "fx",
        "t1",
    );
    let mut out = Vec::new();
    f.event(&ev(Op::Delete, 4, 0), "fx.fxdb.t".into(), 0, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn protobuf_decodes_with_prost() {
    let mut out = Vec::new();
    fmt(KafkaFormat::Protobuf, true).event(&ev(Op::Create, 4, 0), "fx.fxdb.t".into(), 0, &mut out);
    let m = pb::ChangeEvent::decode(out[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(m.op, pb::Op::Create as i32);
    assert_eq!(m.source.unwrap().task, "t1");
    // The key stays JSON, without schema.
    assert_eq!(parse(&out[0].key), json!({"id": 7}));
}

#[test]
fn transaction_metadata_counts_per_table() {
    let mut t = TxTracker::default();
    let (closed, begun) = t.event(&ev(Op::Create, 4, 0));
    assert!(closed.is_none());
    let b = begun.unwrap();
    assert_eq!((b.status, b.id.as_str()), (TxStatus::Begin, "0-1-4"));
    assert_eq!(b.position.to_string(), "binlog:b.000001:4:0:0");
    assert_eq!(t.event(&ev(Op::Update, 4, 1)), (None, None));
    // A batch ending inside the transaction closes nothing.
    assert!(t.batch_end(&ev(Op::Update, 4, 1).position).is_none());
    let end = t
        .batch_end(&ev(Op::Update, 4, 1).position.tx_end())
        .unwrap();
    assert_eq!(end.event_count, 2);
    assert_eq!(end.per_table, vec![("fxdb.t".to_string(), 2)]);
    assert_eq!(end.position.to_string(), "binlog:b.000001:4:*");
    // A new transaction closes an open one too.
    t.event(&ev(Op::Create, 100, 0));
    let (closed, begun) = t.event(&ev(Op::Create, 200, 0));
    assert_eq!(closed.unwrap().id, "0-1-100");
    assert_eq!(begun.unwrap().id, "0-1-200");
    let f = fmt(KafkaFormat::Json, false);
    let m = f.tx_record(&end, "fx.transaction".into());
    assert_eq!(
        parse(&m.value),
        json!({"status": "END", "id": "0-1-4", "event_count": 2,
               "data_collections": [{"data_collection": "fxdb.t", "event_count": 2}], "ts_ms": 1000})
    );
    assert_eq!(parse(&m.key), json!({"id": "0-1-4"}));
}

#[test]
fn dead_letter_record_names_the_event() {
    let mut out = Vec::new();
    let f = fmt(KafkaFormat::Json, false);
    fmt(KafkaFormat::Json, false).event(&ev(Op::Create, 4, 0), "fx.fxdb.t".into(), 0, &mut out);
    let d = f.dead_letter(&out[0], 1000, "too large", "fx.dead-letter".into());
    let v = parse(&d.value);
    assert_eq!(v["position"], json!("binlog:b.000001:4:14:0"));
    assert_eq!(v["topic"], json!("fx.fxdb.t"));
    assert_eq!(v["table"], json!("fxdb.t"));
    assert_eq!(v["limit"], json!(1000));
    assert_eq!(d.position, out[0].position);
}

#[test]
fn transaction_counts_survive_a_resume_inside_the_transaction() {
    // After a restart, only the transaction's last two events come again;
    // their numbers say they are the 4th and 5th of it.
    let mut t = TxTracker::default();
    for (order, table_order) in [(4, 3), (5, 4)] {
        let mut e = ev(Op::Create, 4, order as u32);
        e.tx_order = order;
        e.table_order = table_order;
        t.event(&e);
    }
    let end = t
        .batch_end(&ev(Op::Create, 4, 0).position.tx_end())
        .unwrap();
    assert_eq!(end.event_count, 5);
    assert_eq!(end.per_table, vec![("fxdb.t".to_string(), 4)]);
}
