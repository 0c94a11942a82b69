//! Group-committing writer: one thread appends buffers to the output, a
//! second makes what was appended durable (fdatasync for files, flush for
//! stdout), so that copying the next group into the page cache overlaps the
//! disk flush of the previous ones. Each buffer carries a ticket; the durable
//! ticket is published on a watch channel.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::{mpsc, watch};

use super::SinkError;

/// Where the bytes go.
pub enum Output {
    File {
        file: File,
        path: PathBuf,
    },
    /// A device or pipe (`/dev/null`, a FIFO): written, never synced (it
    /// has nothing to sync), no position read back.
    Device {
        file: File,
        path: PathBuf,
    },
    Stdout,
}

/// Durability progress: every buffer with a ticket up to `ticket` is durable.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub ticket: u64,
    /// Set once writing or syncing failed: the sink is unusable.
    pub error: Option<Failure>,
}

/// The I/O error that stopped the writer, kept whole (its kind classes it).
#[derive(Debug, Clone)]
pub struct Failure {
    what: &'static str,
    path: PathBuf,
    error: Arc<std::io::Error>,
}

impl Failure {
    fn to_error(&self) -> SinkError {
        let e = std::io::Error::new(self.error.kind(), ArcError(self.error.clone()));
        SinkError::io(self.what, &self.path, e)
    }
}

/// An `io::Error` shared between the writer threads and every report of it.
#[derive(Debug)]
struct ArcError(Arc<std::io::Error>);

impl std::fmt::Display for ArcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ArcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

struct Job {
    ticket: u64,
    buf: Vec<u8>,
}

#[derive(Default)]
struct Written {
    ticket: u64,
    /// Bytes appended since the last sync.
    unsynced: bool,
    closed: bool,
}

struct Shared {
    written: Mutex<Written>,
    cond: Condvar,
    /// Buffers handed back for reuse.
    pool: Mutex<Vec<Vec<u8>>>,
}

pub struct DurableWriter {
    jobs: Option<mpsc::Sender<Job>>,
    progress: watch::Receiver<Progress>,
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Buffers queued to the writer thread: with the one being written and the
/// one being encoded, memory holds about `QUEUED + 2` groups.
const QUEUED: usize = 1;
/// Largest buffer kept for reuse.
const MAX_POOLED_BYTES: usize = 16 << 20;

impl DurableWriter {
    pub fn spawn(output: Output) -> Result<DurableWriter, SinkError> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(QUEUED);
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            written: Mutex::new(Written::default()),
            cond: Condvar::new(),
            pool: Mutex::new(Vec::new()),
        });
        let (sync_handle, describe) = match &output {
            Output::File { file, path } => (
                Some(
                    file.try_clone()
                        .map_err(|e| SinkError::io("opening for syncing", path, e))?,
                ),
                path.clone(),
            ),
            Output::Device { path, .. } => (None, path.clone()),
            Output::Stdout => (None, PathBuf::from("stdout")),
        };
        let progress_tx = Arc::new(progress_tx);
        let writer = {
            let shared = shared.clone();
            let progress = progress_tx.clone();
            let d = describe.clone();
            std::thread::Builder::new()
                .name("jsonl-writer".into())
                .spawn(move || write_loop(output, jobs_rx, &shared, &progress, &d))
                .map_err(|e| SinkError::io("starting the writer thread for", &describe, e))?
        };
        let syncer = {
            let shared = shared.clone();
            let d = describe.clone();
            std::thread::Builder::new()
                .name("jsonl-syncer".into())
                .spawn(move || sync_loop(sync_handle, &shared, &progress_tx, &d))
                .map_err(|e| SinkError::io("starting the syncer thread for", &describe, e))?
        };
        Ok(DurableWriter {
            jobs: Some(jobs_tx),
            progress: progress_rx,
            shared,
            threads: vec![writer, syncer],
        })
    }

    /// A cleared buffer to encode into.
    pub fn buffer(&self) -> Vec<u8> {
        self.shared
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default()
    }

    /// Queues `buf` under `ticket` (tickets must increase); waits while the
    /// queue is full.
    pub async fn write(&mut self, ticket: u64, buf: Vec<u8>) -> Result<(), SinkError> {
        self.check()?;
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| SinkError::Stopped("the writer was already closed".into()))?;
        jobs.send(Job { ticket, buf })
            .await
            .map_err(|_| self.failure())
    }

    /// Waits for the durable ticket to advance; returns it. Cancel-safe.
    pub async fn durable(&mut self) -> Result<u64, SinkError> {
        self.progress.changed().await.map_err(|_| self.failure())?;
        let p = self.progress.borrow_and_update().clone();
        match p.error {
            Some(e) => Err(e.to_error()),
            None => Ok(p.ticket),
        }
    }

    /// Waits until `ticket` is durable.
    pub async fn wait_for(&mut self, ticket: u64) -> Result<(), SinkError> {
        loop {
            {
                let p = self.progress.borrow_and_update();
                if let Some(e) = &p.error {
                    return Err(e.to_error());
                }
                if p.ticket >= ticket {
                    return Ok(());
                }
            }
            self.progress.changed().await.map_err(|_| self.failure())?;
        }
    }

    /// Closes the queue and waits until both threads ended (they drop the
    /// progress sender as they exit). Cancel-safe.
    pub async fn close(&mut self) {
        self.jobs = None;
        while self.progress.changed().await.is_ok() {}
    }

    fn check(&self) -> Result<(), SinkError> {
        match &self.progress.borrow().error {
            Some(e) => Err(e.to_error()),
            None => Ok(()),
        }
    }

    fn failure(&self) -> SinkError {
        match &self.progress.borrow().error {
            Some(e) => e.to_error(),
            None => SinkError::Stopped("the JSONL writer thread stopped".into()),
        }
    }
}

