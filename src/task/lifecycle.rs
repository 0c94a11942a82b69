//! One task's lifecycle loop: runs the task ([`super::runner`]), obeys
//! its control requests, and owns its retry policy (see the supervisor's
//! module docs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::handle::{Command, ControlError, PrecheckPhase, Reply};
use super::progress::Progress;
use super::runner::{self, RunContext, RunEnd};
use super::state::{RetryInfo, TaskState, TaskStatus};
use super::supervisor::SupervisorSettings;
use super::{TaskError, builder, later};
use crate::config::TaskConfig;
use crate::error::{Classify, chain};
use crate::retry::Backoff;
use crate::store::{OffsetStore, now_ms};

/// One task's supervisor loop.
pub(super) struct TaskLoop {
    pub(super) cfg: TaskConfig,
    pub(super) store: Arc<dyn OffsetStore>,
    pub(super) settings: SupervisorSettings,
    pub(super) status: watch::Sender<TaskStatus>,
    pub(super) config: watch::Sender<Arc<TaskConfig>>,
    pub(super) progress: Arc<Progress>,
    pub(super) commands: mpsc::Receiver<(Command, Reply)>,
    pub(super) shutdown: CancellationToken,
    pub(super) abandoned: Arc<Mutex<Vec<String>>>,
    /// The DDL statement the task paused at (database targets, `pause`
    /// policy), and the one an operator resumed it at (applied next run).
    pub(super) waiting_ddl: Option<crate::event::Position>,
    pub(super) approved_ddl: Option<crate::event::Position>,
}

/// What the loop does next.
enum Next {
    /// Wait in an idle state for a request.
    Idle,
    /// Start a run.
    Run,
    /// Wait `delay`, then run again (a transient failure).
    Retry(Duration),
    /// The daemon is shutting down.
    Exit,
    /// The task was removed: the loop ends as it is.
    Gone,
}

/// The state a stop request leads to, and who waits for it.
struct Stopping {
    target: TaskState,
    replies: Vec<Reply>,
    note: &'static str,
}

impl TaskLoop {
    fn set(&self, state: TaskState, note: Option<String>) {
        if let Some(n) = &note {
            info!(task = %self.cfg.id, state = %state, note = %n, "task state");
        } else {
            info!(task = %self.cfg.id, state = %state, "task state");
        }
        self.status.send_modify(|s| s.enter(state, note));
    }

    fn state(&self) -> TaskState {
        self.status.borrow().state
    }

    fn refuse(&self, cmd: &Command, allowed: &'static str) -> ControlError {
        ControlError::NotAllowed {
            task: self.cfg.id.clone(),
            action: cmd.name(),
            state: self.state(),
            allowed,
        }
    }

    pub(super) async fn run(mut self, start: bool) {
        let mut next = if start { Next::Run } else { Next::Idle };
        let mut backoff = Backoff::default();
        loop {
            next = match next {
                Next::Exit => {
                    if !matches!(
                        self.state(),
                        TaskState::Stopped | TaskState::Completed | TaskState::Failed
                    ) {
                        self.status.send_modify(|s| s.retry = None);
                        self.set(TaskState::Stopped, Some("daemon shutdown".into()));
                    }
                    return;
                }
                Next::Gone => return,
                Next::Idle => self.idle().await,
                Next::Retry(delay) => self.wait_retry(delay).await,
                Next::Run => self.run_once(&mut backoff).await,
            };
        }
    }

