//! Sources: tail a database log and hand batches of change events to the
//! task, in commit order, each event with its position.

pub mod mysql;
pub mod postgres;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::event::{Batch, Position};

/// The set of sources (closed: no dynamic dispatch).
pub enum AnySource {
    Mysql(mysql::MysqlSource),
    Postgres(postgres::PostgresSource),
}

impl AnySource {
    /// Reads the log until `cancel`, sending batches to `out`.
    ///
    /// `resume`: everything at or below it was delivered before (the
    /// committed offset or the sink's own position). `committed`: positions
    /// as the offset store commits them; a source may let its server discard
    /// log up to them (PostgreSQL's confirmed_flush_lsn), never further.
    pub async fn run(
        self,
        resume: Option<Position>,
        out: mpsc::Sender<Batch>,
        cancel: CancellationToken,
        committed: watch::Receiver<Option<Position>>,
    ) -> Result<(), SourceError> {
        match self {
            // The binlog is the server's to expire: nothing to release.
            AnySource::Mysql(s) => {
                drop(committed);
                s.run(resume, out, cancel).await
            }
            AnySource::Postgres(s) => s.run(resume, out, cancel, committed).await,
        }
    }
}

/// A source failure, classed for the retry loop: transient errors
/// (connection lost, server restarting) reconnect with backoff; definite
/// ones (misconfiguration, privileges, purged log, malformed data) stop the
/// task with the message shown to the operator.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Definite(String),
}

impl SourceError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Transient(_))
    }
}

/// Exponential backoff between reconnects: 0.5 s doubling to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: std::time::Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: std::time::Duration::from_millis(500),
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> std::time::Duration {
        let d = self.next;
        self.next = (self.next * 2).min(std::time::Duration::from_secs(30));
        d
    }

    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}
