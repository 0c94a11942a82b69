//! Pre-check items of MySQL/MariaDB sources and targets.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::{Item, TaskFacts, reach};
use crate::config::{DbSinkConfig, MysqlSourceConfig, TaskConfig, TlsConfig, TlsMode, redact_url};

/// Connects step by step (DNS, TCP, TLS and login), naming the step that
/// fails; the connection when it worked.
pub(super) async fn connect_source(m: &MysqlSourceConfig) -> (Item, Option<Conn>) {
    connect("source", &m.url, &m.tls, "tasks.source.tls").await
}

async fn connect(side: &str, url: &str, tls: &TlsConfig, section: &str) -> (Item, Option<Conn>) {
    let name = format!("{side}.connection");
    let shown = redact_url(url);
    let opts = match opts(url, tls) {
        Ok(o) => o,
        Err(e) => {
            return (
                Item::fail(
                    &name,
                    format!("url {shown}: {e}"),
                    format!("fix {side}.url (mysql://user:password@host:port)"),
                ),
                None,
            );
        }
    };
    let host = opts.ip_or_hostname().to_string();
    if let Err(item) = reach(&name, &host, opts.tcp_port()).await {
        return (item, None);
    }
    let conn = tokio::time::timeout(std::time::Duration::from_secs(15), Conn::new(opts)).await;
    let conn = match conn {
        Err(_) => {
            return (
                Item::fail(
                    &name,
                    format!("login: {shown} didn't answer the handshake in 15 s"),
                    "check that a MySQL/MariaDB server listens there",
                ),
                None,
            );
        }
        Ok(Err(e)) => return (login_failure(&name, &shown, section, e), None),
        Ok(Ok(c)) => c,
    };
    let mut conn = conn;
    let version: Option<String> = conn.query_first("SELECT VERSION()").await.unwrap_or(None);
    let version = version.unwrap_or_default();
    let tls_on = tls.mode != TlsMode::Disabled;
    (
        Item::pass(
            &name,
            format!(
                "{shown}: {version}{}",
                if tls_on { ", over TLS" } else { "" }
            ),
        ),
        Some(conn),
    )
}

fn login_failure(name: &str, shown: &str, section: &str, e: mysql_async::Error) -> Item {
    match &e {
        mysql_async::Error::Server(s) if matches!(s.code, 1045 | 1698) => Item::fail(
            name,
            format!("auth: {shown}: {} (error {})", s.message, s.code),
            "check the user and password in the URL, and that the user may connect from this host",
        ),
        mysql_async::Error::Server(s) => Item::fail(
            name,
            format!("login: {shown}: {} (error {})", s.message, s.code),
            "see the server's message",
        ),
        mysql_async::Error::Io(io) if crate::source::mysql::errors::is_tls_failure(io) => {
            Item::fail(
                name,
                format!("tls: {shown}: the handshake failed ({io})"),
                format!(
                    "check [{section}]: ca_file must hold the CA that signed the server's certificate, whose names must include the host (or set skip_hostname_check)"
                ),
            )
        }
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            Item::fail(
                name,
                format!("tls: {shown}: the server doesn't offer TLS"),
                format!(
                    "configure ssl_cert/ssl_key on the server, or set [{section}] mode = \"disabled\""
                ),
            )
        }
        other => Item::fail(
            name,
            format!("login: {shown}: {other}"),
            "check the server and the URL",
        ),
    }
}

pub(crate) fn opts(url: &str, tls: &TlsConfig) -> Result<Opts, String> {
    let base = Opts::from_url(url).map_err(|e| e.to_string())?;
    Ok(OptsBuilder::from_opts(base)
        .prefer_socket(false)
        .ssl_opts(crate::source::mysql::ssl_opts(tls))
        .into())
}

/// A global variable's value as text (`None` when the server has none).
async fn var(conn: &mut Conn, name: &str) -> Option<String> {
    conn.query_first::<Option<String>, _>(format!("SELECT @@global.{name}"))
        .await
        .ok()
        .flatten()
        .flatten()
}

