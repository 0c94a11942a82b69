//! The HTTP control plane (`[daemon.api]`): the task API under `/api/v1`,
//! the Milvus-CDC compatible `/cdc` endpoint, Prometheus `/metrics`,
//! `/healthz` and `/readyz`.
//!
//! - Every endpoint but `/healthz` needs `Authorization: Bearer <token>`.
//! - Request bodies are limited to `max_body_bytes`.
//! - Errors are JSON: `{"error": {"status": 409, "message": "…", "field": …,
//!   "allowed": …}}`, with 400 for a field that is wrong (named), 404 for
//!   an unknown task, 409 for a transition the task's state doesn't allow
//!   (saying which states allow it).
//! - Tasks created here are kept in `<data_dir>/api-tasks/` (see
//!   [`persist`]) and come back after a restart in the state they were
//!   left in; tasks of the config file can be controlled but not deleted
//!   or redefined here.

mod cdc;
pub mod client;
pub mod events;
mod metrics;
pub mod persist;
mod tasks;
pub mod tls;

pub use tasks::restore;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::ApiConfig;
use crate::task::{ControlError, Supervisor, TaskState};

/// What the handlers share.
pub struct Api {
    pub supervisor: Arc<Supervisor>,
    /// Ids of the config file's tasks (read-only here; a reload changes
    /// them).
    config_tasks: std::sync::RwLock<Vec<String>>,
    pub store: persist::ApiTasks,
    /// State changes and warnings of every task (WebSocket, webhook).
    pub events: events::Events,
    /// Each task's last pre-check (time in ms, report).
    pub prechecks:
        std::sync::Mutex<std::collections::HashMap<String, (i64, crate::precheck::Report)>>,
    token: String,
}

impl Api {
    pub fn new(
        supervisor: Arc<Supervisor>,
        config_tasks: Vec<String>,
        store: persist::ApiTasks,
        cfg: &ApiConfig,
    ) -> Api {
        Api {
            supervisor,
            config_tasks: std::sync::RwLock::new(config_tasks),
            store,
            events: events::Events::default(),
            prechecks: std::sync::Mutex::default(),
            token: cfg.token.clone(),
        }
    }

    /// Records a task's pre-check; publishes its failing and warning items
    /// that the previous one didn't have.
    pub fn record_precheck(&self, task: &str, report: crate::precheck::Report) {
        let now = crate::store::now_ms();
        let mut all = self.prechecks.lock().unwrap_or_else(|p| p.into_inner());
        let before: Vec<(String, crate::precheck::Status)> = all
            .get(task)
            .map(|(_, r)| r.items.iter().map(|i| (i.name.clone(), i.status)).collect())
            .unwrap_or_default();
        for item in &report.items {
            if item.status != crate::precheck::Status::Pass
                && !before.contains(&(item.name.clone(), item.status))
            {
                self.events.publish(serde_json::json!({
                    "type": "warning",
                    "task": task,
                    "message": format!(
                        "pre-check {} {:?}: {}{}",
                        item.name,
                        item.status,
                        item.detail,
                        item.fix.as_deref().map(|f| format!(" (fix: {f})")).unwrap_or_default()
                    ),
                    "item": item.name,
                    "at_ms": now,
                }));
            }
        }
        all.insert(task.to_string(), (now, report));
    }

