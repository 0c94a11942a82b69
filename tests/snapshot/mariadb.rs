//! MariaDB snapshots: chunks in consistent snapshots placed at their
//! binlog positions, under concurrent writes and `kill -9`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{Rows, wait_equal};
use crate::support::{Daemon, Mariadb, mariadb, wait_until};

/// The table's rows as the output encodes them (`id`, `k`, `v`).
async fn source_rows(m: &Mariadb, db: &str, table: &str) -> Rows {
    let mut c = m.conn().await;
    let rows: Vec<(i64, i64, String)> = c
        .query(format!("SELECT id, k, v FROM `{db}`.`{table}`"))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    rows.into_iter()
        .map(|(id, k, v)| (json!(id).to_string(), json!({"id": id, "k": k, "v": v})))
        .collect()
}

/// Random small transactions on `db.table` until `stop`: inserts of new
/// ids, updates of `k`, key changes (`id` moved past the loaded range) and
/// deletes, on ids up to `max_id`. Returns the number of transactions.
async fn writer(
    m: &Mariadb,
    db: String,
    table: &str,
    max_id: i64,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> u64 {
    let mut c = m.conn().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next_new = max_id * 10 + seed as i64 * 1_000_000;
    let mut txs = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut sql = String::from("START TRANSACTION;");
        for _ in 0..rng.random_range(1..4) {
            let id = rng.random_range(1..=max_id);
            sql.push_str(&match rng.random_range(0..4) {
                0 => {
                    next_new += 1;
                    format!(
                        "INSERT INTO `{db}`.`{table}` (id, k, v) VALUES ({next_new}, {id}, 'new');"
                    )
                }
                1 => format!("UPDATE `{db}`.`{table}` SET k = k + 1, v = 'upd' WHERE id = {id};"),
                2 => {
                    next_new += 1;
                    format!(
                        "UPDATE `{db}`.`{table}` SET id = {next_new}, v = 'moved' WHERE id = {id};"
                    )
                }
                _ => format!("DELETE FROM `{db}`.`{table}` WHERE id = {id};"),
            });
        }
        sql.push_str("COMMIT;");
        c.query_drop(sql).await.unwrap();
        txs += 1;
    }
    c.disconnect().await.unwrap();
    txs
}

async fn load(m: &Mariadb, db: &str, table: &str, rows: u64) {
    m.exec(&format!(
        "CREATE TABLE `{db}`.`{table}` (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(20) NOT NULL);
         INSERT INTO `{db}`.`{table}` SELECT seq, seq % 1000, CONCAT('row', seq) FROM `{db}`.seq_1_to_{rows};"
    ))
    .await;
}

