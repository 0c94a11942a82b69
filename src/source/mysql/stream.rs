//! The binlog state machine: events in stream order → change events with
//! positions, grouped into batches. No I/O: the driver (`mod.rs`) feeds it
//! events and takes batches.

use std::collections::HashMap;
use std::sync::Arc;

use super::charset::Collations;
use super::ddl::{Statement, classify};
use super::events::{self, RowsKind};
use super::reader::{DecodeError, Reader};
use super::rows::{JsonImage, decode_row, decode_row_json};
use super::schema::{self, CatalogTable, TableCodec};
use crate::event::{
    Batch, BinlogPosition, ChangeEvent, Connector, Ddl, DdlKind, Op, Position, TableSchema, TxMeta,
};
use crate::select::TableFilter;
use crate::source::ledger::BatchLedger;

/// What the decoder needs from the event header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub event_type: u8,
    pub timestamp: u32,
    pub server_id: u32,
    /// Position just after the event (0 for artificial events).
    pub log_pos: u64,
    pub event_size: u64,
    /// The common header's flags (`LOG_EVENT_SKIP_REPLICATION_F`: the
    /// session set `@@skip_replication`, as tidemark's targets do).
    pub flags: u16,
}

/// MariaDB's `LOG_EVENT_SKIP_REPLICATION_F`.
pub const SKIP_REPLICATION_FLAG: u16 = 0x8000;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("malformed {what} event at {file}:{pos}")]
    Decode {
        what: &'static str,
        file: String,
        pos: u64,
        #[source]
        source: DecodeError,
    },
    #[error("{0}")]
    Definite(String),
    /// Statement-based DML on a table the task selects (or that can't be
    /// told apart): its rows are not in the binlog.
    #[error("statement-based DML in the binlog at {file}:{pos} (transaction {tx}): {sql:.120}")]
    StatementDml {
        file: String,
        pos: u64,
        /// The transaction's position, as `offsets skip` takes it.
        tx: Position,
        sql: String,
    },
    /// The table map has no column names: the driver must load
    /// `db.table` from information_schema and feed the event again.
    #[error("need the catalog of {db}.{table}")]
    NeedCatalog { db: String, table: String },
}

struct OpenTx {
    tx_pos: u64,
    meta: Arc<TxMeta>,
    /// One statement and no COMMIT follows: a MariaDB GTID with
    /// FL_STANDALONE, or a MySQL GTID not followed by BEGIN.
    standalone: bool,
}

struct CachedTable {
    raw: Vec<u8>,
    codec: Arc<TableCodec>,
}

pub struct BinlogDecoder {
    /// Skip changes flagged `LOG_EVENT_SKIP_REPLICATION_F`
    /// (`exclude_replicated`).
    exclude_flagged: bool,
    connector: Connector,
    /// Transactions (`file`, start) whose statement-based DML the operator
    /// chose to skip (`tidemark offsets skip`).
    skips: Vec<(String, u64)>,
    /// Statement-based DML events skipped: outside the selection, or in a
    /// skipped transaction.
    pub statements_skipped: u64,
    filter: TableFilter,
    collations: Collations,
    catalog: HashMap<(String, String), Arc<CatalogTable>>,
    tables: HashMap<u64, CachedTable>,
    file: Arc<str>,
    tx: Option<OpenTx>,
    ledger: BatchLedger,
    table_id_len: usize,
    max_event_bytes: usize,
    /// Length of the checksum the server appends to events (CRC32: 4).
    checksum_len: usize,
    seen_format: bool,
    /// Position in `file` of the next event to read.
    next_pos: u64,
}

impl BinlogDecoder {
    pub fn new(
        connector: Connector,
        filter: TableFilter,
        collations: Collations,
        resume_after: Option<Position>,
    ) -> Self {
        BinlogDecoder {
            exclude_flagged: false,
            connector,
            skips: Vec::new(),
            statements_skipped: 0,
            filter,
            collations,
            catalog: HashMap::new(),
            tables: HashMap::new(),
            file: "".into(),
            tx: None,
            ledger: BatchLedger::new(resume_after),
            table_id_len: 6,
            max_event_bytes: 1 << 30,
            checksum_len: 4,
            seen_format: false,
            next_pos: 0,
        }
    }

    /// Sets whether the server checksums its events (`binlog_checksum`).
    pub fn set_checksum(&mut self, crc32: bool) {
        self.checksum_len = if crc32 { 4 } else { 0 };
    }

