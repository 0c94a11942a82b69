//! Kafka Connect schemas for Debezium's JSON envelope (`schemas = true`).
//!
//! The schema describes what `event::json` actually writes: Debezium's
//! types and logical names where tidemark writes Debezium's encoding, and
//! the encoding's own type where tidemark's (lossless) default differs —
//! `string` for decimals in `decimal_handling = "string"` mode, as
//! Debezium's own `decimal.handling.mode=string` does. A value written as
//! text where its column's type is not (a zero date, PostgreSQL
//! `infinity`, an unchanged TOAST placeholder) makes that field `string` in
//! that message's schema. Differences from Debezium are listed in
//! docs/kafka.md.

use serde_json::{Map, Value as J, json};

use crate::event::json::{
    BigintUnsignedHandling, BinaryHandling, DecimalHandling, IntervalHandling, JsonOptions,
    ZeroDateHandling,
};
use crate::event::value::Value;
use crate::event::{ColumnDef, Connector, TableSchema};

/// The Connect schema of one column (without `field`/`optional`).
pub fn column_schema(
    col: &ColumnDef,
    sample: Option<&Value>,
    connector: Connector,
    opts: &JsonOptions,
) -> Map<String, J> {
    let ty = col.type_name.as_str();
    if let Some(elem) = ty.strip_suffix("[]") {
        let elem_col = ColumnDef {
            name: String::new(),
            type_name: elem.to_string(),
            nullable: true,
        };
        let elem_sample = match sample {
            Some(Value::Array(a)) => a.elements.iter().find(|v| !matches!(v, Value::Null)),
            _ => None,
        };
        let mut items = column_schema(&elem_col, elem_sample, connector, opts);
        items.insert("optional".into(), J::Bool(true));
        let mut m = Map::new();
        m.insert("type".into(), "array".into());
        m.insert("items".into(), J::Object(items));
        return m;
    }
    let (base, args) = match ty.split_once('(') {
        Some((b, rest)) => (b, rest.split_once(')').map(|(a, _)| a)),
        None => (ty, None),
    };
    let num = |i: usize| -> Option<u32> {
        args.and_then(|a| a.split(',').nth(i))
            .and_then(|x| x.trim().parse().ok())
    };
    let binary = || match opts.binary_handling {
        BinaryHandling::Base64 => plain("bytes"),
        BinaryHandling::Hex => plain("string"),
    };
    let decimal = |precision: Option<u32>, scale: u32| match opts.decimal_handling {
        DecimalHandling::String => plain("string"),
        DecimalHandling::Double => plain("double"),
        DecimalHandling::Precise => {
            let mut params = Map::new();
            params.insert("scale".into(), scale.to_string().into());
            if let Some(p) = precision {
                params.insert("connect.decimal.precision".into(), p.to_string().into());
            }
            named(
                "bytes",
                "org.apache.kafka.connect.data.Decimal",
                Some(params),
            )
        }
    };
    let pg = connector == Connector::Postgres;
    if pg {
        return match base {
            "bool" => plain("boolean"),
            "int2" => plain("int16"),
            "int4" => plain("int32"),
            "int8" | "oid" => plain("int64"),
            "float4" => plain("float"),
            "float8" => plain("double"),
            "numeric" if args.is_some() => decimal(num(0), num(1).unwrap_or(0)),
            "numeric" => match opts.decimal_handling {
                DecimalHandling::Precise => {
                    let mut m = named("struct", "io.debezium.data.VariableScaleDecimal", None);
                    m.insert(
                        "fields".into(),
                        json!([
                            {"type": "int32", "optional": false, "field": "scale"},
                            {"type": "bytes", "optional": false, "field": "value"}
                        ]),
                    );
                    m.insert("doc".into(), "Variable scaled decimal".into());
                    m
                }
                _ => decimal(None, 0),
            },
            "money" => decimal(None, 2),
            "bytea" => binary(),
            "date" => named("int32", "io.debezium.time.Date", None),
            "time" if num(0).is_some_and(|p| p <= 3) => {
                named("int32", "io.debezium.time.Time", None)
            }
            "time" => named("int64", "io.debezium.time.MicroTime", None),
            "timetz" => named("string", "io.debezium.time.ZonedTime", None),
            "timestamp" if num(0).is_some_and(|p| p <= 3) => {
                named("int64", "io.debezium.time.Timestamp", None)
            }
            "timestamp" => named("int64", "io.debezium.time.MicroTimestamp", None),
            "timestamptz" => named("string", "io.debezium.time.ZonedTimestamp", None),
            "interval" => match opts.interval_handling {
                IntervalHandling::String => named("string", "io.debezium.time.Interval", None),
                IntervalHandling::Numeric => named("int64", "io.debezium.time.MicroDuration", None),
            },
            "uuid" => named("string", "io.debezium.data.Uuid", None),
            "json" | "jsonb" => named("string", "io.debezium.data.Json", None),
            "bit" if num(0) == Some(1) => plain("boolean"),
            // tidemark writes bit strings as `0`/`1` text (length kept).
            "bit" | "varbit" => plain("string"),
            _ => from_sample(sample, opts),
        };
    }
    match base {
        "tinyint" | "tinyint unsigned" | "smallint" => plain("int16"),
        "smallint unsigned" | "mediumint" | "mediumint unsigned" | "int" => plain("int32"),
        "int unsigned" | "bigint" => plain("int64"),
        "bigint unsigned" => match opts.bigint_unsigned_handling {
            BigintUnsignedHandling::Exact | BigintUnsignedHandling::Long => plain("int64"),
            BigintUnsignedHandling::Precise => decimal_bytes(20, 0),
        },
        "float" => plain("float"),
        "double" => plain("double"),
        "decimal" => decimal(num(0), num(1).unwrap_or(0)),
        "bit" if num(0) == Some(1) => plain("boolean"),
        "bit" => {
            let mut params = Map::new();
            params.insert("length".into(), num(0).unwrap_or(1).to_string().into());
            match opts.binary_handling {
                BinaryHandling::Base64 => named("bytes", "io.debezium.data.Bits", Some(params)),
                BinaryHandling::Hex => plain("string"),
            }
        }
        // The binlog carries no labels: `allowed` can't be given.
        "enum" => named("string", "io.debezium.data.Enum", None),
        "set" => named("string", "io.debezium.data.EnumSet", None),
        "char" | "varchar" | "text" => plain("string"),
        "binary" | "varbinary" | "blob" => binary(),
        "json" => named("string", "io.debezium.data.Json", None),
        "geometry" => geometry(opts),
        "date" => named("int32", "io.debezium.time.Date", None),
        "time" => named("int64", "io.debezium.time.MicroTime", None),
        "datetime" if num(0).unwrap_or(0) <= 3 => {
            named("int64", "io.debezium.time.Timestamp", None)
        }
        "datetime" => named("int64", "io.debezium.time.MicroTimestamp", None),
        "timestamp" => named("string", "io.debezium.time.ZonedTimestamp", None),
        "year" => named("int32", "io.debezium.time.Year", None),
        _ => from_sample(sample, opts),
    }
}

