//! MySQL/MariaDB target: prepared statements, multi-row inserts in a few
//! fixed sizes (so the statement cache holds a handful per table), updates
//! and deletes that count the rows they matched (`CLIENT_FOUND_ROWS`).
//!
//! MySQL commits around DDL: a table created or altered here first
//! commits the open transaction at the last applied position (the
//! applier does, see `Target::needs_ddl`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params};
use tracing::{info, warn};

use super::apply::{
    InsertMode, Settings, Target, TargetColumn, TargetTable, checked_columns, my_ident,
};
use super::conflict::Journal;
use super::render::{Kind, mysql_value};
use super::{DbErrorKind, DbSinkError, Engine};
use crate::config::redact_url;
use crate::event::{Position, TableSchema, Value};

/// Rows per multi-row INSERT, largest first.
const INSERT_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// Session settings the values rely on: zero dates and `0` ids kept as
/// sent, errors instead of silent truncation, UTC for TIMESTAMP columns,
/// and no foreign-key checks (the source checked them; snapshot tables
/// load in any order).
const SESSION: [&str; 2] = [
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION', time_zone = '+00:00', foreign_key_checks = 0, explicit_defaults_for_timestamp = 1",
];

pub struct MysqlTarget {
    conn: Conn,
    meta: String,
    /// The name of the task's lock on the target (`exclusive`).
    lock: String,
    in_tx: bool,
    tables: HashMap<usize, Arc<TargetTable>>,
    sent: u64,
    describe: String,
}

impl MysqlTarget {
    /// Takes the task's lock on the target for this session's lifetime
    /// (`exclusive`). It waits a few seconds: a session of this task's
    /// previous run may still be closing.
    async fn lock(&mut self, task: &str) -> Result<(), DbSinkError> {
        let name = self.lock.clone();
        let got: Option<Option<i64>> = self
            .conn
            .exec_first("SELECT GET_LOCK(?, 5)", (&name,))
            .await
            .map_err(|e| classify("taking the task's lock on the target (GET_LOCK)", e))?;
        if got == Some(Some(1)) {
            return Ok(());
        }
        let Some((holder, end_it)) = lock_holder(&mut self.conn, &name)
            .await
            .map_err(|e| classify("looking up the holder of the task's lock (IS_USED_LOCK)", e))?
        else {
            return Err(DbSinkError::transient(format!(
                "task {task}'s lock on the target ({name}) was held by another session and is free now: taking it again"
            )));
        };
        Err(super::lock_held(
            task,
            &format!("{}.apply_position", self.meta),
            &holder,
            &end_it,
        ))
    }

    async fn begin(&mut self) -> Result<(), DbSinkError> {
        if !self.in_tx {
            self.conn
                .query_drop("START TRANSACTION")
                .await
                .map_err(|e| classify("START TRANSACTION", e))?;
            self.in_tx = true;
        }
        Ok(())
    }

    async fn columns(
        &mut self,
        db: &str,
        table: &str,
    ) -> Result<Vec<(String, String)>, DbSinkError> {
        self.conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(|e| classify("reading the target's columns", e))
    }

