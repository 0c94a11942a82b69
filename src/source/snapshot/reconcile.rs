//! Placing snapshot chunks in the change stream, exactly.
//!
//! A chunk is the rows of one key range, read in a consistent snapshot of
//! its own, together with the stream point `at` that snapshot reflects:
//! every transaction committed before `at` is in the rows, none after.
//! The chunk goes into the stream just before the first transaction at or
//! after `at`, so that `rows + the stream after them` is the table (see
//! docs/snapshot.md for the argument). The reconciler decides, for each
//! stream batch and each chunk read, what goes out next:
//!
//! - a chunk whose read started is *in flight*: its `at` is not known yet,
//!   only that it is at or after `head`, the server's log end read before
//!   its snapshot was taken; stream batches from `head` on wait until the
//!   chunk is read (they might come after it);
//! - a chunk read is *ready*; it goes out once the stream has passed
//!   everything before its `at`: a stream batch at or after `at` is
//!   waiting, or the reader has read up to `at` (a quiet log);
//! - PostgreSQL gives no exact log point for a snapshot: `at` is the WAL
//!   insert position read right after the snapshot was taken, so a
//!   transaction committing just before `at` may still be invisible to
//!   the snapshot. Such a transaction goes out before the chunk, so the
//!   chunk's rows for the keys it touched are dropped (the stream already
//!   carries their newer state). A transaction that went out before the
//!   chunk was read and that the snapshot doesn't see makes the chunk be
//!   read again.
//! - MariaDB's point is bounded, not known: every transaction from the
//!   lower bound up to `at` goes out before the chunk and drops the rows it
//!   touched, seen or not; one that went out before the chunk was read
//!   makes it be read again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::event::{Batch, ChangeEvent, Op, Position, TableSchema, Value};

/// Which transactions a chunk's snapshot sees.
#[derive(Debug, Clone, PartialEq)]
pub enum Visibility {
    /// Every transaction before `at` and none after (MySQL: the snapshot is
    /// opened while `FLUSH TABLES WITH READ LOCK` holds commits).
    Exact,
    /// Every transaction before this point and none at or after `at`;
    /// those in between may or may not be seen (MariaDB: the point is
    /// bounded, see `mysql::mariadb_snapshot`).
    From(Position),
    /// A PostgreSQL snapshot (`pg_current_snapshot()`), 64-bit xids.
    Pg(PgSnapshot),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PgSnapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: HashSet<u64>,
}

impl PgSnapshot {
    /// Whether the snapshot sees the (committed) transaction `xid`, as
    /// pgoutput gives it (32 bits, widened by the snapshot's epoch).
    pub fn sees(&self, xid: u64) -> bool {
        let xid = self.widen(xid);
        xid < self.xmin || (xid < self.xmax && !self.xip.contains(&xid))
    }

    fn widen(&self, xid: u64) -> u64 {
        if xid > u64::from(u32::MAX) {
            return xid;
        }
        let epoch = self.xmax >> 32;
        let full = epoch << 32 | xid;
        // A 32-bit xid far above xmax's is from the previous epoch.
        if full > self.xmax.saturating_add(1 << 31) && epoch > 0 {
            full - (1 << 32)
        } else {
            full
        }
    }
}

