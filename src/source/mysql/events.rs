//! Bodies of the binlog events tidemark acts on, decoded from the event data
//! (header and checksum already removed): table maps, rows events, query,
//! XID, rotate, and the GTID events of MySQL and MariaDB (mysql_common has
//! no decoder for MariaDB's).

use super::reader::{DecodeError, Reader};

pub const QUERY: u8 = 2;
pub const ROTATE: u8 = 4;
pub const FORMAT_DESCRIPTION: u8 = 15;
pub const XID: u8 = 16;
pub const TABLE_MAP: u8 = 19;
pub const WRITE_ROWS_V1: u8 = 23;
pub const UPDATE_ROWS_V1: u8 = 24;
pub const DELETE_ROWS_V1: u8 = 25;
pub const HEARTBEAT: u8 = 27;
pub const WRITE_ROWS_V2: u8 = 30;
pub const UPDATE_ROWS_V2: u8 = 31;
pub const DELETE_ROWS_V2: u8 = 32;
pub const MYSQL_GTID: u8 = 33;
pub const MYSQL_ANONYMOUS_GTID: u8 = 34;
pub const PARTIAL_UPDATE_ROWS: u8 = 39;
pub const TRANSACTION_PAYLOAD: u8 = 40;
pub const HEARTBEAT_V2: u8 = 41;
pub const MYSQL_GTID_TAGGED: u8 = 42;
pub const MARIADB_ANNOTATE_ROWS: u8 = 160;
pub const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
pub const MARIADB_GTID: u8 = 162;
pub const MARIADB_GTID_LIST: u8 = 163;
pub const MARIADB_QUERY_COMPRESSED: u8 = 165;
pub const MARIADB_WRITE_ROWS_COMPRESSED_V1: u8 = 166;
pub const MARIADB_DELETE_ROWS_COMPRESSED: u8 = 171;

/// Which change a rows event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Write,
    Update,
    Delete,
}

/// Classifies a rows event type; `None` for other events. The flag tells
/// whether the body is MariaDB-compressed.
pub fn rows_kind(event_type: u8) -> Option<(RowsKind, bool)> {
    Some(match event_type {
        WRITE_ROWS_V1 | WRITE_ROWS_V2 => (RowsKind::Write, false),
        UPDATE_ROWS_V1 | UPDATE_ROWS_V2 | PARTIAL_UPDATE_ROWS => (RowsKind::Update, false),
        DELETE_ROWS_V1 | DELETE_ROWS_V2 => (RowsKind::Delete, false),
        166 | 169 => (RowsKind::Write, true),
        167 | 170 => (RowsKind::Update, true),
        168 | 171 => (RowsKind::Delete, true),
        _ => return None,
    })
}

/// A TABLE_MAP event.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMap {
    pub table_id: u64,
    pub db: String,
    pub table: String,
    pub types: Vec<u8>,
    /// Per-column type metadata (0–2 bytes each).
    pub meta: Vec<Vec<u8>>,
    pub nullable: Vec<bool>,
    /// Optional metadata (binlog_row_metadata=MINIMAL/FULL), raw TLV.
    pub optional: Vec<u8>,
}

/// Size of the per-column metadata of a binlog column type.
fn meta_len(ty: u8) -> Result<usize, u8> {
    Ok(match ty {
        // FLOAT, DOUBLE, BLOB, GEOMETRY, JSON, VECTOR, TIMESTAMP2, DATETIME2, TIME2
        4 | 5 | 252 | 255 | 245 | 242 | 17 | 18 | 19 => 1,
        // VARCHAR, BIT, NEWDECIMAL, VAR_STRING, STRING, ENUM, SET
        15 | 16 | 246 | 253 | 254 | 247 | 248 => 2,
        // Types without metadata.
        0..=3 | 6..=14 => 0,
        other => return Err(other),
    })
}

