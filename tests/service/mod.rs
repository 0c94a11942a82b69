//! The daemon as a systemd service: readiness, status and watchdog on
//! `NOTIFY_SOCKET`, and SIGHUP applying the config file's changes to the
//! tasks it changes only.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::support::{Daemon, mariadb};

/// Datagrams received until `until` says stop (or 30 s).
fn collect(sock: &UnixDatagram, mut until: impl FnMut(&[String]) -> bool) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !until(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    let m = mariadb();
    let db = "svc_notify";
    m.fresh_db(db).await;
    let mut d = Daemon::mysql("svc_notify", &m.url(), &[&format!("{db}.*")], "");
    let path = d.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    d.env
        .push(("NOTIFY_SOCKET".into(), path.display().to_string()));
    d.env.push(("WATCHDOG_USEC".into(), "400000".into()));
    // Logs as JSON lines, for the journal's shippers.
    d.env.push(("TIDEMARK_LOG_FORMAT".into(), "json".into()));
    d.once = false;
    d.start();
    let got = collect(&sock, |g| {
        g.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3
            && g.iter().any(|m| m.contains("STATUS=1 tasks: 1 running"))
    });
    assert!(
        got.iter().any(|m| m.contains("READY=1")),
        "{got:?}\n{}",
        d.log()
    );
    assert!(
        got.iter().any(|m| m.contains("STATUS=1 tasks: 1 running")),
        "{got:?}"
    );
    assert!(
        got.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3,
        "{got:?}"
    );
    assert!(d.stop().success(), "{}", d.log());
    let rest = collect(&sock, |g| g.iter().any(|m| m.contains("STOPPING=1")));
    assert!(rest.iter().any(|m| m.contains("STOPPING=1")), "{rest:?}");
    let log = d.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "tidemark running"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_added_changed_and_removed_tasks_only() {
    let m = mariadb();
    let (a, b) = ("svc_hup_a", "svc_hup_b");
    for db in [a, b] {
        m.fresh_db(db).await;
        m.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
            .await;
    }
    let mut d = Daemon::mysql("svc_hup", &m.url(), &[&format!("{a}.*")], "");
    d.once = false;
    d.start();
    d.wait_log("reading binlog", Duration::from_secs(30));
    let base = std::fs::read_to_string(&d.config).unwrap();
    let out2 = d.dir.join("out2.jsonl");
    let second = format!(
        "\n[[tasks]]\nid = \"t2\"\n[tasks.source]\ntype = \"mysql\"\nurl = \"{}\"\nserver_id = 4901\n[tasks.filter]\ninclude = [\"{b}.*\"]\n[tasks.sink]\ntype = \"jsonl\"\npath = \"{}\"\n",
        m.url(),
        out2.display()
    );
    let hup = |d: &Daemon| {
        let pid = d.pid().expect("running");
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    // Added.
    std::fs::write(&d.config, format!("{base}{second}")).unwrap();
    hup(&d);
    d.wait_log("SIGHUP: task added", Duration::from_secs(30));
    // t2 starts at the binlog's end: the row goes in after it is there.
    d.wait_log("reading binlog task=t2", Duration::from_secs(30));
    m.exec(&format!("INSERT INTO {b}.t VALUES (1)")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&out2)
        .unwrap_or_default()
        .contains("\"id\":1")
    {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // An invalid file changes nothing.
    std::fs::write(&d.config, format!("{base}{second}\n[[tasks]]\nid = 5\n")).unwrap();
    hup(&d);
    d.wait_log(
        "SIGHUP: the config file is invalid; nothing changed",
        Duration::from_secs(30),
    );
    // Changed (t2's filter), while t is left alone.
    std::fs::write(
        &d.config,
        format!(
            "{base}{}",
            second.replace(&format!("\"{b}.*\""), &format!("\"{b}.*\", \"{a}.*\""))
        ),
    )
    .unwrap();
    hup(&d);
    d.wait_log("SIGHUP: the task changed", Duration::from_secs(30));
    // Removed.
    std::fs::write(&d.config, &base).unwrap();
    hup(&d);
    d.wait_log(
        "SIGHUP: task removed from the config",
        Duration::from_secs(30),
    );
    d.wait_log("task removed", Duration::from_secs(30));
    m.exec(&format!("INSERT INTO {a}.t VALUES (7)")).await;
    let lines = d.wait_lines(1, Duration::from_secs(30));
    assert_eq!(
        lines[0]["after"]["id"],
        serde_json::json!(7),
        "t ran on throughout"
    );
    let log = d.log();
    let t_restarts = log
        .lines()
        .filter(|l| l.contains("task=t ") && l.contains("state=starting"))
        .count();
    assert_eq!(t_restarts, 1, "task t was never restarted:\n{log}");
    assert!(d.stop().success(), "{log}");
}
