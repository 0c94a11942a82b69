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
    File { file: File, path: PathBuf },
    Stdout,
}

/// Durability progress: every buffer with a ticket up to `ticket` is durable.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub ticket: u64,
    /// Set once writing or syncing failed: the sink is unusable.
    pub error: Option<String>,
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
                Some(file.try_clone().map_err(|source| SinkError::Io {
                    what: format!("opening {} for syncing", path.display()),
                    source,
                })?),
                path.display().to_string(),
            ),
            Output::Stdout => (None, "stdout".to_string()),
        };
        let progress_tx = Arc::new(progress_tx);
        let writer = {
            let shared = shared.clone();
            let progress = progress_tx.clone();
            let describe = describe.clone();
            std::thread::Builder::new()
                .name("jsonl-writer".into())
                .spawn(move || write_loop(output, jobs_rx, &shared, &progress, &describe))
                .map_err(|e| SinkError::Internal(format!("starting the writer thread: {e}")))?
        };
        let syncer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("jsonl-syncer".into())
                .spawn(move || sync_loop(sync_handle, &shared, &progress_tx, &describe))
                .map_err(|e| SinkError::Internal(format!("starting the syncer thread: {e}")))?
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
            .ok_or_else(|| SinkError::Internal("writer already closed".into()))?;
        jobs.send(Job { ticket, buf })
            .await
            .map_err(|_| self.failure())
    }

    /// Waits for the durable ticket to advance; returns it. Cancel-safe.
    pub async fn durable(&mut self) -> Result<u64, SinkError> {
        self.progress.changed().await.map_err(|_| self.failure())?;
        let p = self.progress.borrow_and_update().clone();
        match p.error {
            Some(e) => Err(SinkError::Internal(e)),
            None => Ok(p.ticket),
        }
    }

    /// Waits until `ticket` is durable.
    pub async fn wait_for(&mut self, ticket: u64) -> Result<(), SinkError> {
        loop {
            {
                let p = self.progress.borrow_and_update();
                if let Some(e) = &p.error {
                    return Err(SinkError::Internal(e.clone()));
                }
                if p.ticket >= ticket {
                    return Ok(());
                }
            }
            self.progress.changed().await.map_err(|_| self.failure())?;
        }
    }

    fn check(&self) -> Result<(), SinkError> {
        match &self.progress.borrow().error {
            Some(e) => Err(SinkError::Internal(e.clone())),
            None => Ok(()),
        }
    }

    fn failure(&self) -> SinkError {
        SinkError::Internal(
            self.progress
                .borrow()
                .error
                .clone()
                .unwrap_or_else(|| "the writer thread stopped".into()),
        )
    }
}

impl Drop for DurableWriter {
    fn drop(&mut self) {
        // Closing the queue ends the writer, which ends the syncer.
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn write_loop(
    mut output: Output,
    mut jobs: mpsc::Receiver<Job>,
    shared: &Shared,
    progress: &watch::Sender<Progress>,
    describe: &str,
) {
    while let Some(Job { ticket, mut buf }) = jobs.blocking_recv() {
        let result = match &mut output {
            Output::File { file, .. } => file.write_all(&buf),
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf).and_then(|_| out.flush())
            }
        };
        if let Err(e) = result {
            progress.send_modify(|p| p.error = Some(format!("writing {describe}: {e}")));
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
    describe: &str,
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
            progress.send_modify(|p| p.error = Some(format!("syncing {describe}: {e}")));
            return;
        }
        synced = ticket;
        progress.send_modify(|p| p.ticket = ticket);
    }
}
