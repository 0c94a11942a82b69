//! Decoder for PostgreSQL's logical replication protocol as written by the
//! `pgoutput` plugin, protocol versions 1 and 2.
//!
//! [`decode`] takes the payload of one XLogData message (the bytes after the
//! `w` header, starting at the message type byte) and returns a
//! [`LogicalMessage`]. It does no I/O and keeps no state: the caller tracks
//! whether it is between Stream Start and Stream Stop, because there protocol
//! v2 prefixes Relation, Type, Insert, Update, Delete, Truncate and Message
//! with the transaction id of the streamed transaction.
//!
//! Every malformed or truncated input is a [`DecodeError`] naming what was
//! being read and where; nothing here panics on input bytes. Column values
//! are slices of the input [`Bytes`], so decoding copies no row data.
//!
//! Timestamps are converted from PostgreSQL's epoch (2000-01-01 UTC) to
//! microseconds since the Unix epoch. Strings must be UTF-8, which they are
//! when the replication connection uses `client_encoding=UTF8`.
//!
//! Not decoded: the two-phase commit messages of protocol v3 (Begin Prepare,
//! Prepare, Commit Prepared, Rollback Prepared, Stream Prepare), which are
//! reported as [`DecodeError::UnknownMessageType`].

use bytes::Bytes;
use thiserror::Error;

mod read;
#[cfg(test)]
mod tests;

use read::Cursor;

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 UTC.
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// One decoded logical replication message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicalMessage {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(Type),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    Message(Message),
    StreamStart(StreamStart),
    StreamStop,
    StreamCommit(StreamCommit),
    StreamAbort(StreamAbort),
}

impl LogicalMessage {
    /// The protocol's name for the message type (`Stream Start`), for logs.
    pub fn name(&self) -> &'static str {
        match self {
            LogicalMessage::Begin(_) => "Begin",
            LogicalMessage::Commit(_) => "Commit",
            LogicalMessage::Origin(_) => "Origin",
            LogicalMessage::Relation(_) => "Relation",
            LogicalMessage::Type(_) => "Type",
            LogicalMessage::Insert(_) => "Insert",
            LogicalMessage::Update(_) => "Update",
            LogicalMessage::Delete(_) => "Delete",
            LogicalMessage::Truncate(_) => "Truncate",
            LogicalMessage::Message(_) => "Message",
            LogicalMessage::StreamStart(_) => "Stream Start",
            LogicalMessage::StreamStop => "Stream Stop",
            LogicalMessage::StreamCommit(_) => "Stream Commit",
            LogicalMessage::StreamAbort(_) => "Stream Abort",
        }
    }
}

/// Start of a transaction (`B`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts_us: i64,
    pub xid: u32,
}

/// End of a transaction (`C`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Unused by the server so far; always 0.
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: u64,
    /// LSN just past the commit record: the position to confirm once the
    /// transaction is durable downstream.
    pub end_lsn: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts_us: i64,
}

/// The transaction came from another node through replication origin `name` (`O`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// LSN of the commit on the origin server.
    pub commit_lsn: u64,
    pub name: String,
}

/// Description of a table, sent before its first change and after it changes (`R`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Streamed transaction this message belongs to (v2, inside a stream block).
    pub xid: Option<u32>,
    /// Relation oid: the key that Insert/Update/Delete/Truncate refer to.
    pub rel_id: u32,
    /// Schema name; the server sends an empty string for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    /// Live columns in attribute order; tuples carry values in this order.
    pub columns: Vec<Column>,
}

/// `REPLICA IDENTITY` of a table: which old values updates and deletes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: every column.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Bit 1: the column is part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    /// `atttypmod`: length, precision or scale modifier; -1 when none.
    pub typmod: i32,
}

impl Column {
    /// True when the column is part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// Name of a non-built-in data type used by a following Relation (`Y`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    /// Streamed transaction this message belongs to (v2, inside a stream block).
    pub xid: Option<u32>,
    pub oid: u32,
    /// Schema name; empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
}