fn decimal_bytes(precision: u32, scale: u32) -> Map<String, J> {
    let mut params = Map::new();
    params.insert("scale".into(), scale.to_string().into());
    params.insert(
        "connect.decimal.precision".into(),
        precision.to_string().into(),
    );
    named(
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        Some(params),
    )
}

fn geometry(opts: &JsonOptions) -> Map<String, J> {
    let wkb = match opts.binary_handling {
        BinaryHandling::Base64 => "bytes",
        BinaryHandling::Hex => "string",
    };
    let mut m = named("struct", "io.debezium.data.geometry.Geometry", None);
    m.insert(
        "fields".into(),
        json!([
            {"type": wkb, "optional": false, "field": "wkb"},
            {"type": "int32", "optional": true, "field": "srid"}
        ]),
    );
    m
}

/// A type name tidemark doesn't map (PostgreSQL enums, domains, extension
/// types): the value's own kind decides.
fn from_sample(sample: Option<&Value>, opts: &JsonOptions) -> Map<String, J> {
    match sample {
        Some(Value::Bool(_)) => plain("boolean"),
        Some(Value::Int(_)) | Some(Value::UInt(_)) => plain("int64"),
        Some(Value::Float(_)) => plain("float"),
        Some(Value::Double(_)) => plain("double"),
        Some(Value::Enum(_)) => named("string", "io.debezium.data.Enum", None),
        Some(Value::Json(_)) => named("string", "io.debezium.data.Json", None),
        Some(Value::Uuid(_)) => named("string", "io.debezium.data.Uuid", None),
        Some(Value::Bytes(_)) if opts.binary_handling == BinaryHandling::Base64 => plain("bytes"),
        Some(Value::Geometry { .. }) => geometry(opts),
        Some(Value::Array(a)) => {
            let elem = a.elements.iter().find(|v| !matches!(v, Value::Null));
            let mut items = from_sample(elem, opts);
            items.insert("optional".into(), J::Bool(true));
            let mut m = plain("array");
            m.insert("items".into(), J::Object(items));
            m
        }
        _ => plain("string"),
    }
}

