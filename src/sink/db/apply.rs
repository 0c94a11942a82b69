//! The applier: one connection, source order, target transactions that
//! carry the task's position.
//!
//! - A target transaction holds whole source transactions: it commits at
//!   the end of a group whose last batch ends a source transaction, or
//!   once it holds `max_tx_rows` rows (then inside a source transaction;
//!   the stored position still resumes exactly), or when the task drains.
//! - Optimistic first: consecutive inserts (and snapshot rows) of one
//!   table go in multi-row statements; updates and deletes check the rows
//!   they touched. A unique-key violation, a deadlock or a serialization
//!   failure rolls the open transaction back and applies it again
//!   *carefully*: row by row, each statement fenced by a savepoint where
//!   the engine needs one, so that each conflict meets the table's policy.
//! - The conflict policy (`overwrite` / `ignore` / `fail`) acts on: an
//!   insert whose key exists, an update whose row is missing or whose new
//!   key is taken, a delete whose row is missing. Every conflict is
//!   counted per table and logged with its key and position.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::conflict::Journal;
use super::{DbErrorKind, DbSinkError, Durable, Msg};
use crate::config::{ConflictAction, ConflictOp, DbSinkConfig, DdlConfig, TablePolicy};
use crate::event::{Batch, ChangeEvent, Connector, Op, Position, TableSchema, Value};

/// What the applier needs besides its target.
#[derive(Clone)]
pub struct Settings {
    pub task: String,
    pub source: Connector,
    pub ddl: DdlConfig,
    pub cfg: DbSinkConfig,
    /// The DDL statement an operator resumed the task at (`pause` policy):
    /// applied this time.
    pub approved_ddl: Option<Position>,
}

/// How rows go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertMode {
    /// INSERT; a taken key is an error.
    Plain,
    /// INSERT that replaces the row with the same key.
    Upsert,
    /// Rows of a snapshot chunk, by the engine's bulk path (PostgreSQL
    /// COPY); a taken key is an error, after which the rows go again one
    /// by one as upserts.
    Load,
}

/// A source table as it exists on the target.
#[derive(Debug)]
pub struct TargetTable {
    /// The source schema it was resolved for.
    pub source: Arc<TableSchema>,
    /// Quoted, qualified name for statements.
    pub sql_name: String,
    /// `schema.table` for messages.
    pub label: String,
    /// Per source column: its quoted name on the target and its kind.
    pub columns: Vec<TargetColumn>,
    /// Source column indices that identify a row; all columns when the
    /// source table has no key.
    pub key: Vec<usize>,
    /// Whether the source table has a key (else rows match on every column).
    pub keyed: bool,
    /// Every unique key of the target table (the primary key included),
    /// as source column indices: what parallel apply orders by.
    pub uniques: Vec<Vec<usize>>,
}

impl TargetTable {
    /// Builds `uniques` from the target's unique indexes (column names),
    /// adding the source key.
    pub fn set_uniques(&mut self, indexes: Vec<Vec<String>>) {
        let pos = |n: &String| self.source.columns.iter().position(|c| &c.name == n);
        let mut out: Vec<Vec<usize>> = indexes
            .iter()
            .filter_map(|cols| cols.iter().map(pos).collect::<Option<Vec<usize>>>())
            .filter(|k| !k.is_empty())
            .collect();
        if self.keyed && !out.contains(&self.key) {
            out.push(self.key.clone());
        }
        self.uniques = out;
    }
}

#[derive(Debug, Clone)]
pub struct TargetColumn {
    pub sql_name: String,
    pub type_name: String,
    pub kind: super::render::Kind,
    /// Whether the target can compare the column with a source value
    /// exactly (the before-image check; MySQL leaves out FLOAT, BIT,
    /// JSON and geometry, whose comparisons with a sent value aren't).
    pub compared: bool,
}

