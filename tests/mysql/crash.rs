//! `kill -9` of the daemon at random moments under load: the output must be
//! exactly the source's change sequence, with no gap and no duplicate.

use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::stream::wait_streaming;
use crate::support::workload::{Workload, assert_exact, observed};
use crate::support::{Daemon, mariadb};

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_delivers_every_change_exactly_once() {
    let db = "crash_mysql".to_string();
    let m = mariadb();
    m.fresh_db(&db).await;
    let mut load = Workload::new(&m.url(), &db, 7).await;
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

    // Paced (at most 500 transactions/s, so at least 8 s): the kills land
    // while the load runs, however fast the machine.
    let loader = tokio::spawn(async move { load.run_paced(4000, Some(500)).await });
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut kills = 0;
    while !loader.is_finished() || kills < 3 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        d.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        d.start();
    }
    let expected = loader.await.unwrap();
    let lines = d.wait_lines(expected.len(), Duration::from_secs(120));
    // A little longer: nothing more may arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines_after = d.lines();
    assert_eq!(
        lines_after.len(),
        lines.len(),
        "extra events after the expected ones"
    );
    assert_exact(
        &observed(&lines_after),
        &expected,
        &format!("after {kills} kills"),
    );
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
