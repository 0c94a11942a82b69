//! The pgoutput state machine: decoded messages in server order → change
//! events with positions, grouped into batches. No I/O: the driver
//! (`mod.rs`) feeds it messages, answers its catalog requests, and takes
//! batches.
//!
//! Positions: a change is `lsn:<commit LSN>:<index>`, the index counting the
//! transaction's changes from 1 in the order the server sends them (for a
//! streamed transaction, the order of its spilled changes once aborted
//! subtransactions are cut, which is the order a non-streamed send would
//! use). Every change counts, selected or not, so the numbering does not
//! depend on the filter. A finished transaction is `lsn:<commit LSN>:*`.
//! Changes at or below the resume position are skipped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::pgoutput::{LogicalMessage, OldTuple, Relation, ReplicaIdentity, TupleData};
use super::types::{self, PgKind, PgType, TypeDef};
use crate::event::value::Value;
use crate::event::{
    Batch, ChangeEvent, ColumnDef, Connector, LsnPosition, Op, Position, TableSchema, TxMeta,
};
use crate::select::TableFilter;
use crate::source::ledger::BatchLedger;

/// Why a message could not be turned into events.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A protocol violation or inconsistent stream: stop the task.
    #[error("{0}")]
    Definite(String),
    /// A column value that is not valid text for its type.
    #[error("table {table}, column {column}")]
    Value {
        table: String,
        column: String,
        #[source]
        source: types::TypeError,
    },
    /// The driver must load the catalog entries of relation `rel_id` (its
    /// not-null and primary key columns) and of the types `types`, hand
    /// them over, and feed the same message again.
    #[error("need the catalog of relation {rel_id}")]
    NeedCatalog { rel_id: u32, types: Vec<u32> },
}

/// What the catalog says about a table when its Relation message arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationInfo {
    /// Columns declared NOT NULL.
    pub not_null: HashSet<String>,
    /// Primary key columns, in key order.
    pub primary_key: Vec<String>,
    /// Other unique keys (column names in key order), from unique indexes
    /// without expressions or predicates.
    pub unique_keys: Vec<Vec<String>>,
    /// Column defaults as `pg_get_expr` spells them (generated columns
    /// left out).
    pub defaults: HashMap<String, String>,
}

/// A table as the last Relation message described it.
#[derive(Debug)]
struct RelCodec {
    schema: Arc<TableSchema>,
    types: Vec<PgType>,
    selected: bool,
    /// The Relation message, to tell a resend from a change.
    raw: Relation,
}

struct OpenTx {
    commit_lsn: u64,
    meta: Arc<TxMeta>,
    /// Changes so far.
    index: u64,
}

/// The state machine of one replication session (see the module docs).
pub struct WalDecoder {
    /// Leave out transactions a tidemark target applied
    /// (`exclude_replicated`): their replication origin is `tidemark…`.
    exclude_replicated: bool,
    /// The open transaction is left out (its origin is excluded).
    skip_tx: bool,
    db: String,
    filter: TableFilter,
    types: HashMap<u32, TypeDef>,
    relations: HashMap<u32, RelCodec>,
    /// Catalog answer for the Relation message being retried.
    fresh_info: Option<(u32, RelationInfo)>,
    tx: Option<OpenTx>,
    ledger: BatchLedger,
}

impl WalDecoder {
    /// `db`: the database the slot decodes. Changes at or below
    /// `resume_after` are skipped.
    pub fn new(db: String, filter: TableFilter, resume_after: Option<LsnPosition>) -> Self {
        WalDecoder {
            exclude_replicated: false,
            skip_tx: false,
            db,
            filter,
            types: HashMap::new(),
            relations: HashMap::new(),
            fresh_info: None,
            tx: None,
            ledger: BatchLedger::new(resume_after.map(Position::Lsn)),
        }
    }

    /// Adds type definitions loaded from the catalog.
    pub fn add_types(&mut self, defs: HashMap<u32, TypeDef>) {
        self.types.extend(defs);
    }

    /// True when type `oid` needs no catalog lookup.
    pub fn knows_type(&self, oid: u32) -> bool {
        types::builtin(oid, -1).is_some() || self.types.contains_key(&oid)
    }

    /// Hands over the catalog entry asked for by [`StreamError::NeedCatalog`].
    pub fn add_relation_info(&mut self, rel_id: u32, info: RelationInfo) {
        self.fresh_info = Some((rel_id, info));
    }

