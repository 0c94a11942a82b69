//! Sinks: make batches of events durable and report how far they are.
//!
//! Contract: `write` returns only when every event of the batches is durable
//! in the target. Sinks must tolerate replays of events they already hold
//! (the task skips what a sink reports as durable, but a sink without its
//! own position sees events again after a crash).

pub mod jsonl;

use crate::event::{Batch, Position};
pub use jsonl::JsonlSink;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sink file {path} can't be resumed: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("sink: {0}")]
    Internal(String),
}

/// The set of sinks (closed: no dynamic dispatch on the hot path).
pub enum AnySink {
    Jsonl(JsonlSink),
}

impl AnySink {
    pub async fn write(&mut self, batches: &[Batch]) -> Result<(), SinkError> {
        match self {
            AnySink::Jsonl(s) => s.write(batches).await,
        }
    }

    /// The sink's own durable position, when it keeps one.
    pub fn durable_position(&self) -> Option<Position> {
        match self {
            AnySink::Jsonl(s) => s.durable_position().cloned(),
        }
    }
}
