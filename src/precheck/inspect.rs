//! What the servers of a task hold and how they are set: the settings that
//! matter to change capture and apply (`parameters`), and the databases,
//! tables and columns a task can select (`objects`). Read-only.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::config::{SinkConfig, SourceConfig, TaskConfig, TlsConfig};
use crate::select::TableFilter;

/// MySQL/MariaDB settings shown, with what each means to tidemark.
const MYSQL_SETTINGS: &[(&str, &str)] = &[
    ("version", "server version"),
    (
        "server_id",
        "must differ from every task's source.server_id",
    ),
    ("log_bin", "binary log: must be ON"),
    ("binlog_format", "must be ROW"),
    ("binlog_row_image", "FULL for whole before images"),
    ("binlog_row_metadata", "FULL for column names in the binlog"),
    (
        "binlog_expire_logs_seconds",
        "binlog retention (0: by expire_logs_days or never)",
    ),
    ("expire_logs_days", "binlog retention, days"),
    ("gtid_mode", "MySQL GTIDs"),
    ("gtid_strict_mode", "MariaDB GTID strictness"),
    (
        "max_allowed_packet",
        "largest packet to clients (the binlog connection takes up to 1 GiB)",
    ),
    (
        "time_zone",
        "session default time zone (TIMESTAMP values are read in UTC)",
    ),
    ("system_time_zone", "the host's time zone"),
    ("character_set_server", "default character set"),
    ("collation_server", "default collation"),
    (
        "sql_mode",
        "SQL mode (a target applies with STRICT_ALL_TABLES)",
    ),
    ("read_only", "a target must be writable"),
    ("lower_case_table_names", "how table names compare"),
];

/// PostgreSQL settings shown.
const PG_SETTINGS: &[(&str, &str)] = &[
    ("server_version", "server version (12 or later)"),
    ("wal_level", "must be logical"),
    (
        "max_replication_slots",
        "each task takes one (and a target's origins, with sink.origin)",
    ),
    ("max_wal_senders", "each running task takes one"),
    (
        "max_slot_wal_keep_size",
        "WAL a slot may hold before it is invalidated (-1: no limit)",
    ),
    ("wal_keep_size", "WAL kept regardless of slots"),
    ("TimeZone", "session default time zone"),
    ("server_encoding", "database encoding"),
    ("default_transaction_read_only", "a target must be writable"),
    ("lc_collate", "collation"),
];

