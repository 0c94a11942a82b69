use super::*;
use crate::source::mysql::charset::Collations;
use crate::source::mysql::events::TableMap;
use crate::source::mysql::jsonb::{self, Json};
use crate::source::mysql::reader::Reader;
use crate::source::mysql::rows::decode_value;
use crate::source::mysql::rows::tests::dec_bytes;
use crate::source::mysql::schema::build;

fn ci(name: &str, data_type: &str, column_type: &str) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        data_type: data_type.into(),
        column_type: column_type.into(),
        charset: None,
        nullable: true,
        numeric_precision: None,
        numeric_scale: None,
        datetime_precision: None,
        octet_length: None,
    }
}

fn text_col(name: &str, data_type: &str, column_type: &str, cs: &str, octets: u64) -> ColumnInfo {
    ColumnInfo {
        charset: Some(cs.into()),
        octet_length: Some(octets),
        ..ci(name, data_type, column_type)
    }
}

fn lenenc(n: usize, out: &mut Vec<u8>) {
    if n < 251 {
        out.push(n as u8);
    } else {
        out.push(0xfc);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    }
}

fn tlv(ty: u8, v: &[u8]) -> Vec<u8> {
    let mut out = vec![ty];
    lenenc(v.len(), &mut out);
    out.extend_from_slice(v);
    out
}

fn strings(list: &[Vec<String>]) -> Vec<u8> {
    let mut v = Vec::new();
    for labels in list {
        lenenc(labels.len(), &mut v);
        for l in labels {
            lenenc(l.len(), &mut v);
            v.extend_from_slice(l.as_bytes());
        }
    }
    v
}

