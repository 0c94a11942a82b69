//! Test support: real servers started by the project's scripts, and the
//! tidemark binary run as a child process.

#![allow(dead_code)]

mod daemon;
pub mod http;
mod servers;
pub mod workload;

pub use daemon::Daemon;
pub use servers::*;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tidemark");

/// A test server port: `base` plus `TIDEMARK_TEST_PORT_OFFSET` (default 0),
/// so that two checkouts can run their suites side by side.
pub fn port(base: u16) -> u16 {
    let offset: u16 = std::env::var("TIDEMARK_TEST_PORT_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    base + offset
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory for one test, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("it")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A replica server id unique to the test name (MariaDB drops the older
/// connection when two replicas share an id).
pub fn server_id(name: &str) -> u32 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    10_000 + (h.finish() % 1_000_000) as u32
}

pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {e}: {l}")))
        .collect()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
