//! Test support: real servers started by the project's scripts, and the
//! tidemark binary run as a child process.

#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub const BIN: &str = env!("CARGO_BIN_EXE_tidemark");

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
            port: 13306,
            flavour: "row",
        };
        m.start();
        m
    })
}

/// A private MariaDB for a test that restarts or misconfigures its server.
pub fn private_mariadb(name: &str, port: u16, flavour: &'static str) -> Mariadb {
    let m = Mariadb {
        dir: repo_root().join("target/servers").join(name),
        port,
        flavour,
    };
    m.start();
    m
}

/// The tidemark daemon under test.
pub struct Daemon {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub out: PathBuf,
    child: Option<Child>,
    log_index: usize,
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

    pub fn with_config(dir: PathBuf, config: &str, out: PathBuf) -> Daemon {
        let path = dir.join("tidemark.toml");
        std::fs::write(&path, config).unwrap();
        Daemon {
            dir,
            config: path,
            out,
            child: None,
            log_index: 0,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.log_index += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("daemon-{}.log", self.log_index))).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config", self.config.to_str().unwrap()])
            .env("TIDEMARK_LOG", "info")
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
