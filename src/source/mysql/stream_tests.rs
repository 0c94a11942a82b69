//! The binlog state machine on event bytes built to the MySQL 8 format
//! (GTID events, BEGIN/XID, binary JSON, partial JSON updates), which this
//! machine has no MySQL server to capture from, and on MariaDB edge cases.

use super::*;
use crate::event::Value;
use crate::source::mysql::jsonb::{Json, encode};

fn header(event_type: u8, log_pos: u64, size: u64) -> Header {
    Header {
        flags: 0,
        event_type,
        timestamp: 1_700_000_000,
        server_id: 7,
        log_pos,
        event_size: size,
    }
}

/// Feeds events laid out back to back from position 4 of `file`.
struct Feed {
    dec: BinlogDecoder,
    pos: u64,
}

impl Feed {
    fn new(connector: Connector, resume: Option<Position>) -> Self {
        let mut dec = BinlogDecoder::new(
            connector,
            TableFilter::default(),
            Collations::builtin(),
            resume,
        );
        dec.set_checksum(false);
        dec.seen_format = true;
        dec.set_file("binlog.000042");
        Feed { dec, pos: 4 }
    }

    fn event(&mut self, ty: u8, data: &[u8]) -> Result<(), StreamError> {
        let size = 19 + data.len() as u64;
        self.pos += size;
        self.dec.on_event(&header(ty, self.pos, size), data)
    }
}

fn mysql_gtid(gno: u64) -> Vec<u8> {
    let mut b = vec![1];
    b.extend_from_slice(&[0xab; 16]);
    b.extend_from_slice(&gno.to_le_bytes());
    b.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b
}

fn query(db: &str, sql: &str) -> Vec<u8> {
    let mut b = vec![0; 8];
    b.push(db.len() as u8);
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(db.as_bytes());
    b.push(0);
    b.extend_from_slice(sql.as_bytes());
    b
}

/// Table map of `shop.docs (id BIGINT UNSIGNED, doc JSON)` with full metadata.
fn docs_table_map() -> Vec<u8> {
    let mut b = vec![9, 0, 0, 0, 0, 0, 1, 0];
    b.push(4);
    b.extend_from_slice(b"shop\0");
    b.push(4);
    b.extend_from_slice(b"docs\0");
    b.push(2);
    b.extend_from_slice(&[8, 245]);
    b.push(1);
    b.push(4); // JSON length size
    b.push(0b10);
    // Optional metadata: signedness (id unsigned), names, primary key.
    b.extend_from_slice(&[1, 1, 0b1000_0000]);
    b.extend_from_slice(&[4, 7, 2, b'i', b'd', 3, b'd', b'o', b'c']);
    b.extend_from_slice(&[8, 1, 0]);
    b
}

fn json_value(doc: &Json) -> Vec<u8> {
    let bin = encode::doc(doc);
    let mut b = (bin.len() as u32).to_le_bytes().to_vec();
    b.extend(bin);
    b
}

fn write_rows(id: u64, doc: &Json) -> Vec<u8> {
    let mut b = vec![9, 0, 0, 0, 0, 0, 1, 0, 2, 0, 2, 0b11, 0];
    b.extend_from_slice(&id.to_le_bytes());
    b.extend(json_value(doc));
    b
}

