//! Hand-built messages for every pgoutput message type, in the v1 form and
//! the v2 streamed form, plus truncation and random-input robustness.

use super::*;

mod robustness;

/// Builds a message the way the server's `pq_send*` functions do.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn tag(t: u8) -> Self {
        W(vec![t])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn cstr(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// Streamed-transaction xid, present only in the v2 streamed form.
    fn xid(self, xid: Option<u32>) -> Self {
        match xid {
            Some(x) => self.u32(x),
            None => self,
        }
    }
    fn text(self, s: &str) -> Self {
        self.u8(b't').i32(s.len() as i32).raw(s.as_bytes())
    }
}

fn dec(w: &W, in_stream: bool) -> Result<LogicalMessage, DecodeError> {
    decode_slice(&w.0, in_stream)
}

const LSN: u64 = 0x0000_0016_B374_D848;
/// 2024-01-02 03:04:05.678901 UTC in PostgreSQL's epoch, and in Unix's.
const PG_TS: i64 = 757_479_845_678_901;
const UNIX_TS: i64 = 1_704_164_645_678_901;

/// A tuple of (1, NULL, unchanged TOAST, 'héllo', binary 00 ff) and its decoding.
fn sample_tuple(w: W) -> W {
    w.u16(5)
        .text("1")
        .u8(b'n')
        .u8(b'u')
        .text("héllo")
        .u8(b'b')
        .i32(2)
        .raw(&[0, 0xff])
}

fn sample_tuple_data() -> TupleData {
    TupleData {
        columns: vec![
            ColumnValue::Text(Bytes::from_static(b"1")),
            ColumnValue::Null,
            ColumnValue::Unchanged,
            ColumnValue::Text(Bytes::from("héllo")),
            ColumnValue::Binary(Bytes::from_static(&[0, 0xff])),
        ],
    }
}

fn key_tuple(w: W) -> W {
    w.u16(1).text("7")
}

fn key_tuple_data() -> TupleData {
    TupleData {
        columns: vec![ColumnValue::Text(Bytes::from_static(b"7"))],
    }
}

#[test]
fn unix_epoch_offset_is_2000_01_01() {
    let days = crate::event::value::Date {
        year: 2000,
        month: 1,
        day: 1,
    }
    .epoch_days();
    assert_eq!(days.map(|d| d * 86_400_000_000), Some(PG_EPOCH_UNIX_MICROS));
    assert_eq!(PG_TS + PG_EPOCH_UNIX_MICROS, UNIX_TS);
}

#[test]
fn begin_and_commit() {
    let m = W::tag(b'B').u64(LSN).i64(PG_TS).u32(758);
    let want = Begin {
        final_lsn: LSN,
        commit_ts_us: UNIX_TS,
        xid: 758,
    };
    assert_eq!(dec(&m, false), Ok(LogicalMessage::Begin(want)));

    let m = W::tag(b'C').u8(0).u64(LSN).u64(LSN + 0x30).i64(PG_TS);
    let want = Commit {
        flags: 0,
        commit_lsn: LSN,
        end_lsn: LSN + 0x30,
        commit_ts_us: UNIX_TS,
    };
    assert_eq!(dec(&m, false), Ok(LogicalMessage::Commit(want)));
}

#[test]
fn commit_time_before_2000_is_negative_in_pg_epoch() {
    // 1970-01-01 00:00:00 UTC.
    let m = W::tag(b'B').u64(1).i64(-PG_EPOCH_UNIX_MICROS).u32(1);
    let Ok(LogicalMessage::Begin(b)) = dec(&m, false) else {
        panic!("not a Begin");
    };
    assert_eq!(b.commit_ts_us, 0);
}

#[test]
fn timestamp_overflow_is_an_error() {
    let m = W::tag(b'B').u64(1).i64(i64::MAX).u32(1);
    assert_eq!(
        dec(&m, false),
        Err(DecodeError::TimestampOutOfRange {
            what: "commit timestamp",
            offset: 9,
            value: i64::MAX
        })
    );
}

#[test]
fn origin() {
    let m = W::tag(b'O').u64(LSN).cstr("node_a");
    let want = Origin {
        commit_lsn: LSN,
        name: "node_a".into(),
    };
    assert_eq!(dec(&m, false), Ok(LogicalMessage::Origin(want)));
}

