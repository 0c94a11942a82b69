//! Pre-check items of PostgreSQL sources and targets.

use tokio_postgres::Client;

use super::{Item, TaskFacts, reach};
use crate::config::{DbSinkConfig, PostgresSourceConfig, TaskConfig, TlsConfig, redact_url};
use crate::source::postgres::connect;

/// Connects step by step (DNS, TCP, then TLS and login), naming the step
/// that fails; the client when it worked.
pub(super) async fn connect(
    side: &str,
    url: &str,
    tls: &TlsConfig,
    section: &str,
) -> (Item, Option<Client>) {
    let name = format!("{side}.connection");
    let shown = redact_url(url);
    let target = match connect::Target::parse(url) {
        Ok(t) => t,
        Err(e) => {
            return (
                Item::fail(
                    &name,
                    format!("url {shown}: {e}"),
                    format!("fix {side}.url (postgres://user:password@host:port/database)"),
                ),
                None,
            );
        }
    };
    if let Err(item) = reach(&name, &target.host, target.port).await {
        return (item, None);
    }
    match connect::sql(&target, tls, "tidemark-precheck", section).await {
        Ok(client) => {
            let version: String = client
                .query_one("SELECT version()", &[])
                .await
                .ok()
                .and_then(|r| r.try_get(0).ok())
                .unwrap_or_default();
            (
                Item::pass(&name, format!("{shown}: {version}")),
                Some(client),
            )
        }
        Err(e) => {
            let text = crate::error::chain(&e);
            let lower = text.to_ascii_lowercase();
            let (step, fix) = if lower.contains("tls") || lower.contains("certificate") {
                (
                    "tls",
                    format!("check [{section}]: mode, ca_file, skip_hostname_check"),
                )
            } else if lower.contains("password authentication failed")
                || lower.contains("no pg_hba.conf entry")
                || lower.contains("authentication")
            {
                (
                    "auth",
                    "check the user and password in the URL, and pg_hba.conf for this host"
                        .to_string(),
                )
            } else if lower.contains("does not exist") {
                (
                    "login",
                    "check the database and user names in the URL".to_string(),
                )
            } else {
                ("login", "see the server's message".to_string())
            };
            (
                Item::fail(&name, format!("{step}: {shown}: {text}"), fix),
                None,
            )
        }
    }
}

async fn one<T>(client: &Client, sql: &str) -> Option<T>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    client
        .query_one(sql, &[])
        .await
        .ok()
        .and_then(|r| r.try_get(0).ok())
}