pub(super) async fn source(
    cfg: &TaskConfig,
    m: &MysqlSourceConfig,
    facts: &TaskFacts,
) -> Vec<Item> {
    let (item, conn) = connect_source(m).await;
    let mut items = vec![item];
    let Some(mut conn) = conn else {
        return items;
    };
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    // The binary log.
    match var(&mut conn, "log_bin").await.as_deref() {
        Some("1" | "ON") => items.push(Item::pass("source.log_bin", "ON")),
        other => items.push(Item::fail(
            "source.log_bin",
            format!("binary logging is {}", other.unwrap_or("OFF")),
            "start the server with log-bin (and server-id, binlog_format=ROW) in its config file, then restart it",
        )),
    }
    match var(&mut conn, "binlog_format").await {
        Some(f) if f.eq_ignore_ascii_case("ROW") => {
            items.push(Item::pass("source.binlog_format", "ROW"))
        }
        other => items.push(Item::fail(
            "source.binlog_format",
            format!(
                "{} (changes would be logged as statements, which carry no rows)",
                other.as_deref().unwrap_or("unset")
            ),
            "SET GLOBAL binlog_format = 'ROW', and binlog_format=ROW in the server's config file",
        )),
    }
    match var(&mut conn, "binlog_row_image").await {
        Some(f) if f.eq_ignore_ascii_case("FULL") => items.push(Item::pass("source.binlog_row_image", "FULL")),
        other => items.push(Item::warn(
            "source.binlog_row_image",
            format!("{}: updates carry only the columns that changed (and the key); before images are partial", other.as_deref().unwrap_or("unset")),
            "SET GLOBAL binlog_row_image = 'FULL' for whole before and after images",
        )),
    }
    match var(&mut conn, "binlog_row_metadata").await {
        Some(f) if f.eq_ignore_ascii_case("FULL") => items.push(Item::pass("source.binlog_row_metadata", "FULL")),
        other => items.push(Item::warn(
            "source.binlog_row_metadata",
            format!("{}: column names come from information_schema, right only when no schema change is pending in the backlog", other.as_deref().unwrap_or("not supported by this server")),
            "SET GLOBAL binlog_row_metadata = 'FULL' (MySQL 8.0.1+, MariaDB 10.5+)",
        )),
    }
    // Privileges to read the binlog.
    let logs: Result<Vec<mysql_async::Row>, _> = conn.query("SHOW BINARY LOGS").await;
    let files: Vec<String> = match logs {
        Ok(rows) => {
            items.push(Item::pass(
                "source.privileges",
                "the user may list and read the binary logs",
            ));
            rows.into_iter()
                .filter_map(|r| r.get::<String, _>(0))
                .collect()
        }
        Err(e) => {
            let grant = if mariadb {
                "REPLICATION SLAVE, BINLOG MONITOR, SELECT"
            } else {
                "REPLICATION SLAVE, REPLICATION CLIENT, SELECT"
            };
            items.push(Item::fail(
                "source.privileges",
                format!("listing the binary logs: {e}"),
                format!("GRANT {grant} ON *.* TO the task's user"),
            ));
            Vec::new()
        }
    };
    // The server id no other replica uses.
    let server_id: Option<u32> = conn.query_first("SELECT @@server_id").await.ok().flatten();
    let replicas: Vec<u32> = conn
        .query::<mysql_async::Row, _>(if mariadb {
            "SHOW SLAVE HOSTS"
        } else {
            "SHOW REPLICAS"
        })
        .await
        .map(|rows| {
            rows.into_iter()
                .filter_map(|r| r.get::<u32, _>(0))
                .collect()
        })
        .unwrap_or_default();
    if server_id == Some(m.server_id) {
        items.push(Item::fail(
            "source.server_id",
            format!("source.server_id {} is the server's own", m.server_id),
            "give the task a server_id no server or replica of this topology uses",
        ));
    } else if replicas.contains(&m.server_id) && !facts.running {
        items.push(Item::fail(
            "source.server_id",
            format!("a replica with server_id {} is connected", m.server_id),
            "give the task a server_id no other replica uses (two replicas with one id disconnect each other)",
        ));
    } else {
        items.push(Item::pass(
            "source.server_id",
            format!("{} is free", m.server_id),
        ));
    }
    // Retention of the binlog the task still needs.
    let expire_secs: Option<u64> = {
        let secs = var(&mut conn, "binlog_expire_logs_seconds")
            .await
            .and_then(|s| s.parse::<u64>().ok());
        let days = var(&mut conn, "expire_logs_days")
            .await
            .and_then(|s| s.parse::<f64>().ok());
        match (secs, days) {
            (Some(s), _) if s > 0 => Some(s),
            (_, Some(d)) if d > 0.0 => Some((d * 86_400.0) as u64),
            _ => None,
        }
    };
    let needed = facts
        .committed
        .as_deref()
        .and_then(|p| p.strip_prefix("binlog:"))
        .and_then(|p| p.split(':').next())
        .map(str::to_string);
    match (&needed, expire_secs) {
        (Some(file), _) if !files.is_empty() && !files.contains(file) => items.push(Item::fail(
            "source.binlog_retention",
            format!("the task's position is in {file}, which the server no longer has (purged)"),
            "the changes since are lost to this task: reset it (tidemark offsets reset) and copy the tables again (mode = \"snapshot+stream\")",
        )),
        (_, None) => items.push(Item::pass(
            "source.binlog_retention",
            "binary logs are not purged by age (binlog_expire_logs_seconds and expire_logs_days are 0): watch the disk",
        )),
        (_, Some(secs)) => {
            let lag = facts.lag_seconds.unwrap_or(0.0);
            let left_h = (secs as f64 - lag) / 3600.0;
            let text = format!(
                "binary logs are kept {:.1} h; the task is {:.0} s behind",
                secs as f64 / 3600.0,
                lag
            );
            if left_h < 6.0 {
                items.push(Item::warn(
                    "source.binlog_retention",
                    format!("{text}: at the current lag the binlog the task still needs is purged in {left_h:.1} h"),
                    "raise binlog_expire_logs_seconds, or let the task catch up (throttle, more workers)",
                ));
            } else {
                items.push(Item::pass("source.binlog_retention", text));
            }
        }
    }
    // A key on every selected table.
    let filter = crate::select::TableFilter::new(&cfg.filter.include, &cfg.filter.exclude).ok();
    let keyless: Vec<(String, String)> = conn
        .query(
            "SELECT t.TABLE_SCHEMA, t.TABLE_NAME FROM information_schema.TABLES t
              WHERE t.TABLE_TYPE = 'BASE TABLE'
                AND t.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
                AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS s
                                 WHERE s.TABLE_SCHEMA = t.TABLE_SCHEMA AND s.TABLE_NAME = t.TABLE_NAME
                                   AND s.NON_UNIQUE = 0)",
        )
        .await
        .unwrap_or_default();
    let keyless: Vec<String> = keyless
        .into_iter()
        .filter(|(d, t)| filter.as_ref().is_none_or(|f| f.selects(d, t)))
        .map(|(d, t)| format!("{d}.{t}"))
        .collect();
    if keyless.is_empty() {
        items.push(Item::pass(
            "source.table_keys",
            "every selected table has a primary or unique key",
        ));
    } else {
        items.push(Item::warn(
            "source.table_keys",
            format!("{} selected table(s) without a key: {}", keyless.len(), keyless.iter().take(20).cloned().collect::<Vec<_>>().join(", ")),
            "add a primary key: without one, consumers can't tell rows apart (Kafka message keys are empty; a database target matches rows on every column, one at a time)",
        ));
    }
    let _ = conn.disconnect().await;
    items
}

