use std::collections::HashSet;
use std::sync::Arc;

use super::*;
use crate::event::{BinlogPosition, ColumnDef, Connector, LsnPosition, TxMeta};
use crate::source::snapshot::{EngineTable, Job, SnapTable};

fn schema(key: Vec<usize>) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        merged: None,
        db: "d".into(),
        schema: None,
        name: "t".into(),
        columns: vec![
            ColumnDef {
                name: "id".into(),
                type_name: "int".into(),
                nullable: false,
            },
            ColumnDef {
                name: "v".into(),
                type_name: "int".into(),
                nullable: true,
            },
        ],
        key,
        uniques: Vec::new(),
        before_complete: true,
        defaults: Vec::new(),
        version: 1,
    })
}

fn bin(pos: u64) -> Position {
    Position::Binlog(BinlogPosition::start_of("bin.000001", pos))
}

fn lsn(commit: u64, index: u64) -> Position {
    Position::Lsn(LsnPosition {
        commit_lsn: commit,
        index,
    })
}

fn chunk(id: u64, at: Position, visibility: Visibility, ids: &[i64], key: Vec<usize>) -> Chunk {
    let s = schema(key);
    Chunk {
        id,
        job: Job {
            table: Arc::new(SnapTable {
                name: "d.t".into(),
                schema: s.clone(),
                chunk_key: vec![0],
                estimated_rows: 0,
                engine: EngineTable::Test,
            }),
            index: 0,
            lo: None,
            hi: None,
            last: true,
            incremental: false,
        },
        schema: s,
        at,
        visibility,
        rows: ids
            .iter()
            .map(|&i| vec![Value::Int(i), Value::Int(0)])
            .collect(),
        read_at_ms: 0,
        connector: Connector::Mariadb,
        spoiled: false,
        superseded: 0,
        permit: None,
    }
}

/// A change of row `id` at `pos` by transaction `xid`.
fn change(pos: Position, op: Op, id: i64, xid: Option<u64>, key: Vec<usize>) -> ChangeEvent {
    let row = Some(vec![Value::Int(id), Value::Int(1)]);
    ChangeEvent {
        op,
        position: pos,
        tx: Arc::new(TxMeta {
            xid,
            ..TxMeta::default()
        }),
        table: Some(schema(key)),
        before: if op == Op::Create { None } else { row.clone() },
        after: if op == Op::Delete { None } else { row },
        ddl: None,
        source_offset: 0,
        tx_order: 1,
        table_order: 1,
        connector: Connector::Mariadb,
        copying: false,
    }
}

fn binlog_event(tx: u64, row: u32) -> Position {
    Position::Binlog(BinlogPosition {
        file: "bin.000001".into(),
        tx_pos: tx,
        event_pos: tx + 10,
        row,
    })
}

fn batch(events: Vec<ChangeEvent>) -> Batch {
    let end = events.last().unwrap().position.tx_end();
    Batch { events, end }
}

#[test]
fn a_chunk_goes_out_just_before_the_first_transaction_at_its_point() {
    let mut r = Reconciler::default();
    r.add(chunk(1, bin(300), Visibility::Exact, &[1, 2], vec![0]))
        .unwrap();
    // One batch with a transaction before the point and one at it.
    let mut held = Some(Batch {
        events: vec![
            change(binlog_event(200, 0), Op::Update, 1, None, vec![0]),
            change(binlog_event(300, 0), Op::Update, 2, None, vec![0]),
        ],
        end: binlog_event(300, 0).tx_end(),
    });
    let Step::Pass(first) = r.step(&mut held, None) else {
        panic!("the part before the point passes")
    };
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.end, binlog_event(200, 0).tx_end());
    let Step::Emit(c) = r.step(&mut held, None) else {
        panic!("then the chunk")
    };
    assert_eq!(c.rows.len(), 2);
    let Step::Pass(rest) = r.step(&mut held, None) else {
        panic!("then the rest")
    };
    assert_eq!(rest.events.len(), 1);
    assert!(held.is_none());
    assert!(matches!(r.step(&mut held, None), Step::Wait));
}

#[test]
fn a_quiet_stream_places_the_chunk_once_read_up_to_its_point() {
    let mut r = Reconciler::default();
    r.add(chunk(1, bin(300), Visibility::Exact, &[1], vec![0]))
        .unwrap();
    let mut held = None;
    assert!(matches!(r.step(&mut held, Some(&bin(200))), Step::Wait));
    assert!(matches!(r.step(&mut held, Some(&bin(300))), Step::Emit(_)));
}