fn snapshot_state(d: &Daemon, table: &str) -> Option<String> {
    d.progress()?["snapshot"][table]["state"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_rows_under_writes_equal_the_table() {
    let db = "snap_big";
    let m = mariadb();
    m.fresh_db(db).await;
    load(m, db, "big", 1_000_000).await;
    let mut d = Daemon::mysql("snap_big", &m.url(), &[&format!("{db}.*")], "").with_mode(
        "snapshot+stream",
        8192,
        4,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let stop = stop.clone();
        tokio::spawn(
            async move { writer(mariadb(), db.to_string(), "big", 1_000_000, stop, 1).await },
        )
    };
    // A monitoring agent polling the server's status: MariaDB's
    // binlog_snapshot_position, read by a snapshot meanwhile, may then
    // be this session's value (docs/snapshot.md); the copy must not
    // depend on it.
    let poller = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut c = mariadb().conn().await;
            let mut polls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _: Vec<(String, String)> = c
                    .query("SHOW GLOBAL STATUS LIKE 'binlog_snapshot_%'")
                    .await
                    .unwrap();
                polls += 1;
            }
            c.disconnect().await.unwrap();
            polls
        })
    };
    let started = std::time::Instant::now();
    d.start();
    let table = format!("{db}.big");
    wait_until(Duration::from_secs(300), "the snapshot of big", || {
        snapshot_state(&d, &table).as_deref() == Some("done")
    });
    let copy_secs = started.elapsed().as_secs_f64();
    // Writes go on a little after the copy, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let txs = w.await.unwrap();
    assert!(txs > 50, "the writer ran {txs} transactions only");
    let polls = poller.await.unwrap();
    assert!(polls > 50, "the status was polled {polls} times only");
    let (rows, reads) = wait_equal(&d, "big", &["id"], Duration::from_secs(120), || {
        source_rows(m, db, "big")
    })
    .await;
    assert!(reads >= 990_000, "{reads} snapshot reads");
    let view = d.progress().unwrap()["snapshot"][&table].clone();
    assert!(d.stop().success(), "{}", d.log());
    eprintln!(
        "1,000,000-row table copied in {copy_secs:.1} s under {txs} concurrent transactions and {polls} status polls; {} rows replayed equal the table ({reads} reads; chunks read again: {}, rows left to the stream: {})",
        rows.len(),
        view["chunks_reread"],
        view["rows_from_stream"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_snapshot_and_mid_handoff_stays_exact() {
    let db = "snap_kill";
    let m = mariadb();
    m.fresh_db(db).await;
    load(m, db, "t1", 150_000).await;
    // A composite key with a case-insensitive string part, and a table
    // without any key, read whole.
    m.exec(&format!(
        "CREATE TABLE `{db}`.`t2` (region VARCHAR(8) COLLATE utf8mb4_general_ci NOT NULL, id BIGINT NOT NULL, k BIGINT NOT NULL, v VARCHAR(20) NOT NULL, PRIMARY KEY (region, id));
         INSERT INTO `{db}`.`t2` SELECT ELT(1 + seq % 4, 'b', 'A', 'a2', 'Z'), seq, seq, 'x' FROM `{db}`.seq_1_to_40000;
         CREATE TABLE `{db}`.`t3` (id BIGINT NOT NULL, k BIGINT NOT NULL, v VARCHAR(20) NOT NULL);
         INSERT INTO `{db}`.`t3` SELECT seq, seq, 'keyless' FROM `{db}`.seq_1_to_5000;
         CREATE TABLE `{db}`.`t4` (id INT PRIMARY KEY);"
    ))
    .await;
    let mut d = Daemon::mysql("snap_kill", &m.url(), &[&format!("{db}.*")], "").with_mode(
        "snapshot+stream",
        2000,
        3,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let stop = stop.clone();
        tokio::spawn(async move { writer(mariadb(), db.to_string(), "t1", 150_000, stop, 2).await })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    d.start();
    let mut kills = 0;
    let table = format!("{db}.t1");
    // Kill while copying, then a few times after (the handoff to the stream).
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..900))).await;
        d.kill9();
        kills += 1;
        d.start();
    }
    wait_until(Duration::from_secs(300), "the snapshot of t1", || {
        snapshot_state(&d, &table).as_deref() == Some("done")
    });
    stop.store(true, Ordering::Relaxed);
    let txs = w.await.unwrap();
    let (rows, reads) = wait_equal(&d, "t1", &["id"], Duration::from_secs(120), || {
        source_rows(m, db, "t1")
    })
    .await;
    assert!(reads >= 150_000 - 10_000, "{reads} reads of t1");
    // t2 and t3 are not written: their copies equal them.
    let t2 = {
        let mut c = m.conn().await;
        let r: Vec<(String, i64, i64, String)> = c
            .query(format!("SELECT region, id, k, v FROM `{db}`.t2"))
            .await
            .unwrap();
        r.into_iter()
            .map(|(region, id, k, v)| {
                (
                    format!("{}|{}", json!(region), json!(id)),
                    json!({"region": region, "id": id, "k": k, "v": v}),
                )
            })
            .collect::<Rows>()
    };
    let (got2, _) = super::replay_file(&d.out, "t2", &["region", "id"]);
    assert_eq!(super::diff(&got2, &t2), None);
    let (got3, reads3) = super::replay_file(&d.out, "t3", &["id"]);
    assert_eq!(got3.len(), 5000);
    assert!(reads3 >= 5000);
    assert_eq!(
        snapshot_state(&d, &format!("{db}.t4")).as_deref(),
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
    let db = "snap_once";
    let m = mariadb();
    m.fresh_db(db).await;
    load(m, db, "a", 3000).await;
    load(m, db, "b", 10).await;
    let mut d = Daemon::mysql("snap_once", &m.url(), &[&format!("{db}.*")], "")
        .with_mode("snapshot", 1000, 2);
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
    assert!(marks[1..marks.len() - 1].iter().all(|m| *m == "true"));
    // Debezium's snapshot source block: the binlog position, row 0.
    let src = &lines[0]["source"];
    assert!(src["file"].as_str().unwrap().contains("bin"));
    assert_eq!(src["row"], 0);
    assert!(lines[0]["transaction"].is_null());
    assert_eq!(
        super::diff(
            &super::replay(&lines, "a", &["id"]),
            &source_rows(m, db, "a").await
        ),
        None
    );
    assert!(d.log().contains("completed"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_change_during_the_copy_is_reported_with_the_fix() {
    let db = "snap_ddl";
    let m = mariadb();
    m.fresh_db(db).await;
    load(m, db, "t", 400_000).await;
    // Small chunks, one worker: a copy long enough (20,000 chunks) for the
    // change to land in its middle; the test ends once the warning is out.
    let mut d = Daemon::mysql("snap_ddl", &m.url(), &[&format!("{db}.*")], "").with_mode(
        "snapshot+stream",
        20,
        1,
    );
    d.start();
    wait_until(Duration::from_secs(30), "the copy to start", || {
        snapshot_state(&d, &format!("{db}.t")).as_deref() == Some("copying")
    });
    m.exec(&format!(
        "UPDATE `{db}`.t SET k = k + 1 WHERE id = 1;
         ALTER TABLE `{db}`.t ADD COLUMN extra INT NULL;
         UPDATE `{db}`.t SET k = k + 1 WHERE id = 2;"
    ))
    .await;
    assert_eq!(
        snapshot_state(&d, &format!("{db}.t")).as_deref(),
        Some("copying"),
        "the change landed after the copy: the test needs a longer copy"
    );
    d.wait_log(
        "the table's schema changed while it is being copied",
        Duration::from_secs(60),
    );
    assert!(d.log().contains("snapshot_tables"), "the fix is named");
    assert!(d.stop().success(), "{}", d.log());
}
