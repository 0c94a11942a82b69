//! `kill -9` of the daemon at random moments under load: the output must be
//! exactly the source's change sequence, with no gap and no duplicate.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::stream::wait_streaming;
use crate::support::{Daemon, mariadb};

/// One expected change: op, table, id, v (v of the after image, or of the
/// before image for deletes).
type Change = (String, String, i64, i64);

/// Runs `txs` random transactions on one connection (so commit order is
/// execution order) and returns the changes in order.
async fn load(url: String, db: String, txs: usize, seed: u64) -> Vec<Change> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap();
    let mut rows: [Vec<(i64, i64)>; 2] = [Vec::new(), Vec::new()];
    let tables = ["a", "b"];
    let mut next_id = 1i64;
    let mut expected = Vec::new();
    for _ in 0..txs {
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
                    stmts.push(format!(
                        "INSERT INTO {db}.{table} VALUES ({next_id}, {v}, REPEAT('x', {}))",
                        rng.random_range(0..200)
                    ));
                    changes.push(("c".to_string(), table.to_string(), next_id, v));
                    rows[t].push((next_id, v));
                    next_id += 1;
                }
                2 => {
                    let i = rng.random_range(0..rows[t].len());
                    rows[t][i].1 += 1;
                    let (id, v) = rows[t][i];
                    stmts.push(format!("UPDATE {db}.{table} SET v = {v} WHERE id = {id}"));
                    changes.push(("u".to_string(), table.to_string(), id, v));
                }
                _ => {
                    let i = rng.random_range(0..rows[t].len());
                    let (id, v) = rows[t].swap_remove(i);
                    stmts.push(format!("DELETE FROM {db}.{table} WHERE id = {id}"));
                    changes.push(("d".to_string(), table.to_string(), id, v));
                }
            }
        }
        c.query_drop(format!("START TRANSACTION; {}; COMMIT", stmts.join("; ")))
            .await
            .unwrap();
        expected.extend(changes);
    }
    expected
}

fn observed(lines: &[Value]) -> Vec<Change> {
    lines
        .iter()
        .map(|l| {
            let op = l["op"].as_str().unwrap().to_string();
            let image = if op == "d" { &l["before"] } else { &l["after"] };
            (
                op,
                l["source"]["table"].as_str().unwrap().to_string(),
                image["id"].as_i64().unwrap(),
                image["v"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_delivers_every_change_exactly_once() {
    let db = "crash_mysql".to_string();
    let m = mariadb();
    m.fresh_db(&db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.a (id BIGINT PRIMARY KEY, v BIGINT, pad VARCHAR(200));
         CREATE TABLE {db}.b (id BIGINT PRIMARY KEY, v BIGINT, pad VARCHAR(200));"
    ))
    .await;
    let mut d = Daemon::mysql("crash_mysql", &m.url(), &[&format!("{db}.*")], "");
    // Small batches: more commits, more moments to be killed between them.
    std::fs::write(
        &d.config,
        std::fs::read_to_string(&d.config).unwrap().replace(
            "heartbeat_secs = 1",
            "heartbeat_secs = 1\nmax_batch_events = 64",
        ),
    )
    .unwrap();
    d.start();
    wait_streaming(&d);

    let loader = tokio::spawn(load(m.url(), db.clone(), 4000, 7));
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut kills = 0;
    while !loader.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        d.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        d.start();
    }
    let expected = loader.await.unwrap();
    assert!(
        kills >= 3,
        "the load finished before enough kills ({kills})"
    );
    let lines = d.wait_lines(expected.len(), Duration::from_secs(120));
    // A little longer: nothing more may arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines_after = d.lines();
    assert_eq!(
        lines_after.len(),
        lines.len(),
        "extra events after the expected ones"
    );
    let got = observed(&lines_after);
    if got != expected {
        let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "after {kills} kills: {} events, expected {}; first difference at {first_diff:?}: got {:?}, expected {:?}",
            got.len(),
            expected.len(),
            first_diff.map(|i| &got[i]),
            first_diff.map(|i| &expected[i]),
        );
    }
    // Each transaction's events are numbered 1, 2, 3… however many
    // restarts it took to deliver them.
    let mut last: Option<(String, u64)> = None;
    for l in &lines_after {
        let id = l["transaction"]["id"].as_str().unwrap().to_string();
        let order = l["transaction"]["total_order"].as_u64().unwrap();
        let want = match &last {
            Some((prev, n)) if *prev == id => n + 1,
            _ => 1,
        };
        assert_eq!(
            order, want,
            "transaction {id}: total_order {order}, expected {want}"
        );
        last = Some((id, order));
    }
    assert!(d.stop().success(), "{}", d.log());
    eprintln!(
        "{kills} kills, {} changes delivered exactly once",
        expected.len()
    );
}
