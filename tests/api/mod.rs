//! The HTTP control plane against a running daemon: the task API, the
//! Milvus-CDC endpoint, metrics and health, with a MariaDB source.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::http::{Reply, free_port, request};
use crate::support::{Daemon, mariadb};

const TOKEN: &str = "test-token-0123456789";

/// A daemon running task `t` (MariaDB `db` → JSONL) with the API on a free
/// port; the service mode (not `--once`).
fn daemon(name: &str, db: &str) -> (Daemon, u16) {
    daemon_with(name, db, "")
}

/// [`daemon`] with more `[daemon.api]` lines.
fn daemon_with(name: &str, db: &str, api_extra: &str) -> (Daemon, u16) {
    let m = mariadb();
    let port = free_port();
    let mut d = Daemon::mysql(name, &m.url(), &[&format!("{db}.*")], "");
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        text.replacen(
            "shutdown_timeout_secs = 20\n",
            &format!(
                "shutdown_timeout_secs = 20\n[daemon.api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"${{TIDEMARK_API_TOKEN}}\"\nmax_body_bytes = 4096\n{api_extra}\n"
            ),
            1,
        ),
    )
    .unwrap();
    d.env.push(("TIDEMARK_API_TOKEN".into(), TOKEN.into()));
    d.once = false;
    (d, port)
}

fn call(port: u16, method: &str, path: &str, body: &str) -> Reply {
    request(port, method, path, Some(TOKEN), body)
}

