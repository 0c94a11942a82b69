//! Transactions, positions, DDL mid-stream, DDL policy, server restarts.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::support::{Daemon, mariadb, private_mariadb, wait_until};

pub fn wait_streaming(d: &Daemon) {
    d.wait_log("reading binlog", Duration::from_secs(30));
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_statement_transactions_keep_order_and_ids() {
    let db = "st_tx";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.a (id INT PRIMARY KEY, v INT); CREATE TABLE {db}.b (id INT PRIMARY KEY, v INT);"
    ))
    .await;
    let mut d = Daemon::mysql("st_tx", &m.url(), &[&format!("{db}.*")], "");
    d.start();
    wait_streaming(&d);
    m.exec(&format!(
        "START TRANSACTION;
         INSERT INTO {db}.a VALUES (1, 10), (2, 20), (3, 30);
         UPDATE {db}.b SET v = 1 WHERE id = 99;
         INSERT INTO {db}.b VALUES (1, 100);
         UPDATE {db}.a SET v = v + 1 WHERE id IN (1, 2);
         DELETE FROM {db}.a WHERE id = 3;
         COMMIT;
         INSERT INTO {db}.b VALUES (2, 200);"
    ))
    .await;
    let lines = d.wait_lines(8, Duration::from_secs(30));
    let ops: Vec<&str> = lines.iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["c", "c", "c", "c", "u", "u", "d", "c"]);
    let tx_ids: Vec<&Value> = lines.iter().map(|l| &l["transaction"]["id"]).collect();
    assert!(tx_ids[..7].iter().all(|t| *t == tx_ids[0]), "{tx_ids:?}");
    assert_ne!(tx_ids[7], tx_ids[0]);
    let total: Vec<u64> = lines[..7]
        .iter()
        .map(|l| l["transaction"]["total_order"].as_u64().unwrap())
        .collect();
    assert_eq!(total, [1, 2, 3, 4, 5, 6, 7]);
    let per_table: Vec<u64> = lines[..7]
        .iter()
        .map(|l| l["transaction"]["data_collection_order"].as_u64().unwrap())
        .collect();
    assert_eq!(per_table, [1, 2, 3, 1, 4, 5, 6]);
    assert_eq!(lines[4]["before"], json!({"id": 1, "v": 10}));
    assert_eq!(lines[4]["after"], json!({"id": 1, "v": 11}));
    assert_eq!(lines[6]["before"], json!({"id": 3, "v": 30}));
    assert!(lines[6]["after"].is_null());
    // Positions strictly increase and parse back.
    let positions: Vec<&str> = lines
        .iter()
        .map(|l| l["position"].as_str().unwrap())
        .collect();
    let parsed: Vec<tidemark::event::Position> =
        positions.iter().map(|p| p.parse().unwrap()).collect();
    for w in parsed.windows(2) {
        assert!(w[0] < w[1], "{positions:?}");
    }
    assert!(d.stop().success());
    let out = d.cli(&["offsets", "show"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("t: binlog mysql-bin."), "{text}");
}