impl Drop for DurableWriter {
    fn drop(&mut self) {
        // Closing the queue ends the writer, which ends the syncer. They are
        // not joined: a write blocked on a full pipe or a frozen file
        // system must not block the task's stop. The file (and its lock)
        // is released when they end.
        self.jobs = None;
        self.threads.clear();
    }
}

fn write_loop(
    mut output: Output,
    mut jobs: mpsc::Receiver<Job>,
    shared: &Shared,
    progress: &watch::Sender<Progress>,
    describe: &std::path::Path,
) {
    while let Some(Job { ticket, mut buf }) = jobs.blocking_recv() {
        let result = match &mut output {
            Output::File { file, .. } | Output::Device { file, .. } => file.write_all(&buf),
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf).and_then(|_| out.flush())
            }
        };
        if let Err(e) = result {
            let failure = Failure {
                what: "writing",
                path: describe.to_path_buf(),
                error: Arc::new(e),
            };
            progress.send_modify(|p| p.error = Some(failure));
            break;
        }
        if let Ok(mut w) = shared.written.lock() {
            w.ticket = ticket;
            w.unsynced |= !buf.is_empty();
        }
        shared.cond.notify_one();
        if buf.capacity() <= MAX_POOLED_BYTES {
            buf.clear();
            if let Ok(mut pool) = shared.pool.lock() {
                pool.push(buf);
            }
        }
    }
    if let Ok(mut w) = shared.written.lock() {
        w.closed = true;
    }
    shared.cond.notify_one();
}

fn sync_loop(
    file: Option<File>,
    shared: &Shared,
    progress: &watch::Sender<Progress>,
    describe: &std::path::Path,
) {
    let mut synced = 0u64;
    loop {
        let (ticket, unsynced) = {
            let Ok(mut w) = shared.written.lock() else {
                return;
            };
            while w.ticket == synced && !w.closed {
                w = match shared.cond.wait(w) {
                    Ok(w) => w,
                    Err(_) => return,
                };
            }
            if w.ticket == synced {
                return; // closed and everything synced
            }
            let snapshot = (w.ticket, w.unsynced);
            w.unsynced = false;
            snapshot
        };
        // Everything written up to `ticket` is in the page cache: one sync
        // makes all of it durable, however many groups that is.
        if unsynced
            && let Some(f) = &file
            && let Err(e) = f.sync_data()
        {
            let failure = Failure {
                what: "syncing",
                path: describe.to_path_buf(),
                error: Arc::new(e),
            };
            progress.send_modify(|p| p.error = Some(failure));
            return;
        }
        synced = ticket;
        progress.send_modify(|p| p.ticket = ticket);
    }
}