    /// Waits in an idle state (created, paused, stopped, completed, failed)
    /// for a request.
    async fn idle(&mut self) -> Next {
        loop {
            let req = tokio::select! {
                _ = self.shutdown.cancelled() => return Next::Exit,
                r = self.commands.recv() => r,
            };
            let Some((cmd, reply)) = req else {
                return Next::Exit;
            };
            let state = self.state();
            let r = match (&cmd, state) {
                (Command::Skip(skip), _) => {
                    let r = self.skip(skip).await;
                    if r.is_ok() && state == TaskState::Failed {
                        // The failure was most likely that transaction: try again.
                        let _ = reply.send(r);
                        return Next::Run;
                    }
                    r
                }
                (Command::Start, TaskState::PrecheckFailed) => Err(self.refuse(
                    &cmd,
                    "created, ready, stopped, failed or completed; after a failed pre-check, run it again once the failing items are fixed (or force the start)",
                )),
                (
                    Command::Precheck(phase),
                    TaskState::Created
                    | TaskState::Prechecking
                    | TaskState::Ready
                    | TaskState::PrecheckFailed,
                ) => {
                    let (next, note) = match phase {
                        PrecheckPhase::Started => (TaskState::Prechecking, None),
                        PrecheckPhase::Passed => (TaskState::Ready, None),
                        PrecheckPhase::Failed(why) => {
                            (TaskState::PrecheckFailed, Some(why.clone()))
                        }
                    };
                    self.set(next, note);
                    Ok(())
                }
                // A task past its first start keeps its state.
                (Command::Precheck(_), _) => Ok(()),
                (Command::Start | Command::ForceStart, _)
                | (Command::Resume, TaskState::Paused | TaskState::Failed) => {
                    if matches!(cmd, Command::Resume)
                        && let Some(p) = self.waiting_ddl.take()
                    {
                        info!(task = %self.cfg.id, position = %p, "resumed at a DDL statement: it is applied");
                        self.approved_ddl = Some(p);
                    }
                    self.status.send_modify(|s| s.retry = None);
                    let _ = reply.send(Ok(()));
                    return Next::Run;
                }
                (Command::Resume, _) => Err(self.refuse(&cmd, "paused or failed")),
                (Command::Pause, TaskState::Paused) => Ok(()),
                (Command::Pause, _) => Err(self.refuse(&cmd, "starting or running")),
                (Command::Complete, TaskState::Completed) => Ok(()),
                (Command::Complete, _) => {
                    self.set(
                        TaskState::Completed,
                        Some("completed by the operator".into()),
                    );
                    self.release_slot().await;
                    Ok(())
                }
                (Command::Stop, TaskState::Stopped) => Ok(()),
                (Command::Stop, _) => {
                    self.set(TaskState::Stopped, Some("stop requested".into()));
                    Ok(())
                }
                (Command::Modify(change), _) => self.modify(change),
                (Command::Snapshot(tables), _) => self.record_snapshot(tables).await,
                (Command::Remove, _) => {
                    info!(task = %self.cfg.id, "task removed");
                    let _ = reply.send(Ok(()));
                    return Next::Gone;
                }
            };
            let _ = reply.send(r);
        }
    }

    /// A completed task keeps no WAL on a PostgreSQL server: its slot goes.
    async fn release_slot(&self) {
        if let crate::config::SourceConfig::Postgres(p) = &self.cfg.source {
            match crate::source::postgres::drop_slot(p, &self.cfg.id, false).await {
                Ok(message) => info!(task = %self.cfg.id, "{message}"),
                Err(e) => {
                    warn!(task = %self.cfg.id, error = %chain(&e), "the task is complete but its replication slot could not be dropped: drop it with `tidemark slot drop`")
                }
            }
        }
    }