    async fn resolve(
        &mut self,
        src: &Arc<TableSchema>,
        s: &Settings,
    ) -> Result<TargetTable, DbSinkError> {
        let src_ns = src.schema.clone().unwrap_or_else(|| src.db.clone());
        let (db, name) = s.cfg.target_of(&src_ns, &src.name);
        let label = format!("{db}.{name}");
        let sql_name = format!("{}.{}", my_ident(&db), my_ident(&name));
        let mut cols = self.columns(&db, &name).await?;
        if cols.is_empty() {
            if !s.cfg.create_tables {
                return Err(DbSinkError::definite(format!(
                    "target table {label} doesn't exist: create it, or set sink.create_tables = true"
                )));
            }
            // Columns with the source's defaults, and without them if the
            // target refuses one.
            let def = super::create::table_def(src, super::Engine::Mysql, s.source)
                .map_err(DbSinkError::definite)?;
            let create = |with_defaults: bool| {
                format!(
                    "CREATE TABLE IF NOT EXISTS {sql_name} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                    def.body(with_defaults)
                )
            };
            self.conn
                .query_drop(format!("CREATE DATABASE IF NOT EXISTS {}", my_ident(&db)))
                .await
                .map_err(|e| classify(&format!("creating target database {db}"), e))?;
            if let Err(e) = self.conn.query_drop(create(true)).await {
                let e = classify(&format!("creating target table {label}"), e);
                if def.with_defaults == def.plain || e.class != crate::error::ErrorClass::Definite {
                    return Err(e);
                }
                warn!(table = %label, error = %e, "the target refused a default of the source's columns: the table is created without defaults");
                self.conn
                    .query_drop(create(false))
                    .await
                    .map_err(|e| classify(&format!("creating target table {label}"), e))?;
            }
            self.in_tx = false;
            info!(table = %label, "created the target table");
            cols = self.columns(&db, &name).await?;
        }
        let mut columns = Vec::with_capacity(src.columns.len());
        for (i, c) in src.columns.iter().enumerate() {
            let found = cols
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&c.name))
                .cloned();
            let (cname, ty) = match found {
                Some(f) => f,
                None if s.cfg.create_tables => {
                    let ty = super::create::mysql_type(s.source, c, src.key.contains(&i))
                        .map_err(DbSinkError::definite)?;
                    // The source's rows took its default: so do the
                    // target's (no row event carries them).
                    let default = super::create::mysql_default(
                        src.defaults.get(i).and_then(Option::as_ref),
                        &ty,
                        c,
                    );
                    self.conn
                        .query_drop(format!(
                            "ALTER TABLE {sql_name} ADD COLUMN {} {ty} NULL{default}",
                            my_ident(&c.name)
                        ))
                        .await
                        .map_err(|e| {
                            classify(&format!("adding column {} to {label}", c.name), e)
                        })?;
                    self.in_tx = false;
                    info!(table = %label, column = %c.name, "added the source's new column to the target table");
                    (c.name.clone(), ty)
                }
                None => {
                    return Err(DbSinkError::definite(format!(
                        "target table {label} has no column {:?} (the source has): add it, or set sink.create_tables = true",
                        c.name
                    )));
                }
            };
            columns.push(TargetColumn {
                sql_name: my_ident(&cname),
                kind: Kind::of_mysql(&ty),
                compared: compared(&ty),
                type_name: ty,
            });
        }
        let keyed = !src.key.is_empty();
        let stats: Vec<(String, String)> = self
            .conn
            .exec(
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0
                  ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (&db, &name),
            )
            .await
            .map_err(|e| classify("reading the target's unique keys", e))?;
        let mut indexes: Vec<(String, Vec<String>)> = Vec::new();
        for (index, column) in stats {
            match indexes.last_mut() {
                Some((i, cols)) if *i == index => cols.push(column),
                _ => indexes.push((index, vec![column])),
            }
        }
        let mut t = TargetTable {
            source: src.clone(),
            sql_name,
            label,
            columns,
            key: if keyed {
                src.key.clone()
            } else {
                (0..src.columns.len()).collect()
            },
            keyed,
            uniques: Vec::new(),
        };
        t.set_uniques(indexes.into_iter().map(|(_, c)| c).collect());
        Ok(t)
    }

    fn render(
        &mut self,
        t: &TargetTable,
        i: usize,
        v: &Value,
    ) -> Result<mysql_async::Value, DbSinkError> {
        let col = &t.columns[i];
        let r = mysql_value(v, &col.kind).map_err(|why| {
            DbSinkError::definite(format!(
                "column {} ({}) of {}: {why}",
                t.source.columns.get(i).map_or("?", |c| c.name.as_str()),
                col.type_name,
                t.label
            ))
        })?;
        if let mysql_async::Value::Bytes(b) = &r {
            self.sent += b.len() as u64;
        } else {
            self.sent += 8;
        }
        Ok(r)
    }

    fn key_clause(t: &TargetTable) -> String {
        let w: Vec<String> = t
            .key
            .iter()
            .map(|&i| {
                let c = &t.columns[i];
                if t.keyed {
                    format!("{} = ?", c.sql_name)
                } else {
                    same(c, &c.sql_name, "?")
                }
            })
            .collect();
        w.join(" AND ")
    }

    async fn exec(
        &mut self,
        sql: String,
        params: Vec<mysql_async::Value>,
        what: &str,
    ) -> Result<u64, DbSinkError> {
        self.conn
            .exec_drop(sql, Params::Positional(params))
            .await
            .map_err(|e| classify(what, e))?;
        Ok(self.conn.affected_rows())
    }
}

