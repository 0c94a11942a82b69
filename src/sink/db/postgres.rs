//! PostgreSQL target: values bound as text and cast to each column's type
//! in the statement (every type has a text input), multi-row inserts
//! through `unnest` of one text array per column, so one prepared
//! statement serves any number of rows.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};
use tracing::{info, warn};

use super::apply::{
    InsertMode, Settings, Target, TargetColumn, TargetTable, checked_columns, pg_ident,
};
use super::conflict::Journal;
use super::render::{Kind, pg_text};
use super::{DbErrorKind, DbSinkError, Engine};
use crate::event::{Position, TableSchema, Value};
use crate::source::postgres::connect;

pub struct PgTarget {
    client: Client,
    /// Where the position table lives, quoted.
    meta: String,
    /// The advisory-lock key of the task's lock on the target
    /// (`exclusive`).
    lock: i64,
    in_tx: bool,
    tables: HashMap<usize, Arc<TargetTable>>,
    stmts: HashMap<String, Statement>,
    sent: u64,
    describe: String,
}

impl PgTarget {
    /// Takes the task's advisory lock on the target database for this
    /// session's lifetime (`exclusive`). It tries for a few seconds: a
    /// session of this task's previous run may still be closing.
    async fn lock(&mut self, task: &str) -> Result<(), DbSinkError> {
        let key = self.lock;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let got: bool = self
                .client
                .query_one("SELECT pg_catalog.pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(|e| classify("taking the task's advisory lock on the target", e))?
                .get(0);
            if got {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let (holder, end_it) = lock_holder(&self.client, key).await.unwrap_or_else(|| {
            (
                format!("advisory lock {key}"),
                "pg_terminate_backend(<its pid>)".to_string(),
            )
        });
        Err(super::lock_held(
            task,
            &format!("{}.apply_position", self.meta),
            &holder,
            &end_it,
        ))
    }

    async fn begin(&mut self) -> Result<(), DbSinkError> {
        if !self.in_tx {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| classify("BEGIN", e))?;
            self.in_tx = true;
        }
        Ok(())
    }

    async fn prepared(
        &mut self,
        sql: String,
        params: usize,
        ty: Type,
    ) -> Result<Statement, DbSinkError> {
        if let Some(s) = self.stmts.get(&sql) {
            return Ok(s.clone());
        }
        let types = vec![ty; params];
        let st = self
            .client
            .prepare_typed(&sql, &types)
            .await
            .map_err(|e| classify("preparing a statement", e))?;
        if self.stmts.len() > 512 {
            self.stmts.clear();
        }
        self.stmts.insert(sql, st.clone());
        Ok(st)
    }

    async fn resolve(
        &mut self,
        src: &Arc<TableSchema>,
        s: &Settings,
    ) -> Result<TargetTable, DbSinkError> {
        let src_ns = src.schema.clone().unwrap_or_else(|| src.db.clone());
        let (schema, name) = s.cfg.target_of(&src_ns, &src.name);
        let label = format!("{schema}.{name}");
        let sql_name = format!("{}.{}", pg_ident(&schema), pg_ident(&name));
        let mut cols = self.columns(&schema, &name).await?;
        if cols.is_empty() {
            if !s.cfg.create_tables {
                return Err(DbSinkError::definite(format!(
                    "target table {label} doesn't exist: create it, or set sink.create_tables = true"
                )));
            }
            // Columns with the source's defaults, and without them if the
            // target refuses one.
            let def = super::create::table_def(src, super::Engine::Postgres, s.source)
                .map_err(DbSinkError::definite)?;
            let create = |with_defaults: bool| {
                format!(
                    "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {sql_name} ({})",
                    pg_ident(&schema),
                    def.body(with_defaults)
                )
            };
            self.begin().await?;
            let fenced = format!("SAVEPOINT tidemark_create; {}", create(true));
            if let Err(e) = self.client.batch_execute(&fenced).await {
                let e = classify(&format!("creating target table {label}"), e);
                if def.with_defaults == def.plain || e.class != crate::error::ErrorClass::Definite {
                    return Err(e);
                }
                warn!(table = %label, error = %e, "the target refused a default of the source's columns: the table is created without defaults");
                self.client
                    .batch_execute(&format!(
                        "ROLLBACK TO SAVEPOINT tidemark_create; {}",
                        create(false)
                    ))
                    .await
                    .map_err(|e| classify(&format!("creating target table {label}"), e))?;
            }
            info!(table = %label, "created the target table");
            cols = self.columns(&schema, &name).await?;
        }
        let mut columns = Vec::with_capacity(src.columns.len());
        for (i, c) in src.columns.iter().enumerate() {
            let found = cols.iter().find(|(n, _)| n == &c.name).cloned();
            let (cname, ty) = match found {
                Some(f) => f,
                None if s.cfg.create_tables => {
                    let ty = super::create::postgres_type(s.source, c, src.key.contains(&i))
                        .map_err(DbSinkError::definite)?;
                    self.begin().await?;
                    // The source's rows took its default: so do the
                    // target's (logical decoding sends no row for them).
                    let default = super::create::postgres_default(
                        src.defaults.get(i).and_then(Option::as_ref),
                        &ty,
                    );
                    self.client
                        .batch_execute(&format!(
                            "ALTER TABLE {sql_name} ADD COLUMN {} {ty}{default}",
                            pg_ident(&c.name)
                        ))
                        .await
                        .map_err(|e| {
                            classify(&format!("adding column {} to {label}", c.name), e)
                        })?;
                    info!(table = %label, column = %c.name, "added the source's new column to the target table");
                    let again = self.columns(&schema, &name).await?;
                    again
                        .into_iter()
                        .find(|(n, _)| n == &c.name)
                        .ok_or_else(|| {
                            DbSinkError::definite(format!(
                                "column {} vanished from {label}",
                                c.name
                            ))
                        })?
                }
                None => {
                    return Err(DbSinkError::definite(format!(
                        "target table {label} has no column {:?} (the source has): add it, or set sink.create_tables = true",
                        c.name
                    )));
                }
            };
            columns.push(TargetColumn {
                sql_name: pg_ident(&cname),
                kind: Kind::of_postgres(&ty),
                type_name: ty,
                // Compared through their text forms: every type has one.
                compared: true,
            });
        }
        let keyed = !src.key.is_empty();
        let indexes: Vec<Vec<String>> = self
            .client
            .query(
                "SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_catalog.pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = $1::text::regclass AND i.indisunique
                    AND i.indpred IS NULL AND i.indexprs IS NULL
                  GROUP BY i.indexrelid",
                &[&sql_name],
            )
            .await
            .map_err(|e| classify("reading the target's unique keys", e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
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
        t.set_uniques(indexes);
        Ok(t)
    }

    async fn columns(
        &mut self,
        schema: &str,
        table: &str,
    ) -> Result<Vec<(String, String)>, DbSinkError> {
        let rows = self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
                   FROM pg_catalog.pg_attribute a
                   JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum",
                &[&schema, &table],
            )
            .await
            .map_err(|e| classify("reading the target's columns", e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn render(
        &mut self,
        t: &TargetTable,
        i: usize,
        v: &Value,
    ) -> Result<Option<String>, DbSinkError> {
        let col = &t.columns[i];
        let r = pg_text(v, &col.kind).map_err(|why| {
            DbSinkError::definite(format!(
                "column {} ({}) of {}: {why}",
                t.source.columns.get(i).map_or("?", |c| c.name.as_str()),
                col.type_name,
                t.label
            ))
        })?;
        if let Some(s) = &r {
            self.sent += s.len() as u64;
        }
        Ok(r)
    }

    /// Snapshot rows by `COPY … FROM STDIN` (text format): the fastest way
    /// in; a taken key fails the whole statement as a unique violation.
    async fn copy(&mut self, t: &TargetTable, rows: &[&[Value]]) -> Result<u64, DbSinkError> {
        use futures_util::SinkExt;
        let names: Vec<&str> = t.columns.iter().map(|c| c.sql_name.as_str()).collect();
        let mut buf = bytes::BytesMut::with_capacity(rows.len() * 128);
        for row in rows {
            for i in 0..t.columns.len() {
                if i > 0 {
                    buf.extend_from_slice(b"\t");
                }
                match self.render(t, i, row.get(i).unwrap_or(&Value::Null))? {
                    None => buf.extend_from_slice(b"\\N"),
                    Some(text) => copy_escape(&text, &mut buf),
                }
            }
            buf.extend_from_slice(b"\n");
        }
        let sql = format!("COPY {} ({}) FROM STDIN", t.sql_name, names.join(", "));
        let context = format!("loading into {}", t.label);
        let sink = self
            .client
            .copy_in::<_, bytes::Bytes>(&sql)
            .await
            .map_err(|e| classify(&context, e))?;
        let mut sink = std::pin::pin!(sink);
        sink.send(buf.freeze())
            .await
            .map_err(|e| classify(&context, e))?;
        sink.as_mut()
            .finish()
            .await
            .map_err(|e| classify(&context, e))
    }

    /// `WHERE` over the key columns from parameter `first` on.
    fn key_clause(t: &TargetTable, first: usize) -> String {
        let mut w = Vec::new();
        for (n, &i) in t.key.iter().enumerate() {
            let c = &t.columns[i];
            let p = first + n;
            if t.keyed {
                w.push(format!("{} = ${p}::{}", c.sql_name, c.type_name));
            } else {
                w.push(same_text(c, &c.sql_name, &format!("${p}")));
            }
        }
        w.join(" AND ")
    }

    fn key_params(
        &mut self,
        t: &TargetTable,
        key: &[Value],
    ) -> Result<Vec<Option<String>>, DbSinkError> {
        t.key
            .iter()
            .zip(key)
            .map(|(&i, v)| self.render(t, i, v))
            .collect()
    }
}

/// The session holding the advisory lock `key` in the current database, if
/// any: how to name it, and the statement that ends it.
pub(crate) async fn lock_holder(client: &Client, key: i64) -> Option<(String, String)> {
    // A bigint key shows in pg_locks as classid (high half), objid (low
    // half), objsubid 1.
    let r = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local'), coalesce(a.usename::text, ''), a.backend_start::text
               FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
                AND l.classid::bigint = (($1::bigint >> 32) & 4294967295)
                AND l.objid::bigint = ($1::bigint & 4294967295)",
            &[&key],
        )
        .await
        .ok()
        .flatten()?;
    let pid: i32 = r.get(0);
    let app: String = r.get(1);
    let addr: String = r.get(2);
    let user: String = r.get(3);
    let since: Option<String> = r.get(4);
    Some((
        format!(
            "PID {pid}, application {app:?}, {user} from {addr}, connected since {}",
            since.unwrap_or_default()
        ),
        format!("SELECT pg_terminate_backend({pid})"),
    ))
}

impl Target for PgTarget {
    /// Connects; `worker` numbers a parallel worker's connection (each
    /// needs its own replication origin).
    async fn connect(s: &Settings, worker: Option<usize>) -> Result<Self, DbSinkError> {
        let target = connect::Target::parse(&s.cfg.url).map_err(DbSinkError::from_source)?;
        let client = connect::sql(
            &target,
            &s.cfg.tls,
            &format!("tidemark-apply:{}", s.task),
            "tasks.sink.tls",
        )
        .await
        .map_err(DbSinkError::from_source)?;
        let describe = target.describe();
        let ro: String = client
            .query_one("SELECT current_setting('transaction_read_only')", &[])
            .await
            .map_err(|e| classify(&format!("reading settings of {describe}"), e))?
            .get(0);
        if ro == "on" {
            return Err(DbSinkError::definite(format!(
                "the target {describe} is read-only (a standby, or default_transaction_read_only = on): point sink.url at a writable primary"
            )));
        }
        // A lock held on the target fails the statement instead of holding
        // the task silently; the transaction is then applied again.
        client
            .batch_execute(&format!(
                "SET lock_timeout = '{}s'",
                s.cfg.lock_timeout_secs
            ))
            .await
            .map_err(|e| classify("setting lock_timeout", e))?;
        // Replicated rows: the source ran its triggers and checked its
        // foreign keys already (and snapshot tables load in any order).
        if let Err(e) = client
            .batch_execute("SET session_replication_role = replica")
            .await
        {
            warn!(task = %s.task, target = %describe, error = %e, "session_replication_role = replica was refused (it needs a superuser, or GRANT SET ON PARAMETER session_replication_role on PostgreSQL 15+): foreign keys and triggers of the target stay active while applying");
        }
        // With `origin` set (bidirectional pairs), changes applied here
        // carry a replication origin, which the source of the reverse task
        // leaves out (`exclude_replicated`). Each connection needs its own
        // (one session per origin): `_w<n>` for the parallel workers.
        // Origins are tracked in max_replication_slots' slots: none are
        // taken unless asked for.
        if let Some(base) = &s.cfg.origin {
            let origin = match worker {
                Some(w) => format!("{base}_w{w}"),
                None => base.clone(),
            };
            let setup = client
                .execute(
                    "SELECT pg_catalog.pg_replication_origin_create($1) WHERE pg_catalog.pg_replication_origin_oid($1) IS NULL",
                    &[&origin],
                )
                .await;
            let setup = match setup {
                Ok(_) => client
                    .execute(
                        "SELECT pg_catalog.pg_replication_origin_session_setup($1)",
                        &[&origin],
                    )
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = setup {
                let why = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string());
                let err = match e.code() {
                    Some(c) if *c == tokio_postgres::error::SqlState::OBJECT_IN_USE => {
                        DbSinkError::transient(format!(
                            "replication origin {origin} on {describe} is in use by another session ({why}): a previous run of task {} still connected, or another task with the same sink.origin",
                            s.task
                        ))
                    }
                    Some(c) if *c == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => {
                        DbSinkError::definite(format!(
                            "sink.origin needs the replication-origin functions on {describe} ({why}): a superuser, or GRANT EXECUTE ON FUNCTION pg_replication_origin_create, pg_replication_origin_oid, pg_replication_origin_session_setup TO the target user"
                        ))
                    }
                    _ => DbSinkError::definite(format!(
                        "setting up replication origin {origin} on {describe}: {why} (origins in use count against max_replication_slots: raise it, or drop unused ones with pg_replication_origin_drop)"
                    )),
                };
                return Err(err.caused_by(e));
            }
        }
        Ok(PgTarget {
            client,
            meta: pg_ident(&s.cfg.meta_schema),
            lock: super::lock_key(&s.cfg.meta_schema, &s.task),
            in_tx: false,
            tables: HashMap::new(),
            stmts: HashMap::new(),
            sent: 0,
            describe,
        })
    }

    /// Creates the position table if missing; returns the task's position.
    async fn open(
        &mut self,
        task: &str,
        journal: bool,
        exclusive: bool,
    ) -> Result<super::Opened, DbSinkError> {
        let m = &self.meta;
        if journal {
            self.client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {m};
                     CREATE TABLE IF NOT EXISTS {m}.conflicts (
                         id bigserial PRIMARY KEY,
                         task text NOT NULL,
                         table_name text NOT NULL,
                         op text NOT NULL,
                         what text NOT NULL,
                         key text NOT NULL,
                         source_row text,
                         target_row text,
                         position text NOT NULL,
                         action text NOT NULL,
                         at timestamptz NOT NULL DEFAULT now())"
                ))
                .await
                .map_err(|e| classify(&format!("creating {m}.conflicts"), e))?;
        }
        self.client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {m};
                 CREATE TABLE IF NOT EXISTS {m}.apply_position (
                     task text PRIMARY KEY,
                     position text NOT NULL,
                     updated_at timestamptz NOT NULL DEFAULT now());
                 CREATE TABLE IF NOT EXISTS {m}.apply_done (
                     task text NOT NULL,
                     worker int NOT NULL,
                     txs text NOT NULL,
                     PRIMARY KEY (task, worker))"
            ))
            .await
            .map_err(|e| {
                classify(
                    &format!(
                        "creating {m}.apply_position on {} (the target user needs CREATE on the database, or create the schema and table beforehand)",
                        self.describe
                    ),
                    e,
                )
            })?;
        if exclusive {
            self.lock(task).await?;
        }
        let m = &self.meta;
        let row = self
            .client
            .query_opt(
                &format!("SELECT position FROM {m}.apply_position WHERE task = $1"),
                &[&task],
            )
            .await
            .map_err(|e| classify("reading the task's position on the target", e))?;
        let done_rows = self
            .client
            .query(
                &format!("SELECT txs FROM {m}.apply_done WHERE task = $1"),
                &[&task],
            )
            .await
            .map_err(|e| classify("reading the task's applied transactions on the target", e))?;
        let texts: Vec<String> = done_rows.iter().map(|r| r.get(0)).collect();
        let position = row.map(|r| r.get::<_, String>(0));
        super::Opened::parse(
            task,
            &format!("{m}.apply_position"),
            position,
            &texts,
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
        self.client
            .batch_execute(&format!("DELETE FROM {}", t.sql_name))
            .await
            .map_err(|e| classify(&format!("emptying {}", t.label), e))
    }

    async fn insert(
        &mut self,
        t: &TargetTable,
        rows: &[&[Value]],
        how: InsertMode,
    ) -> Result<u64, DbSinkError> {
        self.begin().await?;
        let mut upsert = how == InsertMode::Upsert;
        if how == InsertMode::Load && rows.len() > 1 {
            // COPY, fenced: rows a change of the copy window put there
            // first make it fail, and the rows then go in as upserts.
            self.client
                .batch_execute("SAVEPOINT tidemark_load")
                .await
                .map_err(|e| classify("SAVEPOINT", e))?;
            match self.copy(t, rows).await {
                Ok(n) => {
                    self.client
                        .batch_execute("RELEASE SAVEPOINT tidemark_load")
                        .await
                        .map_err(|e| classify("RELEASE SAVEPOINT", e))?;
                    return Ok(n);
                }
                Err(e) if e.kind() == DbErrorKind::Duplicate => {
                    self.client
                        .batch_execute("ROLLBACK TO SAVEPOINT tidemark_load")
                        .await
                        .map_err(|e| classify("ROLLBACK TO SAVEPOINT", e))?;
                    upsert = true;
                }
                Err(e) => return Err(e),
            }
        } else if how == InsertMode::Load {
            upsert = true;
        }
        let n = t.columns.len();
        let mut arrays: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); n];
        for row in rows {
            for (i, array) in arrays.iter_mut().enumerate() {
                let v = row.get(i).unwrap_or(&Value::Null);
                array.push(self.render(t, i, v)?);
            }
        }
        let names: Vec<&str> = t.columns.iter().map(|c| c.sql_name.as_str()).collect();
        let casts: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("u.{}::{}", c.sql_name, c.type_name))
            .collect();
        let params: Vec<String> = (1..=n).map(|p| format!("${p}::text[]")).collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({})",
            t.sql_name,
            names.join(", "),
            casts.join(", "),
            params.join(", "),
            names.join(", ")
        );
        if upsert && t.keyed {
            let keys: Vec<&str> = t
                .key
                .iter()
                .map(|&i| t.columns[i].sql_name.as_str())
                .collect();
            let sets: Vec<String> = (0..n)
                .filter(|i| !t.key.contains(i))
                .map(|i| format!("{0} = EXCLUDED.{0}", t.columns[i].sql_name))
                .collect();
            if sets.is_empty() {
                sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")));
            } else {
                sql.push_str(&format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    keys.join(", "),
                    sets.join(", ")
                ));
            }
        }
        let st = self.prepared(sql, n, Type::TEXT_ARRAY).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client
            .execute(&st, &refs)
            .await
            .map_err(|e| classify(&format!("inserting into {}", t.label), e))
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
        let mut params: Vec<Option<String>> = Vec::new();
        for (i, v) in after.iter().enumerate() {
            if matches!(v, Value::Unchanged) || i >= t.columns.len() {
                continue;
            }
            params.push(self.render(t, i, v)?);
            let c = &t.columns[i];
            sets.push(format!(
                "{} = ${}::{}",
                c.sql_name,
                params.len(),
                c.type_name
            ));
        }
        if sets.is_empty() {
            return Ok(1);
        }
        let first = params.len() + 1;
        params.extend(self.key_params(t, key)?);
        let mut checks = String::new();
        if let Some(before) = before {
            for i in checked_columns(t, before) {
                params.push(self.render(t, i, &before[i])?);
                checks.push_str(" AND ");
                checks.push_str(&same_text(
                    &t.columns[i],
                    &t.columns[i].sql_name,
                    &format!("${}", params.len()),
                ));
            }
        }
        let sql = if t.keyed {
            format!(
                "UPDATE {} SET {} WHERE {}{checks}",
                t.sql_name,
                sets.join(", "),
                Self::key_clause(t, first)
            )
        } else {
            format!(
                "UPDATE {} SET {} WHERE ctid = (SELECT ctid FROM {} WHERE {} LIMIT 1)",
                t.sql_name,
                sets.join(", "),
                t.sql_name,
                Self::key_clause(t, first)
            )
        };
        let st = self.prepared(sql, params.len(), Type::TEXT).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client
            .execute(&st, &refs)
            .await
            .map_err(|e| classify(&format!("updating {}", t.label), e))
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
        let width = set.len() + t.key.len();
        let mut arrays: Vec<Vec<Option<String>>> =
            vec![Vec::with_capacity(keys.len()); width + checked.len()];
        for (n, (row, key)) in afters.iter().zip(keys).enumerate() {
            for (j, &i) in set.iter().enumerate() {
                let v = row.get(i).unwrap_or(&Value::Null);
                arrays[j].push(self.render(t, i, v)?);
            }
            for (j, (&i, v)) in t.key.iter().zip(key).enumerate() {
                arrays[set.len() + j].push(self.render(t, i, v)?);
            }
            let before = befores.and_then(|b| b.get(n)).copied().unwrap_or_default();
            for (j, &i) in checked.iter().enumerate() {
                let v = before.get(i).unwrap_or(&Value::Null);
                arrays[width + j].push(self.render(t, i, v)?);
            }
        }
        let sets: Vec<String> = set
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let c = &t.columns[i];
                format!("{} = u.v{j}::{}", c.sql_name, c.type_name)
            })
            .collect();
        let mut wheres: Vec<String> = t
            .key
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let c = &t.columns[i];
                format!("t.{} = u.k{j}::{}", c.sql_name, c.type_name)
            })
            .collect();
        wheres.extend(checked.iter().enumerate().map(|(j, &i)| {
            let c = &t.columns[i];
            same_text(c, &format!("t.{}", c.sql_name), &format!("u.b{j}"))
        }));
        let names: Vec<String> = (0..set.len())
            .map(|j| format!("v{j}"))
            .chain((0..t.key.len()).map(|j| format!("k{j}")))
            .chain((0..checked.len()).map(|j| format!("b{j}")))
            .collect();
        let params: Vec<String> = (1..=names.len()).map(|p| format!("${p}::text[]")).collect();
        let sql = format!(
            "UPDATE {} AS t SET {} FROM unnest({}) AS u({}) WHERE {}",
            t.sql_name,
            sets.join(", "),
            params.join(", "),
            names.join(", "),
            wheres.join(" AND ")
        );
        let st = self.prepared(sql, names.len(), Type::TEXT_ARRAY).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client
            .execute(&st, &refs)
            .await
            .map_err(|e| classify(&format!("updating {}", t.label), e))
    }

    async fn delete_many(
        &mut self,
        t: &TargetTable,
        keys: &[Vec<Value>],
    ) -> Result<u64, DbSinkError> {
        self.begin().await?;
        let mut arrays: Vec<Vec<Option<String>>> =
            vec![Vec::with_capacity(keys.len()); t.key.len()];
        for key in keys {
            for (j, (&i, v)) in t.key.iter().zip(key).enumerate() {
                arrays[j].push(self.render(t, i, v)?);
            }
        }
        let wheres: Vec<String> = t
            .key
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let c = &t.columns[i];
                format!("t.{} = u.k{j}::{}", c.sql_name, c.type_name)
            })
            .collect();
        let names: Vec<String> = (0..t.key.len()).map(|j| format!("k{j}")).collect();
        let params: Vec<String> = (1..=names.len()).map(|p| format!("${p}::text[]")).collect();
        let sql = format!(
            "DELETE FROM {} AS t USING unnest({}) AS u({}) WHERE {}",
            t.sql_name,
            params.join(", "),
            names.join(", "),
            wheres.join(" AND ")
        );
        let st = self.prepared(sql, names.len(), Type::TEXT_ARRAY).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client
            .execute(&st, &refs)
            .await
            .map_err(|e| classify(&format!("deleting from {}", t.label), e))
    }

    async fn exists(&mut self, t: &TargetTable, key: &[Value]) -> Result<bool, DbSinkError> {
        self.begin().await?;
        let params = self.key_params(t, key)?;
        let sql = format!(
            "SELECT 1 FROM {} WHERE {} LIMIT 1",
            t.sql_name,
            Self::key_clause(t, 1)
        );
        let st = self.prepared(sql, params.len(), Type::TEXT).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let row = self
            .client
            .query_opt(&st, &refs)
            .await
            .map_err(|e| classify(&format!("reading {}", t.label), e))?;
        Ok(row.is_some())
    }

    async fn delete(&mut self, t: &TargetTable, key: &[Value]) -> Result<u64, DbSinkError> {
        self.begin().await?;
        let params = self.key_params(t, key)?;
        let sql = if t.keyed {
            format!(
                "DELETE FROM {} WHERE {}",
                t.sql_name,
                Self::key_clause(t, 1)
            )
        } else {
            format!(
                "DELETE FROM {} WHERE ctid = (SELECT ctid FROM {} WHERE {} LIMIT 1)",
                t.sql_name,
                t.sql_name,
                Self::key_clause(t, 1)
            )
        };
        let st = self.prepared(sql, params.len(), Type::TEXT).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client
            .execute(&st, &refs)
            .await
            .map_err(|e| classify(&format!("deleting from {}", t.label), e))
    }

    async fn journal(&mut self, t: &TargetTable, e: &Journal<'_>) -> Result<(), DbSinkError> {
        self.begin().await?;
        let params = self.key_params(t, e.key)?;
        let sql = format!(
            "SELECT row_to_json(x)::text FROM {} AS x WHERE {} LIMIT 1",
            t.sql_name,
            Self::key_clause(t, 1)
        );
        let st = self.prepared(sql, params.len(), Type::TEXT).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let target_row: Option<String> = self
            .client
            .query_opt(&st, &refs)
            .await
            .map_err(|err| classify("reading the target row of a conflict", err))?
            .map(|r| r.get(0));
        let sql = format!(
            "INSERT INTO {}.conflicts (task, table_name, op, what, key, source_row, target_row, position, action)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            self.meta
        );
        let st = self.prepared(sql, 9, Type::TEXT).await?;
        let source_row = e.source_json(t);
        self.client
            .execute(
                &st,
                &[
                    &e.task,
                    &t.label,
                    &e.op,
                    &e.what,
                    &e.key_text,
                    &source_row,
                    &target_row,
                    &e.position,
                    &e.action,
                ],
            )
            .await
            .map_err(|err| classify("writing the conflict journal", err))?;
        Ok(())
    }

    async fn truncate(&mut self, t: &TargetTable) -> Result<(), DbSinkError> {
        self.begin().await?;
        self.client
            .batch_execute(&format!("TRUNCATE {}", t.sql_name))
            .await
            .map_err(|e| classify(&format!("truncating {}", t.label), e))
    }

    async fn ddl(&mut self, db: Option<&str>, sql: &str) -> Result<(), DbSinkError> {
        self.begin().await?;
        let _ = db;
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| classify("applying DDL", e))
    }

    async fn drop_table(&mut self, schema: &str, table: &str) -> Result<(), DbSinkError> {
        self.ddl(
            None,
            &format!(
                "DROP TABLE IF EXISTS {}.{}",
                pg_ident(schema),
                pg_ident(table)
            ),
        )
        .await
    }

    async fn savepoint(&mut self) -> Result<(), DbSinkError> {
        self.begin().await?;
        self.client
            .batch_execute("SAVEPOINT tidemark_row")
            .await
            .map_err(|e| classify("SAVEPOINT", e))
    }

    async fn release(&mut self) -> Result<(), DbSinkError> {
        self.client
            .batch_execute("RELEASE SAVEPOINT tidemark_row")
            .await
            .map_err(|e| classify("RELEASE SAVEPOINT", e))
    }

    async fn rollback_to(&mut self) -> Result<(), DbSinkError> {
        self.client
            .batch_execute("ROLLBACK TO SAVEPOINT tidemark_row")
            .await
            .map_err(|e| classify("ROLLBACK TO SAVEPOINT", e))
    }

    async fn commit_done(
        &mut self,
        task: &str,
        worker: usize,
        txs: &str,
    ) -> Result<(), DbSinkError> {
        self.begin().await?;
        let sql = format!(
            "INSERT INTO {}.apply_done (task, worker, txs) VALUES ($1, $2::text::int, $3)
             ON CONFLICT (task, worker) DO UPDATE SET txs = {}.apply_done.txs || E'\\n' || EXCLUDED.txs",
            self.meta, self.meta
        );
        let st = self.prepared(sql, 3, Type::TEXT).await?;
        let w = worker.to_string();
        self.client
            .execute(&st, &[&task, &w, &txs])
            .await
            .map_err(|e| classify("writing the applied transactions", e))?;
        self.in_tx = false;
        self.client
            .batch_execute("COMMIT")
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
            let sql = format!("DELETE FROM {}.apply_done WHERE task = $1", self.meta);
            let st = self.prepared(sql, 1, Type::TEXT).await?;
            self.client
                .execute(&st, &[&task])
                .await
                .map_err(|e| classify("clearing the applied transactions", e))?;
        }
        let sql = format!(
            "INSERT INTO {}.apply_position (task, position, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (task) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at",
            self.meta
        );
        let st = self.prepared(sql, 2, Type::TEXT).await?;
        let text = pos.to_string();
        self.client
            .execute(&st, &[&task, &text])
            .await
            .map_err(|e| classify("writing the position", e))?;
        self.in_tx = false;
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| classify("COMMIT", e))
    }

    async fn rollback(&mut self) -> Result<(), DbSinkError> {
        if !self.in_tx {
            return Ok(());
        }
        self.in_tx = false;
        self.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| classify("ROLLBACK", e))
    }

    async fn commit_schema(&mut self) -> Result<(), DbSinkError> {
        if !self.in_tx {
            return Ok(());
        }
        self.in_tx = false;
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| classify("COMMIT", e))
    }

    fn transactional_ddl(&self) -> bool {
        true
    }

    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn forget_tables(&mut self) {
        self.tables.clear();
        self.stmts.clear();
    }

    fn sent_bytes(&self) -> u64 {
        self.sent
    }
}

