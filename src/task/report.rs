//! The daemon's status file, `<data_dir>/status.json`: every task's state,
//! history and progress, rewritten every second (atomically), so that
//! `tidemark status` and monitoring scripts can read it while the daemon
//! runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ProgressSnapshot, Supervisor, TaskStatus};

/// How often the file is rewritten.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The file's content.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// When it was written (ms since the epoch).
    pub written_at_ms: i64,
    /// The daemon's process id.
    pub pid: u32,
    pub tasks: Vec<TaskReport>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TaskReport {
    pub id: String,
    /// One line: state, retry, error.
    pub summary: String,
    pub status: serde_json::Value,
    pub progress: serde_json::Value,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("status.json")
}

fn report(sup: &Supervisor) -> Report {
    Report {
        written_at_ms: crate::store::now_ms(),
        pid: std::process::id(),
        tasks: sup
            .tasks()
            .into_iter()
            .map(|t| {
                let status: TaskStatus = t.status();
                let progress: ProgressSnapshot = t.progress();
                TaskReport {
                    id: t.id().to_string(),
                    summary: status.summary(),
                    status: serde_json::to_value(&status).unwrap_or_default(),
                    progress: serde_json::to_value(&progress).unwrap_or_default(),
                }
            })
            .collect(),
    }
}

/// Writes the report now (temporary file, then rename).
pub fn write(sup: &Supervisor, data_dir: &Path) -> std::io::Result<()> {
    let r = report(sup);
    let bytes = serde_json::to_vec_pretty(&r).map_err(std::io::Error::other)?;
    let tmp = data_dir.join(".status.json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path(data_dir))
}

/// Rewrites the report every [`EVERY`] until `stop`.
pub async fn run(
    sup: std::sync::Arc<Supervisor>,
    data_dir: PathBuf,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut failing = false;
    loop {
        let d = data_dir.clone();
        let s = sup.clone();
        let r = tokio::task::spawn_blocking(move || write(&s, &d)).await;
        match r {
            Ok(Err(e)) if !failing => {
                tracing::warn!(path = %path(&data_dir).display(), error = %e, "can't write the status file");
                failing = true;
            }
            Ok(Ok(())) => failing = false,
            _ => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Reads the report a running (or the last) daemon wrote.
pub fn read(data_dir: &Path) -> std::io::Result<Report> {
    let bytes = std::fs::read(path(data_dir))?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}