fn relation_msg(xid: Option<u32>) -> W {
    W::tag(b'R')
        .xid(xid)
        .u32(16_385)
        .cstr("public")
        .cstr("orders")
        .u8(b'd')
        .u16(2)
        .u8(1)
        .cstr("id")
        .u32(23)
        .i32(-1)
        .u8(0)
        .cstr("amount")
        .u32(1700)
        .i32((10 << 16 | 2) + 4)
}

fn relation_value(xid: Option<u32>) -> Relation {
    Relation {
        xid,
        rel_id: 16_385,
        namespace: "public".into(),
        name: "orders".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            Column {
                flags: 1,
                name: "id".into(),
                type_oid: 23,
                typmod: -1,
            },
            Column {
                flags: 0,
                name: "amount".into(),
                type_oid: 1700,
                typmod: (10 << 16 | 2) + 4,
            },
        ],
    }
}

#[test]
fn relation_v1_and_streamed() {
    let r = relation_value(None);
    assert_eq!(
        dec(&relation_msg(None), false),
        Ok(LogicalMessage::Relation(r.clone()))
    );
    assert!(r.columns[0].is_key() && !r.columns[1].is_key());
    let r = relation_value(Some(900));
    assert_eq!(
        dec(&relation_msg(Some(900)), true),
        Ok(LogicalMessage::Relation(r))
    );
}

#[test]
fn relation_replica_identities_and_pg_catalog_namespace() {
    for (code, want) in [
        (b'd', ReplicaIdentity::Default),
        (b'n', ReplicaIdentity::Nothing),
        (b'f', ReplicaIdentity::Full),
        (b'i', ReplicaIdentity::Index),
    ] {
        let m = W::tag(b'R').u32(1).cstr("").cstr("t").u8(code).u16(0);
        let Ok(LogicalMessage::Relation(r)) = dec(&m, false) else {
            panic!("not a Relation");
        };
        assert_eq!((r.replica_identity, r.namespace.as_str()), (want, ""));
        assert!(r.columns.is_empty());
    }
    let m = W::tag(b'R').u32(1).cstr("s").cstr("t").u8(b'x').u16(0);
    assert_eq!(
        dec(&m, false),
        Err(DecodeError::UnexpectedByte {
            what: "replica identity",
            offset: 9,
            found: b'x'
        })
    );
}

#[test]
fn type_v1_and_streamed() {
    for xid in [None, Some(901)] {
        let m = W::tag(b'Y')
            .xid(xid)
            .u32(16_400)
            .cstr("public")
            .cstr("mood");
        let want = Type {
            xid,
            oid: 16_400,
            namespace: "public".into(),
            name: "mood".into(),
        };
        assert_eq!(dec(&m, xid.is_some()), Ok(LogicalMessage::Type(want)));
    }
}

#[test]
fn insert_v1_and_streamed() {
    for xid in [None, Some(902)] {
        let m = sample_tuple(W::tag(b'I').xid(xid).u32(16_385).u8(b'N'));
        let want = Insert {
            xid,
            rel_id: 16_385,
            new: sample_tuple_data(),
        };
        assert_eq!(dec(&m, xid.is_some()), Ok(LogicalMessage::Insert(want)));
    }
}

#[test]
fn insert_values_share_the_input_buffer() {
    let m = sample_tuple(W::tag(b'I').u32(1).u8(b'N'));
    let buf = Bytes::from(m.0);
    let Ok(LogicalMessage::Insert(i)) = decode(&buf, false) else {
        panic!("not an Insert");
    };
    let ColumnValue::Text(t) = &i.new.columns[3] else {
        panic!("not text");
    };
    let inside = buf.as_ptr_range();
    assert!(inside.contains(&t.as_ptr()), "value was copied");
}

#[test]
fn update_without_old_tuple_with_key_and_with_full_row() {
    for xid in [None, Some(903)] {
        let plain = sample_tuple(W::tag(b'U').xid(xid).u32(5).u8(b'N'));
        let keyed = sample_tuple(key_tuple(W::tag(b'U').xid(xid).u32(5).u8(b'K')).u8(b'N'));
        let full = sample_tuple(sample_tuple(W::tag(b'U').xid(xid).u32(5).u8(b'O')).u8(b'N'));
        let cases = [
            (plain, None),
            (keyed, Some(OldTuple::Key(key_tuple_data()))),
            (full, Some(OldTuple::Full(sample_tuple_data()))),
        ];
        for (m, old) in cases {
            let want = Update {
                xid,
                rel_id: 5,
                old,
                new: sample_tuple_data(),
            };
            assert_eq!(dec(&m, xid.is_some()), Ok(LogicalMessage::Update(want)));
        }
    }
}

