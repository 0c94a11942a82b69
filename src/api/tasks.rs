//! `/api/v1/tasks`: list, create (one or a batch), get, modify, delete,
//! and the lifecycle requests start / pause / resume / stop.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::persist::Stored;
use super::{Api, ApiError};
use crate::config::{DdlConfig, FilterConfig, SinkConfig, SourceConfig, TaskConfig, redact_url};
use crate::event::json::JsonOptions;
use crate::task::{PrecheckPhase, TaskChange, TaskHandle};

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/tasks", get(list).post(create))
        .route("/tasks/{id}", get(get_one).patch(modify).delete(delete))
        .route("/tasks/{id}/throttle", axum::routing::put(throttle))
        .route("/tasks/{id}/precheck", post(precheck))
        .route("/tasks/{id}/snapshot", post(snapshot))
        .route("/tasks/{id}/parameters", get(parameters))
        .route("/tasks/{id}/objects", get(objects))
        .route("/tasks/{id}/test-connection", post(test_connection))
        .route("/tasks/{id}/{action}", post(action))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    mode: Option<String>,
    kind: Option<String>,
}

/// One line per task.
pub(super) fn summary(api: &Api, t: &TaskHandle) -> Value {
    let status = t.status();
    let progress = t.progress();
    let cfg = t.config();
    json!({
        "id": t.id(),
        "origin": api.origin(t.id()),
        "name": cfg.name,
        "kind": cfg.kind.name(),
        "mode": cfg.mode.name(),
        "state": status.state.name(),
        "summary": status.summary(),
        "since_ms": status.since_ms,
        "events_written": progress.events_written,
        "lag_seconds": progress.lag_seconds,
    })
}

async fn list(
    State(api): State<Arc<Api>>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    if let Some(s) = &q.state
        && !STATE_NAMES.contains(&s.as_str())
    {
        return Err(ApiError::field(
            "state",
            format!(
                "unknown state {s:?}, expected one of {}",
                STATE_NAMES.join(", ")
            ),
        ));
    }
    if let Some(m) = &q.mode
        && !["stream", "snapshot+stream", "snapshot"].contains(&m.as_str())
    {
        return Err(ApiError::field(
            "mode",
            format!("unknown mode {m:?}, expected stream, snapshot+stream or snapshot"),
        ));
    }
    if let Some(k) = &q.kind
        && !["sync", "migration", "dr"].contains(&k.as_str())
    {
        return Err(ApiError::field(
            "kind",
            format!("unknown kind {k:?}, expected sync, migration or dr"),
        ));
    }
    let tasks: Vec<Value> = api
        .supervisor
        .tasks()
        .iter()
        .filter(|t| {
            q.kind
                .as_deref()
                .is_none_or(|k| t.config().kind.name() == k)
        })
        .filter(|t| q.state.as_deref().is_none_or(|s| t.state().name() == s))
        .filter(|t| {
            q.mode
                .as_deref()
                .is_none_or(|m| t.config().mode.name() == m)
        })
        .map(|t| summary(&api, t))
        .collect();
    Ok(Json(json!({ "tasks": tasks })).into_response())
}

pub(super) const STATE_NAMES: [&str; 11] = [
    "created",
    "prechecking",
    "precheck_failed",
    "ready",
    "starting",
    "running",
    "paused",
    "stopping",
    "stopped",
    "completed",
    "failed",
];

/// The whole view of a task: definition (secrets redacted), state and
/// history, progress.
pub(super) fn view(api: &Api, t: &TaskHandle) -> Value {
    let status = t.status();
    let cfg = t.config();
    let mut definition = describe(&cfg);
    if let Some(stored) = api.store.get(t.id()) {
        let mut d = stored.definition.clone();
        redact(&mut d, None);
        definition = d;
    }
    // The last pre-check: when, the result, what didn't pass.
    let precheck = api
        .prechecks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(t.id())
        .map(|(at, r)| {
            let warnings: Vec<&crate::precheck::Item> = r
                .items
                .iter()
                .filter(|i| i.status != crate::precheck::Status::Pass)
                .collect();
            json!({"at_ms": at, "result": r.result, "warnings": warnings})
        });
    json!({
        "id": t.id(),
        "origin": api.origin(t.id()),
        "name": cfg.name,
        "description": cfg.description,
        "kind": cfg.kind.name(),
        "mode": cfg.mode.name(),
        "state": status.state.name(),
        "summary": status.summary(),
        "precheck": precheck,
        "definition": definition,
        "status": status,
        "progress": t.progress(),
    })
}

