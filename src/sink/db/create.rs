//! Target column types for tables (and columns) the target lacks, from the
//! source's type names: the mapping docs/type-mapping.md lays out.

use crate::event::{ColumnDef, ColumnDefault, Connector, TableSchema};

/// PostgreSQL type for a source column.
pub fn postgres_type(source: Connector, c: &ColumnDef, key: bool) -> Result<String, String> {
    let t = c.type_name.to_ascii_lowercase();
    if source == Connector::Postgres {
        // Same engine: the source's own type (user types must exist on the
        // target under the same name).
        return Ok(pg_internal_to_sql(&t));
    }
    let _ = key;
    let (base, unsigned) = match t.strip_suffix(" unsigned") {
        Some(b) => (b, true),
        None => (t.as_str(), false),
    };
    let name = base.split('(').next().unwrap_or(base);
    let args = base.find('(').map(|i| &base[i..]).unwrap_or_default();
    Ok(match (name, unsigned) {
        ("tinyint", _) | ("smallint", false) => "smallint".into(),
        ("smallint", true) | ("mediumint", _) | ("int", false) => "integer".into(),
        ("int", true) | ("bigint", false) => "bigint".into(),
        ("bigint", true) => "numeric(20,0)".into(),
        ("float", _) => "real".into(),
        ("double", _) => "double precision".into(),
        ("decimal", _) => format!("numeric{args}"),
        ("bit", _) => format!("bit{args}"),
        ("enum" | "set" | "char" | "varchar" | "text", _) => "text".into(),
        ("binary" | "varbinary" | "blob", _) => "bytea".into(),
        ("json", _) => "json".into(),
        ("geometry", _) => "bytea".into(),
        ("vector", _) => "bytea".into(),
        ("date", _) => "date".into(),
        // TIME spans ±838 h: only an interval holds every value.
        ("time", _) => "interval".into(),
        ("datetime", _) => format!("timestamp{args}"),
        ("timestamp", _) => format!("timestamp{args} with time zone"),
        ("year", _) => "smallint".into(),
        (other, _) => {
            return Err(format!(
                "no PostgreSQL type for MySQL type {other:?} (column {}): create the target table by hand",
                c.name
            ));
        }
    })
}

/// PostgreSQL's internal type names (`int4`, `bpchar(5)`, `timestamptz(3)`)
/// in SQL spelling.
fn pg_internal_to_sql(t: &str) -> String {
    if let Some(elem) = t.strip_suffix("[]") {
        return format!("{}[]", pg_internal_to_sql(elem));
    }
    let (name, args) = match t.find('(') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    match name {
        "bpchar" => format!("character{args}"),
        "timestamptz" => format!("timestamp{args} with time zone"),
        "timetz" => format!("time{args} with time zone"),
        "varbit" => format!("bit varying{args}"),
        _ => t.to_string(),
    }
}