/// The session holding lock `name`, if any: how to name it, and the
/// statement that ends it.
pub(crate) async fn lock_holder(
    conn: &mut Conn,
    name: &str,
) -> Result<Option<(String, String)>, mysql_async::Error> {
    let id: Option<Option<u64>> = conn.exec_first("SELECT IS_USED_LOCK(?)", (name,)).await?;
    let Some(Some(id)) = id else {
        return Ok(None);
    };
    // Visible with the PROCESS privilege, or when the holder is the same
    // user.
    let who: Option<(String, String, Option<String>, i64)> = conn
        .exec_first(
            "SELECT USER, HOST, DB, TIME FROM information_schema.PROCESSLIST WHERE ID = ?",
            (id,),
        )
        .await
        .ok()
        .flatten();
    let holder = match who {
        Some((user, host, db, secs)) => format!(
            "connection {id}, {user}@{host}{}, in its current state for {secs} s",
            db.map(|d| format!(" on {d}")).unwrap_or_default()
        ),
        None => format!("connection {id}"),
    };
    Ok(Some((holder, format!("KILL {id}"))))
}

impl Target for MysqlTarget {
    async fn connect(s: &Settings, _worker: Option<usize>) -> Result<Self, DbSinkError> {
        let describe = redact_url(&s.cfg.url);
        let base = Opts::from_url(&s.cfg.url)
            .map_err(|e| DbSinkError::definite(format!("sink.url {describe}: {e}")))?;
        let mut b = OptsBuilder::from_opts(base)
            .prefer_socket(false)
            .client_found_rows(true)
            .stmt_cache_size(Some(256))
            .tcp_keepalive(Some(Duration::from_secs(10)))
            .init(
                SESSION
                    .iter()
                    .map(|s| s.to_string())
                    .chain(std::iter::once(format!(
                        // A lock held on the target fails the statement
                        // instead of holding the task silently.
                        "SET SESSION innodb_lock_wait_timeout = {}, lock_wait_timeout = {}",
                        s.cfg.lock_timeout_secs, s.cfg.lock_timeout_secs
                    )))
                    .collect::<Vec<_>>(),
            );
        b = b.ssl_opts(crate::source::mysql::ssl_opts(&s.cfg.tls));
        let conn = match tokio::time::timeout(Duration::from_secs(15), Conn::new(b)).await {
            Err(_) => {
                return Err(DbSinkError::transient(format!(
                    "connecting to the target {describe}: timed out after 15 s"
                )));
            }
            Ok(r) => r.map_err(|e| classify(&format!("connecting to the target {describe}"), e))?,
        };
        let mut t = MysqlTarget {
            conn,
            meta: my_ident(&s.cfg.meta_schema),
            lock: super::lock_name(&s.cfg.meta_schema, &s.task),
            in_tx: false,
            tables: HashMap::new(),
            sent: 0,
            describe,
        };
        // Changes applied here carry the skip-replication flag: the source
        // of a reverse task (a bidirectional pair) leaves them out
        // (`exclude_replicated`); native replicas still replicate them
        // (`replicate_events_marked_for_skip` = REPLICATE, the default).
        if let Err(e) = t.conn.query_drop("SET SESSION skip_replication = 1").await {
            warn!(task = %s.task, target = %t.describe, error = %e, "applying without @@skip_replication (MariaDB only; it needs SUPER or BINLOG ADMIN): a reverse task can't tell this task's changes from others (bidirectional pairs need it)");
        }
        let ro: Option<(u8, u8)> = t
            .conn
            .query_first("SELECT @@read_only, @@global.read_only")
            .await
            .map_err(|e| classify("reading the target's settings", e))?;
        if ro.is_some_and(|(a, b)| a == 1 || b == 1) {
            let probe = t
                .conn
                .query_drop(format!("CREATE DATABASE IF NOT EXISTS {}", t.meta))
                .await;
            if probe.is_err() {
                return Err(DbSinkError::definite(format!(
                    "the target {} is read-only (read_only = ON): point sink.url at a writable primary, or SET GLOBAL read_only = OFF",
                    t.describe
                )));
            }
        }
        Ok(t)
    }

