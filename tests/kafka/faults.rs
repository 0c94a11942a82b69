//! Faults: a broker that hangs or goes down mid-load (tansu paused;
//! rdkafka's mock cluster, in this process, for a broker that refuses
//! connections and for injected request errors), messages over the size
//! limit under both policies, a missing topic.

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{Value, json};

use super::{consume, per_key, prefix};
use crate::support::{Daemon, mariadb, private_tansu, tansu};

type Expected = BTreeMap<String, Vec<(String, Value)>>;

/// `txs` transactions of inserts and updates over 50 keys of `db.t`, one
/// connection; returns the changes per key of `topic`.
async fn load(url: String, db: String, topic: String, txs: usize) -> Expected {
    let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap();
    let mut expected = Expected::new();
    let mut v = 0i64;
    for i in 0..txs {
        let mut stmts = Vec::new();
        for j in 0..3 {
            let id = ((i * 3 + j) % 50) as i64;
            v += 1;
            stmts.push(format!(
                "INSERT INTO {db}.t VALUES ({id}, {v}) ON DUPLICATE KEY UPDATE v = {v}"
            ));
            let op = if i * 3 + j < 50 { "c" } else { "u" };
            expected
                .entry(format!("{topic}/{}", json!({ "id": id })))
                .or_default()
                .push((op.to_string(), json!(v)));
        }
        c.query_drop(format!("START TRANSACTION; {}; COMMIT", stmts.join("; ")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    expected
}

async fn setup(db: &str) {
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, v BIGINT)"
    ))
    .await;
}

fn sink(brokers: &str, p: &str, extra: &str) -> String {
    format!(
        "type = \"kafka\"\nbrokers = \"{brokers}\"\ntopic_prefix = \"{p}\"\nschemas = false\ntopic_creation = {{ partitions = 3 }}\n{extra}"
    )
}

fn check(got: &Expected, expected: &Expected, records: usize) {
    let total: usize = expected.values().map(Vec::len).sum();
    if got != expected {
        for (k, v) in expected {
            let g = got.get(k).cloned().unwrap_or_default();
            for item in v {
                if !g.contains(item) {
                    eprintln!("MISSING {k} {item:?}");
                }
            }
        }
        let bad = expected.iter().find(|(k, v)| got.get(*k) != Some(v));
        panic!("differs: {bad:?} vs {:?}", bad.map(|(k, _)| got.get(k)));
    }
    assert_eq!(records, total, "duplicates");
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_hung_mid_load_loses_and_repeats_nothing() {
    let db = "k_pause";
    setup(db).await;
    let b = private_tansu("tansu-pause", 19093);
    let p = prefix("k-pause");
    let topic = format!("{p}.{db}.t");
    let m = mariadb();
    let mut d = Daemon::mysql("k_pause", &m.url(), &[&format!("{db}.*")], "").with_sink(&sink(
        &b.addr(),
        &p,
        "",
    ));
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    let loader = tokio::spawn(load(m.url(), db.into(), topic.clone(), 1500));
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.pause();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        d.is_running(),
        "the daemon must wait for the broker, not fail"
    );
    b.resume();
    let expected = loader.await.unwrap();
    let total: usize = expected.values().map(Vec::len).sum();
    let recs = consume(&b.addr(), &[&topic], total, Duration::from_secs(120));
    check(&per_key(&recs, "v"), &expected, recs.len());
    assert!(d.stop().success(), "{}", d.log());
}

