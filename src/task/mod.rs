//! The task runtime: tasks run, supervised, with states, progress and
//! control.
//!
//! - [`supervisor`]: the registry of tasks; each task runs in a loop of its
//!   own (`lifecycle.rs`) that owns the retry policy (transient errors
//!   restart the task with backoff, definite ones fail it) and obeys its
//!   control channel;
//! - [`handle`]: what callers hold: state, progress, and pause / resume /
//!   stop / modify;
//! - [`runner`]: one run of a task, the only place that sequences
//!   write → durable → commit → release;
//! - [`builder`]: opens a task's sink and spawns its source from its config;
//! - [`state`], [`progress`]: what a task publishes; [`report`]: the
//!   daemon's status file with all of it.

pub mod builder;
pub mod handle;
mod lifecycle;
pub mod progress;
pub mod report;
pub mod runner;
pub mod state;
pub mod supervisor;

pub use handle::{ControlError, PrecheckPhase, TaskChange, TaskHandle};
pub use progress::{Progress, ProgressSnapshot, TableCounts};
pub use state::{RetryInfo, TaskState, TaskStatus, Transition};
pub use supervisor::{Initial, Supervisor, SupervisorSettings};

use crate::error::{Classify, ErrorClass};
use crate::event::Position;
use crate::sink::SinkError;
use crate::source::SourceError;
use crate::store::StoreError;

/// Why a task run ended with an error: which part failed, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The source failed (`what`: "MySQL/MariaDB source", …).
    #[error("{what}")]
    Source {
        what: &'static str,
        #[source]
        source: SourceError,
    },
    /// The sink failed (`what`: "JSONL sink", "Kafka sink").
    #[error("{what}")]
    Sink {
        what: &'static str,
        #[source]
        source: SinkError,
    },
    #[error("offset store")]
    Store(#[source] StoreError),
    /// The task's settings and stored state don't fit together.
    #[error("{0}")]
    Config(String),
    /// A processing rule stopped the task (a filter failing under
    /// `on_error = "fail"`, a shard diverging from its merge).
    #[error("processing rules: {0}")]
    Rules(String),
}

impl TaskError {
    /// The DDL statement a database target paused the task at (`pause`
    /// policy), if that is what ended the run.
    pub fn ddl_pause(&self) -> Option<&crate::event::Position> {
        match self {
            TaskError::Sink {
                source: SinkError::Database(d),
                ..
            } => d.pause_at(),
            _ => None,
        }
    }
}

impl Classify for TaskError {
    fn class(&self) -> ErrorClass {
        match self {
            TaskError::Source { source, .. } => source.class(),
            TaskError::Sink { source, .. } => source.class(),
            TaskError::Store(e) => e.class(),
            TaskError::Config(_) | TaskError::Rules(_) => ErrorClass::Definite,
        }
    }

    fn give_up_after(&self) -> Option<std::time::Duration> {
        match self {
            TaskError::Source { source, .. } => source.give_up_after(),
            _ => None,
        }
    }
}

/// The later of two positions (the stored offset and the sink's own).
pub fn later(a: Option<Position>, b: Option<Position>) -> Result<Option<Position>, String> {
    match (a, b) {
        (Some(a), Some(b)) => match a.partial_cmp(&b) {
            Some(std::cmp::Ordering::Less) => Ok(Some(b)),
            Some(_) => Ok(Some(a)),
            None => Err(format!(
                "the stored offset {a} and the sink's position {b} come from different kinds of source; was the sink reused by another task?"
            )),
        },
        (a, b) => Ok(a.or(b)),
    }
}

/// `2026-11-29 12:00:00 UTC`.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let d = crate::event::value::Date::from_epoch_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        d.year,
        d.month,
        d.day,
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod runner_tests;
