//! Sinks: make batches of events durable and report how far they are.
//!
//! Contract: `submit` starts making a group of batches durable and returns
//! once every group submitted before it is durable; `flush` returns once
//! everything submitted is durable. A group's positions may be acknowledged
//! only after one of those returns. Sinks must tolerate replays of events they already hold (the
//! task skips what a sink reports as durable, but a sink without its own
//! position sees events again after a crash).

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
    /// Starts writing `batches`; returns once the groups submitted before are durable.
    pub async fn submit(&mut self, batches: &[Batch]) -> Result<(), SinkError> {
        match self {
            AnySink::Jsonl(s) => s.submit(batches).await,
        }
    }

    /// Waits until everything submitted is durable.
    pub async fn flush(&mut self) -> Result<(), SinkError> {
        match self {
            AnySink::Jsonl(s) => s.flush().await,
        }
    }

    /// The sink's own durable position, when it keeps one.
    pub fn durable_position(&self) -> Option<Position> {
        match self {
            AnySink::Jsonl(s) => s.durable_position().cloned(),
        }
    }
}
