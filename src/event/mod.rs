//! The canonical change event, shared by every source and sink.

pub mod json;
pub mod position;
pub mod proto;
pub mod value;

use std::sync::Arc;

pub use position::{BinlogPosition, LsnPosition, Position, SnapshotPosition};
pub use value::Value;

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    Read,
    Truncate,
    Ddl,
}

impl Op {
    /// Debezium's one-letter code; DDL events have none in Debezium and use `ddl`.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
            Op::Ddl => "ddl",
        }
    }
}

/// Which kind of server produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    Mysql,
    Mariadb,
    Postgres,
}

impl Connector {
    pub fn name(self) -> &'static str {
        match self {
            Connector::Mysql => "mysql",
            Connector::Mariadb => "mariadb",
            Connector::Postgres => "postgresql",
        }
    }
}

/// A table as the source described it when the row was decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// Database (MySQL) or database name (PostgreSQL).
    pub db: String,
    /// PostgreSQL schema; `None` for MySQL.
    pub schema: Option<String>,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Indices into `columns` of the columns that identify a row.
    pub key: Vec<usize>,
    /// The table's other unique keys (indices into `columns`), where the
    /// source tells them (PostgreSQL's catalog); empty otherwise. Tables a
    /// database target creates get them as UNIQUE constraints.
    pub uniques: Vec<Vec<usize>>,
    /// Whether an update's or delete's before image holds the row as it
    /// was, every column either its value or [`Value::Unchanged`] (MySQL
    /// row images, PostgreSQL `REPLICA IDENTITY FULL`); false when the
    /// columns outside the key are nulls standing for values the source
    /// didn't send (PostgreSQL's other replica identities). A database
    /// target compares a complete before image with the target's row.
    pub before_complete: bool,
    /// Column defaults the source's catalog tells, where portable between
    /// engines (aligned with `columns`; empty where unknown: MySQL tables
    /// streamed without a snapshot). Tables and columns a database target
    /// creates get them.
    pub defaults: Vec<Option<ColumnDefault>>,
    /// Fingerprint of the column names and types: changes with every schema change.
    pub version: u32,
    /// Set on tables processing rules merge shards into with
    /// `keys = "unique"`: the source table (`db.table`) the row came from.
    /// A database target fails on a key collision in such a table rather
    /// than let one shard's row overwrite another's.
    pub merged: Option<Arc<str>>,
}

/// A column default either engine can declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnDefault {
    /// A constant, as the text the column's type reads (`0`, `1.50`,
    /// `it's`, `{}`, `2024-01-01`).
    Text(String),
    /// A boolean constant (PostgreSQL `true`/`false`).
    Bool(bool),
    /// The time of the insert (`CURRENT_TIMESTAMP`, `now()`).
    CurrentTimestamp,
}

impl ColumnDefault {
    /// A number constant as written (`0`, `-1.5`, `1e10`), or `None`.
    pub fn number(s: &str) -> Option<ColumnDefault> {
        let plain = !s.is_empty()
            && s.parse::<f64>().is_ok()
            && s.chars().all(|c| c.is_ascii_digit() || ".-+eE".contains(c));
        plain.then(|| ColumnDefault::Text(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    /// Source type name as the server spells it (`int unsigned`, `varchar`, `numeric`).
    pub type_name: String,
    pub nullable: bool,
}

impl TableSchema {
    /// `db.table` for MySQL, `schema.table` for PostgreSQL: the name that
    /// filters match and topics are named after.
    pub fn qualified_name(&self) -> String {
        format!(
            "{}.{}",
            self.schema.as_deref().unwrap_or(&self.db),
            self.name
        )
    }

    /// Computes `version` from the columns.
    pub fn fingerprint(columns: &[ColumnDef], key: &[usize]) -> u32 {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut h: u32 = 0x811c_9dc5;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0193);
        };
        for c in columns {
            eat(c.name.as_bytes());
            eat(c.type_name.as_bytes());
            eat(&[u8::from(c.nullable)]);
        }
        for k in key {
            eat(&k.to_le_bytes());
        }
        h
    }
}

/// Transaction-level facts shared by every event of one source transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TxMeta {
    /// MySQL `uuid:gno`, MariaDB `domain-server-seq`.
    pub gtid: Option<String>,
    pub server_id: u32,
    /// Commit time, milliseconds since the epoch.
    pub commit_ts_ms: i64,
    /// PostgreSQL transaction id.
    pub xid: Option<u64>,
    /// Set on snapshot rows: Debezium's `source.snapshot`.
    pub snapshot: Option<SnapshotMark>,
}

/// Which snapshot row an event is, as Debezium's `source.snapshot` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMark {
    /// The first row of a task's initial snapshot.
    First,
    /// A row of the initial snapshot.
    True,
    /// The last row of the initial snapshot.
    Last,
    /// A row of a snapshot taken while streaming (re-snapshot, or a table
    /// added to the selection).
    Incremental,
}

impl SnapshotMark {
    pub fn name(self) -> &'static str {
        match self {
            SnapshotMark::First => "first",
            SnapshotMark::True => "true",
            SnapshotMark::Last => "last",
            SnapshotMark::Incremental => "incremental",
        }
    }
}

