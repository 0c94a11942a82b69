//! [`SnapshotSource`]: the stream and the chunks in one order (see
//! [`super::reconcile`]), chunk rows turned into events at their points,
//! chunks recorded as copied once released, re-snapshot requests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::reconcile::{self, Chunk, Reconciler, Step};
use super::{Job, KeyPart, Plan, SnapshotStats, workers};
use crate::event::{Batch, ChangeEvent, Op, Position, SnapshotMark, SnapshotPosition, TxMeta};
use crate::source::{LogSource, Source, SourceError};
use crate::store::{OffsetStore, SnapshotProgress, TableSnapshot};

/// Emitted chunks not yet known durable: their end, table and index.
struct Emitted {
    end: Position,
    table: String,
    index: u64,
    hi: Option<Vec<KeyPart>>,
    rows: u64,
    last: bool,
}

/// A table being copied: chunks planned (known once `all_planned`) and
/// emitted.
#[derive(Debug, Default)]
struct OpenTable {
    planned: u64,
    all_planned: bool,
    emitted: u64,
    /// Schema version of the table's first stream event during the copy.
    version: Option<u32>,
    warned: bool,
}

/// Per table: chunks durable beyond the copied prefix, to advance it.
#[derive(Default)]
struct TableDone {
    /// Durable chunks after the prefix, by index: (hi, rows, last).
    ahead: BTreeMap<u64, (Option<Vec<KeyPart>>, u64, bool)>,
}

/// The task's source while tables are copied (and after, while it may be
/// asked for more): the stream and the chunks, in one order.
pub struct SnapshotSource {
    stream: LogSource,
    read_to: watch::Receiver<Option<Position>>,
    read_to_open: bool,
    rec: Reconciler,
    held: Option<Batch>,
    stream_ended: bool,
    chunks: mpsc::Receiver<workers::Msg>,
    requeue: mpsc::UnboundedSender<Job>,
    jobs: mpsc::UnboundedSender<workers::Order>,
    workers: Option<JoinHandle<()>>,
    cancel: CancellationToken,
    requests: Option<mpsc::UnboundedReceiver<Vec<String>>>,
    /// The last position handed out.
    last_out: Option<Position>,
    emitted: Vec<Emitted>,
    done: HashMap<String, TableDone>,
    progress: SnapshotProgress,
    save: watch::Sender<Option<SnapshotProgress>>,
    saver: Option<JoinHandle<()>>,
    stats: Arc<SnapshotStats>,
    complete: bool,
    /// Tables planned whose last chunk is not emitted yet.
    open: HashMap<String, OpenTable>,
    /// The initial snapshot's tables were listed.
    initial_planned: bool,
    /// Tables of the initial snapshot whose last chunk is not emitted yet;
    /// `initial_open` until the last one is.
    initial_left: HashSet<String>,
    initial_open: bool,
    first_row_out: bool,
    task: String,
    store: Arc<dyn OffsetStore>,
}

impl SnapshotSource {
    /// Starts the workers for what `plan` asks and the stored progress
    /// leaves to do; `resume` is where the stream resumes.
    pub async fn start(
        stream: LogSource,
        resume: Option<Position>,
        mut plan: Plan,
    ) -> Result<SnapshotSource, SourceError> {
        let stored = plan
            .store
            .snapshot(&plan.task)
            .await
            .map_err(|e| SourceError::transient("reading the snapshot progress").caused_by(e))?
            .unwrap_or_default();
        let (save, save_rx) = watch::channel(None);
        let saver = tokio::spawn(workers::saver(
            plan.store.clone(),
            plan.task.clone(),
            save_rx,
        ));
        let cancel = CancellationToken::new();
        let in_flight = reconcile::InFlight::default();
        let (msg_tx, chunks) = mpsc::channel(plan.settings.workers.max(1));
        let (requeue, requeue_rx) = mpsc::unbounded_channel();
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let workers = tokio::spawn(workers::run(
            plan.engine.clone(),
            plan.settings.clone(),
            in_flight.clone(),
            jobs_rx,
            requeue_rx,
            msg_tx,
            cancel.clone(),
            plan.stats.clone(),
            stream.read_to(),
        ));
        let initial_open = plan.initial && !stored.initial_complete;
        for (name, t) in stored.tables.iter().filter(|(_, t)| t.done) {
            plan.stats.copied_before(name, t.rows, t.chunks_done);
        }
        let src = SnapshotSource {
            read_to: stream.read_to(),
            read_to_open: true,
            stream,
            rec: Reconciler::new(in_flight),
            held: None,
            stream_ended: false,
            chunks,
            requeue,
            jobs,
            workers: Some(workers),
            cancel,
            requests: plan.requests.take(),
            last_out: resume,
            emitted: Vec::new(),
            done: HashMap::new(),
            progress: stored,
            save,
            saver: Some(saver),
            stats: plan.stats.clone(),
            complete: plan.complete,
            open: HashMap::new(),
            initial_planned: !plan.initial,
            initial_left: HashSet::new(),
            initial_open,
            first_row_out: false,
            task: plan.task.clone(),
            store: plan.store.clone(),
        };
        if plan.initial {
            // Every selected table not copied yet: all of them for a new
            // task, the rest after a restart, tables added to the
            // selection since (as incremental snapshots).
            let order = workers::Order {
                names: None,
                skip_done: src.progress.clone(),
                incremental: !initial_open,
                initial: true,
            };
            let _ = src.jobs.send(order);
        } else {
            // Re-snapshots asked for while the task wasn't running, or cut
            // short by a restart.
            let pending: Vec<String> = src
                .progress
                .tables
                .iter()
                .filter(|(_, t)| !t.done)
                .map(|(n, _)| n.clone())
                .collect();
            if !pending.is_empty() {
                let _ = src.jobs.send(workers::Order {
                    names: Some(pending),
                    skip_done: src.progress.clone(),
                    incremental: true,
                    initial: false,
                });
            }
        }
        Ok(src)
    }

