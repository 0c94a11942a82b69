//! The task runtime through its Rust API, in process, against the real
//! MariaDB: pause/resume under load, failing offset commits, a full disk.

mod control;
mod disk;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tidemark::config::Config;
use tidemark::event::Position;
use tidemark::store::{
    Committed, FileOffsetStore, OffsetStore, Ownership, Skip, SnapshotProgress, StoreError,
    StoreFuture,
};
use tidemark::task::{Supervisor, SupervisorSettings, TaskHandle, TaskState};

use crate::support::workload::{Workload, assert_exact, observed};
use crate::support::{mariadb, read_lines, scratch, server_id};

/// A MySQL → JSONL task `id` over database `db`, writing `out`.
pub fn mysql_task(
    id: &str,
    url: &str,
    db: &str,
    out: &Path,
    data_dir: &Path,
) -> tidemark::config::TaskConfig {
    let toml = format!(
        r#"[daemon]
data_dir = "{data}"

[[tasks]]
id = "{id}"
[tasks.source]
type = "mysql"
url = "{url}"
server_id = {sid}
heartbeat_secs = 1
max_batch_events = 256
[tasks.filter]
include = ["{db}.*"]
[tasks.sink]
type = "jsonl"
path = "{out}"
"#,
        data = data_dir.display(),
        sid = server_id(id),
        out = out.display(),
    );
    Config::parse(&toml, "test config").unwrap().tasks.remove(0)
}

pub fn settings(data_dir: &Path) -> SupervisorSettings {
    SupervisorSettings {
        drain_timeout: Duration::from_secs(20),
        healthy_after: Duration::from_secs(5),
        data_dir: data_dir.to_path_buf(),
    }
}