    /// Creates the position table if missing; returns the task's position.
    async fn open(
        &mut self,
        task: &str,
        journal: bool,
        exclusive: bool,
    ) -> Result<super::Opened, DbSinkError> {
        let m = self.meta.clone();
        if journal {
            for sql in [
                format!("CREATE DATABASE IF NOT EXISTS {m}"),
                format!(
                    "CREATE TABLE IF NOT EXISTS {m}.conflicts (
                         id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                         task VARCHAR(255) NOT NULL,
                         table_name VARCHAR(512) NOT NULL,
                         op VARCHAR(16) NOT NULL,
                         what VARCHAR(255) NOT NULL,
                         `key` TEXT NOT NULL,
                         source_row LONGTEXT,
                         target_row LONGTEXT,
                         position TEXT NOT NULL,
                         action VARCHAR(16) NOT NULL,
                         at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                ),
            ] {
                self.conn
                    .query_drop(&sql)
                    .await
                    .map_err(|e| classify(&format!("creating {m}.conflicts"), e))?;
            }
        }
        for sql in [
            format!("CREATE DATABASE IF NOT EXISTS {m}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {m}.apply_position (
                     task VARCHAR(255) NOT NULL PRIMARY KEY,
                     position TEXT NOT NULL,
                     updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {m}.apply_done (
                     task VARCHAR(255) NOT NULL,
                     worker INT NOT NULL,
                     txs LONGTEXT NOT NULL,
                     PRIMARY KEY (task, worker)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            ),
        ] {
            self.conn.query_drop(&sql).await.map_err(|e| {
                classify(
                    &format!(
                        "creating {m}.apply_position on {} (the target user needs CREATE on {m}.*, or create it beforehand)",
                        self.describe
                    ),
                    e,
                )
            })?;
        }
        if exclusive {
            self.lock(task).await?;
        }
        let text: Option<String> = self
            .conn
            .exec_first(
                format!("SELECT position FROM {m}.apply_position WHERE task = ?"),
                (task,),
            )
            .await
            .map_err(|e| classify("reading the task's position on the target", e))?;
        let done: Vec<String> = self
            .conn
            .exec(
                format!("SELECT txs FROM {m}.apply_done WHERE task = ?"),
                (task,),
            )
            .await
            .map_err(|e| classify("reading the task's applied transactions on the target", e))?;
        super::Opened::parse(
            task,
            &format!("{m}.apply_position"),
            text,
            &done,
            &self.describe,
        )
    }

    async fn table(
        &mut self,
        src: &Arc<TableSchema>,
        s: &Settings,
    ) -> Result<Arc<TargetTable>, DbSinkError> {
        let id = Arc::as_ptr(src) as usize;
        if let Some(t) = self.tables.get(&id) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.resolve(src, s).await?);
        self.tables.insert(id, t.clone());
        Ok(t)
    }

    fn has_table(&self, src: &Arc<TableSchema>) -> bool {
        self.tables.contains_key(&(Arc::as_ptr(src) as usize))
    }

    async fn clear(&mut self, t: &TargetTable) -> Result<(), DbSinkError> {
        self.begin().await?;
        self.conn
            .query_drop(format!("DELETE FROM {}", t.sql_name))
            .await
            .map_err(|e| classify(&format!("emptying {}", t.label), e))
    }

