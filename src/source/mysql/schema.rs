//! Table maps → column decoders and table schemas.
//!
//! With `binlog_row_metadata=FULL` (MySQL 8.0.1+, MariaDB 10.5+) every table
//! map carries column names, signedness, character sets, ENUM/SET labels and
//! the primary key, so each row is decoded with the schema it was written
//! with: an ALTER TABLE between two rows events can't misname or misalign a
//! column. Without it, names come from `information_schema` (see
//! `catalog.rs`), checked against the table map's column types.

use std::sync::Arc;

use super::charset::{Charset, Collations};
use super::events::TableMap;
use super::reader::{DecodeError, Reader};
use super::rows::ColumnKind;
use crate::event::{ColumnDef, TableSchema};

/// Optional metadata of a table map (binlog_event.h, `Optional_metadata_field_type`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptionalMeta {
    /// Signedness of each numeric column, in order (true = unsigned).
    pub unsigned: Option<Vec<bool>>,
    /// Collation of each character column, in order.
    pub charsets: Option<Vec<u16>>,
    pub enum_set_charsets: Option<Vec<u16>>,
    pub names: Option<Vec<String>>,
    pub set_labels: Vec<Vec<String>>,
    pub enum_labels: Vec<Vec<String>>,
    pub primary_key: Option<Vec<usize>>,
}

/// Number of character / enum-set / numeric columns, to expand defaults.
pub fn parse_optional(
    bytes: &[u8],
    char_columns: usize,
    enum_set_columns: usize,
) -> Result<OptionalMeta, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut m = OptionalMeta::default();
    while !r.is_empty() {
        let ty = r.u8("optional metadata type")?;
        let len = r.lenenc("optional metadata length")? as usize;
        let mut v = Reader::new(r.take(len, "optional metadata")?);
        match ty {
            1 => {
                let bits = v.rest();
                m.unsigned = Some(
                    (0..bits.len() * 8)
                        .map(|i| bits[i / 8] >> (7 - i % 8) & 1 == 1)
                        .collect(),
                );
            }
            2 => m.charsets = Some(default_charsets(&mut v, char_columns)?),
            3 => m.charsets = Some(lenenc_list(&mut v)?.into_iter().map(|x| x as u16).collect()),
            4 => {
                let mut names = Vec::new();
                while !v.is_empty() {
                    let n = v.lenenc("column name length")? as usize;
                    names.push(String::from_utf8_lossy(v.take(n, "column name")?).into_owned());
                }
                m.names = Some(names);
            }
            5 | 6 => {
                let mut all = Vec::new();
                while !v.is_empty() {
                    let count = v.lenenc("label count")? as usize;
                    if count > v.remaining() {
                        return Err(v.err("label count exceeds the metadata"));
                    }
                    let mut labels = Vec::with_capacity(count);
                    for _ in 0..count {
                        let n = v.lenenc("label length")? as usize;
                        labels.push(String::from_utf8_lossy(v.take(n, "label")?).into_owned());
                    }
                    all.push(labels);
                }
                if ty == 5 {
                    m.set_labels = all;
                } else {
                    m.enum_labels = all;
                }
            }
            8 => {
                m.primary_key = Some(
                    lenenc_list(&mut v)?
                        .into_iter()
                        .map(|x| x as usize)
                        .collect(),
                )
            }
            9 => {
                let pairs = lenenc_list(&mut v)?;
                m.primary_key = Some(pairs.chunks(2).map(|p| p[0] as usize).collect());
            }
            10 => m.enum_set_charsets = Some(default_charsets(&mut v, enum_set_columns)?),
            11 => {
                m.enum_set_charsets =
                    Some(lenenc_list(&mut v)?.into_iter().map(|x| x as u16).collect())
            }
            // Geometry types, column visibility, vector dimensions and
            // anything newer don't change how values decode.
            _ => {}
        }
    }
    Ok(m)
}

fn lenenc_list(v: &mut Reader<'_>) -> Result<Vec<u64>, DecodeError> {
    let mut out = Vec::new();
    while !v.is_empty() {
        out.push(v.lenenc("metadata value")?);
    }
    Ok(out)
}

