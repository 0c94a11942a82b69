//! PostgreSQL snapshots: chunks in REPEATABLE READ snapshots placed at
//! their WAL positions, reconciled with transactions they don't see, under
//! concurrent writes and `kill -9`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{Rows, wait_equal};
use crate::support::{Daemon, Postgres, postgres, wait_until};

async fn source_rows(p: &Postgres, db: &str, table: &str) -> Rows {
    let c = p.client(db).await;
    c.query(&format!("SELECT id, k, v FROM {table}"), &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let (id, k, v): (i64, i64, String) = (r.get(0), r.get(1), r.get(2));
            (json!(id).to_string(), json!({"id": id, "k": k, "v": v}))
        })
        .collect()
}

/// Random small transactions until `stop` (see the MariaDB writer); some
/// run two at once, so that commits interleave with snapshots.
async fn writer(
    p: &Postgres,
    db: String,
    table: &str,
    max_id: i64,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> u64 {
    let c = p.client(&db).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next_new = max_id * 10 + seed as i64 * 1_000_000;
    let mut txs = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut sql = String::from("BEGIN;");
        for _ in 0..rng.random_range(1..4) {
            let id = rng.random_range(1..=max_id);
            sql.push_str(&match rng.random_range(0..4) {
                0 => {
                    next_new += 1;
                    format!("INSERT INTO {table} (id, k, v) VALUES ({next_new}, {id}, 'new');")
                }
                1 => format!("UPDATE {table} SET k = k + 1, v = 'upd' WHERE id = {id};"),
                2 => {
                    next_new += 1;
                    format!("UPDATE {table} SET id = {next_new}, v = 'moved' WHERE id = {id};")
                }
                _ => format!("DELETE FROM {table} WHERE id = {id};"),
            });
        }
        sql.push_str("COMMIT;");
        c.batch_execute(&sql).await.unwrap();
        txs += 1;
    }
    txs
}

async fn load(p: &Postgres, db: &str, table: &str, rows: u64) {
    p.exec(
        db,
        &format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v TEXT NOT NULL);
             INSERT INTO {table} SELECT g, g % 1000, 'row' || g FROM generate_series(1, {rows}) g;
             ANALYZE {table};"
        ),
    )
    .await;
}