    /// Pre-checks every running task every `every` until `stop`.
    pub async fn precheck_loop(
        self: Arc<Self>,
        every: std::time::Duration,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            for t in self.supervisor.tasks() {
                if t.state() != TaskState::Running {
                    continue;
                }
                let progress = t.progress();
                let facts = crate::precheck::TaskFacts {
                    running: true,
                    lag_seconds: progress.lag_seconds,
                    committed: progress.committed_position.clone(),
                };
                let cfg = t.config();
                let report = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = crate::precheck::run(&cfg, &facts) => r,
                };
                self.record_precheck(t.id(), report);
            }
        }
    }

    /// The config file's tasks after a reload.
    pub fn set_config_tasks(&self, ids: Vec<String>) {
        *self.config_tasks.write().unwrap_or_else(|p| p.into_inner()) = ids;
    }

    fn origin(&self, id: &str) -> &'static str {
        let config = self.config_tasks.read().unwrap_or_else(|p| p.into_inner());
        if config.iter().any(|t| t == id) {
            "config"
        } else {
            "api"
        }
    }
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
    allowed: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
            allowed: None,
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let field = field.into();
        let message = message.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("{field}: {message}"),
            field: Some(field),
            allowed: None,
        }
    }

    pub fn not_found(id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no task {id:?}"))
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let message = e.to_string();
        match e {
            ControlError::NotAllowed { allowed, .. } => ApiError {
                status: StatusCode::CONFLICT,
                message,
                field: None,
                allowed: Some(allowed.to_string()),
            },
            ControlError::Invalid { key, .. } => ApiError {
                status: StatusCode::BAD_REQUEST,
                message,
                field: Some(key),
                allowed: None,
            },
            ControlError::Exists { .. } | ControlError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, message)
            }
            ControlError::Gone { .. } => ApiError::new(StatusCode::NOT_FOUND, message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "status": self.status.as_u16(),
                "message": self.message,
                "field": self.field,
                "allowed": self.allowed,
            }
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The router, for the server and for tests.
pub fn router(api: Arc<Api>, max_body_bytes: usize) -> Router {
    let guarded = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/cdc", post(cdc::cdc))
        .route("/api/v1/openapi.yaml", get(openapi))
        .route("/api/v1/events", get(events::events))
        .nest("/api/v1", tasks::routes())
        .route_layer(middleware::from_fn_with_state(api.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(guarded)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint: see docs/api.md (the task API is under /api/v1)",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(api)
}

/// Binds the API's address (before tasks run: a port in use fails the
/// start, with the setting named).
pub async fn bind(cfg: &ApiConfig) -> Result<tokio::net::TcpListener, std::io::Error> {
    tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("daemon.api.listen {}: can't listen: {e}", cfg.listen),
            )
        })
}

/// Serves the API on `listener` until `stop`, over TLS when `tls` is
/// given.
pub async fn serve(
    api: Arc<Api>,
    listener: tokio::net::TcpListener,
    max_body_bytes: usize,
    tls: Option<rustls::ServerConfig>,
    stop: CancellationToken,
) -> Result<(), std::io::Error> {
    if let Ok(addr) = listener.local_addr() {
        info!(listen = %addr, tls = tls.is_some(), "HTTP API listening");
    }
    let app = router(api, max_body_bytes);
    match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        }
    }
}

async fn auth(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same(t.trim().as_bytes(), api.token.as_bytes()) => next.run(req).await,
        Some(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "the bearer token is wrong").into_response()
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>` (the daemon.api.token of the config)",
        )
        .into_response(),
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API's OpenAPI document (docs/openapi.yaml).
pub const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Ready: every task has started (none `starting`) and none failed.
async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let not_ready: Vec<String> = api
        .supervisor
        .tasks()
        .iter()
        .filter(|t| matches!(t.state(), TaskState::Starting | TaskState::Failed))
        .map(|t| format!("{} ({})", t.id(), t.state()))
        .collect();
    if not_ready.is_empty() {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "tasks": not_ready})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_in_the_openapi_document() {
        let routes = [
            "/healthz:",
            "/readyz:",
            "/metrics:",
            "/cdc:",
            "/api/v1/openapi.yaml:",
            "/api/v1/events:",
            "/api/v1/tasks:",
            "/api/v1/tasks/{id}:",
            "/api/v1/tasks/{id}/throttle:",
            "/api/v1/tasks/{id}/precheck:",
            "/api/v1/tasks/{id}/test-connection:",
            "/api/v1/tasks/{id}/parameters:",
            "/api/v1/tasks/{id}/snapshot:",
            "/api/v1/tasks/{id}/objects:",
            "/api/v1/tasks/{id}/{action}:",
        ];
        for r in routes {
            assert!(super::OPENAPI.contains(&format!("\n  {r}\n")), "{r}");
        }
        // And each documented path is one the router serves.
        let documented: Vec<&str> = super::OPENAPI
            .lines()
            .filter(|l| l.starts_with("  /") && l.ends_with(':'))
            .map(str::trim)
            .collect();
        assert_eq!(documented.len(), routes.len(), "{documented:?}");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(super::same(b"abcdefghijklmnop", b"abcdefghijklmnop"));
        assert!(!super::same(b"abcdefghijklmnop", b"abcdefghijklmnoq"));
        assert!(!super::same(b"abc", b"abcd"));
    }
}