/// DEFAULT_CHARSET: a default collation, then (column index, collation)
/// pairs for the columns that differ.
fn default_charsets(v: &mut Reader<'_>, columns: usize) -> Result<Vec<u16>, DecodeError> {
    let default = v.lenenc("default charset")? as u16;
    let mut out = vec![default; columns];
    while !v.is_empty() {
        let idx = v.lenenc("charset column index")? as usize;
        let cs = v.lenenc("charset")? as u16;
        if let Some(slot) = out.get_mut(idx) {
            *slot = cs;
        }
    }
    Ok(out)
}

/// Decoders and schema of one table as described by a table map.
#[derive(Debug, Clone)]
pub struct TableCodec {
    pub schema: Arc<TableSchema>,
    pub kinds: Vec<ColumnKind>,
    /// Whether the task captures this table.
    pub selected: bool,
}

/// Column names and keys from `information_schema`, for servers that don't
/// log full row metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogTable {
    pub columns: Vec<CatalogColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogColumn {
    pub name: String,
    pub unsigned: bool,
    pub charset: Option<String>,
    /// ENUM/SET labels parsed from COLUMN_TYPE.
    pub labels: Vec<String>,
    pub primary_key: bool,
}

fn is_numeric(ty: u8) -> bool {
    // TINY, SHORT, LONG, FLOAT, DOUBLE, LONGLONG, INT24, YEAR, NEWDECIMAL
    matches!(ty, 1 | 2 | 3 | 4 | 5 | 8 | 9 | 13 | 246)
}

/// Real type of a column: STRING columns carry ENUM/SET/STRING in their metadata.
fn real_type(ty: u8, meta: &[u8]) -> u8 {
    if ty == 254
        && let Some(&b0) = meta.first()
        && b0 != 0
    {
        return b0 | 0x30;
    }
    ty
}

/// Columns that take a place in the charset metadata lists. GEOMETRY
/// counts too: the server treats it as the BLOB it derives from.
fn is_character(real: u8) -> bool {
    matches!(real, 254 | 253 | 15 | 252 | 255)
}