pub(super) async fn source(
    cfg: &TaskConfig,
    p: &PostgresSourceConfig,
    facts: &TaskFacts,
) -> Vec<Item> {
    let (item, client) = connect("source", &p.url, &p.tls, "tasks.source.tls").await;
    let mut items = vec![item];
    let Some(client) = client else {
        return items;
    };
    let version: i32 = one(
        &client,
        "SELECT current_setting('server_version_num')::int4",
    )
    .await
    .unwrap_or(0);
    if version >= 120_000 {
        items.push(Item::pass(
            "source.version",
            format!("server_version_num {version}"),
        ));
    } else {
        items.push(Item::fail(
            "source.version",
            format!("server_version_num {version}"),
            "tidemark reads pgoutput from PostgreSQL 12 on: upgrade the server",
        ));
    }
    match one::<String>(&client, "SELECT current_setting('wal_level')")
        .await
        .as_deref()
    {
        Some("logical") => items.push(Item::pass("source.wal_level", "logical")),
        other => items.push(Item::fail(
            "source.wal_level",
            other.unwrap_or("?").to_string(),
            "ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL",
        )),
    }
    let (user, replicate): (String, bool) = client
        .query_one(
            "SELECT current_user::text, r.rolreplication OR r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .ok()
        .and_then(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
        .unwrap_or_default();
    if replicate {
        items.push(Item::pass(
            "source.privileges",
            format!("role {user} may replicate"),
        ));
    } else {
        items.push(Item::fail(
            "source.privileges",
            format!("role {user} lacks the REPLICATION attribute"),
            format!("ALTER ROLE {user} WITH REPLICATION (as a superuser)"),
        ));
    }
    // The slot: there already, or room for it.
    let slot = client
        .query_opt(
            "SELECT coalesce(wal_status, ''), active, pg_catalog.pg_size_pretty(safe_wal_size), safe_wal_size
               FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&p.slot],
        )
        .await;
    // PostgreSQL 12 has no wal_status / safe_wal_size: the plain query.
    let slot = match slot {
        Ok(r) => r.map(|r| {
            (
                r.try_get::<_, String>(0).unwrap_or_default(),
                r.try_get::<_, bool>(1).unwrap_or(false),
                r.try_get::<_, Option<String>>(2).ok().flatten(),
                r.try_get::<_, Option<i64>>(3).ok().flatten(),
            )
        }),
        Err(_) => client
            .query_opt(
                "SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                &[&p.slot],
            )
            .await
            .ok()
            .flatten()
            .map(|r| (String::new(), r.try_get(0).unwrap_or(false), None, None)),
    };
    let (used, max_slots): (i64, i32) = (
        one(
            &client,
            "SELECT count(*) FROM pg_catalog.pg_replication_slots",
        )
        .await
        .unwrap_or(0),
        one::<String>(&client, "SELECT current_setting('max_replication_slots')")
            .await
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    match slot {
        Some((status, _, _, _)) if status == "lost" => items.push(Item::fail(
            "source.slot",
            format!("slot {} lost WAL it needed (wal_status = lost)", p.slot),
            "the changes since are gone for this task: drop the slot (tidemark slot drop), reset the task (tidemark offsets reset) and copy the tables again",
        )),
        Some((status, active, safe, safe_bytes)) => {
            let left = match (safe, safe_bytes) {
                (Some(s), Some(b)) if b < 1 << 30 => Some(s),
                _ => None,
            };
            match left {
                Some(s) => items.push(Item::warn(
                    "source.slot",
                    format!("slot {} (wal_status {status}): {s} of WAL left before max_slot_wal_keep_size invalidates it", p.slot),
                    "let the task catch up, or raise max_slot_wal_keep_size",
                )),
                None => items.push(Item::pass(
                    "source.slot",
                    format!("slot {} exists ({}{})", p.slot, if active { "in use" } else { "idle" }, if status.is_empty() { String::new() } else { format!(", wal_status {status}") }),
                )),
            }
        }
        None if i64::from(max_slots) > used => items.push(Item::pass(
            "source.slot",
            format!("slot {} will be created ({used} of max_replication_slots {max_slots} in use)", p.slot),
        )),
        None => items.push(Item::fail(
            "source.slot",
            format!("no free replication slot ({used} of max_replication_slots {max_slots} in use)"),
            "raise max_replication_slots (restart), or drop an unused slot",
        )),
    }
    let senders: (i64, i32) = (
        one(
            &client,
            "SELECT count(*) FROM pg_catalog.pg_stat_replication",
        )
        .await
        .unwrap_or(0),
        one::<String>(&client, "SELECT current_setting('max_wal_senders')")
            .await
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    if i64::from(senders.1) > senders.0 || facts.running {
        items.push(Item::pass(
            "source.wal_senders",
            format!("{} of max_wal_senders {} in use", senders.0, senders.1),
        ));
    } else {
        items.push(Item::fail(
            "source.wal_senders",
            format!("{} of max_wal_senders {} in use", senders.0, senders.1),
            "raise max_wal_senders (restart)",
        ));
    }
    // Replica identity of the selected tables: updates and deletes of a
    // published table without one fail on the source itself.
    let filter = crate::select::TableFilter::new(&cfg.filter.include, &cfg.filter.exclude).ok();
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relreplident::text,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg_toast%'",
            &[],
        )
        .await
        .unwrap_or_default();
    let mut without = Vec::new();
    for r in rows {
        let (ns, name, ident, pk): (String, String, String, bool) =
            match (r.try_get(0), r.try_get(1), r.try_get(2), r.try_get(3)) {
                (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
                _ => continue,
            };
        if filter.as_ref().is_some_and(|f| !f.selects(&ns, &name)) {
            continue;
        }
        if ident == "n" || (ident == "d" && !pk) {
            without.push(format!("{ns}.{name}"));
        }
    }
    if without.is_empty() {
        items.push(Item::pass(
            "source.replica_identity",
            "every selected table has a replica identity",
        ));
    } else {
        items.push(Item::fail(
            "source.replica_identity",
            format!(
                "{} selected table(s) without a primary key or replica identity: {}",
                without.len(),
                without.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
            ),
            "add a primary key, or ALTER TABLE … REPLICA IDENTITY FULL: once published, updates and deletes of such a table fail on the source",
        ));
    }
    items
}

pub(super) async fn target(cfg: &TaskConfig, d: &DbSinkConfig, full: bool) -> Vec<Item> {
    let (item, client) = connect("target", &d.url, &d.tls, "tasks.sink.tls").await;
    let mut items = vec![item];
    let Some(client) = client else {
        return items;
    };
    match one::<String>(&client, "SELECT current_setting('transaction_read_only')")
        .await
        .as_deref()
    {
        Some("off") => items.push(Item::pass("target.writable", "transaction_read_only = off")),
        _ => items.push(Item::fail(
            "target.writable",
            "the target is read-only (a standby, or default_transaction_read_only = on)",
            "point sink.url at a writable primary",
        )),
    }
    if d.exclusive {
        let key = crate::sink::db::lock_key(&d.meta_schema, &cfg.id);
        items.push(match crate::sink::db::pg_lock_holder(&client, key).await {
            None => Item::pass(
                "target.single_writer",
                format!("no session applies task {} into this target", cfg.id),
            ),
            Some((holder, end_it)) => Item::warn(
                "target.single_writer",
                format!("task {} is applying into this target now ({holder})", cfg.id),
                format!("if that is this task running on another tidemark, this one would wait until that session ends: stop the other, or give this task another id or meta_schema; {end_it} ends that session"),
            ),
        });
    }
    let can_create: bool = one(
        &client,
        "SELECT has_database_privilege(current_user, current_database(), 'CREATE')",
    )
    .await
    .unwrap_or(false);
    if can_create {
        items.push(Item::pass(
            "target.privileges",
            "the user may create schemas (tidemark's meta_schema, created tables)",
        ));
    } else {
        items.push(Item::warn(
            "target.privileges",
            "the user may not create schemas in the database",
            format!("GRANT CREATE ON DATABASE … TO the user, or create schema {} and the tables beforehand", d.meta_schema),
        ));
    }
    if full {
        let schemas: Vec<String> = cfg
            .filter
            .include
            .iter()
            .filter_map(|p| p.split_once('.').map(|(s, _)| s.to_string()))
            .filter(|s| !s.contains(['*', '?']))
            .map(|s| d.target_of(&s, "x").0)
            .collect();
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ANY($1) AND table_type = 'BASE TABLE'",
                &[&schemas],
            )
            .await
            .ok()
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or(0);
        if n > 0 {
            items.push(Item::warn(
                "target.existing_tables",
                format!("{n} table(s) already in {} on the target", schemas.join(", ")),
                "rows there meet the task's conflict policy (sink.conflict): empty them for an exact copy, or keep them on purpose",
            ));
        } else {
            items.push(Item::pass(
                "target.existing_tables",
                "no same-named tables on the target",
            ));
        }
    }
    items
}
