//! `POST /cdc`: the Milvus-CDC request shape, so that scripts written for
//! that API drive tidemark tasks. `{"request_type": "create" | "list" |
//! "get" | "pause" | "resume" | "delete", "request_data": {...}}` answers
//! `{"code": 200, "data": {...}}`, or `{"code": <status>, "message": "…"}`
//! with the same HTTP status. `create` takes a tidemark task definition
//! (the keys of a `[[tasks]]` entry; `id` generated when absent) and
//! starts it, as Milvus-CDC does; the others take `task_id`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, tasks};

#[derive(Deserialize)]
pub struct CdcRequest {
    request_type: String,
    #[serde(default)]
    request_data: Value,
}

pub async fn cdc(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> Response {
    match handle(&api, &body).await {
        Ok(data) => Json(json!({"code": 200, "data": data})).into_response(),
        Err(e) => (
            e.status(),
            Json(json!({"code": e.status().as_u16(), "message": e.message()})),
        )
            .into_response(),
    }
}

async fn handle(api: &Api, body: &[u8]) -> Result<Value, ApiError> {
    let req: CdcRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::field(
            "(body)",
            format!("expected {{\"request_type\": …, \"request_data\": {{…}}}}: {e}"),
        )
    })?;
    let task_id = || -> Result<String, ApiError> {
        req.request_data
            .get("task_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::field("request_data.task_id", "required (a string)"))
    };
    match req.request_type.as_str() {
        "create" => {
            let (def, cfg) = tasks::parse_definition(api, req.request_data.clone())
                .map_err(|(k, m)| ApiError::field(format!("request_data.{k}"), m))?;
            let id = cfg.id.clone();
            tasks::add(api, def, cfg, true)?;
            Ok(json!({"task_id": id}))
        }
        "list" => {
            let list: Vec<Value> = api
                .supervisor
                .tasks()
                .iter()
                .map(|t| cdc_task(api, t))
                .collect();
            Ok(json!({"tasks": list}))
        }
        "get" => {
            let id = task_id()?;
            let t = api
                .supervisor
                .task(&id)
                .ok_or_else(|| ApiError::not_found(&id))?;
            Ok(json!({"task": cdc_task(api, &t)}))
        }
        "pause" | "resume" => {
            let id = task_id()?;
            let t = api
                .supervisor
                .task(&id)
                .ok_or_else(|| ApiError::not_found(&id))?;
            tasks::control(api, &t, &req.request_type).await?;
            Ok(json!({}))
        }
        "delete" => {
            let id = task_id()?;
            tasks::remove(api, &id).await?;
            Ok(json!({}))
        }
        other => Err(ApiError::field(
            "request_type",
            format!("unknown {other:?}: create, list, get, pause, resume or delete"),
        )),
    }
}

/// A task in the `/cdc` answers: `task_id` and `state` first, then the
/// tidemark view.
fn cdc_task(api: &Api, t: &crate::task::TaskHandle) -> Value {
    let mut v = tasks::view(api, t);
    if let Some(m) = v.as_object_mut() {
        m.insert("task_id".into(), Value::String(t.id().to_string()));
    }
    v
}
