//! `kill -9` of the daemon at random moments under load, restarted several
//! times: a consumer must see every change exactly once, in order per key.

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::{consume, per_key, prefix};
use crate::support::{Daemon, mariadb, tansu};

/// Runs `txs` random transactions on one connection; returns the changes
/// per key (`topic/{"id":n}` → [(op, v)]) in commit order, and the deletes.
async fn load(
    url: String,
    db: String,
    topic_prefix: String,
    txs: usize,
    seed: u64,
) -> (BTreeMap<String, Vec<(String, Value)>>, usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap();
    let mut rows: [Vec<(i64, i64)>; 2] = [Vec::new(), Vec::new()];
    let tables = ["a", "b"];
    let mut next_id = 1i64;
    let mut expected: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    let mut deletes = 0;
    // At most 2,000 transactions a second: the load lasts long enough for
    // the kills to land while it runs, however fast the machine.
    let started = tokio::time::Instant::now();
    for i in 0..txs {
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / 2000.0)).await;
        let mut stmts = Vec::new();
        let mut changes = Vec::new();
        for _ in 0..rng.random_range(1..12) {
            let t = rng.random_range(0..2);
            let table = tables[t];
            let op = if rows[t].len() < 5 {
                0
            } else {
                rng.random_range(0..4)
            };
            match op {
                0 | 1 => {
                    let v = rng.random_range(0..1_000_000);
                    stmts.push(format!("INSERT INTO {db}.{table} VALUES ({next_id}, {v})"));
                    changes.push(("c", table, next_id, v));
                    rows[t].push((next_id, v));
                    next_id += 1;
                }
                2 => {
                    let i = rng.random_range(0..rows[t].len());
                    rows[t][i].1 += 1;
                    let (id, v) = rows[t][i];
                    stmts.push(format!("UPDATE {db}.{table} SET v = {v} WHERE id = {id}"));
                    changes.push(("u", table, id, v));
                }
                _ => {
                    let i = rng.random_range(0..rows[t].len());
                    let (id, v) = rows[t].swap_remove(i);
                    stmts.push(format!("DELETE FROM {db}.{table} WHERE id = {id}"));
                    changes.push(("d", table, id, v));
                }
            }
        }
        c.query_drop(format!("START TRANSACTION; {}; COMMIT", stmts.join("; ")))
            .await
            .unwrap();
        for (op, table, id, v) in changes {
            deletes += usize::from(op == "d");
            expected
                .entry(format!(
                    "{topic_prefix}.{db}.{table}/{}",
                    json!({ "id": id })
                ))
                .or_default()
                .push((op.to_string(), json!(v)));
        }
    }
    (expected, deletes)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_delivers_every_change_exactly_once() {
    let db = "k_crash".to_string();
    let m = mariadb();
    let b = tansu();
    m.fresh_db(&db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.a (id BIGINT PRIMARY KEY, v BIGINT);
         CREATE TABLE {db}.b (id BIGINT PRIMARY KEY, v BIGINT);"
    ))
    .await;
    let p = prefix("k-crash");
    let mut d = Daemon::mysql("k_crash", &m.url(), &[&format!("{db}.*")], "")
        .with_source_option("max_batch_events = 64")
        .with_sink(&format!(
            r#"type = "kafka"
brokers = "{}"
topic_prefix = "{p}"
schemas = false
linger_ms = 20
topic_creation = {{ partitions = 3 }}"#,
            b.addr()
        ));
    d.start();
    crate::mysql::stream::wait_streaming(&d);

    let loader = tokio::spawn(load(m.url(), db.clone(), p.clone(), 15_000, 7));
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut kills = 0;
    while !loader.is_finished() || kills < 3 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..500))).await;
        d.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        d.start();
    }
    let (expected, deletes) = loader.await.unwrap();
    let total: usize = expected.values().map(Vec::len).sum();
    let topics = [format!("{p}.{db}.a"), format!("{p}.{db}.b")];
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let recs = consume(
        &b.addr(),
        &topics,
        total + deletes,
        Duration::from_secs(180),
    );
    let got = per_key(&recs, "v");
    let tombstones = recs.iter().filter(|r| r.value.is_none()).count();
    if got != expected {
        let bad = expected
            .iter()
            .find(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone(), got.get(k).cloned()));
        panic!(
            "after {kills} kills: {} records for {total} changes; first differing key: {bad:?}",
            recs.len()
        );
    }
    assert_eq!(tombstones, deletes, "tombstones");
    assert_eq!(recs.len(), total + deletes, "no duplicates");
    assert!(d.stop().success(), "{}", d.log());
    eprintln!("{kills} kills, {total} changes delivered exactly once");
}
