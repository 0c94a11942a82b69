//! PostgreSQL source tests, against the server of tests/servers/postgres.sh.
//! Each test has its own database, slot and publication, and its own daemon.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Daemon, Postgres, wait_until};

mod ack;
mod errors;
mod large;
mod replica;
mod resume;
mod tls;
pub mod types;

/// Waits until the daemon has started streaming.
pub fn wait_streaming(d: &Daemon) {
    wait_until(
        Duration::from_secs(60),
        "tidemark to start reading WAL",
        || d.log().contains("reading WAL"),
    );
}

/// Waits for `n` lines, then runs `sentinel` (which must produce one event)
/// and waits for it as line `n + 1`: proof that exactly `n` came before.
pub async fn exactly(
    d: &mut Daemon,
    n: usize,
    pg: &Postgres,
    db: &str,
    sentinel: &str,
) -> Vec<Value> {
    d.wait_lines(n, Duration::from_secs(60));
    pg.exec(db, sentinel).await;
    let mut lines = d.wait_lines(n + 1, Duration::from_secs(60));
    assert_eq!(lines.len(), n + 1, "more events than expected: {lines:#?}");
    lines.pop();
    lines
}

/// Adds `line` to the daemon's `[tasks.source]` section.
pub fn source_option(d: &Daemon, line: &str) {
    let text = std::fs::read_to_string(&d.config).unwrap().replacen(
        "status_interval_secs = 1\n",
        &format!("status_interval_secs = 1\n{line}\n"),
        1,
    );
    std::fs::write(&d.config, text).unwrap();
}

/// URL of `db` as a role whose sessions (the walsender included) stream any
/// transaction over 64 kB: modest transactions then take the streaming
/// (protocol 2, spill) path.
pub async fn streaming_url(pg: &Postgres, db: &str) -> String {
    pg.exec(
        "postgres",
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'streamer') THEN
             CREATE ROLE streamer LOGIN SUPERUSER REPLICATION PASSWORD 'streamer';
           END IF;
         END $$;
         ALTER ROLE streamer SET logical_decoding_work_mem = '64kB';",
    )
    .await;
    format!("postgres://streamer:streamer@127.0.0.1:{}/{db}", pg.port)
}