#[test]
fn a_chunk_in_flight_holds_the_stream_from_its_head() {
    let mut r = Reconciler::default();
    r.in_flight.lock().unwrap().insert(7, bin(250));
    let mut held = Some(batch(vec![change(
        binlog_event(200, 0),
        Op::Create,
        9,
        None,
        vec![0],
    )]));
    assert!(
        matches!(r.step(&mut held, None), Step::Pass(_)),
        "before the head"
    );
    let mut held = Some(batch(vec![change(
        binlog_event(260, 0),
        Op::Create,
        9,
        None,
        vec![0],
    )]));
    assert!(matches!(r.step(&mut held, None), Step::Wait));
    assert!(held.is_some(), "kept");
    // A ready chunk at 300 can't go out while one in flight might land
    // before it; once that one is read (at 280), both go in order.
    r.add(chunk(8, bin(300), Visibility::Exact, &[1], vec![0]))
        .unwrap();
    assert!(matches!(r.step(&mut held, Some(&bin(400))), Step::Wait));
    r.add(chunk(7, bin(280), Visibility::Exact, &[2], vec![0]))
        .unwrap();
    let Step::Pass(b) = r.step(&mut held, None) else {
        panic!("the batch at 260 is before both points")
    };
    assert_eq!(b.events.len(), 1);
    let Step::Emit(a) = r.step(&mut held, Some(&bin(400))) else {
        panic!()
    };
    let Step::Emit(b) = r.step(&mut held, Some(&bin(400))) else {
        panic!()
    };
    assert_eq!((a.id, b.id), (7, 8));
}

fn pg(xmin: u64, xmax: u64, xip: &[u64]) -> Visibility {
    Visibility::Pg(PgSnapshot {
        xmin,
        xmax,
        xip: xip.iter().copied().collect::<HashSet<_>>(),
    })
}

#[test]
fn changes_the_snapshot_does_not_see_drop_the_rows_they_touched() {
    let mut r = Reconciler::default();
    // Snapshot: xid 100 was running, 99 committed.
    r.add(chunk(
        1,
        lsn(1000, 0),
        pg(99, 101, &[100]),
        &[1, 2, 3],
        vec![0],
    ))
    .unwrap();
    // Both commit before the chunk's point: 99 (seen) and 100 (not seen).
    let mut held = Some(batch(vec![change(
        lsn(900, 1),
        Op::Update,
        1,
        Some(99),
        vec![0],
    )]));
    assert!(matches!(r.step(&mut held, None), Step::Pass(_)));
    let mut held = Some(batch(vec![change(
        lsn(950, 1),
        Op::Delete,
        2,
        Some(100),
        vec![0],
    )]));
    assert!(matches!(r.step(&mut held, None), Step::Pass(_)));
    let Step::Emit(c) = r.step(&mut None, Some(&lsn(1000, 0))) else {
        panic!()
    };
    let ids: Vec<&Value> = c.rows.iter().map(|r| &r[0]).collect();
    assert_eq!(
        ids,
        [&Value::Int(1), &Value::Int(3)],
        "row 2's newer state came from the stream"
    );
}

#[test]
fn a_passed_change_the_snapshot_does_not_see_makes_the_chunk_be_read_again() {
    let mut r = Reconciler::default();
    let mut held = Some(batch(vec![change(
        lsn(900, 1),
        Op::Update,
        1,
        Some(100),
        vec![0],
    )]));
    assert!(matches!(r.step(&mut held, None), Step::Pass(_)));
    // A snapshot taken while 100 was still running (its commit already in
    // the WAL and sent): the chunk can't be placed.
    assert!(
        r.add(chunk(1, lsn(1000, 0), pg(100, 101, &[100]), &[1], vec![0]))
            .is_err()
    );
    assert!(
        r.add(chunk(2, lsn(1000, 0), pg(101, 101, &[]), &[1], vec![0]))
            .is_ok()
    );
}

#[test]
fn a_table_without_key_touched_unseen_is_read_again() {
    let mut r = Reconciler::default();
    r.add(chunk(1, lsn(1000, 0), pg(99, 101, &[100]), &[1], vec![]))
        .unwrap();
    let mut held = Some(batch(vec![change(
        lsn(950, 1),
        Op::Create,
        5,
        Some(100),
        vec![],
    )]));
    assert!(matches!(r.step(&mut held, None), Step::Pass(_)));
    assert!(matches!(
        r.step(&mut None, Some(&lsn(1000, 0))),
        Step::Reread(_)
    ));
}

