//! [`TaskHandle`]: a task's state, progress and controls, for the daemon,
//! the CLI and (later) the HTTP API.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::progress::{Progress, ProgressSnapshot};
use super::state::{TaskState, TaskStatus};
use crate::config::{DdlConfig, FilterConfig, TaskConfig};
use crate::event::json::JsonOptions;

/// A request to a task's supervisor loop.
#[derive(Debug)]
pub(crate) enum Command {
    Start,
    Pause,
    Resume,
    Stop,
    /// Drain into `completed`: a migration's cutover.
    Complete,
    Modify(Box<TaskChange>),
    Skip(crate::store::Skip),
    Snapshot(Vec<String>),
    /// End the task's loop (an idle task leaving the daemon).
    Remove,
    /// A pre-check's progress (states before the first start).
    Precheck(PrecheckPhase),
    /// Start even after a failed pre-check.
    ForceStart,
}

/// Where a pre-check is, for the task's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrecheckPhase {
    Started,
    Passed,
    /// With the failing items, for the state's note.
    Failed(String),
}

impl Command {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Stop => "stop",
            Command::Complete => "complete",
            Command::Modify(_) => "modify",
            Command::Skip(_) => "skip",
            Command::Snapshot(_) => "snapshot",
            Command::Remove => "delete",
            Command::Precheck(_) => "precheck",
            Command::ForceStart => "start",
        }
    }
}

pub(crate) type Reply = oneshot::Sender<Result<(), ControlError>>;

/// What a paused (or not yet started, stopped, failed) task may change.
///
/// Positions are unaffected: the task resumes from its committed position.
/// A table the new filter includes is captured from that position on (its
/// earlier rows need a snapshot); a table it excludes stops being captured
/// there. A new format applies to events written after the resume.
#[derive(Debug, Clone, Default)]
pub struct TaskChange {
    pub filter: Option<FilterConfig>,
    pub ddl: Option<DdlConfig>,
    pub format: Option<JsonOptions>,
    /// A database target's conflict policy.
    pub conflict: Option<crate::config::ConflictConfig>,
    /// Operator metadata: changeable in any state.
    pub name: Option<String>,
    pub description: Option<String>,
    pub notify: Option<crate::config::NotifyConfig>,
    /// The processing rules, replaced whole.
    pub rules: Option<Vec<crate::config::rules::RuleConfig>>,
}

impl TaskChange {
    /// The config with the change applied (not yet validated).
    pub fn apply_to(&self, cfg: &TaskConfig) -> TaskConfig {
        let mut c = cfg.clone();
        if let Some(f) = &self.filter {
            c.filter = f.clone();
        }
        if let Some(d) = &self.ddl {
            c.ddl = d.clone();
        }
        if let Some(f) = &self.format {
            c.format = f.clone();
        }
        if let Some(conflict) = &self.conflict {
            match &mut c.sink {
                crate::config::SinkConfig::Mysql(d) | crate::config::SinkConfig::Postgres(d) => {
                    d.conflict = conflict.clone();
                }
                _ => {}
            }
        }
        if let Some(n) = &self.name {
            c.name = Some(n.clone());
        }
        if let Some(d) = &self.description {
            c.description = Some(d.clone());
        }
        if let Some(n) = &self.notify {
            c.notify = n.clone();
        }
        if let Some(r) = &self.rules {
            c.rules = r.clone();
        }
        c
    }

    /// Only operator metadata (name, description, notifications): allowed
    /// while the task runs.
    pub fn metadata_only(&self) -> bool {
        self.filter.is_none()
            && self.ddl.is_none()
            && self.format.is_none()
            && self.conflict.is_none()
            && self.rules.is_none()
    }
}

/// Why a control request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("task {task}: can't {action} while {state}; {action} is allowed while {allowed}")]
    NotAllowed {
        task: String,
        action: &'static str,
        state: TaskState,
        allowed: &'static str,
    },
    #[error("task {task}: {key}: {message}")]
    Invalid {
        task: String,
        key: String,
        message: String,
    },
    #[error("task {task} already exists")]
    Exists { task: String },
    #[error("task {task}: {message}")]
    Conflict { task: String, message: String },
    #[error("task {task} is no longer supervised (the daemon is shutting down)")]
    Gone { task: String },
}

/// A handle on one supervised task. Cheap to clone.
#[derive(Clone)]
pub struct TaskHandle {
    pub(crate) id: Arc<str>,
    pub(crate) status: watch::Receiver<TaskStatus>,
    pub(crate) config: watch::Receiver<Arc<TaskConfig>>,
    pub(crate) progress: Arc<Progress>,
    pub(crate) control: mpsc::Sender<(Command, Reply)>,
}

