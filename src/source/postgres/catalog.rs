//! Catalog lookups over the SQL connection: user-defined types (enums,
//! domains, composites, arrays of them) for [`super::types::resolve`], and
//! the NOT NULL and primary key columns of a table.
//!
//! pgoutput names a column's type only by oid (and, for user types, a Type
//! message with its name), so the definitions come from `pg_type` as they
//! are when the Relation message arrives. A type dropped since is decoded as
//! its text.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::stream::RelationInfo;
use super::types::{FieldDef, TypeDef};
use crate::event::ColumnDefault;

/// Guard against catalog cycles: types nest at most this deep.
const MAX_ROUNDS: usize = 16;

/// Loads `oids` and every type they refer to (array elements, domain base
/// types, composite fields) that `known` does not already cover.
pub async fn load_types(
    client: &Client,
    oids: &[u32],
    known: impl Fn(u32) -> bool,
) -> Result<HashMap<u32, TypeDef>, tokio_postgres::Error> {
    let mut out: HashMap<u32, TypeDef> = HashMap::new();
    let mut todo: Vec<u32> = oids.to_vec();
    for _ in 0..MAX_ROUNDS {
        todo.retain(|o| !known(*o) && !out.contains_key(o));
        todo.sort_unstable();
        todo.dedup();
        if todo.is_empty() {
            break;
        }
        let wanted: Vec<i64> = todo.iter().map(|&o| i64::from(o)).collect();
        let rows = client
            .query(
                "SELECT t.oid::int8, t.typname::text, t.typtype::text, t.typbasetype::int8,
                        t.typtypmod, t.typelem::int8, t.typcategory::text, t.typrelid::int8
                   FROM pg_catalog.pg_type t
                  WHERE t.oid::int8 = ANY($1)",
                &[&wanted],
            )
            .await?;
        let mut next = Vec::new();
        for row in rows {
            let oid = oid_of(row.try_get(0)?);
            let name: String = row.try_get(1)?;
            let typtype: String = row.try_get(2)?;
            let base = oid_of(row.try_get(3)?);
            let typmod: i32 = row.try_get(4)?;
            let elem = oid_of(row.try_get(5)?);
            let category: String = row.try_get(6)?;
            let relid: i64 = row.try_get(7)?;
            let def = match typtype.as_str() {
                "e" => TypeDef::Enum { name },
                "d" => {
                    next.push(base);
                    TypeDef::Domain {
                        name,
                        base_oid: base,
                        base_typmod: typmod,
                    }
                }
                "c" => {
                    let fields = composite_fields(client, relid).await?;
                    next.extend(fields.iter().map(|f| f.type_oid));
                    TypeDef::Composite { name, fields }
                }
                _ if category == "A" && elem != 0 => {
                    next.push(elem);
                    TypeDef::Array {
                        name,
                        element_oid: elem,
                    }
                }
                _ => TypeDef::Other { name },
            };
            out.insert(oid, def);
        }
        // Oids the catalog doesn't have are left out: they decode as text.
        todo = next;
    }
    Ok(out)
}

async fn composite_fields(
    client: &Client,
    relid: i64,
) -> Result<Vec<FieldDef>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid::int8, a.atttypmod
               FROM pg_catalog.pg_attribute a
              WHERE a.attrelid::int8 = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&relid],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(FieldDef {
                name: r.try_get(0)?,
                type_oid: oid_of(r.try_get(1)?),
                typmod: r.try_get(2)?,
            })
        })
        .collect()
}