    fn save_progress(&self) {
        self.save.send_replace(Some(self.progress.clone()));
    }

    /// Turns a chunk into a batch placed at its point.
    fn emit(&mut self, chunk: Chunk) -> Result<Batch, Job> {
        let at = chunk.at.clone();
        // The point must not lie before what went out already.
        let seq = match self.last_out.as_ref() {
            Some(Position::Snapshot(s)) if *s.at == at => s.seq + 1,
            Some(p)
                if p.stream_position()
                    .partial_cmp(&at)
                    .is_none_or(|o| o.is_gt()) =>
            {
                return Err(chunk.job);
            }
            _ => 0,
        };
        if chunk.superseded > 0 {
            self.stats
                .superseded(&chunk.job.table.name, chunk.superseded);
        }
        let job = &chunk.job;
        // The table is copied once its last planned chunk is out, in
        // whatever order the chunks came.
        let last_chunk = self
            .open
            .get(&job.table.name)
            .is_some_and(|t| t.all_planned && t.emitted + 1 == t.planned);
        let closes_initial = !job.incremental
            && last_chunk
            && self.initial_open
            && self.initial_planned
            && self.initial_left.len() == 1
            && self.initial_left.contains(&job.table.name);
        let at = Arc::new(at);
        let n = chunk.rows.len();
        let first_pending = !self.first_row_out;
        let mark = |i: usize| -> SnapshotMark {
            if job.incremental {
                SnapshotMark::Incremental
            } else if first_pending && i == 0 {
                SnapshotMark::First
            } else if closes_initial && i + 1 == n {
                SnapshotMark::Last
            } else {
                SnapshotMark::True
            }
        };
        let base = TxMeta {
            commit_ts_ms: chunk.read_at_ms,
            snapshot: Some(if job.incremental {
                SnapshotMark::Incremental
            } else {
                SnapshotMark::True
            }),
            ..TxMeta::default()
        };
        let shared = Arc::new(base.clone());
        let connector = chunk.connector;
        let mut events = Vec::with_capacity(n);
        for (i, row) in chunk.rows.into_iter().enumerate() {
            let m = mark(i);
            let tx = if m == base.snapshot.unwrap_or(SnapshotMark::True) {
                shared.clone()
            } else {
                Arc::new(TxMeta {
                    snapshot: Some(m),
                    ..base.clone()
                })
            };
            events.push(ChangeEvent {
                op: Op::Read,
                position: Position::Snapshot(SnapshotPosition {
                    at: at.clone(),
                    seq,
                    row: i as u64 + 1,
                }),
                tx,
                table: Some(chunk.schema.clone()),
                before: None,
                after: Some(row),
                ddl: None,
                source_offset: 0,
                tx_order: 0,
                table_order: 0,
                connector,
                copying: false,
            });
        }
        if n > 0 && !job.incremental {
            self.first_row_out = true;
        }
        let end = Position::Snapshot(SnapshotPosition {
            at,
            seq,
            row: Position::END,
        });
        self.stats.emitted(&job.table.name, n as u64, last_chunk);
        self.emitted.push(Emitted {
            end: end.clone(),
            table: job.table.name.clone(),
            index: job.index,
            hi: job.hi.clone(),
            rows: n as u64,
            last: job.last,
        });
        if let Some(t) = self.open.get_mut(&job.table.name) {
            t.emitted += 1;
        }
        if last_chunk {
            self.open.remove(&job.table.name);
            if !job.incremental {
                self.initial_left.remove(&job.table.name);
            }
            if closes_initial {
                self.initial_open = false;
                info!(task = %self.task, "initial snapshot: every table copied");
            }
        }
        Ok(Batch { events, end })
    }

