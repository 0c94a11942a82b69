//! The state machine on hand-built messages: positions, resume skipping,
//! replica identities, TOAST, truncate, schema versions, catalog requests.

use bytes::Bytes;

use super::*;
use crate::source::postgres::pgoutput::{
    Column, ColumnValue, Delete, Insert, Truncate, Type, Update,
};

const USERS: u32 = 16_400;
const MOOD: u32 = 70_000;

fn col(name: &str, oid: u32, key: bool) -> Column {
    Column {
        flags: u8::from(key),
        name: name.into(),
        type_oid: oid,
        typmod: -1,
    }
}

fn relation(identity: ReplicaIdentity, columns: Vec<Column>) -> LogicalMessage {
    LogicalMessage::Relation(Relation {
        xid: None,
        rel_id: USERS,
        namespace: "public".into(),
        name: "users".into(),
        replica_identity: identity,
        columns,
    })
}

fn users(identity: ReplicaIdentity) -> LogicalMessage {
    relation(
        identity,
        vec![
            col("id", 23, true),
            col("name", 25, false),
            col("big", 25, false),
        ],
    )
}

fn t(s: &str) -> ColumnValue {
    ColumnValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn tuple(values: Vec<ColumnValue>) -> TupleData {
    TupleData { columns: values }
}

fn insert(id: &str) -> LogicalMessage {
    LogicalMessage::Insert(Insert {
        xid: None,
        rel_id: USERS,
        new: tuple(vec![t(id), t("n"), t("b")]),
    })
}

fn decoder(resume: Option<LsnPosition>) -> WalDecoder {
    WalDecoder::new("shop".into(), TableFilter::default(), resume)
}

/// Applies, answering catalog requests with `info` (and `mood` as an enum).
fn apply(d: &mut WalDecoder, m: &LogicalMessage, info: &RelationInfo) {
    match d.apply(m, 7) {
        Err(StreamError::NeedCatalog { rel_id, types }) => {
            let defs = types
                .into_iter()
                .map(|oid| {
                    (
                        oid,
                        TypeDef::Enum {
                            name: "mood".into(),
                        },
                    )
                })
                .collect();
            d.add_types(defs);
            d.add_relation_info(rel_id, info.clone());
            d.apply(m, 7).unwrap();
        }
        r => r.unwrap(),
    }
}

fn pk_info() -> RelationInfo {
    RelationInfo {
        not_null: ["id".to_string()].into(),
        primary_key: vec!["id".into()],
        unique_keys: Vec::new(),
        defaults: Default::default(),
    }
}

fn lsn(commit_lsn: u64, index: u64) -> Position {
    Position::Lsn(LsnPosition { commit_lsn, index })
}

fn run_tx(d: &mut WalDecoder, xid: u32, commit_lsn: u64, msgs: &[LogicalMessage]) {
    d.begin(xid, commit_lsn, 1_700_000_000_123_456).unwrap();
    for m in msgs {
        apply(d, m, &pk_info());
    }
    d.commit(commit_lsn).unwrap();
}

#[test]
fn positions_count_changes_and_whole_transactions_end_batches() {
    let mut d = decoder(None);
    apply(&mut d, &users(ReplicaIdentity::Default), &pk_info());
    run_tx(&mut d, 900, 0x100, &[insert("1"), insert("2")]);
    let b = d.take_batch().unwrap();
    assert_eq!(b.events.len(), 2);
    assert_eq!(b.events[0].position, lsn(0x100, 1));
    assert_eq!(b.events[1].position, lsn(0x100, 2));
    assert_eq!(b.end, lsn(0x100, 0).tx_end());
    let e = &b.events[0];
    assert_eq!(e.tx.xid, Some(900));
    assert_eq!(e.tx.commit_ts_ms, 1_700_000_000_123);
    assert_eq!(e.source_offset, 7);
    assert_eq!(e.connector, Connector::Postgres);
    let table = e.table.as_deref().unwrap();
    assert_eq!(table.qualified_name(), "public.users");
    assert_eq!(table.db, "shop");
    assert_eq!(table.key, vec![0]);
    assert!(!table.columns[0].nullable);
    assert!(table.columns[1].nullable);
    assert_eq!(
        e.after.as_deref(),
        Some(
            &[
                Value::Int(1),
                Value::Text("n".into()),
                Value::Text("b".into())
            ][..]
        )
    );
    assert!(d.take_batch().is_none());
    assert!(d.is_drained());
}

#[test]
fn resume_skips_changes_at_or_below_the_position() {
    let mut d = decoder(Some(LsnPosition {
        commit_lsn: 0x200,
        index: 2,
    }));
    apply(&mut d, &users(ReplicaIdentity::Default), &pk_info());
    // An earlier transaction is skipped whole, without a batch.
    run_tx(&mut d, 1, 0x100, &[insert("1")]);
    assert!(d.take_batch().is_none());
    run_tx(&mut d, 2, 0x200, &[insert("2"), insert("3"), insert("4")]);
    let b = d.take_batch().unwrap();
    assert_eq!(b.events.len(), 1);
    assert_eq!(b.events[0].position, lsn(0x200, 3));
    assert_eq!(b.end, lsn(0x200, 0).tx_end());
}

#[test]
fn filtered_tables_count_and_advance_without_events() {
    let filter = TableFilter::new(&["public.orders".to_string()], &[]).unwrap();
    let mut d = WalDecoder::new("shop".into(), filter, None);
    // Not selected: no catalog request.
    d.apply(&users(ReplicaIdentity::Default), 0).unwrap();
    run_tx(&mut d, 1, 0x100, &[insert("1"), insert("2")]);
    let b = d.take_batch().unwrap();
    assert!(b.events.is_empty());
    assert_eq!(b.end, lsn(0x100, 0).tx_end());
}

#[test]
fn replica_identities_give_their_before_images() {
    // DEFAULT: an update without key change has no old tuple; a delete has
    // the key, other columns null.
    let mut d = decoder(None);
    apply(&mut d, &users(ReplicaIdentity::Default), &pk_info());
    let update = LogicalMessage::Update(Update {
        xid: None,
        rel_id: USERS,
        old: None,
        new: tuple(vec![t("1"), t("m"), ColumnValue::Unchanged]),
    });
    let delete_key = LogicalMessage::Delete(Delete {
        xid: None,
        rel_id: USERS,
        old: OldTuple::Key(tuple(vec![t("1"), ColumnValue::Null, ColumnValue::Null])),
    });
    run_tx(&mut d, 1, 0x100, &[update, delete_key]);
    let b = d.take_batch().unwrap();
    assert_eq!(b.events[0].op, Op::Update);
    assert_eq!(b.events[0].before, None);
    // TOAST unchanged: marked, not null.
    assert_eq!(b.events[0].after.as_ref().unwrap()[2], Value::Unchanged);
    assert_eq!(
        b.events[1].before.as_deref(),
        Some(&[Value::Int(1), Value::Null, Value::Null][..])
    );
    assert_eq!(b.events[1].after, None);

    // FULL: the whole old row; the key is the primary key, not every column.
    let mut d = decoder(None);
    let full = relation(
        ReplicaIdentity::Full,
        vec![
            col("id", 23, true),
            col("name", 25, true),
            col("big", 25, true),
        ],
    );
    apply(&mut d, &full, &pk_info());
    let update = LogicalMessage::Update(Update {
        xid: None,
        rel_id: USERS,
        old: Some(OldTuple::Full(tuple(vec![t("1"), t("old"), t("x")]))),
        new: tuple(vec![t("1"), t("new"), t("x")]),
    });
    run_tx(&mut d, 1, 0x100, &[update]);
    let b = d.take_batch().unwrap();
    let e = &b.events[0];
    assert_eq!(
        e.before.as_deref(),
        Some(
            &[
                Value::Int(1),
                Value::Text("old".into()),
                Value::Text("x".into())
            ][..]
        )
    );
    assert_eq!(e.table.as_ref().unwrap().key, vec![0]);

    // FULL without a primary key: every column identifies the row.
    let mut d = decoder(None);
    apply(&mut d, &full, &RelationInfo::default());
    run_tx(&mut d, 1, 0x100, &[insert("1")]);
    assert_eq!(
        d.take_batch().unwrap().events[0]
            .table
            .as_ref()
            .unwrap()
            .key,
        vec![0, 1, 2]
    );

    // USING INDEX: the index columns, as flagged.
    let mut d = decoder(None);
    let by_index = relation(
        ReplicaIdentity::Index,
        vec![
            col("id", 23, false),
            col("name", 25, true),
            col("big", 25, false),
        ],
    );
    apply(&mut d, &by_index, &pk_info());
    let delete = LogicalMessage::Delete(Delete {
        xid: None,
        rel_id: USERS,
        old: OldTuple::Key(tuple(vec![ColumnValue::Null, t("n"), ColumnValue::Null])),
    });
    run_tx(&mut d, 1, 0x100, &[delete]);
    let e = &d.take_batch().unwrap().events[0];
    assert_eq!(e.table.as_ref().unwrap().key, vec![1]);
    assert_eq!(
        e.before.as_deref(),
        Some(&[Value::Null, Value::Text("n".into()), Value::Null][..])
    );

    // NOTHING: no key flagged; the primary key identifies rows.
    let mut d = decoder(None);
    let nothing = relation(
        ReplicaIdentity::Nothing,
        vec![
            col("id", 23, false),
            col("name", 25, false),
            col("big", 25, false),
        ],
    );
    apply(&mut d, &nothing, &RelationInfo::default());
    run_tx(&mut d, 1, 0x100, &[insert("1")]);
    let e = &d.take_batch().unwrap().events[0];
    assert!(e.table.as_ref().unwrap().key.is_empty());
    assert_eq!(e.before, None);
}

#[test]
fn truncate_gives_one_event_per_table() {
    let mut d = decoder(None);
    apply(&mut d, &users(ReplicaIdentity::Default), &pk_info());
    let truncate = LogicalMessage::Truncate(Truncate {
        xid: None,
        options: 0,
        rel_ids: vec![USERS, USERS],
    });
    run_tx(&mut d, 1, 0x100, &[truncate]);
    let b = d.take_batch().unwrap();
    assert_eq!(b.events.len(), 2);
    assert!(b.events.iter().all(|e| e.op == Op::Truncate));
    assert_eq!(b.events[1].position, lsn(0x100, 2));
}

#[test]
fn schema_changes_take_effect_from_the_next_relation_message() {
    let mut d = decoder(None);
    apply(&mut d, &users(ReplicaIdentity::Default), &pk_info());
    run_tx(&mut d, 1, 0x100, &[insert("1")]);
    let v1 = d.take_batch().unwrap().events[0].table.clone().unwrap();
    // A resend of the same description keeps the schema (no catalog trip).
    d.apply(&users(ReplicaIdentity::Default), 0).unwrap();
    // ALTER TABLE ADD COLUMN age int4 (and name becomes varchar(20)).
    let mut cols = vec![col("id", 23, true), col("name", 1043, false)];
    cols[1].typmod = 24;
    cols.push(col("big", 25, false));
    cols.push(col("age", 23, false));
    apply(
        &mut d,
        &relation(ReplicaIdentity::Default, cols),
        &pk_info(),
    );
    let ins = LogicalMessage::Insert(Insert {
        xid: None,
        rel_id: USERS,
        new: tuple(vec![t("2"), t("n"), t("b"), t("40")]),
    });
    run_tx(&mut d, 2, 0x200, &[ins]);
    let e = d.take_batch().unwrap().events.remove(0);
    let v2 = e.table.unwrap();
    assert_ne!(v1.version, v2.version);
    assert_eq!(v2.columns[1].type_name, "varchar(20)");
    assert_eq!(v2.columns[3].name, "age");
    assert_eq!(e.after.unwrap()[3], Value::Int(40));
    // A row whose width disagrees with the description is an error, not a panic.
    let mut d2 = decoder(None);
    apply(&mut d2, &users(ReplicaIdentity::Default), &pk_info());
    d2.begin(1, 0x300, 0).unwrap();
    let short = LogicalMessage::Insert(Insert {
        xid: None,
        rel_id: USERS,
        new: tuple(vec![t("1")]),
    });
    assert!(matches!(d2.apply(&short, 0), Err(StreamError::Definite(_))));
}

#[test]
fn user_types_are_requested_from_the_catalog_once() {
    let mut d = decoder(None);
    let rel = relation(
        ReplicaIdentity::Default,
        vec![col("id", 23, true), col("mood", MOOD, false)],
    );
    match d.apply(&rel, 0) {
        Err(StreamError::NeedCatalog { rel_id, types }) => {
            assert_eq!(rel_id, USERS);
            assert_eq!(types, vec![MOOD]);
        }
        other => panic!("{other:?}"),
    }
    apply(&mut d, &rel, &pk_info());
    let ins = LogicalMessage::Insert(Insert {
        xid: None,
        rel_id: USERS,
        new: tuple(vec![t("1"), t("happy")]),
    });
    run_tx(&mut d, 1, 0x100, &[ins]);
    let e = d.take_batch().unwrap().events.remove(0);
    assert_eq!(e.after.unwrap()[1], Value::Enum("happy".into()));
    // A Type message invalidates the type: the next new description asks again.
    d.apply(
        &LogicalMessage::Type(Type {
            xid: None,
            oid: MOOD,
            namespace: "public".into(),
            name: "mood".into(),
        }),
        0,
    )
    .unwrap();
    assert!(!d.knows_type(MOOD));
}

#[test]
fn protocol_violations_are_errors() {
    let mut d = decoder(None);
    assert!(d.apply(&insert("1"), 0).is_err(), "no relation yet");
    apply(&mut d, &users(ReplicaIdentity::Default), &pk_info());
    assert!(d.apply(&insert("1"), 0).is_err(), "outside a transaction");
    assert!(d.commit(0x100).is_err());
    d.begin(1, 0x100, 0).unwrap();
    assert!(d.begin(2, 0x200, 0).is_err());
    assert!(d.commit(0x200).is_err(), "commit LSN must match Begin's");
    let bad = LogicalMessage::Insert(Insert {
        xid: None,
        rel_id: USERS,
        new: tuple(vec![t("x"), t("n"), t("b")]),
    });
    let mut d = decoder(None);
    apply(&mut d, &users(ReplicaIdentity::Default), &pk_info());
    d.begin(1, 0x100, 0).unwrap();
    let e = d.apply(&bad, 0).unwrap_err().to_string();
    assert!(e.contains("public.users") && e.contains("id"), "{e}");
}

#[test]
fn type_names_show_their_modifiers() {
    let ty = |oid, typmod| types::builtin(oid, typmod).unwrap();
    assert_eq!(type_display(&ty(1700, -1)), "numeric");
    assert_eq!(type_display(&ty(1700, (38 << 16 | 9) + 4)), "numeric(38,9)");
    assert_eq!(type_display(&ty(1042, 14)), "bpchar(10)");
    assert_eq!(type_display(&ty(1114, 3)), "timestamp(3)");
    assert_eq!(type_display(&ty(1560, 10)), "bit(10)");
    assert_eq!(type_display(&ty(1007, -1)), "int4[]");
    assert_eq!(type_display(&ty(1015, 24)), "varchar(20)[]");
}
