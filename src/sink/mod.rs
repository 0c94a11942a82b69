//! Sinks: make batches of events durable and report how far they are.
//!
//! Contract: `submit` queues a group of batches and returns its ticket;
//! `durable` reports, asynchronously, the ticket up to which every group is
//! durable in the target; `flush` waits for everything. A group's positions
//! may be acknowledged only once its ticket is durable. Sinks must tolerate replays of events they already hold (the
//! task skips what a sink reports as durable, but a sink without its own
//! position sees events again after a crash).

pub mod jsonl;
pub mod kafka;
pub mod writer;

use crate::event::{Batch, Position};
pub use jsonl::JsonlSink;
pub use kafka::KafkaSink;

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
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSinkError),
}

/// The set of sinks (closed: no dynamic dispatch on the hot path).
// One sink per task: the variants' sizes don't matter.
#[allow(clippy::large_enum_variant)]
pub enum AnySink {
    Jsonl(JsonlSink),
    Kafka(KafkaSink),
}

impl AnySink {
    /// Queues a group of batches for writing; returns its ticket (1, 2, 3, …).
    /// May wait while the sink's buffers are full (backpressure), never on
    /// durability.
    pub async fn submit(&mut self, batches: &[Batch]) -> Result<u64, SinkError> {
        match self {
            AnySink::Jsonl(s) => s.submit(batches).await,
            AnySink::Kafka(s) => Ok(s.submit(batches).await?),
        }
    }

    /// Waits until the durable ticket advances and returns it: every group
    /// with a ticket up to it is durable. Cancel-safe.
    pub async fn durable(&mut self) -> Result<u64, SinkError> {
        match self {
            AnySink::Jsonl(s) => s.durable().await,
            AnySink::Kafka(s) => Ok(s.durable().await?),
        }
    }

    /// Waits until everything submitted is durable; returns the last ticket.
    pub async fn flush(&mut self) -> Result<u64, SinkError> {
        match self {
            AnySink::Jsonl(s) => s.flush().await,
            AnySink::Kafka(s) => Ok(s.flush().await?),
        }
    }

    /// The sink's own durable position at open, when it keeps one.
    pub fn durable_position(&self) -> Option<Position> {
        match self {
            AnySink::Jsonl(s) => s.durable_position().cloned(),
            AnySink::Kafka(s) => s.durable_position(),
        }
    }
}
