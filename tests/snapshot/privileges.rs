//! A source user without the privileges a snapshot needs: the task fails
//! with the GRANT to run, instead of copying nothing.

use std::time::Duration;

use crate::support::{Daemon, mariadb, postgres};

fn fails(d: &mut Daemon) -> String {
    d.start();
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "the task should fail: {}", d.log());
    d.log()
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_user_without_select_is_told_the_grant() {
    let db = "snap_nosel";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE `{db}`.t (id INT PRIMARY KEY); INSERT INTO `{db}`.t VALUES (1);
         CREATE USER IF NOT EXISTS 'snapnosel'@'127.0.0.1' IDENTIFIED BY 'pw';
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'snapnosel'@'127.0.0.1';"
    ))
    .await;
    let url = format!("mysql://snapnosel:pw@127.0.0.1:{}", m.port);
    let mut d = Daemon::mysql("snap_nosel", &url, &[&format!("{db}.*")], "").with_mode(
        "snapshot+stream",
        100,
        1,
    );
    let log = fails(&mut d);
    assert!(
        log.contains(&format!("database {db} (in filter.include) is not visible")),
        "{log}"
    );
    assert!(log.contains(&format!("GRANT SELECT ON `{db}`.*")), "{log}");
    assert!(
        std::fs::read_to_string(&d.out)
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_user_without_select_is_told_the_grant() {
    let db = "snap_nosel_pg";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(
        "postgres",
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'snapnosel') THEN
             CREATE ROLE snapnosel LOGIN PASSWORD 'pw' REPLICATION;
           END IF;
         END $$;",
    )
    .await;
    // The publication exists (made by an administrator); the role may
    // stream but not read the table.
    pg.exec(
        db,
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);
         CREATE PUBLICATION tidemark_snap_nosel_pg FOR TABLE t;",
    )
    .await;
    let url = format!("postgres://snapnosel:pw@127.0.0.1:{}/{db}", pg.port);
    let mut d = Daemon::postgres("snap_nosel_pg", &url, &["public.t"], "").with_mode(
        "snapshot+stream",
        100,
        1,
    );
    let log = fails(&mut d);
    assert!(log.contains("may not read public.t"), "{log}");
    assert!(log.contains("GRANT SELECT ON public.t"), "{log}");
}
