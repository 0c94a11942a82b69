//! Exact resume: kill -9 of the daemon under load, restarted several times,
//! and a server restart mid-stream; the output must be the exact change
//! sequence, no gap, no duplicate.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::{source_option, wait_streaming};
use crate::support::{Daemon, postgres, private_postgres, wait_until};

/// One expected change: op, table, key, value column.
type Change = (String, String, i64, Value);

/// Commits `txs` random transactions of inserts, updates and deletes over
/// tables `a` and `b` on one connection; returns the changes in commit order.
async fn load(client: tokio_postgres::Client, txs: usize, seed: u64) -> Vec<Change> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut live: [BTreeSet<i64>; 2] = [BTreeSet::new(), BTreeSet::new()];
    let mut next_id = 1i64;
    let mut expected = Vec::new();
    for tx in 0..txs {
        // Now and then a large transaction: split over several batches,
        // and streamed by the server in chunks (see `streaming_url`).
        let ops = if tx % 25 == 7 {
            1500
        } else {
            rng.random_range(1..=8)
        };
        let mut sql = String::from("BEGIN;");
        let mut changes = Vec::new();
        for _ in 0..ops {
            let t = rng.random_range(0..2usize);
            let table = ["a", "b"][t];
            let pick = rng.random_range(0..10);
            let existing = (!live[t].is_empty()).then(|| {
                *live[t]
                    .iter()
                    .nth(rng.random_range(0..live[t].len()))
                    .unwrap()
            });
            match (pick, existing) {
                (0..=1, Some(id)) => {
                    live[t].remove(&id);
                    sql.push_str(&format!("DELETE FROM {table} WHERE id = {id};"));
                    changes.push(("d".to_string(), table.to_string(), id, Value::Null));
                }
                (2..=4, Some(id)) => {
                    let v = rng.random_range(0..1_000_000i64);
                    sql.push_str(&format!("UPDATE {table} SET v = {v} WHERE id = {id};"));
                    changes.push(("u".to_string(), table.to_string(), id, json!(v)));
                }
                _ => {
                    let id = next_id;
                    next_id += 1;
                    let v = rng.random_range(0..1_000_000i64);
                    live[t].insert(id);
                    sql.push_str(&format!("INSERT INTO {table} VALUES ({id}, {v});"));
                    changes.push(("c".to_string(), table.to_string(), id, json!(v)));
                }
            }
        }
        sql.push_str("COMMIT;");
        client.batch_execute(&sql).await.unwrap();
        expected.extend(changes);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    expected
}

/// The output as (op, table, key, value column).
fn changes(lines: &[Value]) -> Vec<Change> {
    lines
        .iter()
        .map(|l| {
            let op = l["op"].as_str().unwrap().to_string();
            let row = if op == "d" { &l["before"] } else { &l["after"] };
            let v = if op == "d" {
                Value::Null
            } else {
                row["v"].clone()
            };
            (
                op,
                l["source"]["table"].as_str().unwrap().to_string(),
                row["id"].as_i64().unwrap(),
                v,
            )
        })
        .collect()
}

fn first_difference(got: &[Change], want: &[Change]) -> String {
    let i = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "{} events, {} expected; first difference at {i}: got {:?}, expected {:?}",
        got.len(),
        want.len(),
        got.get(i),
        want.get(i)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_resumes_exactly() {
    let db = "pg_kill";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(
        db,
        "CREATE TABLE a (id bigint PRIMARY KEY, v bigint);
         CREATE TABLE b (id bigint PRIMARY KEY, v bigint);",
    )
    .await;
    let url = super::streaming_url(pg, db).await;
    let mut d = Daemon::postgres("pg_kill", &url, &[], "");
    source_option(&d, "max_batch_events = 50");
    d.start();
    wait_streaming(&d);

    let loader = tokio::spawn(load(pg.client(db).await, 600, 42));
    let mut rng = StdRng::seed_from_u64(7);
    let mut kills = 0;
    while !loader.is_finished() || kills < 5 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..700))).await;
        d.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        d.start();
        // Each start reaches the stream before the next kill (on a slow
        // machine connecting can take longer than the pause).
        d.wait_log("reading WAL", Duration::from_secs(60));
        if kills >= 12 {
            break;
        }
    }
    let expected = loader.await.unwrap();
    let lines = d.wait_lines(expected.len(), Duration::from_secs(180));
    let got = changes(&lines);
    assert!(got == expected, "{}", first_difference(&got, &expected));
    assert!(kills >= 5);
    // The restarts resumed (the log shows each start's resume position),
    // and large transactions took the streaming path.
    let log = d.log();
    assert!(log.matches("reading WAL").count() >= 5, "{log}");
    assert!(log.contains("replaying a streamed transaction"), "{log}");
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn server_restart_mid_stream_loses_and_repeats_nothing() {
    let pg = private_postgres("postgres-restart", 15442, "logical");
    let db = "pg_restart";
    pg.fresh_db(db).await;
    pg.exec(db, "CREATE TABLE r (id bigint PRIMARY KEY, pad text)")
        .await;
    let mut d = Daemon::postgres("pg_restart", &pg.url(db), &[], "");
    source_option(&d, "max_batch_events = 200");
    // The sink holds everything while the gate exists: the restart comes
    // mid-stream however fast the machine (the daemon has read part of the
    // backlog and written none of it).
    let gate = d.dir.join("stall");
    d.env.push((
        "TIDEMARK_FAILPOINT_SINK_STALL".into(),
        gate.display().to_string(),
    ));
    std::fs::write(&gate, "").unwrap();
    d.start();
    wait_streaming(&d);

    // A backlog the daemon is still reading when the server goes down.
    let c = pg.client(db).await;
    for tx in 0..200i64 {
        c.batch_execute(&format!(
            "INSERT INTO r SELECT g, repeat('x', 200) FROM generate_series({}, {}) g",
            tx * 500 + 1,
            tx * 500 + 500
        ))
        .await
        .unwrap();
    }
    drop(c);
    assert_eq!(d.lines().len(), 0, "the stalled sink wrote nothing");
    // The server shuts down while the daemon holds the backlog. A logical
    // walsender sends everything before the server stops, so the gate opens
    // once the shutdown has begun (new connections refused).
    std::thread::scope(|scope| {
        let restart = scope.spawn(|| pg.restart());
        let url = pg.url(db);
        let gate = &gate;
        let opener = scope.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            wait_until(Duration::from_secs(60), "the shutdown to begin", || {
                rt.block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
                    .is_err()
            });
            std::fs::remove_file(gate).unwrap();
        });
        opener.join().unwrap();
        restart.join().unwrap();
    });
    let c = pg.client(db).await;
    c.batch_execute("INSERT INTO r SELECT g, 'after' FROM generate_series(100001, 101000) g")
        .await
        .unwrap();
    let lines = d.wait_lines(101_000, Duration::from_secs(300));
    let ids: Vec<i64> = lines
        .iter()
        .map(|l| l["after"]["id"].as_i64().unwrap())
        .collect();
    let want: Vec<i64> = (1..=101_000).collect();
    assert!(
        ids == want,
        "{} ids, first wrong at {:?}",
        ids.len(),
        ids.iter().zip(&want).position(|(a, b)| a != b)
    );
    wait_until(Duration::from_secs(5), "the reconnect in the log", || {
        d.log().contains("restarting")
    });
    assert!(d.stop().success(), "{}", d.log());
    pg.stop();
}
