//! Snapshots: copy the rows tables already hold, chunk by chunk, each chunk
//! placed in the change stream at the exact point it reflects, so that the
//! rows plus the changes after them are the table (docs/snapshot.md).
//!
//! - [`SnapshotSource`] wraps the task's log reader: it hands on stream
//!   batches and chunk rows in one order ([`reconcile`]), records chunks as
//!   copied once the runner released them (durable and committed), and
//!   takes re-snapshot requests while it runs;
//! - `workers`: a planner cutting each table into key ranges and workers
//!   reading them in parallel, each chunk in a snapshot of its own;
//! - `mysql` / `postgres`: how each server reads a chunk consistently and
//!   tells the stream point it reflects; `mysql_values`: MySQL rows as the
//!   binlog would give them;
//! - `stats`: per-table progress for the task's status.

mod merge;
pub mod mysql;
pub mod mysql_values;
pub mod postgres;
pub mod reconcile;
pub mod stats;
mod workers;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use merge::SnapshotSource;
pub use reconcile::{Chunk, Visibility};
pub use stats::{SnapshotStats, TableView};

use super::SourceError;
use crate::store::OffsetStore;

/// One value of a chunk boundary, as the server gave it, so that it can be
/// given back as a query parameter and compared by the server (collations
/// included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyPart {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A table to copy.
#[derive(Debug)]
pub struct SnapTable {
    /// `db.table` / `schema.table`.
    pub name: String,
    /// The schema stream events of the table carry.
    pub schema: Arc<crate::event::TableSchema>,
    /// Columns chunks are cut by (the primary key, else a unique key of
    /// NOT NULL columns), in key order; empty: the table is read whole.
    pub chunk_key: Vec<usize>,
    /// From the server's statistics.
    pub estimated_rows: u64,
    /// Engine-specific reading plan (column list, casts, decoders).
    pub engine: EngineTable,
}

/// What an engine needs to read a table's rows.
#[derive(Debug)]
pub enum EngineTable {
    Mysql(mysql::MysqlTable),
    Postgres(postgres::PgTable),
    /// A table of unit tests, never read.
    #[cfg(test)]
    Test,
}

/// One key range of one table to read.
#[derive(Debug, Clone)]
pub struct Job {
    pub table: Arc<SnapTable>,
    /// Index of the range within the table's plan (from 0).
    pub index: u64,
    /// Rows with a key above `lo` (exclusive; `None`: from the start)...
    pub lo: Option<Vec<KeyPart>>,
    /// ... up to `hi` (inclusive; `None`: to the end).
    pub hi: Option<Vec<KeyPart>>,
    /// The table's last range.
    pub last: bool,
    pub incremental: bool,
}

/// Snapshot settings of a task (`[tasks.snapshot]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub chunk_rows: u64,
    pub workers: usize,
}

/// The server side of a snapshot.
#[derive(Debug, Clone)]
pub enum Engine {
    Mysql(mysql::MysqlEngine),
    Postgres(postgres::PgEngine),
}

/// A connection of one worker.
pub enum EngineConn {
    Mysql(mysql_async::Conn),
    Postgres(tokio_postgres::Client),
}

impl Engine {
    pub async fn connect(&self) -> Result<EngineConn, SourceError> {
        match self {
            Engine::Mysql(e) => e.connect().await.map(EngineConn::Mysql),
            Engine::Postgres(e) => e.connect().await.map(EngineConn::Postgres),
        }
    }

    /// The selected tables (or only `names`), with their keys and sizes.
    pub async fn tables(
        &self,
        conn: &mut EngineConn,
        names: Option<&[String]>,
    ) -> Result<Vec<SnapTable>, SourceError> {
        match (self, conn) {
            (Engine::Mysql(e), EngineConn::Mysql(c)) => e.tables(c, names).await,
            (Engine::Postgres(e), EngineConn::Postgres(c)) => e.tables(c, names).await,
            _ => Err(mismatch()),
        }
    }

