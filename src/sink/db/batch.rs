//! Statements for runs of changes: consecutive inserts of a table in
//! multi-row INSERTs, consecutive updates (or deletes) of a table in one
//! statement each, when no row appears twice in the run.
//!
//! A run is optimistic: an insert meeting a taken key, an update or
//! delete matching fewer rows than it names, rolls the open transaction
//! back and applies it again row by row (see `apply`), where each conflict
//! meets its policy. Changes of a table being copied (`copying`) may miss
//! their row by design: they go one by one.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::Classify;

use super::apply::{
    Applier, InsertMode, Mode, Stop, Target, TargetTable, keyed, row_key, same_table, upserts,
};
use super::{DbErrorKind, DbSinkError, Durable};
use crate::event::{ChangeEvent, Op, Value};

/// Most changes in one statement.
const RUN_MAX: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Delete,
}

/// The run being gathered.
#[derive(Default)]
struct Run<'a> {
    events: Vec<&'a ChangeEvent>,
    kind: Option<Kind>,
    /// Row identities (hashes of table and key values) the run touches.
    rows: HashSet<u64>,
}

fn row_hash(ev: &ChangeEvent, key: &[Value]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(t) = &ev.table {
        (Arc::as_ptr(t) as usize).hash(&mut h);
    }
    format!("{key:?}").hash(&mut h);
    h.finish()
}

/// Which columns an update leaves alone (unchanged TOAST values).
fn mask(ev: &ChangeEvent) -> Vec<bool> {
    ev.after
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|v| matches!(v, Value::Unchanged))
        .collect()
}

/// Which before-image columns an update sent (checked against the
/// target, see `Applier::checked_before`).
fn before_mask(ev: &ChangeEvent) -> Option<Vec<bool>> {
    if !ev.table.as_ref().is_some_and(|t| t.before_complete) {
        return None;
    }
    ev.before
        .as_deref()
        .map(|b| b.iter().map(|v| matches!(v, Value::Unchanged)).collect())
}

