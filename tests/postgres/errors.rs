//! Misconfigurations give clear errors naming the fix; the slot CLI.

use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationConfig};

use super::wait_streaming;
use crate::support::{Daemon, postgres, private_postgres};

/// Starts the daemon and waits for it to fail; returns its log.
fn fails(d: &mut Daemon) -> String {
    d.start();
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(
        !status.success(),
        "tidemark should have failed; log:\n{}",
        d.log()
    );
    d.log()
}

#[tokio::test(flavor = "multi_thread")]
async fn slot_held_by_another_client_is_a_clear_error() {
    let db = "pg_slot_held";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(
        db,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE PUBLICATION tidemark_pg_slot_held FOR ALL TABLES;",
    )
    .await;
    pg.exec(
        db,
        "SELECT pg_create_logical_replication_slot('tidemark_pg_slot_held', 'pgoutput')",
    )
    .await;
    // Another consumer holds the slot.
    let cfg = ReplicationConfig::new(
        "127.0.0.1",
        "tidemark",
        "tidemark",
        db,
        "tidemark_pg_slot_held",
        "tidemark_pg_slot_held",
    )
    .with_port(pg.port)
    .with_application_name("other-consumer");
    let mut other = ReplicationClient::connect_gated(cfg).await.unwrap();
    other.start().await.unwrap();
    other.wait_started().await.unwrap();
    let pid: i32 = pg
        .client("postgres")
        .await
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'tidemark_pg_slot_held'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let mut d = Daemon::postgres("pg_slot_held", &pg.url(db), &[], "");
    let log = fails(&mut d);
    assert!(
        log.contains(&format!(
            "replication slot tidemark_pg_slot_held is in use by PID {pid}"
        )),
        "{log}"
    );
    assert!(log.contains("stop the other consumer"), "{log}");
    other.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn wal_level_not_logical_names_the_fix() {
    let pg = private_postgres("postgres-minimal", 15441, "minimal");
    pg.exec("postgres", "SELECT 1").await;
    let mut d = Daemon::postgres("pg_minimal", &pg.url("postgres"), &[], "");
    let log = fails(&mut d);
    assert!(log.contains("wal_level is replica"), "{log}");
    assert!(
        log.contains("set wal_level = logical in postgresql.conf"),
        "{log}"
    );
    assert!(log.contains("restart PostgreSQL"), "{log}");
    pg.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_replication_privilege_names_the_fix() {
    let db = "pg_norepl";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(
        "postgres",
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'norepl') THEN
             CREATE ROLE norepl LOGIN PASSWORD 'norepl' NOSUPERUSER NOREPLICATION;
           END IF;
         END $$;",
    )
    .await;
    let url = format!("postgres://norepl:norepl@127.0.0.1:{}/{db}", pg.port);
    let mut d = Daemon::postgres("pg_norepl", &url, &[], "");
    let log = fails(&mut d);
    assert!(log.contains("lacks the REPLICATION attribute"), "{log}");
    assert!(
        log.contains("ALTER ROLE \"norepl\" WITH REPLICATION"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_publication_or_slot_with_creation_disabled() {
    let db = "pg_nocreate";
    let pg = postgres();
    pg.fresh_db(db).await;
    let mut d = Daemon::postgres("pg_nocreate", &pg.url(db), &[], "");
    // Turn creation off in the source section.
    let text = std::fs::read_to_string(&d.config).unwrap().replace(
        "status_interval_secs = 1",
        "status_interval_secs = 1\ncreate_publication = false\ncreate_slot = false",
    );
    std::fs::write(&d.config, text).unwrap();
    let log = fails(&mut d);
    assert!(
        log.contains("publication tidemark_pg_nocreate does not exist in database pg_nocreate"),
        "{log}"
    );
    assert!(log.contains("create_publication = true"), "{log}");
    pg.exec(db, "CREATE PUBLICATION tidemark_pg_nocreate FOR ALL TABLES")
        .await;
    let log = fails(&mut d);
    assert!(
        log.contains("replication slot tidemark_pg_nocreate does not exist"),
        "{log}"
    );
    assert!(log.contains("pg_create_logical_replication_slot"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slot_drop_removes_only_slots_tidemark_created() {
    let db = "pg_slot_drop";
    let pg = postgres();
    pg.fresh_db(db).await;
    let mut d = Daemon::postgres("pg_slot_drop", &pg.url(db), &[], "");
    d.start();
    wait_streaming(&d);
    // While the daemon holds it, the slot can't be dropped.
    let out = d.cli(&["slot", "drop", "--task", "t"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is in use by PID"),
        "{out:?}"
    );
    assert!(d.stop().success(), "{}", d.log());
    let out = d.cli(&["slot", "drop", "--task", "t"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("dropped replication slot tidemark_pg_slot_drop"),
        "{out:?}"
    );
    assert!(pg.confirmed_flush("tidemark_pg_slot_drop").await.is_none());

    // A slot someone else created is refused without --force.
    pg.exec(
        db,
        "SELECT pg_create_logical_replication_slot('tidemark_pg_slot_drop', 'pgoutput')",
    )
    .await;
    let out = d.cli(&["slot", "drop", "--task", "t"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tidemark did not create replication slot"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert!(pg.confirmed_flush("tidemark_pg_slot_drop").await.is_some());
    let out = d.cli(&["slot", "drop", "--task", "t", "--force"]);
    assert!(out.status.success(), "{out:?}");
    assert!(pg.confirmed_flush("tidemark_pg_slot_drop").await.is_none());
}
