//! A task's state, as the supervisor publishes it.
//!
//! ```text
//! created ─► (prechecking ─► ready | precheck_failed) ─► starting ─► running ⇄ paused
//!                           │  ▲        │
//!                           │  └────────┘ (resume)
//!                           ▼
//!             stopping ─► stopped        completed (a one-shot task ended)
//!                                        failed    (a definite error)
//! ```
//!
//! While a transient error is being retried the state stays `running` and
//! [`TaskStatus::retry`] says since when, which attempt, and the last
//! error.

use std::collections::VecDeque;

use serde::Serialize;

/// The lifecycle state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Registered, never started.
    Created,
    /// A pre-check runs (before the first start).
    Prechecking,
    /// The last pre-check failed: a start waits for one that passes (or
    /// is forced).
    PrecheckFailed,
    /// The last pre-check passed (or only warned): ready to start.
    Ready,
    /// Opening the sink and the source.
    Starting,
    /// Streaming (possibly retrying a transient failure: see `retry`).
    Running,
    /// Stopped on request with everything in flight durable and committed;
    /// resumes where it stopped.
    Paused,
    /// Draining in-flight events before `paused` or `stopped`.
    Stopping,
    /// Stopped on request (or at daemon shutdown).
    Stopped,
    /// A one-shot task that finished its work.
    Completed,
    /// Stopped by a definite error, shown in `error`: retrying can't help
    /// until the operator acts.
    Failed,
}

impl TaskState {
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Created => "created",
            TaskState::Prechecking => "prechecking",
            TaskState::PrecheckFailed => "precheck_failed",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Paused => "paused",
            TaskState::Stopping => "stopping",
            TaskState::Stopped => "stopped",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
        }
    }

    /// States in which the task holds no source or sink.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TaskState::Created
                | TaskState::Prechecking
                | TaskState::PrecheckFailed
                | TaskState::Ready
                | TaskState::Paused
                | TaskState::Stopped
                | TaskState::Completed
                | TaskState::Failed
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A transient failure being retried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryInfo {
    /// When the first failure of this series happened (ms since the epoch).
    pub since_ms: i64,
    /// Restarts so far in this series.
    pub attempt: u32,
    /// The last error, with its causes.
    pub last_error: String,
    /// When the next attempt starts (ms since the epoch).
    pub next_attempt_ms: i64,
}

/// One state change, for the task's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub at_ms: i64,
    pub state: TaskState,
    /// Why: the request, the error, the drain outcome.
    pub note: Option<String>,
}

/// The history keeps this many transitions (oldest dropped first).
pub const HISTORY: usize = 100;

/// What the supervisor publishes about a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStatus {
    pub state: TaskState,
    /// When the task entered `state` (ms since the epoch).
    pub since_ms: i64,
    /// Set while a transient failure is being retried.
    pub retry: Option<RetryInfo>,
    /// The error that failed the task (state `failed`), or the last error
    /// of a task that was stopped while retrying.
    pub error: Option<String>,
    pub history: VecDeque<Transition>,
}

impl TaskStatus {
    pub fn new(state: TaskState) -> TaskStatus {
        let now = crate::store::now_ms();
        let mut history = VecDeque::new();
        history.push_back(Transition {
            at_ms: now,
            state,
            note: None,
        });
        TaskStatus {
            state,
            since_ms: now,
            retry: None,
            error: None,
            history,
        }
    }

    /// Moves to `state`, recording the transition.
    pub fn enter(&mut self, state: TaskState, note: Option<String>) {
        let now = crate::store::now_ms();
        self.state = state;
        self.since_ms = now;
        if state != TaskState::Failed {
            self.error = None;
        }
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Transition {
            at_ms: now,
            state,
            note,
        });
    }

    /// Records an event that is not a state change (a retry, a skip).
    pub fn note(&mut self, note: String) {
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Transition {
            at_ms: crate::store::now_ms(),
            state: self.state,
            note: Some(note),
        });
    }

    /// One line for logs and the CLI: `running (retrying since …)`.
    pub fn summary(&self) -> String {
        match (&self.retry, &self.error) {
            (Some(r), _) => format!(
                "{} (retrying since {}, attempt {}, last error: {})",
                self.state,
                crate::task::format_ms(r.since_ms),
                r.attempt,
                r.last_error
            ),
            (None, Some(e)) => format!("{}: {e}", self.state),
            (None, None) => self.state.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_ordered() {
        let mut s = TaskStatus::new(TaskState::Created);
        for i in 0..(HISTORY + 20) {
            s.enter(
                if i % 2 == 0 {
                    TaskState::Running
                } else {
                    TaskState::Paused
                },
                Some(format!("step {i}")),
            );
        }
        assert_eq!(s.history.len(), HISTORY);
        assert_eq!(
            s.history.back().and_then(|t| t.note.clone()),
            Some(format!("step {}", HISTORY + 19))
        );
        assert_eq!(s.state, TaskState::Paused);
    }
}