/// Waits until the task committed its first position (the source is
/// reading the binlog).
pub async fn wait_streaming(t: &TaskHandle) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.progress().committed_position.is_none() {
        assert!(
            Instant::now() < deadline,
            "the task did not start streaming: {:?}",
            t.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `out` has at least `n` complete lines.
pub async fn wait_lines(
    out: &Path,
    n: usize,
    t: &TaskHandle,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = read_lines(out);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {n} lines, have {}; task: {}",
            lines.len(),
            t.status().summary()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the task recovered from its retry series, then until `out`
/// holds `expected`, nothing more, exactly.
pub async fn recovers_exactly(
    t: &TaskHandle,
    out: &Path,
    expected: &[crate::support::workload::Change],
    context: &str,
) {
    t.wait_for(Duration::from_secs(90), |s| s.retry.is_none())
        .await
        .unwrap_or_else(|s| panic!("{context}: did not recover: {s:?}"));
    let lines = wait_lines(out, expected.len(), t, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        read_lines(out).len(),
        lines.len(),
        "{context}: extra events"
    );
    assert_exact(&observed(&lines), expected, context);
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_and_resume_under_load_lose_and_repeat_nothing() {
    let db = "rt_pause";
    let m = mariadb();
    m.fresh_db(db).await;
    let mut load = Workload::new(&m.url(), db, 21).await;
    let dir = scratch("rt_pause");
    let data = dir.join("data");
    let out = dir.join("out.jsonl");
    let store = Arc::new(FileOffsetStore::open(&data).unwrap());
    let sup = Supervisor::new(store, settings(&data));
    let t = sup
        .add(mysql_task("rt_pause", &m.url(), db, &out, &data), true)
        .unwrap();
    wait_streaming(&t).await;

    let mut expected = Vec::new();
    for round in 0..4 {
        // The load runs while the task is paused mid-stream.
        let loader = tokio::spawn(async move {
            let changes = load.run(300).await;
            (load, changes)
        });
        wait_lines(&out, expected.len() + 1, &t, Duration::from_secs(60)).await;
        t.pause().await.unwrap();
        assert_eq!(t.state(), TaskState::Paused, "round {round}");
        let (l, changes) = loader.await.unwrap();
        load = l;
        expected.extend(changes);
        // Paused: nothing more is written.
        let n = read_lines(&out).len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            read_lines(&out).len(),
            n,
            "round {round}: written while paused"
        );
        // Everything written was committed by the pause.
        let p = t.progress();
        assert_eq!(p.committed_position, p.durable_position, "round {round}");
        t.resume().await.unwrap();
    }
    let lines = wait_lines(&out, expected.len(), &t, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines_after = read_lines(&out);
    assert_eq!(lines_after.len(), lines.len(), "extra events");
    assert_exact(&observed(&lines_after), &expected, "after 4 pauses");

    let status = t.status();
    let paused = status
        .history
        .iter()
        .filter(|h| h.state == TaskState::Paused)
        .count();
    assert_eq!(paused, 4, "{:?}", status.history);
    // The source measures how far behind the server's binlog end it is.
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.progress().lag_bytes.is_none() {
        assert!(
            Instant::now() < deadline,
            "no lag_bytes: {:?}",
            t.progress()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = t.progress();
    assert_eq!(p.events_written as usize, expected.len(), "{p:?}");
    assert_eq!(p.lag_seconds, Some(0.0), "caught up: {p:?}");
    assert!(p.bytes_read > 0 && p.bytes_written > 0, "{p:?}");
    let table_total: u64 = p.tables.values().map(|c| c.total()).sum();
    assert_eq!(table_total as usize, expected.len(), "{p:?}");
    assert!(sup.shutdown(Duration::from_secs(20)).await.is_empty());
    assert_eq!(t.state(), TaskState::Stopped);
}

/// The real store, with commits that fail while `fail` is set.
struct FlakyStore {
    inner: FileOffsetStore,
    fail: AtomicBool,
}

impl OffsetStore for FlakyStore {
    fn load(&self, task: &str) -> StoreFuture<'_, Option<Committed>> {
        self.inner.load(task)
    }
    fn commit(&self, task: &str, pos: &Position) -> StoreFuture<'_, ()> {
        if self.fail.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(StoreError::Io {
                    message: "injected commit failure".into(),
                    source: std::io::Error::other("injected"),
                })
            });
        }
        self.inner.commit(task, pos)
    }
    fn reset(&self, task: &str) -> StoreFuture<'_, ()> {
        self.inner.reset(task)
    }
    fn was_reset(&self, task: &str) -> StoreFuture<'_, bool> {
        self.inner.was_reset(task)
    }
    fn list(&self) -> StoreFuture<'_, Vec<(String, Committed)>> {
        self.inner.list()
    }
    fn skips(&self, task: &str) -> StoreFuture<'_, Vec<Skip>> {
        self.inner.skips(task)
    }
    fn add_skip(&self, task: &str, skip: &Skip) -> StoreFuture<'_, ()> {
        self.inner.add_skip(task, skip)
    }
    fn snapshot(&self, task: &str) -> StoreFuture<'_, Option<SnapshotProgress>> {
        self.inner.snapshot(task)
    }
    fn save_snapshot(&self, task: &str, p: &SnapshotProgress) -> StoreFuture<'_, ()> {
        self.inner.save_snapshot(task, p)
    }
    fn clear_snapshot(&self, task: &str) -> StoreFuture<'_, ()> {
        self.inner.clear_snapshot(task)
    }
    fn owner(&self, task: &str) -> StoreFuture<'_, Option<Ownership>> {
        self.inner.owner(task)
    }
    fn claim(&self, t: &str, n: &str, e: i64) -> StoreFuture<'_, Result<Ownership, Ownership>> {
        self.inner.claim(t, n, e)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_offset_commits_change_the_state_at_once_and_recover_without_loss() {
    let db = "rt_commitfail";
    let m = mariadb();
    m.fresh_db(db).await;
    let mut load = Workload::new(&m.url(), db, 5).await;
    let dir = scratch("rt_commitfail");
    let data = dir.join("data");
    let out = dir.join("out.jsonl");
    let store = Arc::new(FlakyStore {
        inner: FileOffsetStore::open(&data).unwrap(),
        fail: AtomicBool::new(false),
    });
    let sup = Supervisor::new(store.clone(), settings(&data));
    let t = sup
        .add(mysql_task("rt_commitfail", &m.url(), db, &out, &data), true)
        .unwrap();
    wait_streaming(&t).await;
    let mut expected = load.run(100).await;
    wait_lines(&out, expected.len(), &t, Duration::from_secs(60)).await;

    store.fail.store(true, Ordering::SeqCst);
    let failing_since = Instant::now();
    expected.extend(load.run(100).await);
    let s = t
        .wait_for(Duration::from_secs(10), |s| s.retry.is_some())
        .await
        .unwrap_or_else(|s| panic!("no state change while commits fail: {s:?}"));
    eprintln!(
        "state changed {:?} after the first failing commit could happen: {}",
        failing_since.elapsed(),
        s.summary()
    );
    assert_eq!(s.state, TaskState::Running);
    let retry = s.retry.unwrap();
    assert!(
        retry.last_error.contains("offset store") && retry.last_error.contains("injected"),
        "{retry:?}"
    );
    assert!(t.progress().last_error.is_some());
    // Still failing: retried with backoff, the attempt count grows.
    let s = t
        .wait_for(Duration::from_secs(20), |s| {
            s.retry.as_ref().is_some_and(|r| r.attempt >= 3)
        })
        .await
        .unwrap_or_else(|s| panic!("not retried: {s:?}"));
    assert_eq!(s.state, TaskState::Running);

    store.fail.store(false, Ordering::SeqCst);
    expected.extend(load.run(100).await);
    recovers_exactly(&t, &out, &expected, "after failing commits").await;
    assert!(
        t.status()
            .history
            .iter()
            .any(|h| h.note.as_deref() == Some("recovered")),
        "{:?}",
        t.status().history
    );
    assert!(sup.shutdown(Duration::from_secs(20)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_leaves_the_others_and_the_daemon_running() {
    let db = "rt_isolated";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await;
    let mut d = crate::support::Daemon::mysql(db, &m.url(), &[&format!("{db}.*")], "");
    // A second task whose credentials are wrong: a definite error.
    let bad_url = m.url().replace("tidemark:tidemark@", "tidemark:wrong@");
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        format!(
            "{text}\n[[tasks]]\nid = \"bad\"\n[tasks.source]\ntype = \"mysql\"\nurl = \"{bad_url}\"\nserver_id = {}\n[tasks.sink]\ntype = \"jsonl\"\npath = \"{}\"\n",
            server_id("rt_isolated_bad"),
            d.dir.join("bad.jsonl").display()
        ),
    )
    .unwrap();
    d.once = false;
    d.start();
    crate::mysql::stream::wait_streaming(&d);
    m.exec(&format!("INSERT INTO {db}.t VALUES (1), (2)")).await;
    d.wait_lines(2, Duration::from_secs(30));
    // The bad task failed, saying why; the good one and the daemon run on.
    let status = d.dir.join("data/status.json");
    crate::support::wait_until(Duration::from_secs(30), "task bad failed", || {
        std::fs::read_to_string(&status).is_ok_and(|s| s.contains("\"failed\""))
    });
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap();
    let bad = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "bad")
        .unwrap();
    assert_eq!(bad["status"]["state"], "failed");
    let error = bad["status"]["error"].as_str().unwrap();
    assert!(error.contains("access denied"), "{error}");
    assert!(d.is_running());
    m.exec(&format!("INSERT INTO {db}.t VALUES (3)")).await;
    d.wait_lines(3, Duration::from_secs(30));
    let out = d.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad: failed") && text.contains("t: running"),
        "{text}"
    );
    assert!(d.stop().success(), "{}", d.log());
}
