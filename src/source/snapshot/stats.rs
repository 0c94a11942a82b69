//! Per-table snapshot progress for the task's status: rows copied, the
//! estimate from the server's statistics, chunks, rate and time left.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

#[derive(Debug)]
struct TableStat {
    estimated_rows: u64,
    rows: u64,
    chunks: u64,
    chunks_planned: u64,
    planned_all: bool,
    chunk_rows: u64,
    /// Rows and chunks copied by earlier runs (resumed from the store).
    rows_before: u64,
    started: Instant,
    finished: Option<Instant>,
    incremental: bool,
    reread: u64,
    superseded: u64,
}

/// What the task's status shows of one table's snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableView {
    /// `copying` or `done`.
    pub state: &'static str,
    /// Rows copied (sent to the sink), including earlier runs'.
    pub rows_copied: u64,
    /// From the server's statistics (`information_schema.TABLES`,
    /// `pg_class.reltuples`): an estimate.
    pub estimated_rows: u64,
    pub chunks_done: u64,
    /// Chunks planned so far, or estimated from the row estimate while the
    /// plan is being made.
    pub chunks_total: u64,
    pub rows_per_second: f64,
    /// Seconds left at the current rate, from the estimate.
    pub eta_seconds: Option<f64>,
    /// A snapshot taken while streaming (re-snapshot, added table).
    pub incremental: bool,
    /// Chunks read again: a change went out before the chunk that its
    /// snapshot may lack (see docs/snapshot.md).
    pub chunks_reread: u64,
    /// Rows left out of chunks because a change around the snapshot's point
    /// went out just before them: the stream carries their state.
    pub rows_from_stream: u64,
}

/// Shared between the snapshot's workers, its source and the task's
/// progress.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    tables: Mutex<BTreeMap<String, TableStat>>,
}

impl SnapshotStats {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, TableStat>) -> R) -> R {
        let mut g = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// A table's copy starts (again); `rows_before`/`chunks_before`: what
    /// earlier runs copied.
    pub fn planned(
        &self,
        table: &str,
        estimated_rows: u64,
        chunk_rows: u64,
        rows_before: u64,
        chunks_before: u64,
        incremental: bool,
    ) {
        self.with(|t| {
            t.insert(
                table.to_string(),
                TableStat {
                    estimated_rows,
                    rows: 0,
                    chunks: chunks_before,
                    chunks_planned: chunks_before,
                    planned_all: false,
                    chunk_rows: chunk_rows.max(1),
                    rows_before,
                    started: Instant::now(),
                    finished: None,
                    incremental,
                    reread: 0,
                    superseded: 0,
                },
            );
        });
    }

    pub fn chunk_planned(&self, table: &str, last: bool) {
        self.with(|t| {
            if let Some(s) = t.get_mut(table) {
                s.chunks_planned += 1;
                s.planned_all |= last;
            }
        });
    }

    /// A chunk of `rows` rows went to the sink.
    pub fn emitted(&self, table: &str, rows: u64, last: bool) {
        self.with(|t| {
            if let Some(s) = t.get_mut(table) {
                s.rows += rows;
                s.chunks += 1;
                if last {
                    s.finished = Some(Instant::now());
                }
            }
        });
    }

    /// A chunk of the table is read again.
    pub fn reread(&self, table: &str) {
        self.with(|t| {
            if let Some(s) = t.get_mut(table) {
                s.reread += 1;
            }
        });
    }

    /// `rows` rows of a chunk were left to the stream.
    pub fn superseded(&self, table: &str, rows: u64) {
        self.with(|t| {
            if let Some(s) = t.get_mut(table) {
                s.superseded += rows;
            }
        });
    }

    /// A table an earlier run copied completely.
    pub fn copied_before(&self, table: &str, rows: u64, chunks: u64) {
        self.with(|t| {
            let now = Instant::now();
            t.entry(table.to_string()).or_insert(TableStat {
                estimated_rows: rows,
                rows: 0,
                chunks,
                chunks_planned: chunks,
                planned_all: true,
                chunk_rows: 1,
                rows_before: rows,
                started: now,
                finished: Some(now),
                incremental: false,
                reread: 0,
                superseded: 0,
            });
        });
    }

    /// Every chunk of the table went to the sink.
    pub fn finished(&self, table: &str) {
        self.with(|t| {
            if let Some(s) = t.get_mut(table) {
                s.finished.get_or_insert_with(Instant::now);
            }
        });
    }

    pub fn view(&self) -> BTreeMap<String, TableView> {
        self.with(|t| {
            t.iter()
                .map(|(name, s)| {
                    let end = s.finished.unwrap_or_else(Instant::now);
                    let secs = end.duration_since(s.started).as_secs_f64();
                    let rate = if secs > 0.0 {
                        s.rows as f64 / secs
                    } else {
                        0.0
                    };
                    let copied = s.rows_before + s.rows;
                    let chunks_total = if s.planned_all {
                        s.chunks_planned
                    } else {
                        s.chunks_planned
                            .max(s.estimated_rows.div_ceil(s.chunk_rows))
                            .max(s.chunks)
                    };
                    let eta = match s.finished {
                        Some(_) => Some(0.0),
                        None if rate > 0.0 => {
                            Some(s.estimated_rows.saturating_sub(copied) as f64 / rate)
                        }
                        None => None,
                    };
                    (
                        name.clone(),
                        TableView {
                            state: if s.finished.is_some() {
                                "done"
                            } else {
                                "copying"
                            },
                            rows_copied: copied,
                            estimated_rows: s.estimated_rows,
                            chunks_done: s.chunks,
                            chunks_total,
                            rows_per_second: (rate * 10.0).round() / 10.0,
                            eta_seconds: eta.map(|e| (e * 10.0).round() / 10.0),
                            incremental: s.incremental,
                            chunks_reread: s.reread,
                            rows_from_stream: s.superseded,
                        },
                    )
                })
                .collect()
        })
    }
}
