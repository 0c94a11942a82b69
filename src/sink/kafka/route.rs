//! Routing: which topic and partition each message goes to.
//!
//! Topics come from templates (`{prefix}.{db}.{table}`) with per-table
//! overrides; partitions from the message key, hashed with Kafka's own
//! murmur2 (the Java client's default partitioner), so a row's changes all
//! land, in order, in one partition — the same one a Java producer would
//! pick for the same key bytes. Pure: no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::topic_char;
use crate::event::{ChangeEvent, TableSchema};

/// A parsed topic name template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Prefix,
    Db,
    Schema,
    Table,
}

/// What a template is filled with.
pub struct Names<'a> {
    pub prefix: &'a str,
    pub db: &'a str,
    /// PostgreSQL schema; MySQL uses the database.
    pub schema: &'a str,
    pub table: &'a str,
}

impl Template {
    /// Parses `{prefix}.{db}.{table}`-style text; errors name what is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or_else(|| {
                    format!("{text:?}: unterminated `{{` (placeholders: {{prefix}}, {{db}}, {{schema}}, {{table}})")
                })?;
                parts.push(match &after[..end] {
                    "prefix" => Part::Prefix,
                    "db" => Part::Db,
                    "schema" => Part::Schema,
                    "table" => Part::Table,
                    other => {
                        return Err(format!(
                            "{text:?}: unknown placeholder {{{other}}}; use {{prefix}}, {{db}}, {{schema}} or {{table}}"
                        ));
                    }
                });
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let lit = &rest[..end];
                if let Some(bad) = lit.chars().find(|c| !topic_char(*c)) {
                    return Err(format!(
                        "{text:?}: {bad:?} can't be in a topic name (letters, digits, '.', '_', '-')"
                    ));
                }
                parts.push(Part::Lit(lit.to_string()));
                rest = &rest[end..];
            }
        }
        if parts.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Template { parts })
    }

    /// The topic name; characters Kafka refuses in names are replaced by `_`.
    pub fn render(&self, n: &Names<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            let text = match p {
                Part::Lit(s) => s.as_str(),
                Part::Prefix => n.prefix,
                Part::Db => n.db,
                Part::Schema => n.schema,
                Part::Table => n.table,
            };
            out.extend(text.chars().map(|c| if topic_char(c) { c } else { '_' }));
        }
        out.truncate(249);
        out
    }

    /// True when the template names a per-table topic.
    pub fn uses_table(&self) -> bool {
        self.parts.contains(&Part::Table)
    }
}

/// Topic names for every kind of message of one task.
pub struct Router {
    prefix: String,
    table: Template,
    overrides: HashMap<String, Template>,
    pub schema_change: String,
    pub transaction: Option<String>,
    pub dead_letter: String,
    /// The last table routed and its topic: events come in runs of one table.
    last: Option<(Arc<TableSchema>, Arc<str>)>,
}

impl Router {
    /// `table`: the row-event template; `overrides` by `db.table` /
    /// `schema.table`. Templates must have been validated.
    pub fn new(
        prefix: &str,
        table: &str,
        overrides: &[(String, String)],
        schema_change: &str,
        transaction: Option<&str>,
        dead_letter: &str,
    ) -> Result<Router, String> {
        let fixed = |t: &str| -> Result<String, String> {
            Ok(Template::parse(t)?.render(&Names {
                prefix,
                db: "",
                schema: "",
                table: "",
            }))
        };
        Ok(Router {
            prefix: prefix.to_string(),
            table: Template::parse(table)?,
            overrides: overrides
                .iter()
                .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
                .collect::<Result<_, String>>()?,
            schema_change: fixed(schema_change)?,
            transaction: transaction.map(fixed).transpose()?,
            dead_letter: fixed(dead_letter)?,
            last: None,
        })
    }