/// NOT NULL and primary key columns of relation `rel_id`; empty when the
/// table is gone.
pub async fn load_relation(
    client: &Client,
    rel_id: u32,
) -> Result<RelationInfo, tokio_postgres::Error> {
    let rows = client
        .query(
            // attgenerated (PostgreSQL 12+) read through to_jsonb: absent
            // on older servers; a generated column's expression is no
            // default.
            "SELECT a.attname::text, a.attnotnull,
                    array_position(i.indkey::int2[], a.attnum),
                    CASE WHEN coalesce(to_jsonb(a)->>'attgenerated', '') = ''
                         THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END
               FROM pg_catalog.pg_attribute a
               LEFT JOIN pg_catalog.pg_index i
                 ON i.indrelid = a.attrelid AND i.indisprimary
               LEFT JOIN pg_catalog.pg_attrdef d
                 ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid::int8 = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&i64::from(rel_id)],
        )
        .await?;
    let mut info = RelationInfo::default();
    let mut pk: Vec<(i32, String)> = Vec::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        let not_null: bool = r.try_get(1)?;
        let key_pos: Option<i32> = r.try_get(2)?;
        let default: Option<String> = r.try_get(3)?;
        if let Some(d) = default {
            info.defaults.insert(name.clone(), d);
        }
        if not_null {
            info.not_null.insert(name.clone());
        }
        if let Some(p) = key_pos {
            pk.push((p, name));
        }
    }
    pk.sort();
    info.primary_key = pk.into_iter().map(|(_, n)| n).collect();
    // The other unique keys (tables a database target creates get them).
    let uniques = client
        .query(
            "SELECT array_agg(a.attname::text ORDER BY k.ord)
               FROM pg_catalog.pg_index i
               CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid::int8 = $1 AND i.indisunique AND NOT i.indisprimary
                AND i.indpred IS NULL AND i.indexprs IS NULL
              GROUP BY i.indexrelid
              ORDER BY i.indexrelid",
            &[&i64::from(rel_id)],
        )
        .await?;
    for r in uniques {
        info.unique_keys.push(r.try_get(0)?);
    }
    Ok(info)
}

/// An oid read as int8 (0, the invalid oid, if out of range).
fn oid_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// A default as `pg_get_expr` spells it, where another engine (or
/// database) can declare it: constants (`'abc'::text`, `0`, `'-1'::integer`,
/// `true`) and the time of the insert (`now()`, `CURRENT_TIMESTAMP`).
/// Sequences (`nextval(…)`), other functions and expressions: `None`.
pub fn portable_default(expr: &str) -> Option<ColumnDefault> {
    let e = expr.trim();
    let lower = e.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "now()"
            | "current_timestamp"
            | "statement_timestamp()"
            | "transaction_timestamp()"
            | "localtimestamp"
            | "clock_timestamp()"
    ) {
        return Some(ColumnDefault::CurrentTimestamp);
    }
    match lower.as_str() {
        "true" => return Some(ColumnDefault::Bool(true)),
        "false" => return Some(ColumnDefault::Bool(false)),
        _ => {}
    }
    if let Some(rest) = e.strip_prefix('\'') {
        // 'text' with '' for a quote, then nothing or a cast.
        let mut out = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                    chars.next();
                    out.push('\'');
                    continue;
                }
                let tail = &rest[i + 1..];
                let cast_only = tail.is_empty()
                    || (tail.starts_with("::")
                        && tail[2..]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || " _\"()[],".contains(c)));
                return cast_only.then_some(ColumnDefault::Text(out));
            }
            out.push(c);
        }
        return None;
    }
    // A number, perhaps in parentheses and cast: `0`, `(-1.5)::numeric`.
    let bare = e.split("::").next().unwrap_or(e).trim();
    let bare = bare
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .unwrap_or(bare);
    ColumnDefault::number(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_that_travel_are_constants_and_the_insert_time() {
        let text = |t: &str| Some(ColumnDefault::Text(t.into()));
        assert_eq!(portable_default("'it''s'::text"), text("it's"));
        assert_eq!(
            portable_default("'{}'::jsonb"),
            text("{}"),
            "a constant of any type"
        );
        assert_eq!(
            portable_default("'2024-01-01 00:00:00'::timestamp without time zone"),
            text("2024-01-01 00:00:00")
        );
        assert_eq!(portable_default("0"), text("0"));
        assert_eq!(portable_default("'-1'::integer"), text("-1"));
        assert_eq!(portable_default("(-1.5)::numeric"), text("-1.5"));
        assert_eq!(portable_default("true"), Some(ColumnDefault::Bool(true)));
        assert_eq!(
            portable_default("now()"),
            Some(ColumnDefault::CurrentTimestamp)
        );
        assert_eq!(
            portable_default("CURRENT_TIMESTAMP"),
            Some(ColumnDefault::CurrentTimestamp)
        );
        assert_eq!(portable_default("nextval('t_id_seq'::regclass)"), None);
        assert_eq!(portable_default("gen_random_uuid()"), None);
        assert_eq!(portable_default("('a'::text || 'b'::text)"), None);
        assert_eq!(portable_default("'a'::text || 'b'::text"), None);
    }
}
