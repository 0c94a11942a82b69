//! Offset store: the committed position of each task.
//!
//! A position is committed only after the sink acknowledged that everything
//! up to it is durable; the store never moves a task's position backward.

mod sled_store;

pub use sled_store::SledOffsetStore;

use crate::event::Position;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("offset store at {path}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("offset store: {0}")]
    Io(#[from] sled::Error),
    #[error("offset store: stored position for task {task:?} is unreadable ({text:?}): {reason}")]
    Corrupt {
        task: String,
        text: String,
        reason: String,
    },
}

/// A committed position and when it was committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub position: Position,
    pub committed_at_ms: i64,
}

pub trait OffsetStore: Send + Sync {
    fn load(&self, task: &str) -> Result<Option<Committed>, StoreError>;
    /// Stores `pos` for `task` and makes it durable before returning.
    /// Monotonic: a position at or below the stored one is ignored.
    fn commit(&self, task: &str, pos: &Position) -> Result<(), StoreError>;
    /// Forgets the task's position (`tidemark offsets reset`): the task
    /// starts again from its configured start, ignoring the position its
    /// sink holds, until its next commit.
    fn reset(&self, task: &str) -> Result<(), StoreError>;
    /// True between a `reset` and the task's next commit.
    fn was_reset(&self, task: &str) -> Result<bool, StoreError>;
    /// Every task with a stored position.
    fn list(&self) -> Result<Vec<(String, Committed)>, StoreError>;
}
