//! Sinks: make groups of batches durable and report how far they are.
//!
//! - [`Sink`]: the contract the task runner relies on;
//! - [`jsonl`]: JSON lines to a file (exactly once) or stdout;
//! - [`kafka`]: change topics (exactly once across restarts);
//! - [`writer`]: the group-committing file writer the JSONL sink uses.

pub mod db;
pub mod jsonl;
pub mod kafka;
pub mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Classify, ErrorClass};
use crate::event::{Batch, Position};
pub use db::DbSink;
pub use jsonl::JsonlSink;
pub use kafka::KafkaSink;

/// A destination that makes change events durable.
///
/// The contract:
/// - [`Sink::submit`] takes a *group*: consecutive batches in source order
///   (see [`crate::source::Source`] for what a batch holds: whole
///   transactions, or a transaction split over consecutive batches, marked
///   by a batch `end` that is not a transaction end). It queues the group
///   and returns its *ticket*, 1, 2, 3, … in submission order. It may wait
///   while the sink's buffers are full (backpressure), never for
///   durability.
/// - A ticket is *durable* once every event of its group, and of every
///   group before it, survives a crash of tidemark and of the machine
///   (fsync, broker acknowledgement with `acks=all`, target commit).
///   [`Sink::durable`] reports the durable ticket as it advances; the
///   runner acknowledges a group's positions only then.
/// - [`Sink::durable_position`] is the position of the last event durable
///   in the sink *when it was opened*, for sinks that can read it back
///   (a file's last line, a target's position table); `None` otherwise. It
///   makes the sink authoritative for its own position: the task resumes
///   after the later of it and the committed offset.
/// - Sinks must tolerate replays: a sink without its own position sees the
///   events after the last committed offset again after a crash.
/// - Closing: [`Sink::flush`] waits for everything submitted; dropping a
///   sink must not block (a stalled broker or a frozen file system must not
///   hang the task's stop beyond its deadline): threads that may be stuck
///   are detached, and whatever was not durable is simply not acknowledged.
pub trait Sink: Send {
    /// Queues a group; returns its ticket.
    fn submit(&mut self, batches: &[Batch]) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Waits until the durable ticket advances; returns it. Cancel-safe.
    fn durable(&mut self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Waits until everything submitted is durable; returns the last ticket.
    fn flush(&mut self) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Releases the sink after a flush: waits for its threads to end
    /// (quickly, since nothing is queued). Not called when a stop timed
    /// out: then the sink is dropped, which never blocks.
    fn close(&mut self) -> impl Future<Output = ()> + Send;

    /// The sink's own durable position at open (see the trait docs).
    fn durable_position(&self) -> Option<Position>;

    /// Bytes handed to the destination so far (encoded events), for the
    /// task's progress.
    fn bytes_written(&self) -> u64;

    /// What the sink is, for messages: "JSONL sink".
    fn label(&self) -> &'static str;

    /// Conflicts met since the last call, per table: inserts, updates and
    /// deletes the destination disagreed with (database targets; none
    /// elsewhere).
    fn take_conflicts(&mut self) -> Vec<(String, [u64; 3])> {
        Vec::new()
    }
}

/// A sink failure, classed like every error (see [`crate::error`]).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A local file operation failed; `message` names the file and, for a
    /// full disk, the free space.
    #[error("{message}")]
    Io {
        message: String,
        class: ErrorClass,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The file can't be resumed from (it isn't ours, or is damaged).
    #[error("sink file {path} can't be resumed: {reason}")]
    Corrupt { path: String, reason: String },
    /// Another sink (or a run of this task still draining) holds the file.
    #[error(
        "sink file {path} is in use by another task or tidemark process{detail}: each task needs its own file"
    )]
    Locked { path: String, detail: String },
    /// The sink's own machinery stopped (a thread that ended).
    #[error("{0}")]
    Stopped(String),
    #[error(transparent)]
    Kafka(Box<kafka::KafkaSinkError>),
    #[error(transparent)]
    Database(Arc<db::DbSinkError>),
}

impl From<kafka::KafkaSinkError> for SinkError {
    fn from(e: kafka::KafkaSinkError) -> Self {
        SinkError::Kafka(Box::new(e))
    }
}

