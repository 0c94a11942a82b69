//! `[[tasks.rules]]`: processing rules, as the config file and the API
//! give them. What they do is in `stage::rules` and README's "Processing
//! rules".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One rule: what it applies to, and what it does to those tables' rows.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `db.table` globs (PostgreSQL: `schema.table`) of the source tables
    /// the rule applies to, as the source names them.
    pub tables: Vec<String>,
    /// Only these columns go on (with the key's); names as earlier rules
    /// left them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_columns: Option<Vec<String>>,
    /// These columns are dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_columns: Vec<String>,
    /// A replacement key, when the rule drops a key column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    /// `old = "new"` column names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename_columns: BTreeMap<String, String>,
    /// The output table's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename_table: Option<RenameTable>,
    /// Columns the output gains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_columns: Vec<AddColumn>,
    /// A CEL expression over `after` (inserts, updates) and `before`
    /// (deletes, updates): only rows for which it is true go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// What a row whose filter fails to evaluate does.
    #[serde(default)]
    pub on_error: OnError,
    /// `column = "hash" | "redact" | "null"`, or `{ keep_first = N }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mask: BTreeMap<String, MaskConfig>,
    /// The salt of `hash` masks (HMAC-SHA256 key): give it as
    /// `"${TIDEMARK_MASK_SECRET}"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_secret: Option<String>,
    /// How shards merged into one table keep their keys apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeConfig>,
}

/// `rename_table = { match = '…', to = "…" }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RenameTable {
    /// A regular expression on the source's `db.table` (whole name);
    /// default: any name.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The output's `db.table`, with `$1`, `${name}` captures.
    pub to: String,
}

/// A column the output gains.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AddColumn {
    pub name: String,
    /// A constant (string, integer, float or boolean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<toml::Value>,
    /// Or a fact about the change's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceField>,
    /// The column joins the output's key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key: bool,
}

/// Facts of a change's source an added column can hold.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceField {
    /// MySQL database, PostgreSQL database.
    Database,
    /// PostgreSQL schema (MySQL: the database).
    Schema,
    Table,
    /// `db.table` (PostgreSQL `schema.table`): tells shards apart.
    QualifiedTable,
    /// MySQL/MariaDB server id (PostgreSQL: 0).
    ServerId,
    /// The transaction's commit time.
    CommitTime,
    /// The change's log position.
    Position,
    /// The transaction's GTID (MySQL/MariaDB), or PostgreSQL xid.
    Transaction,
}

impl SourceField {
    pub fn name(self) -> &'static str {
        match self {
            SourceField::Database => "database",
            SourceField::Schema => "schema",
            SourceField::Table => "table",
            SourceField::QualifiedTable => "qualified_table",
            SourceField::ServerId => "server_id",
            SourceField::CommitTime => "commit_time",
            SourceField::Position => "position",
            SourceField::Transaction => "transaction",
        }
    }

    /// The same for every change of a row (may stand in a before image
    /// and a key).
    pub fn per_row(self) -> bool {
        matches!(
            self,
            SourceField::Database
                | SourceField::Schema
                | SourceField::Table
                | SourceField::QualifiedTable
        )
    }
}

/// What happens to a row whose filter fails to evaluate.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The task fails, naming the rule, table and position.
    #[default]
    Fail,
    /// The row is left out (counted, logged without its values).
    Skip,
    /// The row is left out and written, masked, to the task's dead-letter
    /// file.
    DeadLetter,
}

/// A column's masking.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum MaskConfig {
    Kind(MaskKind),
    KeepFirst { keep_first: usize },
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MaskKind {
    /// HMAC-SHA256 with `mask_secret`, as 64 hex digits: equal values
    /// stay equal (joins, keys), the value can't be read back.
    Hash,
    /// `***`.
    Redact,
    /// NULL.
    Null,
}

/// `merge = { shard_column = "shard" }` or `merge = { keys = "unique" }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    /// A column holding each row's source table (`db.table`), added to
    /// the output and to its key: shards' keys can't collide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_column: Option<String>,
    /// `"unique"`: the shards' keys never overlap (e.g. ids from disjoint
    /// ranges); the key is kept as is, and a database target fails on a
    /// collision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<MergeKeys>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MergeKeys {
    Unique,
}

