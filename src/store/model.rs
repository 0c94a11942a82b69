//! The records the offset store keeps per task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::Position;

/// A committed position and when it was committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub position: Position,
    pub committed_at_ms: i64,
}

/// How far a task's snapshot got.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// The stream position the snapshot's rows reflect: streaming resumes
    /// after it once every table is copied. Text form of a [`Position`].
    pub handoff: Option<String>,
    /// Per `db.table` (`schema.table`), its chunks so far.
    pub tables: BTreeMap<String, TableSnapshot>,
    /// The task's initial snapshot copied every table.
    #[serde(default)]
    pub initial_complete: bool,
}

/// One table's snapshot progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableSnapshot {
    /// Chunks copied and durable in the sink.
    pub chunks_done: u64,
    /// Rows copied.
    pub rows: u64,
    /// Key of the last row copied (the next chunk starts after it), as
    /// JSON values in key-column order.
    pub last_key: Option<Vec<serde_json::Value>>,
    /// Every row of the table is copied.
    pub done: bool,
}

/// A transaction the operator chose to skip: its statement-logged changes
/// (which the binlog holds no rows for) are not captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// The transaction's position (text form, as the error printed it).
    pub position: String,
    /// When it was recorded (ms since the epoch).
    pub at_ms: i64,
    /// Why, as the operator or the command put it.
    pub reason: String,
}

/// Who runs a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// The daemon holding the task.
    pub node: String,
    /// Grows with every claim: a fencing token a sink can write with its
    /// data, so that a node that lost the task can't commit.
    pub epoch: u64,
    /// The claim lapses at this time (ms since the epoch) unless renewed.
    pub expires_at_ms: i64,
}
