//! Sources: tail a database log and hand batches of change events to the
//! task, in commit order, each event with its position.
//!
//! - [`Source`]: the contract the task runner relies on;
//! - [`LogSource`]: a log reader (MySQL/MariaDB binlog, PostgreSQL WAL)
//!   running on its own tokio task, so that decoding overlaps the sink's
//!   encoding, behind a bounded channel;
//! - [`ledger`]: the batch bookkeeping both readers share (pending events,
//!   the end position, skipping what was delivered before).
//!
//! Sources don't retry: a reader returns its first error, classed
//! ([`SourceError`], transient or definite), and the task's supervisor
//! decides whether to restart the task from its committed position.

mod error;
pub mod ledger;
pub mod mysql;
pub mod postgres;
pub mod snapshot;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::SourceError;

use crate::event::{Batch, Position};

/// A stream of committed changes, in the source's commit order.
///
/// The contract:
/// - Batches come in log order; positions only grow. A batch's events are
///   whole source transactions, except that a transaction larger than a
///   batch is split over consecutive batches: a batch whose `end` is not a
///   transaction end ([`Position::is_tx_end`]) is continued by the next.
/// - `end` may lie past the batch's last event (changes the source read but
///   filtered out, heartbeats): acknowledging it lets an idle or filtered
///   stream advance.
/// - Events at or below the resume position the source was opened with are
///   never delivered again.
/// - [`Source::release`] is called by the runner only after everything up
///   to `pos` is durable in the sink *and* committed to the offset store;
///   only then may the source let its server discard log up to `pos`
///   (PostgreSQL's `confirmed_flush_lsn`). Never earlier.
/// - [`Source::next`] is cancel-safe: the runner selects on it.
pub trait Source: Send {
    /// The next batch; `None` once the source ended: closed, or finished
    /// (a one-shot source such as a snapshot-only task). A failure of the
    /// reader is returned here, once the batches it sent before are taken.
    fn next(&mut self) -> impl Future<Output = Result<Option<Batch>, SourceError>> + Send;

    /// The upstream may discard its log up to `pos` (see the trait docs).
    fn release(&mut self, pos: &Position);

    /// Stops reading and closes the source's connections; batches not yet
    /// taken are dropped (they are read again from the committed position
    /// on the next start). Returns the reader's error if it failed.
    fn close(&mut self) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// What the source is, for messages: "MySQL/MariaDB source".
    fn label(&self) -> &'static str;
}

/// What a source reports besides batches: cheap counters, updated as it
/// reads, read by the task's progress.
#[derive(Debug)]
pub struct SourceMetrics {
    /// Log bytes read (binlog events, WAL messages), including those of
    /// tables the selection leaves out.
    pub bytes_read: AtomicU64,
    /// Bytes of log the server holds beyond the task's position, when the
    /// source can tell (PostgreSQL: WAL between the server's end and the
    /// confirmed position; MySQL: binlog bytes after the read position);
    /// -1 when unknown.
    pub lag_bytes: AtomicI64,
}

impl Default for SourceMetrics {
    fn default() -> Self {
        SourceMetrics {
            bytes_read: AtomicU64::new(0),
            lag_bytes: AtomicI64::new(-1),
        }
    }
}