/// The columns an update's before image is checked on: compared, outside
/// the key (the key finds the row), sent by the source.
pub fn checked_columns(t: &TargetTable, before: &[Value]) -> Vec<usize> {
    if !t.keyed {
        return Vec::new();
    }
    t.columns
        .iter()
        .enumerate()
        .filter(|&(i, c)| {
            c.compared
                && !t.key.contains(&i)
                && !matches!(before.get(i), None | Some(Value::Unchanged))
        })
        .map(|(i, _)| i)
        .collect()
}

/// One engine's statements. Every method runs inside the open target
/// transaction (begun on first use).
pub trait Target: Send {
    /// Connects to the target and checks it (writable); `worker` names a
    /// parallel worker's connection.
    fn connect(
        s: &Settings,
        worker: Option<usize>,
    ) -> impl Future<Output = Result<Self, DbSinkError>> + Send
    where
        Self: Sized;
    /// Creates tidemark's tables on the target if missing, takes the task's
    /// lock there (`exclusive`) and reads the task's position.
    fn open(
        &mut self,
        task: &str,
        journal: bool,
        exclusive: bool,
    ) -> impl Future<Output = Result<super::Opened, DbSinkError>> + Send;
    /// The target table for a source table, created or given new columns
    /// when the settings allow.
    fn table(
        &mut self,
        src: &Arc<TableSchema>,
        settings: &Settings,
    ) -> impl Future<Output = Result<Arc<TargetTable>, DbSinkError>> + Send;
    /// Whether `src` is resolved already (resolving may run DDL).
    fn has_table(&self, src: &Arc<TableSchema>) -> bool;
    /// Inserts rows: a taken key fails with [`DbErrorKind::Duplicate`]
    /// (`Plain`, `Load`), or the row with the key is replaced (`Upsert`).
    fn insert(
        &mut self,
        t: &TargetTable,
        rows: &[&[Value]],
        how: InsertMode,
    ) -> impl Future<Output = Result<u64, DbSinkError>> + Send;
    /// Deletes every row (a table without a key copied again whole).
    fn clear(&mut self, t: &TargetTable) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    /// Updates the row whose key `key` holds and, with `before`, whose
    /// [`checked_columns`] equal the before image's; returns rows matched.
    fn update(
        &mut self,
        t: &TargetTable,
        key: &[Value],
        after: &[Value],
        before: Option<&[Value]>,
    ) -> impl Future<Output = Result<u64, DbSinkError>> + Send;
    /// Updates many rows (keys `keys`, after images `afters`, all leaving
    /// the same columns alone; no row twice), with `befores` checked as in
    /// `update` (all with the same checked columns); returns rows matched.
    fn update_many(
        &mut self,
        t: &TargetTable,
        keys: &[Vec<Value>],
        afters: &[&[Value]],
        befores: Option<&[&[Value]]>,
    ) -> impl Future<Output = Result<u64, DbSinkError>> + Send;
    /// Whether the row whose key `key` holds exists.
    fn exists(
        &mut self,
        t: &TargetTable,
        key: &[Value],
    ) -> impl Future<Output = Result<bool, DbSinkError>> + Send;
    /// Deletes many rows by key (no row twice); returns rows deleted.
    fn delete_many(
        &mut self,
        t: &TargetTable,
        keys: &[Vec<Value>],
    ) -> impl Future<Output = Result<u64, DbSinkError>> + Send;
    /// Deletes the row whose key `key` holds; returns rows deleted.
    fn delete(
        &mut self,
        t: &TargetTable,
        key: &[Value],
    ) -> impl Future<Output = Result<u64, DbSinkError>> + Send;
    fn truncate(&mut self, t: &TargetTable)
    -> impl Future<Output = Result<(), DbSinkError>> + Send;
    /// Records a conflict in `<meta_schema>.conflicts`, with the target's
    /// row as it is, inside the open transaction.
    fn journal(
        &mut self,
        t: &TargetTable,
        entry: &Journal<'_>,
    ) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    /// Runs a DDL statement in database `db` (mapped).
    fn ddl(
        &mut self,
        db: Option<&str>,
        sql: &str,
    ) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    /// Drops the table the source dropped (`IF EXISTS`).
    fn drop_table(
        &mut self,
        schema: &str,
        table: &str,
    ) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    /// Fences the next statement (careful mode): PostgreSQL needs it to
    /// go on after a failed statement; MySQL rolls back the statement alone.
    fn savepoint(&mut self) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    fn release(&mut self) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    fn rollback_to(&mut self) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    /// Writes the position and commits; `clear_done`: also forgets the
    /// parallel workers' rows (the position now covers them).
    fn commit(
        &mut self,
        task: &str,
        pos: &Position,
        clear_done: bool,
    ) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    /// A parallel worker's commit: records the transactions (`tx_end`
    /// positions, one per line) it applied, in its own row.
    fn commit_done(
        &mut self,
        task: &str,
        worker: usize,
        txs: &str,
    ) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    fn rollback(&mut self) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    /// Commits a transaction that holds nothing but schema changes (tables
    /// created for a parallel group, which the workers must see).
    fn commit_schema(&mut self) -> impl Future<Output = Result<(), DbSinkError>> + Send;
    /// Whether DDL runs inside the transaction (PostgreSQL) or commits it
    /// (MySQL).
    fn transactional_ddl(&self) -> bool;
    /// The engine the target is.
    fn engine(&self) -> super::Engine;
    /// Forgets resolved tables (after DDL).
    fn forget_tables(&mut self);
    /// Bytes of values sent so far.
    fn sent_bytes(&self) -> u64;
}