/// COPY's text format: backslash, tab, newline and carriage return escaped.
fn copy_escape(text: &str, out: &mut bytes::BytesMut) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len());
    // Runs without a byte to escape go in one copy.
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        out.extend_from_slice(escaped);
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

/// Classes a PostgreSQL error: a unique violation is a conflict, a
/// deadlock or serialization failure is run again, a lost connection is
/// transient, a DDL replay finds its change in effect.
fn classify(context: &str, e: tokio_postgres::Error) -> DbSinkError {
    let Some(db) = e.as_db_error() else {
        return DbSinkError::transient(format!("{context}: {e}")).caused_by(e);
    };
    let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
    let msg = format!("{context}: {}{detail}", db.message());
    let code = db.code().code();
    let err = match code {
        "23505" => DbSinkError::definite(msg).with_kind(DbErrorKind::Duplicate),
        "40001" | "40P01" | "55P03" => DbSinkError::transient(msg).with_kind(DbErrorKind::Retry),
        "42P07" | "42701" | "42P01" | "42703" | "42P06" | "42710" | "42704" => {
            DbSinkError::definite(msg).with_kind(DbErrorKind::InEffect)
        }
        "25006" => DbSinkError::definite(format!(
            "{msg}: the target is read-only; point sink.url at a writable primary"
        )),
        "42501" => DbSinkError::definite(format!(
            "{msg}: grant the target user the privilege (INSERT, UPDATE, DELETE on the tables; CREATE on the database to create tables)"
        )),
        c if c.starts_with("08") || c.starts_with("57P") || c == "53300" => {
            DbSinkError::transient(msg)
        }
        _ => DbSinkError::definite(msg),
    };
    err.caused_by(e)
}

/// `column` equals the text `value` cast to the column's type, compared
/// through their text forms: any type, even without an equality operator
/// (json, point), exactly (no collation or float tolerance), NULL equal
/// to NULL.
fn same_text(c: &TargetColumn, column: &str, value: &str) -> String {
    format!(
        "{column}::text IS NOT DISTINCT FROM ({value}::{})::text",
        c.type_name
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_text_escapes_only_what_copy_reads_specially() {
        let mut out = bytes::BytesMut::new();
        super::copy_escape("a\\b\tc\nd\re — plain", &mut out);
        assert_eq!(&out[..], "a\\\\b\\tc\\nd\\re — plain".as_bytes());
        out.clear();
        super::copy_escape("", &mut out);
        assert!(out.is_empty());
        super::copy_escape("\n", &mut out);
        assert_eq!(&out[..], b"\\n");
    }
}