pub fn build(
    map: &TableMap,
    collations: &Collations,
    catalog: Option<&CatalogTable>,
) -> Result<TableCodec, String> {
    let n = map.types.len();
    let reals: Vec<u8> = map
        .types
        .iter()
        .zip(&map.meta)
        .map(|(&t, m)| real_type(t, m))
        .collect();
    let char_cols = reals.iter().filter(|&&t| is_character(t)).count();
    let enum_set_cols = reals.iter().filter(|&&t| t == 247 || t == 248).count();
    let opt = parse_optional(&map.optional, char_cols, enum_set_cols)
        .map_err(|e| format!("optional metadata: {e}"))?;
    if let Some(cat) = catalog
        && cat.columns.len() != n
    {
        return Err(format!(
            "the binlog row has {n} columns but information_schema lists {}: the table changed since this event was written. Set binlog_row_metadata=FULL on the server so that the binlog carries its own column names",
            cat.columns.len()
        ));
    }

    let mut unsigned_iter = opt.unsigned.iter().flatten().copied();
    let mut charset_iter = opt.charsets.iter().flatten().copied();
    let mut es_charset_iter = opt.enum_set_charsets.iter().flatten().copied();
    let mut enum_iter = opt.enum_labels.iter();
    let mut set_iter = opt.set_labels.iter();
    let mut kinds = Vec::with_capacity(n);
    let mut columns = Vec::with_capacity(n);
    for (i, ((&ty, &real), meta)) in map.types.iter().zip(&reals).zip(&map.meta).enumerate() {
        let cat = catalog.and_then(|c| c.columns.get(i));
        let unsigned = if is_numeric(real) {
            unsigned_iter
                .next()
                .or(cat.map(|c| c.unsigned))
                .unwrap_or(false)
        } else {
            false
        };
        let charset = if is_character(real) {
            match (charset_iter.next(), cat) {
                (Some(id), _) => collations.get(id),
                (None, Some(c)) => c
                    .charset
                    .as_deref()
                    .map_or(Charset::Binary, Charset::from_name),
                // No metadata at all: UTF-8, falling back to bytes when invalid.
                (None, None) => Charset::Utf8,
            }
        } else {
            Charset::Binary
        };
        if real == 247 || real == 248 {
            es_charset_iter.next();
        }
        let labels = |it: &mut std::slice::Iter<'_, Vec<String>>| -> Arc<[String]> {
            it.next()
                .cloned()
                .or(cat.map(|c| c.labels.clone()))
                .unwrap_or_default()
                .into()
        };
        let m0 = meta.first().copied().unwrap_or(0);
        let m1 = meta.get(1).copied().unwrap_or(0);
        let kind = match real {
            1 => ColumnKind::Int { bytes: 1, unsigned },
            2 => ColumnKind::Int { bytes: 2, unsigned },
            9 => ColumnKind::Int { bytes: 3, unsigned },
            3 => ColumnKind::Int { bytes: 4, unsigned },
            8 => ColumnKind::Int { bytes: 8, unsigned },
            4 => ColumnKind::Float,
            5 => ColumnKind::Double,
            246 => ColumnKind::Decimal {
                precision: m0,
                scale: m1,
            },
            16 => ColumnKind::Bit {
                bits: u32::from(m1) * 8 + u32::from(m0),
                bytes: m1 + u8::from(m0 > 0),
            },
            247 => ColumnKind::Enum {
                pack: m1,
                labels: labels(&mut enum_iter),
            },
            248 => ColumnKind::Set {
                pack: m1,
                labels: labels(&mut set_iter),
            },
            254 => {
                // A long CHAR's length spills into the type byte (bug #37426).
                let len = if m0 & 0x30 != 0x30 {
                    usize::from(m1) | (usize::from((m0 & 0x30) ^ 0x30) << 4)
                } else {
                    usize::from(m1)
                };
                ColumnKind::FixedString {
                    len_bytes: if len > 255 { 2 } else { 1 },
                    charset,
                    pad_to: (charset == Charset::Binary).then_some(len),
                }
            }
            15 | 253 => {
                let max = usize::from(u16::from_le_bytes([m0, m1]));
                ColumnKind::VarString {
                    len_bytes: if max > 255 { 2 } else { 1 },
                    charset,
                }
            }
            252 => ColumnKind::Blob {
                len_bytes: m0,
                charset,
            },
            245 => ColumnKind::Json { len_bytes: m0 },
            255 => ColumnKind::Geometry { len_bytes: m0 },
            242 => ColumnKind::Vector { len_bytes: m0 },
            10 | 14 => ColumnKind::Date,
            11 => ColumnKind::TimeOld,
            12 => ColumnKind::DateTimeOld,
            7 => ColumnKind::TimestampOld,
            19 => ColumnKind::Time2 { fsp: m0 },
            18 => ColumnKind::DateTime2 { fsp: m0 },
            17 => ColumnKind::Timestamp2 { fsp: m0 },
            13 => ColumnKind::Year,
            6 => ColumnKind::Null,
            other => {
                return Err(format!(
                    "column {} has unsupported type {other} (binlog type {ty})",
                    i + 1
                ));
            }
        };
        if let ColumnKind::Blob { len_bytes, .. }
        | ColumnKind::Json { len_bytes }
        | ColumnKind::Geometry { len_bytes }
        | ColumnKind::Vector { len_bytes } = &kind
            && !(1..=4).contains(len_bytes)
        {
            return Err(format!(
                "column {} has invalid length size {len_bytes}",
                i + 1
            ));
        }
        if let ColumnKind::Enum { pack, .. } | ColumnKind::Set { pack, .. } = &kind
            && !(1..=8).contains(pack)
        {
            return Err(format!("column {} has invalid ENUM/SET size {pack}", i + 1));
        }
        let name = opt
            .names
            .as_ref()
            .and_then(|names| names.get(i).cloned())
            .or_else(|| cat.map(|c| c.name.clone()))
            // MySQL's own placeholder for an unnamed column.
            .unwrap_or_else(|| format!("@{}", i + 1));
        columns.push(ColumnDef {
            name,
            type_name: kind.type_name(),
            nullable: map.nullable.get(i).copied().unwrap_or(true),
        });
        kinds.push(kind);
    }
    let key = match (&opt.primary_key, catalog) {
        (Some(pk), _) => pk.iter().copied().filter(|&k| k < n).collect(),
        (None, Some(cat)) => cat
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.primary_key)
            .map(|(i, _)| i)
            .collect(),
        (None, None) => Vec::new(),
    };
    let version = TableSchema::fingerprint(&columns, &key);
    Ok(TableCodec {
        schema: Arc::new(TableSchema {
            merged: None,
            db: map.db.clone(),
            schema: None,
            name: map.table.clone(),
            columns,
            key,
            uniques: Vec::new(),
            before_complete: true,
            defaults: Vec::new(),
            version,
        }),
        kinds,
        selected: true,
    })
}