pub(super) async fn target(cfg: &TaskConfig, d: &DbSinkConfig, full: bool) -> Vec<Item> {
    let (item, conn) = connect("target", &d.url, &d.tls, "tasks.sink.tls").await;
    let mut items = vec![item];
    let Some(mut conn) = conn else {
        return items;
    };
    let ro: Option<(u8, u8)> = conn
        .query_first("SELECT @@read_only, @@global.read_only")
        .await
        .ok()
        .flatten();
    if ro.is_some_and(|(a, b)| a == 1 || b == 1) {
        items.push(Item::fail(
            "target.writable",
            "the target is read-only (read_only = ON: a replica?)",
            "point sink.url at a writable primary",
        ));
    } else {
        items.push(Item::pass("target.writable", "read_only = OFF"));
    }
    if d.exclusive {
        let name = crate::sink::db::lock_name(&d.meta_schema, &cfg.id);
        items.push(
            match crate::sink::db::mysql_lock_holder(&mut conn, &name).await {
                Ok(None) => Item::pass(
                    "target.single_writer",
                    format!("no session applies task {} into this target", cfg.id),
                ),
                Ok(Some((holder, end_it))) => Item::warn(
                    "target.single_writer",
                    format!("task {} is applying into this target now ({holder})", cfg.id),
                    format!("if that is this task running on another tidemark, this one would wait until that session ends: stop the other, or give this task another id or meta_schema; {end_it} ends that session"),
                ),
                Err(e) => Item::warn(
                    "target.single_writer",
                    format!("the task's lock on the target could not be looked up: {e}"),
                    "nothing to do before starting: the task takes the lock when it starts",
                ),
            },
        );
    }
    if full {
        let mapped: Vec<String> = cfg
            .filter
            .include
            .iter()
            .filter_map(|p| p.split_once('.').map(|(db, _)| db.to_string()))
            .filter(|db| !db.contains(['*', '?']))
            .map(|db| d.target_of(&db, "x").0)
            .collect();
        let mut existing = 0usize;
        for db in &mapped {
            let n: Option<i64> = conn
                .exec_first(
                    "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                    (db,),
                )
                .await
                .ok()
                .flatten();
            existing += n.unwrap_or(0) as usize;
        }
        if existing > 0 {
            items.push(Item::warn(
                "target.existing_tables",
                format!("{existing} table(s) already in {} on the target", mapped.join(", ")),
                "rows there meet the task's conflict policy (sink.conflict): empty them for an exact copy, or keep them on purpose",
            ));
        } else {
            items.push(Item::pass(
                "target.existing_tables",
                "no same-named tables on the target",
            ));
        }
    }
    let _ = conn.disconnect().await;
    items
}