use std::future::Future;

/// Mode of a pass over the open transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Optimistic,
    Careful,
}

/// Why a pass stopped before its end.
pub(super) enum Stop {
    /// Roll back and apply the open transaction again, carefully.
    Replay(DbSinkError),
    Fail(DbSinkError),
}

impl From<DbSinkError> for Stop {
    fn from(e: DbSinkError) -> Stop {
        match e.kind() {
            DbErrorKind::Duplicate | DbErrorKind::Retry => Stop::Replay(e),
            DbErrorKind::InEffect | DbErrorKind::Conflict | DbErrorKind::Other => Stop::Fail(e),
        }
    }
}

/// Conflict counts per table (insert, update, delete) since they were
/// last taken.
pub type Tally = Arc<std::sync::Mutex<HashMap<String, [u64; 3]>>>;

pub struct Applier<T: Target> {
    pub(super) target: T,
    pub(super) s: Settings,
    bytes: Arc<AtomicU64>,
    /// Groups in the open target transaction (or partly committed).
    pub(super) open: Vec<(u64, Vec<Batch>)>,
    /// The last position committed on the target.
    pub(super) committed: Option<Position>,
    /// Rows in the open transaction.
    pub(super) rows: usize,
    /// The position of the last event applied in the open transaction.
    pub(super) applied: Option<Position>,
    policies: HashMap<(String, String), TablePolicy>,
    pub(super) conflicts: HashMap<String, [u64; 3]>,
    /// Conflicts per table (insert, update, delete) not yet taken by the
    /// task's progress; shared by the workers.
    pub(super) tally: Tally,
    /// Set until the first event after open is applied: a DDL that fails
    /// because it is already in effect was applied before a crash.
    pub(super) first_after_open: bool,
    /// Ranges of changes past `committed` that parallel workers committed
    /// (a transaction, from its first change to its end; or a part of a
    /// snapshot chunk): skipped when they come again.
    pub(super) done: Vec<(Position, Position)>,
    /// Set on a parallel worker: its number (it never commits positions).
    pub(super) worker: Option<usize>,
    /// The parallel workers (`workers` > 1), each with its connection.
    pub(super) workers: Vec<Applier<T>>,
    /// A parallel group committed worker rows since the last commit.
    pub(super) parallel_ran: bool,
}