    pub fn pending_events(&self) -> usize {
        self.ledger.pending_events()
    }

    /// True when everything handled was taken in a batch.
    pub fn is_drained(&self) -> bool {
        self.ledger.is_drained()
    }

    /// Leave out transactions applied under a `tidemark…` replication
    /// origin (a tidemark target's; see `exclude_replicated`).
    pub fn set_exclude_replicated(&mut self, on: bool) {
        self.exclude_replicated = on;
    }

    /// Whether transactions from origin `name` are left out.
    pub fn excludes_origin(&self, name: &str) -> bool {
        self.exclude_replicated && is_tidemark_origin(name)
    }

    /// The open transaction came through an excluded origin (a streamed
    /// transaction's origin arrives in its first block).
    pub fn skip_open_transaction(&mut self) {
        self.skip_tx = true;
    }

    /// True between Begin and Commit.
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Takes what was decoded so far: the events and the position up to
    /// which everything read is covered.
    pub fn take_batch(&mut self) -> Option<Batch> {
        self.ledger.take_batch()
    }

    fn covered(&self, p: LsnPosition) -> bool {
        self.ledger.covered(&Position::Lsn(p))
    }

    fn advance(&mut self, p: LsnPosition) {
        self.ledger.advance(Position::Lsn(p));
    }

    /// Start of a transaction that commits at `commit_lsn` (Begin's final
    /// LSN, or a streamed transaction's commit LSN).
    pub fn begin(
        &mut self,
        xid: u32,
        commit_lsn: u64,
        commit_ts_us: i64,
    ) -> Result<(), StreamError> {
        if let Some(open) = &self.tx {
            return Err(StreamError::Definite(format!(
                "transaction {xid} began while the one committing at {} was still open",
                crate::event::position::format_lsn(open.commit_lsn)
            )));
        }
        self.ledger.order.reset();
        self.skip_tx = false;
        self.tx = Some(OpenTx {
            commit_lsn,
            meta: Arc::new(TxMeta {
                gtid: None,
                server_id: 0,
                commit_ts_ms: commit_ts_us.div_euclid(1000),
                xid: Some(u64::from(xid)),
                snapshot: None,
            }),
            index: 0,
        });
        Ok(())
    }

    /// End of the open transaction.
    pub fn commit(&mut self, commit_lsn: u64) -> Result<(), StreamError> {
        let Some(tx) = self.tx.take() else {
            return Err(StreamError::Definite(format!(
                "commit at {} without a transaction",
                crate::event::position::format_lsn(commit_lsn)
            )));
        };
        if tx.commit_lsn != commit_lsn {
            return Err(StreamError::Definite(format!(
                "commit at {} closes the transaction announced to commit at {}",
                crate::event::position::format_lsn(commit_lsn),
                crate::event::position::format_lsn(tx.commit_lsn)
            )));
        }
        self.advance(LsnPosition {
            commit_lsn,
            index: Position::END,
        });
        Ok(())
    }

    /// Handles a message inside (or, for Relation and Type, outside) a
    /// transaction. `lsn` is the XLogData start: the change's LSN. On
    /// `NeedCatalog` nothing changed.
    pub fn apply(&mut self, msg: &LogicalMessage, lsn: u64) -> Result<(), StreamError> {
        match msg {
            LogicalMessage::Relation(r) => self.on_relation(r),
            LogicalMessage::Type(t) => {
                // A type is described again when it may have changed.
                self.types.remove(&t.oid);
                Ok(())
            }
            LogicalMessage::Insert(m) => self.on_row(m.rel_id, Op::Create, None, Some(&m.new), lsn),
            LogicalMessage::Update(m) => {
                self.on_row(m.rel_id, Op::Update, m.old.as_ref(), Some(&m.new), lsn)
            }
            LogicalMessage::Delete(m) => self.on_row(m.rel_id, Op::Delete, Some(&m.old), None, lsn),
            LogicalMessage::Truncate(t) => {
                for rel_id in &t.rel_ids {
                    self.on_truncate(*rel_id, lsn)?;
                }
                Ok(())
            }
            LogicalMessage::Origin(o) => {
                if self.exclude_replicated && is_tidemark_origin(&o.name) {
                    self.skip_tx = true;
                }
                Ok(())
            }
            // Logical messages carry no row change.
            LogicalMessage::Message(_) => Ok(()),
            other => Err(StreamError::Definite(format!(
                "unexpected {} message here",
                other.name()
            ))),
        }
    }