fn plain(ty: &str) -> Map<String, J> {
    let mut m = Map::new();
    m.insert("type".into(), ty.into());
    m
}

fn named(ty: &str, name: &str, params: Option<Map<String, J>>) -> Map<String, J> {
    let mut m = plain(ty);
    m.insert("name".into(), name.into());
    m.insert("version".into(), 1.into());
    if let Some(p) = params {
        m.insert("parameters".into(), J::Object(p));
    }
    m
}

/// True when `event::json` writes `v` as text although its column's schema
/// type is not a string.
pub fn written_as_text(v: &Value, opts: &JsonOptions) -> bool {
    match v {
        Value::Unchanged | Value::Infinite { .. } => true,
        Value::Date(d) => d.is_zero() && opts.zero_date_handling == ZeroDateHandling::String,
        Value::DateTime(dt) => {
            dt.date.is_zero() && opts.zero_date_handling == ZeroDateHandling::String
        }
        Value::Decimal(t) => {
            opts.decimal_handling != DecimalHandling::String
                && matches!(t.as_str(), "NaN" | "Infinity" | "-Infinity")
        }
        _ => false,
    }
}

/// Per column: whether any image of this message holds a value written as
/// text, or a null in a NOT NULL column (which makes the field optional).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Quirks {
    pub text: Vec<bool>,
    pub null: Vec<bool>,
}

impl Quirks {
    pub fn of(table: &TableSchema, images: &[&[Value]], opts: &JsonOptions) -> Quirks {
        let n = table.columns.len();
        let mut q = Quirks {
            text: vec![false; n],
            null: vec![false; n],
        };
        for img in images {
            for ((i, v), c) in img.iter().enumerate().zip(&table.columns) {
                q.text[i] |= written_as_text(v, opts);
                q.null[i] |= !c.nullable && matches!(v, Value::Null);
            }
        }
        q
    }

    /// True when the column types alone describe the message.
    pub fn is_plain(&self) -> bool {
        !self.text.iter().chain(&self.null).any(|x| *x)
    }
}

/// A field of a row struct.
fn field(
    col: &ColumnDef,
    sample: Option<&Value>,
    text: bool,
    null: bool,
    connector: Connector,
    opts: &JsonOptions,
) -> J {
    let mut m = if text {
        plain("string")
    } else {
        column_schema(col, sample, connector, opts)
    };
    m.insert("optional".into(), J::Bool(col.nullable || null || text));
    m.insert("field".into(), col.name.clone().into());
    // Keep Debezium's key order: type, (items/fields), optional, name, version, parameters, field.
    J::Object(reorder(m))
}

