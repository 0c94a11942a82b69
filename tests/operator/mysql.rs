//! MySQL/MariaDB faults: a rows event over max_allowed_packet, statement
//! DML outside and inside the selection, an unresolvable host.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::mysql::stream::wait_streaming;
use crate::support::{Daemon, mariadb, private_mariadb};

#[tokio::test(flavor = "multi_thread")]
async fn a_rows_event_larger_than_max_allowed_packet_is_read() {
    let db = "op_bigevent";
    // A server with the common 16 MiB limit (the shared test server allows 1 GiB).
    let m = private_mariadb("mariadb-packet", 13315, "row");
    m.exec("SET GLOBAL max_allowed_packet = 16777216").await;
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.blobt (id INT PRIMARY KEY, b LONGBLOB)"
    ))
    .await;
    let mut c = m.conn().await;
    let limit: u64 = c
        .query_first("SELECT @@global.max_allowed_packet")
        .await
        .unwrap()
        .unwrap();
    assert!(
        limit <= 16 << 20,
        "the test needs a 16 MiB limit, the server has {limit}"
    );
    let mut d = Daemon::mysql(db, &m.url(), &[&format!("{db}.*")], "");
    d.start();
    wait_streaming(&d);
    // The update's rows event carries both images: ~30 MiB, over the limit.
    c.query_drop(format!(
        "INSERT INTO {db}.blobt VALUES (1, REPEAT('A', 15*1024*1024)); UPDATE {db}.blobt SET b = REPEAT('B', 15*1024*1024) WHERE id = 1; INSERT INTO {db}.blobt VALUES (2, 'after')"
    ))
    .await
    .unwrap();
    let lines = d.wait_lines(3, Duration::from_secs(120));
    let len = |v: &serde_json::Value| v.as_str().map_or(0, str::len);
    // base64 of 15 MiB.
    let b64 = (15usize << 20).div_ceil(3) * 4;
    assert_eq!(lines[1]["op"], "u");
    assert_eq!(len(&lines[1]["before"]["b"]), b64);
    assert_eq!(len(&lines[1]["after"]["b"]), b64);
    assert_eq!(lines[2]["after"]["id"], 2);
    assert!(!d.log().contains("max_allowed_packet"), "{}", d.log());
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_dml_outside_the_selection_is_skipped_and_inside_offers_a_skip() {
    let m = mariadb();
    for db in ["op_stmt_p1", "op_stmt_other"] {
        m.fresh_db(db).await;
        m.exec(&format!("CREATE TABLE {db}.x (id INT PRIMARY KEY)"))
            .await;
    }
    let mut d = Daemon::mysql("op_stmt", &m.url(), &["op_stmt_p1.*"], "");
    d.start();
    wait_streaming(&d);
    let stmt = |sql: &str| {
        format!("SET SESSION binlog_format = 'STATEMENT'; {sql}; SET SESSION binlog_format = 'ROW'")
    };
    // Another application writes a database the task doesn't capture.
    m.exec(&stmt("INSERT INTO op_stmt_other.x VALUES (3),(4)"))
        .await;
    m.exec("USE op_stmt_other; SET SESSION binlog_format = 'STATEMENT'; INSERT INTO x VALUES (5); SET SESSION binlog_format = 'ROW'")
        .await;
    m.exec("INSERT INTO op_stmt_p1.x VALUES (1)").await;
    let lines = d.wait_lines(1, Duration::from_secs(30));
    assert_eq!(lines[0]["after"]["id"], 1);
    assert!(d.is_running(), "{}", d.log());

    // A statement-logged write to a captured table stops the task, with
    // the way past it.
    m.exec(&stmt("INSERT INTO op_stmt_p1.x VALUES (2)")).await;
    m.exec("INSERT INTO op_stmt_p1.x VALUES (3)").await;
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = d.log();
    assert!(log.contains("binlog_format=ROW"), "{log}");
    let at = log
        .find("--transaction ")
        .expect("the error names the transaction");
    let tx: String = log[at + "--transaction ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches([',', '`'])
        .to_string();
    assert!(tx.starts_with("binlog:") && tx.ends_with(":*"), "{tx}");
    // The same position again at the next start: stopped again.
    d.start();
    assert!(!d.wait_exit(Duration::from_secs(60)).success());
    let out = d.cli(&["offsets", "skip", "--task", "t", "--transaction", &tx]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.start();
    let lines = d.wait_lines(2, Duration::from_secs(30));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["after"]["id"], 3);
    assert!(
        d.current_log()
            .contains("statement-based DML skipped as requested"),
        "{}",
        d.current_log()
    );
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_does_not_resolve_says_so() {
    let mut d = Daemon::mysql(
        "op_dns",
        "mysql://tidemark:tidemark@no-such-host.invalid:3306",
        &["x.*"],
        "",
    );
    d.once = false;
    d.start();
    d.wait_log("does not resolve", Duration::from_secs(60));
    let log = d.current_log();
    assert!(log.contains("no-such-host.invalid"), "{log}");
    assert!(
        log.contains("restarting"),
        "retried while it may be a DNS outage: {log}"
    );
    assert!(d.stop().success(), "{}", d.log());
}
