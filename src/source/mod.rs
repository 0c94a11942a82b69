//! Sources: tail a database log and hand batches of change events to the
//! task, in commit order, each event with its position.

pub mod mysql;
pub mod postgres;

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
