//! A task's progress: cheap counters on the hot path, read by the
//! control plane.
//!
//! The runner updates them once per group of batches (atomics, and a lock
//! taken once per group for positions and per-table counts), never per
//! event; the source adds its own counters ([`SourceMetrics`]). A
//! [`ProgressSnapshot`] is a consistent-enough copy for display.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::event::{Batch, ChangeEvent, Op, Position};
use crate::source::SourceMetrics;

/// Per-table counts of events handed to the sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    /// Truncates, DDL and snapshot reads.
    pub other: u64,
}

impl TableCounts {
    fn add(&mut self, op: Op, n: u64) {
        match op {
            Op::Create => self.inserts += n,
            Op::Update => self.updates += n,
            Op::Delete => self.deletes += n,
            _ => self.other += n,
        }
    }

    pub fn total(&self) -> u64 {
        self.inserts + self.updates + self.deletes + self.other
    }
}

#[derive(Debug, Default)]
struct Positions {
    /// End of the last batch taken from the source.
    read: Option<Position>,
    /// End of the last group the sink made durable.
    durable: Option<Position>,
    /// Last position committed to the offset store.
    committed: Option<Position>,
    tables: BTreeMap<String, TableCounts>,
    conflicts: BTreeMap<String, ConflictCounts>,
    last_error: Option<String>,
}

/// Conflicts a database target met on one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConflictCounts {
    pub insert: u64,
    pub update: u64,
    pub delete: u64,
}

/// The live counters of one task (shared by the runner, the source and the
/// supervisor; survives the task's restarts).
#[derive(Debug, Default)]
pub struct Progress {
    /// Events taken from the source (after the source's own table
    /// selection).
    pub events_read: AtomicU64,
    /// Events the stage dropped (selection, DDL policy).
    pub events_filtered: AtomicU64,
    /// Events durable in the sink.
    pub events_written: AtomicU64,
    /// Source transactions with at least one event taken.
    pub transactions: AtomicU64,
    /// Offset commits.
    pub commits: AtomicU64,
    /// Restarts after transient failures.
    pub restarts: AtomicU64,
    /// Bytes the sink wrote in earlier runs of the task (a run's sink
    /// counts from zero).
    bytes_written_before: AtomicU64,
    /// The current run's sink's count.
    bytes_written_run: AtomicU64,
    /// Commit time (ms) of the last durable event; 0 before the first.
    last_durable_commit_ms: AtomicI64,
    /// Groups submitted and not yet durable.
    in_flight_groups: AtomicU64,
    pub source: Arc<SourceMetrics>,
    /// Per-table snapshot progress.
    pub snapshot: Arc<crate::source::snapshot::SnapshotStats>,
    /// Flow control, changeable while the task runs.
    pub throttle: Throttle,
    /// What the processing rules report (their thread writes it).
    pub rules: Arc<RulesStats>,
    positions: Mutex<Positions>,
}

/// The processing rules' own figures, as their thread last published them.
#[derive(Debug, Default)]
pub struct RulesStats {
    pub merge_groups: Mutex<Vec<crate::stage::rules::MergeGroup>>,
    /// Rows a filter failed on under `skip` or `dead_letter`.
    pub filter_errors: AtomicU64,
}

/// A task's flow control: most change events (snapshot rows included)
/// and sink bytes per second; 0 = no limit. Read at every group, so a
/// change applies at once, in every phase.
#[derive(Debug, Default)]
pub struct Throttle {
    pub rows_per_second: AtomicU64,
    pub bytes_per_second: AtomicU64,
}

impl Throttle {
    pub fn set(&self, rows_per_second: u64, bytes_per_second: u64) {
        self.rows_per_second.store(rows_per_second, Relaxed);
        self.bytes_per_second.store(bytes_per_second, Relaxed);
    }

    pub fn get(&self) -> (u64, u64) {
        (
            self.rows_per_second.load(Relaxed),
            self.bytes_per_second.load(Relaxed),
        )
    }
}

/// Row data in `batches`: the values of every image, as
/// [`crate::event::Value::approx_size`] counts them.
fn row_bytes(batches: &[Batch]) -> u64 {
    batches
        .iter()
        .flat_map(|b| &b.events)
        .map(|ev| {
            [ev.before.as_deref(), ev.after.as_deref()]
                .into_iter()
                .flatten()
                .flatten()
                .map(|v| v.approx_size() as u64)
                .sum::<u64>()
        })
        .sum()
}

/// When a throttled run may submit the group it took.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    next_at: Option<tokio::time::Instant>,
}

impl Pace {
    /// Whether the group taken may be submitted now.
    pub(crate) fn ready(&self) -> bool {
        self.next_at
            .is_none_or(|t| t <= tokio::time::Instant::now())
    }