pub fn parse_table_map(data: &[u8], table_id_len: usize) -> Result<TableMap, DecodeError> {
    let mut r = Reader::new(data);
    let table_id = r.uint_le(table_id_len, "table id")?;
    r.take(2, "table map flags")?;
    let db_len = r.u8("database name length")?;
    let db = lossy(r.take(usize::from(db_len), "database name")?);
    r.take(1, "database name terminator")?;
    let table_len = r.u8("table name length")?;
    let table = lossy(r.take(usize::from(table_len), "table name")?);
    r.take(1, "table name terminator")?;
    let n = r.lenenc("column count")? as usize;
    if n > r.remaining() {
        return Err(r.err(format!("column count {n} exceeds the event")));
    }
    let types = r.take(n, "column types")?.to_vec();
    let meta_size = r.lenenc("metadata length")? as usize;
    let mut m = Reader::new(r.take(meta_size, "column metadata")?);
    let mut meta = Vec::with_capacity(n);
    for (i, &ty) in types.iter().enumerate() {
        let len =
            meta_len(ty).map_err(|t| r.err(format!("column {} has unknown type {t}", i + 1)))?;
        meta.push(m.take(len, "column metadata")?.to_vec());
    }
    let nulls = r.take(n.div_ceil(8), "null bitmap")?;
    let nullable = (0..n).map(|i| super::rows::bit(nulls, i)).collect();
    Ok(TableMap {
        table_id,
        db,
        table,
        types,
        meta,
        nullable,
        optional: r.rest().to_vec(),
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Header of a rows event and its row data.
#[derive(Debug, Clone, PartialEq)]
pub struct RowsEvent<'a> {
    pub table_id: u64,
    pub flags: u16,
    pub columns: usize,
    pub present_before: &'a [u8],
    /// The after-image column bitmap of an update; same as before otherwise.
    pub present_after: &'a [u8],
    pub rows: &'a [u8],
}

/// Parses a rows event body. `v2` events carry extra data after the flags.
pub fn parse_rows<'a>(
    data: &'a [u8],
    event_type: u8,
    table_id_len: usize,
) -> Result<RowsEvent<'a>, DecodeError> {
    let mut r = Reader::new(data);
    let table_id = r.uint_le(table_id_len, "table id")?;
    let flags = r.uint_le(2, "rows flags")? as u16;
    if matches!(
        event_type,
        WRITE_ROWS_V2 | UPDATE_ROWS_V2 | DELETE_ROWS_V2 | PARTIAL_UPDATE_ROWS
    ) {
        let extra = r.uint_le(2, "extra data length")? as usize;
        r.take(extra.saturating_sub(2), "extra data")?;
    }
    let columns = r.lenenc("column count")? as usize;
    if columns.div_ceil(8) > r.remaining() {
        return Err(r.err(format!("column count {columns} exceeds the event")));
    }
    let present_before = r.take(columns.div_ceil(8), "column bitmap")?;
    let present_after = if matches!(rows_kind(event_type), Some((RowsKind::Update, _))) {
        r.take(columns.div_ceil(8), "after-image column bitmap")?
    } else {
        present_before
    };
    Ok(RowsEvent {
        table_id,
        flags,
        columns,
        present_before,
        present_after,
        rows: r.rest(),
    })
}

/// Flag of a rows event that ends a statement (STMT_END_F).
pub const ROWS_STMT_END: u16 = 1;

/// A QUERY event: the statement and the database it ran in.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub db: String,
    pub sql: String,
    pub exec_time: u32,
}

pub fn parse_query(data: &[u8]) -> Result<Query, DecodeError> {
    let mut r = Reader::new(data);
    r.take(4, "thread id")?;
    let exec_time = r.uint_le(4, "exec time")? as u32;
    let db_len = r.u8("schema length")?;
    r.take(2, "error code")?;
    let status_len = r.uint_le(2, "status variables length")? as usize;
    r.take(status_len, "status variables")?;
    let db = lossy(r.take(usize::from(db_len), "schema")?);
    r.take(1, "schema terminator")?;
    Ok(Query {
        db,
        sql: lossy(r.rest()),
        exec_time,
    })
}

pub fn parse_rotate(data: &[u8]) -> Result<(String, u64), DecodeError> {
    let mut r = Reader::new(data);
    let pos = r.uint_le(8, "rotate position")?;
    Ok((lossy(r.rest()), pos))
}

/// MariaDB GTID event: `domain-server-seq`, and whether a COMMIT/XID follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariadbGtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
    /// FL_STANDALONE: a single statement (DDL) with no COMMIT event.
    pub standalone: bool,
}

impl std::fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

pub fn parse_mariadb_gtid(data: &[u8], server_id: u32) -> Result<MariadbGtid, DecodeError> {
    let mut r = Reader::new(data);
    let seq = r.uint_le(8, "GTID sequence number")?;
    let domain = r.uint_le(4, "GTID domain")? as u32;
    let flags = r.u8("GTID flags")?;
    Ok(MariadbGtid {
        domain,
        server_id,
        seq,
        standalone: flags & 1 != 0,
    })
}

/// MySQL GTID event: `uuid:gno` (tagged GTIDs of 8.3+ are reported without
/// the tag's encoding details: `uuid:tag:gno`).
pub fn parse_mysql_gtid(data: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader::new(data);
    r.take(1, "GTID flags")?;
    let sid = r.take(16, "GTID source id")?;
    let gno = r.uint_le(8, "GTID number")?;
    Ok(format!(
        "{}:{gno}",
        crate::event::json::format_uuid(&sid.try_into().map_err(|_| r.err("GTID source id"))?)
    ))
}

