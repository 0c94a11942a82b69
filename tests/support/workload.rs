//! A random, replayable workload on two tables `a` and `b` (id, v, pad) of
//! one MariaDB database, and the change sequence it must produce.
//!
//! Every statement runs on one connection, so commit order is execution
//! order, and the expected changes are exactly the order the binlog holds.

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// One expected change: op, table, id, v (v of the after image, or of the
/// before image for deletes).
pub type Change = (String, String, i64, i64);

pub struct Workload {
    db: String,
    conn: mysql_async::Conn,
    rng: rand::rngs::StdRng,
    rows: [Vec<(i64, i64)>; 2],
    next_id: i64,
}

impl Workload {
    /// Creates the tables in `db` (which must exist and be empty).
    pub async fn new(url: &str, db: &str, seed: u64) -> Workload {
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(url).unwrap())
            .await
            .unwrap();
        conn.query_drop(format!(
            "CREATE TABLE {db}.a (id BIGINT PRIMARY KEY, v BIGINT, pad VARCHAR(200));
             CREATE TABLE {db}.b (id BIGINT PRIMARY KEY, v BIGINT, pad VARCHAR(200));"
        ))
        .await
        .unwrap();
        Workload {
            db: db.to_string(),
            conn,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            rows: [Vec::new(), Vec::new()],
            next_id: 1,
        }
    }

    /// Runs `txs` random transactions (1–11 changes each); returns their
    /// changes in commit order.
    pub async fn run(&mut self, txs: usize) -> Vec<Change> {
        self.run_paced(txs, None).await
    }

    /// As [`Workload::run`], at most `per_sec` transactions a second: the
    /// load lasts at least `txs / per_sec` seconds however fast the machine
    /// is (tests that must act while it runs).
    pub async fn run_paced(&mut self, txs: usize, per_sec: Option<u32>) -> Vec<Change> {
        let started = tokio::time::Instant::now();
        let db = self.db.clone();
        let tables = ["a", "b"];
        let mut expected = Vec::new();
        for i in 0..txs {
            if let Some(rate) = per_sec {
                let due = started + std::time::Duration::from_secs_f64(i as f64 / f64::from(rate));
                tokio::time::sleep_until(due).await;
            }
            let mut stmts = Vec::new();
            let mut changes = Vec::new();
            for _ in 0..self.rng.random_range(1..12) {
                let t = self.rng.random_range(0..2);
                let table = tables[t];
                let op = if self.rows[t].len() < 5 {
                    0
                } else {
                    self.rng.random_range(0..4)
                };
                match op {
                    0 | 1 => {
                        let v = self.rng.random_range(0..1_000_000);
                        let id = self.next_id;
                        stmts.push(format!(
                            "INSERT INTO {db}.{table} VALUES ({id}, {v}, REPEAT('x', {}))",
                            self.rng.random_range(0..200)
                        ));
                        changes.push(("c".to_string(), table.to_string(), id, v));
                        self.rows[t].push((id, v));
                        self.next_id += 1;
                    }
                    2 => {
                        let i = self.rng.random_range(0..self.rows[t].len());
                        self.rows[t][i].1 += 1;
                        let (id, v) = self.rows[t][i];
                        stmts.push(format!("UPDATE {db}.{table} SET v = {v} WHERE id = {id}"));
                        changes.push(("u".to_string(), table.to_string(), id, v));
                    }
                    _ => {
                        let i = self.rng.random_range(0..self.rows[t].len());
                        let (id, v) = self.rows[t].swap_remove(i);
                        stmts.push(format!("DELETE FROM {db}.{table} WHERE id = {id}"));
                        changes.push(("d".to_string(), table.to_string(), id, v));
                    }
                }
            }
            self.conn
                .query_drop(format!("START TRANSACTION; {}; COMMIT", stmts.join("; ")))
                .await
                .unwrap();
            expected.extend(changes);
        }
        expected
    }
}

/// The changes in JSON lines, in the same form as [`Change`].
pub fn observed(lines: &[Value]) -> Vec<Change> {
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

/// Panics with the first difference when `got` is not exactly `expected`.
pub fn assert_exact(got: &[Change], expected: &[Change], context: &str) {
    if got != expected {
        let first_diff = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{context}: {} events, expected {}; first difference at {first_diff}: got {:?}, expected {:?}",
            got.len(),
            expected.len(),
            got.get(first_diff),
            expected.get(first_diff),
        );
    }
}