    fn on_relation(&mut self, r: &Relation) -> Result<(), StreamError> {
        let schema_name = if r.namespace.is_empty() {
            "pg_catalog"
        } else {
            r.namespace.as_str()
        };
        let selected = self.filter.selects(schema_name, &r.name);
        if let Some(old) = self.relations.get(&r.rel_id)
            && old.raw == *r
            && self.fresh_info.is_none()
        {
            return Ok(());
        }
        let info = if selected {
            let missing: Vec<u32> = r
                .columns
                .iter()
                .map(|c| c.type_oid)
                .filter(|&oid| !self.knows_type(oid))
                .collect();
            match self.fresh_info.take() {
                Some((id, info)) if id == r.rel_id && missing.is_empty() => info,
                _ => {
                    return Err(StreamError::NeedCatalog {
                        rel_id: r.rel_id,
                        types: missing,
                    });
                }
            }
        } else {
            RelationInfo::default()
        };
        let (schema, types) = relation_schema(&self.db, r, &info, &self.types);
        self.relations.insert(
            r.rel_id,
            RelCodec {
                schema,
                types,
                selected,
                raw: r.clone(),
            },
        );
        Ok(())
    }

    /// The next position in the open transaction.
    fn next_position(&mut self, what: &str) -> Result<(LsnPosition, Arc<TxMeta>), StreamError> {
        let Some(tx) = self.tx.as_mut() else {
            return Err(StreamError::Definite(format!(
                "{what} outside a transaction"
            )));
        };
        tx.index += 1;
        Ok((
            LsnPosition {
                commit_lsn: tx.commit_lsn,
                index: tx.index,
            },
            tx.meta.clone(),
        ))
    }

    fn codec(&self, rel_id: u32) -> Result<&RelCodec, StreamError> {
        self.relations.get(&rel_id).ok_or_else(|| {
            StreamError::Definite(format!(
                "change for relation {rel_id} without a preceding Relation message"
            ))
        })
    }

    fn on_row(
        &mut self,
        rel_id: u32,
        op: Op,
        old: Option<&OldTuple>,
        new: Option<&TupleData>,
        lsn: u64,
    ) -> Result<(), StreamError> {
        self.codec(rel_id)?;
        let (position, meta) = self.next_position("row change")?;
        let table = self.codec(rel_id)?;
        if !table.selected || self.skip_tx {
            self.advance(position);
            return Ok(());
        }
        let schema = table.schema.clone();
        let (tx_order, table_order) = self.ledger.order.next(Some(&schema));
        if self.covered(position) {
            self.advance(position);
            return Ok(());
        }
        let codec = self.codec(rel_id)?;
        let before = old.map(|o| decode_tuple(codec, o.tuple())).transpose()?;
        let after = new.map(|t| decode_tuple(codec, t)).transpose()?;
        let table = codec.schema.clone();
        self.ledger.push(ChangeEvent {
            op,
            position: Position::Lsn(position),
            tx: meta,
            table: Some(table),
            before,
            after,
            ddl: None,
            source_offset: lsn,
            tx_order,
            table_order,
            connector: Connector::Postgres,
            copying: false,
        });
        Ok(())
    }

    fn on_truncate(&mut self, rel_id: u32, lsn: u64) -> Result<(), StreamError> {
        self.codec(rel_id)?;
        let (position, meta) = self.next_position("truncate")?;
        let codec = self.codec(rel_id)?;
        if !codec.selected || self.skip_tx {
            self.advance(position);
            return Ok(());
        }
        let table = codec.schema.clone();
        let (tx_order, table_order) = self.ledger.order.next(Some(&table));
        if self.covered(position) {
            self.advance(position);
            return Ok(());
        }
        self.ledger.push(ChangeEvent {
            op: Op::Truncate,
            position: Position::Lsn(position),
            tx: meta,
            table: Some(table),
            before: None,
            after: None,
            ddl: None,
            source_offset: lsn,
            tx_order,
            table_order,
            connector: Connector::Postgres,
            copying: false,
        });
        Ok(())
    }
}