/// Polls GET /api/v1/tasks/{id} until its state is `state`.
fn wait_state(d: &Daemon, port: u16, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(port, "GET", &format!("/api/v1/tasks/{id}"), "");
        if r.status == 200 && r.json()["state"] == state {
            return r.json();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task {id} never {state}: {} {}\n{}",
            r.status,
            r.text,
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_api(d: &Daemon, port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the API never listened:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_api_controls_tasks_and_refuses_what_their_state_does_not_allow() {
    let m = mariadb();
    let db = "api_ctl";
    m.fresh_db(db).await;
    m.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await;
    let (mut d, port) = daemon("api_ctl", db);
    d.start();
    wait_api(&d, port);

    // Health without a token; everything else with it.
    let r = request(port, "GET", "/healthz", None, "");
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("ok")));
    let r = request(port, "GET", "/api/v1/tasks", None, "");
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );
    let r = request(
        port,
        "GET",
        "/api/v1/tasks",
        Some("wrong-token-0123456789"),
        "",
    );
    assert_eq!(r.status, 401);
    let r = request(port, "GET", "/metrics", None, "");
    assert_eq!(r.status, 401);

    let v = wait_state(&d, port, "t", "running");
    assert_eq!(v["origin"], "config");
    assert_eq!(
        v["definition"]["source"]["url"],
        json!(format!("{}", m.url().replace(":tidemark@", ":***@")))
    );
    assert!(!v.to_string().contains(":tidemark@"), "no password: {v}");
    let r = call(port, "GET", "/api/v1/tasks?state=running", "");
    assert_eq!(r.json()["tasks"][0]["id"], "t");
    let r = call(port, "GET", "/api/v1/tasks?state=paused", "");
    assert_eq!(r.json()["tasks"], json!([]));
    let r = call(port, "GET", "/api/v1/tasks?state=sleeping", "");
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("state"))
    );
    let r = call(port, "GET", "/readyz", "");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(port, "GET", "/api/v1/openapi.yaml", "");
    assert!(
        r.status == 200 && r.text.starts_with("openapi: 3"),
        "{}",
        r.text
    );

    // A change flows; metrics count it.
    m.exec(&format!("INSERT INTO {db}.t VALUES (1)")).await;
    d.wait_lines(1, Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(port, "GET", "/metrics", "");
        assert_eq!(r.status, 200);
        if r.text
            .contains("tidemark_events_written_total{task=\"t\"} 1")
        {
            assert!(
                r.text
                    .contains("tidemark_task_state{task=\"t\",state=\"running\"} 1"),
                "{}",
                r.text
            );
            assert!(
                r.text.contains(&format!(
                    "tidemark_table_events_total{{task=\"t\",table=\"{db}.t\",op=\"insert\"}} 1"
                )),
                "{}",
                r.text
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.text);
        std::thread::sleep(Duration::from_millis(200));
    }

    // Transitions, and those the state doesn't allow.
    let r = call(port, "POST", "/api/v1/tasks/t/resume", "");
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        r.json()["error"]["allowed"],
        "paused or failed (or running while a failure is retried: it retries at once)"
    );
    let r = call(
        port,
        "PATCH",
        "/api/v1/tasks/t",
        r#"{"filter": {"include": ["x.*"]}}"#,
    );
    assert_eq!(r.status, 409, "modify while running: {}", r.text);
    let r = call(port, "POST", "/api/v1/tasks/t/pause", "");
    assert_eq!(
        (r.status, r.json()["state"].clone()),
        (200, json!("paused"))
    );
    let r = call(port, "PATCH", "/api/v1/tasks/t", r#"{"filters": {}}"#);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("filters"),
        "{}",
        r.text
    );
    let r = call(
        port,
        "PATCH",
        "/api/v1/tasks/t",
        &format!(r#"{{"filter": {{"include": ["{db}.*"], "exclude": ["{db}.skip"]}}}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    m.exec(&format!("INSERT INTO {db}.t VALUES (2)")).await;
    let r = call(port, "POST", "/api/v1/tasks/t/resume", "");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        ["starting", "running"].contains(&r.json()["state"].as_str().unwrap()),
        "{}",
        r.text
    );
    let lines = d.wait_lines(2, Duration::from_secs(30));
    assert_eq!(
        lines[1]["after"]["id"],
        json!(2),
        "the row written while paused"
    );
    let r = call(port, "DELETE", "/api/v1/tasks/t", "");
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("config file"), "{}", r.text);
    let r = call(port, "GET", "/api/v1/tasks/none", "");
    assert_eq!(r.status, 404);
    let r = call(port, "POST", "/api/v1/tasks/t/jump", "");
    assert_eq!(r.status, 404, "{}", r.text);
    let r = call(port, "POST", "/api/v1/tasks", &"x".repeat(5000));
    assert_eq!(r.status, 413, "the body limit: {}", r.text);
    let history = wait_state(&d, port, "t", "running")["status"]["history"].clone();
    let states: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    // A re-snapshot of the table while the task streams.
    let r = call(
        port,
        "POST",
        "/api/v1/tasks/t/snapshot",
        &format!(r#"{{"tables": ["{db}.t"]}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        port,
        "POST",
        "/api/v1/tasks/t/snapshot",
        r#"{"tables": ["other.x"]}"#,
    );
    assert_eq!(r.status, 400, "a table the task doesn't select: {}", r.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reads = d.lines().iter().filter(|l| l["op"] == "r").count();
        if reads == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{reads} rows copied\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // running → stopping → paused (a modify notes itself there) →
    // starting → running.
    let from = states
        .iter()
        .position(|s| *s == "stopping")
        .expect("a pause");
    assert!(
        states[from..].starts_with(&["stopping", "paused"])
            && states.ends_with(&["paused", "starting", "running"]),
        "{states:?}"
    );
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_created_over_the_api_persist_and_come_back_in_their_state() {
    let m = mariadb();
    let db = "api_new";
    m.fresh_db(db).await;
    m.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await;
    let (mut d, port) = daemon("api_new", db);
    // The URL by reference: stored as written, never expanded on disk.
    d.env.push(("API_TEST_SOURCE_URL".into(), m.url()));
    d.start();
    wait_api(&d, port);
    let data = d.dir.join("data");
    let out = data.join("a1.jsonl");
    let def = |id: &str, path: &str| {
        let sid = 4200 + id.bytes().map(u64::from).sum::<u64>();
        json!({
            "id": id,
            "source": {"type": "mysql", "url": "${API_TEST_SOURCE_URL}", "server_id": sid},
            "filter": {"include": [format!("{db}.*")]},
            "sink": {"type": "jsonl", "path": path},
        })
        .to_string()
    };
    // Files outside the data directory are refused, naming the field.
    let r = call(
        port,
        "POST",
        "/api/v1/tasks",
        &def("bad", "/etc/tidemark-out.jsonl"),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["field"], "sink.path");
    let r = call(
        port,
        "POST",
        "/api/v1/tasks",
        r#"{"id": "x", "source": {"type": "mysql"}}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.json()["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("source"),
        "{}",
        r.text
    );
    let r = call(
        port,
        "POST",
        "/api/v1/tasks?start=true",
        &def("a1", out.to_str().unwrap()),
    );
    assert_eq!(
        (r.status, r.json()["task_id"].clone()),
        (201, json!("a1")),
        "{}",
        r.text
    );
    let r = call(
        port,
        "POST",
        "/api/v1/tasks",
        &def("a1", out.to_str().unwrap()),
    );
    assert_eq!(r.status, 400, "the id is taken: {}", r.text);
    // A batch: created, not started.
    let batch = format!(
        "[{}, {}]",
        def("b1", data.join("b1.jsonl").to_str().unwrap()),
        def("b22", data.join("b22.jsonl").to_str().unwrap())
    );
    let r = call(port, "POST", "/api/v1/tasks", &batch);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["task_ids"], json!(["b1", "b22"]));
    wait_state(&d, port, "a1", "running");
    wait_state(&d, port, "b1", "created");
    let stored = std::fs::read_to_string(data.join("api-tasks/a1.json")).unwrap();
    assert!(stored.contains("${API_TEST_SOURCE_URL}"), "{stored}");
    let v = call(port, "GET", "/api/v1/tasks/a1", "").json();
    assert_eq!(v["origin"], "api");
    assert_eq!(v["definition"]["source"]["url"], "${API_TEST_SOURCE_URL}");

    m.exec(&format!("INSERT INTO {db}.t VALUES (1)")).await;
    let lines_of = |p: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines_of(&out).is_empty() {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = call(port, "POST", "/api/v1/tasks/a1/pause", "");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(port, "POST", "/api/v1/tasks/b22/start", "");
    assert_eq!(r.status, 200, "{}", r.text);
    wait_state(&d, port, "b22", "running");
    let r = call(port, "POST", "/api/v1/tasks/b22/stop", "");
    assert_eq!(r.status, 200, "{}", r.text);

    // A restart: each comes back as it was left.
    assert!(d.stop().success(), "{}", d.log());
    m.exec(&format!("INSERT INTO {db}.t VALUES (2)")).await;
    d.start();
    wait_api(&d, port);
    wait_state(&d, port, "a1", "paused");
    wait_state(&d, port, "b1", "created");
    wait_state(&d, port, "b22", "stopped");
    wait_state(&d, port, "t", "running");
    let r = call(port, "POST", "/api/v1/tasks/a1/resume", "");
    assert_eq!(r.status, 200, "{}", r.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines_of(&out).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let ids: Vec<Value> = lines_of(&out)
        .iter()
        .map(|l| l["after"]["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!(1), json!(2)],
        "exactly once across the restart"
    );

    // Delete: stopped, gone, and gone after a restart too.
    let r = call(port, "DELETE", "/api/v1/tasks/a1", "");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(call(port, "GET", "/api/v1/tasks/a1", "").status, 404);
    assert!(!data.join("api-tasks/a1.json").exists());
    assert!(d.stop().success(), "{}", d.log());
    d.start();
    wait_api(&d, port);
    wait_state(&d, port, "b1", "created");
    assert_eq!(call(port, "GET", "/api/v1/tasks/a1", "").status, 404);
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_milvus_cdc_endpoint_drives_tidemark_tasks() {
    let m = mariadb();
    let db = "api_cdc";
    m.fresh_db(db).await;
    m.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await;
    let (mut d, port) = daemon("api_cdc", db);
    d.start();
    wait_api(&d, port);
    let out = d.dir.join("data").join("cdc.jsonl");
    let cdc = |body: Value| call(port, "POST", "/cdc", &body.to_string());
    // No id: one is generated.
    let r = cdc(json!({
        "request_type": "create",
        "request_data": {
            "source": {"type": "mysql", "url": m.url(), "server_id": 4343},
            "filter": {"include": [format!("{db}.*")]},
            "sink": {"type": "jsonl", "path": out.to_str().unwrap()},
        }
    }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["code"], 200);
    let id = r.json()["data"]["task_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("task-"), "{id}");
    wait_state(&d, port, &id, "running");
    let r = cdc(json!({"request_type": "list"}));
    let listed: Vec<String> = r.json()["data"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["task_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(listed, vec!["t".to_string(), id.clone()]);
    let r = cdc(json!({"request_type": "pause", "request_data": {"task_id": id}}));
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (200, json!(200)),
        "{}",
        r.text
    );
    let r = cdc(json!({"request_type": "get", "request_data": {"task_id": id}}));
    assert_eq!(r.json()["data"]["task"]["state"], "paused");
    let r = cdc(json!({"request_type": "pause", "request_data": {"task_id": id}}));
    assert_eq!(r.json()["code"], 200, "pausing a paused task is no error");
    let r = cdc(json!({"request_type": "resume", "request_data": {"task_id": id}}));
    assert_eq!(r.json()["code"], 200, "{}", r.text);
    let r = cdc(json!({"request_type": "delete", "request_data": {"task_id": id}}));
    assert_eq!(r.json()["code"], 200, "{}", r.text);
    let r = cdc(json!({"request_type": "get", "request_data": {"task_id": id}}));
    assert_eq!((r.status, r.json()["code"].clone()), (404, json!(404)));
    let r = cdc(json!({"request_type": "get", "request_data": {}}));
    assert_eq!(r.json()["code"], 400);
    assert!(
        r.json()["message"].as_str().unwrap().contains("task_id"),
        "{}",
        r.text
    );
    let r = cdc(json!({"request_type": "explode"}));
    assert_eq!(r.json()["code"], 400);
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn flow_control_paces_a_task_and_changes_while_it_runs() {
    let m = mariadb();
    let db = "api_thr";
    m.fresh_db(db).await;
    m.exec(&format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await;
    let (mut d, port) = daemon("api_thr", db);
    d.start();
    wait_api(&d, port);
    let out = d.dir.join("data").join("thr.jsonl");
    let def = json!({
        "id": "thr",
        "source": {"type": "mysql", "url": m.url(), "server_id": 4747},
        "filter": {"include": [format!("{db}.*")]},
        "sink": {"type": "jsonl", "path": out.to_str().unwrap()},
        "throttle": {"rows_per_second": 100},
    });
    let r = call(port, "POST", "/api/v1/tasks?start=true", &def.to_string());
    assert_eq!(r.status, 201, "{}", r.text);
    let v = wait_state(&d, port, "thr", "running");
    assert_eq!(v["progress"]["throttle"]["rows_per_second"], 100);
    // A new task starts at the binlog's end: the rows go in once it is
    // reading, or they are before its start.
    d.wait_log("reading binlog task=thr", Duration::from_secs(30));
    let count = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let wait_rows = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n}\n{}",
                count(),
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Six transactions of 100 rows at 100 rows/s: at least 5 s of waits.
    let insert = |from: u32| {
        let mut sql = String::new();
        for tx in 0..6 {
            let rows: Vec<String> = (0..100)
                .map(|i| format!("({})", from + tx * 100 + i))
                .collect();
            sql.push_str(&format!("INSERT INTO {db}.t VALUES {};", rows.join(", ")));
        }
        sql
    };
    let t0 = std::time::Instant::now();
    m.exec(&insert(0)).await;
    wait_rows(600);
    let paced = t0.elapsed();
    assert!(
        paced >= Duration::from_millis(4500),
        "paced at 100 rows/s: {paced:?}"
    );
    // Lifted while running: the next rows aren't held.
    let r = call(
        port,
        "PUT",
        "/api/v1/tasks/thr/throttle",
        r#"{"rows_per_second": 0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["progress"]["throttle"].is_null(), "{}", r.text);
    let r = call(port, "PUT", "/api/v1/tasks/thr/throttle", r#"{"rows": 5}"#);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        call(port, "GET", "/api/v1/tasks/thr", "").json()["state"],
        "running"
    );
    let stored = std::fs::read_to_string(d.dir.join("data/api-tasks/thr.json")).unwrap();
    assert!(stored.contains("\"rows_per_second\": 0"), "{stored}");
    let t1 = std::time::Instant::now();
    m.exec(&insert(1000)).await;
    wait_rows(1200);
    assert!(
        t1.elapsed() < paced,
        "unthrottled ({:?}) faster than throttled ({paced:?})",
        t1.elapsed()
    );
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_cli_drives_a_running_daemon() {
    let m = mariadb();
    let db = "api_cli";
    m.fresh_db(db).await;
    let (mut d, port) = daemon("api_cli", db);
    d.start();
    wait_api(&d, port);
    wait_state(&d, port, "t", "running");
    let api = format!("http://127.0.0.1:{port}");
    let cli = |args: &[&str], token: &str| {
        let out = std::process::Command::new(crate::support::BIN)
            .arg("task")
            .args(args)
            .env("TIDEMARK_API", &api)
            .env("TIDEMARK_API_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = cli(&["list"], TOKEN);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["ready"], TOKEN);
    assert!(ok, "ready: {err}");
    assert!(out.starts_with("t\trunning\tstream\tconfig\t"), "{out}");
    let (ok, out, _) = cli(&["pause", "t"], TOKEN);
    assert!(ok && out.contains("\"state\": \"paused\""), "{out}");
    let (ok, _, err) = cli(&["stop", "nope"], TOKEN);
    assert!(
        !ok && err.contains("no task \"nope\"") && err.contains("HTTP 404"),
        "{err}"
    );
    let (ok, _, err) = cli(&["resume", "t"], "wrong-token-0123456789");
    assert!(!ok && err.contains("bearer token is wrong"), "{err}");
    let (ok, out, err) = cli(&["throttle", "t", "--rows-per-second", "500"], TOKEN);
    assert!(ok, "{err}");
    assert!(out.contains("\"rows_per_second\": 500"), "{out}");
    let def = d.dir.join("def.json");
    std::fs::write(
        &def,
        json!({
            "id": "c1",
            "source": {"type": "mysql", "url": m.url(), "server_id": 4848},
            "filter": {"include": [format!("{db}.*")]},
            "sink": {"type": "jsonl", "path": d.dir.join("data/c1.jsonl").to_str().unwrap()},
        })
        .to_string(),
    )
    .unwrap();
    let (ok, out, err) = cli(
        &["create", "--file", def.to_str().unwrap(), "--start"],
        TOKEN,
    );
    assert!(ok && out.contains("\"task_id\": \"c1\""), "{out}{err}");
    wait_state(&d, port, "c1", "running");
    let (ok, _, err) = cli(&["delete", "t"], TOKEN);
    assert!(!ok && err.contains("config file"), "{err}");
    let (ok, _, err) = cli(&["delete", "c1"], TOKEN);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&["resume", "t"], TOKEN);
    assert!(ok, "{out}{err}");
    let (_, out, _) = cli(&["list", "--state", "paused"], TOKEN);
    assert_eq!(out, "", "nothing paused any more");
    assert!(d.stop().success(), "{}", d.log());
}

/// The items of a pre-check answer, by name: (status, detail, fix).
fn items(v: &Value) -> std::collections::BTreeMap<String, (String, String, String)> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|i| {
            let f = |k: &str| i[k].as_str().unwrap_or("").to_string();
            (f("name"), (f("status"), f("detail"), f("fix")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn precheck_and_connection_tests_name_what_fails_and_the_fix() {
    let (m, p) = (mariadb(), crate::support::postgres());
    let db = "api_pre";
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY); CREATE TABLE {db}.nokey (v INT)"
    ))
    .await;
    p.fresh_db("api_pre").await;
    p.exec(
        "api_pre",
        "CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE loose (v int)",
    )
    .await;
    p.fresh_db("api_pre_ro").await;
    p.exec(
        "api_pre_ro",
        "ALTER DATABASE api_pre_ro SET default_transaction_read_only = on",
    )
    .await;
    let (mut d, port) = daemon("api_pre", db);
    d.start();
    wait_api(&d, port);
    wait_state(&d, port, "t", "running");

    // The running MariaDB task: everything but the keyless table passes.
    let r = call(port, "POST", "/api/v1/tasks/t/precheck", "");
    assert_eq!(r.status, 200, "{}", r.text);
    let pre = &r.json()["precheck"];
    let got = items(pre);
    for name in [
        "source.connection",
        "source.log_bin",
        "source.binlog_format",
        "source.privileges",
        "source.server_id",
        "source.binlog_retention",
        "target.file",
    ] {
        assert_eq!(got[name].0, "pass", "{name}: {pre}");
    }
    assert_eq!(got["source.table_keys"].0, "warn", "{pre}");
    assert!(
        got["source.table_keys"].1.contains(&format!("{db}.nokey")),
        "{pre}"
    );
    assert!(!got["source.table_keys"].2.is_empty(), "a fix: {pre}");
    assert_ne!(pre["result"], "pass");

    // Connections that fail, each at its step.
    let create = |id: &str, url: &str| {
        let def = json!({
            "id": id,
            "source": {"type": "mysql", "url": url, "server_id": 4900 + id.len() as u64},
            "sink": {"type": "jsonl", "path": d.dir.join("data").join(format!("{id}.jsonl")).to_str().unwrap()},
        });
        let r = call(port, "POST", "/api/v1/tasks", &def.to_string());
        assert_eq!(r.status, 201, "{}", r.text);
    };
    let closed = free_port();
    create(
        "bad_pw",
        &m.url().replace("tidemark:tidemark@", "tidemark:wrong@"),
    );
    create("bad_dns", "mysql://u:p@no-such-host.invalid:3306");
    create("bad_tcpp", &format!("mysql://u:p@127.0.0.1:{closed}"));
    for (id, step) in [
        ("bad_pw", "auth:"),
        ("bad_dns", "dns:"),
        ("bad_tcpp", "tcp:"),
    ] {
        let r = call(
            port,
            "POST",
            &format!("/api/v1/tasks/{id}/test-connection"),
            "",
        );
        assert_eq!(r.status, 200, "{}", r.text);
        let c = &r.json()["connections"];
        assert_eq!(c["result"], "fail", "{id}: {c}");
        let (status, detail, fix) = &items(c)["source.connection"];
        assert_eq!(status, "fail");
        assert!(detail.starts_with(step), "{id}: {detail}");
        assert!(!fix.is_empty(), "{id}: a fix");
        assert!(!detail.contains(":wrong@"), "no password: {detail}");
    }

    // PostgreSQL: a published table without a key fails; a read-only
    // database target fails.
    let def = json!({
        "id": "pg",
        "source": {"type": "postgres", "url": p.url("api_pre"), "slot": "api_pre_slot", "publication": "api_pre_pub"},
        "sink": {"type": "postgres", "url": p.url("api_pre_ro")},
    });
    let r = call(port, "POST", "/api/v1/tasks", &def.to_string());
    assert_eq!(r.status, 201, "{}", r.text);
    let r = call(port, "POST", "/api/v1/tasks/pg/precheck", "");
    let pre = &r.json()["precheck"];
    let got = items(pre);
    assert_eq!(pre["result"], "fail", "{pre}");
    for name in [
        "source.connection",
        "source.version",
        "source.wal_level",
        "source.privileges",
        "source.slot",
        "target.connection",
    ] {
        assert_eq!(got[name].0, "pass", "{name}: {pre}");
    }
    assert_eq!(
        got["consistency.settings"].0, "pass",
        "one server on both sides: {pre}"
    );
    assert_eq!(got["source.replica_identity"].0, "fail", "{pre}");
    assert!(
        got["source.replica_identity"].1.contains("public.loose"),
        "{pre}"
    );
    assert!(!got["source.replica_identity"].1.contains("keyed"), "{pre}");
    assert_eq!(got["target.writable"].0, "fail", "{pre}");
    assert!(
        got["target.writable"].2.contains("writable primary"),
        "{pre}"
    );

    // Before a first start, a pre-check moves the task: a failed one holds
    // the start (unless forced), a passing one makes it ready.
    let v = call(port, "GET", "/api/v1/tasks/pg", "").json();
    assert_eq!(v["state"], "precheck_failed", "{v}");
    assert!(
        v["status"]["history"]
            .to_string()
            .contains("source.replica_identity"),
        "the failing items are the state's note: {v}"
    );
    let r = call(port, "POST", "/api/v1/tasks/pg/start", "");
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.json()["error"]["allowed"]
            .as_str()
            .unwrap()
            .contains("pre-check"),
        "{}",
        r.text
    );
    let r = call(port, "POST", "/api/v1/tasks/pg/start?force=true", "");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(port, "POST", "/api/v1/tasks/pg/stop", "");
    assert_eq!(r.status, 200, "{}", r.text);
    let ok = json!({
        "id": "okm",
        "source": {"type": "mysql", "url": m.url(), "server_id": 4990},
        "filter": {"include": [format!("{db}.*")]},
        "sink": {"type": "jsonl", "path": d.dir.join("data/okm.jsonl").to_str().unwrap()},
    });
    let r = call(port, "POST", "/api/v1/tasks", &ok.to_string());
    assert_eq!(r.status, 201, "{}", r.text);
    let r = call(port, "POST", "/api/v1/tasks/okm/precheck", "");
    assert_eq!(r.json()["precheck"]["result"], "warn", "{}", r.text);
    assert_eq!(
        call(port, "GET", "/api/v1/tasks/okm", "").json()["state"],
        "ready"
    );
    let r = call(port, "POST", "/api/v1/tasks/okm/start", "");
    assert_eq!(r.status, 200, "{}", r.text);
    wait_state(&d, port, "okm", "running");

    // A Kafka target: brokers reached, topic creation accepted (checked,
    // not done).
    let kafka = json!({
        "id": "kaf",
        "source": {"type": "mysql", "url": m.url(), "server_id": 4991},
        "filter": {"include": [format!("{db}.*")]},
        "sink": {"type": "kafka", "brokers": crate::support::tansu().addr(), "topic_prefix": "api_pre_kaf"},
    });
    let r = call(port, "POST", "/api/v1/tasks", &kafka.to_string());
    assert_eq!(r.status, 201, "{}", r.text);
    let r = call(port, "POST", "/api/v1/tasks/kaf/precheck", "");
    let pre = &r.json()["precheck"];
    let got = items(pre);
    assert_eq!(got["target.kafka"].0, "pass", "{pre}");
    assert_eq!(got["target.kafka_topics"].0, "pass", "{pre}");

    // Settings and objects, as the servers have them.
    let settings = |v: &Value| -> std::collections::BTreeMap<String, Value> {
        v["settings"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s["value"].clone()))
            .collect()
    };
    let r = call(port, "GET", "/api/v1/tasks/t/parameters", "");
    assert_eq!(r.status, 200, "{}", r.text);
    let src = settings(&r.json()["parameters"]["source"]);
    assert_eq!(src["binlog_format"], "ROW", "{}", r.text);
    assert!(
        src["version"].as_str().unwrap().contains("MariaDB"),
        "{}",
        r.text
    );
    assert!(
        r.json()["parameters"]["target"].is_null(),
        "a JSONL sink has no settings"
    );
    let r = call(port, "GET", "/api/v1/tasks/pg/parameters", "");
    let v = r.json();
    assert_eq!(
        settings(&v["parameters"]["source"])["wal_level"],
        "logical",
        "{v}"
    );
    assert_eq!(
        settings(&v["parameters"]["target"])["default_transaction_read_only"],
        "on",
        "{v}"
    );
    let r = call(port, "GET", &format!("/api/v1/tasks/t/objects?db={db}"), "");
    assert_eq!(r.status, 200, "{}", r.text);
    let dbs = r.json()["objects"]["databases"].clone();
    assert_eq!(dbs.as_array().unwrap().len(), 1, "{dbs}");
    let tables: Vec<(String, bool)> = dbs[0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["selected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tables,
        vec![("nokey".to_string(), true), ("t".to_string(), true)]
    );
    assert_eq!(
        dbs[0]["tables"][1]["columns"][0],
        json!({"name": "id", "type": "int(11)", "key": true})
    );
    let r = call(port, "GET", "/api/v1/tasks/pg/objects?db=public", "");
    let tables = r.json()["objects"]["databases"][0]["tables"].clone();
    assert_eq!(tables[0]["name"], "keyed", "{tables}");
    assert_eq!(tables[0]["columns"][0]["key"], true, "{tables}");
    assert_eq!(tables[1]["columns"][0]["key"], false, "{tables}");
    assert!(d.stop().success(), "{}", d.log());
}

#[test]
fn the_kubernetes_example_config_validates() {
    let yaml = std::fs::read_to_string(
        crate::support::repo_root().join("deploy/kubernetes/tidemark.yaml"),
    )
    .unwrap();
    // The ConfigMap's tidemark.toml: the block indented under it.
    let start = yaml.find("tidemark.toml: |\n").expect("the config") + "tidemark.toml: |\n".len();
    let toml: String = yaml[start..]
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let dir = crate::support::scratch("k8s_example");
    let path = dir.join("tidemark.toml");
    std::fs::write(&path, &toml).unwrap();
    let out = std::process::Command::new(crate::support::BIN)
        .args(["validate", "--config", path.to_str().unwrap()])
        .env("TIDEMARK_API_TOKEN", TOKEN)
        .env("SHOP_PASSWORD", "x")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{toml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_copies_streams_and_completes_at_the_cutover() {
    let p = crate::support::postgres();
    let db = "api_mig";
    p.fresh_db(db).await;
    p.exec(
        db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)",
    )
    .await;
    let m = mariadb();
    m.fresh_db("api_mig_m").await;
    let (mut d, port) = daemon("api_mig", "api_mig_m");
    d.start();
    wait_api(&d, port);
    let out = d.dir.join("data").join("mig.jsonl");
    let def = |kind: &str, mode: Option<&str>, sink: Value| {
        let mut v = json!({
            "id": "mig",
            "kind": kind,
            "source": {"type": "postgres", "url": p.url(db), "slot": "api_mig_slot", "publication": "api_mig_pub"},
            "sink": sink,
        });
        if let Some(m) = mode {
            v["mode"] = json!(m);
        }
        v.to_string()
    };
    let jsonl = json!({"type": "jsonl", "path": out.to_str().unwrap()});
    // What a kind needs.
    let r = call(
        port,
        "POST",
        "/api/v1/tasks",
        &def("dr", None, jsonl.clone()),
    );
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("kind")),
        "{}",
        r.text
    );
    let r = call(
        port,
        "POST",
        "/api/v1/tasks",
        &def("migration", Some("stream"), jsonl.clone()),
    );
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("mode")),
        "{}",
        r.text
    );
    // A migration: snapshot+stream by default.
    let r = call(
        port,
        "POST",
        "/api/v1/tasks?start=true",
        &def("migration", None, jsonl),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let v = wait_state(&d, port, "mig", "running");
    assert_eq!(
        (v["kind"].clone(), v["mode"].clone()),
        (json!("migration"), json!("snapshot+stream"))
    );
    let r = call(port, "GET", "/api/v1/tasks?kind=migration", "");
    assert_eq!(r.json()["tasks"][0]["id"], "mig");
    let lines = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got: Vec<Value> = std::fs::read_to_string(&out)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} lines\n{}",
                got.len(),
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    lines(2);
    p.exec(db, "INSERT INTO t VALUES (3)").await;
    let got = lines(3);
    assert_eq!(got[2]["after"]["id"], json!(3), "changes after the copy");
    // The cutover.
    let r = call(port, "POST", "/api/v1/tasks/mig/complete", "");
    assert_eq!(
        (r.status, r.json()["state"].clone()),
        (200, json!("completed")),
        "{}",
        r.text
    );
    let slots: i64 = p
        .client(db)
        .await
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'api_mig_slot'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "the slot is dropped at completion");
    assert!(d.stop().success(), "{}", d.log());
    d.start();
    wait_api(&d, port);
    wait_state(&d, port, "mig", "completed");
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn state_changes_reach_websocket_clients_and_the_webhook() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let m = mariadb();
    let db = "api_ev";
    m.fresh_db(db).await;
    let (hook_port, bodies) = webhook_receiver();
    let (task_hook_port, task_bodies) = webhook_receiver();
    let (mut d, port) = daemon_with(
        "api_ev",
        db,
        &format!("webhook = \"http://127.0.0.1:{hook_port}/hook\""),
    );
    d.start();
    wait_api(&d, port);
    wait_state(&d, port, "t", "running");
    // Without the token: refused.
    let url = format!("ws://127.0.0.1:{port}/api/v1/events?task=t");
    assert!(
        tokio_tungstenite::connect_async(url.as_str())
            .await
            .is_err()
    );
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the events socket");
    // The task's own webhook, set while it runs.
    let r = call(
        port,
        "PATCH",
        "/api/v1/tasks/t",
        &format!(r#"{{"notify": {{"webhook": "http://127.0.0.1:{task_hook_port}/t"}}}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        port,
        "PATCH",
        "/api/v1/tasks/t",
        r#"{"notify": {"webhook": "https://x/y"}}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let r = call(port, "POST", "/api/v1/tasks/t/pause", "");
    assert_eq!(r.status, 200, "{}", r.text);
    let (mut paused, mut progress) = (false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(paused && progress) {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("events in time")
            .expect("open")
            .expect("a message");
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert_eq!(v["task"], "t", "{v}");
        match v["type"].as_str() {
            Some("state") if v["state"] == "paused" => paused = true,
            Some("progress") => progress = true,
            _ => {}
        }
    }
    for (what, got) in [("daemon", &bodies), ("task", &task_bodies)] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !got
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.contains("\"state\":\"paused\""))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the {what} webhook got {:?}",
                got.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = bodies.lock().unwrap().clone();
        if got
            .iter()
            .any(|b| b.contains("\"state\":\"paused\"") && b.contains("\"task\":\"t\""))
        {
            assert!(
                got.iter().any(|b| b.contains("\"state\":\"stopping\"")),
                "{got:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "webhook got {got:?}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_task_can_drop_its_slot_and_its_target_positions() {
    let p = crate::support::postgres();
    let (db, dr) = ("api_del", "api_del_dr");
    p.fresh_db(db).await;
    p.fresh_db(dr).await;
    p.exec(
        db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)",
    )
    .await;
    let m = mariadb();
    m.fresh_db("api_del_m").await;
    let (mut d, port) = daemon("api_del", "api_del_m");
    d.start();
    wait_api(&d, port);
    let def = json!({
        "id": "del",
        "kind": "dr",
        "source": {"type": "postgres", "url": p.url(db), "slot": "api_del_slot", "publication": "api_del_pub"},
        "sink": {"type": "postgres", "url": p.url(dr), "meta_schema": "tm_api_del"},
    });
    let r = call(port, "POST", "/api/v1/tasks?start=true", &def.to_string());
    assert_eq!(r.status, 201, "{}", r.text);
    wait_state(&d, port, "del", "running");
    let target = p.client(dr).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = target
            .query_one(
                "SELECT count(*) FROM tm_api_del.apply_position WHERE task = 'del'",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Name and description change while it runs; the conflict policy
    // only while it's paused, and only for a database target.
    let r = call(
        port,
        "PATCH",
        "/api/v1/tasks/del",
        r#"{"name": "shop DR", "description": "to the standby site"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json()["name"].clone(), r.json()["state"].clone()),
        (json!("shop DR"), json!("running"))
    );
    let r = call(
        port,
        "PATCH",
        "/api/v1/tasks/del",
        r#"{"conflict": {"default": "ignore"}}"#,
    );
    assert_eq!(r.status, 409, "{}", r.text);
    let r = call(port, "POST", "/api/v1/tasks/del/pause", "");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        port,
        "PATCH",
        "/api/v1/tasks/del",
        r#"{"conflict": {"default": "sometimes"}}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.json()["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("conflict"),
        "{}",
        r.text
    );
    let r = call(
        port,
        "PATCH",
        "/api/v1/tasks/del",
        r#"{"conflict": {"default": "overwrite", "journal": true}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let stored = std::fs::read_to_string(d.dir.join("data/api-tasks/del.json")).unwrap();
    assert!(
        stored.contains("\"journal\": true") && stored.contains("shop DR"),
        "{stored}"
    );
    // The stored definition, modified, still reads: the task comes back.
    assert!(d.stop().success(), "{}", d.log());
    d.start();
    wait_api(&d, port);
    let v = wait_state(&d, port, "del", "paused");
    assert_eq!(v["definition"]["sink"]["conflict"]["journal"], true, "{v}");
    assert_eq!(v["name"], "shop DR");
    let r = call(port, "POST", "/api/v1/tasks/del/resume", "");
    assert_eq!(r.status, 200, "{}", r.text);
    wait_state(&d, port, "del", "running");

    // A row the target already has: an insert conflict, counted in the
    // task's progress and metrics.
    target
        .batch_execute("INSERT INTO public.t VALUES (5)")
        .await
        .unwrap();
    p.exec(db, "INSERT INTO t VALUES (5)").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = call(port, "GET", "/api/v1/tasks/del", "").json();
        if v["progress"]["conflicts"]["public.t"]["insert"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = call(port, "GET", "/metrics", "");
    assert!(
        r.text
            .contains("tidemark_conflicts_total{task=\"del\",table=\"public.t\",op=\"insert\"} 1"),
        "{}",
        r.text
    );
    let r = call(
        port,
        "DELETE",
        "/api/v1/tasks/del?drop_slot=true&drop_target_positions=true",
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["problems"], json!([]), "{}", r.text);
    let slots: i64 = p
        .client(db)
        .await
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'api_del_slot'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "the slot is dropped");
    let n: i64 = target
        .query_one(
            "SELECT count(*) FROM tm_api_del.apply_position WHERE task = 'del'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the target's position rows are gone");
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn running_tasks_are_prechecked_periodically_and_warnings_show_on_them() {
    let m = mariadb();
    let db = "api_per";
    m.fresh_db(db).await;
    m.exec(&format!("CREATE TABLE {db}.loose (v INT)")).await;
    let (mut d, port) = daemon_with("api_per", db, "precheck_interval_secs = 1");
    d.start();
    wait_api(&d, port);
    wait_state(&d, port, "t", "running");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = call(port, "GET", "/api/v1/tasks/t", "").json();
        let warned = v["precheck"]["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|i| i["name"] == "source.table_keys"));
        if warned {
            assert_eq!(v["precheck"]["result"], "warn", "{v}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d.stop().success(), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_speaks_tls_when_given_a_certificate() {
    let m = mariadb();
    let db = "api_tls";
    m.fresh_db(db).await;
    // The test servers' certificate (127.0.0.1, signed by the test CA).
    let tls = m.dir.join("tls");
    let (mut d, port) = daemon_with(
        "api_tls",
        db,
        &format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}",
            tls.join("server.crt").display().to_string(),
            tls.join("server.key").display().to_string()
        ),
    );
    d.start();
    wait_api(&d, port);
    let cli = |api: String, ca: Option<std::path::PathBuf>| {
        let mut c = std::process::Command::new(crate::support::BIN);
        c.args(["task", "list"])
            .env("TIDEMARK_API", api)
            .env("TIDEMARK_API_TOKEN", TOKEN);
        if let Some(ca) = ca {
            c.env("TIDEMARK_API_CA", ca);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = cli(
            format!("https://127.0.0.1:{port}"),
            Some(tls.join("ca.crt")),
        );
        if ok && out.starts_with("t\t") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{out}{err}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Without the CA: the certificate isn't trusted, and it says so.
    let (ok, _, err) = cli(format!("https://127.0.0.1:{port}"), None);
    assert!(!ok && err.contains("--ca-file"), "{err}");
    // Plain HTTP to the TLS port gets no answer.
    let (ok, _, _) = cli(format!("http://127.0.0.1:{port}"), None);
    assert!(!ok);
    assert!(d.stop().success(), "{}", d.log());
}

/// A webhook receiver on a free port: each request's body, kept.
fn webhook_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hook.local_addr().unwrap().port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in hook.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // The head, then Content-Length bytes of body.
            loop {
                let n = c.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        kept.lock().unwrap().push(body.to_string());
                        break;
                    }
                }
            }
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, bodies)
}

#[tokio::test(flavor = "multi_thread")]
async fn processing_rules_show_on_the_task_and_change_while_it_is_paused() {
    let m = mariadb();
    let db = "api_rules";
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, region VARCHAR(4) NULL, email VARCHAR(40) NOT NULL)"
    ))
    .await;
    let (mut d, port) = daemon("api_rules", db);
    d.env.push(("API_TEST_SOURCE_URL".into(), m.url()));
    d.start();
    wait_api(&d, port);
    let out = d.dir.join("data").join("r1.jsonl");
    let rules = |region: &str| {
        json!([{
            "tables": [format!("{db}.t")],
            "filter": format!("row.region.startsWith(\"{region}\")"),
            "on_error": "skip",
            "mask": {"email": "hash"},
            "mask_secret": "api-test-mask-secret-0123",
        }])
    };
    let def = json!({
        "id": "r1",
        "source": {"type": "mysql", "url": "${API_TEST_SOURCE_URL}", "server_id": 4711},
        "filter": {"include": [format!("{db}.*")]},
        "sink": {"type": "jsonl", "path": out},
        "rules": rules("EU"),
    });
    let r = call(port, "POST", "/api/v1/tasks?start=true", &def.to_string());
    assert_eq!(r.status, 201, "{}", r.text);
    wait_state(&d, port, "r1", "running");
    d.wait_log("reading binlog", Duration::from_secs(30));
    // The view shows the rules, the secret redacted.
    let v = call(port, "GET", "/api/v1/tasks/r1", "").json();
    let shown = &v["definition"]["rules"][0];
    assert_eq!(shown["filter"], "row.region.startsWith(\"EU\")", "{v}");
    assert_eq!(shown["mask_secret"], "***", "{v}");
    m.exec(&format!(
        "INSERT INTO {db}.t VALUES (1, 'EU', 'one@clear.example'), (2, 'US', 'two@clear.example')"
    ))
    .await;
    let ids = |n: usize| -> Vec<i64> {
        let mut got = Vec::new();
        crate::support::wait_until(Duration::from_secs(30), "the task's output", || {
            got = crate::support::read_lines(&out)
                .iter()
                .map(|l| l["after"]["id"].as_i64().unwrap_or(0))
                .collect();
            got.len() >= n
        });
        got
    };
    assert_eq!(ids(1), [1]);
    // Rules don't change under a running task.
    let patch = json!({ "rules": rules("US") }).to_string();
    let r = call(port, "PATCH", "/api/v1/tasks/r1", &patch);
    assert_eq!(r.status, 409, "{}", r.text);
    let r = call(port, "POST", "/api/v1/tasks/r1/pause", "");
    assert_eq!(r.status, 200, "{}", r.text);
    wait_state(&d, port, "r1", "paused");
    // A broken rule is refused, naming the field.
    let bad = json!({ "rules": [{"tables": ["a.b"], "filter": "row.region =="}] }).to_string();
    let r = call(port, "PATCH", "/api/v1/tasks/r1", &bad);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["field"], "rules[0].filter", "{}", r.text);
    let r = call(port, "PATCH", "/api/v1/tasks/r1", &patch);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["definition"]["rules"][0]["filter"],
        "row.region.startsWith(\"US\")"
    );
    // Row 5 has no region: the filter fails on it, and it is skipped.
    m.exec(&format!(
        "INSERT INTO {db}.t VALUES (3, 'EU', 'three@clear.example'), (4, 'US', 'four@clear.example'), (5, NULL, 'five@clear.example')"
    ))
    .await;
    let r = call(port, "POST", "/api/v1/tasks/r1/resume", "");
    assert_eq!(r.status, 200, "{}", r.text);
    // Rows already written stay; the new rows follow the new rule.
    assert_eq!(ids(2), [1, 4]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("@clear.example"), "{text}");
    // The change survives a restart of the daemon.
    let stored = std::fs::read_to_string(d.dir.join("data/api-tasks/r1.json")).unwrap();
    assert!(
        stored.contains("row.region.startsWith(\\\"US\\\")"),
        "{stored}"
    );
    crate::support::wait_until(
        Duration::from_secs(15),
        "the filter error in the metrics",
        || {
            call(port, "GET", "/metrics", "")
                .text
                .contains("tidemark_rule_filter_errors_total{task=\"r1\"} 1")
        },
    );
    assert!(d.stop().success(), "{}", d.log());
}
