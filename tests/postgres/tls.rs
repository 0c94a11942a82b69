//! TLS to the server: both connections encrypted, the certificate verified.

use std::time::Duration;

use super::{source_option, wait_streaming};
use crate::support::{Daemon, postgres};

#[tokio::test(flavor = "multi_thread")]
async fn tls_verifies_the_server_and_encrypts_both_connections() {
    let db = "pg_tls";
    let pg = postgres();
    pg.fresh_db(db).await;
    pg.exec(db, "CREATE TABLE t (id int PRIMARY KEY)").await;
    let ca = pg.dir.join("tls/ca.crt");

    // Verified against the test CA, host name included (a DNS name: the
    // replication connection does not match certificates to IP addresses).
    let url = pg.url(db).replace("127.0.0.1", "localhost");
    let mut d = Daemon::postgres("pg_tls", &url, &[], "");
    source_option(
        &d,
        &format!(
            "tls = {{ mode = \"required\", ca_file = {:?} }}",
            ca.display().to_string()
        ),
    );
    d.start();
    wait_streaming(&d);
    pg.exec(db, "INSERT INTO t VALUES (1)").await;
    let lines = d.wait_lines(1, Duration::from_secs(30));
    assert_eq!(lines[0]["after"]["id"], serde_json::json!(1));
    let rows = pg
        .client("postgres")
        .await
        .query(
            "SELECT s.ssl, a.backend_type FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.application_name = 'tidemark/t' AND a.datname = 'pg_tls'",
            &[],
        )
        .await
        .unwrap();
    let kinds: Vec<(bool, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        kinds.contains(&(true, "walsender".to_string())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(true, "client backend".to_string())),
        "{kinds:?}"
    );
    assert!(kinds.iter().all(|(ssl, _)| *ssl), "{kinds:?}");
    assert!(d.stop().success(), "{}", d.log());

    // By IP address: the chain is verified, the name is not.
    let mut d = Daemon::postgres("pg_tls_ip", &pg.url(db), &[], "");
    source_option(
        &d,
        &format!(
            "tls = {{ mode = \"required\", ca_file = {:?}, skip_hostname_check = true }}",
            ca.display().to_string()
        ),
    );
    d.start();
    wait_streaming(&d);
    pg.exec(db, "INSERT INTO t VALUES (2)").await;
    let lines = d.wait_lines(1, Duration::from_secs(30));
    assert_eq!(lines[0]["after"]["id"], serde_json::json!(2));
    assert!(d.stop().success(), "{}", d.log());

    // The public roots don't know the test CA: a clear, definite error.
    let mut d = Daemon::postgres("pg_tls_untrusted", &url, &[], "");
    source_option(&d, "tls = { mode = \"required\" }");
    d.start();
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = d.log();
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(log.contains("[tasks.source.tls]"), "{log}");
}
