//! `kill -9` while applying: the target's position, written in the same
//! transaction as the rows, makes the restart exact. The conflict policy
//! is `fail`, so a change applied twice (or a row lost before an update)
//! would fail the task instead of being smoothed over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::{Side, maria_sink, pg_sink, wait_same, writer};
use crate::support::{mariadb, postgres};

async fn kill_loop(name: &str, source: Side, target: Side, sink: &str, target_schema: &str) {
    source.fresh().await;
    target.fresh().await;
    target.forget_positions(name).await;
    source.load("t", 30_000).await;
    let sink = format!("{sink}\n[tasks.sink.conflict]\ndefault = \"fail\"");
    let mut d = source
        .daemon(name, &sink, "")
        .with_mode("snapshot+stream", 500, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(source, "t".into(), 30_000, stop.clone(), 11));
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for round in 0..5 {
        d.start();
        let ms = rng.random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        assert!(
            d.is_running(),
            "round {round}: the daemon ended early:\n{}",
            d.log()
        );
        d.kill9();
    }
    stop.store(true, Ordering::Relaxed);
    let txs = w.await.unwrap();
    assert!(txs > 100, "the writer ran ({txs} transactions)");
    d.start();
    wait_same(
        &d,
        source,
        target,
        "t",
        target_schema,
        Duration::from_secs(120),
    )
    .await;
    assert!(d.stop().success(), "{}", d.log());
    let log = d.log();
    assert!(
        !log.contains("conflict"),
        "no change applied twice or lost:\n{log}"
    );
    assert!(
        log.contains("resuming after the target's position"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mariadb_to_postgres_stays_exact() {
    let (m, p) = (mariadb(), postgres());
    let sink = pg_sink(p, "tg_kmp_dr", "");
    kill_loop(
        "tg_kmp",
        Side::Maria(m, "tg_kmp"),
        Side::Pg(p, "tg_kmp_dr"),
        &sink,
        "tg_kmp",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_postgres_to_mariadb_stays_exact() {
    let (m, p) = (mariadb(), postgres());
    let sink = maria_sink(m, "map = { public = \"tg_kpm_dr\" }");
    kill_loop(
        "tg_kpm",
        Side::Pg(p, "tg_kpm"),
        Side::Maria(m, "tg_kpm_dr"),
        &sink,
        "tg_kpm_dr",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_the_workers_commits_and_the_position_repeats_nothing() {
    let m = mariadb();
    let (source, target) = (Side::Maria(m, "tg_kpar"), Side::Maria(m, "tg_kpar_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_kpar").await;
    source.load("t", 0).await;
    target.load("t", 0).await;
    let sink = maria_sink(
        m,
        "map = { tg_kpar = \"tg_kpar_dr\" }\nworkers = 4\n[tasks.sink.conflict]\ndefault = \"fail\"",
    );
    let mut d = source.daemon("tg_kpar", &sink, "");
    // The task's start position, then a backlog of small transactions.
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    assert!(d.stop().success(), "{}", d.log());
    let mut sql = String::new();
    for id in 1..=3000 {
        sql.push_str(&format!("INSERT INTO t VALUES ({id}, {id}, 'v');"));
    }
    source.exec(&sql).await;
    let gate = d.dir.join("abort");
    std::fs::write(&gate, "").unwrap();
    d.env.push((
        "TIDEMARK_FAILPOINT_APPLY_ABORT".into(),
        gate.display().to_string(),
    ));
    d.start();
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(
        !status.success(),
        "the failpoint aborted the daemon:\n{}",
        d.log()
    );
    assert!(
        d.log().contains("aborting after the workers committed"),
        "{}",
        d.log()
    );
    let partial = target.rows("", "t").await.len();
    assert!(
        partial > 0,
        "the workers' parts are on the target ({partial} rows), the position is not"
    );
    d.env.clear();
    d.start();
    // Running before it is stopped (the target may be equal at once when
    // the abort came after the last workers' commit).
    d.wait_log("reading binlog", Duration::from_secs(30));
    wait_same(&d, source, target, "t", "", Duration::from_secs(60)).await;
    assert!(d.stop().success(), "{}", d.log());
    let log = d.log();
    assert!(!log.contains("conflict"), "nothing applied twice:\n{log}");
    let past: u64 = log
        .rsplit("applied_past_it=")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        past > 0,
        "the restart found transactions the workers had applied:\n{log}"
    );
}
