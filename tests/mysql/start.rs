//! Where a new task starts (earliest, file+pos, MariaDB GTID), and TLS.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::json;

use super::stream::wait_streaming;
use crate::support::{Daemon, mariadb, private_mariadb, scratch};

fn with_start(d: &Daemon, start: &str) {
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        text.replace(
            "heartbeat_secs = 1",
            &format!("heartbeat_secs = 1\nstart = {start}"),
        ),
    )
    .unwrap();
}

fn inserted_ids(d: &Daemon) -> Vec<i64> {
    d.lines()
        .iter()
        .filter(|l| l["op"] == json!("c"))
        .map(|l| l["after"]["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn new_tasks_start_where_configured() {
    let m = mariadb();
    // A database of this run only: the binlog keeps earlier runs' changes.
    let db = format!("st_start_{}", std::process::id());
    let mut c = m.conn().await;
    c.query_drop(format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY); INSERT INTO {db}.t VALUES (1), (2), (3);"
    ))
    .await
    .unwrap();
    let (file, pos): (String, u64) = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get(0).unwrap(), r.get(1).unwrap()))
        .unwrap();
    c.query_drop(format!("INSERT INTO {db}.t VALUES (4), (5)"))
        .await
        .unwrap();
    let gtid: String = c
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    c.query_drop(format!("INSERT INTO {db}.t VALUES (6), (7)"))
        .await
        .unwrap();
    drop(c);

    let include = format!("{db}.*");
    let mut earliest = Daemon::mysql("start_earliest", &m.url(), &[&include], "");
    with_start(&earliest, "\"earliest\"");
    earliest.start();
    earliest.wait_lines(9, Duration::from_secs(60));
    assert_eq!(inserted_ids(&earliest), [1, 2, 3, 4, 5, 6, 7]);
    let kinds: Vec<_> = earliest
        .lines()
        .iter()
        .filter_map(|l| l["ddl_kind"].as_str().map(String::from))
        .collect();
    assert_eq!(kinds, ["create_database", "create_table"]);

    let mut at_file = Daemon::mysql("start_file", &m.url(), &[&include], "");
    with_start(&at_file, &format!("{{ file = \"{file}\", pos = {pos} }}"));
    at_file.start();
    at_file.wait_lines(4, Duration::from_secs(30));
    assert_eq!(inserted_ids(&at_file), [4, 5, 6, 7]);

    let mut at_gtid = Daemon::mysql("start_gtid", &m.url(), &[&include], "");
    with_start(&at_gtid, &format!("{{ gtid = \"{gtid}\" }}"));
    at_gtid.start();
    at_gtid.wait_lines(2, Duration::from_secs(30));
    assert_eq!(inserted_ids(&at_gtid), [6, 7]);
    assert_eq!(
        at_gtid.lines()[0]["source"]["gtid"]
            .as_str()
            .map(|g| g.starts_with("0-1-")),
        Some(true)
    );
    for mut d in [earliest, at_file, at_gtid] {
        assert!(d.stop().success(), "{}", d.log());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_verifies_the_server_certificate() {
    let m = private_mariadb("mariadb-tls", 13314, "row");
    let db = "st_tls";
    m.fresh_db(db).await;
    m.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await;
    let ca = m.dir.join("tls/ca.crt");
    let tls = format!(
        "[tasks.source.tls]\nmode = \"required\"\nca_file = \"{}\"\n",
        ca.display()
    );
    let mut d = Daemon::mysql("st_tls", &m.url(), &[&format!("{db}.*")], "");
    // The TLS table belongs to the source: insert it before [tasks.filter].
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        text.replace("[tasks.filter]", &format!("{tls}[tasks.filter]")),
    )
    .unwrap();
    d.start();
    wait_streaming(&d);
    m.exec(&format!("INSERT INTO {db}.t VALUES (1)")).await;
    let lines = d.wait_lines(1, Duration::from_secs(30));
    assert_eq!(lines[0]["after"]["id"], json!(1));
    assert!(d.stop().success());

    // A CA that didn't sign the server's certificate: a clear, final error.
    let other = scratch("st_tls_other_ca");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
        ])
        .arg("-keyout")
        .arg(other.join("ca.key"))
        .arg("-out")
        .arg(other.join("ca.crt"))
        .output()
        .unwrap();
    assert!(status.status.success());
    let mut bad = Daemon::mysql("st_tls_bad", &m.url(), &[&format!("{db}.*")], "");
    let text = std::fs::read_to_string(&bad.config).unwrap();
    let bad_tls = tls.replace(ca.to_str().unwrap(), other.join("ca.crt").to_str().unwrap());
    std::fs::write(
        &bad.config,
        text.replace("[tasks.filter]", &format!("{bad_tls}[tasks.filter]")),
    )
    .unwrap();
    bad.start();
    let status = bad.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = bad.log();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.contains("ca_file"), "{log}");
}
