//! Prechecks, the publication and the slot, and error classification.
//!
//! Every error a misconfiguration causes names the setting to change.
//! tidemark never drops a slot by itself; a slot it created is recorded in
//! `<state_dir>/slot.json`, which `tidemark slot drop` requires (or
//! `--force`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use tracing::{info, warn};

use super::SourceError;
use super::connect::Target;
use crate::config::PostgresSourceConfig;
use crate::event::position::{format_lsn, parse_lsn};
use crate::select::TableFilter;

/// What the server is.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `server_version_num`, e.g. 150018.
    pub version_num: u32,
    pub version: String,
}

impl ServerInfo {
    /// pgoutput protocol version 2 with streaming of in-progress
    /// transactions (PostgreSQL 14+).
    pub fn streams(&self) -> bool {
        self.version_num >= 140_000
    }
}

/// Classes a tokio-postgres error by its SQLSTATE: lost connections, a
/// server starting or shutting down, too many connections are transient;
/// the rest needs the operator. The driver's error stays the cause.
pub fn classify(context: &str, e: tokio_postgres::Error) -> SourceError {
    let err = match e.as_db_error() {
        None if crate::error::is_tls_failure(&e) => {
            // A certificate the settings don't trust won't change by retrying.
            SourceError::definite(format!(
                "{context}: TLS failed (check [tasks.source.tls]: mode, ca_file, skip_hostname_check)"
            ))
        }
        None => SourceError::transient(context),
        Some(db) => {
            let hint = db.hint().map(|h| format!(" ({h})")).unwrap_or_default();
            let msg = format!("{context}{hint}");
            match db.code().code() {
                // Server starting / shutting down / crashed, too many
                // connections, serialization or deadlock, connection failures.
                "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "08000" | "08003"
                | "08006" | "08001" | "08004" => SourceError::transient(msg),
                _ => SourceError::definite(msg),
            }
        }
    };
    err.caused_by(e)
}

/// Checks version, `wal_level` and the role's replication right.
pub async fn precheck(client: &Client, target: &Target) -> Result<ServerInfo, SourceError> {
    let err = |e| classify("reading server settings", e);
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, version(),
                    current_setting('wal_level'),
                    r.rolreplication OR r.rolsuper, current_user::text
               FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(err)?;
    let version_num: i32 = row.try_get(0).map_err(err)?;
    let version: String = row.try_get(1).map_err(err)?;
    let wal_level: String = row.try_get(2).map_err(err)?;
    let can_replicate: bool = row.try_get(3).map_err(err)?;
    let user: String = row.try_get(4).map_err(err)?;
    let info = ServerInfo {
        version_num: u32::try_from(version_num).unwrap_or(0),
        version,
    };
    if info.version_num < 120_000 {
        return Err(SourceError::definite(format!(
            "{} runs {}: tidemark needs PostgreSQL 12 or later",
            target.describe(),
            info.version
        )));
    }
    if wal_level != "logical" {
        return Err(SourceError::definite(format!(
            "the server's wal_level is {wal_level}, logical decoding needs logical: set wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"
        )));
    }
    if !can_replicate {
        return Err(SourceError::definite(format!(
            "role {user} lacks the REPLICATION attribute needed to stream changes: run ALTER ROLE {} WITH REPLICATION (as a superuser)",
            quote_ident(&user)
        )));
    }
    Ok(info)
}

