//! Test support: real servers started by the project's scripts, and the
//! tidemark binary run as a child process.

#![allow(dead_code)]

pub mod workload;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

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

/// A MariaDB instance from tests/servers/mariadb.sh.
pub struct Mariadb {
    pub dir: PathBuf,
    pub port: u16,
    pub flavour: &'static str,
}

impl Mariadb {
    pub fn url(&self) -> String {
        format!("mysql://tidemark:tidemark@127.0.0.1:{}", self.port)
    }

    pub fn start(&self) {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/servers/mariadb.sh"))
            .args([
                "start",
                self.dir.to_str().unwrap(),
                &self.port.to_string(),
                self.flavour,
            ])
            .output()
            .expect("running tests/servers/mariadb.sh");
        assert!(
            out.status.success(),
            "MariaDB did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/servers/mariadb.sh"))
            .args(["stop", self.dir.to_str().unwrap()])
            .output()
            .expect("running tests/servers/mariadb.sh");
        assert!(out.status.success());
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        let opts = mysql_async::Opts::from_url(&self.url()).unwrap();
        let opts = mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false);
        mysql_async::Conn::new(opts)
            .await
            .expect("connecting to the test MariaDB")
    }

    /// Runs statements on one connection (utf8mb4, UTC).
    pub async fn exec(&self, sql: &str) {
        let mut c = self.conn().await;
        c.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'")
            .await
            .unwrap();
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
        c.disconnect().await.unwrap();
    }

    /// Drops and creates database `db`.
    pub async fn fresh_db(&self, db: &str) {
        self.exec(&format!(
            "DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` CHARACTER SET utf8mb4"
        ))
        .await;
    }
}

/// The shared ROW-format MariaDB on port 13306 (started once per process;
/// reused across runs).
pub fn mariadb() -> &'static Mariadb {
    static M: OnceLock<Mariadb> = OnceLock::new();
    M.get_or_init(|| {
        let m = Mariadb {
            dir: repo_root().join("target/servers/mariadb"),
            port: port(13306),
            flavour: "row",
        };
        m.start();
        m
    })
}

/// A private MariaDB for a test that restarts or misconfigures its server.
pub fn private_mariadb(name: &str, base_port: u16, flavour: &'static str) -> Mariadb {
    let m = Mariadb {
        dir: repo_root().join("target/servers").join(name),
        port: port(base_port),
        flavour,
    };
    m.start();
    m
}

/// A PostgreSQL instance from tests/servers/postgres.sh.
pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    pub flavour: &'static str,
}

impl Postgres {
    /// URL of database `db` as the superuser `tidemark`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://tidemark:tidemark@127.0.0.1:{}/{db}", self.port)
    }

    fn script(&self, cmd: &str) {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/servers/postgres.sh"))
            .args([
                cmd,
                self.dir.to_str().unwrap(),
                &self.port.to_string(),
                self.flavour,
            ])
            .output()
            .expect("running tests/servers/postgres.sh");
        assert!(
            out.status.success(),
            "postgres.sh {cmd} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        self.script("start");
    }

    pub fn stop(&self) {
        self.script("stop");
    }

    pub fn restart(&self) {
        self.script("restart");
    }

    /// A SQL connection to `db` (session in UTC).
    pub async fn client(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL ({db}): {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
        client
    }

    /// Runs statements in `db`.
    pub async fn exec(&self, db: &str, sql: &str) {
        self.client(db)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{e:?}: {sql}"));
    }

    /// Drops (with its replication slots) and creates database `db`.
    pub async fn fresh_db(&self, db: &str) {
        let c = self.client("postgres").await;
        c.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL",
            &[&db],
        )
        .await
        .unwrap();
        for _ in 0..100 {
            let r = c
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1",
                    &[&db],
                )
                .await;
            if r.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{db}\""),
        ] {
            c.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
    }

    /// `confirmed_flush_lsn` of `slot`, as a number.
    pub async fn confirmed_flush(&self, slot: &str) -> Option<u64> {
        let c = self.client("postgres").await;
        let row = c
            .query_opt(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()?;
        let text: Option<String> = row.get(0);
        text.as_deref().map(parse_lsn)
    }
}