async fn get_one(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = task(&api, &id)?;
    Ok(Json(view(&api, &t)).into_response())
}

#[derive(Deserialize)]
struct CreateQuery {
    /// Start the tasks at once (default: created, waiting for a start).
    #[serde(default)]
    start: bool,
}

async fn create(
    State(api): State<Arc<Api>>,
    Query(q): Query<CreateQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::field("(body)", format!("not JSON: {e}")))?;
    let batch = value.is_array();
    let defs = match value {
        Value::Array(a) => a,
        v => vec![v],
    };
    // Every definition is checked before any is added.
    let mut parsed = Vec::with_capacity(defs.len());
    for (i, def) in defs.into_iter().enumerate() {
        let at = |k: &str| {
            if batch {
                format!("[{i}].{k}")
            } else {
                k.to_string()
            }
        };
        let (def, cfg) =
            parse_definition(&api, def).map_err(|(k, m)| ApiError::field(at(&k), m))?;
        parsed.push((def, cfg));
    }
    let mut created = Vec::new();
    for (def, cfg) in parsed {
        let id = cfg.id.clone();
        add(&api, def, cfg, q.start)?;
        created.push(id);
    }
    let body = if batch {
        json!({ "task_ids": created })
    } else {
        json!({ "task_id": created.first() })
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A definition checked on its own: an id given when absent, paths inside
/// the allowed directories, the config's own validation. Returns the
/// definition as stored (with its id) and the config.
pub(super) fn parse_definition(
    api: &Api,
    mut def: Value,
) -> Result<(Value, TaskConfig), (String, String)> {
    let Some(obj) = def.as_object_mut() else {
        return Err((
            "(body)".into(),
            "expected a task definition: a JSON object with the keys of a [[tasks]] entry".into(),
        ));
    };
    if !obj.contains_key("id") {
        obj.insert("id".into(), Value::String(new_id()));
    }
    check_paths(&def, &api.store.allowed_dirs(), "")?;
    let mut cfg = TaskConfig::from_json(&def.to_string())?;
    cfg.resolve(&api.store.data_dir());
    cfg.validate()?;
    if api.supervisor.task(&cfg.id).is_some() {
        return Err(("id".into(), format!("task {:?} already exists", cfg.id)));
    }
    Ok((def, cfg))
}

/// Registers a parsed task, stored first (a task that can't be stored
/// isn't added).
pub(super) fn add(api: &Api, def: Value, cfg: TaskConfig, start: bool) -> Result<(), ApiError> {
    let id = cfg.id.clone();
    let stored = Stored {
        definition: def,
        desired: if start { "running" } else { "created" }.into(),
    };
    api.store.save(&id, &stored).map_err(stored_error(&id))?;
    if let Err(e) = api.supervisor.add(cfg, start) {
        let _ = api.store.remove(&id);
        return Err(e.into());
    }
    Ok(())
}

/// The task `id`, or a 404.
fn task(api: &Api, id: &str) -> Result<TaskHandle, ApiError> {
    api.supervisor
        .task(id)
        .ok_or_else(|| ApiError::not_found(id))
}

/// A stored definition that couldn't be written: a 500 naming the task.
fn stored_error(id: &str) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    move |e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing task {id}: {e}"),
        )
    }
}

