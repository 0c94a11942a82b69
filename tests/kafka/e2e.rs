//! MySQL → Kafka and PostgreSQL → Kafka end to end: routing, keys,
//! partitions, headers, tombstones, transaction metadata, DDL, protobuf.

use std::time::Duration;

use prost::Message as _;
use serde_json::json;
use tidemark::event::proto::pb;

use super::{consume, per_key, prefix};
use crate::support::{Daemon, mariadb, postgres, tansu};

#[tokio::test(flavor = "multi_thread")]
async fn mysql_to_kafka_routes_keys_tombstones_and_transactions() {
    let db = "k_e2e";
    let m = mariadb();
    let b = tansu();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.a (id INT PRIMARY KEY, v INT); CREATE TABLE {db}.nokey (x INT);"
    ))
    .await;
    let p = prefix("k-e2e");
    let mut d = Daemon::mysql("k_e2e", &m.url(), &[&format!("{db}.*")], "").with_sink(&format!(
        r#"type = "kafka"
brokers = "{}"
topic_prefix = "{p}"
schemas = false
transaction_topic = "{{prefix}}.transaction"
topic_creation = {{ partitions = 3 }}"#,
        b.addr()
    ));
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    m.exec(&format!(
        "START TRANSACTION;
         INSERT INTO {db}.a VALUES (1, 10), (2, 20), (3, 30);
         INSERT INTO {db}.nokey VALUES (5);
         COMMIT;
         UPDATE {db}.a SET v = v + 1 WHERE id IN (1, 2);
         DELETE FROM {db}.a WHERE id = 3;
         UPDATE {db}.a SET v = 100 WHERE id = 1;
         CREATE TABLE {db}.late (id INT PRIMARY KEY);"
    ))
    .await;
    let topic = format!("{p}.{db}.a");
    // 3 inserts, 2 updates, 1 delete + tombstone, 1 update.
    let recs = consume(&b.addr(), &[&topic], 8, Duration::from_secs(60));
    assert_eq!(recs.len(), 8, "{recs:#?}");
    let keys = per_key(&recs, "v");
    let k = |id: i32| keys[&format!("{topic}/{}", json!({ "id": id }))].clone();
    let seq = |v: &[(&str, i64)]| -> Vec<(String, serde_json::Value)> {
        v.iter().map(|(o, x)| (o.to_string(), json!(x))).collect()
    };
    assert_eq!(k(1), seq(&[("c", 10), ("u", 11), ("u", 100)]));
    assert_eq!(k(2), seq(&[("c", 20), ("u", 21)]));
    assert_eq!(k(3), seq(&[("c", 30), ("d", 30)]));
    // A row's changes share one partition; the tombstone follows the delete.
    for id in 1..=3 {
        let parts: std::collections::BTreeSet<i32> = recs
            .iter()
            .filter(|r| r.key_json() == json!({ "id": id }))
            .map(|r| r.partition)
            .collect();
        assert_eq!(parts.len(), 1, "key {id} in {parts:?}");
    }
    let mut three: Vec<_> = recs
        .iter()
        .filter(|r| r.key_json() == json!({"id": 3}))
        .collect();
    three.sort_by_key(|r| r.offset);
    assert!(three.last().unwrap().value.is_none(), "tombstone last");
    assert_eq!(three.last().unwrap().header("tidemark.part"), Some("1"));
    // Headers.
    let first = recs.iter().find(|r| r.value.is_some()).unwrap();
    assert_eq!(first.header("tidemark.task"), Some("t"));
    assert_eq!(first.header("tidemark.table"), Some("k_e2e.a"));
    let pos = first.header("tidemark.position").unwrap();
    assert!(pos.starts_with("binlog:"), "{pos}");
    assert_eq!(first.header("tidemark.op"), first.json()["op"].as_str());
    // A table without a key: null key, partition 0.
    let nokey = consume(
        &b.addr(),
        &[&format!("{p}.{db}.nokey")],
        1,
        Duration::from_secs(30),
    );
    assert_eq!((nokey[0].key.as_ref(), nokey[0].partition), (None, 0));
    // DDL on the schema-change topic, keyed by database.
    let ddl = consume(&b.addr(), &[&p], 1, Duration::from_secs(30));
    let late = ddl
        .iter()
        .find(|r| r.json()["ddl"].as_str().is_some_and(|s| s.contains("late")))
        .expect("the CREATE TABLE record");
    assert_eq!(late.key_json(), json!({"databaseName": db}));
    // Transaction metadata: BEGIN/END around each transaction, counts per table.
    let tx = consume(
        &b.addr(),
        &[&format!("{p}.transaction")],
        8,
        Duration::from_secs(30),
    );
    let mut by_id: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    let mut sorted = tx.clone();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in &sorted {
        let v = r.json();
        by_id
            .entry(v["id"].as_str().unwrap().to_string())
            .or_default()
            .push(v);
    }
    let first_tx = recs
        .iter()
        .find(|r| r.key_json() == json!({"id": 1}) && r.json()["op"] == "c")
        .unwrap()
        .json()["transaction"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = &by_id[&first_tx];
    assert_eq!(t[0]["status"], "BEGIN");
    assert_eq!(t[1]["status"], "END");
    assert_eq!(t[1]["event_count"], 4);
    assert_eq!(
        t[1]["data_collections"],
        json!([{"data_collection": "k_e2e.a", "event_count": 3}, {"data_collection": "k_e2e.nokey", "event_count": 1}])
    );
    assert_eq!(by_id.len(), 4, "{by_id:#?}");
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_to_kafka_in_protobuf() {
    let db = "k_pg_e2e";
    let pg = postgres();
    let b = tansu();
    pg.fresh_db(db).await;
    pg.exec(
        db,
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2))",
    )
    .await;
    let p = prefix("k-pg");
    let mut d = Daemon::postgres("k_pg_e2e", &pg.url(db), &["public.*"], "").with_sink(&format!(
        r#"type = "kafka"
brokers = "{}"
topic_prefix = "{p}"
format = "protobuf"
compression = "zstd"
topic_creation = {{ partitions = 2 }}"#,
        b.addr()
    ));
    d.start();
    crate::postgres::wait_streaming(&d);
    pg.exec(
        db,
        "INSERT INTO items VALUES (1, 'a', 1.50), (2, 'b', 2.00);
         UPDATE items SET price = 9.99 WHERE id = 1;
         DELETE FROM items WHERE id = 2;",
    )
    .await;
    let topic = format!("{p}.public.items");
    let recs = consume(&b.addr(), &[&topic], 5, Duration::from_secs(60));
    assert_eq!(recs.len(), 5);
    let mut events = Vec::new();
    let mut sorted = recs.clone();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in &sorted {
        let Some(v) = &r.value else { continue };
        let e = pb::ChangeEvent::decode(v.as_slice()).expect("a tidemark.v1.ChangeEvent");
        let s = e.source.clone().unwrap();
        assert_eq!(
            (s.task.as_str(), s.schema.as_str(), s.table.as_str()),
            ("t", "public", "items")
        );
        assert!(r.header("tidemark.position").unwrap().starts_with("lsn:"));
        events.push((r.key_json(), e));
    }
    let key1: Vec<i32> = events
        .iter()
        .filter(|(k, _)| *k == json!({"id": 1}))
        .map(|(_, e)| e.op)
        .collect();
    assert_eq!(key1, [pb::Op::Create as i32, pb::Op::Update as i32]);
    let upd = &events
        .iter()
        .find(|(_, e)| e.op == pb::Op::Update as i32)
        .unwrap()
        .1;
    let price = upd
        .after
        .as_ref()
        .unwrap()
        .columns
        .iter()
        .find(|c| c.name == "price")
        .unwrap();
    assert_eq!(
        price.value.as_ref().unwrap().kind,
        Some(pb::value::Kind::Decimal("9.99".into()))
    );
    assert!(d.stop().success(), "{}", d.log());
}