    /// Checks that a re-snapshot names tables the task selects.
    fn check_snapshot(&self, tables: &[String]) -> Result<(), ControlError> {
        let filter = builder::filter(&self.cfg).map_err(|e| ControlError::Invalid {
            task: self.cfg.id.clone(),
            key: "filter".into(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ControlError::Invalid {
            task: self.cfg.id.clone(),
            key: "tables".into(),
            message,
        };
        if tables.is_empty() {
            return Err(invalid("name at least one table".into()));
        }
        for t in tables {
            let Some((db, name)) = t.split_once('.') else {
                return Err(invalid(format!(
                    "{t:?} is not a table name: use db.table (MySQL/MariaDB) or schema.table (PostgreSQL)"
                )));
            };
            if !filter.selects(db, name) {
                return Err(invalid(format!(
                    "{t} is not selected by the task's filter: include it first (modify the filter)"
                )));
            }
        }
        Ok(())
    }

    /// Records a re-snapshot for a task that isn't running: its tables are
    /// copied when it next runs.
    async fn record_snapshot(&mut self, tables: &[String]) -> Result<(), ControlError> {
        self.check_snapshot(tables)?;
        let store_err = |e: crate::store::StoreError| ControlError::Invalid {
            task: self.cfg.id.clone(),
            key: "store".into(),
            message: chain(&e),
        };
        let mut p = self
            .store
            .snapshot(&self.cfg.id)
            .await
            .map_err(store_err)?
            .unwrap_or_default();
        for t in tables {
            p.tables
                .insert(t.clone(), crate::store::TableSnapshot::default());
        }
        self.store
            .save_snapshot(&self.cfg.id, &p)
            .await
            .map_err(store_err)?;
        self.status
            .send_modify(|s| s.note(format!("snapshot of {} requested", tables.join(", "))));
        Ok(())
    }

    /// Records a skipped transaction (see `TaskHandle::skip_transaction`).
    async fn skip(&mut self, skip: &crate::store::Skip) -> Result<(), ControlError> {
        if skip.position.parse::<crate::event::Position>().is_err() {
            return Err(ControlError::Invalid {
                task: self.cfg.id.clone(),
                key: "transaction".into(),
                message: format!(
                    "{:?} is not a position: give it as the error printed it, e.g. binlog:mysql-bin.000001:65447:*",
                    skip.position
                ),
            });
        }
        self.store
            .add_skip(&self.cfg.id, skip)
            .await
            .map_err(|e| ControlError::Conflict {
                task: self.cfg.id.clone(),
                message: format!("recording the skip failed: {}", chain(&e)),
            })?;
        let note = format!(
            "transaction {} skipped on request: {}",
            skip.position, skip.reason
        );
        warn!(task = %self.cfg.id, %note, "skip recorded");
        self.status.send_modify(|s| s.note(note));
        Ok(())
    }

    fn modify(&mut self, change: &super::TaskChange) -> Result<(), ControlError> {
        let mut new = change.apply_to(&self.cfg);
        new.resolve(&self.settings.data_dir);
        new.validate()
            .map_err(|(key, message)| ControlError::Invalid {
                task: self.cfg.id.clone(),
                key,
                message,
            })?;
        let mut what = Vec::new();
        if change.filter.is_some() {
            what.push("filter");
        }
        if change.ddl.is_some() {
            what.push("ddl");
        }
        if change.format.is_some() {
            what.push("format");
        }
        if change.rules.is_some() {
            what.push("rules");
        }
        if change.conflict.is_some() {
            if !matches!(
                self.cfg.sink,
                crate::config::SinkConfig::Mysql(_) | crate::config::SinkConfig::Postgres(_)
            ) {
                return Err(ControlError::Invalid {
                    task: self.cfg.id.clone(),
                    key: "conflict".into(),
                    message:
                        "the conflict policy is a database target's: this task's sink is not one"
                            .into(),
                });
            }
            what.push("conflict");
        }
        if change.name.is_some() {
            what.push("name");
        }
        if change.description.is_some() {
            what.push("description");
        }
        if change.notify.is_some() {
            what.push("notify");
        }
        self.cfg = new;
        self.config.send_replace(Arc::new(self.cfg.clone()));
        let note = format!("modified: {}", what.join(", "));
        info!(task = %self.cfg.id, %note, "task modified");
        self.status.send_modify(|s| s.note(note));
        Ok(())
    }

    /// Waits out a retry delay; requests are served meanwhile (a pause or
    /// stop needs no drain: nothing runs).
    async fn wait_retry(&mut self, delay: Duration) -> Next {
        let until = tokio::time::Instant::now() + delay;
        loop {
            let req = tokio::select! {
                _ = self.shutdown.cancelled() => return Next::Exit,
                _ = tokio::time::sleep_until(until) => return Next::Run,
                r = self.commands.recv() => r,
            };
            let Some((cmd, reply)) = req else {
                return Next::Exit;
            };
            let r = match &cmd {
                Command::Start | Command::Resume => {
                    let _ = reply.send(Ok(()));
                    return Next::Run;
                }
                Command::Pause | Command::Stop | Command::Complete => {
                    let target = match cmd {
                        Command::Pause => TaskState::Paused,
                        Command::Complete => TaskState::Completed,
                        _ => TaskState::Stopped,
                    };
                    let error = self
                        .status
                        .borrow()
                        .retry
                        .as_ref()
                        .map(|r| r.last_error.clone());
                    self.status.send_modify(|s| {
                        s.retry = None;
                        s.error = error;
                    });
                    self.set(
                        target,
                        Some(format!("{} requested while retrying", cmd.name())),
                    );
                    let _ = reply.send(Ok(()));
                    return Next::Idle;
                }
                Command::Modify(change) if change.metadata_only() => self.modify(change),
                Command::Modify(_) | Command::Skip(_) => {
                    Err(self.refuse(&cmd, "created, paused, stopped or failed"))
                }
                Command::Remove => Err(self.refuse(
                    &cmd,
                    "created, paused, stopped, completed or failed (stop it first)",
                )),
                Command::Precheck(_) => Ok(()),
                Command::ForceStart => {
                    let _ = reply.send(Ok(()));
                    return Next::Run;
                }
                Command::Snapshot(tables) => self.record_snapshot(tables).await,
            };
            let _ = reply.send(r);
        }
    }

    /// One run of the task, and what comes after it.
    async fn run_once(&mut self, backoff: &mut Backoff) -> Next {
        if self.state() != TaskState::Running {
            self.set(TaskState::Starting, None);
        }
        let stop = CancellationToken::new();
        let (snapshots, requests) = crate::source::snapshot::SnapshotControl::new();
        let mut run: JoinHandle<Result<RunEnd, TaskError>> = tokio::spawn(run_task(
            self.cfg.clone(),
            self.store.clone(),
            self.progress.clone(),
            self.status.clone(),
            stop.clone(),
            requests,
            self.approved_ddl.clone(),
        ));
        let started = tokio::time::Instant::now();
        let commits_at_start = self
            .progress
            .commits
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut stopping: Option<Stopping> = None;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        let mut health_check = tokio::time::interval(Duration::from_secs(1));
        let outcome = loop {
            tokio::select! {
                r = &mut run => break Some(r.unwrap_or_else(|e| Err(TaskError::Config(format!(
                    "the task's run ended abnormally ({e}); please report this with the log"
                ))))),
                _ = self.shutdown.cancelled(), if stopping.is_none() => {
                    stop.cancel();
                    drain_deadline = Some(tokio::time::Instant::now() + self.settings.drain_timeout);
                    self.set(TaskState::Stopping, Some("daemon shutdown".into()));
                    stopping = Some(Stopping { target: TaskState::Stopped, replies: Vec::new(), note: "daemon shutdown" });
                }
                _ = async { tokio::time::sleep_until(drain_deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if drain_deadline.is_some() => {
                    run.abort();
                    let _ = (&mut run).await;
                    break None;
                }
                _ = health_check.tick(), if self.status.borrow().retry.is_some() => {
                    let commits = self.progress.commits.load(std::sync::atomic::Ordering::Relaxed);
                    if commits > commits_at_start || started.elapsed() >= self.settings.healthy_after {
                        info!(task = %self.cfg.id, "recovered");
                        self.status.send_modify(|s| {
                            s.retry = None;
                            s.note("recovered".into());
                        });
                        self.progress.set_error(None);
                        backoff.reset();
                    }
                }
                req = self.commands.recv() => {
                    let Some((cmd, reply)) = req else { continue };
                    match cmd {
                        Command::Pause | Command::Stop | Command::Complete => {
                            let target = match cmd {
                                Command::Pause => TaskState::Paused,
                                Command::Complete => TaskState::Completed,
                                _ => TaskState::Stopped,
                            };
                            match &mut stopping {
                                Some(s) => {
                                    // A stop or a completion outranks a
                                    // pause in progress.
                                    if target != TaskState::Paused {
                                        s.target = target;
                                    }
                                    s.replies.push(reply);
                                }
                                None => {
                                    stop.cancel();
                                    drain_deadline = Some(tokio::time::Instant::now() + self.settings.drain_timeout);
                                    let note = match target {
                                        TaskState::Paused => "pause requested",
                                        TaskState::Completed => "completion requested",
                                        _ => "stop requested",
                                    };
                                    self.set(TaskState::Stopping, Some(note.into()));
                                    stopping = Some(Stopping { target, replies: vec![reply], note });
                                }
                            }
                        }
                        Command::Precheck(_) => {
                            let _ = reply.send(Ok(()));
                        }
                        Command::Modify(change) if change.metadata_only() => {
                            let _ = reply.send(self.modify(&change));
                        }
                        Command::Snapshot(tables) => {
                            let r = self.check_snapshot(&tables).map(|()| {
                                if !snapshots.request(tables.clone()) {
                                    warn!(task = %self.cfg.id, "the run ended before the snapshot request reached it");
                                }
                                self.status.send_modify(|s| s.note(format!("snapshot of {} requested", tables.join(", "))));
                            });
                            let _ = reply.send(r);
                        }
                        cmd => {
                            let allowed = match cmd {
                                Command::Modify(_) | Command::Skip(_) => "created, paused, stopped or failed",
                                Command::Resume => "paused or failed (or running while a failure is retried: it retries at once)",
                                Command::Remove => "created, paused, stopped, completed or failed (stop it first)",
                                _ => "created, paused, stopped, completed or failed",
                            };
                            let _ = reply.send(Err(self.refuse(&cmd, allowed)));
                        }
                    }
                }
            }
        };
        if let Some(s) = stopping {
            let note = match &outcome {
                Some(Ok(_)) => format!("{}: drained", s.note),
                Some(Err(e)) => format!("{}: the drain failed: {}", s.note, chain(e)),
                None => {
                    if self.shutdown.is_cancelled() {
                        self.abandoned
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(self.cfg.id.clone());
                    }
                    let committed = self.progress.snapshot().committed_position;
                    warn!(task = %self.cfg.id, timeout_secs = self.settings.drain_timeout.as_secs(), "the drain did not finish in time: abandoned (what was not durable is read again next time)");
                    format!(
                        "{}: the drain did not finish within {} s and was abandoned; committed up to {}",
                        s.note,
                        self.settings.drain_timeout.as_secs(),
                        committed.as_deref().unwrap_or("(nothing)")
                    )
                }
            };
            self.status.send_modify(|st| st.retry = None);
            self.set(s.target, Some(note));
            if s.target == TaskState::Completed {
                self.release_slot().await;
            }
            for r in s.replies {
                let _ = r.send(Ok(()));
            }
            return if self.shutdown.is_cancelled() {
                Next::Exit
            } else {
                Next::Idle
            };
        }
        match outcome {
            Some(Ok(RunEnd::Finished)) => {
                self.set(TaskState::Completed, None);
                Next::Idle
            }
            Some(Ok(RunEnd::Stopped)) => Next::Idle,
            Some(Err(e)) => self.failed_run(&e, backoff),
            None => Next::Idle,
        }
    }

    /// A run ended with `e`: retry or fail.
    fn failed_run(&mut self, e: &TaskError, backoff: &mut Backoff) -> Next {
        let text = chain(e);
        if let Some(at) = e.ddl_pause() {
            // Not a failure: the task waits for an operator at a DDL.
            warn!(task = %self.cfg.id, position = %at, note = %text, "paused at a DDL statement");
            self.waiting_ddl = Some(at.clone());
            self.status.send_modify(|s| s.retry = None);
            self.set(TaskState::Paused, Some(text));
            return Next::Idle;
        }
        self.progress.set_error(Some(text.clone()));
        let now = now_ms();
        let series_since = self
            .status
            .borrow()
            .retry
            .as_ref()
            .map_or(now, |r| r.since_ms);
        let persisted = Duration::from_millis((now - series_since).max(0) as u64);
        let gave_up = e.give_up_after().is_some_and(|d| persisted >= d);
        if e.is_transient() && !gave_up {
            let delay = backoff.next_delay();
            let attempt = self
                .status
                .borrow()
                .retry
                .as_ref()
                .map_or(1, |r| r.attempt + 1);
            warn!(task = %self.cfg.id, error = %text, attempt, retry_in_ms = delay.as_millis() as u64, "task interrupted; restarting");
            self.progress
                .restarts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let info = RetryInfo {
                since_ms: series_since,
                attempt,
                last_error: text.clone(),
                next_attempt_ms: now + delay.as_millis() as i64,
            };
            self.status.send_modify(|s| {
                s.retry = Some(info);
                s.note(format!("attempt {attempt} failed: {text}"));
            });
            if self.state() != TaskState::Running {
                self.set(TaskState::Running, Some("retrying".into()));
            }
            return Next::Retry(delay);
        }
        let message = if gave_up {
            format!(
                "{text} (still failing after {} s: treated as a configuration problem)",
                persisted.as_secs()
            )
        } else {
            text
        };
        error!(task = %self.cfg.id, error = %message, "task failed");
        self.status.send_modify(|s| {
            s.retry = None;
            s.error = Some(message.clone());
        });
        self.set(TaskState::Failed, Some(message));
        Next::Idle
    }
}

/// True when a new task starts at the source's log end as it is when the
/// reader connects (a MySQL/MariaDB `start = "current"`, a new PostgreSQL
/// slot), not at a configured point.
fn starts_at_log_end(cfg: &TaskConfig) -> bool {
    use crate::config::{NamedStart, SourceConfig, StartPosition};
    match &cfg.source {
        SourceConfig::Mysql(m) => matches!(
            m.start,
            StartPosition::Current | StartPosition::Named(NamedStart::Current)
        ),
        SourceConfig::Postgres(_) => true,
    }
}

/// Enters `running` (from `starting`) once `started` shows a read
/// position, at once without it. Nothing when the run stops or its
/// reader ends first: the runner reports how.
async fn announce_running(
    status: watch::Sender<TaskStatus>,
    id: String,
    started: Option<watch::Receiver<Option<crate::event::Position>>>,
    stop: CancellationToken,
) {
    if let Some(mut started) = started {
        tokio::select! {
            r = started.wait_for(Option::is_some) => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
    let entered = status.send_if_modified(|s| {
        let starting = s.state == TaskState::Starting;
        if starting {
            s.enter(TaskState::Running, None);
        }
        starting
    });
    if entered {
        info!(task = %id, state = "running", "task state");
    }
}

/// One run: opens the sink, works out where to resume, spawns the source,
/// and runs until stopped, finished or failed.
async fn run_task(
    cfg: TaskConfig,
    store: Arc<dyn OffsetStore>,
    progress: Arc<Progress>,
    status: watch::Sender<TaskStatus>,
    stop: CancellationToken,
    requests: tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
    approved_ddl: Option<crate::event::Position>,
) -> Result<RunEnd, TaskError> {
    let id = cfg.id.clone();
    let mut stage = builder::stage(&cfg)?;
    let stored = store.load(&id).await.map_err(TaskError::Store)?;
    let reset = store.was_reset(&id).await.map_err(TaskError::Store)?;
    let mut sink = builder::open_sink(&cfg, approved_ddl).await?;
    // After `offsets reset` the sink's own position is stale by intent.
    let sink_position = if reset {
        None
    } else {
        crate::sink::Sink::durable_position(&sink)
    };
    let stored_position = stored.map(|c| c.position);
    progress.on_run_start(stored_position.as_ref());
    let resume = later(stored_position, sink_position).map_err(TaskError::Config)?;
    info!(task = %id, resume = %resume.as_ref().map_or("(new task)".to_string(), |p| p.to_string()), "starting");
    let skips = store.skips(&id).await.map_err(TaskError::Store)?;
    let skip_positions = skips
        .iter()
        .filter_map(|k| k.position.parse().ok())
        .collect();
    let stream = builder::spawn_source(
        &cfg,
        resume.clone(),
        skip_positions,
        progress.source.clone(),
    )?;
    // A new task starting at the log's current end is running once that
    // end is fixed (the reader's first read position): a change committed
    // after the state says so is in it. The runner starts meanwhile (the
    // reader waits for it once its channel is full).
    let started = (resume.is_none() && starts_at_log_end(&cfg)).then(|| stream.read_to());
    let mut source = builder::snapshot_source(
        &cfg,
        stream,
        resume,
        store.clone(),
        progress.snapshot.clone(),
        requests,
    )
    .await?;
    let _announce = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(announce_running(
        status.clone(),
        id.clone(),
        started,
        stop.clone(),
    )));
    let end = runner::run(
        &mut source,
        &mut sink,
        RunContext {
            task: &id,
            store: store.as_ref(),
            progress: &progress,
            stage: &mut stage,
            stop,
        },
    )
    .await?;
    if end == RunEnd::Finished
        && cfg.mode == crate::config::TaskMode::Snapshot
        && let crate::config::SourceConfig::Postgres(p) = &cfg.source
    {
        // A one-shot copy needs its slot no more, and a slot left behind
        // keeps WAL on the server forever.
        match crate::source::postgres::drop_slot(p, &id, false).await {
            Ok(message) => info!(task = %id, "{message}"),
            Err(e) => {
                warn!(task = %id, error = %chain(&e), "the copy is complete but its replication slot could not be dropped: drop it with `tidemark slot drop`")
            }
        }
    }
    Ok(end)
}
