//! Conflicts on database targets: the target disagreeing with a change
//! (an insert whose key exists, an update whose row is missing, differs
//! from the source's before image, or whose new key is taken, a delete
//! whose row is missing) meets the table's policy; each is counted,
//! logged and, with `conflict.journal`, recorded on the target.

use tracing::warn;

use super::apply::{Applier, Stop, Target, TargetTable, checked_columns, key_text, row_key};
use super::{DbErrorKind, DbSinkError};
use crate::config::{ConflictAction, ConflictOp};
use crate::event::{ChangeEvent, Value};

/// One conflict for the journal table.
pub struct Journal<'a> {
    pub task: &'a str,
    pub op: &'static str,
    pub what: &'a str,
    pub key_text: String,
    pub key: &'a [Value],
    /// The source's row image (after, or before for a delete).
    pub source_row: Option<&'a [Value]>,
    pub position: String,
    pub action: &'static str,
}

impl Journal<'_> {
    /// The source row as a JSON object of column texts.
    pub fn source_json(&self, t: &TargetTable) -> Option<String> {
        let row = self.source_row?;
        let mut m = serde_json::Map::new();
        for (c, v) in t.source.columns.iter().zip(row) {
            let text = super::render::pg_text(v, &super::render::Kind::Other)
                .ok()
                .flatten();
            m.insert(
                c.name.clone(),
                text.map_or(serde_json::Value::Null, serde_json::Value::String),
            );
        }
        Some(serde_json::Value::Object(m).to_string())
    }
}

impl<T: Target> Applier<T> {
    /// The before image an update is checked against, when the task
    /// compares them (`conflict.compare_before`) and the source sent the
    /// row as it was.
    pub(super) fn checked_before<'e>(
        &self,
        t: &TargetTable,
        ev: &'e ChangeEvent,
    ) -> Option<&'e [Value]> {
        if !self.s.cfg.conflict.compare_before
            || ev.copying
            || !ev.table.as_ref().is_some_and(|s| s.before_complete)
        {
            return None;
        }
        let before = ev.before.as_deref()?;
        (!checked_columns(t, before).is_empty()).then_some(before)
    }

    /// Counts, logs and (with `conflict.journal`) records a conflict;
    /// returns the action, or the failure.
    pub(super) async fn conflict(
        &mut self,
        t: &TargetTable,
        ev: &ChangeEvent,
        op: ConflictOp,
        what: &str,
    ) -> Result<ConflictAction, Stop> {
        let action = self.count_conflict(t, ev, op, what)?;
        if self.s.cfg.conflict.journal && !ev.copying {
            let key = conflict_key(t, ev, op, what);
            let entry = Journal {
                task: &self.s.task,
                op: op.name(),
                what,
                key_text: key_text(t, &key),
                key: &key,
                source_row: ev.after.as_deref().or(ev.before.as_deref()),
                position: ev.position.to_string(),
                action: action.name(),
            };
            self.target.journal(t, &entry).await?;
        }
        Ok(action)
    }

    /// Counts and logs a conflict; returns the action, or the failure.
    pub(super) fn count_conflict(
        &mut self,
        t: &TargetTable,
        ev: &ChangeEvent,
        op: ConflictOp,
        what: &str,
    ) -> Result<ConflictAction, Stop> {
        if ev.copying {
            // The row's chunk comes later: nothing to count, the source's
            // change goes in.
            return Ok(ConflictAction::Overwrite);
        }
        let key = conflict_key(t, ev, op, what);
        if let Some(shard) = t.source.merged.as_deref()
            && (matches!(op, ConflictOp::Insert) || what.contains("new key"))
        {
            // Overwriting would lose another shard's row without a trace.
            return Err(Stop::Fail(
                DbSinkError::definite(format!(
                    "key collision in {}, which processing rules merge shards into: a row of {shard} has key {} (source position {}), and the target already holds a row with that key (from another shard, or left on the target). The rule says the shards' keys never overlap (merge.keys = \"unique\"), so nothing is overwritten: give the merge a shard column instead (merge = {{ shard_column = \"shard\" }}, on a new target table), or remove the colliding row and resume",
                    t.label,
                    key_text(t, &key),
                    ev.position,
                ))
                .with_kind(DbErrorKind::Conflict),
            ));
        }
        let action = self.policy(t).get(op);
        let counts = self.conflicts.entry(t.label.clone()).or_default();
        let slot = match op {
            ConflictOp::Insert => 0,
            ConflictOp::Update => 1,
            ConflictOp::Delete => 2,
        };
        counts[slot] += 1;
        let total = counts[slot];
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(t.label.clone())
            .or_default()[slot] += 1;
        if action == ConflictAction::Fail {
            return Err(Stop::Fail(DbSinkError::definite(format!(
                "conflict on {}: {} {what} (key {}, source position {}); the conflict policy for {} is \"fail\": fix the target row, or set [tasks.sink.conflict] {} = \"overwrite\" or \"ignore\", then resume",
                t.label,
                op.name(),
                key_text(t, &key),
                ev.position,
                op.name(),
                op.name(),
            ))
            .with_kind(DbErrorKind::Conflict)));
        }
        if total <= 100 || total.is_power_of_two() {
            warn!(task = %self.s.task, table = %t.label, op = op.name(), key = %key_text(t, &key), position = %ev.position, action = action.name(), conflicts = total, "conflict: {what}");
        }
        Ok(action)
    }
}

/// The key a conflict is about: the inserted row's, the new key an update
/// found taken, else the changed row's (its before image's key).
fn conflict_key(t: &TargetTable, ev: &ChangeEvent, op: ConflictOp, what: &str) -> Vec<Value> {
    let after = ev.after.as_deref();
    match op {
        ConflictOp::Insert => row_key(t, None, after.unwrap_or_default()),
        ConflictOp::Update if what.contains("new key") => {
            row_key(t, None, after.unwrap_or_default())
        }
        _ => row_key(
            t,
            ev.before.as_deref(),
            after.or(ev.before.as_deref()).unwrap_or_default(),
        ),
    }
}