/// A new row (`I`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Streamed transaction this message belongs to (v2, inside a stream block).
    pub xid: Option<u32>,
    pub rel_id: u32,
    pub new: TupleData,
}

/// A changed row (`U`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Streamed transaction this message belongs to (v2, inside a stream block).
    pub xid: Option<u32>,
    pub rel_id: u32,
    /// Present when the replica identity is FULL, or when the key changed.
    pub old: Option<OldTuple>,
    pub new: TupleData,
}

/// A removed row (`D`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Streamed transaction this message belongs to (v2, inside a stream block).
    pub xid: Option<u32>,
    pub rel_id: u32,
    pub old: OldTuple,
}

/// The old row of an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the key columns are set; every other column is null.
    Key(TupleData),
    /// `O`: the whole old row (replica identity FULL).
    Full(TupleData),
}

impl OldTuple {
    /// The column values, whichever kind of old tuple this is.
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// Column values of one row, in the order of the relation's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleData {
    pub columns: Vec<ColumnValue>,
}

/// One column of a [`TupleData`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnValue {
    /// `n`
    Null,
    /// `u`: a TOASTed value that did not change; the server does not send it.
    Unchanged,
    /// `t`: the type's text output.
    Text(Bytes),
    /// `b`: the type's binary send format (only with the `binary` option).
    Binary(Bytes),
}

/// `TRUNCATE` of one or more tables (`T`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Streamed transaction this message belongs to (v2, inside a stream block).
    pub xid: Option<u32>,
    /// Bit 1: CASCADE; bit 2: RESTART IDENTITY.
    pub options: u8,
    pub rel_ids: Vec<u32>,
}

impl Truncate {
    /// `TRUNCATE ... CASCADE`.
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    /// `TRUNCATE ... RESTART IDENTITY`.
    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// A message written with `pg_logical_emit_message` (`M`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Streamed transaction this message belongs to (v2, inside a stream block).
    pub xid: Option<u32>,
    /// Bit 1: the message is transactional.
    pub flags: u8,
    /// LSN of the message record.
    pub lsn: u64,
    pub prefix: String,
    pub content: Bytes,
}

impl Message {
    /// True when the message was emitted as part of its transaction (and so
    /// is delivered only if it commits).
    pub fn is_transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// Start of a block of changes of an in-progress transaction (`S`, v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub xid: u32,
    /// True for the first block of this transaction.
    pub first_segment: bool,
}

/// Commit of a streamed transaction (`c`, v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    pub xid: u32,
    /// Unused by the server so far; always 0.
    pub flags: u8,
    pub commit_lsn: u64,
    pub end_lsn: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts_us: i64,
}

/// Abort of a streamed transaction or of one of its subtransactions (`A`, v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    pub xid: u32,
    /// Equal to `xid` when the whole transaction aborted.
    pub subxid: u32,
    /// Sent by protocol v4 when streaming in parallel; `None` in the v2 form.
    pub abort: Option<AbortInfo>,
}

/// Where and when a streamed transaction aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortInfo {
    pub abort_lsn: u64,
    /// Abort time, microseconds since the Unix epoch.
    pub abort_ts_us: i64,
}

/// Why a message could not be decoded. Every variant carries the byte offset,
/// from the message type byte, at which the offending item starts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("truncated message: {what} at offset {offset} needs {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("{what} at offset {offset} has no NUL terminator")]
    UnterminatedString { what: &'static str, offset: usize },
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, offset: usize },
    #[error("unexpected byte 0x{found:02x} for {what} at offset {offset}")]
    UnexpectedByte {
        what: &'static str,
        offset: usize,
        found: u8,
    },
    #[error("{what} {value} at offset {offset} does not fit in the {available} bytes left")]
    InvalidLength {
        what: &'static str,
        offset: usize,
        value: i64,
        available: usize,
    },
    #[error("{what} {value} at offset {offset} is out of range")]
    TimestampOutOfRange {
        what: &'static str,
        offset: usize,
        value: i64,
    },
    #[error("{count} unexpected bytes after the {message} message at offset {offset}")]
    TrailingBytes {
        message: &'static str,
        offset: usize,
        count: usize,
    },
    #[error("unknown message type 0x{tag:02x} at offset 0")]
    UnknownMessageType { tag: u8 },
}