/// `16/B374D848` → number.
pub fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("an LSN");
    u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
}

/// The shared PostgreSQL (wal_level=logical) on port 15432, started once
/// per process and reused across runs.
pub fn postgres() -> &'static Postgres {
    static P: OnceLock<Postgres> = OnceLock::new();
    P.get_or_init(|| {
        let p = Postgres {
            dir: repo_root().join("target/servers/postgres"),
            port: port(15432),
            flavour: "logical",
        };
        p.start();
        p
    })
}

/// A private PostgreSQL for a test that restarts or misconfigures its server.
pub fn private_postgres(name: &str, base_port: u16, flavour: &'static str) -> Postgres {
    let p = Postgres {
        dir: repo_root().join("target/servers").join(name),
        port: port(base_port),
        flavour,
    };
    p.start();
    p
}

/// The tidemark daemon under test.
pub struct Daemon {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub out: PathBuf,
    child: Option<Child>,
    log_index: usize,
    /// Extra environment variables for the daemon.
    pub env: Vec<(String, String)>,
    /// Run with `--once`: the daemon exits once every task ended (failed,
    /// completed, stopped), so that a test can wait for a failure by the
    /// exit. Default true; false to test the service, which keeps running
    /// with failed tasks.
    pub once: bool,
}

impl Daemon {
    /// Writes a config with one task `t` reading `url` into `out.jsonl`.
    /// `extra` is appended to the task table (e.g. filters).
    pub fn mysql(name: &str, url: &str, include: &[&str], extra: &str) -> Daemon {
        let dir = scratch(name);
        let out = dir.join("out.jsonl");
        let include: Vec<String> = include.iter().map(|p| format!("{p:?}")).collect();
        let config = format!(
            r#"[daemon]
data_dir = "{data}"
shutdown_timeout_secs = 20

[[tasks]]
id = "t"
[tasks.source]
type = "mysql"
url = "{url}"
server_id = {sid}
heartbeat_secs = 1
[tasks.filter]
include = [{include}]
[tasks.sink]
type = "jsonl"
path = "{out}"
{extra}
"#,
            data = dir.join("data").display(),
            sid = server_id(name),
            include = include.join(", "),
            out = out.display(),
        );
        Daemon::with_config(dir, &config, out)
    }

    /// Writes a config with one task `t` reading the PostgreSQL database
    /// at `url` into `out.jsonl` (slot and publication `tidemark_<name>`,
    /// status updates every second). `extra` is appended to the task table.
    pub fn postgres(name: &str, url: &str, include: &[&str], extra: &str) -> Daemon {
        let dir = scratch(name);
        let out = dir.join("out.jsonl");
        let include: Vec<String> = include.iter().map(|p| format!("{p:?}")).collect();
        let config = format!(
            r#"[daemon]
data_dir = "{data}"
shutdown_timeout_secs = 20

[[tasks]]
id = "t"
[tasks.source]
type = "postgres"
url = "{url}"
slot = "tidemark_{name}"
publication = "tidemark_{name}"
status_interval_secs = 1
[tasks.filter]
include = [{include}]
[tasks.sink]
type = "jsonl"
path = "{out}"
{extra}
"#,
            data = dir.join("data").display(),
            include = include.join(", "),
            out = out.display(),
        );
        Daemon::with_config(dir, &config, out)
    }

    pub fn with_config(dir: PathBuf, config: &str, out: PathBuf) -> Daemon {
        let path = dir.join("tidemark.toml");
        std::fs::write(&path, config).unwrap();
        Daemon {
            dir,
            config: path,
            out,
            child: None,
            log_index: 0,
            env: Vec::new(),
            once: true,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.log_index += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("daemon-{}.log", self.log_index))).unwrap();
        let mut args = vec!["run", "--config", self.config.to_str().unwrap()];
        if self.once {
            args.push("--once");
        }
        let child = Command::new(BIN)
            .args(args)
            .env("TIDEMARK_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting tidemark");
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit (at most 30 s).
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("not running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "tidemark did not stop within 30 s after SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the daemon to exit by itself (e.g. a failing task).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let c = self.child.as_mut().expect("not running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "tidemark still running after {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Process id of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// The log of the latest start.
    pub fn current_log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("daemon-{}.log", self.log_index)))
            .unwrap_or_default()
    }

