//! [`SourceError`]: what stopped a source, its class, and its cause.

use std::time::Duration;

use crate::error::{BoxError, Classify, ErrorClass};

/// A source failure. The message says what failed and, for definite errors,
/// what the operator must change; the driver's own error is kept as the
/// cause (`#[source]`), not flattened into the text.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    message: String,
    class: ErrorClass,
    give_up_after: Option<Duration>,
    #[source]
    cause: Option<BoxError>,
}

impl SourceError {
    /// A failure that may go away (connection lost, server restarting).
    pub fn transient(message: impl Into<String>) -> SourceError {
        SourceError {
            message: message.into(),
            class: ErrorClass::Transient,
            give_up_after: None,
            cause: None,
        }
    }

    /// A failure that needs the operator (misconfiguration, privileges,
    /// purged log, malformed data); the message names the fix.
    pub fn definite(message: impl Into<String>) -> SourceError {
        SourceError {
            class: ErrorClass::Definite,
            ..SourceError::transient(message)
        }
    }

    /// Keeps `cause` as this error's source.
    pub fn caused_by(mut self, cause: impl Into<BoxError>) -> SourceError {
        self.cause = Some(cause.into());
        self
    }

    /// A transient error that becomes a configuration problem when it
    /// persists this long (see [`Classify::give_up_after`]).
    pub fn persisting_fails_after(mut self, d: Duration) -> SourceError {
        self.give_up_after = Some(d);
        self
    }
}

impl Classify for SourceError {
    fn class(&self) -> ErrorClass {
        self.class
    }

    fn give_up_after(&self) -> Option<Duration> {
        self.give_up_after
    }
}
