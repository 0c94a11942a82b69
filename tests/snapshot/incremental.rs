//! Snapshots while streaming, through the task handle: a re-snapshot of a
//! table under writes, and a table added to the selection, on both
//! engines. After them, replaying the output alone gives the tables.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::json;
use tidemark::config::{Config, FilterConfig, TaskMode};
use tidemark::store::FileOffsetStore;
use tidemark::task::{Supervisor, TaskChange, TaskHandle, TaskState};

use super::{Rows, diff, replay_file};
use crate::runtime::{mysql_task, settings};
use crate::support::{mariadb, postgres, scratch};

async fn wait_copied(t: &TaskHandle, table: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = t.progress();
        if p.snapshot.get(table).is_some_and(|s| s.state == "done") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table} not copied: {:?} / {}",
            p.snapshot,
            t.status().summary()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_replayed(out: &std::path::Path, table: &str, want: impl AsyncFn() -> Rows) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (got, reads) = replay_file(out, table, &["id"]);
        let w = want().await;
        match diff(&got, &w) {
            None => return reads,
            Some(d) if Instant::now() > deadline => panic!("{table}: {d}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_re_snapshot_and_added_table_while_streaming() {
    let db = "snap_incr";
    let m = mariadb();
    m.fresh_db(db).await;
    for t in ["a", "b"] {
        m.exec(&format!(
            "CREATE TABLE `{db}`.`{t}` (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(20) NOT NULL);
             INSERT INTO `{db}`.`{t}` SELECT seq, seq, 'old' FROM `{db}`.seq_1_to_30000;"
        ))
        .await;
    }
    let dir = scratch("snap_incr");
    let data = dir.join("data");
    let out = dir.join("out.jsonl");
    let mut cfg = mysql_task("snap_incr", &m.url(), db, &out, &data);
    cfg.filter.include = vec![format!("{db}.a")];
    cfg.snapshot.chunk_rows = 1000;
    cfg.snapshot.workers = 2;
    let sup = Supervisor::new(
        Arc::new(FileOffsetStore::open(&data).unwrap()),
        settings(&data),
    );
    let t = sup.add(cfg, true).unwrap();
    crate::runtime::wait_streaming(&t).await;

    let rows = |table: &'static str| async move {
        let mut c = mariadb().conn().await;
        let r: Vec<(i64, i64, String)> = c
            .query(format!("SELECT id, k, v FROM `{db}`.`{table}`"))
            .await
            .unwrap();
        r.into_iter()
            .map(|(id, k, v)| (json!(id).to_string(), json!({"id": id, "k": k, "v": v})))
            .collect::<Rows>()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writer = |table: &'static str, stop: Arc<AtomicBool>| async move {
        let mut c = mariadb().conn().await;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let id = (n * 7919) % 30_000 + 1;
            c.query_drop(format!(
                "UPDATE `{db}`.`{table}` SET k = k + 1, v = 'w' WHERE id = {id};
                 UPDATE `{db}`.`{table}` SET id = {} WHERE id = {};
                 DELETE FROM `{db}`.`{table}` WHERE id = {};
                 INSERT INTO `{db}`.`{table}` VALUES ({}, 0, 'ins');",
                1_000_000 + n,
                (n * 104_729) % 30_000 + 1,
                (n * 1299) % 30_000 + 1,
                2_000_000 + n
            ))
            .await
            .unwrap();
        }
        n
    };

    // 1. A re-snapshot of a (streamed, never copied) under writes.
    let w = tokio::spawn(writer("a", stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.snapshot_tables(vec![format!("{db}.a")]).await.unwrap();
    wait_copied(&t, &format!("{db}.a")).await;
    stop.store(true, Ordering::Relaxed);
    let txs = w.await.unwrap();
    let reads = wait_replayed(&out, "a", || rows("a")).await;
    assert!(reads >= 29_000, "{reads} reads of a");
    assert!(
        reads <= 60_000,
        "{reads} reads of a: the copy chased the inserts"
    );
    let (_, marks) = super::reads(&crate::support::read_lines(&out), "a");
    assert_eq!(marks, ["incremental"]);
    // A table the filter leaves out can't be asked for.
    let refused = t.snapshot_tables(vec![format!("{db}.b")]).await;
    assert!(refused.is_err());

    // 2. b added to the selection: copied as the task resumes, under writes.
    t.pause().await.unwrap();
    t.modify(TaskChange {
        filter: Some(FilterConfig {
            include: vec![format!("{db}.a"), format!("{db}.b")],
            exclude: Vec::new(),
        }),
        ..TaskChange::default()
    })
    .await
    .unwrap();
    // The mode must copy added tables: snapshot+stream.
    assert_eq!(t.config().mode, TaskMode::Stream);
    t.resume().await.unwrap();
    t.snapshot_tables(vec![format!("{db}.b")]).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer("b", stop.clone()));
    wait_copied(&t, &format!("{db}.b")).await;
    stop.store(true, Ordering::Relaxed);
    let txs_b = w.await.unwrap();
    wait_replayed(&out, "b", || rows("b")).await;
    // a is still exact.
    wait_replayed(&out, "a", || rows("a")).await;
    assert_eq!(t.state(), TaskState::Running, "{}", t.status().summary());
    sup.shutdown(Duration::from_secs(20)).await;
    eprintln!(
        "re-snapshot under {txs} transactions and an added table under {txs_b}: both replay to the tables"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_table_added_to_a_snapshot_task_is_copied_while_streaming() {
    let db = "snap_incr_pg";
    let p = postgres();
    p.fresh_db(db).await;
    p.exec(
        db,
        "CREATE TABLE a (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v TEXT NOT NULL);
         CREATE TABLE b (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v TEXT NOT NULL);
         INSERT INTO a SELECT g, g, 'old' FROM generate_series(1, 30000) g;
         INSERT INTO b SELECT g, g, 'old' FROM generate_series(1, 30000) g;",
    )
    .await;
    let dir = scratch("snap_incr_pg");
    let data = dir.join("data");
    let out = dir.join("out.jsonl");
    let toml = format!(
        r#"[daemon]
data_dir = "{data}"
[[tasks]]
id = "snap_incr_pg"
mode = "snapshot+stream"
[tasks.source]
type = "postgres"
url = "{url}"
slot = "tidemark_snap_incr_pg"
publication = "tidemark_snap_incr_pg"
status_interval_secs = 1
[tasks.filter]
include = ["public.a"]
[tasks.sink]
type = "jsonl"
path = "{out}"
[tasks.snapshot]
chunk_rows = 1000
workers = 2
"#,
        data = data.display(),
        url = p.url(db),
        out = out.display(),
    );
    let mut cfg = Config::parse(&toml, "test").unwrap().tasks.remove(0);
    cfg.resolve(&data);
    let sup = Supervisor::new(
        Arc::new(FileOffsetStore::open(&data).unwrap()),
        settings(&data),
    );
    let t = sup.add(cfg, true).unwrap();
    wait_copied(&t, "public.a").await;

    let rows = |table: &'static str| async move {
        let c = postgres().client(db).await;
        c.query(&format!("SELECT id, k, v FROM {table}"), &[])
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                let (id, k, v): (i64, i64, String) = (r.get(0), r.get(1), r.get(2));
                (json!(id).to_string(), json!({"id": id, "k": k, "v": v}))
            })
            .collect::<Rows>()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|i| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = postgres().client(db).await;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let s = n * 2 + i;
                    c.batch_execute(&format!(
                        "BEGIN;
                         UPDATE b SET k = k + 1, v = 'w' WHERE id = {};
                         UPDATE b SET id = {} WHERE id = {};
                         DELETE FROM b WHERE id = {};
                         INSERT INTO b VALUES ({}, 0, 'ins');
                         COMMIT;",
                        (s * 7919) % 30_000 + 1,
                        1_000_000 + s,
                        (s * 104_729) % 30_000 + 1,
                        (s * 1299) % 30_000 + 1,
                        2_000_000 + s
                    ))
                    .await
                    .unwrap();
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.pause().await.unwrap();
    t.modify(TaskChange {
        filter: Some(FilterConfig {
            include: vec!["public.a".into(), "public.b".into()],
            exclude: Vec::new(),
        }),
        ..TaskChange::default()
    })
    .await
    .unwrap();
    t.resume().await.unwrap();
    wait_copied(&t, "public.b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut txs = 0;
    for w in writers {
        txs += w.await.unwrap();
    }
    let reads = wait_replayed(&out, "b", || rows("b")).await;
    assert!(reads >= 25_000, "{reads} reads of b");
    // Rows inserted above the largest key at the start come with the
    // stream: the copy has an end however fast the table grows.
    assert!(
        reads <= 60_000,
        "{reads} reads of b: the copy chased the inserts"
    );
    let (_, marks) = super::reads(&crate::support::read_lines(&out), "b");
    assert_eq!(
        marks,
        ["incremental"],
        "an added table is an incremental snapshot"
    );
    wait_replayed(&out, "a", || rows("a")).await;
    sup.shutdown(Duration::from_secs(20)).await;
    eprintln!("table added while {txs} transactions ran on it: replays to the table");
}