fn object(fields: &[(&str, Json)]) -> Json {
    Json::Object(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

#[test]
fn mysql8_transaction_with_binary_json_and_partial_update() {
    let mut f = Feed::new(Connector::Mysql, None);
    let doc = object(&[
        ("a", Json::Number("1".into())),
        ("tags", Json::Array(vec![Json::String("x".into())])),
    ]);
    f.event(events::MYSQL_GTID, &mysql_gtid(77)).unwrap();
    let tx_pos = f.pos - 19 - mysql_gtid(77).len() as u64;
    f.event(events::QUERY, &query("shop", "BEGIN")).unwrap();
    f.event(events::TABLE_MAP, &docs_table_map()).unwrap();
    f.event(events::WRITE_ROWS_V2, &write_rows(u64::MAX, &doc))
        .unwrap();

    // PARTIAL_UPDATE_ROWS: before image full, after image with a diff that
    // replaces $.a and appends to $.tags.
    let mut diffs = Vec::new();
    for (op, path, v) in [
        (0u8, "$.a", Json::Number("2".into())),
        (1, "$.tags[1]", Json::String("y".into())),
    ] {
        diffs.push(op);
        diffs.push(path.len() as u8);
        diffs.extend_from_slice(path.as_bytes());
        let bin = encode::doc(&v);
        diffs.push(bin.len() as u8);
        diffs.extend(bin);
    }
    let mut upd = vec![9, 0, 0, 0, 0, 0, 1, 0, 2, 0, 2, 0b11, 0b11];
    upd.push(0); // before: null bitmap
    upd.extend_from_slice(&u64::MAX.to_le_bytes());
    upd.extend(json_value(&doc));
    upd.push(1); // value options: PARTIAL_JSON_UPDATES
    upd.push(0b1); // the JSON column is partial
    upd.push(0); // after: null bitmap
    upd.extend_from_slice(&u64::MAX.to_le_bytes());
    upd.extend_from_slice(&(diffs.len() as u32).to_le_bytes());
    upd.extend(diffs);
    f.event(events::PARTIAL_UPDATE_ROWS, &upd).unwrap();
    f.event(events::XID, &5u64.to_le_bytes()).unwrap();

    let batch = f.dec.take_batch().unwrap();
    assert_eq!(batch.events.len(), 2);
    let ins = &batch.events[0];
    assert_eq!(ins.op, Op::Create);
    assert_eq!(
        ins.tx.gtid.as_deref(),
        Some("abababab-abab-abab-abab-abababababab:77")
    );
    let after = ins.after.as_ref().unwrap();
    assert_eq!(after[0], Value::UInt(u64::MAX));
    assert_eq!(after[1], Value::Json(r#"{"a": 1, "tags": ["x"]}"#.into()));
    let upd = &batch.events[1];
    assert_eq!(upd.op, Op::Update);
    assert_eq!(
        upd.after.as_ref().unwrap()[1],
        Value::Json(r#"{"a": 2, "tags": ["x", "y"]}"#.into())
    );
    assert_eq!(upd.before.as_ref().unwrap()[1], after[1]);
    assert_eq!(upd.table.as_ref().unwrap().key, vec![0]);
    // The batch covers the whole transaction.
    assert_eq!(
        batch.end,
        Position::Binlog(BinlogPosition {
            file: "binlog.000042".into(),
            tx_pos,
            event_pos: Position::END,
            row: u32::MAX,
        })
    );
    assert!(!f.dec.in_transaction());
}

#[test]
fn mysql8_ddl_without_begin_commits_by_itself() {
    let mut f = Feed::new(Connector::Mysql, None);
    f.event(events::MYSQL_GTID, &mysql_gtid(1)).unwrap();
    f.event(
        events::QUERY,
        &query("shop", "ALTER TABLE docs ADD COLUMN x INT"),
    )
    .unwrap();
    assert!(!f.dec.in_transaction());
    f.event(events::MYSQL_GTID, &mysql_gtid(2)).unwrap();
    f.event(events::QUERY, &query("", "GRANT SELECT ON *.* TO u"))
        .unwrap();
    assert!(
        !f.dec.in_transaction(),
        "a standalone non-DDL statement ends its transaction"
    );
    let batch = f.dec.take_batch().unwrap();
    assert_eq!(batch.events.len(), 1);
    let ddl = batch.events[0].ddl.as_deref().unwrap();
    assert_eq!(ddl.kind, DdlKind::AlterTable);
    assert_eq!(ddl.db.as_deref(), Some("shop"));
    assert_eq!(ddl.table.as_deref(), Some("docs"));
    assert!(batch.end.is_tx_end());
}

#[test]
fn resume_skips_delivered_rows_of_a_half_written_transaction() {
    let doc = Json::Null;
    let run = |resume: Option<Position>| {
        let mut f = Feed::new(Connector::Mysql, resume);
        f.event(events::MYSQL_GTID, &mysql_gtid(3)).unwrap();
        f.event(events::QUERY, &query("shop", "BEGIN")).unwrap();
        f.event(events::TABLE_MAP, &docs_table_map()).unwrap();
        let mut rows = write_rows(1, &doc);
        // Three rows in one event.
        for id in [2u64, 3] {
            rows.push(0);
            rows.extend_from_slice(&id.to_le_bytes());
            rows.extend(json_value(&doc));
        }
        f.event(events::WRITE_ROWS_V2, &rows).unwrap();
        f.event(events::XID, &1u64.to_le_bytes()).unwrap();
        f.dec.take_batch()
    };
    let all = run(None).unwrap();
    assert_eq!(all.events.len(), 3);
    // Resume after the second row: only the third comes again.
    let again = run(Some(all.events[1].position.clone())).unwrap();
    assert_eq!(again.events.len(), 1);
    assert_eq!(again.events[0].position, all.events[2].position);
    // Resume after the whole transaction: nothing, not even an end.
    assert!(run(Some(all.end.clone())).is_none());
}

#[test]
fn statement_dml_outside_the_selection_is_skipped() {
    let mut f = Feed::new(Connector::Mariadb, None);
    f.dec.filter = TableFilter::new(&["p1.*".to_string()], &[]).unwrap();
    // `use other` / an explicit other database: not the task's data.
    for (db, sql) in [
        ("other", "INSERT INTO x VALUES (3),(4)"),
        ("p1", "INSERT INTO other.x VALUES (3),(4)"),
        ("other", "DELETE FROM x WHERE id = 3"),
    ] {
        f.event(events::QUERY, &query(db, "BEGIN")).unwrap();
        f.event(events::QUERY, &query(db, sql)).unwrap();
        f.event(events::XID, &1u64.to_le_bytes()).unwrap();
    }
    assert_eq!(f.dec.statements_skipped, 3);
    // A selected table, or one the statement doesn't make certain: an error.
    for (db, sql) in [
        ("p1", "INSERT INTO t VALUES (1)"),
        ("other", "INSERT INTO p1.t VALUES (1)"),
        ("other", "UPDATE x JOIN p1.t ON x.id = t.id SET t.v = 1"),
    ] {
        f.event(events::QUERY, &query(db, "BEGIN")).unwrap();
        let e = f.event(events::QUERY, &query(db, sql)).unwrap_err();
        assert!(matches!(e, StreamError::StatementDml { .. }), "{sql}: {e}");
        f.dec.tx = None;
    }
}

#[test]
fn a_skipped_transaction_passes_its_statement_dml() {
    let mut f = Feed::new(Connector::Mariadb, None);
    f.event(events::QUERY, &query("shop", "BEGIN")).unwrap();
    let e = f
        .event(events::QUERY, &query("shop", "INSERT INTO t VALUES (1)"))
        .unwrap_err();
    let StreamError::StatementDml { tx, .. } = e else {
        panic!("{e}")
    };
    // The operator skips that transaction: read again, it passes.
    let mut f = Feed::new(Connector::Mariadb, None);
    f.dec.set_skips(std::slice::from_ref(&tx));
    f.event(events::QUERY, &query("shop", "BEGIN")).unwrap();
    f.event(events::QUERY, &query("shop", "INSERT INTO t VALUES (1)"))
        .unwrap();
    f.event(events::XID, &1u64.to_le_bytes()).unwrap();
    assert_eq!(f.dec.statements_skipped, 1);
    assert_eq!(f.dec.take_batch().map(|b| b.end), Some(tx));
}

#[test]
fn statement_dml_and_unknown_tables_are_definite_errors() {
    let mut f = Feed::new(Connector::Mariadb, None);
    let e = f
        .event(events::QUERY, &query("shop", "INSERT INTO t VALUES (1)"))
        .unwrap_err();
    let StreamError::StatementDml { file, tx, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(file, "binlog.000042");
    assert!(tx.is_tx_end(), "{tx}");
    let mut f = Feed::new(Connector::Mariadb, None);
    let e = f
        .event(events::WRITE_ROWS_V1, &[9, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("without a preceding table map"), "{e}");
}

#[test]
fn malformed_events_never_panic() {
    let good = [
        (
            events::MARIADB_GTID,
            vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (events::TABLE_MAP, docs_table_map()),
        (events::WRITE_ROWS_V2, write_rows(1, &Json::Bool(true))),
        (events::QUERY, query("d", "ALTER TABLE t ADD c INT")),
        (events::ROTATE, b"\x04\0\0\0\0\0\0\0binlog.000043".to_vec()),
    ];
    let mut seed = 99u64;
    for round in 0..4000 {
        let mut f = Feed::new(Connector::Mariadb, None);
        for (ty, data) in &good {
            let mut d = data.clone();
            if round % 2 == 0 {
                d.truncate((seed % (d.len() as u64 + 1)) as usize);
            } else if !d.is_empty() {
                let i = (seed % d.len() as u64) as usize;
                d[i] ^= (seed >> 8) as u8 | 1;
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let _ = f.event(*ty, &d);
        }
    }
}
