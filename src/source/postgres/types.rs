//! PostgreSQL column values in text output format, as pgoutput sends them,
//! converted to [`Value`] without loss.
//!
//! A column's type is first resolved to a [`PgType`]: built-in oids by
//! [`builtin`], user types (enums, domains, composites, their arrays) through
//! a [`TypeCatalog`] by [`resolve`]. [`decode_text`] then parses the text.
//!
//! The text forms depend on session settings; the source must keep these
//! (all PostgreSQL defaults except `TimeZone`, which any value works for):
//! - `DateStyle` ISO: `2024-01-02`, `2024-01-02 03:04:05+00`, `0044-03-15 BC`;
//! - `IntervalStyle` postgres: `1 year 2 mons 3 days 04:05:06.789`;
//! - `extra_float_digits` ≥ 1, so that floats print round-trip exact;
//! - `bytea_output` hex (the legacy escape format is accepted too);
//! - `lc_monetary` C or en_US style: `-$1,234.56` (any other currency
//!   symbol or separator is rejected, not guessed at);
//! - `client_encoding` UTF8.

mod array;
mod composite;
mod scalar;
mod temporal;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::BuildHasher;

use thiserror::Error;

use super::pgoutput::ColumnValue;
use crate::event::value::Value;

/// A column type resolved far enough to decode its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    pub oid: u32,
    /// `atttypmod`; -1 when the type has none. For arrays it applies to the
    /// elements.
    pub typmod: i32,
    /// `pg_type.typname` (`int4`, `_text`, `mood`), or the oid in decimal
    /// when the type could not be found.
    pub name: String,
    pub kind: PgKind,
}

/// How values of a type are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgKind {
    /// A built-in scalar type; see [`builtin`].
    Builtin(Builtin),
    /// An enum: the label, as [`Value::Enum`].
    Enum,
    /// A domain: decoded as its base type.
    Domain(Box<PgType>),
    /// A composite (row) type: its fields in attribute order.
    Composite(Vec<Field>),
    /// An array of the element type.
    Array(Box<PgType>),
    /// A type without a decoder here (extension types such as `citext` or
    /// `hstore`, or an oid the catalog did not know): kept as
    /// [`Value::Other`] text.
    Unknown,
}

/// One field of a composite type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: PgType,
}

/// Decoding classes of the built-in scalar types. The [`PgType`]'s oid and
/// name tell the exact type within a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Bool,
    Bytea,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Money,
    /// text, varchar, bpchar (padding kept), name, "char", xml, refcursor.
    Text,
    /// json and jsonb.
    Json,
    /// inet, cidr, macaddr, macaddr8.
    Network,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    /// bit and varbit; `bit(1)` becomes [`Value::Bool`].
    Bits,
    /// Types kept as their text: geometric, range, text search, reg*, pg_lsn…
    Other,
}