    /// Topic of a row (or truncate) event's table.
    pub fn table_topic(&mut self, table: &Arc<TableSchema>) -> Arc<str> {
        if let Some((t, topic)) = &self.last
            && (Arc::ptr_eq(t, table) || same_table(t, table))
        {
            return topic.clone();
        }
        let template = self
            .overrides
            .get(&table.qualified_name())
            .unwrap_or(&self.table);
        let topic: Arc<str> = template
            .render(&Names {
                prefix: &self.prefix,
                db: &table.db,
                schema: table.schema.as_deref().unwrap_or(&table.db),
                table: &table.name,
            })
            .into();
        self.last = Some((table.clone(), topic.clone()));
        topic
    }

    /// Topic of any event: its table's, or the schema-change topic for DDL.
    pub fn event_topic(&mut self, ev: &ChangeEvent) -> Arc<str> {
        match (&ev.table, ev.op) {
            (Some(t), op) if op != crate::event::Op::Ddl => self.table_topic(t),
            _ => self.schema_change.as_str().into(),
        }
    }
}

fn same_table(a: &TableSchema, b: &TableSchema) -> bool {
    a.name == b.name && a.db == b.db && a.schema == b.schema
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a key among `partitions`, as Kafka's default
/// partitioner: `(murmur2(key) & 0x7fffffff) % partitions`. Messages without
/// a key (tables without a primary key, truncates) go to partition 0, so
/// that their order is kept too.
pub fn partition_for(key: Option<&[u8]>, partitions: i32) -> i32 {
    match key {
        Some(k) if partitions > 1 => (murmur2(k) & 0x7fff_ffff) % partitions,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ColumnDef;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        let k = br#"{"id":42}"#;
        let p = partition_for(Some(k), 7);
        assert!((0..7).contains(&p));
        assert_eq!(partition_for(Some(k), 7), p);
        assert_eq!(partition_for(None, 7), 0);
        assert_eq!(partition_for(Some(k), 1), 0);
        // Different keys spread.
        let used: std::collections::HashSet<i32> = (0..100)
            .map(|i| partition_for(Some(format!("{{\"id\":{i}}}").as_bytes()), 4))
            .collect();
        assert_eq!(used.len(), 4);
    }

    fn table(db: &str, schema: Option<&str>, name: &str) -> Arc<TableSchema> {
        Arc::new(TableSchema {
            merged: None,
            db: db.into(),
            schema: schema.map(Into::into),
            name: name.into(),
            columns: vec![ColumnDef {
                name: "id".into(),
                type_name: "int".into(),
                nullable: false,
            }],
            key: vec![0],
            uniques: Vec::new(),
            before_complete: true,
            defaults: Vec::new(),
            version: 1,
        })
    }

    #[test]
    fn templates_and_overrides() {
        let mut r = Router::new(
            "fx",
            "{prefix}.{db}.{table}",
            &[("shop.orders".into(), "orders-{prefix}".into())],
            "{prefix}",
            Some("{prefix}.transaction"),
            "{prefix}.dead-letter",
        )
        .unwrap();
        assert_eq!(
            &*r.table_topic(&table("fxdb", None, "types")),
            "fx.fxdb.types"
        );
        assert_eq!(&*r.table_topic(&table("shop", None, "orders")), "orders-fx");
        assert_eq!(r.schema_change, "fx");
        assert_eq!(r.transaction.as_deref(), Some("fx.transaction"));
        let mut pg = Router::new(
            "fx",
            "{prefix}.{schema}.{table}",
            &[],
            "{prefix}",
            None,
            "d",
        )
        .unwrap();
        assert_eq!(
            &*pg.table_topic(&table("fxdb", Some("public"), "types")),
            "fx.public.types"
        );
        // Names Kafka refuses are made safe.
        assert_eq!(
            &*pg.table_topic(&table("fxdb", Some("my schema"), "tä")),
            "fx.my_schema.t_"
        );
    }

    #[test]
    fn template_errors() {
        assert!(
            Template::parse("{prefix}.{tabel}")
                .unwrap_err()
                .contains("{tabel}")
        );
        assert!(Template::parse("a b").unwrap_err().contains("' '"));
        assert!(Template::parse("{prefix").is_err());
        assert!(Template::parse("").is_err());
        assert!(Template::parse("{prefix}.{table}").unwrap().uses_table());
    }
}
