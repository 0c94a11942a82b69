//! Conflict policy: what the target already holds meets inserts, updates
//! and deletes of the source (stream mode: no copy window).

use std::time::Duration;

use super::{Side, maria_sink};
use crate::support::{Daemon, mariadb};

/// `op, key, source_row, target_row, action` of a journal row.
type JournalRow = (String, String, Option<String>, Option<String>, String);

const TABLE: &str = "(id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(40) NOT NULL)";

/// Source `name` and target `name_dr` with table `t`; the target holds
/// id 1 ("stale") and 99 ("target only"), the source ids 2 and 3.
async fn setup(name: &'static str, conflict: &str) -> (Side, Side, Daemon) {
    let m = mariadb();
    let dr: &'static str = Box::leak(format!("{name}_dr").into_boxed_str());
    let (source, target) = (Side::Maria(m, name), Side::Maria(m, dr));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions(name).await;
    source
        .exec(&format!(
            "CREATE TABLE t {TABLE}; INSERT INTO t VALUES (2, 2, 'two'), (3, 3, 'three')"
        ))
        .await;
    target
        .exec(&format!(
            "CREATE TABLE t {TABLE}; INSERT INTO t VALUES (1, 0, 'stale'), (99, 0, 'target only')"
        ))
        .await;
    let sink = maria_sink(
        m,
        &format!("map = {{ {name} = \"{dr}\" }}\n[tasks.sink.conflict]\n{conflict}"),
    );
    let mut d = source.daemon(name, &sink, "");
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    (source, target, d)
}

const CHANGES: &str = "INSERT INTO t VALUES (1, 1, 'one'); UPDATE t SET k = 20 WHERE id = 2; DELETE FROM t WHERE id = 3; INSERT INTO t VALUES (4, 4, 'marker');";