impl SinkError {
    /// An I/O failure of `what` on `path`: a full disk names the free space
    /// and is transient (the task recovers once space is freed).
    pub fn io(what: &str, path: &Path, e: std::io::Error) -> SinkError {
        let message = if crate::error::is_disk_full(&e) {
            crate::error::disk_full_message(&format!("{what} {}", path.display()), path)
        } else {
            format!("{what} {}", path.display())
        };
        SinkError::Io {
            message,
            class: crate::error::io_class(&e),
            source: Arc::new(e),
        }
    }
}

impl Classify for SinkError {
    fn class(&self) -> ErrorClass {
        match self {
            SinkError::Io { class, .. } => *class,
            SinkError::Corrupt { .. } => ErrorClass::Definite,
            // A previous run's writer may still be draining: retry.
            SinkError::Locked { .. } => ErrorClass::Transient,
            SinkError::Stopped(_) => ErrorClass::Transient,
            SinkError::Kafka(k) => k.class(),
            SinkError::Database(d) => d.class(),
        }
    }
}

/// The set of sinks (closed: no dynamic dispatch on the hot path).
// One sink per task: the variants' sizes don't matter.
#[allow(clippy::large_enum_variant)]
pub enum AnySink {
    Jsonl(JsonlSink),
    Kafka(KafkaSink),
    Database(DbSink),
}

impl Sink for AnySink {
    async fn submit(&mut self, batches: &[Batch]) -> Result<u64, SinkError> {
        match self {
            AnySink::Jsonl(s) => s.submit(batches).await,
            AnySink::Kafka(s) => Ok(s.submit(batches).await?),
            AnySink::Database(s) => s.submit(batches).await,
        }
    }

    async fn durable(&mut self) -> Result<u64, SinkError> {
        match self {
            AnySink::Jsonl(s) => s.durable().await,
            AnySink::Kafka(s) => Ok(s.durable().await?),
            AnySink::Database(s) => s.durable().await,
        }
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        match self {
            AnySink::Jsonl(s) => s.flush().await,
            AnySink::Kafka(s) => Ok(s.flush().await?),
            AnySink::Database(s) => s.flush().await,
        }
    }

    async fn close(&mut self) {
        match self {
            AnySink::Jsonl(s) => s.close().await,
            AnySink::Kafka(_) => {}
            AnySink::Database(s) => s.close().await,
        }
    }

    fn durable_position(&self) -> Option<Position> {
        match self {
            AnySink::Jsonl(s) => s.durable_position().cloned(),
            AnySink::Kafka(s) => s.durable_position(),
            AnySink::Database(s) => s.durable_position(),
        }
    }

    fn bytes_written(&self) -> u64 {
        match self {
            AnySink::Jsonl(s) => s.bytes_written(),
            AnySink::Kafka(s) => s.bytes_written(),
            AnySink::Database(s) => s.bytes_written(),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            AnySink::Jsonl(_) => "JSONL sink",
            AnySink::Kafka(_) => "Kafka sink",
            AnySink::Database(s) => s.label(),
        }
    }

    fn take_conflicts(&mut self) -> Vec<(String, [u64; 3])> {
        match self {
            AnySink::Database(s) => s.take_conflicts(),
            _ => Vec::new(),
        }
    }
}

/// The canonical form of a sink file's path, for comparing two spellings
/// (`out/./x.jsonl` and `out/x.jsonl`): the parent directory resolved when
/// it exists, else the path made absolute and cleaned of `.` components.
pub fn canonical_file_path(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut clean = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    match (clean.parent(), clean.file_name()) {
        (Some(dir), Some(name)) => match std::fs::canonicalize(dir) {
            Ok(d) => d.join(name),
            Err(_) => clean,
        },
        _ => clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_compare_equal() {
        let dir = std::env::temp_dir();
        let a = canonical_file_path(&dir.join("c1/./out.jsonl"));
        let b = canonical_file_path(&dir.join("c1/out.jsonl"));
        let c = canonical_file_path(&dir.join("c1/x/../out.jsonl"));
        assert_eq!(a, b);
        assert_eq!(b, c);
    }
}