    /// Until the group taken may be submitted.
    pub(crate) async fn wait(&self) {
        if let Some(t) = self.next_at {
            tokio::time::sleep_until(t).await;
        }
    }

    /// Most events to gather in one group: `max`, or a quarter second's
    /// worth under a rows limit (a group is paid for after it's taken).
    pub(crate) fn group_cap(&self, throttle: &Throttle, max: usize) -> usize {
        match throttle.get().0 {
            0 => max,
            rows => usize::try_from(rows / 4).unwrap_or(max).clamp(1, max),
        }
    }

    /// Accounts a group of `events` events read (`batches`: what the
    /// stage kept, whose row data counts for the byte rate).
    pub(crate) fn account(&mut self, throttle: &Throttle, batches: &[Batch], events: u64) {
        let (rows, byte_rate) = throttle.get();
        let bytes = if byte_rate > 0 { row_bytes(batches) } else { 0 };
        let mut secs: f64 = 0.0;
        if rows > 0 {
            secs = secs.max(events as f64 / rows as f64);
        }
        if byte_rate > 0 {
            secs = secs.max(bytes as f64 / byte_rate as f64);
        }
        if secs <= 0.0 {
            self.next_at = None;
            return;
        }
        let now = tokio::time::Instant::now();
        // Each group is paid for before it goes (a large one waits its
        // whole cost); an idle task earns no credit beyond now.
        let base = self.next_at.map_or(now, |t| t.max(now));
        self.next_at = Some(base + std::time::Duration::from_secs_f64(secs.min(3600.0)));
    }
}

