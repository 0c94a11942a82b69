//! Live events: task state changes and warnings, published by one loop
//! that watches every task, to the WebSocket endpoint
//! (`GET /api/v1/events`) and to the webhook (`[daemon.api] webhook`).
//!
//! Messages are JSON objects with a `type`:
//! - `state`: `{"type": "state", "task", "state", "note", "at_ms"}` for
//!   every transition in the task's history;
//! - `warning`: `{"type": "warning", "task", "message", "at_ms"}` when a
//!   task starts retrying a failure (the error) or fails;
//! - `progress` (WebSocket only, every second per task): `{"type":
//!   "progress", "task", "state", "events_written", "events_per_second",
//!   "lag_seconds", "lag_bytes", "snapshot": {table: {...}}}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Api;
use crate::task::Supervisor;

/// The channel's depth: a subscriber further behind loses the oldest
/// messages (and is told so).
const DEPTH: usize = 1024;

/// Publishes state changes and warnings of every task.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Value>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(DEPTH).0,
        }
    }
}

impl Events {
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.tx.subscribe()
    }

    /// Publishes a message to every subscriber.
    pub fn publish(&self, v: Value) {
        let _ = self.tx.send(v);
    }

    /// Watches the tasks (every 200 ms) until `stop`, publishing what
    /// changed.
    pub async fn watch(self, sup: Arc<Supervisor>, stop: CancellationToken) {
        // Per task: the time of the last transition published, and whether
        // a retry was already reported.
        let mut seen: HashMap<String, (i64, bool)> = HashMap::new();
        loop {
            for t in sup.tasks() {
                let status = t.status();
                let (last, retrying) = seen
                    .entry(t.id().to_string())
                    .or_insert_with(|| (status.history.back().map_or(0, |h| h.at_ms), false));
                for h in status.history.iter().filter(|h| h.at_ms > *last) {
                    let _ = self.tx.send(json!({
                        "type": "state",
                        "task": t.id(),
                        "state": h.state.name(),
                        "note": h.note,
                        "at_ms": h.at_ms,
                    }));
                    if h.state == crate::task::TaskState::Failed {
                        let _ = self.tx.send(json!({
                            "type": "warning",
                            "task": t.id(),
                            "message": status.error.clone().unwrap_or_else(|| "failed".into()),
                            "at_ms": h.at_ms,
                        }));
                    }
                }
                if let Some(h) = status.history.back() {
                    *last = (*last).max(h.at_ms);
                }
                match (&status.retry, *retrying) {
                    (Some(r), false) => {
                        let _ = self.tx.send(json!({
                            "type": "warning",
                            "task": t.id(),
                            "message": format!("retrying (attempt {}): {}", r.attempt, r.last_error),
                            "at_ms": crate::store::now_ms(),
                        }));
                        *retrying = true;
                    }
                    (None, true) => *retrying = false,
                    _ => {}
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

#[derive(Deserialize)]
pub struct EventsQuery {
    /// Only this task's messages.
    task: Option<String>,
}

/// `GET /api/v1/events` (WebSocket).
pub async fn events(
    ws: WebSocketUpgrade,
    State(api): State<Arc<Api>>,
    Query(q): Query<EventsQuery>,
) -> Response {
    ws.on_upgrade(move |socket| stream(socket, api, q.task))
}

async fn stream(mut socket: WebSocket, api: Arc<Api>, only: Option<String>) {
    let mut rx = api.events.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut written: HashMap<String, (u64, tokio::time::Instant)> = HashMap::new();
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Ok(v) => {
                    if only.as_deref().is_some_and(|t| v["task"] != t) {
                        continue;
                    }
                    v
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    json!({"type": "lagged", "missed": n})
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                for t in api.supervisor.tasks() {
                    if only.as_deref().is_some_and(|o| o != t.id()) {
                        continue;
                    }
                    let p = t.progress();
                    let now = tokio::time::Instant::now();
                    let rate = match written.insert(t.id().to_string(), (p.events_written, now)) {
                        Some((before, at)) => {
                            let secs = now.duration_since(at).as_secs_f64();
                            if secs > 0.0 { (p.events_written.saturating_sub(before)) as f64 / secs } else { 0.0 }
                        }
                        None => 0.0,
                    };
                    let v = json!({
                        "type": "progress",
                        "task": t.id(),
                        "state": t.state().name(),
                        "events_written": p.events_written,
                        "events_per_second": (rate * 10.0).round() / 10.0,
                        "lag_seconds": p.lag_seconds,
                        "lag_bytes": p.lag_bytes,
                        "snapshot": p.snapshot,
                    });
                    if socket.send(Message::Text(v.to_string().into())).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            incoming = socket.recv() => match incoming {
                // The client closed, or went away.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            },
        };
        if socket
            .send(Message::Text(msg.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Posts every `state` and `warning` message to `url` (plain HTTP), one
/// request each, in order; a delivery that fails is retried 3 times and
/// then logged and dropped (a webhook never holds a task up).
pub async fn webhook(events: Events, url: String, stop: CancellationToken) {
    let mut rx = events.subscribe();
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return,
            m = rx.recv() => match m {
                Ok(v) => v,
                Err(broadcast::error::RecvError::Lagged(n)) => json!({"type": "lagged", "missed": n}),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        deliver(&url, &msg.to_string()).await;
    }
}

/// Posts each task's messages to its own `[tasks.notify] webhook`, when
/// it has one.
pub async fn task_webhooks(events: Events, sup: Arc<Supervisor>, stop: CancellationToken) {
    let mut rx = events.subscribe();
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return,
            m = rx.recv() => match m {
                Ok(v) => v,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let url = msg["task"]
            .as_str()
            .and_then(|id| sup.task(id))
            .and_then(|t| t.config().notify.webhook.clone());
        if let Some(url) = url {
            deliver(&url, &msg.to_string()).await;
        }
    }
}

/// One message to `url`, retried 3 times, then logged and dropped.
async fn deliver(url: &str, body: &str) {
    let Some((addr, path)) = url.strip_prefix("http://").map(|r| {
        r.split_once('/')
            .map_or((r, "/".to_string()), |(a, p)| (a, format!("/{p}")))
    }) else {
        warn!(url = %url, "a webhook must be an http:// URL: notification dropped");
        return;
    };
    for attempt in 0..4u32 {
        match post(addr, &path, body).await {
            Ok(status) if (200..300).contains(&status) => return,
            Ok(status) => debug!(status, attempt, "the webhook answered with an error"),
            Err(e) => debug!(error = %e, attempt, "the webhook can't be reached"),
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    warn!(url = %url, message = %body, "a notification could not be delivered to the webhook");
}

async fn post(addr: &str, path: &str, body: &str) -> Result<u16, std::io::Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nUser-Agent: tidemark\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut head))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status line"))
}