fn reorder(m: Map<String, J>) -> Map<String, J> {
    let order = [
        "type",
        "items",
        "fields",
        "optional",
        "name",
        "version",
        "doc",
        "parameters",
        "default",
        "field",
    ];
    let mut out = Map::new();
    for k in order {
        if let Some(v) = m.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in m {
        if !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    out
}

/// `{prefix}.{db|schema}.{table}`: Debezium's name base for a table's schemas.
pub fn schema_base(prefix: &str, table: &TableSchema) -> String {
    format!(
        "{prefix}.{}.{}",
        table.schema.as_deref().unwrap_or(&table.db),
        table.name
    )
}

/// The struct schema of a row image (`<base>.Value`).
pub fn row_schema(
    table: &TableSchema,
    sample: &[&[Value]],
    q: &Quirks,
    connector: Connector,
    opts: &JsonOptions,
    name: &str,
    field_name: Option<&str>,
) -> J {
    let fields: Vec<J> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let s = sample
                .iter()
                .filter_map(|img| img.get(i))
                .find(|v| !matches!(v, Value::Null));
            field(
                c,
                s,
                q.text.get(i).copied().unwrap_or(false),
                q.null.get(i).copied().unwrap_or(false),
                connector,
                opts,
            )
        })
        .collect();
    let mut m = Map::new();
    m.insert("type".into(), "struct".into());
    m.insert("fields".into(), J::Array(fields));
    m.insert("optional".into(), J::Bool(field_name.is_some()));
    m.insert("name".into(), name.into());
    if let Some(f) = field_name {
        m.insert("field".into(), f.into());
    }
    J::Object(m)
}

/// The key schema (`<base>.Key`): the key columns, never optional.
pub fn key_schema(
    table: &TableSchema,
    row: &[Value],
    connector: Connector,
    opts: &JsonOptions,
    base: &str,
) -> J {
    let fields: Vec<J> = table
        .key
        .iter()
        .filter_map(|&k| {
            let c = table.columns.get(k)?;
            let v = row.get(k);
            let text = v.is_some_and(|v| written_as_text(v, opts));
            let mut m = if text {
                plain("string")
            } else {
                column_schema(c, v, connector, opts)
            };
            m.insert("optional".into(), J::Bool(false));
            m.insert("field".into(), c.name.clone().into());
            Some(J::Object(reorder(m)))
        })
        .collect();
    json!({"type": "struct", "fields": fields, "optional": false, "name": format!("{base}.Key")})
}

/// `source` block schema, as each connector's plus tidemark's fields.
pub fn source_schema(connector: Connector, db_optional: bool) -> J {
    let s = |f: &str, opt: bool| json!({"type": "string", "optional": opt, "field": f});
    let i64f = |f: &str, opt: bool| json!({"type": "int64", "optional": opt, "field": f});
    let mut fields = vec![
        s("version", false),
        s("connector", false),
        s("name", false),
        i64f("ts_ms", false),
        json!({"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
               "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
               "default": "false", "field": "snapshot"}),
        s("db", db_optional),
        s("sequence", true),
        i64f("ts_us", true),
        i64f("ts_ns", true),
    ];
    let name = match connector {
        Connector::Postgres => {
            fields.extend([
                s("schema", true),
                s("table", true),
                i64f("txId", true),
                i64f("lsn", true),
                i64f("commit_lsn", true),
                i64f("xmin", true),
                s("origin", true),
                i64f("origin_lsn", true),
            ]);
            "io.debezium.connector.postgresql.Source"
        }
        Connector::Mysql | Connector::Mariadb => {
            fields.extend([
                s("table", true),
                i64f("server_id", false),
                s("gtid", true),
                s("file", false),
                i64f("pos", false),
                json!({"type": "int32", "optional": false, "field": "row"}),
                i64f("thread", true),
                s("query", true),
            ]);
            if connector == Connector::Mysql {
                "io.debezium.connector.mysql.Source"
            } else {
                "io.debezium.connector.mariadb.Source"
            }
        }
    };
    fields.push(s("task", true));
    json!({"type": "struct", "fields": fields, "optional": false, "name": name, "version": 1, "field": "source"})
}

