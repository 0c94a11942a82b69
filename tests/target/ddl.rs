//! DDL on database targets: replayed on the same engine, followed by the
//! rows across engines, refused by a `fail` policy, DROP DATABASE skipped.

use std::time::Duration;

use super::{Side, maria_sink, pg_sink};
use crate::support::{mariadb, postgres};

async fn wait_rows(
    target: Side,
    schema: &str,
    table: &str,
    want: &[(i64, i64, &str)],
    d: &crate::support::Daemon,
) {
    let want: Vec<(i64, i64, String)> = want
        .iter()
        .map(|(a, b, c)| (*a, *b, c.to_string()))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = target.rows(schema, table).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{table}: got {got:?}, want {want:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn same_engine_ddl_replays_and_drop_database_is_skipped() {
    let m = mariadb();
    let (source, target) = (Side::Maria(m, "tg_ddl"), Side::Maria(m, "tg_ddl_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_ddl").await;
    let sink = maria_sink(m, "map = { tg_ddl = \"tg_ddl_dr\" }");
    let mut d = source.daemon("tg_ddl", &sink, "");
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    source
        .exec(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(40) NOT NULL);
             INSERT INTO t VALUES (1, 1, 'one');
             ALTER TABLE t ADD COLUMN extra INT NULL DEFAULT 7;
             INSERT INTO t (id, k, v, extra) VALUES (2, 2, 'two', 9);
             ALTER TABLE t CHANGE v v VARCHAR(60) NOT NULL;
             UPDATE t SET v = 'one!' WHERE id = 1;",
        )
        .await;
    wait_rows(target, "", "t", &[(1, 1, "one!"), (2, 2, "two")], &d).await;
    // The statement ran as written: the column type is the source's.
    let mut c = m.conn().await;
    use mysql_async::prelude::Queryable;
    let ty: Option<String> = c
        .query_first("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'tg_ddl_dr' AND TABLE_NAME = 't' AND COLUMN_NAME = 'v'")
        .await
        .unwrap();
    let extra: Option<Option<i32>> = c
        .query_first("SELECT extra FROM tg_ddl_dr.t WHERE id = 1")
        .await
        .unwrap();
    let _ = c.disconnect().await;
    assert_eq!(ty.as_deref(), Some("varchar(60)"));
    assert_eq!(extra, Some(Some(7)), "the default the ALTER gave old rows");
    m.exec("DROP DATABASE tg_ddl").await;
    source.fresh().await;
    source
        .exec("CREATE TABLE after_drop (id INT PRIMARY KEY)")
        .await;
    // A statement after the drop arrives, so the drop was passed over.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = m.conn().await;
        let n: Option<i64> = c
            .query_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'tg_ddl_dr' AND TABLE_NAME = 'after_drop'")
            .await
            .unwrap();
        let _ = c.disconnect().await;
        if n == Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the table created after the drop never arrived:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        target.rows("", "t").await.len(),
        2,
        "DROP DATABASE was skipped"
    );
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fail_policy_stops_at_the_statement_with_the_fix() {
    let m = mariadb();
    let (source, target) = (Side::Maria(m, "tg_ddlf"), Side::Maria(m, "tg_ddlf_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_ddlf").await;
    source
        .exec("CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(40) NOT NULL)")
        .await;
    let sink = maria_sink(m, "map = { tg_ddlf = \"tg_ddlf_dr\" }");
    let mut d = source.daemon(
        "tg_ddlf",
        &sink,
        "[tasks.ddl]\nkinds = { drop_table = \"fail\" }",
    );
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    source
        .exec("INSERT INTO t VALUES (1, 1, 'one'); DROP TABLE t;")
        .await;
    let status = d.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = d.log();
    assert!(
        log.contains("the DDL policy for drop_table is \"fail\""),
        "{log}"
    );
    assert!(
        log.contains("kinds.drop_table = \"skip\""),
        "the fix is named: {log}"
    );
    assert_eq!(
        target.rows("", "t").await,
        vec![(1, 1, "one".to_string())],
        "the insert before the DDL is applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_engine_tables_follow_the_rows_and_truncate_applies() {
    let (m, p) = (mariadb(), postgres());
    let (source, target) = (Side::Maria(m, "tg_ddlx"), Side::Pg(p, "tg_ddlx_dr"));
    source.fresh().await;
    target.fresh().await;
    let sink = pg_sink(p, "tg_ddlx_dr", "");
    let mut d = source.daemon("tg_ddlx", &sink, "");
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    source
        .exec(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(40) NOT NULL);
             INSERT INTO t VALUES (1, 1, 'one');
             ALTER TABLE t ADD COLUMN extra INT NULL;
             INSERT INTO t VALUES (2, 2, 'two', 5);",
        )
        .await;
    wait_rows(target, "tg_ddlx", "t", &[(1, 1, "one"), (2, 2, "two")], &d).await;
    let c = p.client("tg_ddlx_dr").await;
    let extra: Option<i32> = c
        .query_one("SELECT extra FROM tg_ddlx.t WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(extra, Some(5), "the new column was added on the target");
    source
        .exec("TRUNCATE TABLE t; INSERT INTO t VALUES (3, 3, 'three', NULL);")
        .await;
    wait_rows(target, "tg_ddlx", "t", &[(3, 3, "three")], &d).await;
    // Column changes are translated.
    source
        .exec(
            "ALTER TABLE t DROP COLUMN extra, RENAME COLUMN v TO label;
             ALTER TABLE t MODIFY k BIGINT UNSIGNED NOT NULL;
             INSERT INTO t VALUES (4, 18446744073709551615, 'four');",
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // The row first: the columns read after it include its DDL.
        let four = c
            .query_opt("SELECT k::text FROM tg_ddlx.t WHERE id = 4", &[])
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<_, String>(0));
        let rows = c
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns
                  WHERE table_schema = 'tg_ddlx' AND table_name = 't' ORDER BY ordinal_position",
                &[],
            )
            .await
            .unwrap();
        let cols: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if four.as_deref() == Some("18446744073709551615") {
            assert_eq!(
                cols,
                vec![
                    ("id".to_string(), "bigint".to_string()),
                    ("k".into(), "numeric".into()),
                    ("label".into(), "text".into())
                ]
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "columns {cols:?}, row 4 {four:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.stop().success(), "{}", d.log());
}

/// A task from config text, with a MariaDB target database `dr`.
fn pause_task(
    name: &str,
    m: &crate::support::Mariadb,
    data: &std::path::Path,
    kinds: &str,
) -> tidemark::config::TaskConfig {
    let toml = format!(
        r#"[daemon]
data_dir = "{data}"

[[tasks]]
id = "{name}"
[tasks.source]
type = "mysql"
url = "{url}"
server_id = {sid}
heartbeat_secs = 1
[tasks.filter]
include = ["{name}.*"]
[tasks.ddl]
kinds = {{ {kinds} }}
[tasks.sink]
type = "mysql"
url = "{url}"
map = {{ {name} = "{name}_dr" }}
meta_schema = "tm_{name}"
"#,
        data = data.display(),
        url = m.url(),
        sid = crate::support::server_id(name),
    );
    tidemark::config::Config::parse(&toml, "test config")
        .unwrap()
        .tasks
        .remove(0)
}

async fn wait_state(t: &tidemark::task::TaskHandle, want: tidemark::task::TaskState) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while t.state() != want {
        assert!(
            std::time::Instant::now() < deadline,
            "state {want:?} never came: {:?}",
            t.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_policy_waits_at_the_statement_until_resumed_or_skipped() {
    use std::sync::Arc;
    use tidemark::store::FileOffsetStore;
    use tidemark::task::{Supervisor, SupervisorSettings, TaskChange, TaskState};
    let m = mariadb();
    let name = "tg_ddlp";
    let (source, target) = (Side::Maria(m, "tg_ddlp"), Side::Maria(m, "tg_ddlp_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions(name).await;
    source
        .exec("CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v VARCHAR(40) NOT NULL)")
        .await;
    let dir = crate::support::scratch(name);
    let data = dir.join("data");
    let cfg = pause_task(
        name,
        m,
        &data,
        "alter_table = \"pause\", drop_table = \"pause\"",
    );
    let sup = Supervisor::new(
        Arc::new(FileOffsetStore::open(&data).unwrap()),
        SupervisorSettings {
            drain_timeout: Duration::from_secs(20),
            healthy_after: Duration::from_secs(5),
            data_dir: data.clone(),
        },
    );
    let t = sup.add(cfg, true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while t.progress().committed_position.is_none() {
        assert!(std::time::Instant::now() < deadline, "{:?}", t.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    source
        .exec("INSERT INTO t VALUES (1, 1, 'one'); ALTER TABLE t ADD COLUMN extra INT NULL; INSERT INTO t VALUES (2, 2, 'two', 5);")
        .await;
    // The task waits at the ALTER: the row before it is applied.
    wait_state(&t, TaskState::Paused).await;
    let note = t
        .status()
        .history
        .back()
        .and_then(|h| h.note.clone())
        .unwrap_or_default();
    assert!(
        note.contains("waits for an operator") && note.contains("ADD COLUMN extra"),
        "{note}"
    );
    assert_eq!(target.rows("", "t").await.len(), 1);
    // Resume: the statement is applied, then the rest.
    t.resume().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while target.rows("", "t").await.len() != 2 {
        assert!(std::time::Instant::now() < deadline, "{:?}", t.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next pause is skipped by the operator: the kind set to skip.
    source
        .exec(
            "DROP TABLE t; CREATE TABLE after (id INT PRIMARY KEY); INSERT INTO after VALUES (1);",
        )
        .await;
    wait_state(&t, TaskState::Paused).await;
    let mut ddl = tidemark::config::DdlConfig::default();
    ddl.kinds.insert(
        tidemark::event::DdlKind::DropTable,
        tidemark::config::DdlAction::Skip,
    );
    t.modify(TaskChange {
        ddl: Some(ddl),
        ..TaskChange::default()
    })
    .await
    .unwrap();
    t.resume().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = m.conn().await;
        use mysql_async::prelude::Queryable;
        let n: Option<i64> = c
            .query_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'tg_ddlp_dr' AND TABLE_NAME = 'after'")
            .await
            .unwrap();
        let _ = c.disconnect().await;
        if n == Some(1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", t.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        target.rows("", "t").await.len(),
        2,
        "the skipped DROP left the table"
    );
    t.stop().await.unwrap();
}