/// Creates the publication when it is missing (and allowed to).
pub async fn ensure_publication(
    client: &Client,
    cfg: &PostgresSourceConfig,
    include: &[String],
    filter: &TableFilter,
    info: &ServerInfo,
    target: &Target,
) -> Result<(), SourceError> {
    let name = &cfg.publication;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[name],
        )
        .await
        .map_err(|e| classify("looking up the publication", e))?
        .is_some();
    if exists {
        return sync_publication(client, cfg, filter).await;
    }
    if !cfg.create_publication {
        return Err(SourceError::definite(format!(
            "publication {name} does not exist in database {db}: create it (CREATE PUBLICATION {q} FOR ALL TABLES, or FOR TABLE ...) or set create_publication = true in [tasks.source]",
            db = target.database,
            q = quote_ident(name)
        )));
    }
    let schemas: Option<Vec<&str>> = include
        .iter()
        .map(|p| {
            p.strip_suffix(".*")
                .filter(|s| !s.contains(['*', '?']) && info.version_num >= 150_000)
        })
        .collect();
    let what = if include.is_empty() {
        "FOR ALL TABLES".to_string()
    } else if let Some(schemas) = schemas.filter(|s| !s.is_empty()) {
        let list: Vec<String> = schemas.iter().map(|s| quote_ident(s)).collect();
        format!("FOR TABLES IN SCHEMA {}", list.join(", "))
    } else {
        let rows = client
            .query(
                "SELECT n.nspname::text, c.relname::text
                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                    AND n.nspname NOT LIKE 'pg_toast%'
                  ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(|e| classify("listing tables", e))?;
        let mut tables = Vec::new();
        for r in rows {
            let (s, t): (String, String) = (
                r.try_get(0).map_err(|e| classify("listing tables", e))?,
                r.try_get(1).map_err(|e| classify("listing tables", e))?,
            );
            if filter.selects(&s, &t) {
                tables.push(format!("{}.{}", quote_ident(&s), quote_ident(&t)));
            }
        }
        warn!(
            publication = %name,
            tables = tables.len(),
            "creating the publication for the tables that match filter.include now; tables created later need ALTER PUBLICATION ... ADD TABLE"
        );
        if tables.is_empty() {
            String::new()
        } else {
            format!("FOR TABLE {}", tables.join(", "))
        }
    };
    let sql = format!("CREATE PUBLICATION {} {what}", quote_ident(name));
    client.batch_execute(&sql).await.map_err(|e| {
        if e.code().is_some_and(|c| c.code() == "42501") {
            return SourceError::definite(format!(
                "creating the publication ({sql}): {what} needs a superuser (or, for FOR TABLE, the tables' owner); create the publication as one, or list tables in filter.include"
            ))
            .caused_by(e);
        }
        classify(&format!("creating the publication ({sql})"), e)
    })?;
    info!(publication = %name, definition = %what, "created publication");
    Ok(())
}

/// Adds to an existing publication the selected tables it lacks (a table
/// added to the filter, or created since): without it their changes would
/// never arrive. A publication tidemark doesn't manage
/// (`create_publication = false`) is left as it is, with a warning.
async fn sync_publication(
    client: &Client,
    cfg: &PostgresSourceConfig,
    filter: &TableFilter,
) -> Result<(), SourceError> {
    let name = &cfg.publication;
    let missing = unpublished(client, name, filter).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing
        .iter()
        .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("ALTER PUBLICATION {} ADD TABLE {list}", quote_ident(name));
    if !cfg.create_publication {
        warn!(publication = %name, tables = %list, "tables the filter selects are not in the publication, so their changes are not captured: run {sql}");
        return Ok(());
    }
    client.batch_execute(&sql).await.map_err(|e| {
        if e.code().is_some_and(|c| c.code() == "42501") {
            return SourceError::definite(format!(
                "adding tables the filter selects to the publication ({sql}) needs the tables' owner or a superuser: run it as one"
            ))
            .caused_by(e);
        }
        classify(&format!("adding tables to the publication ({sql})"), e)
    })?;
    info!(publication = %name, tables = %list, "added the selected tables to the publication");
    Ok(())
}

/// Tables `filter` selects that publication `name` doesn't publish.
pub async fn unpublished(
    client: &Client,
    name: &str,
    filter: &TableFilter,
) -> Result<Vec<(String, String)>, SourceError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg_toast%'
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables p
                                 WHERE p.pubname = $1 AND p.schemaname = n.nspname AND p.tablename = c.relname)
              ORDER BY 1, 2",
            &[&name],
        )
        .await
        .map_err(|e| classify("listing the publication's tables", e))?;
    let mut out = Vec::new();
    for r in rows {
        let (s, t): (String, String) = (
            r.try_get(0).map_err(|e| classify("listing tables", e))?,
            r.try_get(1).map_err(|e| classify("listing tables", e))?,
        );
        if filter.selects(&s, &t) {
            out.push((s, t));
        }
    }
    Ok(out)
}