/// A copy of a task's progress, for display.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProgressSnapshot {
    pub events_read: u64,
    pub events_filtered: u64,
    pub events_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub transactions: u64,
    pub commits: u64,
    pub restarts: u64,
    /// Text forms of the read, durable and committed positions.
    pub read_position: Option<String>,
    pub durable_position: Option<String>,
    pub committed_position: Option<String>,
    /// Seconds between now and the commit time of the last durable event
    /// while events are in flight; 0 when everything read is durable.
    /// `None` before the first event.
    pub lag_seconds: Option<f64>,
    /// Log bytes the server holds beyond the task's position, when the
    /// source can tell.
    pub lag_bytes: Option<u64>,
    pub tables: BTreeMap<String, TableCounts>,
    pub last_error: Option<String>,
    /// Tables being or having been copied by a snapshot in this process.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshot: BTreeMap<String, crate::source::snapshot::TableView>,
    /// The flow control in force, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleView>,
    /// Conflicts per target table (database targets), since the daemon
    /// started.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub conflicts: BTreeMap<String, ConflictCounts>,
    /// Shard merges of the processing rules: each shard seen, with the
    /// schema changes it has run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge_groups: Vec<crate::stage::rules::MergeGroup>,
    /// Rows a rule's filter failed on (`skip`, `dead_letter`) since the
    /// daemon started.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rule_filter_errors: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Flow control as shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ThrottleView {
    pub rows_per_second: u64,
    pub bytes_per_second: u64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    fn positions(&self) -> std::sync::MutexGuard<'_, Positions> {
        // Counters stay usable after a panic elsewhere.
        self.positions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A batch arrived from the source (before the stage).
    pub(crate) fn on_read(&self, batches: &[Batch]) {
        let mut events = 0u64;
        let mut txs = 0u64;
        for b in batches {
            events += b.events.len() as u64;
            let mut prev: Option<&ChangeEvent> = None;
            for ev in &b.events {
                if prev.is_none_or(|p| !std::sync::Arc::ptr_eq(&p.tx, &ev.tx)) {
                    txs += 1;
                }
                prev = Some(ev);
            }
        }
        self.events_read.fetch_add(events, Relaxed);
        self.transactions.fetch_add(txs, Relaxed);
        if let Some(b) = batches.last() {
            self.positions().read = Some(b.end.clone());
        }
    }

    /// Adds conflicts a sink reported (see `Sink::take_conflicts`).
    pub(crate) fn add_conflicts(&self, counts: Vec<(String, [u64; 3])>) {
        if counts.is_empty() {
            return;
        }
        let mut p = self.positions();
        for (table, [i, u, d]) in counts {
            let c = p.conflicts.entry(table).or_default();
            c.insert += i;
            c.update += u;
            c.delete += d;
        }
    }

    /// The stage kept `kept` of `read` events; these went to the sink.
    pub(crate) fn on_submit(&self, batches: &[Batch], read: u64, bytes_written: u64) {
        let kept: u64 = batches.iter().map(|b| b.events.len() as u64).sum();
        self.events_filtered
            .fetch_add(read.saturating_sub(kept), Relaxed);
        self.bytes_written_run.store(bytes_written, Relaxed);
        self.in_flight_groups.fetch_add(1, Relaxed);
        // Per-table counts: runs of one table's events are counted
        // together, so the map is touched once per run, not per event.
        let mut p = self.positions();
        let mut run: Option<(&ChangeEvent, u64)> = None;
        // The table's name is built in a reused buffer; the map allocates
        // only for a table it hasn't seen.
        let mut name = String::new();
        let mut flush = |p: &mut Positions, ev: &ChangeEvent, n: u64| {
            name.clear();
            match &ev.table {
                Some(t) => {
                    name.push_str(t.schema.as_deref().unwrap_or(&t.db));
                    name.push('.');
                    name.push_str(&t.name);
                }
                None => name.push_str("(no table)"),
            }
            match p.tables.get_mut(name.as_str()) {
                Some(c) => c.add(ev.op, n),
                None => p.tables.entry(name.clone()).or_default().add(ev.op, n),
            }
        };
        for ev in batches.iter().flat_map(|b| &b.events) {
            match &mut run {
                Some((first, n))
                    if first.op == ev.op
                        && match (&first.table, &ev.table) {
                            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                            (None, None) => true,
                            _ => false,
                        } =>
                {
                    *n += 1
                }
                _ => {
                    if let Some((first, n)) = run.take() {
                        flush(&mut p, first, n);
                    }
                    run = Some((ev, 1));
                }
            }
        }
        if let Some((first, n)) = run {
            flush(&mut p, first, n);
        }
    }

    /// Groups up to `end` are durable: `events` events, the last of which
    /// committed at `commit_ms` (0: none in them).
    pub(crate) fn on_durable(&self, end: &Position, groups: u64, events: u64, commit_ms: i64) {
        self.events_written.fetch_add(events, Relaxed);
        let _ = self
            .in_flight_groups
            .fetch_update(Relaxed, Relaxed, |g| Some(g.saturating_sub(groups)));
        if commit_ms > 0 {
            self.last_durable_commit_ms.store(commit_ms, Relaxed);
        }
        self.positions().durable = Some(end.clone());
    }

    pub(crate) fn on_commit(&self, pos: &Position) {
        self.commits.fetch_add(1, Relaxed);
        self.positions().committed = Some(pos.clone());
    }

    /// A run starts: the positions it resumes from, and a sink counting
    /// its bytes from zero.
    pub(crate) fn on_run_start(&self, committed: Option<&Position>) {
        let run = self.bytes_written_run.swap(0, Relaxed);
        self.bytes_written_before.fetch_add(run, Relaxed);
        self.in_flight_groups.store(0, Relaxed);
        let mut p = self.positions();
        p.committed = committed.cloned();
        p.durable = committed.cloned();
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        self.positions().last_error = error;
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let p = self.positions();
        let last_commit = self.last_durable_commit_ms.load(Relaxed);
        let lag_seconds = if last_commit == 0 {
            None
        } else if self.in_flight_groups.load(Relaxed) == 0 && p.read == p.durable {
            Some(0.0)
        } else {
            Some(((crate::store::now_ms() - last_commit).max(0) as f64) / 1000.0)
        };
        let lag_bytes = self.source.lag_bytes.load(Relaxed);
        ProgressSnapshot {
            events_read: self.events_read.load(Relaxed),
            events_filtered: self.events_filtered.load(Relaxed),
            events_written: self.events_written.load(Relaxed),
            bytes_read: self.source.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written_before.load(Relaxed)
                + self.bytes_written_run.load(Relaxed),
            transactions: self.transactions.load(Relaxed),
            commits: self.commits.load(Relaxed),
            restarts: self.restarts.load(Relaxed),
            read_position: p.read.as_ref().map(|x| x.to_string()),
            durable_position: p.durable.as_ref().map(|x| x.to_string()),
            committed_position: p.committed.as_ref().map(|x| x.to_string()),
            lag_seconds,
            lag_bytes: u64::try_from(lag_bytes).ok(),
            tables: p.tables.clone(),
            conflicts: p.conflicts.clone(),
            merge_groups: self
                .rules
                .merge_groups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            rule_filter_errors: self.rules.filter_errors.load(Relaxed),
            last_error: p.last_error.clone(),
            snapshot: self.snapshot.view(),
            throttle: {
                let (rows, bytes) = self.throttle.get();
                (rows > 0 || bytes > 0).then_some(ThrottleView {
                    rows_per_second: rows,
                    bytes_per_second: bytes,
                })
            },
        }
    }
}