fn new_id() -> String {
    let n = crate::store::now_ms() as u64 ^ (u64::from(std::process::id()) << 40);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&n, &mut h);
    std::hash::Hash::hash(&std::time::Instant::now(), &mut h);
    format!("task-{:08x}", std::hash::Hasher::finish(&h) as u32)
}

/// Files a definition names (`path`, `*_file`, `*_dir` keys) must be
/// inside the allowed directories: a task created over the API reads and
/// writes nothing else.
fn check_paths(
    v: &Value,
    allowed: &[std::path::PathBuf],
    at: &str,
) -> Result<(), (String, String)> {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                if let Value::String(s) = x
                    && (k == "path" || k.ends_with("_file") || k.ends_with("_dir"))
                    && s != "-"
                {
                    let p = std::path::Path::new(s);
                    let inside = p.is_absolute()
                        && !p.components().any(|c| c == std::path::Component::ParentDir)
                        && allowed.iter().any(|d| p.starts_with(d));
                    if !inside {
                        return Err((
                            key,
                            format!(
                                "{s:?} is outside the directories tasks created over the API may use ({}): give an absolute path inside one, or set daemon.api.allowed_dirs",
                                allowed
                                    .iter()
                                    .map(|d| d.display().to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
                check_paths(x, allowed, &key)?;
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(|x| check_paths(x, allowed, at)),
        _ => Ok(()),
    }
}

/// Secrets out: URLs' passwords, and values of keys that name a secret.
pub(super) fn redact(v: &mut Value, key: Option<&str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                redact(x, Some(k));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, key)),
        Value::String(s) => {
            let k = key.unwrap_or_default().to_ascii_lowercase();
            if k == "url" || k.ends_with("_url") {
                *s = redact_url(s);
            } else if ["password", "secret", "token", "sasl"]
                .iter()
                .any(|w| k.contains(w))
            {
                *s = "***".into();
            }
        }
        _ => {}
    }
}

/// A config file task's definition, as far as it tells without secrets.
fn describe(cfg: &TaskConfig) -> Value {
    let source = match &cfg.source {
        SourceConfig::Mysql(m) => json!({"type": "mysql", "url": redact_url(&m.url)}),
        SourceConfig::Postgres(p) => json!({"type": "postgres", "url": redact_url(&p.url)}),
    };
    let sink = match &cfg.sink {
        SinkConfig::Jsonl(j) => json!({"type": "jsonl", "path": j.path}),
        SinkConfig::Kafka(k) => json!({"type": "kafka", "brokers": k.brokers}),
        SinkConfig::Mysql(d) => json!({"type": "mysql", "url": redact_url(&d.url)}),
        SinkConfig::Postgres(d) => json!({"type": "postgres", "url": redact_url(&d.url)}),
    };
    json!({
        "id": cfg.id,
        "kind": cfg.kind.name(),
        "mode": cfg.mode.name(),
        "source": source,
        "filter": {"include": cfg.filter.include, "exclude": cfg.filter.exclude},
        "sink": sink,
        "rules": rules_view(&cfg.rules),
    })
}

/// The processing rules as a view shows them: `mask_secret` redacted.
fn rules_view(rules: &[crate::config::rules::RuleConfig]) -> Value {
    let mut v = serde_json::to_value(rules).unwrap_or_default();
    redact(&mut v, None);
    v
}

/// What a modify may change (while the task is created, paused, stopped
/// or failed).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Modify {
    filter: Option<FilterConfig>,
    ddl: Option<DdlConfig>,
    format: Option<JsonOptions>,
    conflict: Option<crate::config::ConflictConfig>,
    name: Option<String>,
    description: Option<String>,
    notify: Option<crate::config::NotifyConfig>,
    rules: Option<Vec<crate::config::rules::RuleConfig>>,
}

async fn modify(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let t = task(&api, &id)?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let m: Modify = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        ApiError::field(
            e.path().to_string(),
            format!(
                "{} (a modify takes filter, ddl, format, conflict, rules, name, description and notify)",
                e.inner()
            ),
        )
    })?;
    let change = TaskChange {
        filter: m.filter,
        ddl: m.ddl,
        format: m.format,
        conflict: m.conflict,
        name: m.name,
        description: m.description,
        notify: m.notify,
        rules: m.rules,
    };
    t.modify(change).await?;
    // The stored definition follows (the task comes back modified).
    if let Some(mut stored) = api.store.get(&id) {
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        if let (Some(def), Some(changes)) = (stored.definition.as_object_mut(), body.as_object()) {
            for (k, v) in changes {
                if k == "conflict" {
                    // The conflict policy is the sink's.
                    if let Some(sink) = def.get_mut("sink").and_then(Value::as_object_mut) {
                        sink.insert(k.clone(), v.clone());
                    }
                } else {
                    def.insert(k.clone(), v.clone());
                }
            }
        }
        api.store.save(&id, &stored).map_err(stored_error(&id))?;
    }
    Ok(Json(view(&api, &t)).into_response())
}