/// MySQL/MariaDB type for a source column; `key`: the column is part of
/// the primary key (MySQL indexes at most 3072 bytes of it).
pub fn mysql_type(source: Connector, c: &ColumnDef, key: bool) -> Result<String, String> {
    let t = c.type_name.to_ascii_lowercase();
    let (base, unsigned) = match t.strip_suffix(" unsigned") {
        Some(b) => (b, true),
        None => (t.as_str(), false),
    };
    let name = base.split('(').next().unwrap_or(base);
    let args = base.find('(').map(|i| &base[i..]).unwrap_or_default();
    let text = || if key { "varchar(768)" } else { "longtext" }.to_string();
    let bytes = || if key { "varbinary(3072)" } else { "longblob" }.to_string();
    if matches!(source, Connector::Mysql | Connector::Mariadb) {
        let u = if unsigned { " unsigned" } else { "" };
        return Ok(match name {
            "tinyint" | "smallint" | "mediumint" | "int" | "bigint" => format!("{name}{u}"),
            "float" | "double" | "date" | "json" | "geometry" | "year" => name.into(),
            "decimal" | "bit" | "time" | "datetime" | "timestamp" => format!("{name}{args}"),
            // A key column keeps its declared length where an index can
            // hold it (a composite key of long columns would not fit).
            "char" | "varchar" if key && declared_chars(args).is_some_and(|n| n <= 768) => {
                format!("varchar{args}")
            }
            "char" | "varchar" | "text" | "enum" | "set" => text(),
            "binary" | "varbinary" | "blob" | "vector" => bytes(),
            other => {
                return Err(format!(
                    "no MySQL type for {other:?} (column {}): create the target table by hand",
                    c.name
                ));
            }
        });
    }
    if t.ends_with("[]") {
        return Ok("json".into());
    }
    Ok(match name {
        "bool" => "tinyint(1)".into(),
        "int2" => "smallint".into(),
        "int4" | "oid" => "int".into(),
        "int8" => "bigint".into(),
        "float4" => "float".into(),
        "float8" => "double".into(),
        "numeric" => {
            // PostgreSQL numeric without a precision holds up to 131072
            // digits; MySQL's widest is DECIMAL(65,30).
            if args.is_empty() {
                "decimal(65,30)".into()
            } else {
                format!("decimal{args}")
            }
        }
        "varchar" if !args.is_empty() && !key => format!("varchar{args}"),
        "bpchar" if !args.is_empty() => format!("char{args}"),
        "text" | "varchar" | "bpchar" | "name" | "citext" | "xml" | "tsvector" => text(),
        "bytea" => bytes(),
        "bit" if args.is_empty() => "bit(1)".into(),
        "bit" => {
            let n: u32 = args
                .trim_matches(|c| c == '(' || c == ')')
                .parse()
                .unwrap_or(65);
            if n <= 64 {
                format!("bit({n})")
            } else {
                "varchar(1024)".into()
            }
        }
        "varbit" => "varchar(1024)".into(),
        "date" => "date".into(),
        "time" => format!("time{}", if args.is_empty() { "(6)" } else { args }),
        "timetz" => "varchar(32)".into(),
        "timestamp" => format!("datetime{}", if args.is_empty() { "(6)" } else { args }),
        // MySQL TIMESTAMP ends in 2038: a DATETIME holding UTC.
        "timestamptz" => format!("datetime{}", if args.is_empty() { "(6)" } else { args }),
        "interval" => "varchar(64)".into(),
        "uuid" => "char(36)".into(),
        "json" | "jsonb" => "json".into(),
        "inet" | "cidr" | "macaddr" | "macaddr8" => "varchar(64)".into(),
        "money" => "decimal(20,2)".into(),
        _ => text(),
    })
}

/// The `n` of `(n)`.
fn declared_chars(args: &str) -> Option<u32> {
    args.strip_prefix('(')?
        .strip_suffix(')')?
        .trim()
        .parse()
        .ok()
}

/// ` DEFAULT …` for a PostgreSQL column of type `ty` (as created), or
/// nothing: constants as literals the type reads, the insert time for
/// date and time types.
pub fn postgres_default(d: Option<&ColumnDefault>, ty: &str) -> String {
    match d {
        Some(ColumnDefault::Text(t)) => format!(" DEFAULT '{}'", t.replace('\'', "''")),
        Some(ColumnDefault::Bool(b)) if ty == "boolean" || ty == "bool" => {
            format!(" DEFAULT {b}")
        }
        Some(ColumnDefault::Bool(b)) => format!(" DEFAULT {}", u8::from(*b)),
        Some(ColumnDefault::CurrentTimestamp)
            if ty.starts_with("timestamp") || ty == "date" || ty.starts_with("time") =>
        {
            " DEFAULT CURRENT_TIMESTAMP".into()
        }
        _ => String::new(),
    }
}