/// A DDL statement seen in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Ddl {
    /// Database the statement ran in (`USE db`), if any.
    pub db: Option<String>,
    /// Table the statement names, if it names one.
    pub table: Option<String>,
    pub statement: String,
    pub kind: DdlKind,
    /// Set when processing rules rename or reshape the table: the source's
    /// `db.table` the statement names (`db` and `table` then name the
    /// output). A database target doesn't replay such a statement: the
    /// target table follows the rows (new columns are added as rows bring
    /// them).
    pub reshaped_from: Option<String>,
}

/// DDL statement kinds that policies can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DdlKind {
    CreateDatabase,
    AlterDatabase,
    DropDatabase,
    CreateTable,
    AlterTable,
    DropTable,
    RenameTable,
    TruncateTable,
    CreateIndex,
    DropIndex,
    CreateView,
    AlterView,
    DropView,
    Other,
}

impl DdlKind {
    pub const ALL: [DdlKind; 14] = [
        DdlKind::CreateDatabase,
        DdlKind::AlterDatabase,
        DdlKind::DropDatabase,
        DdlKind::CreateTable,
        DdlKind::AlterTable,
        DdlKind::DropTable,
        DdlKind::RenameTable,
        DdlKind::TruncateTable,
        DdlKind::CreateIndex,
        DdlKind::DropIndex,
        DdlKind::CreateView,
        DdlKind::AlterView,
        DdlKind::DropView,
        DdlKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DdlKind::CreateDatabase => "create_database",
            DdlKind::AlterDatabase => "alter_database",
            DdlKind::DropDatabase => "drop_database",
            DdlKind::CreateTable => "create_table",
            DdlKind::AlterTable => "alter_table",
            DdlKind::DropTable => "drop_table",
            DdlKind::RenameTable => "rename_table",
            DdlKind::TruncateTable => "truncate_table",
            DdlKind::CreateIndex => "create_index",
            DdlKind::DropIndex => "drop_index",
            DdlKind::CreateView => "create_view",
            DdlKind::AlterView => "alter_view",
            DdlKind::DropView => "drop_view",
            DdlKind::Other => "other",
        }
    }
}

/// One change: a row insert/update/delete, a truncate, or a DDL statement.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    pub position: Position,
    pub tx: Arc<TxMeta>,
    /// The table; `None` only for DDL that names no table.
    pub table: Option<Arc<TableSchema>>,
    /// Values aligned with `table.columns`.
    pub before: Option<Vec<Value>>,
    pub after: Option<Vec<Value>>,
    pub ddl: Option<Box<Ddl>>,
    /// Source-specific ordinal: row within the rows event (MySQL), LSN of the
    /// change record (PostgreSQL).
    pub source_offset: u64,
    /// 1-based order of the event within its transaction, as emitted.
    pub tx_order: u64,
    /// 1-based order of the event among its table's events in the transaction.
    pub table_order: u64,
    pub connector: Connector,
    /// A stream change of a table whose copy (snapshot) is not finished:
    /// its row may not exist downstream yet (its chunk comes later), so a
    /// database target applies it as an upsert and a missing row is no
    /// conflict.
    pub copying: bool,
}

impl ChangeEvent {
    /// `db` for MySQL, database for PostgreSQL, from the table or the DDL.
    pub fn db(&self) -> Option<&str> {
        match (&self.table, &self.ddl) {
            (Some(t), _) => Some(&t.db),
            (None, Some(d)) => d.db.as_deref(),
            _ => None,
        }
    }
}

/// Numbers the captured events of one transaction: Debezium's
/// `total_order` and `data_collection_order`. Sources count every captured
/// event, including those skipped on resume, so a transaction's events carry
/// the same numbers however many restarts it took to deliver them.
#[derive(Debug, Default)]
pub struct TxOrder {
    total: u64,
    tables: Vec<(Arc<TableSchema>, u64)>,
}

impl TxOrder {
    /// A new transaction starts.
    pub fn reset(&mut self) {
        self.total = 0;
        self.tables.clear();
    }

    /// `(total_order, data_collection_order)` of the next event.
    pub fn next(&mut self, table: Option<&Arc<TableSchema>>) -> (u64, u64) {
        self.total += 1;
        let Some(t) = table else {
            return (self.total, 1);
        };
        // By name: an ALTER inside the transaction changes the schema, not the table.
        let slot = self
            .tables
            .iter()
            .position(|(s, _)| s.name == t.name && s.schema == t.schema && s.db == t.db);
        let count = match slot {
            Some(i) => {
                self.tables[i].1 += 1;
                self.tables[i].1
            }
            None => {
                self.tables.push((t.clone(), 1));
                1
            }
        };
        (self.total, count)
    }
}

/// A run of events handed from source to sink.
///
/// Every event of a batch belongs to the source log in order. `end` is the
/// position the sink may acknowledge once the batch is durable: it can lie
/// past the last event when the source read changes that the stage or the
/// source filtered out, so that idle or filtered streams still advance.
#[derive(Debug, Clone)]
pub struct Batch {
    pub events: Vec<ChangeEvent>,
    pub end: Position,
}