    async fn insert(
        &mut self,
        t: &TargetTable,
        rows: &[&[Value]],
        how: InsertMode,
    ) -> Result<u64, DbSinkError> {
        // Snapshot rows replace what the copy window put there first.
        let upsert = how != InsertMode::Plain;
        self.begin().await?;
        let n = t.columns.len().max(1);
        let names: Vec<&str> = t.columns.iter().map(|c| c.sql_name.as_str()).collect();
        let one = format!("({})", vec!["?"; n].join(","));
        let on_dup = if upsert && t.keyed {
            let sets: Vec<String> = t
                .columns
                .iter()
                .map(|c| format!("{0} = VALUES({0})", c.sql_name))
                .collect();
            format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
        } else {
            String::new()
        };
        let mut done = 0;
        let mut affected = 0;
        while done < rows.len() {
            let left = rows.len() - done;
            let size = INSERT_SIZES
                .iter()
                .copied()
                .find(|&s| s <= left && s * n <= 65_535)
                .unwrap_or(1);
            let mut params = Vec::with_capacity(size * n);
            for row in &rows[done..done + size] {
                for i in 0..t.columns.len() {
                    let v = row.get(i).unwrap_or(&Value::Null);
                    params.push(self.render(t, i, v)?);
                }
            }
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}{on_dup}",
                t.sql_name,
                names.join(", "),
                vec![one.as_str(); size].join(",")
            );
            affected += self
                .exec(sql, params, &format!("inserting into {}", t.label))
                .await?;
            done += size;
        }
        Ok(affected)
    }

    async fn update(
        &mut self,
        t: &TargetTable,
        key: &[Value],
        after: &[Value],
        before: Option<&[Value]>,
    ) -> Result<u64, DbSinkError> {
        self.begin().await?;
        let mut sets = Vec::new();
        let mut params = Vec::new();
        for (i, v) in after.iter().enumerate() {
            if matches!(v, Value::Unchanged) || i >= t.columns.len() {
                continue;
            }
            params.push(self.render(t, i, v)?);
            sets.push(format!("{} = ?", t.columns[i].sql_name));
        }
        if sets.is_empty() {
            return Ok(1);
        }
        for (&i, v) in t.key.iter().zip(key) {
            params.push(self.render(t, i, v)?);
        }
        let mut checks = String::new();
        if let Some(before) = before {
            for i in checked_columns(t, before) {
                params.push(self.render(t, i, &before[i])?);
                checks.push_str(" AND ");
                checks.push_str(&same(&t.columns[i], &t.columns[i].sql_name, "?"));
            }
        }
        let limit = if t.keyed { "" } else { " LIMIT 1" };
        let sql = format!(
            "UPDATE {} SET {} WHERE {}{checks}{limit}",
            t.sql_name,
            sets.join(", "),
            Self::key_clause(t)
        );
        self.exec(sql, params, &format!("updating {}", t.label))
            .await
    }

    async fn update_many(
        &mut self,
        t: &TargetTable,
        keys: &[Vec<Value>],
        afters: &[&[Value]],
        befores: Option<&[&[Value]]>,
    ) -> Result<u64, DbSinkError> {
        self.begin().await?;
        let Some(first) = afters.first() else {
            return Ok(0);
        };
        let set: Vec<usize> = (0..t.columns.len())
            .filter(|&i| !matches!(first.get(i), None | Some(Value::Unchanged)))
            .collect();
        if set.is_empty() {
            return Ok(keys.len() as u64);
        }
        let checked = befores
            .and_then(|b| b.first())
            .map(|b| checked_columns(t, b))
            .unwrap_or_default();
        let per_row = set.len() + t.key.len() + checked.len();
        let sets: Vec<String> = set
            .iter()
            .enumerate()
            .map(|(j, &i)| format!("t.{} = u.v{j}", t.columns[i].sql_name))
            .collect();
        let mut on: Vec<String> = t
            .key
            .iter()
            .enumerate()
            .map(|(j, &i)| format!("t.{} = u.k{j}", t.columns[i].sql_name))
            .collect();
        on.extend(checked.iter().enumerate().map(|(j, &i)| {
            let c = &t.columns[i];
            same(c, &format!("t.{}", c.sql_name), &format!("u.b{j}"))
        }));
        let first_select: Vec<String> = (0..set.len())
            .map(|j| format!("? AS v{j}"))
            .chain((0..t.key.len()).map(|j| format!("? AS k{j}")))
            .chain((0..checked.len()).map(|j| format!("? AS b{j}")))
            .collect();
        let other_select = vec!["?"; per_row].join(", ");
        let mut done = 0;
        let mut matched = 0;
        while done < keys.len() {
            let left = keys.len() - done;
            let size = INSERT_SIZES
                .iter()
                .copied()
                .find(|&s| s <= left && s * per_row <= 65_535)
                .unwrap_or(1);
            let mut params = Vec::with_capacity(size * per_row);
            for (n, (row, key)) in afters[done..done + size]
                .iter()
                .zip(&keys[done..done + size])
                .enumerate()
            {
                for &i in &set {
                    params.push(self.render(t, i, row.get(i).unwrap_or(&Value::Null))?);
                }
                for (&i, v) in t.key.iter().zip(key) {
                    params.push(self.render(t, i, v)?);
                }
                let before = befores
                    .and_then(|b| b.get(done + n))
                    .copied()
                    .unwrap_or_default();
                for &i in &checked {
                    params.push(self.render(t, i, before.get(i).unwrap_or(&Value::Null))?);
                }
            }
            let mut selects = vec![format!("SELECT {}", first_select.join(", "))];
            selects.extend(std::iter::repeat_n(
                format!("SELECT {other_select}"),
                size - 1,
            ));
            let sql = format!(
                "UPDATE {} AS t JOIN ({}) AS u ON {} SET {}",
                t.sql_name,
                selects.join(" UNION ALL "),
                on.join(" AND "),
                sets.join(", ")
            );
            matched += self
                .exec(sql, params, &format!("updating {}", t.label))
                .await?;
            done += size;
        }
        Ok(matched)
    }

    async fn delete_many(
        &mut self,
        t: &TargetTable,
        keys: &[Vec<Value>],
    ) -> Result<u64, DbSinkError> {
        self.begin().await?;
        let cols: Vec<&str> = t
            .key
            .iter()
            .map(|&i| t.columns[i].sql_name.as_str())
            .collect();
        let one = if cols.len() == 1 {
            "?".to_string()
        } else {
            format!("({})", vec!["?"; cols.len()].join(","))
        };
        let lhs = if cols.len() == 1 {
            cols[0].to_string()
        } else {
            format!("({})", cols.join(", "))
        };
        let mut done = 0;
        let mut deleted = 0;
        while done < keys.len() {
            let left = keys.len() - done;
            let size = INSERT_SIZES
                .iter()
                .copied()
                .find(|&s| s <= left && s * cols.len() <= 65_535)
                .unwrap_or(1);
            let mut params = Vec::with_capacity(size * cols.len());
            for key in &keys[done..done + size] {
                for (&i, v) in t.key.iter().zip(key) {
                    params.push(self.render(t, i, v)?);
                }
            }
            let sql = format!(
                "DELETE FROM {} WHERE {lhs} IN ({})",
                t.sql_name,
                vec![one.as_str(); size].join(",")
            );
            deleted += self
                .exec(sql, params, &format!("deleting from {}", t.label))
                .await?;
            done += size;
        }
        Ok(deleted)
    }

    async fn exists(&mut self, t: &TargetTable, key: &[Value]) -> Result<bool, DbSinkError> {
        self.begin().await?;
        let mut params = Vec::new();
        for (&i, v) in t.key.iter().zip(key) {
            params.push(self.render(t, i, v)?);
        }
        let row: Option<mysql_async::Row> = self
            .conn
            .exec_first(
                format!(
                    "SELECT 1 FROM {} WHERE {} LIMIT 1",
                    t.sql_name,
                    Self::key_clause(t)
                ),
                Params::Positional(params),
            )
            .await
            .map_err(|e| classify(&format!("reading {}", t.label), e))?;
        Ok(row.is_some())
    }

    async fn delete(&mut self, t: &TargetTable, key: &[Value]) -> Result<u64, DbSinkError> {
        self.begin().await?;
        let mut params = Vec::new();
        for (&i, v) in t.key.iter().zip(key) {
            params.push(self.render(t, i, v)?);
        }
        let limit = if t.keyed { "" } else { " LIMIT 1" };
        let sql = format!(
            "DELETE FROM {} WHERE {}{limit}",
            t.sql_name,
            Self::key_clause(t)
        );
        self.exec(sql, params, &format!("deleting from {}", t.label))
            .await
    }

    async fn journal(&mut self, t: &TargetTable, e: &Journal<'_>) -> Result<(), DbSinkError> {
        self.begin().await?;
        let mut params = Vec::new();
        for (&i, v) in t.key.iter().zip(e.key) {
            params.push(self.render(t, i, v)?);
        }
        let row: Option<mysql_async::Row> = self
            .conn
            .exec_first(
                format!(
                    "SELECT * FROM {} WHERE {} LIMIT 1",
                    t.sql_name,
                    Self::key_clause(t)
                ),
                Params::Positional(params),
            )
            .await
            .map_err(|err| classify("reading the target row of a conflict", err))?;
        let target_row = row.map(|r| {
            let mut m = serde_json::Map::new();
            let names: Vec<String> = r
                .columns_ref()
                .iter()
                .map(|c| c.name_str().to_string())
                .collect();
            for (name, v) in names.into_iter().zip(r.unwrap()) {
                let j = match v {
                    mysql_async::Value::NULL => serde_json::Value::Null,
                    mysql_async::Value::Bytes(b) => {
                        serde_json::Value::String(String::from_utf8_lossy(&b).into_owned())
                    }
                    other => serde_json::Value::String(other.as_sql(true)),
                };
                m.insert(name, j);
            }
            serde_json::Value::Object(m).to_string()
        });
        let sql = format!(
            "INSERT INTO {}.conflicts (task, table_name, op, what, `key`, source_row, target_row, position, action, at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6))",
            self.meta
        );
        let source_row = e.source_json(t);
        self.conn
            .exec_drop(
                sql,
                Params::Positional(vec![
                    e.task.into(),
                    t.label.as_str().into(),
                    e.op.into(),
                    e.what.into(),
                    e.key_text.as_str().into(),
                    source_row.into(),
                    target_row.into(),
                    e.position.as_str().into(),
                    e.action.into(),
                ]),
            )
            .await
            .map_err(|err| classify("writing the conflict journal", err))
    }

    async fn truncate(&mut self, t: &TargetTable) -> Result<(), DbSinkError> {
        // TRUNCATE commits; DELETE keeps the transaction whole.
        self.begin().await?;
        self.conn
            .query_drop(format!("DELETE FROM {}", t.sql_name))
            .await
            .map_err(|e| classify(&format!("emptying {}", t.label), e))
    }

    async fn ddl(&mut self, db: Option<&str>, sql: &str) -> Result<(), DbSinkError> {
        if let Some(db) = db {
            // The statement runs in its (mapped) database, which may not
            // exist on the target yet.
            self.conn
                .query_drop(format!("CREATE DATABASE IF NOT EXISTS {}", my_ident(db)))
                .await
                .map_err(|e| classify("applying DDL", e))?;
            self.conn
                .query_drop(format!("USE {}", my_ident(db)))
                .await
                .map_err(|e| classify("applying DDL", e))?;
        }
        self.in_tx = false;
        self.conn
            .query_drop(sql)
            .await
            .map_err(|e| classify("applying DDL", e))
    }

    async fn drop_table(&mut self, schema: &str, table: &str) -> Result<(), DbSinkError> {
        self.ddl(
            None,
            &format!(
                "DROP TABLE IF EXISTS {}.{}",
                my_ident(schema),
                my_ident(table)
            ),
        )
        .await
    }

    async fn savepoint(&mut self) -> Result<(), DbSinkError> {
        // A failed statement rolls back alone in InnoDB.
        self.begin().await
    }

    async fn release(&mut self) -> Result<(), DbSinkError> {
        Ok(())
    }

    async fn rollback_to(&mut self) -> Result<(), DbSinkError> {
        Ok(())
    }

    async fn commit_done(
        &mut self,
        task: &str,
        worker: usize,
        txs: &str,
    ) -> Result<(), DbSinkError> {
        self.begin().await?;
        let sql = format!(
            "INSERT INTO {}.apply_done (task, worker, txs) VALUES (?, ?, ?)
             ON DUPLICATE KEY UPDATE txs = CONCAT(txs, '\n', VALUES(txs))",
            self.meta
        );
        self.conn
            .exec_drop(sql, (task, worker as u64, txs))
            .await
            .map_err(|e| classify("writing the applied transactions", e))?;
        self.in_tx = false;
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| classify("COMMIT", e))
    }

    async fn commit(
        &mut self,
        task: &str,
        pos: &Position,
        clear_done: bool,
    ) -> Result<(), DbSinkError> {
        self.begin().await?;
        if clear_done {
            self.conn
                .exec_drop(
                    format!("DELETE FROM {}.apply_done WHERE task = ?", self.meta),
                    (task,),
                )
                .await
                .map_err(|e| classify("clearing the applied transactions", e))?;
        }
        let sql = format!(
            "INSERT INTO {}.apply_position (task, position, updated_at) VALUES (?, ?, UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE position = VALUES(position), updated_at = VALUES(updated_at)",
            self.meta
        );
        self.conn
            .exec_drop(sql, (task, pos.to_string()))
            .await
            .map_err(|e| classify("writing the position", e))?;
        self.in_tx = false;
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| classify("COMMIT", e))
    }

    async fn rollback(&mut self) -> Result<(), DbSinkError> {
        if !self.in_tx {
            return Ok(());
        }
        self.in_tx = false;
        self.conn
            .query_drop("ROLLBACK")
            .await
            .map_err(|e| classify("ROLLBACK", e))
    }

    async fn commit_schema(&mut self) -> Result<(), DbSinkError> {
        if !self.in_tx {
            return Ok(());
        }
        self.in_tx = false;
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| classify("COMMIT", e))
    }

    fn transactional_ddl(&self) -> bool {
        false
    }

    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    fn forget_tables(&mut self) {
        self.tables.clear();
    }

    fn sent_bytes(&self) -> u64 {
        self.sent
    }
}