    /// Sets the current binlog file (the dump's start, before its fake ROTATE).
    pub fn set_file(&mut self, file: &str) {
        self.file = file.into();
    }

    pub fn add_catalog(&mut self, db: String, table: String, cat: CatalogTable) {
        self.catalog.insert((db, table), Arc::new(cat));
    }

    /// Transactions whose statement-based DML is skipped, by position.
    /// Leaves out changes a tidemark target applied (`exclude_replicated`).
    pub fn set_exclude_flagged(&mut self, on: bool) {
        self.exclude_flagged = on;
    }

    pub fn set_skips(&mut self, skips: &[Position]) {
        self.skips = skips
            .iter()
            .filter_map(|p| match p {
                Position::Binlog(b) => Some((b.file.to_string(), b.tx_pos)),
                Position::Lsn(_) | Position::Snapshot(_) => None,
            })
            .collect();
    }

    /// The binlog file being read.
    /// Every transaction starting before this position was decoded (and
    /// is in a batch once the pending events are taken); `None` inside a
    /// transaction or before the first event.
    pub fn read_to(&self) -> Option<Position> {
        if self.tx.is_some() || self.next_pos == 0 || self.file.is_empty() {
            return None;
        }
        Some(Position::Binlog(BinlogPosition::start_of(
            &self.file,
            self.next_pos,
        )))
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn pending_events(&self) -> usize {
        self.ledger.pending_events()
    }

    /// True inside a transaction (a restart would repeat its start).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Takes what was decoded so far: the events and the position up to
    /// which everything read is covered.
    pub fn take_batch(&mut self) -> Option<Batch> {
        self.ledger.take_batch()
    }

    fn decode_err(&self, what: &'static str, pos: u64) -> impl Fn(DecodeError) -> StreamError + '_ {
        move |source| StreamError::Decode {
            what,
            file: self.file.to_string(),
            pos,
            source,
        }
    }

    fn covered(&self, p: &Position) -> bool {
        self.ledger.covered(p)
    }

    fn advance(&mut self, p: Position) {
        self.ledger.advance(p);
    }

    fn begin(&mut self, tx_pos: u64, h: &Header, gtid: Option<String>, standalone: bool) {
        self.ledger.order.reset();
        self.tx = Some(OpenTx {
            tx_pos,
            meta: Arc::new(TxMeta {
                gtid,
                server_id: h.server_id,
                commit_ts_ms: i64::from(h.timestamp) * 1000,
                xid: None,
                snapshot: None,
            }),
            standalone,
        });
    }

    fn commit(&mut self) {
        if let Some(tx) = self.tx.take() {
            let end = Position::Binlog(BinlogPosition {
                file: self.file.clone(),
                tx_pos: tx.tx_pos,
                event_pos: Position::END,
                row: u32::MAX,
            });
            self.advance(end);
        }
    }

    /// Processes one event. On `NeedCatalog` nothing changed: load the
    /// catalog and call again with the same event.
    pub fn on_event(&mut self, h: &Header, data: &[u8]) -> Result<(), StreamError> {
        let start = h.log_pos.saturating_sub(h.event_size);
        if h.log_pos != 0 && h.event_type != events::ROTATE {
            self.next_pos = h.log_pos;
        }
        match h.event_type {
            events::FORMAT_DESCRIPTION => self.seen_format = true,
            events::ROTATE => {
                // The dump's first, artificial ROTATE comes before the format
                // description, so its checksum was not stripped.
                let data = match self.checksum_len {
                    n if !self.seen_format && data.len() >= 8 + n => &data[..data.len() - n],
                    _ => data,
                };
                let (file, pos) =
                    events::parse_rotate(data).map_err(self.decode_err("rotate", start))?;
                if !file.is_empty() {
                    self.file = file.into();
                }
                self.next_pos = pos;
                // Table ids are per file; a new file starts a new map.
                self.tables.clear();
            }
            events::MARIADB_GTID => {
                let g = events::parse_mariadb_gtid(data, h.server_id)
                    .map_err(self.decode_err("GTID", start))?;
                self.begin(start, h, Some(g.to_string()), g.standalone);
            }
            events::MYSQL_GTID | events::MYSQL_GTID_TAGGED => {
                let g = events::parse_mysql_gtid(data).map_err(self.decode_err("GTID", start))?;
                self.begin(start, h, Some(g), true);
            }
            events::MYSQL_ANONYMOUS_GTID => self.begin(start, h, None, true),
            events::QUERY | events::MARIADB_QUERY_COMPRESSED => {
                let body;
                let flagged = self.exclude_flagged && h.flags & SKIP_REPLICATION_FLAG != 0;
                let data = if h.event_type == events::MARIADB_QUERY_COMPRESSED {
                    // The statement text follows the fixed part, compressed.
                    body = self.uncompress_query(data, start)?;
                    &body[..]
                } else {
                    data
                };
                let q = events::parse_query(data).map_err(self.decode_err("query", start))?;
                if flagged
                    && !matches!(
                        classify(&q.sql),
                        Statement::Begin | Statement::Commit | Statement::Rollback
                    )
                {
                    // Applied by a tidemark target (a bidirectional pair):
                    // not a change of this side's users.
                    return Ok(());
                }
                self.on_query(h, start, q)?;
            }
            events::XID => self.commit(),
            events::TABLE_MAP => self.on_table_map(data, start)?,
            t => {
                if let Some((kind, compressed)) = events::rows_kind(t)
                    && !(self.exclude_flagged && h.flags & SKIP_REPLICATION_FLAG != 0)
                {
                    self.on_rows(h, data, start, kind, compressed)?;
                }
                // Everything else (heartbeats, format descriptions, MariaDB
                // checkpoints and GTID lists, annotations) carries no change.
            }
        }
        Ok(())
    }

    fn uncompress_query(&self, data: &[u8], start: u64) -> Result<Vec<u8>, StreamError> {
        // Fixed part: 13 bytes + status vars; then db NUL, then compressed text.
        let mut r = Reader::new(data);
        let fixed = (|| {
            r.take(11, "query header")?;
            let n = r.uint_le(2, "status length")? as usize;
            r.take(n, "status variables")?;
            Ok::<usize, DecodeError>(r.pos())
        })()
        .map_err(self.decode_err("compressed query", start))?;
        let db_len = usize::from(data.get(8).copied().unwrap_or(0));
        let head_end = fixed + db_len + 1;
        let mut out = data
            .get(..head_end)
            .ok_or_else(|| {
                StreamError::Definite(format!(
                    "truncated compressed query at {}:{start}",
                    self.file
                ))
            })?
            .to_vec();
        let text = events::mariadb_uncompress(
            data.get(head_end..).unwrap_or_default(),
            self.max_event_bytes,
        )
        .map_err(self.decode_err("compressed query", start))?;
        out.extend(text);
        Ok(out)
    }

    fn on_query(&mut self, h: &Header, start: u64, q: events::Query) -> Result<(), StreamError> {
        match classify(&q.sql) {
            Statement::Begin => match &mut self.tx {
                // MySQL: GTID, then BEGIN: a multi-statement transaction.
                Some(tx) => tx.standalone = false,
                None => self.begin(start, h, None, false),
            },
            Statement::Commit => self.commit(),
            // A rolled-back transaction in the binlog held only
            // non-transactional changes that were kept: nothing to undo here.
            Statement::Rollback => self.commit(),
            Statement::Dml { tables } => {
                let tx = self.tx_end_at(start);
                if self.covered(&tx) {
                    return Ok(());
                }
                // Writes only tables the task doesn't select: not its data.
                let outside = tables.as_ref().is_some_and(|ts| {
                    !ts.is_empty()
                        && ts.iter().all(|(db, t)| {
                            let db = db.as_deref().unwrap_or(&q.db);
                            !db.is_empty() && !self.filter.selects(db, t)
                        })
                });
                let tx_pos = self.tx.as_ref().map_or(start, |t| t.tx_pos);
                if outside {
                    self.statements_skipped += 1;
                    tracing::debug!(file = %self.file, pos = start, sql = %format!("{:.120}", q.sql), "statement-based DML outside the selection: skipped");
                } else if self
                    .skips
                    .iter()
                    .any(|(f, p)| *f == *self.file && *p == tx_pos)
                {
                    self.statements_skipped += 1;
                    tracing::warn!(file = %self.file, pos = start, transaction = %tx, "statement-based DML skipped as requested (offsets skip): its changes are not captured");
                } else {
                    return Err(StreamError::StatementDml {
                        file: self.file.to_string(),
                        pos: start,
                        tx,
                        sql: q.sql,
                    });
                }
            }
            Statement::Other => {
                if self.tx.as_ref().is_some_and(|t| t.standalone) {
                    self.commit();
                }
            }
            Statement::Ddl { kind, db, table } => {
                if self.tx.is_none() {
                    self.begin(start, h, None, true);
                }
                let db = db.or_else(|| (!q.db.is_empty()).then(|| q.db.clone()));
                self.emit_ddl(start, kind, db, table, q.sql);
                if self.tx.as_ref().is_some_and(|t| t.standalone) {
                    self.commit();
                }
            }
        }
        Ok(())
    }

    fn tx_end_at(&self, start: u64) -> Position {
        Position::Binlog(BinlogPosition {
            file: self.file.clone(),
            tx_pos: self.tx.as_ref().map_or(start, |t| t.tx_pos),
            event_pos: Position::END,
            row: u32::MAX,
        })
    }

    fn emit_ddl(
        &mut self,
        event_pos: u64,
        kind: DdlKind,
        db: Option<String>,
        table: Option<String>,
        sql: String,
    ) {
        let Some(tx) = &self.tx else { return };
        let position = Position::Binlog(BinlogPosition {
            file: self.file.clone(),
            tx_pos: tx.tx_pos,
            event_pos,
            row: 0,
        });
        let (tx_order, _) = self.ledger.order.next(None);
        if self.covered(&position) {
            return;
        }
        if let (Some(d), Some(t)) = (&db, &table) {
            // A schema change invalidates catalog data fetched for the table.
            self.catalog.remove(&(d.clone(), t.clone()));
        }
        let truncate = kind == DdlKind::TruncateTable;
        let schema = match (&db, &table) {
            (Some(d), Some(t)) if truncate => Some(Arc::new(TableSchema {
                merged: None,
                db: d.clone(),
                schema: None,
                name: t.clone(),
                columns: Vec::new(),
                key: Vec::new(),
                uniques: Vec::new(),
                before_complete: true,
                defaults: Vec::new(),
                version: 0,
            })),
            _ => None,
        };
        let ev = ChangeEvent {
            op: if truncate && schema.is_some() {
                Op::Truncate
            } else {
                Op::Ddl
            },
            position: position.clone(),
            tx: tx.meta.clone(),
            table: schema,
            before: None,
            after: None,
            ddl: Some(Box::new(Ddl {
                reshaped_from: None,
                db,
                table,
                statement: sql,
                kind,
            })),
            source_offset: 0,
            tx_order,
            table_order: 1,
            connector: self.connector,
            copying: false,
        };
        self.ledger.push(ev);
    }

    fn on_table_map(&mut self, data: &[u8], start: u64) -> Result<(), StreamError> {
        let table_id = Reader::new(data)
            .uint_le(self.table_id_len, "table id")
            .map_err(self.decode_err("table map", start))?;
        if let Some(c) = self.tables.get(&table_id)
            && c.raw == data
        {
            return Ok(());
        }
        let map = events::parse_table_map(data, self.table_id_len)
            .map_err(self.decode_err("table map", start))?;
        let selected = self.filter.selects(&map.db, &map.table);
        let catalog = if selected && !schema::has_names(&map) {
            let key = (map.db.clone(), map.table.clone());
            match self.catalog.get(&key) {
                Some(c) => Some(c.clone()),
                None => {
                    return Err(StreamError::NeedCatalog {
                        db: key.0,
                        table: key.1,
                    });
                }
            }
        } else {
            None
        };
        let mut codec = schema::build(&map, &self.collations, catalog.as_deref()).map_err(|e| {
            StreamError::Definite(format!(
                "table {}.{} at {}:{start}: {e}",
                map.db, map.table, self.file
            ))
        })?;
        codec.selected = selected;
        self.tables.insert(
            table_id,
            CachedTable {
                raw: data.to_vec(),
                codec: Arc::new(codec),
            },
        );
        Ok(())
    }

    fn on_rows(
        &mut self,
        h: &Header,
        data: &[u8],
        start: u64,
        kind: RowsKind,
        compressed: bool,
    ) -> Result<(), StreamError> {
        match &mut self.tx {
            Some(tx) => tx.standalone = false,
            // A dump started inside a transaction: treat this as its start.
            None => self.begin(start, h, None, false),
        }
        let partial = h.event_type == events::PARTIAL_UPDATE_ROWS;
        let ev = events::parse_rows(data, h.event_type, self.table_id_len)
            .map_err(self.decode_err("rows", start))?;
        let Some(cached) = self.tables.get(&ev.table_id) else {
            return Err(StreamError::Definite(format!(
                "rows event at {}:{start} for table id {} without a preceding table map: the start position is not at a transaction boundary",
                self.file, ev.table_id
            )));
        };
        let codec = cached.codec.clone();
        if !codec.selected {
            return Ok(());
        }
        if ev.columns != codec.kinds.len() {
            return Err(StreamError::Definite(format!(
                "rows event at {}:{start} has {} columns, its table map {}",
                self.file,
                ev.columns,
                codec.kinds.len()
            )));
        }
        let body;
        let rows = if compressed {
            body = events::mariadb_uncompress(ev.rows, self.max_event_bytes)
                .map_err(self.decode_err("compressed rows", start))?;
            &body[..]
        } else {
            ev.rows
        };
        let Some(tx) = &self.tx else { return Ok(()) };
        let (tx_pos, meta) = (tx.tx_pos, tx.meta.clone());
        let mut r = Reader::new(rows);
        let mut row = 0u32;
        while !r.is_empty() {
            let row_start = r.pos();
            let position = Position::Binlog(BinlogPosition {
                file: self.file.clone(),
                tx_pos,
                event_pos: start,
                row,
            });
            let (before, after) = match kind {
                RowsKind::Write => (
                    None,
                    Some(decode_row(&codec.kinds, ev.present_before, &mut r)),
                ),
                RowsKind::Delete => (
                    Some(decode_row(&codec.kinds, ev.present_before, &mut r)),
                    None,
                ),
                RowsKind::Update if partial => {
                    let mut docs = Vec::new();
                    let before = decode_row_json(
                        &codec.kinds,
                        ev.present_before,
                        &mut r,
                        &mut JsonImage::Collect(&mut docs),
                    );
                    let after = partial_after(&codec, ev.present_after, &mut r, &docs);
                    (Some(before), Some(after))
                }
                RowsKind::Update => (
                    Some(decode_row(&codec.kinds, ev.present_before, &mut r)),
                    Some(decode_row(&codec.kinds, ev.present_after, &mut r)),
                ),
            };
            let decode_err = self.decode_err("rows", start);
            let before = before.transpose().map_err(&decode_err)?;
            let after = after.transpose().map_err(&decode_err)?;
            if r.pos() == row_start {
                // A row image without columns can't advance: malformed.
                return Err(decode_err(r.err("row image with no columns")));
            }
            drop(decode_err);
            let (tx_order, table_order) = self.ledger.order.next(Some(&codec.schema));
            if !self.covered(&position) {
                self.ledger.push(ChangeEvent {
                    op: match kind {
                        RowsKind::Write => Op::Create,
                        RowsKind::Update => Op::Update,
                        RowsKind::Delete => Op::Delete,
                    },
                    position,
                    tx: meta.clone(),
                    table: Some(codec.schema.clone()),
                    before,
                    after,
                    ddl: None,
                    source_offset: u64::from(row),
                    tx_order,
                    table_order,
                    connector: self.connector,
                    copying: false,
                });
            }
            row = row.checked_add(1).ok_or_else(|| {
                StreamError::Definite(format!(
                    "more than 2^32 rows in one event at {}:{start}",
                    self.file
                ))
            })?;
        }
        Ok(())
    }
}

/// After image of a PARTIAL_UPDATE_ROWS event: value options, the partial
/// JSON bitmap, then the image.
fn partial_after(
    codec: &TableCodec,
    present: &[u8],
    r: &mut Reader<'_>,
    before: &[(usize, super::jsonb::Json)],
) -> Result<Vec<crate::event::Value>, DecodeError> {
    let options = r.lenenc("value options")?;
    let json_columns = codec
        .kinds
        .iter()
        .filter(|k| matches!(k, super::rows::ColumnKind::Json { .. }))
        .count();
    let partial: &[u8] = if options & 1 == 1 {
        r.take(json_columns.div_ceil(8), "partial JSON bitmap")?
    } else {
        &[]
    };
    decode_row_json(
        &codec.kinds,
        present,
        r,
        &mut JsonImage::Partial { partial, before },
    )
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
