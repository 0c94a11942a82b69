//! Control through the Rust API: modify a paused task, refused requests
//! with clear errors, and a pause that a stalled sink can't hold up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark::config::{Config, FilterConfig};
use tidemark::event::json::JsonOptions;
use tidemark::store::FileOffsetStore;
use tidemark::task::{ControlError, Supervisor, TaskChange, TaskState};

use super::{mysql_task, settings, wait_lines, wait_streaming};
use crate::support::workload::{Change, Workload};
use crate::support::{mariadb, private_tansu, scratch, server_id};

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_task_takes_a_new_filter_and_format_from_its_position() {
    let db = "rt_modify";
    let m = mariadb();
    m.fresh_db(db).await;
    m.exec(&format!(
        "CREATE TABLE {db}.a (id INT PRIMARY KEY); CREATE TABLE {db}.b (id INT PRIMARY KEY);"
    ))
    .await;
    let dir = scratch("rt_modify");
    let data = dir.join("data");
    let out = dir.join("out.jsonl");
    let mut cfg = mysql_task("rt_modify", &m.url(), db, &out, &data);
    cfg.filter.include = vec![format!("{db}.a")];
    let sup = Supervisor::new(
        Arc::new(FileOffsetStore::open(&data).unwrap()),
        settings(&data),
    );
    let t = sup.add(cfg, true).unwrap();
    wait_streaming(&t).await;
    // b's changes before a(9) are before the position the pause commits
    // (the task delivered a(9), after them).
    m.exec(&format!(
        "INSERT INTO {db}.a VALUES (1); INSERT INTO {db}.b VALUES (1); INSERT INTO {db}.a VALUES (2); INSERT INTO {db}.b VALUES (2); INSERT INTO {db}.a VALUES (9);"
    ))
    .await;
    wait_lines(&out, 3, &t, Duration::from_secs(30)).await;

    let change = TaskChange {
        filter: Some(FilterConfig {
            include: vec![format!("{db}.*")],
            exclude: vec![],
        }),
        format: Some(JsonOptions {
            transaction_metadata: Some(false),
            ..JsonOptions::default()
        }),
        ..TaskChange::default()
    };
    // Not while running: the error names the states that allow it.
    match t.modify(change.clone()).await {
        Err(ControlError::NotAllowed { state, allowed, .. }) => {
            assert_eq!(state, TaskState::Running);
            assert!(allowed.contains("paused"), "{allowed}");
        }
        other => panic!("modify while running: {other:?}"),
    }
    t.pause().await.unwrap();
    // Validated first, with the key path.
    let bad = TaskChange {
        filter: Some(FilterConfig {
            include: vec!["nodot".into()],
            exclude: vec![],
        }),
        ..TaskChange::default()
    };
    match t.modify(bad).await {
        Err(ControlError::Invalid { key, message, .. }) => {
            assert_eq!(key, "filter.include[0]");
            assert!(message.contains("db.table"), "{message}");
        }
        other => panic!("invalid modify: {other:?}"),
    }
    // A refused request changes nothing.
    assert_eq!(t.config().filter.include, vec![format!("{db}.a")]);
    t.modify(change).await.unwrap();
    // Written while paused: after the committed position, so captured.
    m.exec(&format!(
        "INSERT INTO {db}.a VALUES (3); INSERT INTO {db}.b VALUES (3);"
    ))
    .await;
    t.resume().await.unwrap();
    m.exec(&format!("INSERT INTO {db}.b VALUES (4);")).await;
    let lines = wait_lines(&out, 6, &t, Duration::from_secs(30)).await;
    let got: Vec<(String, i64, bool)> = lines
        .iter()
        .map(|l| {
            (
                l["source"]["table"].as_str().unwrap().to_string(),
                l["after"]["id"].as_i64().unwrap(),
                l.get("transaction").is_some_and(|t| !t.is_null()),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), 1, true),
            ("a".into(), 2, true),
            ("a".into(), 9, true),
            ("a".into(), 3, false),
            ("b".into(), 3, false),
            ("b".into(), 4, false),
        ]
    );
    let s = t.status();
    assert!(
        s.history
            .iter()
            .any(|h| h.note.as_deref() == Some("modified: filter, format")),
        "{:?}",
        s.history
    );
    // Resume of a running task is refused; stop, then start again.
    assert!(matches!(
        t.resume().await,
        Err(ControlError::NotAllowed { .. })
    ));
    t.stop().await.unwrap();
    assert_eq!(t.state(), TaskState::Stopped);
    t.start().await.unwrap();
    t.wait_for(Duration::from_secs(30), |s| s.state == TaskState::Running)
        .await
        .unwrap();
    assert!(sup.shutdown(Duration::from_secs(20)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_is_not_held_up_by_a_hung_broker_and_resumes_exactly() {
    let db = "rt_hung";
    let m = mariadb();
    m.fresh_db(db).await;
    let mut load = Workload::new(&m.url(), db, 17).await;
    let b = private_tansu("tansu-runtime", 19094);
    let p = crate::kafka::prefix("rt-hung");
    let dir = scratch("rt_hung");
    let data = dir.join("data");
    let toml = format!(
        r#"[daemon]
data_dir = "{data}"
[[tasks]]
id = "rt_hung"
[tasks.source]
type = "mysql"
url = "{url}"
server_id = {sid}
heartbeat_secs = 1
[tasks.filter]
include = ["{db}.*"]
[tasks.sink]
type = "kafka"
brokers = "{brokers}"
topic_prefix = "{p}"
schemas = false
topic_creation = {{ partitions = 3 }}
"#,
        data = data.display(),
        url = m.url(),
        sid = server_id("rt_hung"),
        brokers = b.addr(),
    );
    let cfg = Config::parse(&toml, "test").unwrap().tasks.remove(0);
    let mut s = settings(&data);
    s.drain_timeout = Duration::from_secs(3);
    let sup = Supervisor::new(Arc::new(FileOffsetStore::open(&data).unwrap()), s);
    let t = sup.add(cfg, true).unwrap();
    wait_streaming(&t).await;
    let mut expected = load.run(200).await;
    let written = |t: &tidemark::task::TaskHandle| t.progress().events_written as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while written(&t) < expected.len() {
        assert!(Instant::now() < deadline, "{:?}", t.progress());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    b.pause();
    expected.extend(load.run(200).await);
    // The sink holds events the broker can't acknowledge.
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.progress().events_read <= t.progress().events_written {
        assert!(Instant::now() < deadline, "{:?}", t.progress());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    t.pause().await.unwrap();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the pause waited {took:?} on a hung broker (drain timeout 3 s)"
    );
    let s = t.status();
    assert_eq!(s.state, TaskState::Paused);
    let note = s
        .history
        .back()
        .and_then(|h| h.note.clone())
        .unwrap_or_default();
    assert!(note.contains("abandoned"), "{note}");
    eprintln!("pause with a hung broker took {took:?}: {note}");

    b.resume();
    t.resume().await.unwrap();
    expected.extend(load.run(100).await);
    let topics = vec![format!("{p}.{db}.a"), format!("{p}.{db}.b")];
    let total = expected.len();
    let recs = crate::kafka::consume_owned(b.addr(), topics, total, Duration::from_secs(120)).await;
    // Per key, the exact sequence of changes; no duplicates anywhere.
    let mut got: BTreeMap<(String, i64), Vec<(String, i64)>> = BTreeMap::new();
    let mut values = 0;
    for r in &recs {
        if r.value.is_none() {
            continue; // tombstone after a delete
        }
        values += 1;
        let l = r.json();
        let op = l["op"].as_str().unwrap().to_string();
        let image = if op == "d" { &l["before"] } else { &l["after"] };
        got.entry((
            l["source"]["table"].as_str().unwrap().to_string(),
            image["id"].as_i64().unwrap(),
        ))
        .or_default()
        .push((op, image["v"].as_i64().unwrap()));
    }
    let mut want: BTreeMap<(String, i64), Vec<(String, i64)>> = BTreeMap::new();
    for (op, table, id, v) in &expected as &Vec<Change> {
        want.entry((table.clone(), *id))
            .or_default()
            .push((op.clone(), *v));
    }
    assert_eq!(values, expected.len(), "duplicates or losses");
    assert!(got == want, "per-key sequences differ");
    assert!(sup.shutdown(Duration::from_secs(20)).await.is_empty());
}
