//! The stage between source and sink: object selection and DDL policy.
//!
//! Pure and synchronous: no I/O.

use crate::config::{DdlAction, DdlConfig};
use crate::event::{Batch, ChangeEvent, Op};
use crate::select::TableFilter;

pub struct Stage {
    filter: TableFilter,
    ddl: DdlConfig,
}

impl Stage {
    pub fn new(filter: TableFilter, ddl: DdlConfig) -> Stage {
        Stage { filter, ddl }
    }

    /// Drops the events the selection or DDL policy excludes. `batch.end` is
    /// left as is: what was dropped still counts as handled.
    pub fn apply(&mut self, batch: &mut Batch) {
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