fn classify(context: &str, e: mysql_async::Error) -> DbSinkError {
    let err = match &e {
        mysql_async::Error::Server(s) => {
            let msg = format!("{context}: {} (error {})", s.message, s.code);
            match s.code {
                1062 | 1586 => DbSinkError::definite(msg).with_kind(DbErrorKind::Duplicate),
                1213 | 1205 => DbSinkError::transient(msg).with_kind(DbErrorKind::Retry),
                1050 | 1051 | 1060 | 1061 | 1091 | 1007 | 1008 | 1146 => {
                    DbSinkError::definite(msg).with_kind(DbErrorKind::InEffect)
                }
                1290 | 1836 => DbSinkError::definite(format!(
                    "{msg}: the target is read-only; point sink.url at a writable primary"
                )),
                1044 | 1045 | 1142 | 1143 | 1227 => DbSinkError::definite(format!(
                    "{msg}: grant the target user INSERT, UPDATE, DELETE on the tables (CREATE, ALTER, DROP to apply DDL and create tables)"
                )),
                1040 | 1053 | 2006 | 2013 => DbSinkError::transient(msg),
                _ => DbSinkError::definite(msg),
            }
        }
        // A certificate that doesn't verify won't verify on the next try.
        mysql_async::Error::Io(io) if crate::source::mysql::errors::is_tls_failure(io) => {
            DbSinkError::definite(format!(
                "{context}: TLS handshake failed. Check [tasks.sink.tls]: ca_file must hold the CA that signed the target's certificate, whose names must include the host in sink.url (or set skip_hostname_check)"
            ))
        }
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            DbSinkError::definite(format!(
                "{context}: sink.tls.mode requires TLS but the target doesn't offer it: configure ssl_cert/ssl_key on the server, or set [tasks.sink.tls] mode = \"disabled\""
            ))
        }
        other => DbSinkError::transient(format!("{context}: {other}")),
    };
    err.caused_by(e)
}