/// The slot as the server describes it.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub confirmed_flush: u64,
    pub created: bool,
}

/// Marker of a slot tidemark created (`<state_dir>/slot.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlotMarker {
    pub slot: String,
    /// `host:port/database` at creation.
    pub server: String,
    pub created_at_ms: i64,
}

fn marker_path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("slot.json")
}

/// The marker of the task's slot, if tidemark created it.
pub fn read_marker(state_dir: &Path) -> Option<SlotMarker> {
    let text = std::fs::read(marker_path(state_dir)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write_marker(state_dir: &Path, marker: &SlotMarker) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let path = marker_path(state_dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(marker).unwrap_or_default())?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// Checks the slot, or creates it. `resuming`: the task has a position,
/// so a missing slot means changes were lost.
pub async fn ensure_slot(
    client: &Client,
    cfg: &PostgresSourceConfig,
    task: &str,
    target: &Target,
    resuming: bool,
) -> Result<SlotState, SourceError> {
    let slot = &cfg.slot;
    let row = client
        .query_opt(
            "SELECT plugin::text, slot_type, database::text, active_pid,
                    confirmed_flush_lsn::text
               FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[slot],
        )
        .await
        .map_err(|e| classify("looking up the replication slot", e))?;
    let Some(row) = row else {
        if resuming {
            return Err(SourceError::definite(format!(
                "replication slot {slot} no longer exists, but task {task} has a stored position: the changes since it were released by the server and are lost to this task. To start over: reset its position (`tidemark offsets reset --config FILE --task {task}`), give it a new sink file (a JSONL file keeps its own position), and re-copy the tables; a new slot is then created"
            )));
        }
        if !cfg.create_slot {
            return Err(SourceError::definite(format!(
                "replication slot {slot} does not exist: create it (SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')) or set create_slot = true in [tasks.source]"
            )));
        }
        return create_slot(client, cfg, target).await;
    };
    let get = |i| -> Result<Option<String>, SourceError> {
        row.try_get(i)
            .map_err(|e| classify("reading pg_replication_slots", e))
    };
    let plugin = get(0)?.unwrap_or_default();
    let kind = get(1)?.unwrap_or_default();
    let database = get(2)?.unwrap_or_default();
    let active_pid: Option<i32> = row
        .try_get(3)
        .map_err(|e| classify("reading pg_replication_slots", e))?;
    let confirmed = get(4)?;
    if kind != "logical" || plugin != "pgoutput" {
        return Err(SourceError::definite(format!(
            "replication slot {slot} is a {kind} slot with plugin {plugin:?}, tidemark needs a logical slot with pgoutput: use another slot name"
        )));
    }
    if database != target.database {
        return Err(SourceError::definite(format!(
            "replication slot {slot} decodes database {database}, not {}: use another slot name",
            target.database
        )));
    }
    if let Some(pid) = active_pid {
        return Err(slot_in_use(client, slot, pid, task).await);
    }
    let confirmed_flush = confirmed.as_deref().and_then(parse_lsn).ok_or_else(|| {
        SourceError::definite(format!(
            "replication slot {slot} has no confirmed_flush_lsn: it is not a usable logical slot"
        ))
    })?;
    Ok(SlotState {
        confirmed_flush,
        created: false,
    })
}

async fn create_slot(
    client: &Client,
    cfg: &PostgresSourceConfig,
    target: &Target,
) -> Result<SlotState, SourceError> {
    let slot = &cfg.slot;
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')",
            &[slot],
        )
        .await
        .map_err(|e| match e.code().map(|c| c.code()) {
            Some("53400") => SourceError::definite(format!(
                "can't create replication slot {slot}: all replication slots are in use: raise max_replication_slots in postgresql.conf (and restart PostgreSQL), or drop unused slots (SELECT slot_name, active FROM pg_replication_slots)"
            ))
            .caused_by(e),
            Some("55000") => SourceError::definite(format!(
                "can't create replication slot {slot}: logical decoding needs wal_level = logical and max_replication_slots > 0"
            ))
            .caused_by(e),
            _ => classify(&format!("creating replication slot {slot}"), e),
        })?;
    let lsn: String = row
        .try_get(0)
        .map_err(|e| classify("creating the replication slot", e))?;
    let confirmed_flush = parse_lsn(&lsn).unwrap_or(0);
    let marker = SlotMarker {
        slot: slot.clone(),
        server: target.describe(),
        created_at_ms: now_ms(),
    };
    write_marker(&cfg.state_dir, &marker).map_err(|e| {
        SourceError::definite(format!(
            "created replication slot {slot} but could not record it in {}: {e}",
            cfg.state_dir.display()
        ))
    })?;
    info!(slot = %slot, consistent_point = %format_lsn(confirmed_flush), "created replication slot");
    Ok(SlotState {
        confirmed_flush,
        created: true,
    })
}

/// The error for a slot another session holds. Our own previous session
/// (same application name, e.g. after a crash, until the server notices)
/// is transient; anyone else needs the operator.
pub async fn slot_in_use(client: &Client, slot: &str, pid: i32, task: &str) -> SourceError {
    let app: Option<String> = client
        .query_opt(
            "SELECT application_name::text FROM pg_catalog.pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get(0).ok());
    if app.as_deref() == Some(application_name(task).as_str()) {
        return SourceError::transient(format!(
            "replication slot {slot} is still held by PID {pid}, an earlier session of this task; waiting for the server to end it"
        ));
    }
    SourceError::definite(format!(
        "replication slot {slot} is in use by PID {pid} (application {:?}): stop the other consumer (SELECT pg_terminate_backend({pid})) or use another slot",
        app.unwrap_or_default()
    ))
}

/// `application_name` of a task's connections.
pub fn application_name(task: &str) -> String {
    format!("tidemark/{task}")
}

/// Drops the task's slot (`tidemark slot drop`). Refuses a slot tidemark did
/// not create unless `force`.
pub async fn drop_slot(
    cfg: &PostgresSourceConfig,
    task: &str,
    force: bool,
) -> Result<String, SourceError> {
    let slot = &cfg.slot;
    let marker = read_marker(&cfg.state_dir).filter(|m| m.slot == *slot);
    if marker.is_none() && !force {
        return Err(SourceError::definite(format!(
            "tidemark did not create replication slot {slot} (no record in {}): it may belong to another consumer. Drop it yourself, or pass --force",
            marker_path(&cfg.state_dir).display()
        )));
    }
    let target = Target::parse(&cfg.url)?;
    let client = super::connect::sql(
        &target,
        &cfg.tls,
        &application_name(task),
        "tasks.source.tls",
    )
    .await?;
    let row = client
        .query_opt(
            "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[slot],
        )
        .await
        .map_err(|e| classify("looking up the replication slot", e))?;
    let Some(row) = row else {
        let _ = std::fs::remove_file(marker_path(&cfg.state_dir));
        return Ok(format!(
            "replication slot {slot} does not exist on {}",
            target.describe()
        ));
    };
    let active: Option<i32> = row
        .try_get(0)
        .map_err(|e| classify("reading pg_replication_slots", e))?;
    if let Some(pid) = active {
        return Err(SourceError::definite(format!(
            "replication slot {slot} is in use by PID {pid}: stop tidemark (or the other consumer) first"
        )));
    }
    client
        .execute("SELECT pg_catalog.pg_drop_replication_slot($1)", &[slot])
        .await
        .map_err(|e| classify(&format!("dropping replication slot {slot}"), e))?;
    let _ = std::fs::remove_file(marker_path(&cfg.state_dir));
    Ok(format!(
        "dropped replication slot {slot} on {} (publication {} is kept)",
        target.describe(),
        cfg.publication
    ))
}

/// A double-quoted identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A replication-stream error in a task's session: as [`classify_stream`],
/// with the recovery for a publication the slot can't see.
pub fn stream_error(
    e: &pgwire_replication::PgWireError,
    task: &str,
    slot: &str,
    publication: &str,
) -> SourceError {
    if e.sqlstate() == Some("42704") {
        // The walsender decodes each change with the catalog as of that
        // change: a publication created after it doesn't exist there.
        return SourceError::definite(format!(
            "the slot {slot} can't decode with publication {publication}, which was created (or dropped and re-created) after the slot's position: PostgreSQL reads publications as of each change it decodes, so this slot never sees it. Re-create the slot at the current position: stop tidemark, run `tidemark slot drop --config FILE --task {task}` and `tidemark offsets reset --config FILE --task {task}`, and start it again; changes between the slot's position and now are not captured (copy the affected tables again)"
        ))
        .caused_by(e.clone());
    }
    classify_stream(e)
}

/// Classes a replication-stream error by its SQLSTATE (kept apart from
/// the text by the patched pgwire-replication; see vendor/PATCHES.md).
pub fn classify_stream(e: &pgwire_replication::PgWireError) -> SourceError {
    use pgwire_replication::PgWireError as E;
    let context = "replication connection";
    let err = match (e, e.sqlstate()) {
        (E::Auth(_), _) => SourceError::definite(format!(
            "{context}: authentication failed (check the user and password in source.url)"
        )),
        (E::Tls(_), _) => SourceError::definite(format!(
            "{context}: TLS failed (check [tasks.source.tls]: mode, ca_file, skip_hostname_check)"
        )),
        (_, Some("42501")) => SourceError::definite(format!(
            "{context}: the role needs the REPLICATION attribute (ALTER ROLE ... WITH REPLICATION)"
        )),
        (_, Some("55000")) => SourceError::definite(format!(
            "{context}: logical decoding needs wal_level = logical in postgresql.conf (then restart PostgreSQL)"
        )),
        (_, Some("57P01" | "57P02" | "57P03" | "53300" | "08006" | "08003" | "55006")) => {
            SourceError::transient(context)
        }
        (E::Server(_), Some(_)) => SourceError::definite(context),
        (E::MessageTooLarge { .. }, _) => SourceError::definite(format!(
            "{context}: a message from the server is larger than the client accepts"
        )),
        _ => SourceError::transient(context),
    };
    err.caused_by(e.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Classify;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn stream_errors_are_classed_by_sqlstate() {
        use pgwire_replication::PgWireError as E;
        let server = |message: &str, code: &str| {
            E::Server(pgwire_replication::ServerError {
                message: message.into(),
                code: Some(code.into()),
            })
        };
        let in_use = server("replication slot \"s\" is active for PID 42", "55006");
        assert!(classify_stream(&in_use).is_transient());
        let denied = server("permission denied to start WAL sender", "42501");
        let e = classify_stream(&denied);
        assert!(!e.is_transient());
        assert!(e.to_string().contains("WITH REPLICATION"), "{e}");
        assert!(!classify_stream(&E::Auth("password authentication failed".into())).is_transient());
        assert!(
            classify_stream(&E::Io(std::sync::Arc::new(std::io::Error::other("reset"))))
                .is_transient()
        );
    }

    #[test]
    fn slot_marker_round_trips() {
        let dir = std::env::temp_dir().join(format!("tidemark-marker-{}", std::process::id()));
        let m = SlotMarker {
            slot: "tidemark_t".into(),
            server: "127.0.0.1:5432/shop".into(),
            created_at_ms: 5,
        };
        write_marker(&dir, &m).unwrap();
        assert_eq!(read_marker(&dir), Some(m));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