async fn throttle(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let t = task(&api, &id)?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let limits: crate::config::ThrottleConfig = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| {
            ApiError::field(
                e.path().to_string(),
                format!(
                    "{} (expected {{\"rows_per_second\": n, \"bytes_per_second\": n}}, 0 = no limit)",
                    e.inner()
                ),
            )
        })?;
    t.throttle(limits.rows_per_second, limits.bytes_per_second);
    if let Some(mut stored) = api.store.get(&id) {
        if let Some(def) = stored.definition.as_object_mut() {
            def.insert("throttle".into(), json!(limits));
        }
        api.store.save(&id, &stored).map_err(stored_error(&id))?;
    }
    Ok(Json(view(&api, &t)).into_response())
}

/// Runs every pre-check item against the task's servers (read-only).
async fn precheck(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = task(&api, &id)?;
    let progress = t.progress();
    let facts = crate::precheck::TaskFacts {
        running: t.state() == crate::task::TaskState::Running,
        lag_seconds: progress.lag_seconds,
        committed: progress.committed_position.clone(),
    };
    t.precheck_phase(PrecheckPhase::Started).await?;
    let report = crate::precheck::run(&t.config(), &facts).await;
    let phase = if report.result == crate::precheck::Status::Fail {
        let failing: Vec<String> = report
            .items
            .iter()
            .filter(|i| i.status == crate::precheck::Status::Fail)
            .map(|i| format!("{}: {}", i.name, i.detail))
            .collect();
        PrecheckPhase::Failed(failing.join("; "))
    } else {
        PrecheckPhase::Passed
    };
    t.precheck_phase(phase).await?;
    api.record_precheck(&id, report.clone());
    Ok(Json(json!({ "task_id": id, "precheck": report })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotRequest {
    tables: Vec<String>,
}

/// Copies tables again while the task streams (an incremental snapshot),
/// or at its next start when it isn't running.
async fn snapshot(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let t = task(&api, &id)?;
    let req: SnapshotRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::field(
            "tables",
            format!("expected {{\"tables\": [\"db.table\", …]}}: {e}"),
        )
    })?;
    if req.tables.is_empty() {
        return Err(ApiError::field(
            "tables",
            "name at least one table (db.table)",
        ));
    }
    t.snapshot_tables(req.tables).await?;
    Ok(Json(view(&api, &t)).into_response())
}

/// The source's and the database target's settings that matter.
async fn parameters(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = task(&api, &id)?;
    let v = crate::precheck::inspect::parameters(&t.config()).await;
    Ok(Json(json!({ "task_id": id, "parameters": v })).into_response())
}

#[derive(Deserialize)]
struct ObjectsQuery {
    /// One database (MySQL) or schema (PostgreSQL).
    db: Option<String>,
}

/// The source's databases, tables and columns, each table marked
/// `selected` by the task's filter.
async fn objects(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(q): Query<ObjectsQuery>,
) -> Result<Response, ApiError> {
    let t = task(&api, &id)?;
    let v = crate::precheck::inspect::objects(&t.config(), q.db.as_deref())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("reading the source's catalog: {e}"),
            )
        })?;
    Ok(Json(json!({ "task_id": id, "objects": v })).into_response())
}