/// The envelope schema of a row event (`<base>.Envelope`, version 2).
pub fn envelope_schema(
    table: &TableSchema,
    images: &[&[Value]],
    q: &Quirks,
    connector: Connector,
    opts: &JsonOptions,
    prefix: &str,
) -> J {
    let base = schema_base(prefix, table);
    let value_name = format!("{base}.Value");
    let i64opt = |f: &str| json!({"type": "int64", "optional": true, "field": f});
    json!({
        "type": "struct",
        "fields": [
            row_schema(table, images, q, connector, opts, &value_name, Some("before")),
            row_schema(table, images, q, connector, opts, &value_name, Some("after")),
            source_schema(connector, false),
            {"type": "struct", "fields": [
                {"type": "string", "optional": false, "field": "id"},
                {"type": "int64", "optional": false, "field": "total_order"},
                {"type": "int64", "optional": false, "field": "data_collection_order"}
            ], "optional": true, "name": "event.block", "version": 1, "field": "transaction"},
            {"type": "string", "optional": false, "field": "op"},
            i64opt("ts_ms"),
            i64opt("ts_us"),
            i64opt("ts_ns"),
            {"type": "string", "optional": true, "field": "position"}
        ],
        "optional": false,
        "name": format!("{base}.Envelope"),
        "version": 2
    })
}

fn connector_pkg(connector: Connector) -> &'static str {
    match connector {
        Connector::Mysql => "mysql",
        Connector::Mariadb => "mariadb",
        Connector::Postgres => "postgresql",
    }
}

/// Key schema of a schema-change record.
pub fn schema_change_key_schema(connector: Connector) -> J {
    json!({"type": "struct", "fields": [{"type": "string", "optional": false, "field": "databaseName"}],
           "optional": false, "name": format!("io.debezium.connector.{}.SchemaChangeKey", connector_pkg(connector)), "version": 1})
}

/// Value schema of a schema-change record (`tableChanges` is always empty in
/// tidemark's records).
pub fn schema_change_value_schema(connector: Connector, db_optional: bool) -> J {
    let s = |f: &str| json!({"type": "string", "optional": true, "field": f});
    json!({"type": "struct", "fields": [
        source_schema(connector, db_optional),
        {"type": "int64", "optional": false, "field": "ts_ms"},
        s("databaseName"), s("schemaName"), s("ddl"),
        {"type": "array", "items": {"type": "struct", "fields": [
            {"type": "string", "optional": false, "field": "type"},
            {"type": "string", "optional": false, "field": "id"}
        ], "optional": false, "name": "io.debezium.connector.schema.Change", "version": 1}, "optional": false, "field": "tableChanges"},
        s("ddl_kind"), s("position")
    ], "optional": false, "name": format!("io.debezium.connector.{}.SchemaChangeValue", connector_pkg(connector)), "version": 1})
}

/// Key schema of a transaction metadata record.
pub fn transaction_key_schema() -> J {
    json!({"type": "struct", "fields": [{"type": "string", "optional": false, "field": "id"}],
           "optional": false, "name": "io.debezium.connector.common.TransactionMetadataKey", "version": 1})
}

/// Value schema of a transaction metadata record.
pub fn transaction_value_schema() -> J {
    json!({"type": "struct", "fields": [
        {"type": "string", "optional": false, "field": "status"},
        {"type": "string", "optional": false, "field": "id"},
        {"type": "int64", "optional": true, "field": "event_count"},
        {"type": "array", "items": {"type": "struct", "fields": [
            {"type": "string", "optional": false, "field": "data_collection"},
            {"type": "int64", "optional": false, "field": "event_count"}
        ], "optional": true, "name": "event.collection", "version": 1}, "optional": true, "field": "data_collections"},
        {"type": "int64", "optional": false, "field": "ts_ms"}
    ], "optional": false, "name": "io.debezium.connector.common.TransactionMetadataValue", "version": 1})
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
