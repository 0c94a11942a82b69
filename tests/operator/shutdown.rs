//! SIGTERM must end the daemon within `shutdown_timeout_secs`, whatever
//! its sink does; SIGHUP must not kill it; positions can be read while it
//! runs, and commands that need it stopped say who holds the data dir.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::mysql::stream::wait_streaming;
use crate::support::workload::Workload;
use crate::support::{BIN, Daemon, mariadb, private_tansu, wait_until};

fn kill(sig: &str, pid: u32) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_blocked_stdout_exits_within_the_timeout() {
    let db = "op_stdout";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, pad VARCHAR(200))"
    ))
    .await;
    let d = Daemon::mysql(db, &m.url(), &[&format!("{db}.*")], "")
        .with_sink("type = \"jsonl\"\npath = \"-\"");
    let text = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("shutdown_timeout_secs = 20", "shutdown_timeout_secs = 5");
    std::fs::write(&d.config, text).unwrap();
    // stdout is a pipe nobody reads: once its buffer is full, writes block.
    let log = std::fs::File::create(d.dir.join("daemon.log")).unwrap();
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args(["run", "--config", d.config.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(d.dir.join("daemon.log")).unwrap_or_default();
    wait_until(Duration::from_secs(30), "reading binlog", || {
        read_log().contains("reading binlog")
    });
    m.exec(&format!(
        "INSERT INTO {db}.t SELECT seq, REPEAT('x', 200) FROM {db}.seq_1_to_2000"
    ))
    .await;
    // The pipe (64 KiB) fills with a few hundred lines; then the writer
    // blocks with the rest in flight.
    d.wait_in_flight(Duration::from_secs(30));
    let asked = Instant::now();
    kill("-TERM", child.0.id());
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "still running {:?} after SIGTERM with shutdown_timeout_secs = 5; log:\n{}",
            asked.elapsed(),
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = asked.elapsed();
    let log = read_log();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("did not stop in time"), "{log}");
    assert!(log.contains("t (stopping)"), "names the task: {log}");
    eprintln!("exited {took:?} after SIGTERM with a blocked stdout");
    let mut sink = String::new();
    let _ = child.0.stdout.take().unwrap().read_to_string(&mut sink);
}

/// A child process killed if the test ends early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_hung_broker_exits_within_the_timeout_and_loses_nothing() {
    let db = "op_hung";
    let m = mariadb();
    m.fresh_db(db).await;
    let mut load = Workload::new(&m.url(), db, 33).await;
    let b = private_tansu("tansu-sigterm", 19095);
    let p = crate::kafka::prefix("op-hung");
    let mut d = Daemon::mysql(db, &m.url(), &[&format!("{db}.*")], "").with_sink(&format!(
        "type = \"kafka\"\nbrokers = \"{}\"\ntopic_prefix = \"{p}\"\nschemas = false\ntopic_creation = {{ partitions = 3 }}",
        b.addr()
    ));
    let text = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("shutdown_timeout_secs = 20", "shutdown_timeout_secs = 3");
    std::fs::write(&d.config, text).unwrap();
    d.once = false;
    d.start();
    wait_streaming(&d);
    let mut expected = load.run(100).await;
    b.pause();
    expected.extend(load.run(100).await);
    d.wait_in_flight(Duration::from_secs(30));
    let asked = Instant::now();
    let status = d.stop();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(status.code(), Some(2), "{}", d.log());
    assert!(d.log().contains("did not stop in time"), "{}", d.log());
    b.resume();
    d.start();
    expected.extend(load.run(50).await);
    let topics = vec![format!("{p}.{db}.a"), format!("{p}.{db}.b")];
    let total = expected.len();
    // Every delete is followed by its tombstone: wait for those too, or the
    // read may end while the restarted task is still catching up.
    let tombstones = expected.iter().filter(|c| c.0 == "d").count();
    let recs = crate::kafka::consume_owned(
        b.addr(),
        topics,
        total + tombstones,
        Duration::from_secs(120),
    )
    .await;
    let values: Vec<_> = recs.iter().filter(|r| r.value.is_some()).collect();
    assert_eq!(values.len(), expected.len(), "duplicates or losses");
    assert!(d.stop().success(), "{}", d.log());
    eprintln!(
        "SIGTERM with a hung broker: exited after {took:?}; then {total} changes exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_an_unchanged_config_touches_nothing_and_offsets_are_readable_while_running() {
    let db = "op_hup";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await;
    let mut d = Daemon::mysql(db, &m.url(), &[&format!("{db}.*")], "");
    d.once = false;
    d.start();
    wait_streaming(&d);
    m.exec(&format!("INSERT INTO {db}.t VALUES (1)")).await;
    d.wait_lines(1, Duration::from_secs(30));
    kill("-HUP", d.pid().unwrap());
    d.wait_log("SIGHUP: reloading", Duration::from_secs(10));
    assert!(d.is_running());
    let restarts = d
        .log()
        .lines()
        .filter(|l| l.contains("state=starting"))
        .count();
    assert_eq!(restarts, 1, "the unchanged task runs on:\n{}", d.log());
    m.exec(&format!("INSERT INTO {db}.t VALUES (2)")).await;
    d.wait_lines(2, Duration::from_secs(30));

    // Reading positions works while the daemon runs.
    wait_until(Duration::from_secs(10), "a committed position", || {
        let out = d.cli(&["offsets", "show"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("binlog")
    });
    // Changing them doesn't, and the error names the holder.
    let out = d.cli(&["offsets", "reset", "--task", "t"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another tidemark process")
            && err.contains(&format!("pid {}", d.pid().unwrap())),
        "{err}"
    );
    assert!(d.stop().success(), "{}", d.log());
}
