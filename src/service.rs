//! The daemon as a service: systemd readiness, status and watchdog
//! (`Type=notify`), and configuration reload on SIGHUP.
//!
//! - `READY=1` once every task is registered and the API listens;
//!   `STATUS=` says how many tasks run, are paused, failed; `STOPPING=1`
//!   at shutdown; `RELOADING=1` while a reload applies.
//! - With `WatchdogSec=` set, `WATCHDOG=1` is sent at half the period by
//!   the loop that also reads every task's state: a daemon whose runtime
//!   is stuck stops sending it, and systemd restarts it.
//! - Without systemd (`NOTIFY_SOCKET` unset) all of it is a no-op.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, TaskConfig};
use crate::task::{Supervisor, TaskState};

/// Tells systemd the daemon is ready.
pub fn ready(sup: &Supervisor) {
    let status = status_line(sup);
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("draining tasks")]);
}

/// `3 tasks: 2 running, 1 paused` (failed ones named).
pub fn status_line(sup: &Supervisor) -> String {
    let tasks = sup.tasks();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    for t in &tasks {
        let s = t.state();
        *counts.entry(s.name()).or_default() += 1;
        if s == TaskState::Failed {
            failed.push(t.id().to_string());
        }
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let mut line = format!("{} tasks: {}", tasks.len(), parts.join(", "));
    if !failed.is_empty() {
        line.push_str(&format!(" (failed: {})", failed.join(", ")));
    }
    line
}

/// Sends `STATUS=` when it changes and `WATCHDOG=1` at half the watchdog
/// period, until `stop`.
pub async fn heartbeat(sup: Arc<Supervisor>, stop: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled();
    let every = watchdog
        .map(|w| (w / 2).max(Duration::from_millis(100)))
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let line = status_line(&sup);
        let mut states = Vec::new();
        if line != last {
            last = line;
            states.push(NotifyState::Status(&last));
        }
        if watchdog.is_some() {
            states.push(NotifyState::Watchdog);
        }
        if !states.is_empty() {
            let _ = sd_notify::notify(&states);
        }
    }
}

/// Applies the config file again: tasks added are started, removed ones
/// stopped (drained) and removed, changed ones stopped and started with
/// the new definition (from their committed position); the others are
/// not touched. Daemon settings need a restart (said in the log). On an
/// invalid file nothing changes.
pub async fn reload(path: &Path, sup: &Supervisor, current: &mut Vec<TaskConfig>, daemon: &Config) {
    let _ = sd_notify::notify(&[NotifyState::Reloading]);
    match Config::load(path) {
        Err(e) => {
            error!(error = %e, "SIGHUP: the config file is invalid; nothing changed");
        }
        Ok(new) => {
            if format!("{:?}", new.daemon) != format!("{:?}", daemon.daemon) {
                warn!("SIGHUP: [daemon] settings changed; they apply at the next restart");
            }
            let fingerprint = |t: &TaskConfig| format!("{t:?}");
            let old: BTreeMap<String, String> = current
                .iter()
                .map(|t| (t.id.clone(), fingerprint(t)))
                .collect();
            let mut applied = Vec::new();
            for t in &new.tasks {
                match old.get(&t.id) {
                    Some(f) if *f == fingerprint(t) => applied.push(t.clone()),
                    Some(_) => {
                        info!(task = %t.id, "SIGHUP: the task changed: restarting it with the new definition");
                        let prev = current.iter().find(|c| c.id == t.id).cloned();
                        if let Some(kept) = replace(sup, t.clone(), prev).await {
                            applied.push(kept);
                        }
                    }
                    None => match sup.add(t.clone(), true) {
                        Ok(_) => {
                            info!(task = %t.id, "SIGHUP: task added");
                            applied.push(t.clone());
                        }
                        Err(e) => {
                            error!(task = %t.id, error = %e, "SIGHUP: the task can't be added")
                        }
                    },
                }
            }
            for t in current.iter() {
                if !new.tasks.iter().any(|n| n.id == t.id) {
                    info!(task = %t.id, "SIGHUP: task removed from the config: stopping it");
                    if let Err(e) = stop_and_remove(sup, &t.id).await {
                        error!(task = %t.id, error = %e, "SIGHUP: the task can't be removed");
                        applied.push(t.clone());
                    }
                }
            }
            *current = applied;
        }
    }
    ready(sup);
}

async fn stop_and_remove(sup: &Supervisor, id: &str) -> Result<(), crate::task::ControlError> {
    if let Some(t) = sup.task(id)
        && !t.state().is_idle()
    {
        t.stop().await?;
    }
    sup.remove(id).await
}

/// Stops and removes the task, then adds it again as `cfg` (or, if `cfg`
/// is refused, as `prev`). Returns the definition that runs.
async fn replace(
    sup: &Supervisor,
    cfg: TaskConfig,
    prev: Option<TaskConfig>,
) -> Option<TaskConfig> {
    let id = cfg.id.clone();
    let was_paused = sup
        .task(&id)
        .is_some_and(|t| t.state() == TaskState::Paused);
    if let Err(e) = stop_and_remove(sup, &id).await {
        error!(task = %id, error = %e, "SIGHUP: the task can't be stopped to apply its new definition");
        return prev;
    }
    let initial = if was_paused {
        crate::task::Initial::Paused
    } else {
        crate::task::Initial::Start
    };
    match sup.add_as(cfg.clone(), initial) {
        Ok(_) => Some(cfg),
        Err(e) => {
            error!(task = %id, error = %e, "SIGHUP: the new definition can't be added; the previous one runs again");
            let prev = prev?;
            sup.add_as(prev.clone(), initial).ok().map(|_| prev)
        }
    }
}