/// Tries the source's and the target's connections, step by step.
async fn test_connection(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = task(&api, &id)?;
    let report = crate::precheck::connections(&t.config()).await;
    Ok(Json(json!({ "task_id": id, "connections": report })).into_response())
}

#[derive(Deserialize, Default)]
pub(super) struct DeleteQuery {
    /// Drop the PostgreSQL source's replication slot (it keeps WAL on
    /// the server until dropped).
    #[serde(default)]
    drop_slot: bool,
    /// Delete the task's position rows on a database target.
    #[serde(default)]
    drop_target_positions: bool,
}

async fn delete(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    let cfg = task(&api, &id)?.config();
    remove(&api, &id).await?;
    let mut done = vec![format!(
        "task {id} deleted; its committed position forgotten"
    )];
    let mut problems = Vec::new();
    if q.drop_slot {
        match &cfg.source {
            crate::config::SourceConfig::Postgres(p) => {
                match crate::source::postgres::drop_slot(p, &id, false).await {
                    Ok(m) => done.push(m),
                    Err(e) => {
                        problems.push(format!("dropping the slot: {}", crate::error::chain(&e)))
                    }
                }
            }
            _ => problems.push("drop_slot: the source is not PostgreSQL (no slot)".into()),
        }
    }
    if q.drop_target_positions {
        let engine = match &cfg.sink {
            SinkConfig::Mysql(d) => Some((crate::sink::db::Engine::Mysql, d)),
            SinkConfig::Postgres(d) => Some((crate::sink::db::Engine::Postgres, d)),
            _ => None,
        };
        match engine {
            Some((engine, d)) => match crate::sink::db::forget_task(engine, d, &id).await {
                Ok(m) => done.push(m),
                Err(e) => problems.push(format!("deleting the target's position rows: {e}")),
            },
            None => {
                problems.push("drop_target_positions: the sink is not a database target".into())
            }
        }
    }
    Ok(
        Json(json!({ "task_id": id, "deleted": true, "done": done, "problems": problems }))
            .into_response(),
    )
}

/// Stops (draining) and removes an API task; its stored definition goes.
/// Its positions stay in the offset store, and a PostgreSQL slot stays
/// (`tidemark slot drop` frees it).
pub(super) async fn remove(api: &Api, id: &str) -> Result<(), ApiError> {
    let t = task(api, id)?;
    if api.origin(id) == "config" {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "task {id} is defined in the config file: remove it there (the API controls it but doesn't delete it)"
            ),
            field: None,
            allowed: None,
        });
    }
    if !t.state().is_idle() {
        t.stop().await?;
    }
    api.supervisor.remove(id).await?;
    api.supervisor.forget(id).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "forgetting the position of {id}: {}",
                crate::error::chain(&e)
            ),
        )
    })?;
    api.store.remove(id).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("removing the stored definition of {id}: {e}"),
        )
    })?;
    Ok(())
}

#[derive(Deserialize, Default)]
struct ActionQuery {
    /// `start` even after a failed pre-check.
    #[serde(default)]
    force: bool,
}

async fn action(
    State(api): State<Arc<Api>>,
    Path((id, action)): Path<(String, String)>,
    Query(q): Query<ActionQuery>,
) -> Result<Response, ApiError> {
    let t = task(&api, &id)?;
    if action == "start" && q.force {
        t.force_start().await?;
        api.store.set_desired(t.id(), "running").map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the state of task {}: {e}", t.id()),
            )
        })?;
        return Ok(Json(view(&api, &t)).into_response());
    }
    control(&api, &t, &action).await?;
    Ok(Json(view(&api, &t)).into_response())
}