/// Built-in types: oid, oid of its array type, typname, decoding class.
const BUILTINS: &[(u32, u32, &str, Builtin)] = &[
    (16, 1000, "bool", Builtin::Bool),
    (17, 1001, "bytea", Builtin::Bytea),
    (18, 1002, "char", Builtin::Text),
    (19, 1003, "name", Builtin::Text),
    (20, 1016, "int8", Builtin::Int8),
    (21, 1005, "int2", Builtin::Int2),
    (22, 1006, "int2vector", Builtin::Other),
    (23, 1007, "int4", Builtin::Int4),
    (24, 1008, "regproc", Builtin::Other),
    (25, 1009, "text", Builtin::Text),
    (26, 1028, "oid", Builtin::Oid),
    (27, 1010, "tid", Builtin::Other),
    (28, 1011, "xid", Builtin::Other),
    (29, 1012, "cid", Builtin::Other),
    (30, 1013, "oidvector", Builtin::Other),
    (114, 199, "json", Builtin::Json),
    (142, 143, "xml", Builtin::Text),
    (600, 1017, "point", Builtin::Other),
    (601, 1018, "lseg", Builtin::Other),
    (602, 1019, "path", Builtin::Other),
    (603, 1020, "box", Builtin::Other),
    (604, 1027, "polygon", Builtin::Other),
    (628, 629, "line", Builtin::Other),
    (650, 651, "cidr", Builtin::Network),
    (700, 1021, "float4", Builtin::Float4),
    (701, 1022, "float8", Builtin::Float8),
    (718, 719, "circle", Builtin::Other),
    (774, 775, "macaddr8", Builtin::Network),
    (790, 791, "money", Builtin::Money),
    (829, 1040, "macaddr", Builtin::Network),
    (869, 1041, "inet", Builtin::Network),
    (1033, 1034, "aclitem", Builtin::Other),
    (1042, 1014, "bpchar", Builtin::Text),
    (1043, 1015, "varchar", Builtin::Text),
    (1082, 1182, "date", Builtin::Date),
    (1083, 1183, "time", Builtin::Time),
    (1114, 1115, "timestamp", Builtin::Timestamp),
    (1184, 1185, "timestamptz", Builtin::TimestampTz),
    (1186, 1187, "interval", Builtin::Interval),
    (1266, 1270, "timetz", Builtin::TimeTz),
    (1560, 1561, "bit", Builtin::Bits),
    (1562, 1563, "varbit", Builtin::Bits),
    (1700, 1231, "numeric", Builtin::Numeric),
    (1790, 2201, "refcursor", Builtin::Text),
    (2202, 2207, "regprocedure", Builtin::Other),
    (2203, 2208, "regoper", Builtin::Other),
    (2204, 2209, "regoperator", Builtin::Other),
    (2205, 2210, "regclass", Builtin::Other),
    (2206, 2211, "regtype", Builtin::Other),
    (2950, 2951, "uuid", Builtin::Uuid),
    (2970, 2949, "txid_snapshot", Builtin::Other),
    (3220, 3221, "pg_lsn", Builtin::Other),
    (3614, 3643, "tsvector", Builtin::Other),
    (3615, 3645, "tsquery", Builtin::Other),
    (3642, 3644, "gtsvector", Builtin::Other),
    (3734, 3735, "regconfig", Builtin::Other),
    (3769, 3770, "regdictionary", Builtin::Other),
    (3802, 3807, "jsonb", Builtin::Json),
    (3904, 3905, "int4range", Builtin::Other),
    (3906, 3907, "numrange", Builtin::Other),
    (3908, 3909, "tsrange", Builtin::Other),
    (3910, 3911, "tstzrange", Builtin::Other),
    (3912, 3913, "daterange", Builtin::Other),
    (3926, 3927, "int8range", Builtin::Other),
    (4072, 4073, "jsonpath", Builtin::Other),
    (4089, 4090, "regnamespace", Builtin::Other),
    (4096, 4097, "regrole", Builtin::Other),
    (4191, 4192, "regcollation", Builtin::Other),
    (4451, 6150, "int4multirange", Builtin::Other),
    (4532, 6151, "nummultirange", Builtin::Other),
    (4533, 6152, "tsmultirange", Builtin::Other),
    (4534, 6153, "tstzmultirange", Builtin::Other),
    (4535, 6155, "datemultirange", Builtin::Other),
    (4536, 6157, "int8multirange", Builtin::Other),
    (5038, 5039, "pg_snapshot", Builtin::Other),
    (5069, 271, "xid8", Builtin::Other),
];

/// The oid of `bit`, whose `bit(1)` columns decode as booleans.
const BIT_OID: u32 = 1560;
/// The oid of `box`, the one built-in type whose arrays use `;` between elements.
const BOX_OID: u32 = 603;

/// The built-in type or built-in array type with this oid; `None` for
/// anything else, which [`resolve`] looks up in a catalog.
pub fn builtin(oid: u32, typmod: i32) -> Option<PgType> {
    BUILTINS
        .iter()
        .find_map(|&(elem_oid, array_oid, name, class)| {
            let elem = || PgType {
                oid: elem_oid,
                typmod,
                name: name.to_owned(),
                kind: PgKind::Builtin(class),
            };
            if oid == elem_oid {
                Some(elem())
            } else if oid == array_oid {
                Some(PgType {
                    oid,
                    typmod,
                    name: format!("_{name}"),
                    kind: PgKind::Array(Box::new(elem())),
                })
            } else {
                None
            }
        })
}