impl DecodeError {
    /// Offset of the offending item from the start of the message.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::Truncated { offset, .. }
            | DecodeError::UnterminatedString { offset, .. }
            | DecodeError::InvalidUtf8 { offset, .. }
            | DecodeError::UnexpectedByte { offset, .. }
            | DecodeError::InvalidLength { offset, .. }
            | DecodeError::TimestampOutOfRange { offset, .. }
            | DecodeError::TrailingBytes { offset, .. } => *offset,
            DecodeError::UnknownMessageType { .. } => 0,
        }
    }
}

/// Decodes one pgoutput message. `in_stream` is true between Stream Start and
/// Stream Stop, where v2 messages carry the streamed transaction's xid.
///
/// Column values and message content are zero-copy slices of `buf`.
pub fn decode(buf: &Bytes, in_stream: bool) -> Result<LogicalMessage, DecodeError> {
    use LogicalMessage as M;
    let mut c = Cursor::new(buf);
    let msg = match c.u8("message type")? {
        b'B' => M::Begin(read::begin(&mut c)?),
        b'C' => M::Commit(read::commit(&mut c)?),
        b'O' => M::Origin(read::origin(&mut c)?),
        b'R' => M::Relation(read::relation(&mut c, in_stream)?),
        b'Y' => M::Type(read::type_msg(&mut c, in_stream)?),
        b'I' => M::Insert(read::insert(&mut c, in_stream)?),
        b'U' => M::Update(read::update(&mut c, in_stream)?),
        b'D' => M::Delete(read::delete(&mut c, in_stream)?),
        b'T' => M::Truncate(read::truncate(&mut c, in_stream)?),
        b'M' => M::Message(read::message(&mut c, in_stream)?),
        b'S' => M::StreamStart(read::stream_start(&mut c)?),
        b'E' => M::StreamStop,
        b'c' => M::StreamCommit(read::stream_commit(&mut c)?),
        b'A' => M::StreamAbort(read::stream_abort(&mut c)?),
        tag => return Err(DecodeError::UnknownMessageType { tag }),
    };
    // Leftover bytes mean the layout was misread, most likely because
    // `in_stream` does not match the stream state. Stream Abort is exempt:
    // later protocol versions append fields to it.
    if c.remaining() > 0 && !matches!(msg, M::StreamAbort(_)) {
        return Err(DecodeError::TrailingBytes {
            message: msg.name(),
            offset: c.pos,
            count: c.remaining(),
        });
    }
    Ok(msg)
}

/// The xid that protocol v2 puts after the type byte of a message inside a
/// stream block (the transaction's or a subtransaction's), without decoding
/// the rest. Used to spill streamed changes.
pub fn streamed_xid(buf: &[u8]) -> Result<u32, DecodeError> {
    let tag = buf.first().copied().unwrap_or_default();
    if !matches!(tag, b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M') {
        return Err(DecodeError::UnexpectedByte {
            what: "message type inside a stream block",
            offset: 0,
            found: tag,
        });
    }
    let xid = buf.get(1..5).ok_or(DecodeError::Truncated {
        what: "streamed transaction xid",
        offset: 1,
        needed: 4,
        available: buf.len().saturating_sub(1),
    })?;
    let mut b = [0u8; 4];
    b.copy_from_slice(xid);
    Ok(u32::from_be_bytes(b))
}

/// [`decode`] for a borrowed buffer; copies it once so that column values can
/// share it.
pub fn decode_slice(buf: &[u8], in_stream: bool) -> Result<LogicalMessage, DecodeError> {
    decode(&Bytes::copy_from_slice(buf), in_stream)
}