/// A mock cluster with `topic` (3 partitions).
fn mock(topic: &str) -> MockCluster<'static, DefaultProducerContext> {
    let c = MockCluster::new(1).unwrap();
    c.create_topic(topic, 3, 1).unwrap();
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_down_mid_load_loses_and_repeats_nothing() {
    let db = "k_mock_down";
    setup(db).await;
    let p = prefix("k-mockdown");
    let topic = format!("{p}.{db}.t");
    let cluster = mock(&topic);
    let brokers = cluster.bootstrap_servers();
    let m = mariadb();
    let mut d = Daemon::mysql("k_mock_down", &m.url(), &[&format!("{db}.*")], "")
        .with_sink(&sink(&brokers, &p, ""));
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    let loader = tokio::spawn(load(m.url(), db.into(), topic.clone(), 1500));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The broker refuses connections for a while.
    cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        d.is_running(),
        "the daemon must wait for the broker, not fail"
    );
    cluster.broker_up(1).unwrap();
    let expected = loader.await.unwrap();
    let total: usize = expected.values().map(Vec::len).sum();
    let b = brokers.clone();
    let t = topic.clone();
    let recs =
        tokio::task::spawn_blocking(move || consume(&b, &[&t], total, Duration::from_secs(120)))
            .await
            .unwrap();
    check(&per_key(&recs, "v"), &expected, recs.len());
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_refusing_a_message_as_too_large_is_dead_lettered() {
    let db = "k_mock_large";
    setup(db).await;
    let p = prefix("k-mocklarge");
    let topic = format!("{p}.{db}.t");
    let cluster = mock(&topic);
    cluster
        .create_topic(&format!("{p}.dead-letter"), 1, 1)
        .unwrap();
    let brokers = cluster.bootstrap_servers();
    let m = mariadb();
    let mut d = Daemon::mysql("k_mock_large", &m.url(), &[&format!("{db}.*")], "")
        .with_sink(&sink(&brokers, &p, "on_oversized = \"dead_letter\""));
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    m.exec(&format!("INSERT INTO {db}.t VALUES (1, 1)")).await;
    let b = brokers.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || consume(&b, &[&t], 1, Duration::from_secs(60)))
        .await
        .unwrap();
    // The broker refuses the next produce request as too large.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    m.exec(&format!("INSERT INTO {db}.t VALUES (2, 2)")).await;
    m.exec(&format!("INSERT INTO {db}.t VALUES (3, 3)")).await;
    let b = brokers.clone();
    let dl = format!("{p}.dead-letter");
    let dead = tokio::task::spawn_blocking(move || consume(&b, &[&dl], 1, Duration::from_secs(60)))
        .await
        .unwrap();
    let v = dead[0].json();
    assert_eq!(v["topic"], json!(topic));
    assert!(v["error"].as_str().unwrap().contains("refused"), "{v}");
    assert!(
        v["position"].as_str().unwrap().starts_with("binlog:"),
        "{v}"
    );
    // The refused row is replaced by its dead letter; the others go on.
    let refused = dead[0].key_json();
    let b = brokers.clone();
    let t = topic.clone();
    let recs = tokio::task::spawn_blocking(move || consume(&b, &[&t], 2, Duration::from_secs(60)))
        .await
        .unwrap();
    let keys: Vec<Value> = recs.iter().map(|r| r.key_json()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(!keys.contains(&refused), "{keys:?} / refused {refused}");
    assert!(d.is_running());
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_message_fails_the_task_or_is_dead_lettered() {
    let b = tansu();
    let m = mariadb();
    for policy in ["fail", "dead_letter"] {
        let db = format!("k_large_{policy}");
        setup(&db).await;
        m.exec(&format!("ALTER TABLE {db}.t ADD COLUMN pad TEXT"))
            .await;
        let p = prefix(&format!("k-large-{policy}"));
        let mut d = Daemon::mysql(&db, &m.url(), &[&format!("{db}.*")], "").with_sink(&sink(
            &b.addr(),
            &p,
            &format!("max_message_bytes = 2000\non_oversized = \"{policy}\""),
        ));
        d.start();
        crate::mysql::stream::wait_streaming(&d);
        m.exec(&format!(
            "INSERT INTO {db}.t VALUES (1, 1, 'small'); INSERT INTO {db}.t VALUES (2, 2, REPEAT('x', 5000)); INSERT INTO {db}.t VALUES (3, 3, 'small');"
        ))
        .await;
        let topic = format!("{p}.{db}.t");
        if policy == "fail" {
            let status = d.wait_exit(Duration::from_secs(60));
            assert!(!status.success());
            let log = d.log();
            assert!(
                log.contains(&format!("for topic {topic}"))
                    && log.contains("over the limit of 2000 bytes"),
                "{log}"
            );
            assert!(log.contains("on_oversized"), "{log}");
            // Nothing after the oversized row was written.
            let recs = consume(&b.addr(), &[&topic], 0, Duration::from_secs(30));
            assert!(
                !recs.iter().any(|r| r.key_json() == json!({"id": 3})),
                "{recs:?}"
            );
        } else {
            let recs = consume(&b.addr(), &[&topic], 2, Duration::from_secs(60));
            let ids: Vec<Value> = recs.iter().map(|r| r.key_json()["id"].clone()).collect();
            assert!(
                ids.contains(&json!(1)) && ids.contains(&json!(3)),
                "{ids:?}"
            );
            let dead = consume(
                &b.addr(),
                &[&format!("{p}.dead-letter")],
                1,
                Duration::from_secs(30),
            );
            let v = dead[0].json();
            assert_eq!(v["topic"], json!(topic));
            assert_eq!(v["limit"], json!(2000));
            assert!(v["size"].as_u64().unwrap() > 5000, "{v}");
            assert_eq!(dead[0].key_json(), json!({"id": 2}));
            assert!(d.stop().success(), "{}", d.log());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_topic_with_require_existing_is_a_clear_error() {
    let b = tansu();
    let m = mariadb();
    let db = "k_missing";
    setup(db).await;
    let p = prefix("k-missing");
    let mut d = Daemon::mysql(db, &m.url(), &[&format!("{db}.*")], "").with_sink(
        &sink(
            &b.addr(),
            &p,
            "[tasks.sink.topic_creation]\nmode = \"require_existing\"",
        )
        .replace("topic_creation = { partitions = 3 }\n", ""),
    );
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    m.exec(&format!("INSERT INTO {db}.t VALUES (1, 1)")).await;
    assert!(!d.wait_exit(Duration::from_secs(60)).success());
    let log = d.log();
    assert!(
        log.contains(&format!("topic {p}.{db}.t does not exist"))
            && log.contains("require_existing"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
/// Transactional delivery, with retriable produce errors injected.
///
/// Request errors are injected here and not with the idempotent producer:
/// the mock cluster checks producer sequence numbers only for transactional
/// producers (rdkafka_mock.c), while librdkafka's idempotent producer relies
/// on the broker rejecting a batch that follows a failed one (a real broker
/// answers OUT_OF_ORDER_SEQUENCE_NUMBER); against the mock, a failed batch
/// followed by an accepted one is taken as persisted and never retried.
async fn transactional_delivery_on_the_mock_cluster() {
    let db = "k_txn";
    setup(db).await;
    let p = prefix("k-txn");
    let topic = format!("{p}.{db}.t");
    let cluster = mock(&topic);
    let brokers = cluster.bootstrap_servers();
    let m = mariadb();
    let mut d = Daemon::mysql("k_txn", &m.url(), &[&format!("{db}.*")], "").with_sink(&sink(
        &brokers,
        &p,
        "delivery = \"transactional\"",
    ));
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    // Retriable produce errors on the first four produce requests (nothing
    // is produced before the load): retried in order, without loss or
    // duplicates.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 4],
    );
    let expected = load(m.url(), db.into(), topic.clone(), 600).await;
    let total: usize = expected.values().map(Vec::len).sum();
    let b = brokers.clone();
    let t = topic.clone();
    let recs =
        tokio::task::spawn_blocking(move || consume(&b, &[&t], total, Duration::from_secs(60)))
            .await
            .unwrap();
    check(&per_key(&recs, "v"), &expected, recs.len());
    assert!(d.stop().success(), "{}", d.log());
}
