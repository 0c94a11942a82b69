//! Snapshot + stream under concurrent writes, in the four directions:
//! the target table equals the source table, row by row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Side, maria_sink, pg_sink, wait_same, writer};
use crate::support::{mariadb, postgres};

/// Loads `t` with `rows` rows, starts the daemon in `snapshot+stream`
/// mode while a writer runs, stops the writer and waits until the target
/// equals the source.
async fn replicate(
    name: &str,
    source: Side,
    target: Side,
    sink: &str,
    target_schema: &str,
    rows: u64,
) {
    source.fresh().await;
    target.fresh().await;
    target.forget_positions(name).await;
    source.load("t", rows).await;
    let mut d = source
        .daemon(name, sink, "")
        .with_mode("snapshot+stream", 2000, 2);
    d.env.push((
        "TIDEMARK_LOG".into(),
        "info,tidemark::sink::db::parallel=debug".into(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(source, "t".into(), rows as i64, stop.clone(), 7));
    d.start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let txs = w.await.unwrap();
    assert!(txs > 50, "the writer ran ({txs} transactions)");
    let got = wait_same(
        &d,
        source,
        target,
        "t",
        target_schema,
        Duration::from_secs(90),
    )
    .await;
    assert!(
        got.len() as u64 > rows / 2,
        "the rows arrived ({})",
        got.len()
    );
    assert!(d.stop().success(), "{}", d.log());
    let log = d.log();
    assert!(
        !log.contains("conflict:"),
        "exactly once: no conflicts\n{log}"
    );
    assert!(
        log.contains("parallel group"),
        "groups went to the parallel workers\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_to_mariadb() {
    let m = mariadb();
    let sink = maria_sink(m, "map = { tg_mm = \"tg_mm_dr\" }");
    replicate(
        "tg_mm",
        Side::Maria(m, "tg_mm"),
        Side::Maria(m, "tg_mm_dr"),
        &sink,
        "tg_mm_dr",
        50_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_to_postgres() {
    let p = postgres();
    let sink = pg_sink(p, "tg_pp_dr", "");
    replicate(
        "tg_pp",
        Side::Pg(p, "tg_pp"),
        Side::Pg(p, "tg_pp_dr"),
        &sink,
        "public",
        50_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_to_postgres() {
    let (m, p) = (mariadb(), postgres());
    let sink = pg_sink(p, "tg_mp_dr", "");
    // The MariaDB database becomes a schema of the same name.
    replicate(
        "tg_mp",
        Side::Maria(m, "tg_mp"),
        Side::Pg(p, "tg_mp_dr"),
        &sink,
        "tg_mp",
        50_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_to_mariadb() {
    let (m, p) = (mariadb(), postgres());
    let sink = maria_sink(m, "map = { public = \"tg_pm_dr\" }");
    replicate(
        "tg_pm",
        Side::Pg(p, "tg_pm"),
        Side::Maria(m, "tg_pm_dr"),
        &sink,
        "tg_pm_dr",
        50_000,
    )
    .await;
}
