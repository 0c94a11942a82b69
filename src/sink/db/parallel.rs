//! Parallel apply of a group: its source transactions, split into sets
//! that share no row, applied on several connections at once.
//!
//! The rules (docs/targets.md):
//! - Two transactions depend on each other when they touch a common row
//!   by *any* unique key of the target table — the primary key or a
//!   secondary unique key, of the before image or the after image (a
//!   key-changing update counts for both keys). Dependent transactions
//!   land on the same connection, in source order; a row's history is
//!   never reordered, and a secondary unique key swapped between two rows
//!   (the failure of per-table or per-primary-key batching) stays in order.
//! - Only groups of whole transactions of tables with a key, without DDL
//!   or TRUNCATE, go parallel; anything else is applied serially, after
//!   everything before it committed. Groups follow each other: the next
//!   one starts once this one committed everywhere.
//! - Foreign keys and triggers are off in apply sessions (MySQL
//!   `foreign_key_checks = 0`; PostgreSQL `session_replication_role =
//!   replica`): the source enforced them, and independent transactions may
//!   commit in either order. Where the session can't turn them off, set
//!   `workers = 1`.
//! - Exactly once: each connection commits, with its rows, the list of
//!   the source transactions it applied (`apply_done`, one row per
//!   connection). Once all have committed, the task's position moves past
//!   the group and those rows are cleared in the same transaction. After
//!   a crash in between, the position says where to resume and the rows
//!   say which later transactions are already there: they are skipped.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::watch;
use tracing::debug;

use super::apply::{Applier, Mode, Stop, Target, TargetTable};
use super::{DbErrorKind, DbSinkError, Durable};
use crate::event::{Batch, ChangeEvent, Op, Position, Value};

/// Environment variable naming a file: if it exists once the workers
/// committed a group, it is removed and the process aborts before the
/// position moves. For tests; unset in production.
pub const ABORT_FAILPOINT: &str = "TIDEMARK_FAILPOINT_APPLY_ABORT";

/// Fewer events than this go serially: splitting costs more than it saves.
const MIN_PARALLEL_EVENTS: usize = 64;

/// Whether a group can go parallel: whole transactions, row changes of
/// tables with a key, no DDL, TRUNCATE or table copied whole.
pub fn eligible(batches: &[Batch]) -> bool {
    let events: usize = batches.iter().map(|b| b.events.len()).sum();
    events >= MIN_PARALLEL_EVENTS
        && batches.iter().all(|b| {
            b.end.is_tx_end()
                && b.events.iter().all(|ev| {
                    matches!(ev.op, Op::Create | Op::Read | Op::Update | Op::Delete)
                        && ev.table.as_ref().is_some_and(|t| !t.key.is_empty())
                })
        })
}

/// Rows of a snapshot chunk per unit: a chunk's rows are independent, so
/// a chunk spreads over the workers.
const CHUNK_PART_ROWS: usize = 1024;

/// One source transaction of the group, or a part of a snapshot chunk.
struct Unit<'a> {
    events: Vec<&'a ChangeEvent>,
    /// The transaction (chunk) it belongs to.
    tx_end: Position,
    /// What it covers: from its first change to the end of its transaction
    /// (a chunk part: to its last row), recorded when a worker commits it.
    first: Position,
    last: Position,
}

/// Union-find over units.
struct Sets(Vec<usize>);

impl Sets {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// Hashes of the unique keys a row image holds (a key with a NULL part
/// holds no row: NULLs never collide in a unique index).
fn key_hashes(t: &TargetTable, row: &[Value], out: &mut Vec<u64>) {
    for (n, key) in t.uniques.iter().enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        t.label.hash(&mut h);
        n.hash(&mut h);
        let mut complete = true;
        for &i in key {
            match row.get(i) {
                None | Some(Value::Null) | Some(Value::Unchanged) => {
                    complete = false;
                    break;
                }
                Some(v) => format!("{v:?}").hash(&mut h),
            }
        }
        if complete {
            out.push(h.finish());
        }
    }
}

