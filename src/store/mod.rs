//! The offset store: what each task must remember across restarts.
//!
//! Per task it holds
//! - the committed stream position ([`Committed`]): only ever a position
//!   the sink made durable, and it never moves backward (except through
//!   an explicit [`OffsetStore::reset`]);
//! - snapshot progress ([`SnapshotProgress`]): the stream position the
//!   snapshot hands off to and, per table, the chunks already copied, so
//!   that an interrupted snapshot resumes at its next chunk;
//! - ownership ([`Ownership`]): which daemon runs the task, with an epoch
//!   that grows at every claim (a fencing token for scale-out, where a
//!   networked store implements the same trait).
//!
//! The trait is async and object-safe (boxed futures), so that a store
//! reached over the network can implement it; the embedded store is
//! [`FileOffsetStore`], which runs its blocking calls off the runtime.

mod files;
mod lock;
mod migrate;
mod model;

use std::future::Future;
use std::pin::Pin;

pub use files::FileOffsetStore;
pub use lock::DataDirLock;
pub use model::{Committed, Ownership, Skip, SnapshotProgress, TableSnapshot};

use crate::error::{Classify, ErrorClass};
use crate::event::Position;

/// A store operation in flight.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error(
        "the data directory {path} is in use by another tidemark process{pid}: stop it first, or give this one another daemon.data_dir"
    )]
    Locked { path: String, pid: String },
    /// The data directory can't be created, locked or opened; `message`
    /// names the path and the real cause's remedy (permissions, space).
    #[error("{message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// The store of an earlier version can't be opened for migration.
    #[error("the old offset store at {path} (to migrate)")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("{what}")]
    Sled {
        what: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("stored {what} for task {task:?} is unreadable ({text:?}): {reason}")]
    Corrupt {
        task: String,
        what: &'static str,
        text: String,
        reason: String,
    },
    #[error(
        "the offset store at {path} has format {found}, newer than this tidemark understands ({supported}): run the tidemark version that wrote it"
    )]
    Format {
        path: String,
        found: String,
        supported: u32,
    },
    #[error("the blocking call failed: {0}")]
    Join(String),
}

impl StoreError {
    /// An I/O failure on the data directory `path`, with a message for
    /// its cause.
    pub fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> StoreError {
        use std::io::ErrorKind as K;
        let message = if crate::error::is_disk_full(&e) {
            crate::error::disk_full_message(what, path)
        } else if e.kind() == K::PermissionDenied {
            format!(
                "{what}: permission denied on {}: run tidemark as a user that may write there (the packaged service runs as `tidemark`), or change daemon.data_dir",
                path.display()
            )
        } else if e.kind() == K::ReadOnlyFilesystem {
            format!(
                "{what}: {} is on a read-only file system: change daemon.data_dir",
                path.display()
            )
        } else {
            format!("{what} ({})", path.display())
        };
        StoreError::Io { message, source: e }
    }
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Io { source, .. } => crate::error::io_class(source),
            StoreError::Sled { source, .. } | StoreError::Open { source, .. } => match source {
                sled::Error::Io(io) => crate::error::io_class(io),
                _ => ErrorClass::Definite,
            },
            StoreError::Join(_) => ErrorClass::Transient,
            StoreError::Locked { .. } | StoreError::Corrupt { .. } | StoreError::Format { .. } => {
                ErrorClass::Definite
            }
        }
    }
}

/// What tidemark keeps per task (see the module docs).
///
/// Contract: every write is durable before its future resolves; positions
/// never move backward.
pub trait OffsetStore: Send + Sync {
    /// The task's committed stream position.
    fn load(&self, task: &str) -> StoreFuture<'_, Option<Committed>>;
    /// Stores `pos` for `task`, durably. Monotonic: a position at or below
    /// the stored one is ignored.
    fn commit(&self, task: &str, pos: &Position) -> StoreFuture<'_, ()>;
    /// Forgets the task's position (`tidemark offsets reset`): the task
    /// starts again from its configured start, ignoring the position its
    /// sink holds, until its next commit.
    fn reset(&self, task: &str) -> StoreFuture<'_, ()>;
    /// True between a `reset` and the task's next commit.
    fn was_reset(&self, task: &str) -> StoreFuture<'_, bool>;
    /// Every task with a stored position.
    fn list(&self) -> StoreFuture<'_, Vec<(String, Committed)>>;

    /// Transactions the operator chose to skip (see [`Skip`]), oldest first.
    fn skips(&self, task: &str) -> StoreFuture<'_, Vec<Skip>>;
    /// Records a skip, durably; a position already recorded is kept once.
    fn add_skip(&self, task: &str, skip: &Skip) -> StoreFuture<'_, ()>;

    /// The task's snapshot progress, if a snapshot started.
    fn snapshot(&self, task: &str) -> StoreFuture<'_, Option<SnapshotProgress>>;
    /// Records snapshot progress, replacing what was stored: the task's
    /// source is its only writer, and moves a table back only to copy it
    /// again (a re-snapshot).
    fn save_snapshot(&self, task: &str, progress: &SnapshotProgress) -> StoreFuture<'_, ()>;
    /// Forgets the snapshot progress (a re-snapshot starts over).
    fn clear_snapshot(&self, task: &str) -> StoreFuture<'_, ()>;

    /// Who runs the task.
    fn owner(&self, task: &str) -> StoreFuture<'_, Option<Ownership>>;
    /// Claims the task for `node` until `expires_at_ms`, if it is unowned,
    /// already `node`'s, or its owner's claim expired. Returns the claim
    /// with its new epoch, or the current owner's when refused (`Err`
    /// inside `Ok`).
    fn claim(
        &self,
        task: &str,
        node: &str,
        expires_at_ms: i64,
    ) -> StoreFuture<'_, Result<Ownership, Ownership>>;
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
