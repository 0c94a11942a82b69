//! `[tasks.sink]` for database targets: `type = "mysql"` and `type = "postgres"`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::{TlsConfig, TlsMode, redact_url};
use crate::select::TablePattern;

/// A MySQL/MariaDB or PostgreSQL target that change events are applied to.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSinkConfig {
    /// `mysql://user:password@host:port` or
    /// `postgres://user:password@host:port/database`; `${VAR}` for secrets.
    pub url: String,
    /// TLS to the target, as for sources.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Where source tables go. A key without a dot maps a database (MySQL)
    /// or schema (PostgreSQL) as a whole, `{ shop = "shop_dr" }`; a key
    /// `db.table` maps one table, `{ "shop.orders" = "archive.orders_2026" }`.
    /// Unmapped tables keep their names: MySQL `db.table` ⇄ PostgreSQL
    /// `schema.table`.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// What to do when the target disagrees with an event.
    #[serde(default)]
    pub conflict: ConflictConfig,
    /// Create a target table that doesn't exist from the source table's
    /// columns and key (see docs/type-mapping.md). Default true.
    #[serde(default = "default_true")]
    pub create_tables: bool,
    /// Rows one target transaction may hold before it commits inside a
    /// larger source transaction (the target then briefly shows part of
    /// it; the position resumes exactly either way). Default 100000.
    #[serde(default = "default_max_tx_rows")]
    pub max_tx_rows: usize,
    /// PostgreSQL: apply under this replication origin (parallel workers
    /// under `<origin>_w<n>`), so that the source of a reverse task with
    /// `exclude_replicated` leaves these changes out: set it on both tasks
    /// of a bidirectional pair. Must start with `tidemark`; unique per
    /// target server. Needs the replication-origin functions; each origin
    /// in use takes one of the target's `max_replication_slots`. Default:
    /// none.
    #[serde(default)]
    pub origin: Option<String>,
    /// Connections applying at once: independent source transactions of a
    /// group go to several of them (see docs/targets.md for the ordering
    /// rules); 1 applies everything on one connection. Default 4.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Seconds a statement may wait for a lock on the target (a row an
    /// application or an operator holds) before it gives up and the
    /// transaction is applied again with backoff: never a silent stall.
    /// Default 10.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout_secs: u64,
    /// Schema (PostgreSQL) or database (MySQL) holding tidemark's position
    /// table `apply_position` on the target. Default `tidemark`.
    #[serde(default = "default_meta_schema")]
    pub meta_schema: String,
    /// Hold a lock on the target, named after the task and `meta_schema`,
    /// while the task applies: a second tidemark running the same task id
    /// into the same target waits (and takes over once the first stops)
    /// instead of both writing rows and the one position row. Turn it off
    /// only where sessions can't hold a lock (PgBouncer in transaction
    /// mode). Default true.
    #[serde(default = "default_true")]
    pub exclusive: bool,
}

fn default_true() -> bool {
    true
}

fn default_max_tx_rows() -> usize {
    100_000
}

fn default_lock_timeout() -> u64 {
    10
}

fn default_workers() -> usize {
    4
}

fn default_meta_schema() -> String {
    "tidemark".into()
}

impl fmt::Debug for DbSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("tls", &self.tls)
            .field("map", &self.map)
            .field("conflict", &self.conflict)
            .field("create_tables", &self.create_tables)
            .field("max_tx_rows", &self.max_tx_rows)
            .field("meta_schema", &self.meta_schema)
            .field("origin", &self.origin)
            .field("workers", &self.workers)
            .field("lock_timeout_secs", &self.lock_timeout_secs)
            .field("exclusive", &self.exclusive)
            .finish()
    }
}

/// What to do when the target disagrees with an event.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConflictAction {
    /// The source wins: an existing row is replaced, a missing row of an
    /// update is inserted, a missing row of a delete is nothing to do.
    Overwrite,
    /// The target wins: the event is skipped.
    Ignore,
    /// The task fails, naming the table, the key and the position.
    Fail,
}

impl ConflictAction {
    pub fn name(self) -> &'static str {
        match self {
            ConflictAction::Overwrite => "overwrite",
            ConflictAction::Ignore => "ignore",
            ConflictAction::Fail => "fail",
        }
    }
}