    /// Everything up to `pos` is durable and committed: chunks emitted up
    /// to it count as copied.
    fn copied_up_to(&mut self, pos: &Position) {
        let mut changed = false;
        let mut i = 0;
        while i < self.emitted.len() {
            let e = &self.emitted[i];
            if e.end.partial_cmp(pos).is_some_and(|o| o.is_le()) {
                let e = self.emitted.remove(i);
                self.done
                    .entry(e.table.clone())
                    .or_default()
                    .ahead
                    .insert(e.index, (e.hi, e.rows, e.last));
                changed = true;
            } else {
                i += 1;
            }
        }
        if !changed {
            return;
        }
        for (table, d) in &mut self.done {
            let t = self.progress.tables.entry(table.clone()).or_default();
            while let Some((hi, rows, last)) = d.ahead.remove(&t.chunks_done) {
                t.chunks_done += 1;
                t.rows += rows;
                t.last_key = hi.as_ref().map(|k| {
                    k.iter()
                        .filter_map(|p| serde_json::to_value(p).ok())
                        .collect()
                });
                if last {
                    t.done = true;
                }
            }
        }
        if !self.initial_open && self.initial_planned {
            self.progress.initial_complete = true;
        }
        self.save_progress();
    }

    /// Starts a re-snapshot of `names`.
    fn request(&mut self, names: Vec<String>) {
        info!(task = %self.task, tables = ?names, "incremental snapshot requested");
        for n in &names {
            self.progress
                .tables
                .insert(n.clone(), TableSnapshot::default());
            self.done.remove(n);
        }
        self.save_progress();
        let _ = self.jobs.send(workers::Order {
            names: Some(names),
            skip_done: SnapshotProgress::default(),
            incremental: true,
            initial: false,
        });
    }

    /// Marks the stream changes of tables whose copy is not finished
    /// (`ChangeEvent::copying`: their rows may not exist downstream yet;
    /// before the initial copy is planned, every table is one), and warns
    /// once per table whose schema changes while it is copied: chunks
    /// read after the change still carry the columns listed when its copy
    /// was planned.
    fn watch_stream(&mut self, b: &mut Batch) {
        let all = self.initial_open && !self.initial_planned;
        if self.open.is_empty() && !all {
            return;
        }
        let mut last: Option<(*const crate::event::TableSchema, bool)> = None;
        for ev in &mut b.events {
            let Some(t) = ev.table.as_ref() else { continue };
            if let Some((p, copying)) = last
                && p == Arc::as_ptr(t)
            {
                ev.copying = copying;
                continue;
            }
            let name = t.qualified_name();
            let copying = all || self.open.contains_key(&name);
            last = Some((Arc::as_ptr(t), copying));
            ev.copying = copying;
            let Some(open) = self.open.get_mut(&name) else {
                continue;
            };
            match open.version {
                None => open.version = Some(t.version),
                Some(v) if v != t.version && !open.warned => {
                    open.warned = true;
                    warn!(task = %self.task, table = %name, "the table's schema changed while it is being copied: rows copied after the change may lack new columns or carry dropped ones. Copy it again once this copy is done (a re-snapshot: TaskHandle::snapshot_tables)");
                }
                Some(_) => {}
            }
        }
    }

    fn snapshot_finished(&self) -> bool {
        self.complete && self.initial_planned && self.open.is_empty() && self.rec.ready_len() == 0
    }
}

