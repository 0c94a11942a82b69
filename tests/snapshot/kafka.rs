//! A snapshot into Kafka under writes, with `kill -9` during the copy:
//! the topic, replayed in partition order, equals the table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::json;

use super::{Rows, diff};
use crate::kafka::{consume_owned, prefix};
use crate::support::{Daemon, mariadb, tansu, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_into_kafka_under_writes_and_a_kill_replays_to_the_table() {
    let db = "snap_kafka";
    let m = mariadb();
    let b = tansu();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE `{db}`.t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(20) NOT NULL);
         INSERT INTO `{db}`.t SELECT seq, seq, 'old' FROM `{db}`.seq_1_to_60000;"
    ))
    .await;
    let p = prefix("snap-kafka");
    let mut d = Daemon::mysql("snap_kafka", &m.url(), &[&format!("{db}.*")], "")
        .with_sink(&format!(
            r#"type = "kafka"
brokers = "{}"
topic_prefix = "{p}"
schemas = false
topic_creation = {{ partitions = 3 }}"#,
            b.addr()
        ))
        .with_mode("snapshot+stream", 2000, 3);
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut c = mariadb().conn().await;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                c.query_drop(format!(
                    "UPDATE `{db}`.t SET k = k + 1, v = 'w' WHERE id = {};
                     DELETE FROM `{db}`.t WHERE id = {};
                     INSERT INTO `{db}`.t VALUES ({}, 0, 'ins');",
                    (n * 7919) % 60_000 + 1,
                    (n * 104_729) % 60_000 + 1,
                    1_000_000 + n
                ))
                .await
                .unwrap();
            }
            n
        })
    };
    d.start();
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.kill9();
    d.start();
    wait_until(Duration::from_secs(120), "the copy of t", || {
        d.progress()
            .is_some_and(|p| p["snapshot"][format!("{db}.t")]["state"] == "done")
    });
    stop.store(true, Ordering::Relaxed);
    let txs = w.await.unwrap();
    let want: Rows = {
        let mut c = m.conn().await;
        let r: Vec<(i64, i64, String)> = c
            .query(format!("SELECT id, k, v FROM `{db}`.t"))
            .await
            .unwrap();
        r.into_iter()
            .map(|(id, k, v)| (json!(id).to_string(), json!({"id": id, "k": k, "v": v})))
            .collect()
    };
    let topic = format!("{p}.{db}.t");
    let mut last = None;
    for _ in 0..30 {
        let mut recs = consume_owned(
            b.addr(),
            vec![topic.clone()],
            want.len(),
            Duration::from_secs(30),
        )
        .await;
        // A key's records are in one partition, in order.
        recs.sort_by_key(|r| (r.partition, r.offset));
        let mut got = Rows::new();
        for r in recs.iter().filter(|r| r.value.is_some()) {
            let v = r.json();
            match v["op"].as_str().unwrap() {
                "d" => {
                    got.remove(&v["before"]["id"].to_string());
                }
                _ => {
                    got.insert(v["after"]["id"].to_string(), v["after"].clone());
                }
            }
        }
        match diff(&got, &want) {
            None => {
                assert!(d.stop().success(), "{}", d.log());
                eprintln!(
                    "{} rows through Kafka equal the table after {txs} concurrent transactions and a kill",
                    got.len()
                );
                return;
            }
            Some(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "the topic differs from the table: {}\n{}",
        last.unwrap_or_default(),
        d.log()
    );
}