/// ` DEFAULT …` for a MySQL/MariaDB column of type `ty` (as created) from
/// `source`, or nothing. Text, blob and JSON columns take the
/// expression form `DEFAULT ('…')` (MySQL 8 refuses a plain literal
/// there). PostgreSQL constants of types MySQL reads otherwise (arrays,
/// zoned times, intervals, bytes, bit strings) are left out.
pub fn mysql_default(d: Option<&ColumnDefault>, ty: &str, source: &ColumnDef) -> String {
    let src = source.type_name.to_ascii_lowercase();
    let base = ty.split('(').next().unwrap_or(ty);
    match d {
        Some(ColumnDefault::Text(_))
            if src.ends_with("[]")
                || [
                    "timestamptz",
                    "timetz",
                    "interval",
                    "bytea",
                    "bit",
                    "varbit",
                ]
                .iter()
                .any(|t| src.split('(').next() == Some(*t)) =>
        {
            String::new()
        }
        Some(ColumnDefault::Text(t)) => {
            let lit = format!("'{}'", t.replace('\\', "\\\\").replace('\'', "''"));
            if base.ends_with("text") || base.ends_with("blob") || base == "json" {
                format!(" DEFAULT ({lit})")
            } else {
                format!(" DEFAULT {lit}")
            }
        }
        Some(ColumnDefault::Bool(b)) => format!(" DEFAULT {}", u8::from(*b)),
        Some(ColumnDefault::CurrentTimestamp) if base == "datetime" || base == "timestamp" => {
            let fsp = ty
                .find('(')
                .map(|i| &ty[i..])
                .filter(|a| a.len() > 2)
                .unwrap_or("");
            format!(" DEFAULT CURRENT_TIMESTAMP{fsp}")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(t: &str) -> ColumnDef {
        ColumnDef {
            name: "c".into(),
            type_name: t.into(),
            nullable: true,
        }
    }

    #[test]
    fn mysql_types_map_to_postgres_without_loss() {
        let m = |t| postgres_type(Connector::Mariadb, &col(t), false).expect("maps");
        assert_eq!(m("bigint unsigned"), "numeric(20,0)");
        assert_eq!(m("int unsigned"), "bigint");
        assert_eq!(m("decimal(65,30)"), "numeric(65,30)");
        assert_eq!(m("time(3)"), "interval");
        assert_eq!(m("timestamp(6)"), "timestamp(6) with time zone");
        assert_eq!(m("datetime(0)"), "timestamp(0)");
        assert_eq!(m("bit(5)"), "bit(5)");
    }

    #[test]
    fn postgres_types_map_to_mysql() {
        let m = |t, key| mysql_type(Connector::Postgres, &col(t), key).expect("maps");
        assert_eq!(m("numeric", false), "decimal(65,30)");
        assert_eq!(m("numeric(10,2)", false), "decimal(10,2)");
        assert_eq!(m("text", true), "varchar(768)");
        assert_eq!(m("timestamptz(3)", false), "datetime(3)");
        assert_eq!(m("int4[]", false), "json");
        assert_eq!(m("bit(100)", false), "varchar(1024)");
        assert_eq!(
            postgres_type(Connector::Postgres, &col("timestamptz(3)"), false).expect("same engine"),
            "timestamp(3) with time zone"
        );
        assert_eq!(
            postgres_type(Connector::Postgres, &col("bpchar(4)"), false).expect("same engine"),
            "character(4)"
        );
    }

    #[test]
    fn defaults_are_declared_where_the_target_reads_them() {
        let text = |t: &str| ColumnDefault::Text(t.into());
        assert_eq!(
            postgres_default(Some(&text("it's")), "text"),
            " DEFAULT 'it''s'"
        );
        assert_eq!(
            postgres_default(Some(&ColumnDefault::CurrentTimestamp), "timestamp(3)"),
            " DEFAULT CURRENT_TIMESTAMP"
        );
        assert_eq!(
            postgres_default(Some(&ColumnDefault::CurrentTimestamp), "integer"),
            ""
        );
        assert_eq!(
            postgres_default(Some(&ColumnDefault::Bool(true)), "boolean"),
            " DEFAULT true"
        );
        let src = col("varchar(10)");
        assert_eq!(
            mysql_default(Some(&text("a\\b'c")), "varchar(10)", &src),
            " DEFAULT 'a\\\\b''c'"
        );
        assert_eq!(
            mysql_default(Some(&text("{}")), "json", &col("jsonb")),
            " DEFAULT ('{}')"
        );
        assert_eq!(
            mysql_default(Some(&ColumnDefault::CurrentTimestamp), "datetime(6)", &src),
            " DEFAULT CURRENT_TIMESTAMP(6)"
        );
        assert_eq!(
            mysql_default(Some(&ColumnDefault::CurrentTimestamp), "longtext", &src),
            ""
        );
        assert_eq!(
            mysql_default(Some(&text("{1,2}")), "json", &col("int4[]")),
            "",
            "a PostgreSQL array literal is no JSON"
        );
        assert_eq!(
            mysql_default(
                Some(&ColumnDefault::Bool(false)),
                "tinyint(1)",
                &col("bool")
            ),
            " DEFAULT 0"
        );
    }
}

/// A target table made from a source table: its column definitions with
/// the source's defaults, the same without them (for a target that refuses
/// a default), and its key clauses.
#[derive(Debug)]
pub struct TableDef {
    pub with_defaults: Vec<String>,
    pub plain: Vec<String>,
    pub keys: Vec<String>,
}

impl TableDef {
    /// The body of `CREATE TABLE … (<body>)`.
    pub fn body(&self, with_defaults: bool) -> String {
        let cols = if with_defaults {
            &self.with_defaults
        } else {
            &self.plain
        };
        cols.iter()
            .chain(&self.keys)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The definition of a target table for `src` on `engine`.
pub fn table_def(
    src: &TableSchema,
    engine: super::Engine,
    source: Connector,
) -> Result<TableDef, String> {
    use super::Engine;
    let ident = match engine {
        Engine::Mysql => super::apply::my_ident,
        Engine::Postgres => super::apply::pg_ident,
    };
    let (mut with_defaults, mut plain) = (Vec::new(), Vec::new());
    for (i, c) in src.columns.iter().enumerate() {
        let indexed = src.key.contains(&i) || src.uniques.iter().any(|u| u.contains(&i));
        let d = src.defaults.get(i).and_then(Option::as_ref);
        let (ty, nn, default) = match engine {
            Engine::Mysql => {
                let ty = mysql_type(source, c, indexed)?;
                let default = mysql_default(d, &ty, c);
                (ty, if c.nullable { " NULL" } else { " NOT NULL" }, default)
            }
            Engine::Postgres => {
                let ty = postgres_type(source, c, indexed)?;
                let default = postgres_default(d, &ty);
                (ty, if c.nullable { "" } else { " NOT NULL" }, default)
            }
        };
        with_defaults.push(format!("{} {ty}{nn}{default}", ident(&c.name)));
        plain.push(format!("{} {ty}{nn}", ident(&c.name)));
    }
    let names = |idx: &[usize]| -> Vec<String> {
        idx.iter()
            .filter_map(|&i| src.columns.get(i))
            .map(|c| ident(&c.name))
            .collect()
    };
    let mut keys = Vec::new();
    if !src.key.is_empty() {
        keys.push(format!("PRIMARY KEY ({})", names(&src.key).join(", ")));
    }
    let unique = match engine {
        Engine::Mysql => "UNIQUE KEY",
        Engine::Postgres => "UNIQUE",
    };
    for u in &src.uniques {
        let cols = names(u);
        if cols.len() == u.len() && !cols.is_empty() {
            keys.push(format!("{unique} ({})", cols.join(", ")));
        }
    }
    Ok(TableDef {
        with_defaults,
        plain,
        keys,
    })
}
