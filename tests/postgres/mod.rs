//! PostgreSQL source tests, against the server of tests/servers/postgres.sh.
//! Each test has its own database, slot and publication, and its own daemon.

use std::time::Duration;

use crate::support::{Daemon, wait_until};

mod types;

/// Waits until the daemon has started streaming.
pub fn wait_streaming(d: &Daemon) {
    wait_until(Duration::from_secs(60), "tidemark to start reading WAL", || {
        d.log().contains("reading WAL")
    });
}