fn decode_tuple(codec: &RelCodec, tuple: &TupleData) -> Result<Vec<Value>, StreamError> {
    if tuple.columns.len() != codec.types.len() {
        return Err(StreamError::Definite(format!(
            "a row of {} has {} columns, its Relation message {}",
            codec.schema.qualified_name(),
            tuple.columns.len(),
            codec.types.len()
        )));
    }
    tuple
        .columns
        .iter()
        .zip(&codec.types)
        .zip(&codec.schema.columns)
        .map(|((v, ty), col)| {
            types::decode_column(ty, v).map_err(|source| StreamError::Value {
                table: codec.schema.qualified_name(),
                column: col.name.clone(),
                source,
            })
        })
        .collect()
}

/// The columns that identify a row: the replica identity (primary key or
/// the `USING INDEX` index), as the Relation message flags them; for
/// REPLICA IDENTITY FULL (every column flagged) and NOTHING (none), the
/// primary key when the table has one.
/// The schema and column types of a table as a Relation message (and the
/// catalog's `info`) describe it; shared with the snapshot, so that its
/// rows carry the schema streaming gives.
pub fn relation_schema(
    db: &str,
    r: &Relation,
    info: &RelationInfo,
    catalog: &(impl types::TypeCatalog + ?Sized),
) -> (Arc<TableSchema>, Vec<PgType>) {
    let schema_name = if r.namespace.is_empty() {
        "pg_catalog"
    } else {
        r.namespace.as_str()
    };
    let types: Vec<PgType> = r
        .columns
        .iter()
        .map(|c| types::resolve(c.type_oid, c.typmod, catalog))
        .collect();
    let columns: Vec<ColumnDef> = r
        .columns
        .iter()
        .zip(&types)
        .map(|(c, t)| ColumnDef {
            name: c.name.clone(),
            type_name: type_display(t),
            nullable: !info.not_null.contains(&c.name),
        })
        .collect();
    let key = key_columns(r, info);
    let version = TableSchema::fingerprint(&columns, &key);
    let schema = Arc::new(TableSchema {
        merged: None,
        db: db.to_string(),
        schema: Some(schema_name.to_string()),
        name: r.name.clone(),
        columns,
        key,
        uniques: info
            .unique_keys
            .iter()
            .filter_map(|k| {
                k.iter()
                    .map(|n| r.columns.iter().position(|c| &c.name == n))
                    .collect::<Option<Vec<usize>>>()
            })
            .collect(),
        before_complete: r.replica_identity == ReplicaIdentity::Full,
        defaults: r
            .columns
            .iter()
            .map(|c| {
                info.defaults
                    .get(&c.name)
                    .and_then(|d| super::catalog::portable_default(d))
            })
            .collect(),
        version,
    });
    (schema, types)
}

fn key_columns(r: &Relation, info: &RelationInfo) -> Vec<usize> {
    let flagged: Vec<usize> = r
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key())
        .map(|(i, _)| i)
        .collect();
    let by_pk = || -> Option<Vec<usize>> {
        let idx: Vec<usize> = info
            .primary_key
            .iter()
            .filter_map(|k| r.columns.iter().position(|c| &c.name == k))
            .collect();
        (!idx.is_empty() && idx.len() == info.primary_key.len()).then_some(idx)
    };
    match r.replica_identity {
        ReplicaIdentity::Full | ReplicaIdentity::Nothing => by_pk().unwrap_or(flagged),
        ReplicaIdentity::Default | ReplicaIdentity::Index => flagged,
    }
}

/// A column type as `format_type` spells it (`varchar(50)`,
/// `numeric(38,9)`, `_int4` → `int4[]`), so that the type modifier shows.
pub fn type_display(t: &PgType) -> String {
    if let PgKind::Array(elem) = &t.kind {
        return format!("{}[]", type_display(elem));
    }
    let m = t.typmod;
    let modifier = match t.name.as_str() {
        "varchar" | "bpchar" if m >= 4 => format!("({})", m - 4),
        "numeric" if m >= 4 => {
            let v = m - 4;
            format!("({},{})", (v >> 16) & 0xffff, v & 0xffff)
        }
        "time" | "timetz" | "timestamp" | "timestamptz" if m >= 0 => format!("({m})"),
        "bit" | "varbit" if m >= 0 => format!("({m})"),
        "interval" if m >= 0 && (m & 0xffff) != 0xffff => format!("({})", m & 0xffff),
        _ => String::new(),
    };
    format!("{}{modifier}", t.name)
}

/// Replication origins tidemark's PostgreSQL targets apply under.
pub fn is_tidemark_origin(name: &str) -> bool {
    name.starts_with("tidemark")
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
