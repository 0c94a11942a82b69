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

/// The reconnect policy shared by the sources: a session that ends with a
/// transient error is retried after a backoff (reset once a session has run
/// for 30 s); cancellation or a definite error ends the source.
pub struct Reconnect {
    task: String,
    what: &'static str,
    backoff: Backoff,
    started: std::time::Instant,
}

impl Reconnect {
    pub fn new(task: &str, what: &'static str) -> Self {
        Reconnect {
            task: task.to_string(),
            what,
            backoff: Backoff::default(),
            started: std::time::Instant::now(),
        }
    }

    /// Call as a session starts.
    pub fn session_started(&mut self) {
        self.started = std::time::Instant::now();
    }

    /// What a session's end means: `Ok(true)` reconnect (the backoff has
    /// been waited), `Ok(false)` stop cleanly, `Err` stop with the error.
    pub async fn after(
        &mut self,
        result: Result<(), SourceError>,
        cancel: &CancellationToken,
    ) -> Result<bool, SourceError> {
        match result {
            Ok(()) => Ok(false),
            Err(e) if e.is_transient() && !cancel.is_cancelled() => {
                if self.started.elapsed() > std::time::Duration::from_secs(30) {
                    self.backoff.reset();
                }
                let delay = self.backoff.next_delay();
                tracing::warn!(task = %self.task, error = %e, retry_in_ms = delay.as_millis() as u64, "{} interrupted; reconnecting", self.what);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => Ok(true),
                    _ = cancel.cancelled() => Ok(false),
                }
            }
            Err(_) if cancel.is_cancelled() => Ok(false),
            Err(e) => Err(e),
        }
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
