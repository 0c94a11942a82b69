//! The stage between source and sink: object selection, DDL policy, and the
//! per-transaction event order written into each event.
//!
//! Pure and synchronous: no I/O.

pub mod filter;

use std::sync::Arc;

use crate::config::{DdlAction, DdlConfig};
use crate::event::{Batch, ChangeEvent, Op, Position, TableSchema};
use filter::TableFilter;

pub struct Stage {
    filter: TableFilter,
    ddl: DdlConfig,
    /// Transaction of the last event seen, and per-table counts inside it.
    current_tx: Option<Position>,
    tx_count: u64,
    table_counts: Vec<(Arc<TableSchema>, u64)>,
}

impl Stage {
    pub fn new(filter: TableFilter, ddl: DdlConfig) -> Stage {
        Stage {
            filter,
            ddl,
            current_tx: None,
            tx_count: 0,
            table_counts: Vec::new(),
        }
    }

    /// Drops the events the selection or DDL policy excludes and numbers the
    /// rest within their transaction. `batch.end` is left as is: what was
    /// dropped still counts as handled.
    pub fn apply(&mut self, batch: &mut Batch) {
        batch.events.retain_mut(|ev| {
            if !self.keeps(ev) {
                return false;
            }
            self.number(ev);
            true
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

    fn number(&mut self, ev: &mut ChangeEvent) {
        let tx = ev.position.tx_end();
        if self.current_tx.as_ref() != Some(&tx) {
            self.current_tx = Some(tx);
            self.tx_count = 0;
            self.table_counts.clear();
        }
        self.tx_count += 1;
        ev.tx_order = self.tx_count;
        ev.table_order = match &ev.table {
            Some(t) => {
                let slot = match self.table_counts.iter().position(|(s, _)| {
                    Arc::ptr_eq(s, t) || (s.db == t.db && s.name == t.name && s.schema == t.schema)
                }) {
                    Some(i) => i,
                    None => {
                        self.table_counts.push((t.clone(), 0));
                        self.table_counts.len() - 1
                    }
                };
                self.table_counts[slot].1 += 1;
                self.table_counts[slot].1
            }
            None => 1,
        };
    }
}