/// True when the table map carries column names (binlog_row_metadata=FULL).
pub fn has_names(map: &TableMap) -> bool {
    let mut r = Reader::new(&map.optional);
    while let (Ok(ty), Ok(len)) = (r.u8(""), r.lenenc("")) {
        if ty == 4 {
            return true;
        }
        if r.take(len as usize, "").is_err() {
            break;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(ty: u8, v: &[u8]) -> Vec<u8> {
        let mut out = vec![ty, v.len() as u8];
        out.extend_from_slice(v);
        out
    }

    fn names(list: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in list {
            v.push(n.len() as u8);
            v.extend_from_slice(n.as_bytes());
        }
        tlv(4, &v)
    }

    #[test]
    fn builds_codec_from_full_metadata() {
        // id BIGINT UNSIGNED, c CHAR(4) latin1, b BINARY(4), e ENUM('x','y'), v VARCHAR(300) utf8mb4
        let mut optional = tlv(1, &[0b1000_0000]);
        optional.extend(tlv(3, &[8, 63, 45]));
        optional.extend(names(&["id", "c", "b", "e", "v"]));
        optional.extend(tlv(6, &[2, 1, b'x', 1, b'y']));
        optional.extend(tlv(8, &[0]));
        let map = TableMap {
            table_id: 1,
            db: "shop".into(),
            table: "t".into(),
            types: vec![8, 254, 254, 254, 15],
            meta: vec![
                vec![],
                vec![0xfe, 4],
                vec![0xfe, 4],
                vec![0xf7, 1],
                vec![0x2c, 0x01],
            ],
            nullable: vec![false, true, true, true, true],
            optional,
        };
        let codec = build(&map, &Collations::builtin(), None).unwrap();
        assert_eq!(
            codec.kinds[0],
            ColumnKind::Int {
                bytes: 8,
                unsigned: true
            }
        );
        assert!(matches!(
            codec.kinds[1],
            ColumnKind::FixedString {
                charset: Charset::Other(_),
                pad_to: None,
                ..
            }
        ));
        assert!(matches!(
            codec.kinds[2],
            ColumnKind::FixedString {
                charset: Charset::Binary,
                pad_to: Some(4),
                ..
            }
        ));
        assert!(
            matches!(&codec.kinds[3], ColumnKind::Enum { pack: 1, labels } if labels.len() == 2)
        );
        assert_eq!(
            codec.kinds[4],
            ColumnKind::VarString {
                len_bytes: 2,
                charset: Charset::Utf8
            }
        );
        let s = &codec.schema;
        assert_eq!(
            s.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["id", "c", "b", "e", "v"]
        );
        assert_eq!(s.key, vec![0]);
        assert!(has_names(&map));
    }

    #[test]
    fn catalog_fallback_and_mismatch() {
        let map = TableMap {
            table_id: 1,
            db: "d".into(),
            table: "t".into(),
            types: vec![3, 15],
            meta: vec![vec![], vec![10, 0]],
            nullable: vec![false, true],
            optional: vec![],
        };
        let cat = CatalogTable {
            columns: vec![
                CatalogColumn {
                    name: "id".into(),
                    unsigned: true,
                    charset: None,
                    labels: vec![],
                    primary_key: true,
                },
                CatalogColumn {
                    name: "note".into(),
                    unsigned: false,
                    charset: Some("latin1".into()),
                    labels: vec![],
                    primary_key: false,
                },
            ],
        };
        let codec = build(&map, &Collations::builtin(), Some(&cat)).unwrap();
        assert_eq!(codec.schema.columns[1].name, "note");
        assert_eq!(codec.schema.key, vec![0]);
        assert_eq!(
            codec.kinds[0],
            ColumnKind::Int {
                bytes: 4,
                unsigned: true
            }
        );
        let short = CatalogTable {
            columns: cat.columns[..1].to_vec(),
        };
        let e = build(&map, &Collations::builtin(), Some(&short)).unwrap_err();
        assert!(e.contains("binlog_row_metadata=FULL"), "{e}");
        assert!(!has_names(&map));
    }

    #[test]
    fn default_charset_with_exceptions() {
        let mut v = vec![45u8];
        v.extend_from_slice(&[1, 8]);
        let m = parse_optional(&tlv(2, &v), 3, 0).unwrap();
        assert_eq!(m.charsets, Some(vec![45, 8, 45]));
        assert!(parse_optional(&[4, 9, 1], 0, 0).is_err());
    }
}
