//! PostgreSQL faults: a walsender that goes silent, a publication
//! re-created under a slot.

use std::process::Command;
use std::time::Duration;

use crate::postgres::{source_option, wait_streaming};
use crate::support::{Daemon, postgres, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_walsender_is_detected_and_the_task_reconnects_exactly() {
    let db = "op_walstop";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(db, "CREATE TABLE t (id int PRIMARY KEY)").await;
    let mut d = Daemon::postgres(db, &pg.url(db), &[], "");
    source_option(&d, "server_timeout_secs = 4");
    d.once = false;
    d.start();
    wait_streaming(&d);
    pg.exec(db, "INSERT INTO t VALUES (1)").await;
    d.wait_lines(1, Duration::from_secs(30));
    // The keepalives carry the server's WAL end: the lag in bytes shows.
    wait_until(
        Duration::from_secs(30),
        "lag_bytes in the status file",
        || d.progress().is_some_and(|p| p["lag_bytes"].is_u64()),
    );
    let c = pg.client("postgres").await;
    let pid: i32 = c
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&format!("tidemark_{db}")],
        )
        .await
        .unwrap()
        .get(0);
    // The walsender stops answering (as behind a network black hole).
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    pg.exec(db, "INSERT INTO t VALUES (2)").await;
    d.wait_log("the server sent nothing for 4 s", Duration::from_secs(30));
    // The path comes back; the old session is ended by the server.
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    c.execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    pg.exec(db, "INSERT INTO t VALUES (3)").await;
    let lines = d.wait_lines(3, Duration::from_secs(60));
    let ids: Vec<i64> = lines
        .iter()
        .map(|l| l["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "{}", d.log());
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_publication_names_the_slot_recovery() {
    let db = "op_repub";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(db, "CREATE TABLE t (id int PRIMARY KEY)").await;
    let mut d = Daemon::postgres(db, &pg.url(db), &[], "");
    d.start();
    wait_streaming(&d);
    pg.exec(db, "INSERT INTO t VALUES (1)").await;
    d.wait_lines(1, Duration::from_secs(30));
    assert!(d.stop().success(), "{}", d.log());
    // Dropped and re-created while the task was stopped, with changes in
    // between.
    let publication = format!("tidemark_{db}");
    pg.exec(db, &format!("DROP PUBLICATION {publication}"))
        .await;
    pg.exec(db, "INSERT INTO t VALUES (2)").await;
    pg.exec(
        db,
        &format!("CREATE PUBLICATION {publication} FOR ALL TABLES"),
    )
    .await;
    d.start();
    assert!(!d.wait_exit(Duration::from_secs(60)).success());
    let log = d.current_log();
    assert!(
        log.contains("slot drop")
            && log.contains("created (or dropped and re-created) after the slot's position"),
        "{log}"
    );
    // The recovery the error names.
    for args in [
        &["slot", "drop", "--task", "t"][..],
        &["offsets", "reset", "--task", "t"],
    ] {
        let out = d.cli(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    d.once = false;
    d.start();
    wait_until(Duration::from_secs(60), "streaming again", || {
        d.current_log().contains("reading WAL")
    });
    pg.exec(db, "INSERT INTO t VALUES (3)").await;
    let lines = d.wait_lines(2, Duration::from_secs(60));
    assert_eq!(lines[1]["after"]["id"], 3, "{}", d.log());
    assert!(d.stop().success(), "{}", d.log());
}
