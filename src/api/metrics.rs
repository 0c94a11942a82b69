//! `GET /metrics`: Prometheus text exposition, built from the tasks'
//! state and progress at each scrape. Labels: `task`, and `table` for the
//! per-table series (at most [`MAX_TABLES`] tables per task, the busiest
//! first, so that the series stay bounded).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Api;

/// Per-table series kept per task.
pub const MAX_TABLES: usize = 100;

type Labels = Vec<(String, String)>;

pub async fn metrics(State(api): State<Arc<Api>>) -> Response {
    match render(&api) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn render(api: &Api) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("tidemark");
    let state = Family::<Labels, Gauge>::default();
    let events_read = Family::<Labels, Counter>::default();
    let events_written = Family::<Labels, Counter>::default();
    let bytes_written = Family::<Labels, Counter>::default();
    let transactions = Family::<Labels, Counter>::default();
    let restarts = Family::<Labels, Counter>::default();
    let lag_seconds = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let lag_bytes = Family::<Labels, Gauge>::default();
    let table_events = Family::<Labels, Counter>::default();
    let snapshot_rows = Family::<Labels, Counter>::default();
    let snapshot_estimated = Family::<Labels, Gauge>::default();
    let conflicts = Family::<Labels, Counter>::default();
    let rule_filter_errors = Family::<Labels, Counter>::default();
    reg.register(
        "task_state",
        "1 for the state the task is in, 0 for the others",
        state.clone(),
    );
    reg.register(
        "events_read",
        "Change events read from the source",
        events_read.clone(),
    );
    reg.register(
        "events_written",
        "Change events the sink made durable",
        events_written.clone(),
    );
    reg.register(
        "written_bytes",
        "Bytes the sink wrote",
        bytes_written.clone(),
    );
    reg.register(
        "transactions",
        "Source transactions read",
        transactions.clone(),
    );
    reg.register(
        "restarts",
        "Runs restarted after a transient failure",
        restarts.clone(),
    );
    reg.register(
        "lag_seconds",
        "Seconds between now and the commit time of the last durable event while events are in flight",
        lag_seconds.clone(),
    );
    reg.register(
        "lag_bytes",
        "Log bytes the source server holds beyond the task's position",
        lag_bytes.clone(),
    );
    reg.register(
        "table_events",
        "Change events written per table and operation",
        table_events.clone(),
    );
    reg.register(
        "snapshot_rows",
        "Rows copied by snapshots per table",
        snapshot_rows.clone(),
    );
    reg.register(
        "snapshot_estimated_rows",
        "Rows the server estimates a table being copied holds",
        snapshot_estimated.clone(),
    );
    reg.register(
        "conflicts",
        "Changes a database target disagreed with, per table and operation",
        conflicts.clone(),
    );
    reg.register(
        "rule_filter_errors",
        "Rows left out because a processing rule's filter failed on them (on_error = skip or dead_letter)",
        rule_filter_errors.clone(),
    );
    for t in api.supervisor.tasks() {
        let task = || vec![("task".to_string(), t.id().to_string())];
        let current = t.state();
        for s in super::tasks::STATE_NAMES {
            let mut l = task();
            l.push(("state".into(), s.to_string()));
            state.get_or_create(&l).set(i64::from(current.name() == s));
        }
        let p = t.progress();
        events_read.get_or_create(&task()).inc_by(p.events_read);
        events_written
            .get_or_create(&task())
            .inc_by(p.events_written);
        bytes_written.get_or_create(&task()).inc_by(p.bytes_written);
        transactions.get_or_create(&task()).inc_by(p.transactions);
        restarts.get_or_create(&task()).inc_by(p.restarts);
        if p.rule_filter_errors > 0 {
            rule_filter_errors
                .get_or_create(&task())
                .inc_by(p.rule_filter_errors);
        }
        if let Some(l) = p.lag_seconds {
            lag_seconds.get_or_create(&task()).set(l);
        }
        if let Some(b) = p.lag_bytes {
            lag_bytes
                .get_or_create(&task())
                .set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        let mut tables: Vec<_> = p.tables.iter().collect();
        tables.sort_by_key(|(_, c)| std::cmp::Reverse(c.inserts + c.updates + c.deletes + c.other));
        for (name, c) in tables.into_iter().take(MAX_TABLES) {
            for (op, n) in [
                ("insert", c.inserts),
                ("update", c.updates),
                ("delete", c.deletes),
                ("other", c.other),
            ] {
                let mut l = task();
                l.push(("table".into(), name.clone()));
                l.push(("op".into(), op.into()));
                table_events.get_or_create(&l).inc_by(n);
            }
        }
        for (name, c) in p.conflicts.iter().take(MAX_TABLES) {
            for (op, n) in [
                ("insert", c.insert),
                ("update", c.update),
                ("delete", c.delete),
            ] {
                let mut l = task();
                l.push(("table".into(), name.clone()));
                l.push(("op".into(), op.into()));
                conflicts.get_or_create(&l).inc_by(n);
            }
        }
        for (name, s) in p.snapshot.iter().take(MAX_TABLES) {
            let mut l = task();
            l.push(("table".into(), name.clone()));
            snapshot_rows.get_or_create(&l).inc_by(s.rows_copied);
            snapshot_estimated
                .get_or_create(&l)
                .set(i64::try_from(s.estimated_rows).unwrap_or(i64::MAX));
        }
    }
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}