    /// Waits until the latest start logs `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_until(timeout, needle, || self.current_log().contains(needle));
    }

    /// All daemon logs so far.
    pub fn log(&self) -> String {
        (1..=self.log_index)
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("daemon-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----- restart -----\n")
    }

    /// Complete lines of the output file, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        read_lines(&self.out)
    }

    /// Waits until the output has at least `n` lines.
    pub fn wait_lines(&mut self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            if lines.len() >= n {
                return lines;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {timeout:?} for {n} lines, have {}; log:\n{}",
                    lines.len(),
                    self.log()
                );
            }
            if !self.is_running() && self.child.is_some() {
                panic!("tidemark exited; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Task `t`'s progress from the daemon's status file (rewritten every
    /// second), once there is one.
    pub fn progress(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join("data/status.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == "t")
            .map(|t| t["progress"].clone())
    }

    /// Waits until task `t` has events read but not yet durable: the sink
    /// holds them (blocked, stalled) — what a test that stops a stuck sink
    /// needs before it acts.
    pub fn wait_in_flight(&self, timeout: Duration) {
        wait_until(timeout, "events in flight (read, not durable)", || {
            self.progress().is_some_and(|p| {
                p["events_read"].as_u64().unwrap_or(0) > p["events_written"].as_u64().unwrap_or(0)
            })
        });
    }

    /// Runs `tidemark <args> --config <config>` to completion.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", self.config.to_str().unwrap()]);
        Command::new(BIN).args(all).output().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
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

/// A Kafka-protocol broker (tansu) from tests/servers/tansu.sh.
pub struct Broker {
    pub dir: PathBuf,
    pub port: u16,
}

impl Broker {
    /// `host:port` for `bootstrap.servers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn script(&self, cmd: &str) {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/servers/tansu.sh"))
            .args([cmd, self.dir.to_str().unwrap(), &self.port.to_string()])
            .output()
            .expect("running tests/servers/tansu.sh");
        assert!(
            out.status.success(),
            "tansu.sh {cmd} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        self.script("start");
    }

    /// SIGSTOP: the broker hangs (connections stay open, nothing answers).
    pub fn pause(&self) {
        self.script("pause");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.script("resume");
    }
}

/// The shared tansu broker on 127.0.0.1:19092 (started once per process,
/// reused across runs; tests use topics of their own).
pub fn tansu() -> &'static Broker {
    static B: OnceLock<Broker> = OnceLock::new();
    B.get_or_init(|| {
        let b = Broker {
            dir: repo_root().join("target/servers/tansu"),
            port: port(19092),
        };
        b.start();
        b
    })
}

/// A private tansu broker for a test that pauses its broker.
pub fn private_tansu(name: &str, base_port: u16) -> Broker {
    let b = Broker {
        dir: repo_root().join("target/servers").join(name),
        port: port(base_port),
    };
    b.start();
    b
}

impl Daemon {
    /// Replaces the JSONL sink of a config written by `Daemon::mysql` or
    /// `Daemon::postgres` with `sink` (the body of `[tasks.sink]`).
    pub fn with_sink(self, sink: &str) -> Daemon {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let start = text.find("[tasks.sink]").expect("a [tasks.sink] table");
        let after = &text[start..];
        // The jsonl sink is `type` and `path`: two lines after the header.
        let end = after
            .match_indices('\n')
            .nth(2)
            .map_or(text.len(), |(i, _)| start + i + 1);
        let new = format!("{}[tasks.sink]\n{sink}\n{}", &text[..start], &text[end..]);
        std::fs::write(&self.config, new).unwrap();
        self
    }

    /// Adds `key = value` lines to the source table.
    pub fn with_source_option(self, line: &str) -> Daemon {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let new = text.replacen("[tasks.filter]", &format!("{line}\n[tasks.filter]"), 1);
        std::fs::write(&self.config, new).unwrap();
        self
    }
}