fn labels(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn quoted(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("'{l}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One table with every type: information_schema rows and the table map
/// a MySQL 8 server with binlog_row_metadata=FULL writes for it.
#[test]
fn schema_and_kinds_match_full_metadata_table_map() {
    let big_enum = numbered("e", 300);
    let set20 = numbered("s", 20);
    let set40 = numbered("t", 40);
    // (info, binlog type, binlog meta, unsigned flag if numeric, collation if character)
    // (column, binlog type, metadata, unsigned, collation)
    type Col = (ColumnInfo, u8, Vec<u8>, Option<bool>, Option<u64>);
    let cols: Vec<Col> = vec![
        (
            ColumnInfo {
                nullable: false,
                numeric_precision: Some(20),
                numeric_scale: Some(0),
                ..ci("id", "bigint", "bigint unsigned")
            },
            8,
            vec![],
            Some(true),
            None,
        ),
        (
            ci("ti", "tinyint", "tinyint(4)"),
            1,
            vec![],
            Some(false),
            None,
        ),
        (
            ci("si", "smallint", "smallint(5) unsigned zerofill"),
            2,
            vec![],
            Some(true),
            None,
        ),
        (
            ci("mi", "mediumint", "mediumint"),
            9,
            vec![],
            Some(false),
            None,
        ),
        (ci("i", "int", "int(11)"), 3, vec![], Some(false), None),
        (ci("f", "float", "float"), 4, vec![4], Some(false), None),
        (
            ci("d", "double", "double unsigned"),
            5,
            vec![8],
            Some(true),
            None,
        ),
        (
            ColumnInfo {
                numeric_precision: Some(10),
                numeric_scale: Some(2),
                ..ci("price", "decimal", "decimal(10,2)")
            },
            246,
            vec![10, 2],
            Some(false),
            None,
        ),
        (
            ColumnInfo {
                numeric_precision: Some(1),
                ..ci("flag", "bit", "bit(1)")
            },
            16,
            vec![1, 0],
            None,
            None,
        ),
        (ci("b10", "bit", "bit(10)"), 16, vec![2, 1], None, None),
        (
            ci("size", "enum", "enum('small','medium','large')"),
            254,
            vec![247, 1],
            None,
            None,
        ),
        (
            ci("tags", "set", "set('a','b','c')"),
            254,
            vec![248, 1],
            None,
            None,
        ),
        (
            ci("e300", "enum", &format!("enum({})", quoted(&big_enum))),
            254,
            vec![247, 2],
            None,
            None,
        ),
        (
            ci("s20", "set", &format!("set({})", quoted(&set20))),
            254,
            vec![248, 3],
            None,
            None,
        ),
        (
            ci("s40", "set", &format!("set({})", quoted(&set40))),
            254,
            vec![248, 8],
            None,
            None,
        ),
        (
            text_col("c", "char", "char(4)", "latin1", 4),
            254,
            vec![0xfe, 4],
            None,
            Some(8),
        ),
        // CHAR(100) utf8mb4: 400 bytes, the high bits in the type byte.
        (
            text_col("cu", "char", "char(100)", "utf8mb4", 400),
            254,
            vec![0xee, 0x90],
            None,
            Some(255),
        ),
        (
            ColumnInfo {
                octet_length: Some(16),
                ..ci("uuid", "binary", "binary(16)")
            },
            254,
            vec![0xfe, 16],
            None,
            Some(63),
        ),
        (
            text_col("v", "varchar", "varchar(300)", "utf8mb4", 1200),
            15,
            1200u16.to_le_bytes().to_vec(),
            None,
            Some(255),
        ),
        (
            text_col("vs", "varchar", "varchar(20)", "utf8mb3", 60),
            15,
            vec![60, 0],
            None,
            Some(33),
        ),
        (
            ColumnInfo {
                charset: Some("binary".into()),
                octet_length: Some(8),
                ..ci("vb", "varbinary", "varbinary(8)")
            },
            15,
            vec![8, 0],
            None,
            Some(63),
        ),
        (
            text_col("tt", "tinytext", "tinytext", "utf8mb4", 255),
            252,
            vec![1],
            None,
            Some(255),
        ),
        (
            text_col("t", "text", "text", "utf8mb4", 65535),
            252,
            vec![2],
            None,
            Some(255),
        ),
        (
            text_col("mt", "mediumtext", "mediumtext", "latin1", 16777215),
            252,
            vec![3],
            None,
            Some(8),
        ),
        // MariaDB's JSON: a LONGTEXT.
        (
            text_col("mj", "longtext", "longtext", "utf8mb4", 4294967295),
            252,
            vec![4],
            None,
            Some(46),
        ),
        (
            ci("tb", "tinyblob", "tinyblob"),
            252,
            vec![1],
            None,
            Some(63),
        ),
        (ci("bl", "blob", "blob"), 252, vec![2], None, Some(63)),
        (
            ci("mb", "mediumblob", "mediumblob"),
            252,
            vec![3],
            None,
            Some(63),
        ),
        (
            ci("lb", "longblob", "longblob"),
            252,
            vec![4],
            None,
            Some(63),
        ),
        (ci("doc", "json", "json"), 245, vec![4], None, None),
        (
            ci("g", "geometry", "geometry"),
            255,
            vec![4],
            None,
            Some(63),
        ),
        (ci("p", "point", "point"), 255, vec![4], None, Some(63)),
        (ci("day", "date", "date"), 10, vec![], None, None),
        (
            ColumnInfo {
                datetime_precision: Some(3),
                ..ci("tm", "time", "time(3)")
            },
            19,
            vec![3],
            None,
            None,
        ),
        (
            ColumnInfo {
                datetime_precision: Some(6),
                ..ci("at", "datetime", "datetime(6)")
            },
            18,
            vec![6],
            None,
            None,
        ),
        (
            ColumnInfo {
                nullable: false,
                datetime_precision: Some(0),
                ..ci("ts", "timestamp", "timestamp")
            },
            17,
            vec![0],
            None,
            None,
        ),
        (ci("y", "year", "year(4)"), 13, vec![], Some(true), None),
    ];

    let infos: Vec<ColumnInfo> = cols.iter().map(|c| c.0.clone()).collect();
    let unsigned: Vec<bool> = cols.iter().filter_map(|c| c.3).collect();
    let mut sign_bits = vec![0u8; unsigned.len().div_ceil(8)];
    for (i, _) in unsigned.iter().enumerate().filter(|(_, u)| **u) {
        sign_bits[i / 8] |= 0x80 >> (i % 8);
    }
    let mut charsets = Vec::new();
    for c in cols.iter().filter_map(|c| c.4) {
        lenenc(c as usize, &mut charsets);
    }
    let mut names = Vec::new();
    for c in &infos {
        lenenc(c.name.len(), &mut names);
        names.extend_from_slice(c.name.as_bytes());
    }
    let mut optional = tlv(1, &sign_bits);
    optional.extend(tlv(3, &charsets));
    optional.extend(tlv(4, &names));
    optional.extend(tlv(
        5,
        &strings(&[labels(&["a", "b", "c"]), set20.clone(), set40.clone()]),
    ));
    optional.extend(tlv(
        6,
        &strings(&[labels(&["small", "medium", "large"]), big_enum.clone()]),
    ));
    optional.extend(tlv(8, &[0]));
    let map = TableMap {
        table_id: 7,
        db: "shop".into(),
        table: "everything".into(),
        types: cols.iter().map(|c| c.1).collect(),
        meta: cols.iter().map(|c| c.2.clone()).collect(),
        nullable: infos.iter().map(|c| c.nullable).collect(),
        optional,
    };
    let streamed = build(&map, &Collations::builtin(), None).unwrap();
    let snap = table_codec("shop", "everything", &infos, vec![0]).unwrap();

    assert_eq!(snap.kinds, streamed.kinds);
    assert_eq!(*snap.schema, *streamed.schema);
    assert_eq!(snap.schema.version, streamed.schema.version);
    assert!(snap.selected);
    let type_names: Vec<&str> = snap
        .schema
        .columns
        .iter()
        .map(|c| c.type_name.as_str())
        .collect();
    assert_eq!(
        type_names,
        [
            "bigint unsigned",
            "tinyint",
            "smallint unsigned",
            "mediumint",
            "int",
            "float",
            "double",
            "decimal(10,2)",
            "bit(1)",
            "bit(10)",
            "enum",
            "set",
            "enum",
            "set",
            "set",
            "char",
            "char",
            "binary",
            "varchar",
            "varchar",
            "varbinary",
            "text",
            "text",
            "text",
            "text",
            "blob",
            "blob",
            "blob",
            "blob",
            "json",
            "geometry",
            "geometry",
            "date",
            "time(3)",
            "datetime(6)",
            "timestamp(0)",
            "year",
        ]
    );
    // Pack sizes and lengths the binlog uses, spelled out.
    assert!(matches!(&snap.kinds[12], ColumnKind::Enum { pack: 2, labels } if labels.len() == 300));
    assert!(matches!(&snap.kinds[13], ColumnKind::Set { pack: 3, .. }));
    assert!(matches!(&snap.kinds[14], ColumnKind::Set { pack: 8, .. }));
    assert_eq!(
        snap.kinds[16],
        ColumnKind::FixedString {
            len_bytes: 2,
            charset: Charset::Utf8,
            pad_to: None
        }
    );
    assert_eq!(
        snap.kinds[17],
        ColumnKind::FixedString {
            len_bytes: 1,
            charset: Charset::Binary,
            pad_to: Some(16)
        }
    );
    assert_eq!(
        snap.kinds[19],
        ColumnKind::VarString {
            len_bytes: 1,
            charset: Charset::Utf8
        }
    );
    assert_eq!(snap.schema.key, vec![0]);
    assert!(!snap.schema.columns[0].nullable);

    // A different nullability or key changes the version, as streaming's would.
    let other = table_codec("shop", "everything", &infos, vec![1]).unwrap();
    assert_ne!(other.schema.version, snap.schema.version);
}

#[test]
fn table_codec_errors_name_table_and_column() {
    let cols = [ci("id", "int", "int"), ci("ip", "inet6", "inet6")];
    let e = table_codec("d", "t", &cols, vec![0]).unwrap_err();
    assert!(e.starts_with("d.t: column ip (inet6)"), "{e}");
    let e = table_codec("d", "t", &cols[..1], vec![1]).unwrap_err();
    assert!(e.contains("index 1"), "{e}");
}

#[test]
fn column_kind_rejects_bad_metadata() {
    let bad = [
        ci("e", "enum", "enum()"),
        ci("c", "char", "char(3)"),
        ColumnInfo {
            numeric_precision: Some(70),
            numeric_scale: Some(2),
            ..ci("d", "decimal", "decimal(70,2)")
        },
        ColumnInfo {
            numeric_precision: Some(5),
            numeric_scale: Some(6),
            ..ci("d", "decimal", "decimal(5,6)")
        },
        ci("b", "bit", "bit(65)"),
        ColumnInfo {
            datetime_precision: Some(7),
            ..ci("t", "time", "time(7)")
        },
        ci("s", "set", &format!("set({})", quoted(&numbered("x", 65)))),
        ci("u", "uuid", "uuid"),
    ];
    for c in bad {
        let e = column_kind(&c).unwrap_err();
        assert!(
            e.starts_with(&format!("column {} ({})", c.name, c.column_type)),
            "{e}"
        );
    }
    // COLUMN_TYPE fills in what the numeric columns leave out.
    assert_eq!(
        column_kind(&ci("d", "decimal", "decimal(12,4) unsigned")).unwrap(),
        ColumnKind::Decimal {
            precision: 12,
            scale: 4
        }
    );
    assert_eq!(
        column_kind(&ci("t", "datetime", "datetime(3)")).unwrap(),
        ColumnKind::DateTime2 { fsp: 3 }
    );
    assert_eq!(
        column_kind(&ci("b", "bit", "bit(17)")).unwrap(),
        ColumnKind::Bit { bits: 17, bytes: 3 }
    );
    assert_eq!(
        column_kind(&ci("g", "geomcollection", "geomcollection")).unwrap(),
        ColumnKind::Geometry { len_bytes: 4 }
    );
    // A character column whose charset is missing reads as binary.
    assert_eq!(
        column_kind(&ColumnInfo {
            octet_length: Some(300),
            ..ci("v", "varbinary", "varbinary(300)")
        })
        .unwrap(),
        ColumnKind::VarString {
            len_bytes: 2,
            charset: Charset::Binary
        }
    );
}

#[test]
fn labels_and_pack_sizes() {
    assert_eq!(
        parse_labels(r"enum('a','b''c','','x,y','back\\slash','nl\n')"),
        vec!["a", "b'c", "", "x,y", "back\\slash", "nl\n"]
    );
    assert_eq!(parse_labels("set('x') "), vec!["x"]);
    assert!(parse_labels("int(11)").is_empty());
    let pack = |ty: &str, n: usize| match column_kind(&ci(
        "c",
        ty,
        &format!("{ty}({})", quoted(&numbered("l", n))),
    ))
    .unwrap()
    {
        ColumnKind::Enum { pack, labels } | ColumnKind::Set { pack, labels } => {
            assert_eq!(labels.len(), n);
            pack
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(pack("enum", 255), 1);
    assert_eq!(pack("enum", 256), 2);
    assert_eq!(pack("set", 8), 1);
    assert_eq!(pack("set", 9), 2);
    assert_eq!(pack("set", 17), 3);
    assert_eq!(pack("set", 32), 4);
    assert_eq!(pack("set", 33), 8);
    assert_eq!(pack("set", 64), 8);
}

/// Asserts that the binlog bytes decode to `want` and that the wire
/// value maps to the same.
fn same(kind: &ColumnKind, binlog: &[u8], wire: Wire, want: Value) {
    let mut r = Reader::new(binlog);
    let streamed = decode_value(kind, &mut r).unwrap();
    assert!(
        r.is_empty(),
        "{kind:?}: {} binlog bytes left",
        r.remaining()
    );
    assert_eq!(streamed, want, "binlog {kind:?}");
    assert_eq!(value(kind, wire).unwrap(), want, "snapshot {kind:?}");
}

fn prefixed(len_bytes: usize, b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u32).to_le_bytes()[..len_bytes].to_vec();
    out.extend_from_slice(b);
    out
}

#[test]
fn integers_and_floats() {
    let i = |bytes, unsigned| ColumnKind::Int { bytes, unsigned };
    same(
        &i(8, true),
        &[0xff; 8],
        Wire::UInt(u64::MAX),
        Value::UInt(u64::MAX),
    );
    same(
        &i(8, false),
        &i64::MIN.to_le_bytes(),
        Wire::Int(i64::MIN),
        Value::Int(i64::MIN),
    );
    // An unsigned column the wire gave as a signed integer.
    same(&i(1, true), &[0xff], Wire::Int(255), Value::UInt(255));
    same(&i(1, false), &[0x80], Wire::Int(-128), Value::Int(-128));
    same(
        &i(3, false),
        &[0, 0, 0x80],
        Wire::Int(-8_388_608),
        Value::Int(-8_388_608),
    );
    same(
        &i(3, true),
        &[0xff, 0xff, 0xff],
        Wire::UInt(16_777_215),
        Value::UInt(16_777_215),
    );
    same(
        &i(4, false),
        &7i32.to_le_bytes(),
        Wire::UInt(7),
        Value::Int(7),
    );
    same(
        &ColumnKind::Float,
        &1.5f32.to_le_bytes(),
        Wire::Float(1.5),
        Value::Float(1.5),
    );
    same(
        &ColumnKind::Double,
        &(-0.1f64).to_le_bytes(),
        Wire::Double(-0.1),
        Value::Double(-0.1),
    );
}

#[test]
fn decimals_match_decode_decimal() {
    for (server, p, s, want) in [
        ("12.50", 10u8, 2u8, "12.50"),
        ("-12.50", 10, 2, "-12.50"),
        ("0.00", 10, 2, "0.00"),
        ("-0.00", 10, 2, "0.00"),
        ("-0.50", 10, 2, "-0.50"),
        ("0.12", 2, 2, "0.12"),
        ("-12345", 5, 0, "-12345"),
        ("0", 5, 0, "0"),
        (
            "12345678901234567890123456789.123456789",
            38,
            9,
            "12345678901234567890123456789.123456789",
        ),
    ] {
        same(
            &ColumnKind::Decimal {
                precision: p,
                scale: s,
            },
            &dec_bytes(want, p.into(), s.into()),
            Wire::Bytes(server.into()),
            Value::Decimal(want.into()),
        );
    }
    // Forms the server doesn't send, normalised all the same.
    for (text, want) in [
        ("007.5", "7.50"),
        (".5", "0.50"),
        ("+3", "3.00"),
        ("1.500", "1.50"),
        ("-.000", "0.00"),
    ] {
        assert_eq!(
            decimal_text(text.as_bytes(), 10, 2).unwrap(),
            want,
            "{text}"
        );
    }
    for text in [
        "",
        "-",
        ".",
        "1e5",
        "1.2.3",
        "12.345",
        "123456789.00",
        "NaN",
        "1,5",
    ] {
        assert!(decimal_text(text.as_bytes(), 10, 2).is_err(), "{text}");
    }
}

#[test]
fn bits_are_padded_to_the_binlog_width() {
    let b10 = ColumnKind::Bit { bits: 10, bytes: 2 };
    let want = Value::Bits {
        bytes: vec![0x02, 0xab],
        len: 10,
    };
    same(
        &b10,
        &[0x02, 0xab],
        Wire::Bytes(vec![0x02, 0xab]),
        want.clone(),
    );
    assert_eq!(
        value(&b10, Wire::Bytes(vec![0, 0, 0x02, 0xab])).unwrap(),
        want
    );
    same(
        &b10,
        &[0, 0xab],
        Wire::Bytes(vec![0xab]),
        Value::Bits {
            bytes: vec![0, 0xab],
            len: 10,
        },
    );
    same(
        &b10,
        &[0, 0],
        Wire::Bytes(vec![]),
        Value::Bits {
            bytes: vec![0, 0],
            len: 10,
        },
    );
    let b1 = ColumnKind::Bit { bits: 1, bytes: 1 };
    same(&b1, &[1], Wire::Bytes(vec![1]), Value::Bool(true));
    same(&b1, &[0], Wire::Bytes(vec![0]), Value::Bool(false));
    let b64 = ColumnKind::Bit { bits: 64, bytes: 8 };
    same(
        &b64,
        &[0xff; 8],
        Wire::Bytes(vec![0xff; 8]),
        Value::Bits {
            bytes: vec![0xff; 8],
            len: 64,
        },
    );
    // Bits above the width or non-zero excess bytes.
    assert!(value(&b10, Wire::Bytes(vec![0x04, 0])).is_err());
    assert!(value(&b10, Wire::Bytes(vec![1, 0x02, 0xab])).is_err());
}

#[test]
fn enums_and_sets() {
    let e = ColumnKind::Enum {
        pack: 1,
        labels: labels(&["small", "medium", "large"]).into(),
    };
    same(
        &e,
        &[2],
        Wire::Bytes(b"medium".to_vec()),
        Value::Enum("medium".into()),
    );
    same(&e, &[0], Wire::Bytes(vec![]), Value::Enum(String::new()));
    let big = ColumnKind::Enum {
        pack: 2,
        labels: numbered("e", 300).into(),
    };
    same(
        &big,
        &[0x2c, 0x01],
        Wire::Bytes(b"e299".to_vec()),
        Value::Enum("e299".into()),
    );
    let s = ColumnKind::Set {
        pack: 1,
        labels: labels(&["a", "b", "c", "d"]).into(),
    };
    same(
        &s,
        &[0b101],
        Wire::Bytes(b"a,c".to_vec()),
        Value::Set("a,c".into()),
    );
    same(&s, &[0], Wire::Bytes(vec![]), Value::Set(String::new()));
    let s40 = ColumnKind::Set {
        pack: 8,
        labels: numbered("t", 40).into(),
    };
    same(
        &s40,
        &(1u64 << 39 | 1).to_le_bytes(),
        Wire::Bytes(b"t0,t39".to_vec()),
        Value::Set("t0,t39".into()),
    );
    assert!(value(&e, Wire::Bytes(vec![0xff])).is_err());
    assert!(value(&e, Wire::UInt(2)).is_err());
}

#[test]
fn strings_text_and_bytes() {
    let latin1 = Charset::from_name("latin1");
    let char4 = ColumnKind::FixedString {
        len_bytes: 1,
        charset: latin1,
        pad_to: None,
    };
    // The binlog holds latin1 bytes; the server converts to utf8mb4.
    same(
        &char4,
        b"\x04caf\xe9",
        Wire::Bytes("café".as_bytes().to_vec()),
        Value::Text("café".into()),
    );
    // PAD_CHAR_TO_FULL_LENGTH padding is dropped as the binlog drops it.
    same(
        &char4,
        b"\x02ab",
        Wire::Bytes(b"ab  ".to_vec()),
        Value::Text("ab".into()),
    );
    let bin4 = ColumnKind::FixedString {
        len_bytes: 1,
        charset: Charset::Binary,
        pad_to: Some(4),
    };
    same(
        &bin4,
        &[3, 0xde, 0xad, 0xbe],
        Wire::Bytes(vec![0xde, 0xad, 0xbe, 0]),
        Value::Bytes(vec![0xde, 0xad, 0xbe, 0]),
    );
    same(
        &bin4,
        &[4, b'a', b'b', b' ', b' '],
        Wire::Bytes(b"ab  ".to_vec()),
        Value::Bytes(b"ab  ".to_vec()),
    );
    same(&bin4, &[0], Wire::Bytes(vec![]), Value::Bytes(vec![0; 4]));
    let v = ColumnKind::VarString {
        len_bytes: 2,
        charset: Charset::Utf8,
    };
    let s = "ünï 🦀 ";
    same(
        &v,
        &prefixed(2, s.as_bytes()),
        Wire::Bytes(s.as_bytes().to_vec()),
        Value::Text(s.into()),
    );
    let vb = ColumnKind::VarString {
        len_bytes: 1,
        charset: Charset::Binary,
    };
    same(
        &vb,
        &[2, b'h', b'i'],
        Wire::Bytes(b"hi".to_vec()),
        Value::Bytes(b"hi".to_vec()),
    );
    // Invalid UTF-8 in a utf8mb4 column reaches the client unconverted.
    let text = ColumnKind::Blob {
        len_bytes: 2,
        charset: Charset::Utf8,
    };
    same(
        &text,
        &[1, 0, 0xff],
        Wire::Bytes(vec![0xff]),
        Value::Bytes(vec![0xff]),
    );
    same(
        &text,
        &[0, 0],
        Wire::Bytes(vec![]),
        Value::Text(String::new()),
    );
    let blob = ColumnKind::Blob {
        len_bytes: 4,
        charset: Charset::Binary,
    };
    same(
        &blob,
        &prefixed(4, &[0, 1, 2]),
        Wire::Bytes(vec![0, 1, 2]),
        Value::Bytes(vec![0, 1, 2]),
    );
    // A charset without a decoder stays bytes, as in the binlog.
    let swe7 = ColumnKind::VarString {
        len_bytes: 1,
        charset: Charset::from_name("swe7"),
    };
    same(
        &swe7,
        b"\x03abc",
        Wire::Bytes(b"abc".to_vec()),
        Value::Bytes(b"abc".to_vec()),
    );
    assert!(value(&v, Wire::Int(1)).is_err());
}

#[test]
fn json_geometry_vector() {
    let doc = Json::Object(vec![
        ("a".into(), Json::Number("1".into())),
        (
            "b".into(),
            Json::Array(vec![
                Json::Bool(true),
                Json::Null,
                Json::String("x\"y".into()),
            ]),
        ),
    ]);
    let text = r#"{"a": 1, "b": [true, null, "x\"y"]}"#;
    same(
        &ColumnKind::Json { len_bytes: 4 },
        &prefixed(4, &jsonb::encode::doc(&doc)),
        Wire::Bytes(text.as_bytes().to_vec()),
        Value::Json(text.into()),
    );
    same(
        &ColumnKind::Json { len_bytes: 4 },
        &prefixed(4, &[]),
        Wire::Bytes(vec![]),
        Value::Json("null".into()),
    );
    // POINT(1 2) with SRID 4326.
    let mut wkb = vec![1, 1, 0, 0, 0];
    wkb.extend_from_slice(&1f64.to_le_bytes());
    wkb.extend_from_slice(&2f64.to_le_bytes());
    let mut stored = 4326u32.to_le_bytes().to_vec();
    stored.extend_from_slice(&wkb);
    same(
        &ColumnKind::Geometry { len_bytes: 4 },
        &prefixed(4, &stored),
        Wire::Bytes(stored.clone()),
        Value::Geometry { srid: 4326, wkb },
    );
    assert!(
        value(
            &ColumnKind::Geometry { len_bytes: 4 },
            Wire::Bytes(vec![1, 2, 3])
        )
        .is_err()
    );
    let mut floats = 1.5f32.to_le_bytes().to_vec();
    floats.extend_from_slice(&(-2f32).to_le_bytes());
    same(
        &ColumnKind::Vector { len_bytes: 4 },
        &prefixed(4, &floats),
        Wire::Bytes(floats.clone()),
        Value::Json("[1.5,-2.0]".into()),
    );
    assert!(
        value(
            &ColumnKind::Vector { len_bytes: 4 },
            Wire::Bytes(vec![0; 5])
        )
        .is_err()
    );
}

/// TIME2 as my_time_packed_to_binary writes it.
fn time2(micros: i64, fsp: u8) -> Vec<u8> {
    let a = micros.unsigned_abs();
    let secs = a / 1_000_000;
    let hms = ((secs / 3600) << 12) | ((secs / 60 % 60) << 6) | (secs % 60);
    let mut packed = ((hms << 24) + a % 1_000_000) as i64;
    if micros < 0 {
        packed = -packed;
    }
    let int = packed >> 24;
    let frac = packed % (1 << 24);
    let mut out = ((int + 0x80_0000) as u32).to_be_bytes()[1..].to_vec();
    match fsp {
        0 => {}
        1 | 2 => out.push((frac / 10_000) as i8 as u8),
        3 | 4 => out.extend_from_slice(&((frac / 100) as i16 as u16).to_be_bytes()),
        _ => return ((packed + 0x8000_0000_0000) as u64).to_be_bytes()[2..].to_vec(),
    }
    out
}

/// DATETIME2 as the server writes it.
#[allow(clippy::too_many_arguments)]
fn datetime2(y: u64, mo: u64, d: u64, h: u64, mi: u64, s: u64, us: u64, fsp: u8) -> Vec<u8> {
    let ymd = (y * 13 + mo) << 5 | d;
    let int = (ymd << 17 | h << 12 | mi << 6 | s) + 0x80_0000_0000;
    let mut out = int.to_be_bytes()[3..].to_vec();
    match fsp {
        0 => {}
        1 | 2 => out.push((us / 10_000) as u8),
        3 | 4 => out.extend_from_slice(&((us / 100) as u16).to_be_bytes()),
        _ => out.extend_from_slice(&(us as u32).to_be_bytes()[1..]),
    }
    out
}

fn date(year: i32, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

#[test]
fn dates_times_and_years() {
    let d: u32 = 2024 << 9 | 2 << 5 | 29;
    same(
        &ColumnKind::Date,
        &d.to_le_bytes()[..3],
        Wire::Date(2024, 2, 29, 0, 0, 0, 0),
        Value::Date(date(2024, 2, 29)),
    );
    same(
        &ColumnKind::Date,
        &[0, 0, 0],
        Wire::Date(0, 0, 0, 0, 0, 0, 0),
        Value::Date(date(0, 0, 0)),
    );
    // A zero day in a real month ('2024-05-00' under non-strict modes).
    let d: u32 = 2024 << 9 | 5 << 5;
    same(
        &ColumnKind::Date,
        &d.to_le_bytes()[..3],
        Wire::Date(2024, 5, 0, 0, 0, 0, 0),
        Value::Date(date(2024, 5, 0)),
    );

    for (micros, fsp, wire) in [
        // -838:59:59.999 = -(34 days 22:59:59.999)
        (
            -3_020_399_999_000i64,
            3u8,
            Wire::Time(true, 34, 22, 59, 59, 999_000),
        ),
        (45_296_000_000, 0, Wire::Time(false, 0, 12, 34, 56, 0)),
        (-45_296_000_000, 0, Wire::Time(true, 0, 12, 34, 56, 0)),
        (-1_500_000, 6, Wire::Time(true, 0, 0, 0, 1, 500_000)),
        (-1_500_000, 2, Wire::Time(true, 0, 0, 0, 1, 500_000)),
        (
            3_020_399_999_999,
            6,
            Wire::Time(false, 34, 22, 59, 59, 999_999),
        ),
        (0, 0, Wire::Time(false, 0, 0, 0, 0, 0)),
        (0, 0, Wire::Time(true, 0, 0, 0, 0, 0)),
    ] {
        same(
            &ColumnKind::Time2 { fsp },
            &time2(micros, fsp),
            wire,
            Value::Time(Time {
                micros,
                precision: fsp,
            }),
        );
    }

    same(
        &ColumnKind::DateTime2 { fsp: 6 },
        &datetime2(2024, 2, 29, 23, 59, 59, 999_999, 6),
        Wire::Date(2024, 2, 29, 23, 59, 59, 999_999),
        Value::DateTime(DateTime {
            date: date(2024, 2, 29),
            micros_of_day: 86_399_999_999,
            precision: 6,
        }),
    );
    same(
        &ColumnKind::DateTime2 { fsp: 3 },
        &datetime2(1000, 1, 1, 0, 0, 0, 120_000, 3),
        Wire::Date(1000, 1, 1, 0, 0, 0, 120_000),
        Value::DateTime(DateTime {
            date: date(1000, 1, 1),
            micros_of_day: 120_000,
            precision: 3,
        }),
    );
    same(
        &ColumnKind::DateTime2 { fsp: 0 },
        &datetime2(0, 0, 0, 0, 0, 0, 0, 0),
        Wire::Date(0, 0, 0, 0, 0, 0, 0),
        Value::DateTime(DateTime {
            date: date(0, 0, 0),
            micros_of_day: 0,
            precision: 0,
        }),
    );

    let mut ts = 1_709_208_000u32.to_be_bytes().to_vec();
    ts.extend_from_slice(&1230u16.to_be_bytes());
    same(
        &ColumnKind::Timestamp2 { fsp: 3 },
        &ts,
        Wire::Date(2024, 2, 29, 12, 0, 0, 123_000),
        Value::Timestamp {
            epoch_micros: 1_709_208_000_123_000,
            precision: 3,
        },
    );
    same(
        &ColumnKind::Timestamp2 { fsp: 6 },
        &[0, 0, 0, 1, 0, 0, 0],
        Wire::Date(1970, 1, 1, 0, 0, 1, 0),
        Value::Timestamp {
            epoch_micros: 1_000_000,
            precision: 6,
        },
    );
    same(
        &ColumnKind::Timestamp2 { fsp: 0 },
        &2_147_483_647u32.to_be_bytes(),
        Wire::Date(2038, 1, 19, 3, 14, 7, 0),
        Value::Timestamp {
            epoch_micros: 2_147_483_647_000_000,
            precision: 0,
        },
    );
    let zero_ts = |fsp| {
        Value::DateTime(DateTime {
            date: date(0, 0, 0),
            micros_of_day: 0,
            precision: fsp,
        })
    };
    same(
        &ColumnKind::Timestamp2 { fsp: 0 },
        &[0, 0, 0, 0],
        Wire::Date(0, 0, 0, 0, 0, 0, 0),
        zero_ts(0),
    );
    same(
        &ColumnKind::Timestamp2 { fsp: 6 },
        &[0; 7],
        Wire::Date(0, 0, 0, 0, 0, 0, 0),
        zero_ts(6),
    );

    same(
        &ColumnKind::Year,
        &[255],
        Wire::UInt(2155),
        Value::Year(2155),
    );
    same(&ColumnKind::Year, &[1], Wire::Int(1901), Value::Year(1901));
    same(&ColumnKind::Year, &[0], Wire::UInt(0), Value::Year(0));
}

#[test]
fn null_for_every_kind() {
    let kinds = [
        ColumnKind::Int {
            bytes: 4,
            unsigned: false,
        },
        ColumnKind::Decimal {
            precision: 10,
            scale: 2,
        },
        ColumnKind::Bit { bits: 1, bytes: 1 },
        ColumnKind::VarString {
            len_bytes: 1,
            charset: Charset::Utf8,
        },
        ColumnKind::Json { len_bytes: 4 },
        ColumnKind::Date,
        ColumnKind::Time2 { fsp: 0 },
        ColumnKind::Timestamp2 { fsp: 6 },
        ColumnKind::Year,
        ColumnKind::Null,
    ];
    for k in &kinds {
        assert_eq!(value(k, Wire::NULL).unwrap(), Value::Null, "{k:?}");
    }
}

#[test]
fn unexpected_wire_values_are_errors() {
    let int = |bytes, unsigned| ColumnKind::Int { bytes, unsigned };
    let cases = [
        (int(4, false), Wire::Bytes(b"12".to_vec()), "int column"),
        (int(1, false), Wire::Int(128), "integer 128"),
        (int(1, true), Wire::Int(-1), "tinyint unsigned column"),
        (int(2, true), Wire::UInt(65_536), "unsigned integer 65536"),
        (int(8, false), Wire::UInt(u64::MAX), "bigint column"),
        (ColumnKind::Float, Wire::Double(1.0), "double 1"),
        (ColumnKind::Double, Wire::Float(1.0), "float 1"),
        (
            ColumnKind::Decimal {
                precision: 5,
                scale: 2,
            },
            Wire::Double(1.5),
            "decimal(5,2) column",
        ),
        (
            ColumnKind::Date,
            Wire::Time(false, 0, 1, 0, 0, 0),
            "time 0d 01:00:00",
        ),
        (
            ColumnKind::Date,
            Wire::Date(2024, 1, 1, 10, 0, 0, 0),
            "date-time 2024-01-01 10:00:00",
        ),
        (
            ColumnKind::Time2 { fsp: 0 },
            Wire::Time(false, 0, 24, 0, 0, 0),
            "invalid time of day",
        ),
        (
            ColumnKind::DateTime2 { fsp: 0 },
            Wire::Bytes(b"2024-01-01".to_vec()),
            "10-byte string",
        ),
        (
            ColumnKind::Timestamp2 { fsp: 0 },
            Wire::Date(1969, 12, 31, 23, 0, 0, 0),
            "time_zone",
        ),
        (
            ColumnKind::Timestamp2 { fsp: 0 },
            Wire::Date(2024, 0, 1, 0, 0, 0, 0),
            "not a calendar date",
        ),
        (ColumnKind::Year, Wire::UInt(1900), "year column"),
        (
            ColumnKind::Year,
            Wire::Bytes(b"2024".to_vec()),
            "year column",
        ),
        (ColumnKind::Null, Wire::Int(1), "null column"),
        (
            ColumnKind::Json { len_bytes: 4 },
            Wire::Bytes(vec![b'"', 0xff, b'"']),
            "invalid UTF-8",
        ),
    ];
    for (kind, wire, needle) in cases {
        let what = format!("{wire:?}");
        let e = value(&kind, wire).unwrap_err();
        assert!(e.contains(needle), "{kind:?} {what}: {e}");
    }
}
