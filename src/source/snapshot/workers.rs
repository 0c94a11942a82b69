//! The planner and the workers of a snapshot.
//!
//! The planner lists the tables an order names, cuts each into key ranges
//! of `chunk_rows` rows (asking the server for the key `chunk_rows` rows
//! further, an index-only scan) and queues them; `workers` workers, each
//! with its own connection, read queued ranges in snapshots of their own
//! and send the chunks on. Ranges partition the key space whenever they are
//! cut, so every row is in exactly one chunk; rows that move between
//! ranges meanwhile are changes the stream carries.
//!
//! Memory: the job queue holds key bounds only. A worker takes a permit
//! before it reads a chunk, and the permit goes with the chunk until the
//! chunk is emitted (or dropped to be read again): at most `2 × workers`
//! chunks — `2 × workers × chunk_rows` rows — are in memory, however far
//! behind the stream is. Every chunk holding a permit is being read or
//! read, so the stream, which waits only for those, never waits for a
//! permit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::reconcile::InFlight;
use super::{Chunk, Engine, Job, KeyPart, Settings, SnapTable, SnapshotStats};
use crate::source::SourceError;
use crate::store::{OffsetStore, SnapshotProgress};

/// Tables to copy.
pub struct Order {
    /// `None`: every selected table.
    pub names: Option<Vec<String>>,
    /// Progress of earlier runs: tables done are skipped, others resume
    /// after their last copied key.
    pub skip_done: SnapshotProgress,
    pub incremental: bool,
    /// The task's initial snapshot (or what it left to do).
    pub initial: bool,
}

pub enum Msg {
    Chunk(Box<Chunk>),
    /// The tables of an order, listed before any of their chunks.
    Planned {
        tables: Vec<String>,
        initial: bool,
    },
    /// Every chunk of `table` was queued: `chunks` in this plan.
    TablePlanned {
        table: String,
        chunks: u64,
    },
    Failed(SourceError),
}

/// A conservative copy rate for the log retention check.
const RETENTION_CHECK_ROWS_PER_SEC: u64 = 50_000;