    /// How long the server keeps its log, in seconds, when it says (a
    /// snapshot expected to take longer is warned about).
    pub async fn log_retention(&self, conn: &mut EngineConn) -> Option<(u64, String)> {
        match (self, conn) {
            (Engine::Mysql(_), EngineConn::Mysql(c)) => mysql::log_retention(c).await,
            (Engine::Postgres(_), EngineConn::Postgres(c)) => postgres::log_retention(c).await,
            _ => None,
        }
    }

    /// The table's largest key now (`None`: empty): the copy's end. Rows
    /// inserted above it later are in the stream; without the bound a
    /// table growing faster than it is copied would never be done.
    pub async fn max_key(
        &self,
        conn: &mut EngineConn,
        t: &SnapTable,
    ) -> Result<Option<Vec<KeyPart>>, SourceError> {
        match (self, conn) {
            (Engine::Mysql(e), EngineConn::Mysql(c)) => e.max_key(c, t).await,
            (Engine::Postgres(e), EngineConn::Postgres(c)) => e.max_key(c, t).await,
            _ => Err(mismatch()),
        }
    }

    /// The key `n` rows after `lo` and not above `upto`: the next chunk's
    /// upper bound, or `None` when fewer rows remain up to `upto`.
    pub async fn boundary(
        &self,
        conn: &mut EngineConn,
        t: &SnapTable,
        lo: Option<&[KeyPart]>,
        n: u64,
        upto: &[KeyPart],
    ) -> Result<Option<Vec<KeyPart>>, SourceError> {
        match (self, conn) {
            (Engine::Mysql(e), EngineConn::Mysql(c)) => e.boundary(c, t, lo, n, upto).await,
            (Engine::Postgres(e), EngineConn::Postgres(c)) => e.boundary(c, t, lo, n, upto).await,
            _ => Err(mismatch()),
        }
    }

    /// Reads one chunk in a snapshot of its own. Before taking the
    /// snapshot it registers `id` in `in_flight` with the server's log end
    /// (see [`reconcile`]); the caller removes it if this fails.
    pub async fn read(
        &self,
        conn: &mut EngineConn,
        job: &Job,
        id: u64,
        in_flight: &reconcile::InFlight,
    ) -> Result<Chunk, SourceError> {
        match (self, conn) {
            (Engine::Mysql(e), EngineConn::Mysql(c)) => e.read(c, job, id, in_flight).await,
            (Engine::Postgres(e), EngineConn::Postgres(c)) => e.read(c, job, id, in_flight).await,
            _ => Err(mismatch()),
        }
    }
}

fn mismatch() -> SourceError {
    SourceError::definite("a snapshot worker got a connection of the other engine")
}

/// Asks a running task for a snapshot of tables while it streams.
#[derive(Debug, Clone)]
pub struct SnapshotControl {
    tx: mpsc::UnboundedSender<Vec<String>>,
}

impl SnapshotControl {
    pub fn new() -> (SnapshotControl, mpsc::UnboundedReceiver<Vec<String>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (SnapshotControl { tx }, rx)
    }

    /// Requests a re-snapshot of `tables` (`db.table` / `schema.table`).
    /// False when the task isn't running a source that can take it.
    pub fn request(&self, tables: Vec<String>) -> bool {
        self.tx.send(tables).is_ok()
    }
}

/// What the task asks of its snapshot at start.
pub struct Plan {
    pub engine: Engine,
    pub settings: Settings,
    /// Copy tables at start (`snapshot+stream`, `snapshot`).
    pub initial: bool,
    /// End once every table is copied (`snapshot`).
    pub complete: bool,
    pub task: String,
    pub store: Arc<dyn OffsetStore>,
    pub stats: Arc<SnapshotStats>,
    pub requests: Option<mpsc::UnboundedReceiver<Vec<String>>>,
}
