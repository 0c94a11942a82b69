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
