//! Target faults: the target going away mid-load is retried with backoff,
//! and the result is still exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Side, pg_sink, wait_same, writer};
use crate::support::{mariadb, private_postgres};

#[tokio::test(flavor = "multi_thread")]
async fn a_target_restarted_mid_load_loses_and_repeats_nothing() {
    let m = mariadb();
    let pg: &'static _ = Box::leak(Box::new(private_postgres(
        "postgres-target",
        15443,
        "logical",
    )));
    let (source, target) = (Side::Maria(m, "tg_fault"), Side::Pg(pg, "tg_fault_dr"));
    source.fresh().await;
    target.fresh().await;
    source.load("t", 5_000).await;
    let sink = format!(
        "{}\n[tasks.sink.conflict]\ndefault = \"fail\"",
        pg_sink(pg, "tg_fault_dr", "")
    );
    let mut d = source
        .daemon("tg_fault", &sink, "")
        .with_mode("snapshot+stream", 500, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(source, "t".into(), 5_000, stop.clone(), 3));
    d.start();
    d.wait_log(
        "initial snapshot: every table copied",
        Duration::from_secs(60),
    );
    pg.stop();
    d.wait_log("task interrupted; restarting", Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let txs = w.await.unwrap();
    assert!(txs > 100, "the writer ran ({txs} transactions)");
    wait_same(
        &d,
        source,
        target,
        "t",
        "tg_fault",
        Duration::from_secs(120),
    )
    .await;
    assert!(d.stop().success(), "{}", d.log());
    assert!(
        !d.log().contains("conflict"),
        "nothing applied twice:\n{}",
        d.log()
    );
}