#[test]
fn update_requires_new_tuple_after_old() {
    let m = key_tuple(W::tag(b'U').u32(5).u8(b'K')).u8(b'K');
    assert_eq!(
        dec(&m, false),
        Err(DecodeError::UnexpectedByte {
            what: "new tuple marker",
            offset: 14,
            found: b'K'
        })
    );
}

#[test]
fn delete_key_and_full_v1_and_streamed() {
    for xid in [None, Some(904)] {
        let keyed = key_tuple(W::tag(b'D').xid(xid).u32(6).u8(b'K'));
        let full = sample_tuple(W::tag(b'D').xid(xid).u32(6).u8(b'O'));
        for (m, old) in [
            (keyed, OldTuple::Key(key_tuple_data())),
            (full, OldTuple::Full(sample_tuple_data())),
        ] {
            let want = Delete {
                xid,
                rel_id: 6,
                old,
            };
            assert_eq!(
                dec(&m, xid.is_some()),
                Ok(LogicalMessage::Delete(want.clone()))
            );
            assert!(!want.old.tuple().columns.is_empty());
        }
    }
    let m = key_tuple(W::tag(b'D').u32(6).u8(b'N'));
    assert!(matches!(
        dec(&m, false),
        Err(DecodeError::UnexpectedByte {
            offset: 5,
            found: b'N',
            ..
        })
    ));
}

#[test]
fn truncate_v1_and_streamed() {
    for xid in [None, Some(905)] {
        let m = W::tag(b'T').xid(xid).i32(2).u8(3).u32(16_385).u32(16_390);
        let want = Truncate {
            xid,
            options: 3,
            rel_ids: vec![16_385, 16_390],
        };
        assert!(want.cascade() && want.restart_identity());
        assert_eq!(dec(&m, xid.is_some()), Ok(LogicalMessage::Truncate(want)));
    }
    let m = W::tag(b'T').i32(1).u8(2).u32(7);
    let Ok(LogicalMessage::Truncate(t)) = dec(&m, false) else {
        panic!("not a Truncate");
    };
    assert!(!t.cascade() && t.restart_identity());
}

#[test]
fn message_v1_and_streamed() {
    for xid in [None, Some(906)] {
        let m = W::tag(b'M')
            .xid(xid)
            .u8(1)
            .u64(LSN)
            .cstr("audit")
            .i32(4)
            .raw(b"\0\x01ab");
        let want = Message {
            xid,
            flags: 1,
            lsn: LSN,
            prefix: "audit".into(),
            content: Bytes::from_static(b"\0\x01ab"),
        };
        assert!(want.is_transactional());
        assert_eq!(dec(&m, xid.is_some()), Ok(LogicalMessage::Message(want)));
    }
    let m = W::tag(b'M').u8(0).u64(LSN).cstr("").i32(0);
    let Ok(LogicalMessage::Message(msg)) = dec(&m, false) else {
        panic!("not a Message");
    };
    assert!(!msg.is_transactional() && msg.content.is_empty());
}

#[test]
fn stream_control_messages() {
    let m = W::tag(b'S').u32(907).u8(1);
    let want = StreamStart {
        xid: 907,
        first_segment: true,
    };
    assert_eq!(dec(&m, false), Ok(LogicalMessage::StreamStart(want)));
    let m = W::tag(b'S').u32(907).u8(0);
    assert!(matches!(
        dec(&m, false),
        Ok(LogicalMessage::StreamStart(StreamStart {
            first_segment: false,
            ..
        }))
    ));

    assert_eq!(dec(&W::tag(b'E'), true), Ok(LogicalMessage::StreamStop));

    let m = W::tag(b'c').u32(907).u8(0).u64(LSN).u64(LSN + 8).i64(PG_TS);
    let want = StreamCommit {
        xid: 907,
        flags: 0,
        commit_lsn: LSN,
        end_lsn: LSN + 8,
        commit_ts_us: UNIX_TS,
    };
    assert_eq!(dec(&m, false), Ok(LogicalMessage::StreamCommit(want)));
}