async fn wait_marker(target: Side, d: &Daemon) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !target.rows("", "t").await.iter().any(|r| r.0 == 4) {
        assert!(
            std::time::Instant::now() < deadline,
            "the marker row never arrived:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn overwrite_lets_the_source_win_and_counts_each_conflict() {
    let (source, target, mut d) = setup("tg_cow", "default = \"overwrite\"\njournal = true").await;
    source.exec(CHANGES).await;
    wait_marker(target, &d).await;
    assert_eq!(
        target.rows("", "t").await,
        vec![
            (1, 1, "one".into()),
            (2, 20, "two".into()),
            (4, 4, "marker".into()),
            (99, 0, "target only".into())
        ]
    );
    let log = d.log();
    for (op, key) in [("insert", "id=1"), ("update", "id=2"), ("delete", "id=3")] {
        assert!(
            log.lines().any(|l| l.contains("conflict:")
                && l.contains(&format!("op=\"{op}\""))
                && l.contains(key)),
            "{op} conflict on {key} logged:\n{log}"
        );
    }
    // The journal holds each conflict, with both rows.
    let mut c = mariadb().conn().await;
    use mysql_async::prelude::Queryable;
    let journal: Vec<JournalRow> = c
        .query(
            "SELECT op, `key`, source_row, target_row, action FROM tm_tg_cow.conflicts ORDER BY id",
        )
        .await
        .unwrap();
    let _ = c.disconnect().await;
    assert_eq!(journal.len(), 3, "{journal:?}");
    assert_eq!(
        (journal[0].0.as_str(), journal[0].1.as_str()),
        ("insert", "id=1")
    );
    assert!(
        journal[0]
            .2
            .as_deref()
            .is_some_and(|r| r.contains("\"one\"")),
        "{journal:?}"
    );
    assert!(
        journal[0].3.as_deref().is_some_and(|r| r.contains("stale")),
        "the target's row as it was: {journal:?}"
    );
    assert_eq!(journal[1].0, "update");
    assert_eq!(journal[1].3, None, "the row to update was missing");
    assert_eq!(
        (journal[2].0.as_str(), journal[2].4.as_str()),
        ("delete", "overwrite")
    );
    assert!(d.stop().success(), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ignore_keeps_the_target_row() {
    let (source, target, mut d) = setup("tg_cig", "default = \"ignore\"").await;
    source.exec(CHANGES).await;
    wait_marker(target, &d).await;
    assert_eq!(
        target.rows("", "t").await,
        vec![
            (1, 0, "stale".into()),
            (4, 4, "marker".into()),
            (99, 0, "target only".into())
        ]
    );
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_stops_the_task_naming_table_key_and_position() {
    // Deletes of missing rows are ignored; inserts fail.
    let (source, target, mut d) = setup("tg_cfa", "default = \"ignore\"\ninsert = \"fail\"").await;
    source
        .exec("DELETE FROM t WHERE id = 3; INSERT INTO t VALUES (1, 1, 'one')")
        .await;
    let status = d.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = d.log();
    assert!(
        log.contains(
            "conflict on tg_cfa_dr.t: insert the key exists (key id=1, source position binlog:"
        ),
        "{log}"
    );
    assert!(log.contains("then resume"), "the fix is named: {log}");
    // Nothing of the failing transaction is on the target.
    assert_eq!(target.rows("", "t").await[0], (1, 0, "stale".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn table_rules_override_the_task_policy() {
    let m = mariadb();
    let (source, target, mut d) = setup(
        "tg_ctr",
        "default = \"fail\"\n[tasks.sink.conflict.tables.\"tg_ctr.t\"]\ndefault = \"overwrite\"",
    )
    .await;
    let _ = m;
    source.exec(CHANGES).await;
    wait_marker(target, &d).await;
    assert_eq!(target.rows("", "t").await[0], (1, 1, "one".into()));
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_swap_on_a_secondary_unique_key_applies() {
    // Two rows trade their unique `code` in one transaction: applied in
    // source order, never a conflict.
    let m = mariadb();
    let (source, target) = (Side::Maria(m, "tg_swap"), Side::Maria(m, "tg_swap_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_swap").await;
    source
        .exec("CREATE TABLE u (id INT PRIMARY KEY, code VARCHAR(10) NOT NULL, UNIQUE KEY (code)); INSERT INTO u VALUES (1, 'a'), (2, 'b')")
        .await;
    let sink = maria_sink(
        m,
        "map = { tg_swap = \"tg_swap_dr\" }\n[tasks.sink.conflict]\ndefault = \"fail\"",
    );
    let mut d = source
        .daemon("tg_swap", &sink, "")
        .with_mode("snapshot+stream", 100, 1);
    d.start();
    d.wait_log(
        "initial snapshot: every table copied",
        Duration::from_secs(30),
    );
    source
        .exec("START TRANSACTION; UPDATE u SET code = 'tmp' WHERE id = 1; UPDATE u SET code = 'a' WHERE id = 2; UPDATE u SET code = 'b' WHERE id = 1; COMMIT; UPDATE u SET id = 3 WHERE id = 1;")
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        use mysql_async::prelude::Queryable;
        let mut c = m.conn().await;
        let got: Option<String> = c
            .query_first::<Option<String>, _>(
                "SELECT GROUP_CONCAT(id, code ORDER BY id) FROM tg_swap_dr.u",
            )
            .await
            .unwrap_or(None)
            .flatten();
        let _ = c.disconnect().await;
        if got.as_deref() == Some("2a,3b") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the swap never applied ({got:?}):\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_row_inside_a_multi_row_update_meets_the_policy() {
    // One statement updating ten rows and one deleting five: applied as
    // runs, two rows of each missing on the target.
    let m = mariadb();
    let (source, target) = (Side::Maria(m, "tg_crun"), Side::Maria(m, "tg_crun_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_crun").await;
    source
        .exec(&format!(
            "CREATE TABLE t {TABLE}; INSERT INTO t SELECT seq, seq, 'v' FROM seq_1_to_20"
        ))
        .await;
    target
        .exec(&format!(
            "CREATE TABLE t {TABLE}; INSERT INTO t SELECT seq, seq, 'v' FROM seq_1_to_20 WHERE seq NOT IN (5, 6, 15, 16)"
        ))
        .await;
    let sink = maria_sink(m, "map = { tg_crun = \"tg_crun_dr\" }\nworkers = 1");
    let mut d = source.daemon("tg_crun", &sink, "");
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    source
        .exec("UPDATE t SET k = k + 100 WHERE id <= 10; DELETE FROM t WHERE id > 12 AND id <= 17; INSERT INTO t VALUES (99, 0, 'marker')")
        .await;
    wait_marker_id(target, &d, 99).await;
    assert_eq!(target.rows("", "t").await, source.rows("", "t").await);
    let log = d.log();
    for key in ["id=5", "id=6", "id=15", "id=16"] {
        assert!(
            log.lines()
                .any(|l| l.contains("conflict:") && l.contains(key)),
            "conflict on {key} logged:\n{log}"
        );
    }
    assert!(d.stop().success(), "{log}");
}

async fn wait_marker_id(target: Side, d: &Daemon, id: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !target.rows("", "t").await.iter().any(|r| r.0 == id) {
        assert!(
            std::time::Instant::now() < deadline,
            "row {id} never arrived:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unique_key_swaps_and_key_changes_in_a_parallel_backlog_keep_their_order() {
    // A backlog of independent inserts with, among them, rows trading a
    // secondary unique value and keys moving: applied by the parallel
    // workers (the group is large), under the `fail` policy.
    let m = mariadb();
    let (source, target) = (Side::Maria(m, "tg_pswap"), Side::Maria(m, "tg_pswap_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_pswap").await;
    source
        .exec("CREATE TABLE u (id INT PRIMARY KEY, code VARCHAR(10) NOT NULL, UNIQUE KEY (code)); INSERT INTO u VALUES (1, 'a'), (2, 'b')")
        .await;
    let sink = maria_sink(
        m,
        "map = { tg_pswap = \"tg_pswap_dr\" }\nworkers = 4\n[tasks.sink.conflict]\ndefault = \"fail\"",
    );
    let mut d = source
        .daemon("tg_pswap", &sink, "")
        .with_mode("snapshot+stream", 100, 1);
    d.env.push((
        "TIDEMARK_LOG".into(),
        "info,tidemark::sink::db::parallel=debug".into(),
    ));
    d.start();
    d.wait_log(
        "initial snapshot: every table copied",
        Duration::from_secs(30),
    );
    assert!(d.stop().success(), "{}", d.log());
    let mut sql = String::new();
    for round in 0..50 {
        for i in 0..10 {
            let id = 1000 + round * 10 + i;
            sql.push_str(&format!("INSERT INTO u VALUES ({id}, 'n{id}');"));
        }
        // 1 and 2 trade their codes; then 2's key moves and back.
        sql.push_str("START TRANSACTION; UPDATE u SET code = 'tmp' WHERE id = 1; UPDATE u SET code = IF(code = 'a', 'b', 'a') WHERE id = 2; UPDATE u SET code = IF((SELECT c FROM (SELECT code AS c FROM u WHERE id = 2) x) = 'a', 'b', 'a') WHERE id = 1; COMMIT;");
        sql.push_str("UPDATE u SET id = 3 WHERE id = 2; UPDATE u SET id = 2 WHERE id = 3;");
    }
    source.exec(&sql).await;
    // The target table held for a moment: the backlog queues up behind
    // the first group, so the next ones are large (and go parallel)
    // however fast the machine reads it.
    let mut holder = m.conn().await;
    {
        use mysql_async::prelude::Queryable;
        holder
            .query_drop("LOCK TABLES tg_pswap_dr.u WRITE")
            .await
            .unwrap();
    }
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    {
        use mysql_async::prelude::Queryable;
        holder.query_drop("UNLOCK TABLES").await.unwrap();
    }
    let _ = holder.disconnect().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        use mysql_async::prelude::Queryable;
        let mut c = m.conn().await;
        let q = |db: &str| format!("SELECT GROUP_CONCAT(id, code ORDER BY id) FROM {db}.u");
        let want: Option<String> = c
            .query_first::<Option<String>, _>(q("tg_pswap"))
            .await
            .unwrap()
            .flatten();
        let got: Option<String> = c
            .query_first::<Option<String>, _>(q("tg_pswap_dr"))
            .await
            .unwrap_or(None)
            .flatten();
        let _ = c.disconnect().await;
        if want == got {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "target {got:?}, source {want:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.stop().success(), "{}", d.log());
    let log = d.log();
    assert!(
        log.contains("parallel group"),
        "the backlog went to the workers\n{log}"
    );
    assert!(!log.contains("conflict"), "{log}");
}

/// Source and target hold ids 1 to 5 (`k = id`), but the target's row 3
/// was edited there (`v`); the source updates every row in one statement,
/// then row 3 alone, then inserts the marker row 99. With the before image
/// checked and updates ignored on conflict, the target keeps its row 3.
async fn differing_before_image(source: Side, target: Side, name: &str, sink: &str) {
    source.fresh().await;
    target.fresh().await;
    target.forget_positions(name).await;
    let rows =
        "INSERT INTO t VALUES (1, 1, 'v'), (2, 2, 'v'), (3, 3, 'v'), (4, 4, 'v'), (5, 5, 'v')";
    let table = "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(40) NOT NULL)";
    let full = match source {
        Side::Pg(..) => "; ALTER TABLE t REPLICA IDENTITY FULL",
        Side::Maria(..) => "",
    };
    source.exec(&format!("{table}{full}; {rows}")).await;
    target
        .exec(&format!(
            "{table}; {rows}; UPDATE t SET v = 'edited' WHERE id = 3"
        ))
        .await;
    let sink =
        format!("{sink}\nworkers = 1\n[tasks.sink.conflict]\nupdate = \"ignore\"\njournal = true");
    let mut d = source.daemon(name, &sink, "");
    d.start();
    let streaming = match source {
        Side::Pg(..) => "reading WAL",
        Side::Maria(..) => "reading binlog",
    };
    d.wait_log(streaming, Duration::from_secs(30));
    source
        .exec("UPDATE t SET k = k + 100; UPDATE t SET k = 7 WHERE id = 3; INSERT INTO t VALUES (99, 0, 'marker')")
        .await;
    wait_marker_id(target, &d, 99).await;
    assert_eq!(
        target.rows("", "t").await,
        vec![
            (1, 101, "v".into()),
            (2, 102, "v".into()),
            (3, 3, "edited".into()),
            (4, 104, "v".into()),
            (5, 105, "v".into()),
            (99, 0, "marker".into()),
        ]
    );
    let log = d.log();
    let conflicts = log
        .lines()
        .filter(|l| {
            l.contains("conflict: the target row differs from the source's before image")
                && l.contains("id=3")
        })
        .count();
    assert_eq!(conflicts, 2, "both updates of row 3 are conflicts:\n{log}");
    assert!(d.stop().success(), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_whose_before_image_differs_from_the_target_row_is_a_conflict() {
    let m = mariadb();
    differing_before_image(
        Side::Maria(m, "tg_cbi"),
        Side::Maria(m, "tg_cbi_dr"),
        "tg_cbi",
        &maria_sink(m, "map = { tg_cbi = \"tg_cbi_dr\" }"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_before_image_is_checked_under_replica_identity_full() {
    let p = crate::support::postgres();
    differing_before_image(
        Side::Pg(p, "tg_cbip"),
        Side::Pg(p, "tg_cbip_dr"),
        "tg_cbip",
        &super::pg_sink(p, "tg_cbip_dr", ""),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_only_before_image_is_not_compared() {
    // PostgreSQL's default replica identity sends no before image of an
    // update that keeps its key, and only the key of one that changes it:
    // nothing to compare, the source's row wins.
    let p = crate::support::postgres();
    let (source, target) = (Side::Pg(p, "tg_cko"), Side::Pg(p, "tg_cko_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_cko").await;
    source.load("t", 3).await;
    target.load("t", 3).await;
    target.exec("UPDATE t SET v = 'edited' WHERE id = 2").await;
    let sink = super::pg_sink(p, "tg_cko_dr", "[tasks.sink.conflict]\nupdate = \"fail\"");
    let mut d = source.daemon("tg_cko", &sink, "");
    d.start();
    d.wait_log("reading WAL", Duration::from_secs(30));
    source
        .exec("UPDATE t SET k = 50 WHERE id = 2; UPDATE t SET id = 20 WHERE id = 1; INSERT INTO t VALUES (99, 0, 'marker')")
        .await;
    wait_marker_id(target, &d, 99).await;
    assert_eq!(target.rows("", "t").await, source.rows("", "t").await);
    assert!(!d.log().contains("conflict"), "{}", d.log());
    assert!(d.stop().success(), "{}", d.log());
}