impl TaskHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn status(&self) -> TaskStatus {
        self.status.borrow().clone()
    }

    pub fn state(&self) -> TaskState {
        self.status.borrow().state
    }

    /// The task's current config (as modified).
    pub fn config(&self) -> Arc<TaskConfig> {
        self.config.borrow().clone()
    }

    pub fn progress(&self) -> ProgressSnapshot {
        self.progress.snapshot()
    }

    /// Status changes as they happen.
    pub fn subscribe(&self) -> watch::Receiver<TaskStatus> {
        self.status.clone()
    }

    /// Waits until `pred` holds for the status, at most `timeout`; returns
    /// the last status either way (`Err` on timeout).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&TaskStatus) -> bool,
    ) -> Result<TaskStatus, TaskStatus> {
        let mut rx = self.status.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|s| pred(s))).await;
        match r {
            Ok(Ok(s)) => Ok(s.clone()),
            _ => Err(self.status()),
        }
    }

    async fn request(&self, cmd: Command) -> Result<(), ControlError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ControlError::Gone {
            task: self.id.to_string(),
        };
        self.control.send((cmd, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Sets the task's flow control at once, in whatever state it is (a
    /// running task paces its next group by it); 0 = no limit.
    pub fn throttle(&self, rows_per_second: u64, bytes_per_second: u64) {
        self.progress
            .throttle
            .set(rows_per_second, bytes_per_second);
    }

    /// Records a pre-check's progress: a task that hasn't started yet (or
    /// was last pre-checked) moves through `prechecking` to `ready` or
    /// `precheck_failed`; others keep their state.
    pub async fn precheck_phase(&self, phase: PrecheckPhase) -> Result<(), ControlError> {
        self.request(Command::Precheck(phase)).await
    }

    /// Starts the task even after a failed pre-check.
    pub async fn force_start(&self) -> Result<(), ControlError> {
        self.request(Command::ForceStart).await
    }

    /// Ends the loop of an idle task (see `Supervisor::remove`).
    pub(crate) async fn remove(&self) -> Result<(), ControlError> {
        self.request(Command::Remove).await
    }

    /// Starts a created, stopped, failed or completed task. Returns once it
    /// is starting.
    pub async fn start(&self) -> Result<(), ControlError> {
        self.request(Command::Start).await
    }

    /// Stops reading, makes everything in flight durable and committed,
    /// closes connections. Returns once the task is `paused` (a drain that
    /// exceeds the daemon's shutdown timeout is cut short: what was not
    /// durable is read again on resume).
    pub async fn pause(&self) -> Result<(), ControlError> {
        self.request(Command::Pause).await
    }

    /// Resumes a paused (or failed) task from its committed position.
    pub async fn resume(&self) -> Result<(), ControlError> {
        self.request(Command::Resume).await
    }

    /// Drains the task as `stop` does, into `completed`: the operator's
    /// cutover of a migration. A PostgreSQL source's slot is dropped (a
    /// completed task keeps no WAL on the server).
    pub async fn complete(&self) -> Result<(), ControlError> {
        self.request(Command::Complete).await
    }

    /// Stops the task as `pause` does, into `stopped`.
    pub async fn stop(&self) -> Result<(), ControlError> {
        self.request(Command::Stop).await
    }

    /// Skips the statement-logged changes of the transaction at `position`
    /// (as a "statement-based DML" error printed it), which the binlog holds
    /// no rows for: recorded in the store and the task's history. A failed
    /// task is started again at once; otherwise the skip applies from the
    /// next start. Allowed while created, paused, stopped or failed.
    pub async fn skip_transaction(&self, position: &str, reason: &str) -> Result<(), ControlError> {
        let skip = crate::store::Skip {
            position: position.to_string(),
            at_ms: crate::store::now_ms(),
            reason: reason.to_string(),
        };
        self.request(Command::Skip(skip)).await
    }

    /// Copies `tables` (`db.table` / `schema.table`, selected by the task's
    /// filter) again while the task streams: an incremental snapshot, whose
    /// rows are `op = "r"` events with `source.snapshot = "incremental"`,
    /// placed exactly among the changes. A task that isn't running records
    /// the request and copies the tables when it next runs.
    pub async fn snapshot_tables(&self, tables: Vec<String>) -> Result<(), ControlError> {
        self.request(Command::Snapshot(tables)).await
    }

    /// Changes a paused, stopped, failed or created task's filter, DDL
    /// policy or format, validated first (see [`TaskChange`]).
    pub async fn modify(&self, change: TaskChange) -> Result<(), ControlError> {
        self.request(Command::Modify(Box::new(change))).await
    }
}
