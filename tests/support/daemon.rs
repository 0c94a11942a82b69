//! The tidemark daemon under test, run as a child process.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, read_lines, scratch, server_id, wait_until};

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
        *users().lock().unwrap().entry(dir.clone()).or_default() += 1;
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
                if !s.success() {
                    // The log a failing test prints then ends with how.
                    self.note(&format!("(test) tidemark exited with {s} after SIGTERM"));
                }
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

    /// Appends a line to the latest start's log.
    fn note(&self, line: &str) {
        use std::io::Write;
        let path = self.dir.join(format!("daemon-{}.log", self.log_index));
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
            let _ = writeln!(f, "{line}");
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
    /// Kills the daemon. After a test that passed, its scratch directory
    /// goes too, once no other daemon uses it (the outputs of a whole run
    /// take gigabytes); after a failure, or with TIDEMARK_TEST_KEEP set, it
    /// stays for a look.
    fn drop(&mut self) {
        self.kill9();
        let last = {
            let mut users = users().lock().unwrap_or_else(|e| e.into_inner());
            let n = users.entry(self.dir.clone()).or_default();
            *n = n.saturating_sub(1);
            *n == 0
        };
        if last && !std::thread::panicking() && std::env::var_os("TIDEMARK_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// How many daemons use each scratch directory.
fn users() -> &'static std::sync::Mutex<std::collections::HashMap<PathBuf, usize>> {
    static USERS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<PathBuf, usize>>> =
        std::sync::OnceLock::new();
    USERS.get_or_init(Default::default)
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
