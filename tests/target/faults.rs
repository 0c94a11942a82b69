//! Target faults: the target going away mid-load is retried with backoff,
//! and the result is still exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Side, pg_sink, wait_same, writer};
use crate::support::http::{free_port, request};
use crate::support::{Daemon, mariadb, postgres, private_postgres, scratch, server_id};

#[tokio::test(flavor = "multi_thread")]
async fn a_target_restarted_mid_load_loses_and_repeats_nothing() {
    let m = mariadb();
    let pg: &'static _ = Box::leak(Box::new(private_postgres(
        "postgres-target",
        15443,
        "logical",
    )));
    let (source, target) = (Side::Maria(m, "tg_fault"), Side::Pg(pg, "tg_fault_dr"));
    source.fresh().await;
    target.fresh().await;
    source.load("t", 5_000).await;
    let sink = format!(
        "{}\n[tasks.sink.conflict]\ndefault = \"fail\"",
        pg_sink(pg, "tg_fault_dr", "")
    );
    let mut d = source
        .daemon("tg_fault", &sink, "")
        .with_mode("snapshot+stream", 500, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(source, "t".into(), 5_000, stop.clone(), 3));
    d.start();
    d.wait_log(
        "initial snapshot: every table copied",
        Duration::from_secs(60),
    );
    pg.stop();
    d.wait_log("task interrupted; restarting", Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let txs = w.await.unwrap();
    assert!(txs > 100, "the writer ran ({txs} transactions)");
    wait_same(
        &d,
        source,
        target,
        "t",
        "tg_fault",
        Duration::from_secs(120),
    )
    .await;
    assert!(d.stop().success(), "{}", d.log());
    assert!(
        !d.log().contains("conflict"),
        "nothing applied twice:\n{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_constraint_the_policy_does_not_cover_fails_the_task_naming_the_row() {
    let m = mariadb();
    let (source, target) = (Side::Maria(m, "tg_chk"), Side::Maria(m, "tg_chk_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_chk").await;
    source.load("t", 0).await;
    target
        .exec("CREATE TABLE t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL CHECK (k < 100), v VARCHAR(40) NOT NULL)")
        .await;
    let sink = super::maria_sink(m, "map = { tg_chk = \"tg_chk_dr\" }");
    let mut d = source.daemon("tg_chk", &sink, "");
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    source
        .exec("INSERT INTO t VALUES (1, 1, 'ok'); INSERT INTO t VALUES (7, 500, 'too big')")
        .await;
    assert!(!d.wait_exit(Duration::from_secs(30)).success());
    let log = d.log();
    assert!(
        log.contains("applying the insert of tg_chk.t key id=7 (source position binlog:"),
        "the row is named:\n{log}"
    );
    assert!(log.contains("CONSTRAINT"), "the server's reason:\n{log}");
    assert!(
        !target.rows("", "t").await.iter().any(|r| r.0 == 7),
        "nothing of the failing transaction is on the target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_on_the_target_is_waited_out_not_stalled_on() {
    // An operator holds a target row locked for a while: the apply times
    // out on it, says so, applies again, and gets through once the lock
    // is gone.
    let (m, p) = (mariadb(), crate::support::postgres());
    let (source, target) = (Side::Maria(m, "tg_lock"), Side::Pg(p, "tg_lock_dr"));
    source.fresh().await;
    target.fresh().await;
    source.load("t", 10).await;
    target
        .exec("CREATE SCHEMA tg_lock; CREATE TABLE tg_lock.t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v TEXT NOT NULL); INSERT INTO tg_lock.t SELECT g, g % 1000, 'row' || g FROM generate_series(1, 10) g;")
        .await;
    let sink = format!("{}\nlock_timeout_secs = 1", pg_sink(p, "tg_lock_dr", ""));
    let mut d = source.daemon("tg_lock", &sink, "");
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    let holder = p.client("tg_lock_dr").await;
    holder
        .batch_execute("BEGIN; SELECT * FROM tg_lock.t WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    source.exec("UPDATE t SET v = 'changed' WHERE id = 1").await;
    d.wait_log(
        "the target refused the transaction for now",
        Duration::from_secs(30),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    wait_same(&d, source, target, "t", "tg_lock", Duration::from_secs(60)).await;
    assert!(d.stop().success(), "{}", d.log());
    assert!(
        d.log().contains("lock timeout"),
        "the reason is named:\n{}",
        d.log()
    );
}

/// A CA that signed nothing the test servers hold.
fn other_ca(name: &str) -> std::path::PathBuf {
    let dir = crate::support::scratch(name);
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=other"])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.crt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir.join("ca.crt")
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_over_tls_verify_the_certificate() {
    let (m, p) = (mariadb(), postgres());

    // MariaDB → PostgreSQL, the target's certificate verified, host name
    // included; every apply session is encrypted.
    let (source, target) = (Side::Maria(m, "tg_tls"), Side::Pg(p, "tg_tls_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_tls").await;
    source.load("t", 300).await;
    let url = p.url("tg_tls_dr").replace("127.0.0.1", "localhost");
    let ca = p.dir.join("tls/ca.crt").display().to_string();
    let sink = format!(
        "type = \"postgres\"\nurl = \"{url}\"\ntls = {{ mode = \"required\", ca_file = {ca:?} }}"
    );
    let mut d = source
        .daemon("tg_tls", &sink, "")
        .with_mode("snapshot+stream", 100, 1);
    d.start();
    d.wait_log(
        "initial snapshot: every table copied",
        Duration::from_secs(60),
    );
    source.exec("UPDATE t SET k = -1 WHERE id = 7").await;
    wait_same(&d, source, target, "t", "tg_tls", Duration::from_secs(30)).await;
    let sessions: Vec<bool> = p
        .client("postgres")
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.application_name = 'tidemark-apply:t' AND a.datname = 'tg_tls_dr'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !sessions.is_empty() && sessions.iter().all(|ssl| *ssl),
        "apply sessions over TLS: {sessions:?}"
    );
    assert!(d.stop().success(), "{}", d.log());

    // PostgreSQL → MariaDB as a user the target only lets in over TLS.
    m.exec(
        "CREATE USER IF NOT EXISTS 'tm_tls'@'127.0.0.1' IDENTIFIED BY 'tidemark' REQUIRE SSL;
         GRANT ALL ON *.* TO 'tm_tls'@'127.0.0.1'",
    )
    .await;
    let (source, target) = (Side::Pg(p, "tg_tls2"), Side::Maria(m, "tg_tls2_dr"));
    source.fresh().await;
    target.fresh().await;
    target.forget_positions("tg_tls2").await;
    source.load("t", 300).await;
    let url = m.url().replace("tidemark:tidemark@", "tm_tls:tidemark@");
    let ca = m.dir.join("tls/ca.crt").display().to_string();
    let sink = |ca: &str| {
        format!(
            "type = \"mysql\"\nurl = \"{url}\"\nmap = {{ public = \"tg_tls2_dr\" }}\ntls = {{ mode = \"required\", ca_file = {ca:?} }}"
        )
    };
    let mut d = source
        .daemon("tg_tls2", &sink(&ca), "")
        .with_mode("snapshot+stream", 100, 1);
    d.start();
    d.wait_log(
        "initial snapshot: every table copied",
        Duration::from_secs(60),
    );
    source.exec("UPDATE t SET k = -1 WHERE id = 7").await;
    wait_same(
        &d,
        source,
        target,
        "t",
        "tg_tls2_dr",
        Duration::from_secs(30),
    )
    .await;
    assert!(d.stop().success(), "{}", d.log());

    // A CA that didn't sign the target's certificate: a final error that
    // names the setting, not retries.
    let bad = other_ca("tg_tls_other_ca").display().to_string();
    target.forget_positions("tg_tls2").await;
    let mut d = source.daemon("tg_tls2", &sink(&bad), "");
    d.start();
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = d.log();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.contains("[tasks.sink.tls]"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadlock_on_the_target_is_retried() {
    // A session on the target holds row 2 and then asks for row 1, which
    // the apply holds while it waits for row 2: the server breaks the
    // cycle by failing the apply's transaction (PostgreSQL: the apply's
    // deadlock check runs first; MariaDB: its transaction is the lighter
    // one), which is applied again once the session is gone.
    let (m, p) = (mariadb(), crate::support::postgres());
    for pg in [true, false] {
        let name = if pg { "tg_dlp" } else { "tg_dlm" };
        let dr: &'static str = Box::leak(format!("{name}_dr").into_boxed_str());
        let source = Side::Maria(m, Box::leak(name.to_string().into_boxed_str()));
        let target = if pg {
            Side::Pg(p, dr)
        } else {
            Side::Maria(m, dr)
        };
        source.fresh().await;
        target.fresh().await;
        target.forget_positions(name).await;
        source.load("t", 200).await;
        let (sink, schema) = if pg {
            target
                .exec(&format!("CREATE SCHEMA {name}; CREATE TABLE {name}.t (id BIGINT PRIMARY KEY, k BIGINT NOT NULL, v TEXT NOT NULL); INSERT INTO {name}.t SELECT g, g % 1000, 'row' || g FROM generate_series(1, 200) g;"))
                .await;
            (pg_sink(p, dr, ""), name)
        } else {
            target.load("t", 200).await;
            (
                super::maria_sink(m, &format!("map = {{ {name} = \"{dr}\" }}")),
                dr,
            )
        };
        let mut d = source.daemon(name, &sink, "");
        d.start();
        d.wait_log("reading binlog", Duration::from_secs(30));
        // The session: holds row 2 (and, on MariaDB, enough rows to be
        // the heavier transaction).
        let pg_session = if pg {
            let c = p.client(dr).await;
            c.batch_execute(&format!(
                "SET deadlock_timeout = '30s'; BEGIN; UPDATE {name}.t SET v = 'session' WHERE id = 2"
            ))
            .await
            .unwrap();
            Some(c)
        } else {
            None
        };
        let mut maria_session = if pg {
            None
        } else {
            let mut c = m.conn().await;
            use mysql_async::prelude::Queryable;
            c.query_drop(format!(
                "BEGIN; UPDATE `{dr}`.t SET v = 'session' WHERE id = 2 OR id > 100"
            ))
            .await
            .unwrap();
            Some(c)
        };
        source
            .exec("START TRANSACTION; UPDATE t SET k = -1 WHERE id = 1; UPDATE t SET k = -2 WHERE id = 2; COMMIT; INSERT INTO t VALUES (999, 0, 'marker')")
            .await;
        // Until the apply waits for row 2 (it holds row 1 by then).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let waiting = if pg {
                p.client("postgres")
                    .await
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tidemark-apply:t' AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                    > 0
            } else {
                use mysql_async::prelude::Queryable;
                let mut c = m.conn().await;
                // A prepared UPDATE of the target table, not sleeping.
                let n: Option<i64> = c
                    .exec_first(
                        "SELECT count(*) FROM information_schema.PROCESSLIST
                          WHERE COMMAND = 'Execute' AND INFO LIKE CONCAT('UPDATE `', ?, '`.`t`%')",
                        (dr,),
                    )
                    .await
                    .unwrap();
                let _ = c.disconnect().await;
                n.unwrap_or(0) > 0
            };
            if waiting {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the apply never waited for row 2:\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Close the cycle; the session's statement gets through once the
        // apply's transaction is failed, then the session ends.
        if let Some(c) = &pg_session {
            c.batch_execute(&format!(
                "UPDATE {name}.t SET v = 'session' WHERE id = 1; ROLLBACK"
            ))
            .await
            .unwrap();
        }
        if let Some(c) = maria_session.as_mut() {
            use mysql_async::prelude::Queryable;
            c.query_drop(format!(
                "UPDATE `{dr}`.t SET v = 'session' WHERE id = 1; ROLLBACK"
            ))
            .await
            .unwrap();
        }
        if let Some(c) = maria_session {
            let _ = c.disconnect().await;
        }
        wait_same(&d, source, target, "t", schema, Duration::from_secs(60)).await;
        assert!(d.stop().success(), "{}", d.log());
        let log = d.log();
        assert!(
            log.contains("the target refused the transaction for now") && log.contains("eadlock"),
            "the deadlock is named and the transaction applied again:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_target_is_refused_with_the_fix() {
    // A standby, or a database whose transactions default to read-only.
    let (m, p) = (mariadb(), postgres());
    let source = Side::Maria(m, "tg_ro");
    source.fresh().await;
    source.load("t", 3).await;
    p.fresh_db("tg_ro_dr").await;
    p.exec(
        "tg_ro_dr",
        "ALTER DATABASE tg_ro_dr SET default_transaction_read_only = on",
    )
    .await;
    let mut d = source
        .daemon("tg_ro", &pg_sink(p, "tg_ro_dr", ""), "")
        .with_mode("snapshot+stream", 100, 1);
    d.start();
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = d.log();
    assert!(
        log.contains("is read-only") && log.contains("point sink.url at a writable primary"),
        "{log}"
    );
}

/// Two tidemarks running one task into one target: the second waits,
/// naming the first's session and how to end it, while the first applies
/// alone; it takes over from the target's position once the first is gone.
async fn a_second_tidemark_waits_then_takes_over(
    name: &'static str,
    target: Side,
    sink: &str,
    end_it: &str,
) {
    let source = Side::Maria(mariadb(), name);
    source.fresh().await;
    target.fresh().await;
    target.forget_positions(name).await;
    source.load("t", 200).await;
    let mut a = source
        .daemon(name, sink, "")
        .with_mode("snapshot+stream", 100, 1);
    a.start();
    wait_same(&a, source, target, "t", "", Duration::from_secs(120)).await;

    // The same task, target and meta schema; its own data dir and replica id.
    let b_name = format!("{name}_b");
    let b_dir = scratch(&b_name);
    let text = std::fs::read_to_string(&a.config)
        .unwrap()
        .replace(&a.dir.display().to_string(), &b_dir.display().to_string())
        .replace(
            &format!("server_id = {}", server_id(name)),
            &format!("server_id = {}", server_id(&b_name)),
        );
    // With the API, for its pre-check.
    let port = free_port();
    let token = "test-token-0123456789";
    let text = text.replacen(
        "shutdown_timeout_secs = 20\n",
        &format!(
            "shutdown_timeout_secs = 20\n[daemon.api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"${{TIDEMARK_API_TOKEN}}\"\n"
        ),
        1,
    );
    let mut b = Daemon::with_config(b_dir.clone(), &text, b_dir.join("out.jsonl"));
    b.env.push(("TIDEMARK_API_TOKEN".into(), token.into()));
    b.start();
    b.wait_log(
        "is already applying into this target",
        Duration::from_secs(60),
    );
    let waiting = b.current_log();
    assert!(waiting.contains(end_it), "{waiting}");
    // The pre-check says so too, before anything is started.
    let r = request(port, "POST", "/api/v1/tasks/t/precheck", Some(token), "");
    let v = r.json();
    let item = v["precheck"]["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["name"] == "target.single_writer"))
        .unwrap_or_else(|| panic!("{v}"))
        .clone();
    assert_eq!(item["status"], "warn", "{item}");
    assert!(
        item["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("is applying into this target now"),
        "{item}"
    );
    assert!(
        item["fix"].as_str().unwrap_or_default().contains(end_it),
        "{item}"
    );
    // The first goes on applying alone.
    source
        .exec("INSERT INTO t SELECT seq, seq, 'second' FROM seq_201_to_400")
        .await;
    wait_same(&a, source, target, "t", "", Duration::from_secs(60)).await;
    assert!(b.is_running(), "{}", b.log());

    a.kill9();
    source
        .exec(
            "INSERT INTO t SELECT seq, seq, 'after' FROM seq_401_to_600;
             UPDATE t SET k = k + 1000 WHERE id <= 100;
             DELETE FROM t WHERE id > 550;",
        )
        .await;
    wait_same(&b, source, target, "t", "", Duration::from_secs(180)).await;
    let log = b.current_log();
    assert!(
        log.contains("resuming after the target's position"),
        "{log}"
    );
    assert!(b.stop().success(), "{}", b.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_tidemark_on_one_mariadb_target_waits_then_takes_over() {
    let m = mariadb();
    let target = Side::Maria(m, "tg_twice_dr");
    let sink = super::maria_sink(m, "map = { tg_twice = \"tg_twice_dr\" }");
    a_second_tidemark_waits_then_takes_over("tg_twice", target, &sink, "KILL ").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_tidemark_on_one_postgres_target_waits_then_takes_over() {
    let p = postgres();
    let target = Side::Pg(p, "tg_twice_pg_dr");
    let sink = pg_sink(p, "tg_twice_pg_dr", "map = { tg_twice_pg = \"public\" }");
    a_second_tidemark_waits_then_takes_over("tg_twice_pg", target, &sink, "pg_terminate_backend(")
        .await;
}