impl<T: Target> Applier<T> {
    pub fn new(target: T, s: Settings, bytes: Arc<AtomicU64>) -> Self {
        Applier {
            target,
            s,
            bytes,
            open: Vec::new(),
            committed: None,
            rows: 0,
            applied: None,
            policies: HashMap::new(),
            conflicts: HashMap::new(),
            tally: Tally::default(),
            first_after_open: true,
            done: Vec::new(),
            worker: None,
            workers: Vec::new(),
            parallel_ran: false,
        }
    }

    /// An applier with parallel workers on `extra` connections (none:
    /// serial), skipping `done` transactions a previous run's workers
    /// applied past the position.
    pub fn with_workers(
        target: T,
        s: Settings,
        bytes: Arc<AtomicU64>,
        done: Vec<(Position, Position)>,
        extra: Vec<T>,
    ) -> Self {
        let mut a = Applier::new(target, s.clone(), bytes);
        let workers = extra
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let mut w = Applier::new(t, s.clone(), Arc::new(AtomicU64::new(0)));
                w.worker = Some(i + 1);
                w.tally = a.tally.clone();
                w
            })
            .collect();
        a.done = done;
        a.workers = workers;
        a
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Msg>, durable: watch::Sender<Durable>) {
        while let Some(msg) = rx.recv().await {
            let r = match msg {
                Msg::Group { ticket, batches } => self.on_group(ticket, batches, &durable).await,
                Msg::Flush(reply) => {
                    let r = self.commit_open(&durable).await;
                    let _ = reply.send(());
                    r
                }
            };
            if let Err(e) = r {
                let _ = self.target.rollback().await;
                durable.send_modify(|d| d.error = Some(Arc::new(e)));
                return;
            }
        }
        let _ = self.target.rollback().await;
    }

    async fn on_group(
        &mut self,
        ticket: u64,
        batches: Vec<Batch>,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), DbSinkError> {
        let ends_tx = batches.last().is_some_and(|b| b.end.is_tx_end());
        if self.open.is_empty() && batches.iter().all(|b| b.events.is_empty()) {
            // Nothing for this target (an idle or filtered stream): the
            // position moves in the offset store; the target's own moves
            // with its next transaction.
            durable.send_modify(|d| d.ticket = d.ticket.max(ticket));
            return Ok(());
        }
        if !self.workers.is_empty() && self.open.is_empty() && super::parallel::eligible(&batches) {
            return self.parallel_group(ticket, batches, durable).await;
        }
        self.open.push((ticket, batches));
        let idx = self.open.len() - 1;
        let mut attempt = 0u32;
        let mut mode = Mode::Optimistic;
        let mut from = idx;
        loop {
            match self.pass(from, mode, durable).await {
                Ok(()) => break,
                Err(Stop::Fail(e)) => return Err(e),
                Err(Stop::Replay(e)) => {
                    attempt += 1;
                    if attempt > 5 {
                        return Err(e.context("applying the same transaction failed 5 times"));
                    }
                    if e.kind() == DbErrorKind::Retry {
                        warn!(task = %self.s.task, error = %e, attempt, "the target refused the transaction for now (a lock held too long, a deadlock, a serialization failure): applying it again");
                    } else {
                        debug!(task = %self.s.task, error = %e, "rolling back; applying the open transaction again, row by row");
                    }
                    self.target.rollback().await?;
                    self.rows = 0;
                    self.applied = None;
                    if e.kind() == DbErrorKind::Retry {
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                    }
                    mode = Mode::Careful;
                    from = 0;
                }
            }
        }
        self.bytes
            .store(self.target.sent_bytes(), Ordering::Relaxed);
        if ends_tx {
            self.commit_open(durable).await?;
        }
        Ok(())
    }

    /// Applies the open groups from `from` on; events at or below the
    /// last commit are skipped (a replay after a commit inside a group).
    async fn pass(
        &mut self,
        from: usize,
        mode: Mode,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), Stop> {
        let groups = std::mem::take(&mut self.open);
        let r = self.pass_inner(&groups[from..], mode, durable).await;
        self.open = groups;
        // Commits inside the pass (a DDL, a large transaction) may have
        // made groups durable.
        self.retire(durable);
        r
    }

    /// Drops the groups the last commit covers and reports them durable.
    pub(super) fn retire(&mut self, durable: &watch::Sender<Durable>) {
        let Some(c) = &self.committed else { return };
        let done = self
            .open
            .iter()
            .take_while(|(_, b)| b.last().is_some_and(|b| &b.end <= c))
            .count();
        if done > 0 {
            let ticket = self.open[done - 1].0;
            self.open.drain(..done);
            durable.send_modify(|d| d.ticket = d.ticket.max(ticket));
        }
    }

    async fn pass_inner(
        &mut self,
        groups: &[(u64, Vec<Batch>)],
        mode: Mode,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), Stop> {
        let evs: Vec<&ChangeEvent> = groups
            .iter()
            .flat_map(|(_, b)| b.iter())
            .flat_map(|b| b.events.iter())
            .filter(|ev| !self.is_applied(ev))
            .collect();
        self.apply_events(&evs, mode, durable).await
    }

    /// Whether `ev` is on the target already: at or below the last commit,
    /// or in a transaction a parallel worker committed past it.
    pub(super) fn is_applied(&self, ev: &ChangeEvent) -> bool {
        self.committed.as_ref().is_some_and(|c| &ev.position <= c)
            || self
                .done
                .iter()
                .any(|(lo, hi)| lo <= &ev.position && &ev.position <= hi)
    }

    pub(super) async fn table_of(
        &mut self,
        ev: &ChangeEvent,
        durable: &watch::Sender<Durable>,
    ) -> Result<Arc<TargetTable>, Stop> {
        let Some(src) = ev.table.as_ref() else {
            return Err(Stop::Fail(DbSinkError::definite(format!(
                "a {} event at {} names no table",
                ev.op.code(),
                ev.position
            ))));
        };
        if !self.target.transactional_ddl() && !self.target.has_table(src) {
            // Resolving may create or alter the table, which commits on
            // MySQL: what is applied goes first, with its position.
            if let Some(p) = self.applied.clone() {
                self.commit_at(p, durable).await?;
            }
        }
        Ok(self.target.table(src, &self.s).await?)
    }

    pub(super) fn policy(&mut self, t: &TargetTable) -> TablePolicy {
        let src = &t.source;
        let db = src.schema.clone().unwrap_or_else(|| src.db.clone());
        let key = (db, src.name.clone());
        if let Some(p) = self.policies.get(&key) {
            return *p;
        }
        let p = self.s.cfg.conflict.for_table(&key.0, &key.1);
        self.policies.insert(key, p);
        p
    }

    pub(super) async fn event(
        &mut self,
        ev: &ChangeEvent,
        mode: Mode,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), Stop> {
        match ev.op {
            Op::Create | Op::Read => {
                if ev.op == Op::Read && !keyed(ev) {
                    self.fresh_copy(ev, durable).await?;
                }
                let t = self.table_of(ev, durable).await?;
                let row = ev.after.as_deref().unwrap_or_default();
                if upserts(ev) {
                    self.target.insert(&t, &[row], InsertMode::Upsert).await?;
                } else {
                    self.insert_one(&t, ev, row, mode).await?;
                }
            }
            Op::Update => {
                let t = self.table_of(ev, durable).await?;
                let after = ev.after.as_deref().unwrap_or_default();
                let key = row_key(&t, ev.before.as_deref(), after);
                let before = self.checked_before(&t, ev);
                self.update_one(&t, ev, &key, after, before, mode).await?;
            }
            Op::Delete => {
                let t = self.table_of(ev, durable).await?;
                let before = ev.before.as_deref().unwrap_or_default();
                let key = row_key(&t, Some(before), before);
                let n = self.target.delete(&t, &key).await?;
                if n == 0 {
                    self.conflict(&t, ev, ConflictOp::Delete, "the row to delete is missing")
                        .await?;
                }
            }
            Op::Truncate => {
                let t = self.table_of(ev, durable).await?;
                self.target.truncate(&t).await?;
            }
            Op::Ddl => self.ddl(ev, durable).await?,
        }
        self.rows += 1;
        self.applied = Some(ev.position.clone());
        self.first_after_open = false;
        Ok(())
    }

    /// A table without a key is copied whole, in one chunk: its first row
    /// empties the target table (a copy again replaces the rows; the
    /// changes before the chunk are in it, see `pass_inner`).
    pub(super) async fn fresh_copy(
        &mut self,
        ev: &ChangeEvent,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), Stop> {
        let Position::Snapshot(sp) = &ev.position else {
            return Ok(());
        };
        if sp.row != 1 {
            return Ok(());
        }
        let t = self.table_of(ev, durable).await?;
        self.target.clear(&t).await?;
        Ok(())
    }

    /// One insert, with its conflict handled (careful mode).
    async fn insert_one(
        &mut self,
        t: &TargetTable,
        ev: &ChangeEvent,
        row: &[Value],
        mode: Mode,
    ) -> Result<(), Stop> {
        if mode == Mode::Optimistic {
            self.target.insert(t, &[row], InsertMode::Plain).await?;
            return Ok(());
        }
        self.target.savepoint().await?;
        match self.target.insert(t, &[row], InsertMode::Plain).await {
            Ok(_) => Ok(self.target.release().await?),
            Err(e) if e.kind() == DbErrorKind::Duplicate => {
                self.target.rollback_to().await?;
                match self
                    .conflict(t, ev, ConflictOp::Insert, "the key exists")
                    .await?
                {
                    ConflictAction::Overwrite => self.replace(t, ev, row).await,
                    _ => Ok(()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Overwrite: the row with this key (and any row holding one of its
    /// unique keys, which the insert then names) gives way.
    async fn replace(
        &mut self,
        t: &TargetTable,
        ev: &ChangeEvent,
        row: &[Value],
    ) -> Result<(), Stop> {
        let key = row_key(t, None, row);
        self.target.delete(t, &key).await?;
        match self.target.insert(t, &[row], InsertMode::Plain).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == DbErrorKind::Duplicate => Err(Stop::Fail(e.context(&format!(
                "overwriting {} with key {} at {}: another row holds one of its unique keys",
                t.label,
                key_text(t, &key),
                ev.position
            )))),
            Err(e) => Err(e.into()),
        }
    }

    async fn update_one(
        &mut self,
        t: &TargetTable,
        ev: &ChangeEvent,
        key: &[Value],
        after: &[Value],
        before: Option<&[Value]>,
        mode: Mode,
    ) -> Result<(), Stop> {
        if mode == Mode::Careful {
            self.target.savepoint().await?;
        }
        let n = match self.target.update(t, key, after, before).await {
            Ok(n) => {
                if mode == Mode::Careful {
                    self.target.release().await?;
                }
                n
            }
            Err(e) if e.kind() == DbErrorKind::Duplicate && mode == Mode::Careful => {
                self.target.rollback_to().await?;
                return match self
                    .conflict(t, ev, ConflictOp::Update, "its new key is taken")
                    .await?
                {
                    ConflictAction::Overwrite => {
                        let new_key = row_key(t, None, after);
                        self.target.delete(t, &new_key).await?;
                        self.target.update(t, key, after, None).await?;
                        Ok(())
                    }
                    _ => Ok(()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 && before.is_some() && self.target.exists(t, key).await? {
            return match self
                .conflict(
                    t,
                    ev,
                    ConflictOp::Update,
                    "the target row differs from the source's before image",
                )
                .await?
            {
                ConflictAction::Overwrite => {
                    self.target.update(t, key, after, None).await?;
                    Ok(())
                }
                ConflictAction::Ignore | ConflictAction::Fail => Ok(()),
            };
        }
        if n == 0 {
            match self
                .conflict(t, ev, ConflictOp::Update, "the row to update is missing")
                .await?
            {
                ConflictAction::Overwrite => {
                    // The after image, less what the source didn't send.
                    if after.iter().any(|v| matches!(v, Value::Unchanged)) {
                        warn!(task = %self.s.task, table = %t.label, key = %key_text(t, key), position = %ev.position, "the missing row is inserted without the columns the source did not send (unchanged TOAST values): they take their defaults");
                    }
                    let row: Vec<Value> = after
                        .iter()
                        .map(|v| match v {
                            Value::Unchanged => Value::Null,
                            v => v.clone(),
                        })
                        .collect();
                    if mode == Mode::Careful {
                        self.replace(t, ev, &row).await?;
                    } else {
                        self.target.insert(t, &[&row], InsertMode::Plain).await?;
                    }
                }
                ConflictAction::Ignore | ConflictAction::Fail => {}
            }
        }
        Ok(())
    }

    /// Commits the open transaction at the last applied position (a
    /// drain, or the end of a group).
    async fn commit_open(&mut self, durable: &watch::Sender<Durable>) -> Result<(), DbSinkError> {
        let end = self
            .open
            .last()
            .and_then(|(_, b)| b.last())
            .map(|b| b.end.clone());
        match end {
            Some(end) => self.commit_at(end, durable).await,
            None => Ok(()),
        }
    }

    pub(super) async fn commit_at(
        &mut self,
        pos: Position,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), DbSinkError> {
        if self.committed.as_ref().is_some_and(|c| &pos <= c) {
            return Ok(());
        }
        let clear = !self.done.is_empty() || self.parallel_ran;
        self.target.commit(&self.s.task, &pos, clear).await?;
        self.parallel_ran = false;
        self.rows = 0;
        self.done.retain(|(_, hi)| hi > &pos);
        self.committed = Some(pos);
        self.retire(durable);
        Ok(())
    }
}

/// Snapshot rows and changes of a table being copied replace what the
/// target holds under their key: neither is a conflict.
pub(super) fn upserts(ev: &ChangeEvent) -> bool {
    ev.op == Op::Read || ev.copying
}

pub(super) fn keyed(ev: &ChangeEvent) -> bool {
    ev.table.as_ref().is_some_and(|t| !t.key.is_empty())
}

pub(super) fn same_table(a: &ChangeEvent, b: &ChangeEvent) -> bool {
    match (&a.table, &b.table) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

/// The values that find the row on the target: the key columns of the
/// before image when it has them (an update that changes the key), else of
/// `row`; every column for a table without a key.
pub fn row_key(t: &TargetTable, before: Option<&[Value]>, row: &[Value]) -> Vec<Value> {
    let from = match before {
        Some(b)
            if t.key
                .iter()
                .all(|&i| b.get(i).is_some_and(|v| !matches!(v, Value::Unchanged))) =>
        {
            b
        }
        _ => row,
    };
    t.key
        .iter()
        .map(|&i| from.get(i).cloned().unwrap_or(Value::Null))
        .collect()
}

/// `id=5, region=EU` for messages.
pub fn key_text(t: &TargetTable, key: &[Value]) -> String {
    let mut out = String::new();
    for (n, (&i, v)) in t.key.iter().zip(key).enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let name = t.source.columns.get(i).map_or("?", |c| c.name.as_str());
        let text = super::render::pg_text(v, &super::render::Kind::Other)
            .ok()
            .flatten()
            .unwrap_or_else(|| "NULL".into());
        let text: String = text.chars().take(64).collect();
        out.push_str(&format!("{name}={text}"));
        if n >= 7 {
            out.push_str(", …");
            break;
        }
    }
    out
}

pub fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn my_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}
