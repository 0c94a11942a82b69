//! The stage between source and sink: object selection, DDL policy and
//! processing rules (`rules`).
//!
//! Pure and synchronous: no I/O, except appending the rows a rule's filter
//! failed on to the task's dead-letter file (`on_error = "dead_letter"`),
//! which the runner asks for before it hands the batch on.

pub mod filter;
pub mod rules;
pub mod values;

use std::io::Write;
use std::path::PathBuf;

use crate::config::{DdlAction, DdlConfig};
use crate::event::{Batch, ChangeEvent, DdlKind, Op};
use crate::select::TableFilter;

pub struct Stage {
    filter: TableFilter,
    ddl: DdlConfig,
    rules: rules::Rules,
    dead_letter: Option<PathBuf>,
}

impl Stage {
    pub fn new(filter: TableFilter, ddl: DdlConfig) -> Stage {
        Stage {
            filter,
            ddl,
            rules: rules::Rules::empty(),
            dead_letter: None,
        }
    }

    /// Adds the task's processing rules; rows their filters fail on go to
    /// `dead_letter` where a rule says so; shard merges' schema changes are
    /// kept in `state` across restarts.
    pub fn with_rules(
        mut self,
        task: &str,
        rules: &[crate::config::rules::RuleConfig],
        dead_letter: PathBuf,
        state: Option<PathBuf>,
    ) -> Result<Stage, String> {
        let truncate_skipped = self.ddl.action(DdlKind::TruncateTable) == DdlAction::Skip;
        self.rules = rules::Rules::new(task, rules, truncate_skipped)?;
        if let Some(state) = state {
            self.rules =
                std::mem::replace(&mut self.rules, rules::Rules::empty()).keep_state(state)?;
        }
        self.dead_letter = Some(dead_letter);
        Ok(self)
    }

    /// Drops the events the selection or DDL policy excludes, and applies
    /// the processing rules. `batch.end` is left as is: what was dropped
    /// still counts as handled. An error (a rule's filter failing under
    /// `on_error = "fail"`, a shard diverging from its merge) fails the
    /// task and names the rule and the position.
    pub fn apply(&mut self, batch: &mut Batch) -> Result<(), String> {
        // Runs of events of one table (a snapshot chunk, a bulk change)
        // are decided once: the table's Arc is alive while they are.
        let mut last: Option<(*const crate::event::TableSchema, bool)> = None;
        batch.events.retain(|ev| {
            if ev.op != Op::Ddl
                && let Some(t) = ev.table.as_ref()
            {
                let p = std::sync::Arc::as_ptr(t);
                if let Some((lp, keep)) = last
                    && lp == p
                {
                    return keep;
                }
                let keep = self.keeps(ev);
                last = Some((p, keep));
                return keep;
            }
            self.keeps(ev)
        });
        if self.rules.is_empty() {
            return Ok(());
        }
        let mut failed = None;
        let rules = &mut self.rules;
        batch.events.retain_mut(|ev| {
            if failed.is_some() {
                return false;
            }
            match rules.apply(ev) {
                Ok(keep) => keep,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        self.write_dead_letters()
    }

    /// Appends the dead letters gathered so far, synced, so they are on
    /// disk before the batch's position can be committed.
    fn write_dead_letters(&mut self) -> Result<(), String> {
        if self.rules.dead.is_empty() {
            return Ok(());
        }
        let Some(path) = &self.dead_letter else {
            self.rules.dead.clear();
            return Ok(());
        };
        let fail = |e: std::io::Error| {
            format!(
                "writing rows a rule's filter failed on to the dead-letter file {}: {e}; free space or fix its directory's permissions, then resume",
                path.display()
            )
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(fail)?;
        let mut text = String::new();
        for d in self.rules.dead.drain(..) {
            text.push_str(&d.line);
            text.push('\n');
        }
        f.write_all(text.as_bytes()).map_err(fail)?;
        f.sync_data().map_err(fail)?;
        Ok(())
    }

    /// Rows whose filter failed under `skip` or `dead_letter` so far.
    pub fn rule_errors(&self) -> u64 {
        self.rules.errors
    }

    /// Whether processing rules are set.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The merge groups the rules have seen.
    pub fn merge_groups(&self) -> Vec<rules::MergeGroup> {
        self.rules.groups()
    }

    fn keeps(&self, ev: &ChangeEvent) -> bool {
        if ev.op == Op::Ddl {
            let Some(ddl) = ev.ddl.as_deref() else {
                return false;
            };
            if self.ddl.action(ddl.kind) == DdlAction::Skip {
                return false;
            }
            return match (&ddl.db, &ddl.table) {
                (Some(db), Some(table)) => self.filter.selects(db, table),
                (Some(db), None) => self.filter.selects_db(db),
                // A statement outside any database can't be attributed: keep it.
                (None, _) => true,
            };
        }
        match ev.table.as_deref() {
            // PostgreSQL tables are selected by schema.table.
            Some(t) => self
                .filter
                .selects(t.schema.as_deref().unwrap_or(&t.db), &t.name),
            None => false,
        }
    }
}