impl<T: Target> Applier<T> {
    /// Applies a group on the workers (see the module docs), then moves
    /// the position past it.
    pub(super) async fn parallel_group(
        &mut self,
        ticket: u64,
        batches: Vec<Batch>,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), DbSinkError> {
        // The units, skipping what is on the target already.
        let mut units: Vec<Unit> = Vec::new();
        for ev in batches.iter().flat_map(|b| b.events.iter()) {
            if self.is_applied(ev) {
                continue;
            }
            let tx_end = ev.position.tx_end();
            let part = ev.op == Op::Read;
            match units.last_mut() {
                Some(u) if u.tx_end == tx_end && !(part && u.events.len() >= CHUNK_PART_ROWS) => {
                    u.events.push(ev);
                    if part {
                        u.last = ev.position.clone();
                    }
                }
                _ => units.push(Unit {
                    events: vec![ev],
                    first: ev.position.clone(),
                    last: if part {
                        ev.position.clone()
                    } else {
                        tx_end.clone()
                    },
                    tx_end,
                }),
            }
        }
        // Tables resolved here first (created if need be), for their keys.
        let mut tables: HashMap<usize, Arc<TargetTable>> = HashMap::new();
        for u in &units {
            for ev in &u.events {
                if let Some(src) = &ev.table {
                    let id = Arc::as_ptr(src) as usize;
                    if let std::collections::hash_map::Entry::Vacant(slot) = tables.entry(id) {
                        slot.insert(self.target.table(src, &self.s).await?);
                    }
                }
            }
        }
        // Tables created or altered just now: the workers' sessions must
        // see them.
        self.target.commit_schema().await?;
        let mut sets = Sets((0..units.len()).collect());
        let mut owner: HashMap<u64, usize> = HashMap::new();
        let mut hashes = Vec::new();
        for (i, u) in units.iter().enumerate() {
            for ev in &u.events {
                let Some(t) = ev
                    .table
                    .as_ref()
                    .and_then(|s| tables.get(&(Arc::as_ptr(s) as usize)))
                else {
                    continue;
                };
                hashes.clear();
                for img in [ev.before.as_deref(), ev.after.as_deref()]
                    .into_iter()
                    .flatten()
                {
                    key_hashes(t, img, &mut hashes);
                }
                for h in &hashes {
                    match owner.get(h) {
                        Some(&j) => sets.union(i, j),
                        None => {
                            owner.insert(*h, i);
                        }
                    }
                }
            }
        }
        // Sets to workers, largest first onto the least loaded, each
        // worker's units in source order.
        let mut by_set: HashMap<usize, Vec<usize>> = HashMap::new();
        for i in 0..units.len() {
            let root = sets.find(i);
            by_set.entry(root).or_default().push(i);
        }
        let mut groups: Vec<Vec<usize>> = by_set.into_values().collect();
        groups.sort_by_key(|g| {
            std::cmp::Reverse(g.iter().map(|&i| units[i].events.len()).sum::<usize>())
        });
        let n = self.workers.len();
        let mut load = vec![0usize; n];
        let mut assigned: Vec<Vec<usize>> = vec![Vec::new(); n];
        for g in groups {
            let w = (0..n).min_by_key(|&w| load[w]).unwrap_or(0);
            load[w] += g.iter().map(|&i| units[i].events.len()).sum::<usize>();
            assigned[w].extend(g);
        }
        debug!(task = %self.s.task, units = units.len(), loads = ?load, "parallel group");
        let units = &units;
        let jobs = self
            .workers
            .iter_mut()
            .zip(assigned)
            .filter(|(_, a)| !a.is_empty())
            .map(|(w, mut a)| {
                a.sort_unstable();
                let evs: Vec<&ChangeEvent> = a
                    .iter()
                    .flat_map(|&i| units[i].events.iter().copied())
                    .collect();
                let txs: Vec<String> = a
                    .iter()
                    .map(|&i| format!("{}\t{}", units[i].first, units[i].last))
                    .collect();
                async move { w.apply_part(&evs, &txs.join("\n")).await }
            });
        let results = futures_util::future::join_all(jobs).await;
        for r in results {
            r?;
        }
        if let Some(gate) = std::env::var_os(ABORT_FAILPOINT)
            && std::fs::remove_file(&gate).is_ok()
        {
            // Test failpoint: the process dies between the workers' commits
            // and the position's, the window the `apply_done` rows cover.
            tracing::error!("failpoint {ABORT_FAILPOINT}: aborting after the workers committed");
            std::process::abort();
        }
        self.parallel_ran = true;
        for u in units {
            self.done.push((u.first.clone(), u.last.clone()));
        }
        let end = batches.last().map(|b| b.end.clone());
        self.open.push((ticket, batches));
        if let Some(end) = end {
            self.commit_at(end, durable).await?;
        }
        Ok(())
    }

    /// A worker's part: its transactions in one target transaction, with
    /// the list of them; conflicts and deadlocks replayed as serially.
    async fn apply_part(&mut self, evs: &[&ChangeEvent], txs: &str) -> Result<(), DbSinkError> {
        let (dummy, _) = watch::channel(Durable::default());
        // Resolve tables before any statement: resolving never commits
        // inside the part.
        for ev in evs {
            if let Some(src) = &ev.table {
                self.target.table(src, &self.s).await?;
            }
        }
        let mut mode = Mode::Optimistic;
        let mut attempt = 0u32;
        loop {
            match self.apply_events(evs, mode, &dummy).await {
                Ok(()) => break,
                Err(Stop::Fail(e)) => {
                    let _ = self.target.rollback().await;
                    return Err(e);
                }
                Err(Stop::Replay(e)) => {
                    attempt += 1;
                    self.target.rollback().await?;
                    if attempt > 5 {
                        return Err(e.context("applying the same transactions failed 5 times"));
                    }
                    if e.kind() == DbErrorKind::Retry {
                        tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(5)))
                            .await;
                    }
                    mode = Mode::Careful;
                }
            }
        }
        let worker = self.worker.unwrap_or_default();
        self.target.commit_done(&self.s.task, worker, txs).await?;
        self.rows = 0;
        Ok(())
    }
}