/// What a catalog knows about a non-built-in type, from `pg_type` (and
/// `pg_attribute` for composites) or just from a pgoutput Type message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeDef {
    /// `typtype = 'e'`.
    Enum { name: String },
    /// `typtype = 'd'`: `typbasetype` and `typtypmod`.
    Domain {
        name: String,
        base_oid: u32,
        base_typmod: i32,
    },
    /// `typtype = 'c'`: the live attributes of `typrelid`, in order.
    Composite { name: String, fields: Vec<FieldDef> },
    /// An array type (`typelem`, `typcategory = 'A'`).
    Array { name: String, element_oid: u32 },
    /// Anything else: extension base types, ranges, or a type known only by name.
    Other { name: String },
}

/// One attribute of a [`TypeDef::Composite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// Lookup of user-defined types by oid.
pub trait TypeCatalog {
    /// The definition of type `oid`, if known.
    fn lookup(&self, oid: u32) -> Option<&TypeDef>;
}

impl<S: BuildHasher> TypeCatalog for HashMap<u32, TypeDef, S> {
    fn lookup(&self, oid: u32) -> Option<&TypeDef> {
        self.get(&oid)
    }
}

/// Nesting of domains, arrays and composites beyond which a type is taken
/// to be a catalog cycle and left [`PgKind::Unknown`].
const MAX_TYPE_DEPTH: usize = 16;

/// Resolves a column type: built-ins by oid, other types through `catalog`,
/// recursively. Types the catalog lacks become [`PgKind::Unknown`].
pub fn resolve(oid: u32, typmod: i32, catalog: &(impl TypeCatalog + ?Sized)) -> PgType {
    resolve_at(oid, typmod, catalog, 0)
}

fn resolve_at(
    oid: u32,
    typmod: i32,
    catalog: &(impl TypeCatalog + ?Sized),
    depth: usize,
) -> PgType {
    if let Some(t) = builtin(oid, typmod) {
        return t;
    }
    let unknown = |name: String| PgType {
        oid,
        typmod,
        name,
        kind: PgKind::Unknown,
    };
    let Some(def) = catalog.lookup(oid) else {
        return unknown(oid.to_string());
    };
    if depth >= MAX_TYPE_DEPTH {
        return unknown(def.name().to_owned());
    }
    let kind = match def {
        TypeDef::Enum { .. } => PgKind::Enum,
        TypeDef::Domain {
            base_oid,
            base_typmod,
            ..
        } => {
            // A column of a domain type has no typmod of its own; the
            // domain's (`varchar(20)` in `CREATE DOMAIN d AS varchar(20)`) applies.
            let t = if typmod == -1 { *base_typmod } else { typmod };
            PgKind::Domain(Box::new(resolve_at(*base_oid, t, catalog, depth + 1)))
        }
        TypeDef::Composite { fields, .. } => PgKind::Composite(
            fields
                .iter()
                .map(|f| Field {
                    name: f.name.clone(),
                    ty: resolve_at(f.type_oid, f.typmod, catalog, depth + 1),
                })
                .collect(),
        ),
        TypeDef::Array { element_oid, .. } => PgKind::Array(Box::new(resolve_at(
            *element_oid,
            typmod,
            catalog,
            depth + 1,
        ))),
        TypeDef::Other { .. } => PgKind::Unknown,
    };
    PgType {
        oid,
        typmod,
        name: def.name().to_owned(),
        kind,
    }
}

impl TypeDef {
    /// `pg_type.typname`.
    pub fn name(&self) -> &str {
        match self {
            TypeDef::Enum { name }
            | TypeDef::Domain { name, .. }
            | TypeDef::Composite { name, .. }
            | TypeDef::Array { name, .. }
            | TypeDef::Other { name } => name,
        }
    }
}

impl PgType {
    /// The type with domains stripped off.
    fn base(&self) -> &PgType {
        match &self.kind {
            PgKind::Domain(base) => base.base(),
            _ => self,
        }
    }
}

/// A column value that is not valid text for its type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {type_name} value {text:?}: {reason}")]
pub struct TypeError {
    pub type_name: String,
    /// The offending text, cut to about 100 characters.
    pub text: String,
    pub reason: &'static str,
}