async fn mysql_parameters(url: &str, tls: &TlsConfig) -> Value {
    let opts = match super::mysql::opts(url, tls) {
        Ok(o) => o,
        Err(e) => return json!({"error": e}),
    };
    let mut conn = match mysql_async::Conn::new(opts).await {
        Ok(c) => c,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let mut out = Vec::new();
    for (name, meaning) in MYSQL_SETTINGS {
        let value: Option<String> = conn
            .query_first::<Option<String>, _>(format!("SELECT @@{name}"))
            .await
            .ok()
            .flatten()
            .flatten();
        out.push(json!({"name": name, "value": value, "meaning": meaning}));
    }
    let _ = conn.disconnect().await;
    json!({"engine": "mysql", "settings": out})
}

async fn pg_parameters(url: &str, tls: &TlsConfig, section: &str) -> Value {
    let target = match crate::source::postgres::connect::Target::parse(url) {
        Ok(t) => t,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let client = match crate::source::postgres::connect::sql(
        &target,
        tls,
        "tidemark-inspect",
        section,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return json!({"error": crate::error::chain(&e)}),
    };
    let mut out = Vec::new();
    for (name, meaning) in PG_SETTINGS {
        let value: Option<String> = client
            .query_one("SELECT current_setting($1, true)", &[name])
            .await
            .ok()
            .and_then(|r| r.try_get(0).ok());
        out.push(json!({"name": name, "value": value, "meaning": meaning}));
    }
    json!({"engine": "postgres", "settings": out})
}

/// The source's and the database target's settings that matter.
pub async fn parameters(cfg: &TaskConfig) -> Value {
    let source = match &cfg.source {
        SourceConfig::Mysql(m) => mysql_parameters(&m.url, &m.tls).await,
        SourceConfig::Postgres(p) => pg_parameters(&p.url, &p.tls, "tasks.source.tls").await,
    };
    let target = match &cfg.sink {
        SinkConfig::Mysql(d) => mysql_parameters(&d.url, &d.tls).await,
        SinkConfig::Postgres(d) => pg_parameters(&d.url, &d.tls, "tasks.sink.tls").await,
        _ => Value::Null,
    };
    json!({"source": source, "target": target})
}

/// Columns read from the source's catalog: (database or schema, table,
/// column, type, key).
type Col = (String, String, String, String, bool);

/// The source's databases (MySQL) or schemas (PostgreSQL), tables and
/// columns, each table marked `selected` by the task's filter; `only`
/// narrows to one database or schema.
pub async fn objects(cfg: &TaskConfig, only: Option<&str>) -> Result<Value, String> {
    let cols: Vec<Col> = match &cfg.source {
        SourceConfig::Mysql(m) => {
            let opts = super::mysql::opts(&m.url, &m.tls)?;
            let mut conn = mysql_async::Conn::new(opts)
                .await
                .map_err(|e| e.to_string())?;
            let rows: Vec<(String, String, String, String, String)> = conn
                .exec(
                    "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY
                       FROM information_schema.COLUMNS
                      WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
                        AND (? IS NULL OR TABLE_SCHEMA = ?)
                      ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION LIMIT 100000",
                    (only, only),
                )
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn.disconnect().await;
            rows.into_iter()
                .map(|(d, t, c, ty, k)| (d, t, c, ty, k == "PRI"))
                .collect()
        }
        SourceConfig::Postgres(p) => {
            let target = crate::source::postgres::connect::Target::parse(&p.url)
                .map_err(|e| e.to_string())?;
            let client = crate::source::postgres::connect::sql(
                &target,
                &p.tls,
                "tidemark-inspect",
                "tasks.source.tls",
            )
            .await
            .map_err(|e| crate::error::chain(&e))?;
            let rows = client
                .query(
                    "SELECT c.table_schema::text, c.table_name::text, c.column_name::text, c.data_type::text,
                            EXISTS (SELECT 1 FROM information_schema.key_column_usage k
                                      JOIN information_schema.table_constraints tc
                                        ON tc.constraint_name = k.constraint_name AND tc.table_schema = k.table_schema
                                     WHERE tc.constraint_type = 'PRIMARY KEY' AND k.table_schema = c.table_schema
                                       AND k.table_name = c.table_name AND k.column_name = c.column_name)
                       FROM information_schema.columns c
                       JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                      WHERE t.table_type = 'BASE TABLE'
                        AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
                        AND ($1::text IS NULL OR c.table_schema = $1)
                      ORDER BY 1, 2, c.ordinal_position LIMIT 100000",
                    &[&only],
                )
                .await
                .map_err(|e| e.to_string())?;
            rows.iter()
                .filter_map(|r| {
                    Some((
                        r.try_get(0).ok()?,
                        r.try_get(1).ok()?,
                        r.try_get(2).ok()?,
                        r.try_get(3).ok()?,
                        r.try_get(4).ok()?,
                    ))
                })
                .collect()
        }
    };
    let filter = TableFilter::new(&cfg.filter.include, &cfg.filter.exclude)?;
    let mut dbs: BTreeMap<String, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
    for (d, t, c, ty, key) in cols {
        dbs.entry(d)
            .or_default()
            .entry(t)
            .or_default()
            .push(json!({"name": c, "type": ty, "key": key}));
    }
    let databases: Vec<Value> = dbs
        .into_iter()
        .map(|(d, tables)| {
            let tables: Vec<Value> = tables
                .into_iter()
                .map(|(t, columns)| {
                    json!({"name": t, "selected": filter.selects(&d, &t), "columns": columns})
                })
                .collect();
            json!({"name": d, "tables": tables})
        })
        .collect();
    Ok(json!({ "databases": databases }))
}
