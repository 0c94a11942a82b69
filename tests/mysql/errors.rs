//! Misconfigured servers, missing privileges and purged binlogs give a clear
//! error naming what to change, and the daemon exits non-zero.

use std::time::Duration;

use crate::support::{Daemon, mariadb, private_mariadb};

fn run_until_exit(d: &mut Daemon) -> String {
    d.start();
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "expected a failure; log:\n{}", d.log());
    d.log()
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_format_names_the_setting() {
    let m = private_mariadb("mariadb-statement", 13311, "statement");
    let mut d = Daemon::mysql("err_statement", &m.url(), &["x.*"], "");
    let log = run_until_exit(&mut d);
    assert!(log.contains("binlog_format is STATEMENT"), "{log}");
    assert!(log.contains("SET GLOBAL binlog_format='ROW'"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_binlog_names_the_setting() {
    let m = private_mariadb("mariadb-nobinlog", 13312, "nobinlog");
    let mut d = Daemon::mysql("err_nobinlog", &m.url(), &["x.*"], "");
    let log = run_until_exit(&mut d);
    assert!(log.contains("binary logging is disabled"), "{log}");
    assert!(log.contains("log_bin"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_without_replication_privileges() {
    let m = mariadb();
    m.exec(
        "CREATE USER IF NOT EXISTS 'noreplic'@'127.0.0.1' IDENTIFIED BY 'pw';
         GRANT SELECT ON *.* TO 'noreplic'@'127.0.0.1';",
    )
    .await;
    let url = format!("mysql://noreplic:pw@127.0.0.1:{}", m.port);
    let mut d = Daemon::mysql("err_privileges", &url, &["x.*"], "");
    let log = run_until_exit(&mut d);
    assert!(log.contains("lacks the privileges"), "{log}");
    assert!(
        log.contains("GRANT REPLICATION SLAVE, BINLOG MONITOR"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replication_slave_without_monitor_fails_at_the_dump() {
    let m = mariadb();
    m.exec(
        "CREATE USER IF NOT EXISTS 'nodump'@'127.0.0.1' IDENTIFIED BY 'pw';
         GRANT SELECT, BINLOG MONITOR ON *.* TO 'nodump'@'127.0.0.1';",
    )
    .await;
    let url = format!("mysql://nodump:pw@127.0.0.1:{}", m.port);
    let mut d = Daemon::mysql("err_dump", &url, &["x.*"], "");
    let log = run_until_exit(&mut d);
    assert!(log.contains("refused the binlog dump"), "{log}");
    assert!(log.contains("REPLICATION SLAVE"), "{log}");
}

/// A stored position whose binlog file was purged is a definite error that
/// says what happened and how to recover.
#[tokio::test(flavor = "multi_thread")]
async fn purged_binlog_position() {
    let m = private_mariadb("mariadb-purge", 13313, "row");
    let db = "err_purge";
    m.fresh_db(db).await;
    m.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await;
    let mut d = Daemon::mysql("err_purge", &m.url(), &[&format!("{db}.*")], "");
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    m.exec(&format!("INSERT INTO {db}.t VALUES (1)")).await;
    let lines = d.wait_lines(1, Duration::from_secs(30));
    let file = lines[0]["source"]["file"].as_str().unwrap().to_string();
    assert!(d.stop().success());
    m.exec("FLUSH BINARY LOGS; FLUSH BINARY LOGS;").await;
    // The server keeps files a replica still reads: wait for our dump
    // thread to go, then purge until the first file is gone.
    let mut conn = m.conn().await;
    use mysql_async::prelude::Queryable;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let _ = conn
            .query_drop("PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY")
            .await;
        let logs: Vec<(String, u64)> = conn.query("SHOW BINARY LOGS").await.unwrap();
        if !logs.iter().any(|(f, _)| *f == file) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "binlog not purged: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(conn);
    let log = run_until_exit(&mut d);
    assert!(log.contains("which the server no longer has"), "{log}");
    assert!(log.contains("tidemark offsets reset"), "{log}");
    // The documented recovery works: reset, then it starts again.
    let out = d.cli(&["offsets", "reset", "--task", "t"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    m.exec(&format!("INSERT INTO {db}.t VALUES (2)")).await;
    let lines = d.wait_lines(2, Duration::from_secs(30));
    assert_eq!(lines[1]["after"]["id"], serde_json::json!(2));
    assert!(d.stop().success());
}