/// Decompresses a MariaDB compressed event body (log_bin_compress): one
/// header byte (0x80 | bytes of the length), the uncompressed length
/// big-endian, then zlib data.
pub fn mariadb_uncompress(data: &[u8], max_len: usize) -> Result<Vec<u8>, DecodeError> {
    use std::io::Read;
    let mut r = Reader::new(data);
    let head = r.u8("compression header")?;
    let n = usize::from(head & 0x07);
    if head & 0x80 == 0 || n == 0 || n > 4 {
        return Err(r.err(format!("unknown compression header {head:#x}")));
    }
    let len = r.uint_be(n, "uncompressed length")? as usize;
    if len > max_len {
        return Err(r.err(format!(
            "compressed event expands to {len} bytes, above the {max_len}-byte limit"
        )));
    }
    let mut out = Vec::with_capacity(len);
    flate2::read::ZlibDecoder::new(r.rest())
        .take(len as u64)
        .read_to_end(&mut out)
        .map_err(|e| r.err(format!("zlib: {e}")))?;
    if out.len() != len {
        return Err(r.err(format!(
            "compressed event gave {} bytes, header said {len}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn table_map_bytes() -> Vec<u8> {
        let mut b = vec![42, 0, 0, 0, 0, 0, 1, 0];
        b.push(4);
        b.extend_from_slice(b"shop\0");
        b.push(6);
        b.extend_from_slice(b"orders\0");
        b.push(3); // columns
        b.extend_from_slice(&[8, 15, 246]); // BIGINT, VARCHAR, DECIMAL
        b.push(4); // metadata length
        b.extend_from_slice(&[200, 0, 10, 2]); // varchar(200), decimal(10,2)
        b.push(0b110); // nullable columns 2 and 3
        b.extend_from_slice(&[4, 3, 1, b'x', 0]); // optional: truncated names, kept raw
        b
    }

    #[test]
    fn table_map_and_truncations() {
        let b = table_map_bytes();
        let t = parse_table_map(&b, 6).unwrap();
        assert_eq!(t.table_id, 42);
        assert_eq!((t.db.as_str(), t.table.as_str()), ("shop", "orders"));
        assert_eq!(t.meta, vec![vec![], vec![200, 0], vec![10, 2]]);
        assert_eq!(t.nullable, vec![false, true, true]);
        assert_eq!(t.optional, vec![4, 3, 1, b'x', 0]);
        for n in 0..b.len() - 5 {
            assert!(parse_table_map(&b[..n], 6).is_err(), "prefix {n}");
        }
        let mut bad = b.clone();
        bad[24] = 99; // unknown column type
        assert!(parse_table_map(&bad, 6).is_err());
    }

    #[test]
    fn rows_event_bitmaps() {
        // UPDATE_ROWS v2: table 42, flags 1, extra len 2, 3 columns, two bitmaps.
        let b = [42, 0, 0, 0, 0, 0, 1, 0, 2, 0, 3, 0b111, 0b101, 0xaa];
        let e = parse_rows(&b, UPDATE_ROWS_V2, 6).unwrap();
        assert_eq!(e.table_id, 42);
        assert_eq!(e.columns, 3);
        assert_eq!(e.present_before, &[0b111]);
        assert_eq!(e.present_after, &[0b101]);
        assert_eq!(e.rows, &[0xaa]);
        for n in 0..b.len() - 1 {
            assert!(
                parse_rows(&b[..n], UPDATE_ROWS_V2, 6).is_err(),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn gtids_and_query() {
        let mut g = 100u64.to_le_bytes().to_vec();
        g.extend_from_slice(&3u32.to_le_bytes());
        g.push(1);
        let gtid = parse_mariadb_gtid(&g, 7).unwrap();
        assert_eq!(gtid.to_string(), "3-7-100");
        assert!(gtid.standalone);
        let mut m = vec![1];
        m.extend_from_slice(&[0x3e; 16]);
        m.extend_from_slice(&5u64.to_le_bytes());
        assert_eq!(
            parse_mysql_gtid(&m).unwrap(),
            "3e3e3e3e-3e3e-3e3e-3e3e-3e3e3e3e3e3e:5"
        );
        let mut q = vec![0; 4];
        q.extend_from_slice(&0u32.to_le_bytes());
        q.push(4);
        q.extend_from_slice(&[0, 0]);
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&[9, 9]);
        q.extend_from_slice(b"shop\0ALTER TABLE t ADD c INT");
        let query = parse_query(&q).unwrap();
        assert_eq!(query.db, "shop");
        assert_eq!(query.sql, "ALTER TABLE t ADD c INT");
    }

    #[test]
    fn mariadb_compressed_bodies() {
        use std::io::Write;
        let plain = b"row data row data row data".repeat(10);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&plain).unwrap();
        let mut b = vec![0x82];
        b.extend_from_slice(&(plain.len() as u16).to_be_bytes());
        b.extend(z.finish().unwrap());
        assert_eq!(mariadb_uncompress(&b, 1 << 20).unwrap(), plain);
        assert!(mariadb_uncompress(&b, 10).is_err());
        assert!(mariadb_uncompress(&b[..b.len() / 2], 1 << 20).is_err());
    }
}
