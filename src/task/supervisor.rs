//! The supervisor: the registry of tasks, and one loop per task that owns
//! its lifecycle.
//!
//! Each task's loop runs the task ([`super::runner`]) and reacts to how a
//! run ends and to control requests:
//! - a *transient* error restarts the task with backoff; the state stays
//!   `running` with [`RetryInfo`] (since when, attempt, last error), which
//!   clears once the new run commits or has run for a while;
//! - a *definite* error, or a transient one that persisted longer than the
//!   error allows, puts the task in `failed` with the error;
//! - pause / stop drain the run (bounded by the drain timeout: a stalled
//!   sink can't hold a stop) into `paused` / `stopped`;
//! - one task's failure never touches another; the daemon keeps running.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handle::{ControlError, TaskHandle};
use super::lifecycle::TaskLoop;
use super::progress::Progress;
use super::state::{TaskState, TaskStatus};
use crate::config::TaskConfig;
use crate::store::OffsetStore;

/// Settings shared by every task's loop.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// Longest a pause, stop or shutdown may wait for a task to drain;
    /// after it the run is abandoned (nothing committed is lost: positions
    /// only follow durability).
    pub drain_timeout: Duration,
    /// A restarted run that lasts this long without failing ends the retry
    /// series (the backoff starts over).
    pub healthy_after: Duration,
    /// `daemon.data_dir`, for the tasks' defaults that depend on it.
    pub data_dir: std::path::PathBuf,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        SupervisorSettings {
            drain_timeout: Duration::from_secs(20),
            healthy_after: Duration::from_secs(30),
            data_dir: std::path::PathBuf::from("."),
        }
    }
}

/// The state a task is registered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initial {
    /// Started at once.
    Start,
    /// Waits for a start.
    Created,
    /// Waits for a resume (it was paused before a restart).
    Paused,
    /// Waits for a start (it was stopped before a restart).
    Stopped,
    /// It was completed before a restart (a migration's cutover).
    Completed,
}

/// Owns every task of the daemon.
pub struct Supervisor {
    store: Arc<dyn OffsetStore>,
    settings: SupervisorSettings,
    tasks: Mutex<BTreeMap<String, TaskHandle>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Tasks whose drain was abandoned at shutdown (a stalled sink).
    abandoned: Arc<Mutex<Vec<String>>>,
}

impl Supervisor {
    pub fn new(store: Arc<dyn OffsetStore>, settings: SupervisorSettings) -> Supervisor {
        Supervisor {
            store,
            settings,
            tasks: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            abandoned: Arc::default(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TaskHandle>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a task, validated on its own and against the others (ids,
    /// replica server ids, slots, sink files), and starts it if `start`.
    pub fn add(&self, cfg: TaskConfig, start: bool) -> Result<TaskHandle, ControlError> {
        let initial = if start {
            Initial::Start
        } else {
            Initial::Created
        };
        self.add_as(cfg, initial)
    }

    /// [`Supervisor::add`], in the state `initial` says: a task that comes
    /// back after a restart in the state it was left in (a paused task
    /// stays paused, a stopped one stopped).
    pub fn add_as(
        &self,
        mut cfg: TaskConfig,
        initial: Initial,
    ) -> Result<TaskHandle, ControlError> {
        cfg.resolve(&self.settings.data_dir);
        let invalid = |(key, message): (String, String)| ControlError::Invalid {
            task: cfg.id.clone(),
            key,
            message,
        };
        cfg.validate().map_err(invalid)?;
        let mut tasks = self.registry();
        if tasks.contains_key(&cfg.id) {
            return Err(ControlError::Exists { task: cfg.id });
        }
        for other in tasks.values() {
            if let Some((key, message)) = cfg.conflicts_with(&other.config()) {
                return Err(ControlError::Invalid {
                    task: cfg.id.clone(),
                    key,
                    message,
                });
            }
        }
        let (state, start) = match initial {
            Initial::Start => (TaskState::Starting, true),
            Initial::Created => (TaskState::Created, false),
            Initial::Paused => (TaskState::Paused, false),
            Initial::Stopped => (TaskState::Stopped, false),
            Initial::Completed => (TaskState::Completed, false),
        };
        let (status_tx, status_rx) = watch::channel(TaskStatus::new(state));
        let (config_tx, config_rx) = watch::channel(Arc::new(cfg.clone()));
        let (control_tx, control_rx) = mpsc::channel(16);
        let progress = Progress::new();
        progress
            .throttle
            .set(cfg.throttle.rows_per_second, cfg.throttle.bytes_per_second);
        let handle = TaskHandle {
            id: cfg.id.as_str().into(),
            status: status_rx,
            config: config_rx,
            progress: progress.clone(),
            control: control_tx,
        };
        let task_loop = TaskLoop {
            cfg,
            store: self.store.clone(),
            settings: self.settings.clone(),
            status: status_tx,
            config: config_tx,
            progress,
            commands: control_rx,
            shutdown: self.shutdown.clone(),
            abandoned: self.abandoned.clone(),
            waiting_ddl: None,
            approved_ddl: None,
        };
        self.tracker.spawn(task_loop.run(start));
        tasks.insert(handle.id().to_string(), handle.clone());
        Ok(handle)
    }

    /// Removes an idle task (created, paused, stopped, completed, failed):
    /// its loop ends and it leaves the registry. Its positions stay in the
    /// store.
    pub async fn remove(&self, id: &str) -> Result<(), ControlError> {
        let Some(handle) = self.task(id) else {
            return Err(ControlError::Gone { task: id.into() });
        };
        handle.remove().await?;
        self.registry().remove(id);
        Ok(())
    }

    /// Forgets a removed task's committed position and snapshot progress
    /// (a task created later with the same id starts afresh).
    pub async fn forget(&self, id: &str) -> Result<(), crate::store::StoreError> {
        self.store.reset(id).await?;
        forget_rules_state(&self.settings.data_dir, id);
        self.store.clear_snapshot(id).await
    }

    pub fn task(&self, id: &str) -> Option<TaskHandle> {
        self.registry().get(id).cloned()
    }

    pub fn tasks(&self) -> Vec<TaskHandle> {
        self.registry().values().cloned().collect()
    }

    /// Stops every task (draining, each within the drain timeout) and waits
    /// up to `deadline` for their loops to end. Returns the tasks that did
    /// not drain: abandoned after the drain timeout, or still running.
    pub async fn shutdown(&self, deadline: Duration) -> Vec<String> {
        self.shutdown.cancel();
        self.tracker.close();
        let done = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        let mut out: Vec<String> = self
            .abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|id| format!("{id} (stopping)"))
            .collect();
        if !done {
            out.extend(
                self.tasks()
                    .into_iter()
                    .filter(|t| !t.state().is_idle())
                    .map(|t| format!("{} ({})", t.id(), t.state())),
            );
        }
        out.sort();
        out.dedup();
        out
    }

    /// Resolves once no task is starting, running or stopping (for `run
    /// --once`): every task completed, failed, stopped or paused.
    pub async fn all_idle(&self) {
        let tasks = self.tasks();
        for t in tasks {
            let mut rx = t.subscribe();
            let _ = rx.wait_for(|s| s.state.is_idle()).await;
        }
    }
}

/// Removes what a task's processing rules kept of its shard merges: it
/// counts the schema changes read since the committed position, which a
/// task starting over reads again.
pub fn forget_rules_state(data_dir: &std::path::Path, id: &str) {
    let path = data_dir.join("rules").join(format!("{id}.json"));
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(task = id, path = %path.display(), error = %e, "removing the processing rules' merge state failed: remove it by hand before the task starts again");
    }
}