impl TypeError {
    fn new(ty: &PgType, text: &[u8], reason: &'static str) -> Self {
        const MAX_CHARS: usize = 100;
        let lossy = String::from_utf8_lossy(text);
        let mut shown: String = lossy.chars().take(MAX_CHARS).collect();
        if lossy.chars().nth(MAX_CHARS).is_some() {
            shown.push('…');
        }
        TypeError {
            type_name: ty.name.clone(),
            text: shown,
            reason,
        }
    }
}

/// Decodes one pgoutput column: null and unchanged TOAST values map to
/// [`Value::Null`] and [`Value::Unchanged`], text through [`decode_text`].
/// Binary values are an error: the source requests text format.
pub fn decode_column(ty: &PgType, column: &ColumnValue) -> Result<Value, TypeError> {
    match column {
        ColumnValue::Null => Ok(Value::Null),
        ColumnValue::Unchanged => Ok(Value::Unchanged),
        ColumnValue::Text(text) => decode_text(ty, text),
        ColumnValue::Binary(bytes) => Err(TypeError::new(
            ty,
            bytes,
            "binary format is not supported; replicate in text format",
        )),
    }
}

/// Decodes a value in its type's text output format.
pub fn decode_text(ty: &PgType, text: &[u8]) -> Result<Value, TypeError> {
    let err = |reason| TypeError::new(ty, text, reason);
    match &ty.kind {
        PgKind::Builtin(class) => {
            let s = std::str::from_utf8(text).map_err(|_| err("not valid UTF-8"))?;
            decode_builtin(ty, *class, s).map_err(err)
        }
        PgKind::Enum => utf8(text).map(Value::Enum).map_err(err),
        PgKind::Domain(base) => decode_text(base, text),
        PgKind::Composite(fields) => composite::decode(ty, fields, text),
        PgKind::Array(elem) => {
            let delimiter = if elem.base().oid == BOX_OID {
                b';'
            } else {
                b','
            };
            array::decode(ty, elem, delimiter, text)
        }
        PgKind::Unknown => utf8(text).map(Value::Other).map_err(err),
    }
}

fn decode_builtin(ty: &PgType, class: Builtin, s: &str) -> Result<Value, &'static str> {
    match class {
        Builtin::Bool => scalar::bool(s),
        Builtin::Bytea => scalar::bytea(s),
        Builtin::Int2 => scalar::int(s, i16::MIN.into(), i16::MAX.into()),
        Builtin::Int4 => scalar::int(s, i32::MIN.into(), i32::MAX.into()),
        Builtin::Int8 => scalar::int(s, i64::MIN, i64::MAX),
        Builtin::Oid => scalar::int(s, 0, u32::MAX.into()),
        Builtin::Float4 => scalar::float4(s),
        Builtin::Float8 => scalar::float8(s),
        Builtin::Numeric => scalar::numeric(s),
        Builtin::Money => scalar::money(s),
        Builtin::Text => Ok(Value::Text(s.to_owned())),
        Builtin::Json => Ok(Value::Json(s.to_owned())),
        Builtin::Network => Ok(Value::Network(s.to_owned())),
        Builtin::Date => temporal::date(s),
        Builtin::Time => temporal::time(s, precision(ty.typmod)),
        Builtin::TimeTz => temporal::timetz(s),
        Builtin::Timestamp => temporal::timestamp(s, precision(ty.typmod)),
        Builtin::TimestampTz => temporal::timestamptz(s, precision(ty.typmod)),
        Builtin::Interval => temporal::interval(s),
        Builtin::Uuid => scalar::uuid(s),
        Builtin::Bits => scalar::bits(s, ty.oid == BIT_OID && ty.typmod == 1),
        Builtin::Other => Ok(Value::Other(s.to_owned())),
    }
}

/// Fractional-second digits of a time or timestamp typmod; -1 (none
/// declared) means the maximum, 6.
fn precision(typmod: i32) -> u8 {
    u8::try_from(typmod).ok().filter(|p| *p <= 6).unwrap_or(6)
}

fn utf8(text: &[u8]) -> Result<String, &'static str> {
    String::from_utf8(text.to_vec()).map_err(|_| "not valid UTF-8")
}