/// `[tasks.sink.conflict]`: a default, per-operation overrides, and
/// per-table overrides (`db.table` globs, first match wins).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConflictConfig {
    /// For every operation not set below. Default `overwrite`.
    #[serde(default = "default_conflict")]
    pub default: ConflictAction,
    /// An insert (or snapshot row) whose key exists on the target.
    pub insert: Option<ConflictAction>,
    /// An update whose row is missing, or whose new key is taken.
    pub update: Option<ConflictAction>,
    /// A delete whose row is missing.
    pub delete: Option<ConflictAction>,
    /// Per-table rules: `[tasks.sink.conflict.tables."shop.audit_*"]` with
    /// the same keys.
    #[serde(default)]
    pub tables: BTreeMap<String, ConflictRule>,
    /// Record every conflict in `<meta_schema>.conflicts` on the target
    /// (table, operation, key, source and target rows, position, action,
    /// time), in the same transaction as the change. Default false.
    #[serde(default)]
    pub journal: bool,
    /// Check an update's before image, where the source sends the whole
    /// row (MySQL/MariaDB row images, PostgreSQL `REPLICA IDENTITY FULL`),
    /// against the target's row: a row that differs outside the key is an
    /// update conflict. Default true.
    #[serde(default = "yes")]
    pub compare_before: bool,
}

fn yes() -> bool {
    true
}

/// One table rule of `[tasks.sink.conflict.tables]`; unset keys fall back
/// to the task's settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConflictRule {
    pub default: Option<ConflictAction>,
    pub insert: Option<ConflictAction>,
    pub update: Option<ConflictAction>,
    pub delete: Option<ConflictAction>,
}

fn default_conflict() -> ConflictAction {
    ConflictAction::Overwrite
}

impl Default for ConflictConfig {
    fn default() -> Self {
        ConflictConfig {
            default: default_conflict(),
            insert: None,
            update: None,
            delete: None,
            tables: BTreeMap::new(),
            journal: false,
            compare_before: true,
        }
    }
}

/// The operations a conflict policy distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictOp {
    Insert,
    Update,
    Delete,
}

impl ConflictOp {
    pub fn name(self) -> &'static str {
        match self {
            ConflictOp::Insert => "insert",
            ConflictOp::Update => "update",
            ConflictOp::Delete => "delete",
        }
    }
}

/// The three actions that apply to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TablePolicy {
    pub insert: ConflictAction,
    pub update: ConflictAction,
    pub delete: ConflictAction,
}

impl TablePolicy {
    pub fn get(&self, op: ConflictOp) -> ConflictAction {
        match op {
            ConflictOp::Insert => self.insert,
            ConflictOp::Update => self.update,
            ConflictOp::Delete => self.delete,
        }
    }
}

impl ConflictConfig {
    /// The policy for source table `db.table` (schema.table for PostgreSQL).
    pub fn for_table(&self, db: &str, table: &str) -> TablePolicy {
        let rule = self.tables.iter().find_map(|(glob, rule)| {
            TablePattern::parse(glob)
                .ok()
                .filter(|p| p.matches(db, table))
                .map(|_| rule)
        });
        let pick = |op_task: Option<ConflictAction>, op_rule: Option<ConflictAction>| {
            op_rule
                .or(rule.and_then(|r| r.default))
                .or(op_task)
                .unwrap_or(self.default)
        };
        TablePolicy {
            insert: pick(self.insert, rule.and_then(|r| r.insert)),
            update: pick(self.update, rule.and_then(|r| r.update)),
            delete: pick(self.delete, rule.and_then(|r| r.delete)),
        }
    }
}