struct Queue {
    requeued: mpsc::UnboundedReceiver<Job>,
    jobs: mpsc::Receiver<Job>,
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    engine: Engine,
    settings: Settings,
    in_flight: InFlight,
    mut orders: mpsc::UnboundedReceiver<Order>,
    requeued: mpsc::UnboundedReceiver<Job>,
    out: mpsc::Sender<Msg>,
    cancel: CancellationToken,
    stats: Arc<SnapshotStats>,
    mut stream_start: watch::Receiver<Option<crate::event::Position>>,
) {
    let workers = settings.workers.max(1);
    let (job_tx, jobs) = mpsc::channel::<Job>(workers * 2);
    let queue = Arc::new(Mutex::new(Queue { requeued, jobs }));
    let ids = Arc::new(AtomicU64::new(1));
    let permits = Arc::new(Semaphore::new(workers * 2));
    let mut handles = Vec::new();
    for w in 0..workers {
        handles.push(tokio::spawn(worker(
            w,
            engine.clone(),
            queue.clone(),
            permits.clone(),
            in_flight.clone(),
            ids.clone(),
            out.clone(),
            cancel.clone(),
        )));
    }
    let planner = async {
        // No chunk before the stream's start is fixed (a new PostgreSQL
        // slot, a binlog start position): a chunk read earlier could
        // reflect a point the stream doesn't continue from.
        if stream_start.wait_for(|p| p.is_some()).await.is_err() {
            return;
        }
        let mut conn = None;
        while let Some(order) = orders.recv().await {
            if let Err(e) = plan(&engine, &mut conn, &settings, order, &job_tx, &out, &stats).await
            {
                let _ = out.send(Msg::Failed(e)).await;
                return;
            }
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = planner => { cancel.cancelled().await; }
    }
    for h in handles {
        let _ = h.await;
    }
}

async fn plan(
    engine: &Engine,
    conn: &mut Option<super::EngineConn>,
    settings: &Settings,
    order: Order,
    jobs: &mpsc::Sender<Job>,
    out: &mpsc::Sender<Msg>,
    stats: &SnapshotStats,
) -> Result<(), SourceError> {
    if conn.is_none() {
        *conn = Some(engine.connect().await?);
    }
    let Some(c) = conn.as_mut() else {
        return Ok(());
    };
    let tables = engine.tables(c, order.names.as_deref()).await?;
    let todo: Vec<Arc<SnapTable>> = tables
        .into_iter()
        .filter(|t| !order.skip_done.tables.get(&t.name).is_some_and(|s| s.done))
        .map(Arc::new)
        .collect();
    if let Some(names) = &order.names {
        for n in names {
            if !todo.iter().any(|t| &t.name == n) {
                warn!(table = %n, "a snapshot was requested for a table the server doesn't have, or the task's selection leaves out; skipped");
            }
        }
    }
    let rows: u64 = todo.iter().map(|t| t.estimated_rows).sum();
    info!(
        tables = todo.len(),
        estimated_rows = rows,
        incremental = order.incremental,
        "snapshot: tables to copy"
    );
    // The stream goes on while tables are copied, so the log is read as
    // usual; but a task stopped in the middle of a long copy must resume
    // before the server drops the log it needs.
    let estimated_secs = rows / RETENTION_CHECK_ROWS_PER_SEC;
    if let Some((secs, setting)) = engine.log_retention(c).await
        && secs < estimated_secs
    {
        warn!(
            estimated_rows = rows,
            estimated_secs,
            retention_secs = secs,
            "the snapshot may take longer (about {estimated_secs} s at {RETENTION_CHECK_ROWS_PER_SEC} rows/s) than the server keeps its log ({setting}: about {secs} s): if the task stops during the copy for longer than that, the log it needs to resume is gone. Raise {setting} for the copy"
        );
    }
    if out
        .send(Msg::Planned {
            tables: todo.iter().map(|t| t.name.clone()).collect(),
            initial: order.initial,
        })
        .await
        .is_err()
    {
        return Ok(());
    }
    for t in todo {
        let before = order.skip_done.tables.get(&t.name);
        let mut lo: Option<Vec<KeyPart>> = before.and_then(|s| s.last_key.as_ref()).map(|k| {
            k.iter()
                .filter_map(|v| serde_json::from_value(v.clone()).ok())
                .collect()
        });
        let mut index = before.map_or(0, |s| s.chunks_done);
        let first_index = index;
        stats.planned(
            &t.name,
            t.estimated_rows,
            settings.chunk_rows,
            before.map_or(0, |s| s.rows),
            index,
            order.incremental,
        );
        // The copy ends at the largest key now: rows inserted above it
        // later come with the stream.
        let end = if t.chunk_key.is_empty() {
            None
        } else {
            engine.max_key(c, &t).await?
        };
        loop {
            let hi = match &end {
                Some(end) => {
                    engine
                        .boundary(c, &t, lo.as_deref(), settings.chunk_rows, end)
                        .await?
                }
                None => None,
            };
            let last = hi.is_none();
            let job = Job {
                table: t.clone(),
                index,
                lo: lo.clone(),
                hi: if last { end.clone() } else { hi.clone() },
                last,
                incremental: order.incremental,
            };
            stats.chunk_planned(&t.name, last);
            debug!(table = %t.name, index, last, "chunk planned");
            if jobs.send(job).await.is_err() {
                return Ok(());
            }
            if last {
                let _ = out
                    .send(Msg::TablePlanned {
                        table: t.name.clone(),
                        chunks: index + 1 - first_index,
                    })
                    .await;
                break;
            }
            lo = hi;
            index += 1;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    n: usize,
    engine: Engine,
    queue: Arc<Mutex<Queue>>,
    permits: Arc<Semaphore>,
    in_flight: InFlight,
    ids: Arc<AtomicU64>,
    out: mpsc::Sender<Msg>,
    cancel: CancellationToken,
) {
    let mut conn = None;
    loop {
        let job = {
            let mut q = tokio::select! {
                _ = cancel.cancelled() => return,
                q = queue.lock() => q,
            };
            let Queue { requeued, jobs } = &mut *q;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                j = requeued.recv() => j,
                j = jobs.recv() => j,
            }
        };
        let Some(job) = job else { return };
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        if conn.is_none() {
            let connected = tokio::select! {
                _ = cancel.cancelled() => return,
                c = engine.connect() => c,
            };
            match connected {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    send(&out, Msg::Failed(e), &cancel).await;
                    return;
                }
            }
        }
        let Some(c) = conn.as_mut() else { return };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let read = tokio::select! {
            _ = cancel.cancelled() => None,
            r = engine.read(c, &job, id, &in_flight) => Some(r),
        };
        match read {
            None => {
                in_flight.forget(id);
                return;
            }
            Some(Ok(mut chunk)) => {
                chunk.permit = Some(permit);
                debug!(worker = n, table = %job.table.name, index = job.index, rows = chunk.rows.len(), at = %chunk.at, "chunk read");
                if !send(&out, Msg::Chunk(Box::new(chunk)), &cancel).await {
                    in_flight.forget(id);
                    return;
                }
            }
            Some(Err(e)) => {
                in_flight.forget(id);
                send(&out, Msg::Failed(e), &cancel).await;
                return;
            }
        }
    }
}

/// Hands a message to the source; false once the source is gone or the run
/// is cancelled. A stopping source no longer reads its messages, so a send
/// that waited for room regardless would hold the close up forever.
async fn send(out: &mpsc::Sender<Msg>, msg: Msg, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        r = out.send(msg) => r.is_ok(),
    }
}

/// Writes the latest snapshot progress to the store, one write at a time,
/// until the source drops its sender (then the last value is written).
pub async fn saver(
    store: Arc<dyn OffsetStore>,
    task: String,
    mut rx: watch::Receiver<Option<SnapshotProgress>>,
) {
    while rx.changed().await.is_ok() {
        let p = rx.borrow_and_update().clone();
        if let Some(p) = p
            && let Err(e) = store.save_snapshot(&task, &p).await
        {
            // Progress not saved means chunks copied again after a
            // restart, never rows lost.
            warn!(task = %task, error = %crate::error::chain(&e), "saving snapshot progress failed");
        }
    }
}