/// The key values of a row image, by the source table's key.
fn source_key(ev: &ChangeEvent, row: &[Value]) -> Vec<Value> {
    ev.table
        .as_ref()
        .map(|t| {
            t.key
                .iter()
                .map(|&i| row.get(i).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .unwrap_or_default()
}

impl<T: Target> Applier<T> {
    /// Applies events in order inside the open target transaction.
    pub(super) async fn apply_events(
        &mut self,
        evs: &[&ChangeEvent],
        mode: Mode,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), Stop> {
        let mut run = Run::default();
        for &ev in evs {
            if ev.copying && !keyed(ev) {
                // A table without a key is copied whole in one chunk,
                // read after this change: the chunk has it.
                continue;
            }
            let kind = match ev.op {
                Op::Create | Op::Read => Some(Kind::Insert),
                Op::Update if !ev.copying && keyed(ev) => Some(Kind::Update),
                Op::Delete if !ev.copying && keyed(ev) => Some(Kind::Delete),
                _ => None,
            };
            if let (Some(kind), Mode::Optimistic) = (kind, mode) {
                let hashes = self.run_hashes(ev, kind);
                let fits = run.kind == Some(kind)
                    && run.events.last().is_some_and(|last| {
                        same_table(last, ev)
                            && match kind {
                                Kind::Insert => upserts(last) == upserts(ev),
                                Kind::Update => {
                                    mask(last) == mask(ev) && before_mask(last) == before_mask(ev)
                                }
                                Kind::Delete => true,
                            }
                    })
                    && hashes.iter().all(|h| !run.rows.contains(h));
                if !fits {
                    self.flush_run(&mut run, durable).await?;
                }
                if kind == Kind::Insert && ev.op == Op::Read && !keyed(ev) {
                    self.fresh_copy(ev, durable).await?;
                }
                run.kind = Some(kind);
                run.rows.extend(hashes);
                run.events.push(ev);
                if run.events.len() >= RUN_MAX {
                    self.flush_run(&mut run, durable).await?;
                }
                continue;
            }
            self.flush_run(&mut run, durable).await?;
            self.event(ev, mode, durable)
                .await
                .map_err(|stop| at_change(stop, ev))?;
            self.maybe_split(ev, durable).await?;
        }
        self.flush_run(&mut run, durable).await
    }

    /// Row identities of a change for a run (inserts of one table never
    /// repeat a key in a consistent stream: not tracked).
    fn run_hashes(&self, ev: &ChangeEvent, kind: Kind) -> Vec<u64> {
        match kind {
            Kind::Insert => Vec::new(),
            Kind::Update => {
                let after = ev.after.as_deref().unwrap_or_default();
                let mut out = vec![row_hash(ev, &source_key(ev, after))];
                if let Some(before) = ev.before.as_deref() {
                    out.push(row_hash(ev, &source_key(ev, before)));
                }
                out
            }
            Kind::Delete => {
                let before = ev.before.as_deref().unwrap_or_default();
                vec![row_hash(ev, &source_key(ev, before))]
            }
        }
    }

    /// A source transaction too large for one target transaction commits
    /// inside it (not on parallel workers, which commit whole parts).
    async fn maybe_split(
        &mut self,
        ev: &ChangeEvent,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), Stop> {
        if self.rows >= self.s.cfg.max_tx_rows && self.worker.is_none() {
            let pos = ev.position.clone();
            self.commit_at(pos, durable).await?;
        }
        Ok(())
    }

    async fn flush_run(
        &mut self,
        run: &mut Run<'_>,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), Stop> {
        let n = run.events.len();
        match self.flush_run_inner(run, durable).await {
            // A statement of several rows failed for a reason of its data
            // (a constraint, a value the column refuses): applied again row
            // by row, the failing row is named.
            Err(Stop::Fail(e))
                if n > 1
                    && e.kind() == DbErrorKind::Other
                    && e.pause_at().is_none()
                    && e.class() == crate::error::ErrorClass::Definite =>
            {
                Err(Stop::Replay(e))
            }
            Err(Stop::Fail(e)) if n == 1 => {
                let ev = run.events.first().copied();
                Err(match ev {
                    Some(ev) => at_change(Stop::Fail(e), ev),
                    None => Stop::Fail(e),
                })
            }
            other => other,
        }
    }

    async fn flush_run_inner(
        &mut self,
        run: &mut Run<'_>,
        durable: &watch::Sender<Durable>,
    ) -> Result<(), Stop> {
        let Some(first) = run.events.first().copied() else {
            return Ok(());
        };
        let last = run.events.last().copied().unwrap_or(first);
        let t = self.table_of(first, durable).await?;
        let n = run.events.len();
        match run.kind {
            Some(Kind::Insert) => {
                let rows: Vec<&[Value]> = run
                    .events
                    .iter()
                    .filter_map(|ev| ev.after.as_deref())
                    .collect();
                let how = if first.op == Op::Read {
                    InsertMode::Load
                } else if upserts(first) {
                    InsertMode::Upsert
                } else {
                    InsertMode::Plain
                };
                self.target.insert(&t, &rows, how).await?;
            }
            Some(Kind::Update) if n == 1 => {
                // One update: the row-by-row path, which handles a missing
                // row under the policy without a replay.
                self.event(first, Mode::Optimistic, durable).await?;
                self.rows -= 1;
            }
            Some(Kind::Update) => {
                let keys: Vec<Vec<Value>> = run
                    .events
                    .iter()
                    .map(|ev| {
                        row_key(
                            &t,
                            ev.before.as_deref(),
                            ev.after.as_deref().unwrap_or_default(),
                        )
                    })
                    .collect();
                let afters: Vec<&[Value]> = run
                    .events
                    .iter()
                    .map(|ev| ev.after.as_deref().unwrap_or_default())
                    .collect();
                let befores: Option<Vec<&[Value]>> = self.checked_before(&t, first).map(|_| {
                    run.events
                        .iter()
                        .map(|ev| ev.before.as_deref().unwrap_or_default())
                        .collect()
                });
                let matched = self
                    .target
                    .update_many(&t, &keys, &afters, befores.as_deref())
                    .await?;
                missing(&t, matched, n, "update")?;
            }
            Some(Kind::Delete) => {
                let keys: Vec<Vec<Value>> = run
                    .events
                    .iter()
                    .map(|ev| {
                        let before = ev.before.as_deref().unwrap_or_default();
                        row_key(&t, Some(before), before)
                    })
                    .collect();
                let matched = self.target.delete_many(&t, &keys).await?;
                missing(&t, matched, n, "delete")?;
            }
            None => {}
        }
        self.rows += n;
        self.applied = Some(last.position.clone());
        self.first_after_open = false;
        run.events.clear();
        run.rows.clear();
        run.kind = None;
        self.maybe_split(last, durable).await
    }
}

/// A definite failure of one change names it: table, key, position.
fn at_change(stop: Stop, ev: &ChangeEvent) -> Stop {
    match stop {
        Stop::Fail(e) if e.pause_at().is_none() && e.kind() != DbErrorKind::Conflict => {
            let key = ev
                .table
                .as_ref()
                .map(|t| {
                    let row = ev
                        .after
                        .as_deref()
                        .or(ev.before.as_deref())
                        .unwrap_or_default();
                    let parts: Vec<String> = t
                        .key
                        .iter()
                        .filter_map(|&i| {
                            let v = row.get(i)?;
                            let text = super::render::pg_text(v, &super::render::Kind::Other)
                                .ok()
                                .flatten()
                                .unwrap_or_else(|| "NULL".into());
                            let text: String = text.chars().take(64).collect();
                            Some(format!("{}={text}", t.columns.get(i)?.name))
                        })
                        .collect();
                    format!(
                        "{}.{} key {}",
                        t.schema.as_deref().unwrap_or(&t.db),
                        t.name,
                        parts.join(", ")
                    )
                })
                .unwrap_or_else(|| "a statement".into());
            Stop::Fail(e.context(&format!(
                "applying the {} of {key} (source position {})",
                op_name(ev.op),
                ev.position
            )))
        }
        other => other,
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Create => "insert",
        Op::Read => "snapshot row",
        Op::Update => "update",
        Op::Delete => "delete",
        Op::Truncate => "truncate",
        Op::Ddl => "DDL",
    }
}

/// A run that matched fewer rows than it named: some row is missing on the
/// target, a conflict the row-by-row replay finds and handles.
fn missing(t: &TargetTable, matched: u64, n: usize, what: &str) -> Result<(), Stop> {
    if matched as usize == n {
        return Ok(());
    }
    Err(Stop::Replay(
        DbSinkError::definite(format!(
            "a run of {n} {what}s on {} matched {matched} rows",
            t.label
        ))
        .with_kind(DbErrorKind::Duplicate),
    ))
}