impl Source for SnapshotSource {
    async fn next(&mut self) -> Result<Option<Batch>, SourceError> {
        loop {
            if self.snapshot_finished() {
                return Ok(None);
            }
            // Take every chunk already read (bounded by the workers).
            while let Ok(msg) = self.chunks.try_recv() {
                self.on_msg(msg)?;
            }
            // The read position is taken before looking for a batch: a
            // batch sent before it is then in the channel.
            let read_to = self.read_to.borrow().clone();
            if self.held.is_none() && !self.stream_ended {
                match self.stream.try_next() {
                    Some(Ok(Some(b))) => self.held = Some(b),
                    Some(Ok(None)) => self.stream_ended = true,
                    Some(Err(e)) => return Err(e),
                    None => {}
                }
            }
            match self.rec.step(&mut self.held, read_to.as_ref()) {
                Step::Pass(mut b) => {
                    self.watch_stream(&mut b);
                    self.last_out = Some(b.end.clone());
                    return Ok(Some(b));
                }
                Step::Emit(chunk) => match self.emit(chunk) {
                    Ok(b) => {
                        self.last_out = Some(b.end.clone());
                        return Ok(Some(b));
                    }
                    Err(job) => {
                        warn!(task = %self.task, table = %job.table.name, "a chunk's point lies before what was sent; reading it again");
                        self.stats.reread(&job.table.name);
                        let _ = self.requeue.send(job);
                    }
                },
                Step::Reread(chunk) => {
                    self.stats.reread(&chunk.job.table.name);
                    let _ = self.requeue.send(chunk.job);
                }
                Step::Wait => {
                    if self.stream_ended && self.held.is_none() {
                        return self.stream.next().await;
                    }
                    tokio::select! {
                        msg = self.chunks.recv() => match msg {
                            Some(m) => self.on_msg(m)?,
                            None => return Err(SourceError::transient("the snapshot workers stopped")),
                        },
                        r = self.stream.next(), if self.held.is_none() && !self.stream_ended => match r {
                            Ok(Some(b)) => self.held = Some(b),
                            Ok(None) => self.stream_ended = true,
                            Err(e) => return Err(e),
                        },
                        // A chunk's head moved on: the stream may go on.
                        _ = self.rec.in_flight.changed() => {}
                        r = self.read_to.changed(), if self.read_to_open => {
                            // The reader ended: the stream arm tells how.
                            self.read_to_open = r.is_ok();
                        }
                        req = recv_request(&mut self.requests) => match req {
                            Some(names) => self.request(names),
                            None => self.requests = None,
                        },
                    }
                }
            }
        }
    }

    fn release(&mut self, pos: &Position) {
        self.stream.release(pos);
        self.copied_up_to(pos);
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.cancel.cancel();
        if let Some(w) = self.workers.take() {
            let _ = w.await;
        }
        // The last progress reaches the store before the task ends.
        let (dead, _) = watch::channel(None);
        drop(std::mem::replace(&mut self.save, dead));
        if let Some(s) = self.saver.take() {
            let _ = s.await;
        }
        if let Err(e) = self.store.save_snapshot(&self.task, &self.progress).await {
            warn!(task = %self.task, error = %crate::error::chain(&e), "saving snapshot progress failed");
        }
        self.stream.close().await
    }

    fn label(&self) -> &'static str {
        self.stream.label()
    }
}

impl SnapshotSource {
    fn on_msg(&mut self, msg: workers::Msg) -> Result<(), SourceError> {
        match msg {
            workers::Msg::Chunk(c) => {
                if let Err(job) = self.rec.add(*c) {
                    debug!(task = %self.task, table = %job.table.name, "a transaction sent before the chunk may not be in its snapshot; reading it again");
                    self.stats.reread(&job.table.name);
                    let _ = self.requeue.send(job);
                }
            }
            workers::Msg::Planned { tables, initial } => {
                for t in &tables {
                    self.open.insert(t.clone(), OpenTable::default());
                }
                if initial {
                    self.initial_planned = true;
                    self.initial_left.extend(tables);
                    if self.initial_left.is_empty() && self.initial_open {
                        self.initial_open = false;
                        self.progress.initial_complete = true;
                        self.save_progress();
                    }
                }
            }
            workers::Msg::TablePlanned { table, chunks } => {
                let done = match self.open.get_mut(&table) {
                    Some(t) => {
                        t.planned = chunks;
                        t.all_planned = true;
                        t.emitted >= chunks
                    }
                    None => false,
                };
                if done {
                    // Every chunk went out before the count arrived.
                    self.open.remove(&table);
                    self.initial_left.remove(&table);
                    self.stats.finished(&table);
                    if self.initial_open && self.initial_planned && self.initial_left.is_empty() {
                        self.initial_open = false;
                        info!(task = %self.task, "initial snapshot: every table copied");
                    }
                }
            }
            workers::Msg::Failed(e) => return Err(e),
        }
        Ok(())
    }
}

async fn recv_request(r: &mut Option<mpsc::UnboundedReceiver<Vec<String>>>) -> Option<Vec<String>> {
    match r {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

impl Drop for SnapshotSource {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