/// The rows of one key range of one table, read at one stream point.
#[derive(Debug)]
pub struct Chunk {
    pub id: u64,
    pub job: super::Job,
    pub schema: Arc<TableSchema>,
    /// The stream point the rows reflect (a start-of-transaction position).
    pub at: Position,
    pub visibility: Visibility,
    pub rows: Vec<Vec<Value>>,
    /// When the snapshot was read (ms since the epoch).
    pub read_at_ms: i64,
    pub connector: crate::event::Connector,
    /// Rows dropped because the stream carries their state.
    pub superseded: u64,
    /// Set when a transaction the snapshot doesn't see touched the table
    /// and its rows can't be matched by key (a table without a key): the
    /// chunk must be read again.
    pub spoiled: bool,
    /// Counts the chunk against the snapshot's memory bound until it is
    /// dropped (see `workers`).
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Chunks whose read started, by id: a point at or before each one's
/// snapshot (its head). Workers add to it before taking the snapshot.
pub type InFlight = Arc<Heads>;

/// The heads of the chunks in flight (see [`InFlight`]).
#[derive(Debug, Default)]
pub struct Heads {
    map: Mutex<HashMap<u64, Position>>,
    changed: tokio::sync::Notify,
}

impl Heads {
    pub fn lock(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, HashMap<u64, Position>>> {
        self.map.lock()
    }

    /// Sets (or moves) chunk `id`'s head, waking the reconciler: a head
    /// moved on may let the stream on.
    pub fn set(&self, id: u64, head: Position) {
        if let Ok(mut f) = self.map.lock() {
            f.insert(id, head);
        }
        self.changed.notify_one();
    }

    /// Forgets chunk `id` (its read failed or was cancelled).
    pub fn forget(&self, id: u64) {
        if let Ok(mut f) = self.map.lock() {
            f.remove(&id);
        }
        self.changed.notify_one();
    }

    /// Waits for a head to be set or forgotten since the last wait.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// What to do next (see the module docs).
#[derive(Debug)]
pub enum Step {
    /// Hand this stream batch on.
    Pass(Batch),
    /// Emit this chunk's rows now.
    Emit(Chunk),
    /// Read this chunk again: the stream passed a change its snapshot
    /// doesn't see, which can't be reconciled.
    Reread(Chunk),
    /// Nothing can move until a stream batch, a chunk or a read position
    /// arrives.
    Wait,
}

/// How many recently passed PostgreSQL transactions are remembered to
/// check a chunk read after them.
const RECENT_XIDS: usize = 8192;

#[derive(Debug, Default)]
pub struct Reconciler {
    pub in_flight: InFlight,
    ready: Vec<Chunk>,
    recent_xids: VecDeque<u64>,
    /// The end of the last stream batch passed.
    passed_to: Option<Position>,
}

fn lt(a: &Position, b: &Position) -> bool {
    a.partial_cmp(b).is_some_and(|o| o.is_lt())
}

/// Where a batch starts: its first event, else its end.
fn batch_start(b: &Batch) -> &Position {
    b.events.first().map_or(&b.end, |e| &e.position)
}

impl Reconciler {
    pub fn new(in_flight: InFlight) -> Self {
        Reconciler {
            in_flight,
            ..Reconciler::default()
        }
    }

    /// Chunks read and waiting for their place.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// A chunk was read. `Err` returns its job when it must be read again.
    pub fn add(&mut self, chunk: Chunk) -> Result<(), super::Job> {
        if let Ok(mut f) = self.in_flight.lock() {
            f.remove(&chunk.id);
        }
        let unplaceable = match &chunk.visibility {
            Visibility::Exact => false,
            Visibility::Pg(s) => self.recent_xids.iter().any(|&x| !s.sees(x)),
            // A transaction from `from` on went out unchecked.
            Visibility::From(from) => self.passed_to.as_ref().is_some_and(|p| lt(from, p)),
        };
        if unplaceable {
            return Err(chunk.job);
        }
        self.ready.push(chunk);
        self.ready.sort_by(|a, b| {
            a.at.partial_cmp(&b.at)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.id.cmp(&b.id))
        });
        Ok(())
    }

    /// The earliest point a stream batch may not pass yet: the head of a
    /// chunk in flight or the point of a chunk ready.
    fn limit(&self) -> Option<Position> {
        let mut limit: Option<Position> = self.ready.first().map(|c| c.at.clone());
        if let Ok(f) = self.in_flight.lock() {
            for head in f.values() {
                if limit.as_ref().is_none_or(|l| lt(head, l)) {
                    limit = Some(head.clone());
                }
            }
        }
        limit
    }

    /// True when no chunk in flight could land before `at`.
    fn none_in_flight_before(&self, at: &Position) -> bool {
        self.in_flight
            .lock()
            .map(|f| f.values().all(|h| !lt(h, at)))
            .unwrap_or(false)
    }

    /// The next step, given the stream batch waiting (taken when passed)
    /// and how far the stream has been read when no batch is waiting.
    pub fn step(&mut self, held: &mut Option<Batch>, read_to: Option<&Position>) -> Step {
        // A ready chunk goes out once everything before its point passed.
        if let Some(first) = self.ready.first() {
            let passed = match held.as_ref() {
                Some(b) => !lt(batch_start(b), &first.at),
                None => read_to.is_some_and(|r| !lt(r, &first.at)),
            };
            if passed && self.none_in_flight_before(&first.at) {
                let chunk = self.ready.remove(0);
                return if chunk.spoiled {
                    Step::Reread(chunk)
                } else {
                    Step::Emit(chunk)
                };
            }
        }
        let Some(batch) = held.take() else {
            return Step::Wait;
        };
        let limit = self.limit();
        let part = match &limit {
            None => batch,
            Some(l) if lt(&batch.end, l) => batch,
            Some(l) => {
                let (before, rest) = split_before(batch, l);
                *held = Some(rest);
                match before {
                    Some(b) => b,
                    None => return Step::Wait,
                }
            }
        };
        self.passing(&part);
        self.passed_to = Some(part.end.clone());
        Step::Pass(part)
    }

    /// A batch goes out before every ready chunk: changes their snapshots
    /// don't see, or may not see, drop the chunk rows they touched.
    fn passing(&mut self, b: &Batch) {
        for ev in &b.events {
            let xid = ev.tx.xid;
            if let Some(xid) = xid
                && self.recent_xids.back() != Some(&xid)
            {
                if self.recent_xids.len() == RECENT_XIDS {
                    self.recent_xids.pop_front();
                }
                self.recent_xids.push_back(xid);
            }
            for c in &mut self.ready {
                let unseen = match &c.visibility {
                    Visibility::Exact => false,
                    Visibility::Pg(s) => xid.is_some_and(|x| !s.sees(x)),
                    Visibility::From(from) => !lt(&ev.position, from),
                };
                if unseen {
                    drop_touched(c, ev);
                }
            }
        }
    }
}

/// Drops from `c` the rows `ev` (a change its snapshot doesn't see) touched.
fn drop_touched(c: &mut Chunk, ev: &ChangeEvent) {
    let Some(t) = &ev.table else { return };
    if t.name != c.schema.name || t.schema != c.schema.schema || t.db != c.schema.db {
        return;
    }
    if ev.op == Op::Truncate {
        c.superseded += c.rows.len() as u64;
        c.rows.clear();
        return;
    }
    let key = &c.schema.key;
    // Without a key the rows can't be matched; with an unchanged TOAST
    // value the stream's row is incomplete, so the chunk's can't give way
    // to it: read the chunk again (a new snapshot sees the change).
    let partial = ev
        .after
        .as_ref()
        .is_some_and(|a| a.iter().any(|v| matches!(v, Value::Unchanged)));
    if key.is_empty() || partial {
        c.spoiled = true;
        return;
    }
    let key_of = |row: &[Value]| -> Option<String> {
        let parts: Option<Vec<&Value>> = key.iter().map(|&i| row.get(i)).collect();
        parts.map(|p| format!("{p:?}"))
    };
    let touched: Vec<String> = [ev.before.as_deref(), ev.after.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(key_of)
        .collect();
    if touched.is_empty() {
        return;
    }
    let before = c.rows.len();
    c.rows
        .retain(|r| key_of(r).is_none_or(|k| !touched.contains(&k)));
    c.superseded += (before - c.rows.len()) as u64;
}

/// Splits a batch into the events before `at` (with an end that covers
/// them, their transactions being complete) and the rest.
fn split_before(mut b: Batch, at: &Position) -> (Option<Batch>, Batch) {
    let n = b.events.iter().take_while(|e| lt(&e.position, at)).count();
    if n == 0 {
        return (None, b);
    }
    let rest = b.events.split_off(n);
    let end = b.events.last().map(|e| e.position.tx_end());
    let before = end.map(|end| Batch {
        events: b.events,
        end,
    });
    (
        before,
        Batch {
            events: rest,
            end: b.end,
        },
    )
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