#[test]
fn truncate_unseen_empties_the_chunk() {
    let mut r = Reconciler::default();
    r.add(chunk(
        1,
        lsn(1000, 0),
        pg(99, 101, &[100]),
        &[1, 2],
        vec![0],
    ))
    .unwrap();
    let mut t = change(lsn(950, 1), Op::Truncate, 0, Some(100), vec![0]);
    t.before = None;
    t.after = None;
    let mut held = Some(batch(vec![t]));
    assert!(matches!(r.step(&mut held, None), Step::Pass(_)));
    let Step::Emit(c) = r.step(&mut None, Some(&lsn(1000, 0))) else {
        panic!()
    };
    assert!(c.rows.is_empty());
}

#[test]
fn an_unseen_change_with_an_unchanged_toast_value_makes_the_chunk_be_read_again() {
    let mut r = Reconciler::default();
    r.add(chunk(
        1,
        lsn(1000, 0),
        pg(99, 101, &[100]),
        &[1, 2],
        vec![0],
    ))
    .unwrap();
    let mut ev = change(lsn(950, 1), Op::Update, 2, Some(100), vec![0]);
    ev.after = Some(vec![Value::Int(2), Value::Unchanged]);
    let mut held = Some(batch(vec![ev]));
    assert!(matches!(r.step(&mut held, None), Step::Pass(_)));
    assert!(matches!(
        r.step(&mut None, Some(&lsn(1000, 0))),
        Step::Reread(_)
    ));
}

#[test]
fn a_bounded_snapshot_drops_the_rows_changes_between_its_bounds_touched() {
    let mut r = Reconciler::default();
    // Seen: everything before 200; unseen: everything from 300; between:
    // either.
    r.add(chunk(
        1,
        bin(300),
        Visibility::From(bin(200)),
        &[1, 2, 3, 4],
        vec![0],
    ))
    .unwrap();
    let mut held = Some(Batch {
        events: vec![
            change(binlog_event(150, 0), Op::Update, 1, None, vec![0]),
            change(binlog_event(200, 0), Op::Delete, 2, None, vec![0]),
            change(binlog_event(250, 0), Op::Update, 3, None, vec![0]),
            change(binlog_event(300, 0), Op::Update, 4, None, vec![0]),
        ],
        end: binlog_event(300, 0).tx_end(),
    });
    let Step::Pass(b) = r.step(&mut held, None) else {
        panic!("the changes before the chunk's point pass")
    };
    assert_eq!(b.events.len(), 3);
    let Step::Emit(c) = r.step(&mut held, None) else {
        panic!("then the chunk")
    };
    let ids: Vec<&Value> = c.rows.iter().map(|r| &r[0]).collect();
    assert_eq!(
        ids,
        [&Value::Int(1), &Value::Int(4)],
        "rows 2 and 3 come from the stream; 1 changed before the snapshot, 4 after"
    );
}

#[test]
fn a_change_past_the_lower_bound_that_went_out_before_the_chunk_was_read_makes_it_be_read_again() {
    let mut r = Reconciler::default();
    let mut held = Some(batch(vec![change(
        binlog_event(250, 0),
        Op::Update,
        1,
        None,
        vec![0],
    )]));
    assert!(matches!(r.step(&mut held, None), Step::Pass(_)));
    for from in [200, 250] {
        assert!(
            r.add(chunk(
                1,
                bin(400),
                Visibility::From(bin(from)),
                &[1],
                vec![0]
            ))
            .is_err(),
            "the change at 250 went out unchecked (bound {from})"
        );
    }
    assert!(
        r.add(chunk(
            2,
            bin(400),
            Visibility::From(bin(260)),
            &[1],
            vec![0]
        ))
        .is_ok()
    );
}

#[test]
fn a_chunk_whose_lower_bound_is_not_known_yet_holds_the_whole_stream() {
    let mut r = Reconciler::default();
    let unknown = Position::Binlog(BinlogPosition::start_of("", 0));
    r.in_flight.lock().unwrap().insert(3, unknown);
    let mut held = Some(batch(vec![change(
        binlog_event(4, 0),
        Op::Create,
        1,
        None,
        vec![0],
    )]));
    assert!(matches!(r.step(&mut held, None), Step::Wait));
    r.in_flight.lock().unwrap().insert(3, bin(100));
    assert!(matches!(r.step(&mut held, None), Step::Pass(_)));
}