fn snapshot_state(d: &Daemon, table: &str) -> Option<String> {
    d.progress()?["snapshot"][table]["state"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_rows_under_writes_equal_the_table() {
    let db = "snap_big_pg";
    let p = postgres();
    p.fresh_db(db).await;
    load(p, db, "big", 1_000_000).await;
    let url = p.url(db);
    let mut d = Daemon::postgres("snap_big_pg", &url, &["public.*"], "").with_mode(
        "snapshot+stream",
        8192,
        4,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let stop = stop.clone();
            tokio::spawn(async move {
                writer(postgres(), db.to_string(), "big", 1_000_000, stop, 1 + i).await
            })
        })
        .collect();
    let started = std::time::Instant::now();
    d.start();
    wait_until(Duration::from_secs(300), "the snapshot of big", || {
        snapshot_state(&d, "public.big").as_deref() == Some("done")
    });
    let copy_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut txs = 0;
    for w in writers {
        txs += w.await.unwrap();
    }
    assert!(txs > 50, "the writers ran {txs} transactions only");
    let (rows, reads) = wait_equal(&d, "big", &["id"], Duration::from_secs(120), || {
        source_rows(p, db, "big")
    })
    .await;
    assert!(reads >= 990_000, "{reads} snapshot reads");
    assert!(d.stop().success(), "{}", d.log());
    eprintln!(
        "1,000,000-row table copied in {copy_secs:.1} s under {txs} concurrent transactions; {} rows replayed equal the table ({reads} reads)",
        rows.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_snapshot_and_mid_handoff_stays_exact() {
    let db = "snap_kill_pg";
    let p = postgres();
    p.fresh_db(db).await;
    load(p, db, "t1", 150_000).await;
    // A composite key of a text (with a collation) and a uuid; a table
    // without a key, read whole.
    p.exec(
        db,
        "CREATE TABLE t2 (region TEXT COLLATE \"C\" NOT NULL, uid UUID NOT NULL, k BIGINT NOT NULL, PRIMARY KEY (region, uid));
         INSERT INTO t2 SELECT (ARRAY['b','A','a2','Z'])[1 + g % 4], md5(g::text)::uuid, g FROM generate_series(1, 40000) g;
         CREATE TABLE t3 (id BIGINT NOT NULL, k BIGINT NOT NULL);
         INSERT INTO t3 SELECT g, g FROM generate_series(1, 5000) g;
         CREATE TABLE t4 (id INT PRIMARY KEY);
         ANALYZE;",
    )
    .await;
    let url = p.url(db);
    let mut d = Daemon::postgres("snap_kill_pg", &url, &["public.*"], "").with_mode(
        "snapshot+stream",
        2000,
        3,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let stop = stop.clone();
        tokio::spawn(
            async move { writer(postgres(), db.to_string(), "t1", 150_000, stop, 2).await },
        )
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    d.start();
    let mut kills = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..900))).await;
        d.kill9();
        kills += 1;
        d.start();
    }
    wait_until(Duration::from_secs(300), "the snapshot of t1", || {
        snapshot_state(&d, "public.t1").as_deref() == Some("done")
    });
    stop.store(true, Ordering::Relaxed);
    let txs = w.await.unwrap();
    let (rows, reads) = wait_equal(&d, "t1", &["id"], Duration::from_secs(120), || {
        source_rows(p, db, "t1")
    })
    .await;
    assert!(reads >= 140_000, "{reads} reads of t1");
    let t2: Rows = p
        .client(db)
        .await
        .query("SELECT region, uid::text, k FROM t2", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let (region, uid, k): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            (
                format!("{}|{}", json!(region), json!(uid)),
                json!({"region": region, "uid": uid, "k": k}),
            )
        })
        .collect();
    let (got2, _) = super::replay_file(&d.out, "t2", &["region", "uid"]);
    assert_eq!(super::diff(&got2, &t2), None);
    let (got3, reads3) = super::replay_file(&d.out, "t3", &["id"]);
    assert_eq!(got3.len(), 5000);
    assert!(reads3 >= 5000);
    assert_eq!(
        snapshot_state(&d, "public.t4").as_deref(),
        Some("done"),
        "an empty table"
    );
    assert!(d.stop().success(), "{}", d.log());
    let runs = d.log();
    let copying_kills = runs
        .split("----- restart -----")
        .take_while(|r| !r.contains("initial snapshot: every table copied"))
        .count();
    assert!(
        copying_kills >= 2,
        "only {copying_kills} kills landed while copying"
    );
    eprintln!(
        "{copying_kills} of {kills} kills during the snapshot, the rest during the handoff; {} rows of t1 equal the table after {txs} concurrent transactions ({reads} reads)",
        rows.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_mode_copies_every_table_and_completes() {
    let db = "snap_once_pg";
    let p = postgres();
    p.fresh_db(db).await;
    load(p, db, "a", 3000).await;
    load(p, db, "b", 10).await;
    let url = p.url(db);
    let mut d =
        Daemon::postgres("snap_once_pg", &url, &["public.*"], "").with_mode("snapshot", 1000, 2);
    d.start();
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", d.log());
    let lines = d.lines();
    assert!(lines.iter().all(|l| l["op"] == "r"), "only snapshot reads");
    assert_eq!(super::reads(&lines, "a").0, 3000);
    assert_eq!(super::reads(&lines, "b").0, 10);
    let marks: Vec<&str> = lines
        .iter()
        .map(|l| l["source"]["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(marks.first(), Some(&"first"));
    assert_eq!(marks.last(), Some(&"last"));
    let src = &lines[0]["source"];
    assert!(src["lsn"].as_u64().unwrap() > 0);
    assert!(lines[0]["transaction"].is_null());
    assert_eq!(
        super::diff(
            &super::replay(&lines, "a", &["id"]),
            &source_rows(p, db, "a").await
        ),
        None
    );
    // A one-shot copy drops its slot: none is left holding WAL.
    let slots = p
        .client("postgres")
        .await
        .query(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'tidemark_snap_once_pg'",
            &[],
        )
        .await
        .unwrap();
    assert!(slots.is_empty(), "the slot is left: {}", d.log());
}