#[test]
fn stream_abort_v2_and_v4_forms() {
    let m = W::tag(b'A').u32(907).u32(908);
    let want = StreamAbort {
        xid: 907,
        subxid: 908,
        abort: None,
    };
    assert_eq!(dec(&m, false), Ok(LogicalMessage::StreamAbort(want)));

    let m = W::tag(b'A').u32(907).u32(907).u64(LSN).i64(PG_TS);
    let want = StreamAbort {
        xid: 907,
        subxid: 907,
        abort: Some(AbortInfo {
            abort_lsn: LSN,
            abort_ts_us: UNIX_TS,
        }),
    };
    assert_eq!(dec(&m, false), Ok(LogicalMessage::StreamAbort(want)));

    // Fields of some later version that this decoder does not know.
    let m = W::tag(b'A').u32(1).u32(2).raw(&[9, 9, 9]);
    assert!(matches!(
        dec(&m, false),
        Ok(LogicalMessage::StreamAbort(StreamAbort { abort: None, .. }))
    ));
}

#[test]
fn stream_flag_mismatch_is_detected() {
    // A streamed insert read as v1: the xid is taken for the relation id and
    // the first byte of the real relation id is not the 'N' marker.
    let m = sample_tuple(W::tag(b'I').u32(902).u32(16_385).u8(b'N'));
    assert!(matches!(
        dec(&m, false),
        Err(DecodeError::UnexpectedByte {
            what: "new tuple marker",
            offset: 5,
            found: 0
        })
    ));
    // A v1 truncate read as streamed: the options byte becomes the top byte
    // of the relation count.
    let m = W::tag(b'T').i32(2).u8(1).u32(7).u32(8);
    assert!(matches!(
        dec(&m, true),
        Err(DecodeError::InvalidLength {
            what: "relation count",
            offset: 5,
            value: 0x0100_0000,
            ..
        })
    ));
    // Detection is not guaranteed: a v1 Type message read as streamed still
    // parses, with the oid taken for the xid and "publ" for the oid.
    let m = W::tag(b'Y').u32(16_400).cstr("public").cstr("mood");
    assert!(matches!(
        dec(&m, true),
        Ok(LogicalMessage::Type(Type {
            xid: Some(16_400),
            ..
        }))
    ));
}

#[test]
fn trailing_bytes_are_rejected() {
    let m = W::tag(b'E').u8(0);
    assert_eq!(
        dec(&m, false),
        Err(DecodeError::TrailingBytes {
            message: "Stream Stop",
            offset: 1,
            count: 1
        })
    );
    let m = key_tuple(W::tag(b'I').u32(1).u8(b'N')).raw(b"xy");
    assert_eq!(
        dec(&m, false),
        Err(DecodeError::TrailingBytes {
            message: "Insert",
            offset: 14,
            count: 2
        })
    );
}

#[test]
fn unknown_and_two_phase_message_types_are_errors() {
    for tag in [b'b', b'P', b'K', b'r', b'p', b'Z', 0] {
        assert_eq!(
            dec(&W::tag(tag).u64(1), false),
            Err(DecodeError::UnknownMessageType { tag })
        );
    }
}

#[test]
fn bad_strings_are_errors() {
    let m = W::tag(b'O').u64(1).raw(b"no terminator");
    assert_eq!(
        dec(&m, false),
        Err(DecodeError::UnterminatedString {
            what: "origin name",
            offset: 9
        })
    );
    let m = W::tag(b'O').u64(1).raw(b"\xff\xfe\0");
    assert_eq!(
        dec(&m, false),
        Err(DecodeError::InvalidUtf8 {
            what: "origin name",
            offset: 9
        })
    );
}

#[test]
fn bad_column_kind_is_an_error() {
    let m = W::tag(b'I').u32(1).u8(b'N').u16(1).u8(b'x');
    assert_eq!(
        dec(&m, false),
        Err(DecodeError::UnexpectedByte {
            what: "column kind",
            offset: 8,
            found: b'x'
        })
    );
}

#[test]
fn streamed_xid_reads_the_prefix_only() {
    let w = W::tag(b'I').u32(77).u32(16_400).u8(b'N');
    assert_eq!(streamed_xid(&w.0), Ok(77));
    assert!(streamed_xid(&[b'I', 0, 0]).is_err());
    assert!(streamed_xid(&[b'B', 0, 0, 0, 1]).is_err());
    assert!(streamed_xid(&[]).is_err());
}
