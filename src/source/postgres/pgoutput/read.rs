//! The per-message layouts of [`super::decode`] and the bounds-checked
//! cursor they read with.

use bytes::Bytes;

use super::*;

pub(super) fn begin(c: &mut Cursor) -> Result<Begin, DecodeError> {
    Ok(Begin {
        final_lsn: c.u64("final LSN")?,
        commit_ts_us: c.timestamp("commit timestamp")?,
        xid: c.u32("xid")?,
    })
}

pub(super) fn commit(c: &mut Cursor) -> Result<Commit, DecodeError> {
    Ok(Commit {
        flags: c.u8("commit flags")?,
        commit_lsn: c.u64("commit LSN")?,
        end_lsn: c.u64("end LSN")?,
        commit_ts_us: c.timestamp("commit timestamp")?,
    })
}

pub(super) fn origin(c: &mut Cursor) -> Result<Origin, DecodeError> {
    Ok(Origin {
        commit_lsn: c.u64("origin commit LSN")?,
        name: c.cstr("origin name")?,
    })
}

pub(super) fn relation(c: &mut Cursor, in_stream: bool) -> Result<Relation, DecodeError> {
    let xid = c.stream_xid(in_stream)?;
    let rel_id = c.u32("relation id")?;
    let namespace = c.cstr("namespace")?;
    let name = c.cstr("relation name")?;
    let at = c.pos;
    let replica_identity = match c.u8("replica identity")? {
        b'd' => ReplicaIdentity::Default,
        b'n' => ReplicaIdentity::Nothing,
        b'f' => ReplicaIdentity::Full,
        b'i' => ReplicaIdentity::Index,
        found => {
            return Err(DecodeError::UnexpectedByte {
                what: "replica identity",
                offset: at,
                found,
            });
        }
    };
    // Flags, empty name, type oid, typmod: at least 10 bytes a column.
    let count = c.count16("column count", 10)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        columns.push(Column {
            flags: c.u8("column flags")?,
            name: c.cstr("column name")?,
            type_oid: c.u32("column type oid")?,
            typmod: c.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        xid,
        rel_id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

pub(super) fn type_msg(c: &mut Cursor, in_stream: bool) -> Result<Type, DecodeError> {
    Ok(Type {
        xid: c.stream_xid(in_stream)?,
        oid: c.u32("type oid")?,
        namespace: c.cstr("type namespace")?,
        name: c.cstr("type name")?,
    })
}

pub(super) fn insert(c: &mut Cursor, in_stream: bool) -> Result<Insert, DecodeError> {
    let xid = c.stream_xid(in_stream)?;
    let rel_id = c.u32("relation id")?;
    c.expect(b'N', "new tuple marker")?;
    Ok(Insert {
        xid,
        rel_id,
        new: c.tuple()?,
    })
}

pub(super) fn update(c: &mut Cursor, in_stream: bool) -> Result<Update, DecodeError> {
    let xid = c.stream_xid(in_stream)?;
    let rel_id = c.u32("relation id")?;
    let at = c.pos;
    let old = match c.u8("tuple marker")? {
        b'N' => None,
        b'K' => Some(OldTuple::Key(c.tuple()?)),
        b'O' => Some(OldTuple::Full(c.tuple()?)),
        found => {
            return Err(DecodeError::UnexpectedByte {
                what: "tuple marker",
                offset: at,
                found,
            });
        }
    };
    if old.is_some() {
        c.expect(b'N', "new tuple marker")?;
    }
    Ok(Update {
        xid,
        rel_id,
        old,
        new: c.tuple()?,
    })
}

pub(super) fn delete(c: &mut Cursor, in_stream: bool) -> Result<Delete, DecodeError> {
    let xid = c.stream_xid(in_stream)?;
    let rel_id = c.u32("relation id")?;
    let at = c.pos;
    let old = match c.u8("old tuple marker")? {
        b'K' => OldTuple::Key(c.tuple()?),
        b'O' => OldTuple::Full(c.tuple()?),
        found => {
            return Err(DecodeError::UnexpectedByte {
                what: "old tuple marker",
                offset: at,
                found,
            });
        }
    };
    Ok(Delete { xid, rel_id, old })
}

pub(super) fn truncate(c: &mut Cursor, in_stream: bool) -> Result<Truncate, DecodeError> {
    let xid = c.stream_xid(in_stream)?;
    let count_at = c.pos;
    let count = c.i32("relation count")?;
    let options = c.u8("truncate options")?;
    let count = c.check_count("relation count", count_at, i64::from(count), 4)?;
    let mut rel_ids = Vec::with_capacity(count);
    for _ in 0..count {
        rel_ids.push(c.u32("relation id")?);
    }
    Ok(Truncate {
        xid,
        options,
        rel_ids,
    })
}

pub(super) fn message(c: &mut Cursor, in_stream: bool) -> Result<Message, DecodeError> {
    Ok(Message {
        xid: c.stream_xid(in_stream)?,
        flags: c.u8("message flags")?,
        lsn: c.u64("message LSN")?,
        prefix: c.cstr("message prefix")?,
        content: c.counted_bytes("message content")?,
    })
}

pub(super) fn stream_start(c: &mut Cursor) -> Result<StreamStart, DecodeError> {
    Ok(StreamStart {
        xid: c.u32("xid")?,
        first_segment: c.u8("first segment flag")? == 1,
    })
}

pub(super) fn stream_commit(c: &mut Cursor) -> Result<StreamCommit, DecodeError> {
    Ok(StreamCommit {
        xid: c.u32("xid")?,
        flags: c.u8("commit flags")?,
        commit_lsn: c.u64("commit LSN")?,
        end_lsn: c.u64("end LSN")?,
        commit_ts_us: c.timestamp("commit timestamp")?,
    })
}

pub(super) fn stream_abort(c: &mut Cursor) -> Result<StreamAbort, DecodeError> {
    let xid = c.u32("xid")?;
    let subxid = c.u32("subtransaction xid")?;
    let abort = if c.remaining() >= 16 {
        Some(AbortInfo {
            abort_lsn: c.u64("abort LSN")?,
            abort_ts_us: c.timestamp("abort timestamp")?,
        })
    } else {
        None
    };
    Ok(StreamAbort { xid, subxid, abort })
}

/// Reads big-endian fields from a message, checking every length.
pub(super) struct Cursor<'a> {
    buf: &'a Bytes,
    /// Offset of the next unread byte.
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a Bytes) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let buf: &'a Bytes = self.buf;
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| buf.get(self.pos..end))
            .ok_or(DecodeError::Truncated {
                what,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            })?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A PostgreSQL timestamp (µs since 2000-01-01), as Unix-epoch µs.
    fn timestamp(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let at = self.pos;
        let value = i64::from_be_bytes(self.array(what)?);
        value
            .checked_add(PG_EPOCH_UNIX_MICROS)
            .ok_or(DecodeError::TimestampOutOfRange {
                what,
                offset: at,
                value,
            })
    }

    fn stream_xid(&mut self, in_stream: bool) -> Result<Option<u32>, DecodeError> {
        if in_stream {
            self.u32("streamed transaction xid").map(Some)
        } else {
            Ok(None)
        }
    }

    fn expect(&mut self, want: u8, what: &'static str) -> Result<(), DecodeError> {
        let at = self.pos;
        match self.u8(what)? {
            found if found == want => Ok(()),
            found => Err(DecodeError::UnexpectedByte {
                what,
                offset: at,
                found,
            }),
        }
    }

    /// A NUL-terminated UTF-8 string.
    fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let at = self.pos;
        let rest = self.buf.get(at..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::UnterminatedString { what, offset: at })?;
        let bytes = self.take(len, what)?;
        self.pos += 1; // the NUL, which `position` found inside the buffer
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { what, offset: at })
    }

    /// An Int32 length followed by that many bytes, as a slice of the buffer.
    fn counted_bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let at = self.pos;
        let len = self.i32(what)?;
        let len = self.check_count(what, at, i64::from(len), 1)?;
        let bytes = self.take(len, what)?;
        // `bytes` lies inside `buf`, which is what `slice_ref` requires.
        Ok(self.buf.slice_ref(bytes))
    }

    /// An Int16 count of items that take at least `min_item_len` bytes each.
    fn count16(&mut self, what: &'static str, min_item_len: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = self.u16(what)?;
        self.check_count(what, at, i64::from(count), min_item_len)
    }

    /// Rejects a negative count, or one that the rest of the message could
    /// not hold, before anything is allocated for it.
    fn check_count(
        &self,
        what: &'static str,
        offset: usize,
        value: i64,
        min_item_len: usize,
    ) -> Result<usize, DecodeError> {
        let available = self.remaining();
        usize::try_from(value)
            .ok()
            .filter(|&n| {
                n.checked_mul(min_item_len)
                    .is_some_and(|need| need <= available)
            })
            .ok_or(DecodeError::InvalidLength {
                what,
                offset,
                value,
                available,
            })
    }

    fn tuple(&mut self) -> Result<TupleData, DecodeError> {
        // Every column takes at least its one-byte kind tag.
        let count = self.count16("tuple column count", 1)?;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let at = self.pos;
            let value = match self.u8("column kind")? {
                b'n' => ColumnValue::Null,
                b'u' => ColumnValue::Unchanged,
                b't' => ColumnValue::Text(self.counted_bytes("text column value")?),
                b'b' => ColumnValue::Binary(self.counted_bytes("binary column value")?),
                found => {
                    return Err(DecodeError::UnexpectedByte {
                        what: "column kind",
                        offset: at,
                        found,
                    });
                }
            };
            columns.push(value);
        }
        Ok(TupleData { columns })
    }
}