impl SourceMetrics {
    pub fn read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn set_lag_bytes(&self, bytes: u64) {
        self.lag_bytes
            .store(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

/// How long a host name may fail to resolve before the task fails: a typo
/// doesn't fix itself, a DNS outage usually ends sooner.
pub const RESOLUTION_GIVE_UP: std::time::Duration = std::time::Duration::from_secs(300);

/// Resolves the server's host name before connecting, so that a name that
/// doesn't resolve is reported as such (and fails the task if it persists)
/// rather than as a generic connection error.
pub async fn resolve(host: &str, port: u16) -> Result<(), SourceError> {
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(_) => Ok(()),
            None => Err(SourceError::transient(format!(
                "the host name {host:?} in source.url resolves to no address (check its spelling and DNS)"
            ))
            .persisting_fails_after(RESOLUTION_GIVE_UP)),
        },
        Err(e) => Err(SourceError::transient(format!(
            "the host name {host:?} in source.url does not resolve (check its spelling and DNS)"
        ))
        .caused_by(e)
        .persisting_fails_after(RESOLUTION_GIVE_UP)),
    }
}

/// What a log reader gets when it starts.
pub struct ReaderContext {
    /// Everything at or below it was delivered before (the committed offset
    /// or the sink's own position); `None` for a new task.
    pub resume: Option<Position>,
    /// Where batches go (bounded: the reader waits while the task is busy).
    pub out: mpsc::Sender<Batch>,
    /// Set when the task stops or pauses: the reader returns `Ok(())`.
    pub cancel: CancellationToken,
    /// Positions the runner released (see [`Source::release`]).
    pub released: watch::Receiver<Option<Position>>,
    /// How far the reader has read: every transaction before this stream
    /// position was sent (a snapshot places its chunks by it while the
    /// log is quiet). Published only while nothing read is held back, and
    /// first as soon as the stream's start is fixed: a snapshot reads no
    /// chunk before, so that none reflects a point before the stream.
    pub read_to: watch::Sender<Option<Position>>,
    pub metrics: Arc<SourceMetrics>,
}

impl ReaderContext {
    /// Sends a batch, unless the reader is cancelled meanwhile. An error
    /// means the task's runner is gone.
    pub async fn send(&self, batch: Batch) -> Result<(), SourceError> {
        tokio::select! {
            r = self.out.send(batch) => r.map_err(|_| SourceError::transient("the task stopped taking batches")),
            _ = self.cancel.cancelled() => Ok(()),
        }
    }
}

/// A log reader running on its own tokio task (see the module docs).
pub struct LogSource {
    label: &'static str,
    rx: mpsc::Receiver<Batch>,
    released: watch::Sender<Option<Position>>,
    cancel: CancellationToken,
    read_to: watch::Receiver<Option<Position>>,
    reader: Option<JoinHandle<Result<(), SourceError>>>,
    /// The reader ended and its outcome was returned (once).
    ended: bool,
}

impl LogSource {
    /// Starts `reader` with a channel of `capacity` batches.
    pub fn spawn<F, Fut>(
        label: &'static str,
        resume: Option<Position>,
        capacity: usize,
        metrics: Arc<SourceMetrics>,
        reader: F,
    ) -> LogSource
    where
        F: FnOnce(ReaderContext) -> Fut,
        Fut: Future<Output = Result<(), SourceError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (released_tx, released_rx) = watch::channel(None);
        let cancel = CancellationToken::new();
        let (read_to_tx, read_to) = watch::channel(None);
        let ctx = ReaderContext {
            resume,
            out: tx,
            cancel: cancel.clone(),
            released: released_rx,
            read_to: read_to_tx,
            metrics,
        };
        LogSource {
            label,
            rx,
            released: released_tx,
            cancel,
            read_to,
            reader: Some(tokio::spawn(reader(ctx))),
            ended: false,
        }
    }

    /// The next batch if one is queued, without waiting; `None` when none
    /// is (or the reader ended: [`Source::next`] tells how).
    pub fn try_next(&mut self) -> Option<Result<Option<Batch>, SourceError>> {
        self.rx.try_recv().ok().map(|b| Ok(Some(b)))
    }

    /// How far the reader has read (see [`ReaderContext::read_to`]).
    pub fn read_to(&self) -> watch::Receiver<Option<Position>> {
        self.read_to.clone()
    }

    /// Waits for the reader task and returns its outcome, once; cancel-safe
    /// (the handle is kept until it completes).
    async fn join(&mut self) -> Result<(), SourceError> {
        let Some(handle) = self.reader.as_mut() else {
            return Ok(());
        };
        let r = handle.await;
        self.reader = None;
        self.ended = true;
        match r {
            Ok(r) => r,
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => Err(SourceError::definite(format!(
                "the {} reader panicked; please report this with the log",
                self.label
            ))
            .caused_by(e)),
        }
    }
}

impl Source for LogSource {
    async fn next(&mut self) -> Result<Option<Batch>, SourceError> {
        match self.rx.recv().await {
            Some(b) => Ok(Some(b)),
            None => self.join().await.map(|()| None),
        }
    }

    fn release(&mut self, pos: &Position) {
        self.released.send_replace(Some(pos.clone()));
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.cancel.cancel();
        // Unblocks a reader waiting to send.
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        self.join().await
    }

    fn label(&self) -> &'static str {
        self.label
    }
}

impl Drop for LogSource {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