impl RuleConfig {
    /// Checks what needs no connection: patterns, regexes, expressions,
    /// names, secrets. Errors are `(key below the rule, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if self.tables.is_empty() {
            return err(
                "tables",
                "name the tables the rule applies to: e.g. tables = [\"shop.orders\"] or [\"shop_*.orders_*\"]".into(),
            );
        }
        for t in &self.tables {
            crate::select::TablePattern::parse(t).map_err(|m| ("tables".to_string(), m))?;
        }
        let mut touched = Vec::new();
        if let Some(inc) = &self.include_columns {
            if inc.is_empty() {
                return err(
                    "include_columns",
                    "is empty: list the columns to keep, or leave it out".into(),
                );
            }
            if !self.exclude_columns.is_empty() {
                return err(
                    "exclude_columns",
                    "give include_columns or exclude_columns, not both".into(),
                );
            }
            touched.extend(inc.iter().map(|c| ("include_columns", c)));
        }
        touched.extend(self.exclude_columns.iter().map(|c| ("exclude_columns", c)));
        if let Some(k) = &self.key {
            if k.is_empty() {
                return err("key", "is empty: name the replacement key's columns".into());
            }
            touched.extend(k.iter().map(|c| ("key", c)));
        }
        for (from, to) in &self.rename_columns {
            touched.push(("rename_columns", from));
            touched.push(("rename_columns", to));
        }
        for (k, c) in touched {
            if c.is_empty() {
                return err(k, "a column name is empty".into());
            }
        }
        let mut news: Vec<&str> = self.rename_columns.values().map(String::as_str).collect();
        news.sort_unstable();
        if let Some(w) = news.windows(2).find(|w| w[0] == w[1]) {
            return err(
                "rename_columns",
                format!("two columns are renamed to {:?}", w[0]),
            );
        }
        if let Some(r) = &self.rename_table {
            crate::stage::rules::TableRename::compile(r).map_err(|m| ("rename_table".into(), m))?;
        }
        for (i, a) in self.add_columns.iter().enumerate() {
            let key = format!("add_columns[{i}]");
            if a.name.is_empty() {
                return err(&key, "name is empty".into());
            }
            match (&a.value, a.source) {
                (Some(_), Some(_)) | (None, None) => {
                    return err(
                        &key,
                        format!(
                            "column {:?}: give either value = <constant> or source = \"database\" | \"schema\" | \"table\" | \"qualified_table\" | \"server_id\" | \"commit_time\" | \"position\" | \"transaction\"",
                            a.name
                        ),
                    );
                }
                (Some(v), None) => {
                    crate::stage::rules::constant(v).map_err(|m| (key.clone(), m))?;
                }
                (None, Some(s)) if a.key && !s.per_row() => {
                    return err(
                        &key,
                        format!(
                            "column {:?}: source = {:?} changes with every change of a row, so it can't be part of the key; use database, schema, table or qualified_table",
                            a.name,
                            s.name()
                        ),
                    );
                }
                _ => {}
            }
        }
        if let Some(f) = &self.filter {
            crate::stage::filter::Filter::compile(f).map_err(|m| ("filter".into(), m))?;
        }
        let hashes = self
            .mask
            .values()
            .any(|m| *m == MaskConfig::Kind(MaskKind::Hash));
        match &self.mask_secret {
            Some(s) if s.chars().count() < 16 => {
                return err(
                    "mask_secret",
                    "must be at least 16 characters (e.g. `openssl rand -hex 24`), given as mask_secret = \"${TIDEMARK_MASK_SECRET}\"".into(),
                );
            }
            None if hashes => {
                return err(
                    "mask_secret",
                    "hash masks need a secret salt: mask_secret = \"${TIDEMARK_MASK_SECRET}\" (at least 16 characters); without it, a hash of a guessable value (a phone number) could be reversed by trying them all".into(),
                );
            }
            _ => {}
        }
        for (c, m) in &self.mask {
            if let MaskConfig::KeepFirst { keep_first } = m
                && *keep_first > 1024
            {
                return err(
                    "mask",
                    format!("column {c:?}: keep_first = {keep_first} is more than 1024"),
                );
            }
        }
        if let Some(m) = &self.merge {
            if self.rename_table.is_none() {
                return err(
                    "merge",
                    "merge applies to tables renamed into one: give rename_table = { match = '…', to = \"db.table\" } too".into(),
                );
            }
            match (&m.shard_column, m.keys) {
                (Some(_), Some(_)) | (None, None) => {
                    return err(
                        "merge",
                        "give shard_column = \"<name>\" (a column holding each row's source table joins the key: no collision possible) or keys = \"unique\" (the shards' keys never overlap)".into(),
                    );
                }
                (Some(c), None) if c.is_empty() => {
                    return err("merge.shard_column", "is empty".into());
                }
                _ => {}
            }
        }
        Ok(())
    }
}