/// Rows written before and after ALTER TABLEs are decoded with the schema of
/// their own time, even when the daemon reads them all later from the
/// backlog (binlog_row_metadata=FULL).
#[tokio::test(flavor = "multi_thread")]
async fn ddl_mid_stream_keeps_columns_aligned_in_backlog() {
    let db = "st_ddl";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, a INT, b VARCHAR(20))"
    ))
    .await;
    let mut d = Daemon::mysql("st_ddl", &m.url(), &[&format!("{db}.*")], "");
    d.start();
    wait_streaming(&d);
    // Pin the start, then read everything below as backlog.
    assert!(d.stop().success());
    m.exec(&format!(
        "INSERT INTO {db}.t VALUES (1, 10, 'one');
         ALTER TABLE {db}.t ADD COLUMN c DATE AFTER a;
         INSERT INTO {db}.t VALUES (2, 20, '2024-01-02', 'two');
         ALTER TABLE {db}.t DROP COLUMN a;
         INSERT INTO {db}.t VALUES (3, '2024-01-03', 'three');
         ALTER TABLE {db}.t MODIFY b VARCHAR(20) FIRST;
         INSERT INTO {db}.t VALUES ('four', 4, '2024-01-04');
         ALTER TABLE {db}.t CHANGE b name VARCHAR(30), ADD COLUMN n BIGINT UNSIGNED DEFAULT 18446744073709551615;
         UPDATE {db}.t SET name = UPPER(name) WHERE id = 4;"
    ))
    .await;
    d.start();
    let lines = d.wait_lines(9, Duration::from_secs(30));
    let rows: Vec<&Value> = lines.iter().filter(|l| l.get("op").is_some()).collect();
    let ddls: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["ddl_kind"].as_str())
        .collect();
    assert_eq!(ddls, ["alter_table"; 4]);
    assert_eq!(keys(&rows[0]["after"]), ["id", "a", "b"]);
    assert_eq!(rows[0]["after"], json!({"id": 1, "a": 10, "b": "one"}));
    assert_eq!(keys(&rows[1]["after"]), ["id", "a", "c", "b"]);
    assert_eq!(
        rows[1]["after"],
        json!({"id": 2, "a": 20, "c": 19724, "b": "two"})
    );
    assert_eq!(keys(&rows[2]["after"]), ["id", "c", "b"]);
    assert_eq!(rows[2]["after"], json!({"id": 3, "c": 19725, "b": "three"}));
    assert_eq!(keys(&rows[3]["after"]), ["b", "id", "c"]);
    assert_eq!(rows[3]["after"], json!({"b": "four", "id": 4, "c": 19726}));
    assert_eq!(keys(&rows[4]["after"]), ["name", "id", "c", "n"]);
    assert_eq!(rows[4]["before"]["name"], json!("four"));
    assert_eq!(rows[4]["after"]["name"], json!("FOUR"));
    assert_eq!(rows[4]["after"]["n"], json!(18446744073709551615u64));
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn ddl_policy_and_table_selection() {
    let m = mariadb();
    for db in ["pol_a", "pol_b"] {
        m.exec(&format!("DROP DATABASE IF EXISTS {db}")).await;
    }
    let mut d = Daemon::mysql(
        "st_policy",
        &m.url(),
        &["pol_a.*", "pol_b.keep*"],
        "[tasks.ddl]\nkinds = { create_index = \"skip\" }\n[tasks.filter.exclude_unused]\n",
    );
    // The extra table above is an unknown key: validate must reject it.
    let out = d.cli(&["validate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exclude_unused"));
    d = Daemon::mysql(
        "st_policy",
        &m.url(),
        &["pol_a.*", "pol_b.keep*"],
        "[tasks.ddl]\nkinds = { create_index = \"skip\" }",
    );
    std::fs::write(
        &d.config,
        std::fs::read_to_string(&d.config).unwrap().replace(
            "[tasks.filter]\n",
            "[tasks.filter]\nexclude = [\"pol_a.tmp_*\"]\n",
        ),
    )
    .unwrap();
    d.start();
    wait_streaming(&d);
    m.exec(
        "CREATE DATABASE pol_a; CREATE DATABASE pol_b;
         CREATE TABLE pol_a.t (id INT PRIMARY KEY); CREATE TABLE pol_a.tmp_x (id INT PRIMARY KEY);
         CREATE TABLE pol_b.keep1 (id INT PRIMARY KEY); CREATE TABLE pol_b.other (id INT PRIMARY KEY);
         CREATE INDEX i ON pol_a.t (id);
         INSERT INTO pol_a.t VALUES (1); INSERT INTO pol_a.tmp_x VALUES (1);
         INSERT INTO pol_b.keep1 VALUES (1); INSERT INTO pol_b.other VALUES (1);
         TRUNCATE TABLE pol_b.keep1;
         DROP DATABASE pol_a;
         INSERT INTO pol_b.keep1 VALUES (2);",
    )
    .await;
    // The last insert marks the end.
    wait_until(Duration::from_secs(30), "the final insert", || {
        d.lines().iter().any(|l| l["after"]["id"] == json!(2))
    });
    let lines = d.lines();
    let summary: Vec<String> = lines
        .iter()
        .map(|l| match l["ddl_kind"].as_str() {
            Some(k) => format!("ddl {k} {}", l["source"]["table"].as_str().unwrap_or("-")),
            None => format!(
                "{} {}.{}",
                l["op"].as_str().unwrap(),
                l["source"]["db"].as_str().unwrap(),
                l["source"]["table"].as_str().unwrap()
            ),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "ddl create_database -",
            "ddl create_database -",
            "ddl create_table t",
            "ddl create_table keep1",
            "c pol_a.t",
            "c pol_b.keep1",
            "t pol_b.keep1",
            "c pol_b.keep1",
        ],
        "{lines:#?}"
    );
    assert!(d.stop().success());
}

/// The server goes away mid-stream and comes back: the daemon reconnects and
/// delivers every row exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn server_restart_mid_stream() {
    let m = private_mariadb("mariadb-restart", 13310, "row");
    let db = "st_restart";
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await;
    let mut d = Daemon::mysql("st_restart", &m.url(), &[&format!("{db}.*")], "");
    d.start();
    wait_streaming(&d);
    let insert = |from: i32, to: i32| {
        let url = m.url();
        async move {
            let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
                .await
                .unwrap();
            for i in from..to {
                c.query_drop(format!("INSERT INTO {db}.t VALUES ({i}, 'row {i}')"))
                    .await
                    .unwrap();
            }
        }
    };
    insert(0, 100).await;
    d.wait_lines(100, Duration::from_secs(30));
    m.stop();
    m.start();
    insert(100, 200).await;
    let lines = d.wait_lines(200, Duration::from_secs(60));
    let ids: Vec<i64> = lines
        .iter()
        .map(|l| l["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    assert!(d.log().contains("restarting"), "{}", d.log());
    assert!(d.stop().success());
}