/// start / pause / resume / stop, recorded as the task's desired state.
pub(super) async fn control(api: &Api, t: &TaskHandle, action: &str) -> Result<(), ApiError> {
    let desired = match action {
        "start" => {
            t.start().await?;
            "running"
        }
        "pause" => {
            t.pause().await?;
            "paused"
        }
        "resume" => {
            t.resume().await?;
            "running"
        }
        "stop" => {
            t.stop().await?;
            "stopped"
        }
        "complete" => {
            t.complete().await?;
            "completed"
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}: start, pause, resume, stop or complete"),
            ));
        }
    };
    api.store.set_desired(t.id(), desired).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the state of task {}: {e}", t.id()),
        )
    })?;
    Ok(())
}

/// Adds the stored API tasks to the supervisor, each in the state it was
/// left in. Returns what couldn't be restored, as messages (a definition
/// that no longer parses, an id the config file now uses).
pub fn restore(
    supervisor: &crate::task::Supervisor,
    store: &super::persist::ApiTasks,
    config_tasks: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, stored) in store.load() {
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("task {id}: can't read its stored definition: {e}"));
                continue;
            }
        };
        if config_tasks.contains(&id) {
            problems.push(format!(
                "task {id} is defined in the config file and was created over the API: the config file's runs; delete the API one (DELETE /api/v1/tasks/{id} is refused while the config defines it: remove {} by hand)",
                store.data_dir().join("api-tasks").join(format!("{id}.json")).display()
            ));
            continue;
        }
        let cfg = TaskConfig::from_json(&stored.definition.to_string()).and_then(|mut c| {
            c.resolve(&store.data_dir());
            c.validate().map(|()| c)
        });
        match cfg {
            Ok(cfg) => {
                if let Err(e) = supervisor.add_as(cfg, initial(&stored.desired)) {
                    problems.push(format!("task {id}: {e}"));
                }
            }
            Err((key, message)) => {
                problems.push(format!("task {id}: stored definition: {key}: {message}"));
            }
        }
    }
    problems
}

/// The state a stored task comes back in.
fn initial(desired: &str) -> crate::task::supervisor::Initial {
    use crate::task::supervisor::Initial;
    match desired {
        "running" => Initial::Start,
        "paused" => Initial::Paused,
        "stopped" => Initial::Stopped,
        "completed" => Initial::Completed,
        _ => Initial::Created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskState;

    #[test]
    fn every_state_can_be_listed_by_name() {
        for s in [
            TaskState::Created,
            TaskState::Prechecking,
            TaskState::PrecheckFailed,
            TaskState::Ready,
            TaskState::Starting,
            TaskState::Running,
            TaskState::Paused,
            TaskState::Stopping,
            TaskState::Stopped,
            TaskState::Completed,
            TaskState::Failed,
        ] {
            assert!(STATE_NAMES.contains(&s.name()), "{s:?}");
        }
    }

    #[test]
    fn secrets_are_redacted_and_paths_confined() {
        let mut v = json!({
            "source": {"type": "mysql", "url": "mysql://u:hunter2@h:3306"},
            "sink": {"type": "kafka", "sasl_password": "x", "properties": {"ssl.key.password": "y"}},
        });
        redact(&mut v, None);
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("\"x\"") && !text.contains("\"y\""),
            "{text}"
        );
        let allowed = vec![std::path::PathBuf::from("/var/lib/tidemark")];
        let ok = json!({"sink": {"type": "jsonl", "path": "/var/lib/tidemark/out.jsonl"}});
        assert!(check_paths(&ok, &allowed, "").is_ok());
        for bad in [
            "/etc/passwd",
            "/var/lib/tidemark/../../etc/x",
            "relative.jsonl",
        ] {
            let v = json!({"sink": {"type": "jsonl", "path": bad}});
            let e = check_paths(&v, &allowed, "").unwrap_err();
            assert_eq!(e.0, "sink.path", "{bad}");
        }
        let v = json!({"source": {"tls": {"ca_file": "/root/ca.pem"}}});
        assert_eq!(
            check_paths(&v, &allowed, "").unwrap_err().0,
            "source.tls.ca_file"
        );
    }
}