/// Whether a column compares exactly with a value sent as a parameter
/// (see [`same`]). FLOAT compares as a double (`1.1` never equals the
/// stored single), BIT, JSON and geometry compare as strings of another
/// form: left out of the before-image check.
fn compared(column_type: &str) -> bool {
    let t = column_type.to_ascii_lowercase();
    match Kind::of_mysql(&t) {
        Kind::Float => !t.starts_with("float"),
        Kind::Bit | Kind::Json | Kind::Geometry | Kind::Other => false,
        _ => true,
    }
}

/// `column` equals `value` (a parameter, NULL equal to NULL): text through
/// utf8mb4 in binary collation (no mix of collations, no case folding),
/// decimals at the column's precision (a string against a DECIMAL
/// compares as a double otherwise), the rest as MySQL converts them.
fn same(c: &TargetColumn, column: &str, value: &str) -> String {
    let t = c.type_name.to_ascii_lowercase();
    match c.kind {
        Kind::Text if c.compared => {
            format!("CONVERT({column} USING utf8mb4) COLLATE utf8mb4_bin <=> {value}")
        }
        Kind::Decimal if c.compared => {
            let size = t
                .split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map_or("65,30", |(a, _)| a);
            format!("{column} <=> CAST({value} AS DECIMAL({size}))")
        }
        _ => format!("{column} <=> {value}"),
    }
}
