//! The slot's confirmed_flush_lsn: never ahead of what the sink made
//! durable, and advancing on idle or filtered-out databases.

use std::time::{Duration, Instant};

use crate::support::{Daemon, Postgres, parse_lsn, postgres, wait_until};

use super::{exactly, wait_streaming};

/// Polls `confirmed_flush_lsn` until it reaches `lsn`.
async fn wait_confirmed(pg: &Postgres, slot: &str, lsn: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = pg.confirmed_flush(slot).await.unwrap_or(0);
        if c >= lsn {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed_flush_lsn stayed at {c:X}, below {lsn:X}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn current_lsn(pg: &Postgres) -> u64 {
    let text: String = pg
        .client("postgres")
        .await
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    parse_lsn(&text)
}

fn commit_lsn(line: &serde_json::Value) -> u64 {
    line["source"]["commit_lsn"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn confirmed_flush_never_passes_what_the_sink_made_durable() {
    let db = "pg_stall";
    let other = "pg_stall_other";
    let slot = "tidemark_pg_stall";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.fresh_db(other).await;
    pg.exec(db, "CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    pg.exec(other, "CREATE TABLE noise (id serial PRIMARY KEY, v text)")
        .await;
    let mut d = Daemon::postgres("pg_stall", &pg.url(db), &[], "");
    let gate = d.dir.join("stall");
    d.env.push((
        "TIDEMARK_FAILPOINT_SINK_STALL".into(),
        gate.display().to_string(),
    ));
    d.start();
    wait_streaming(&d);
    pg.exec(db, "INSERT INTO t VALUES (0, 'before the stall')")
        .await;
    let first = d.wait_lines(1, Duration::from_secs(30));
    wait_confirmed(
        pg,
        slot,
        commit_lsn(&first[0]) + 1,
        "the first transaction is durable",
    )
    .await;

    // The sink can no longer make anything durable.
    std::fs::write(&gate, b"").unwrap();
    let c = pg.client(db).await;
    for i in 1..=50 {
        c.execute("INSERT INTO t VALUES ($1, 'stalled')", &[&i])
            .await
            .unwrap();
    }
    let after_inserts = current_lsn(pg).await;
    // The server sent every stalled transaction to tidemark...
    wait_until(
        Duration::from_secs(30),
        "the walsender to send everything",
        || {
            let sent = std::process::Command::new("psql")
            .args([
                "-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "tidemark", "-d", "postgres", "-Atc",
                "SELECT sent_lsn::text FROM pg_stat_replication WHERE application_name = 'tidemark/t' AND sent_lsn IS NOT NULL",
            ])
            .env("PGPASSWORD", "tidemark")
            .output()
            .unwrap();
            let text = String::from_utf8_lossy(&sent.stdout);
            text.lines().any(|l| parse_lsn(l.trim()) >= after_inserts)
        },
    );
    // ...and for several status intervals, with WAL flowing in another
    // database (keepalives with a moving server position), the slot stays
    // at or before the first transaction the sink holds back.
    let n = pg.client(other).await;
    let mut samples = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        n.execute("INSERT INTO noise (v) VALUES ('wal')", &[])
            .await
            .unwrap();
        samples.push(pg.confirmed_flush(slot).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.lines().len(), 1, "the stalled sink wrote nothing");

    // Unblock: everything arrives, and only now may the slot move on.
    std::fs::remove_file(&gate).unwrap();
    let lines = d.wait_lines(51, Duration::from_secs(60));
    let held_back = commit_lsn(&lines[1]);
    let max = samples.iter().copied().max().unwrap();
    assert!(
        max <= held_back,
        "confirmed_flush_lsn reached {max:X} while the transaction committed at {held_back:X} was not durable"
    );
    let last = commit_lsn(&lines[50]);
    wait_confirmed(
        pg,
        slot,
        last + 1,
        "the stalled transactions became durable",
    )
    .await;
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn slot_advances_on_idle_and_filtered_out_databases() {
    let db = "pg_idle";
    let other = "pg_idle_other";
    let slot = "tidemark_pg_idle";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.fresh_db(other).await;
    pg.exec(
        db,
        "CREATE TABLE wanted (id int PRIMARY KEY); CREATE TABLE ignored (id int PRIMARY KEY)",
    )
    .await;
    pg.exec(other, "CREATE TABLE noise (id int PRIMARY KEY)")
        .await;
    let mut d = Daemon::postgres("pg_idle", &pg.url(db), &["public.wanted"], "");
    d.start();
    wait_streaming(&d);
    let start = pg.confirmed_flush(slot).await.unwrap();

    // Changes the filter leaves out, in the slot's database.
    pg.exec(db, "INSERT INTO ignored SELECT generate_series(1, 1000)")
        .await;
    let target = current_lsn(pg).await;
    wait_confirmed(pg, slot, target, "filtered-out changes").await;

    // WAL of another database only: the slot still follows.
    pg.exec(other, "INSERT INTO noise SELECT generate_series(1, 1000)")
        .await;
    let target2 = current_lsn(pg).await;
    assert!(target2 > target && target > start);
    wait_confirmed(pg, slot, target2, "another database's WAL").await;

    // Nothing was written for them.
    let lines = exactly(&mut d, 0, pg, db, "INSERT INTO wanted VALUES (1)").await;
    assert!(lines.is_empty());
    assert!(d.stop().success(), "{}", d.log());
}