impl DbSinkConfig {
    /// Pure checks; `postgres` says which engine the `type` named.
    pub(super) fn check(&self, postgres: bool) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if postgres {
            use std::str::FromStr;
            let pg = match tokio_postgres::Config::from_str(&self.url) {
                Ok(pg) => pg,
                Err(e) => {
                    return err(
                        "url",
                        format!(
                            "{e}: expected postgres://user:password@host:port/database (got {})",
                            redact_url(&self.url)
                        ),
                    );
                }
            };
            if pg.get_dbname().is_none() {
                return err(
                    "url",
                    "must name the target database, e.g. postgres://user:password@host:5432/shop"
                        .into(),
                );
            }
            if pg.get_user().is_none() {
                return err(
                    "url",
                    "must name the user: postgres://user:password@host/database".into(),
                );
            }
            if pg.get_hosts().len() != 1 {
                return err("url", "must name exactly one host".into());
            }
        } else {
            let opts = match mysql_async::Opts::from_url(&self.url) {
                Ok(o) => o,
                Err(e) => {
                    return err(
                        "url",
                        format!(
                            "{e}: expected mysql://user:password@host:port (got {})",
                            redact_url(&self.url)
                        ),
                    );
                }
            };
            if opts.db_name().is_some() {
                return err(
                    "url",
                    "must not name a database: tables go to the database of their source (or [tasks.sink.map])".into(),
                );
            }
        }
        if self.tls.mode == TlsMode::Disabled
            && (self.tls.ca_file.is_some() || self.tls.skip_hostname_check)
        {
            return err(
                "tls.mode",
                "ca_file/skip_hostname_check are set but mode is \"disabled\"; set mode = \"required\"".into(),
            );
        }
        for (from, to) in &self.map {
            let parts = |s: &str| s.split('.').count();
            let bad = from.is_empty()
                || to.is_empty()
                || parts(from) > 2
                || parts(from) != parts(to)
                || from.split('.').chain(to.split('.')).any(str::is_empty);
            if bad {
                return err(
                    &format!("map.{from:?}"),
                    format!(
                        "maps {from:?} to {to:?}: expected a database to a database (`shop = \"shop_dr\"`) or a table to a table (`\"shop.orders\" = \"dr.orders\"`)"
                    ),
                );
            }
        }
        for glob in self.conflict.tables.keys() {
            TablePattern::parse(glob).map_err(|m| (format!("conflict.tables.{glob:?}"), m))?;
        }
        if let Some(o) = &self.origin
            && (!o.starts_with("tidemark") || !is_identifier(o))
        {
            return err(
                "origin",
                "must start with `tidemark` and hold only letters, digits and _ (a reverse task recognizes tidemark's origins by the prefix)".into(),
            );
        }
        if self.lock_timeout_secs == 0 || self.lock_timeout_secs > 3600 {
            return err("lock_timeout_secs", "must be between 1 and 3600".into());
        }
        if self.workers == 0 || self.workers > 64 {
            return err("workers", "must be between 1 and 64".into());
        }
        if self.max_tx_rows == 0 {
            return err("max_tx_rows", "must be at least 1".into());
        }
        if !is_identifier(&self.meta_schema) {
            return err(
                "meta_schema",
                "must be a plain name: letters, digits and _".into(),
            );
        }
        Ok(())
    }

    /// Target `(schema or database, table)` of a source table.
    pub fn target_of(&self, db: &str, table: &str) -> (String, String) {
        if let Some(to) = self.map.get(&format!("{db}.{table}"))
            && let Some((d, t)) = to.split_once('.')
        {
            return (d.to_string(), t.to_string());
        }
        let d = self.map.get(db).cloned().unwrap_or_else(|| db.to_string());
        (d, table.to_string())
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> DbSinkConfig {
        toml::from_str(toml_text).expect("parses")
    }

    #[test]
    fn table_rules_override_operation_rules_which_override_the_default() {
        let c = cfg(r#"
url = "mysql://u@h"
[conflict]
default = "ignore"
delete = "fail"
[conflict.tables."shop.audit_*"]
default = "fail"
insert = "overwrite"
"#);
        let p = c.conflict.for_table("shop", "orders");
        assert_eq!(
            (p.insert, p.update, p.delete),
            (
                ConflictAction::Ignore,
                ConflictAction::Ignore,
                ConflictAction::Fail
            )
        );
        let p = c.conflict.for_table("shop", "audit_2026");
        assert_eq!(
            (p.insert, p.update, p.delete),
            (
                ConflictAction::Overwrite,
                ConflictAction::Fail,
                ConflictAction::Fail
            )
        );
    }

    #[test]
    fn maps_databases_and_tables() {
        let c = cfg(r#"
url = "mysql://u@h"
map = { shop = "shop_dr", "shop.orders" = "archive.o" }
"#);
        assert_eq!(
            c.target_of("shop", "items"),
            ("shop_dr".into(), "items".into())
        );
        assert_eq!(
            c.target_of("shop", "orders"),
            ("archive".into(), "o".into())
        );
        assert_eq!(c.target_of("crm", "x"), ("crm".into(), "x".into()));
        assert!(c.check(false).is_ok());
        let bad = cfg(r#"
url = "mysql://u@h"
map = { shop = "a.b" }
"#);
        let (key, msg) = bad.check(false).expect_err("a database mapped to a table");
        assert!(key.starts_with("map."), "{key}");
        assert!(msg.contains("expected a database to a database"), "{msg}");
    }

    #[test]
    fn urls_are_checked_per_engine() {
        let c = cfg(r#"url = "postgres://u@h/db""#);
        assert!(c.check(true).is_ok());
        let (_, msg) = cfg(r#"url = "postgres://u@h""#)
            .check(true)
            .expect_err("no database");
        assert!(msg.contains("must name the target database"), "{msg}");
        let (_, msg) = cfg(r#"url = "mysql://u@h:3306/shop""#)
            .check(false)
            .expect_err("a database in a MySQL url");
        assert!(msg.contains("must not name a database"), "{msg}");
    }
}
