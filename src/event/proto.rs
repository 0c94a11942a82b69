//! The protobuf form of the canonical event (`proto/tidemark/v1`).

#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/tidemark.v1.rs"));
}

use prost::Message;

use super::value::{InfiniteKind, Value};
use super::{ChangeEvent, Op, Position};

/// Encodes an event as a `tidemark.v1.ChangeEvent` message.
pub fn encode(ev: &ChangeEvent, now_ms: i64, out: &mut Vec<u8>) {
    let msg = to_proto(ev, now_ms);
    // Vec<u8> grows as needed: encoding cannot run out of room.
    let _ = msg.encode(out);
}

pub fn to_proto(ev: &ChangeEvent, now_ms: i64) -> pb::ChangeEvent {
    let table = ev.table.as_deref();
    let row = |values: &Option<Vec<Value>>| {
        values.as_ref().map(|values| pb::Row {
            columns: table
                .map(|t| {
                    t.columns
                        .iter()
                        .zip(values)
                        .map(|(c, v)| pb::Column {
                            name: c.name.clone(),
                            value: Some(value(v)),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    };
    let (file, pos, lsn) = match (&ev.position, ev.position.stream_position()) {
        (Position::Snapshot(_), Position::Binlog(b)) => (b.file.to_string(), b.tx_pos, 0),
        (Position::Snapshot(_), Position::Lsn(l)) => (String::new(), 0, l.commit_lsn),
        (_, Position::Binlog(b)) => (b.file.to_string(), b.tx_pos, 0),
        (_, Position::Lsn(_)) => (String::new(), 0, ev.source_offset),
        (_, Position::Snapshot(_)) => (String::new(), 0, 0),
    };
    pb::ChangeEvent {
        op: match ev.op {
            Op::Create => pb::Op::Create,
            Op::Update => pb::Op::Update,
            Op::Delete => pb::Op::Delete,
            Op::Read => pb::Op::Read,
            Op::Truncate => pb::Op::Truncate,
            Op::Ddl => pb::Op::Ddl,
        } as i32,
        before: row(&ev.before),
        after: row(&ev.after),
        source: Some(pb::Source {
            connector: ev.connector.name().into(),
            task: String::new(),
            db: ev.db().unwrap_or_default().into(),
            schema: table.and_then(|t| t.schema.clone()).unwrap_or_default(),
            table: table.map(|t| t.name.clone()).unwrap_or_default(),
            server_id: ev.tx.server_id,
            gtid: ev.tx.gtid.clone().unwrap_or_default(),
            file,
            pos,
            ts_ms: ev.tx.commit_ts_ms,
            txid: ev.tx.xid.map(|x| x.to_string()).unwrap_or_default(),
            lsn,
            row: ev.source_offset as u32,
            snapshot: ev.op == Op::Read,
        }),
        position: Some(position(&ev.position)),
        ts_ms: now_ms,
        key_columns: table
            .map(|t| {
                t.key
                    .iter()
                    .filter_map(|&k| t.columns.get(k).map(|c| c.name.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        schema_version: table.map(|t| t.version).unwrap_or_default(),
        ddl: ev.ddl.as_deref().map(|d| pb::Ddl {
            statement: d.statement.clone(),
            kind: d.kind.name().into(),
        }),
        transaction: Some(pb::Transaction {
            id: super::json::transaction_id(ev),
            total_order: ev.tx_order,
            data_collection_order: ev.table_order,
        }),
    }
}

pub fn position(p: &Position) -> pb::Position {
    pb::Position {
        kind: Some(match p {
            Position::Binlog(b) => pb::position::Kind::Binlog(pb::BinlogPosition {
                file: b.file.to_string(),
                tx_pos: b.tx_pos,
                event_pos: b.event_pos,
                row: b.row,
            }),
            Position::Lsn(l) => pb::position::Kind::Lsn(pb::LsnPosition {
                commit_lsn: l.commit_lsn,
                index: l.index,
            }),
            Position::Snapshot(s) => pb::position::Kind::Snapshot(Box::new(pb::SnapshotPosition {
                at: Some(Box::new(position(&s.at))),
                seq: s.seq,
                row: s.row,
            })),
        }),
    }
}

fn date(d: &super::value::Date) -> pb::Date {
    pb::Date {
        year: d.year,
        month: u32::from(d.month),
        day: u32::from(d.day),
        infinity: pb::Infinity::Finite as i32,
    }
}

pub fn value(v: &Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Value::Null => Kind::Null(pb::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::Bool(*b),
        Value::Int(i) => Kind::Int(*i),
        Value::UInt(u) => Kind::Uint(*u),
        Value::Float(f) => Kind::Float(*f),
        Value::Double(d) => Kind::Double(*d),
        Value::Decimal(t) => Kind::Decimal(t.clone()),
        Value::Text(t) => Kind::Text(t.clone()),
        Value::Bytes(b) => Kind::Bytes(b.clone()),
        Value::Bits { bytes, len } => Kind::Bits(pb::Bits {
            value: bytes.clone(),
            length: *len,
        }),
        Value::Enum(t) => Kind::Enum(t.clone()),
        Value::Set(t) => Kind::Set(t.clone()),
        Value::Date(d) => Kind::Date(date(d)),
        Value::Time(t) => Kind::Time(pb::Time {
            micros: t.micros,
            precision: u32::from(t.precision),
        }),
        Value::TimeTz {
            micros,
            offset_secs,
        } => Kind::Timetz(pb::TimeTz {
            micros: *micros,
            offset_secs: *offset_secs,
        }),
        Value::DateTime(dt) => Kind::Datetime(pb::DateTime {
            date: Some(date(&dt.date)),
            micros_of_day: dt.micros_of_day,
            precision: u32::from(dt.precision),
        }),
        Value::Timestamp {
            epoch_micros,
            precision,
        } => Kind::Timestamp(pb::Timestamp {
            epoch_micros: *epoch_micros,
            precision: u32::from(*precision),
            infinity: pb::Infinity::Finite as i32,
        }),
        Value::Infinite { kind, negative } => {
            let inf = if *negative {
                pb::Infinity::Negative
            } else {
                pb::Infinity::Positive
            } as i32;
            match kind {
                InfiniteKind::Date => Kind::Date(pb::Date {
                    infinity: inf,
                    ..Default::default()
                }),
                InfiniteKind::Timestamp => Kind::Datetime(pb::DateTime {
                    date: Some(pb::Date {
                        infinity: inf,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                InfiniteKind::TimestampTz => Kind::Timestamp(pb::Timestamp {
                    infinity: inf,
                    ..Default::default()
                }),
            }
        }
        Value::Year(y) => Kind::Year(u32::from(*y)),
        Value::Json(t) => Kind::Json(t.clone()),
        Value::Geometry { srid, wkb } => Kind::Geometry(pb::Geometry {
            wkb: wkb.clone(),
            srid: *srid,
        }),
        Value::Interval {
            months,
            days,
            micros,
        } => Kind::Interval(pb::Interval {
            months: *months,
            days: *days,
            micros: *micros,
        }),
        Value::Uuid(u) => Kind::Uuid(super::json::format_uuid(u)),
        Value::Network(t) => Kind::Network(t.clone()),
        Value::Array(a) => Kind::Array(pb::Array {
            dims: a.dims.clone(),
            elements: a.elements.iter().map(value).collect(),
        }),
        Value::Composite(t) => Kind::Composite(t.clone()),
        Value::Other(t) => Kind::Other(t.clone()),
        Value::Unchanged => Kind::Unchanged(pb::Unchanged {}),
    };
    pb::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BinlogPosition, ColumnDef, Connector, TableSchema, TxMeta};
    use std::sync::Arc;

    #[test]
    fn encodes_and_decodes_with_prost() {
        let table = Arc::new(TableSchema {
            merged: None,
            db: "shop".into(),
            schema: None,
            name: "orders".into(),
            columns: vec![ColumnDef {
                name: "id".into(),
                type_name: "bigint unsigned".into(),
                nullable: false,
            }],
            key: vec![0],
            uniques: Vec::new(),
            before_complete: true,
            defaults: Vec::new(),
            version: 7,
        });
        let ev = ChangeEvent {
            op: Op::Create,
            position: Position::Binlog(BinlogPosition {
                file: "bin.000001".into(),
                tx_pos: 4,
                event_pos: 100,
                row: 2,
            }),
            tx: Arc::new(TxMeta {
                gtid: Some("0-1-5".into()),
                ..Default::default()
            }),
            table: Some(table),
            before: None,
            after: Some(vec![Value::UInt(u64::MAX)]),
            ddl: None,
            source_offset: 2,
            tx_order: 1,
            table_order: 1,
            connector: Connector::Mariadb,
            copying: false,
        };
        let mut buf = Vec::new();
        encode(&ev, 1, &mut buf);
        let back = pb::ChangeEvent::decode(buf.as_slice()).unwrap();
        assert_eq!(back.op, pb::Op::Create as i32);
        let after = back.after.unwrap();
        assert_eq!(after.columns[0].name, "id");
        assert_eq!(
            after.columns[0].value.as_ref().unwrap().kind,
            Some(pb::value::Kind::Uint(u64::MAX))
        );
        assert_eq!(back.key_columns, vec!["id".to_string()]);
        assert_eq!(back.source.unwrap().gtid, "0-1-5");
    }
}
