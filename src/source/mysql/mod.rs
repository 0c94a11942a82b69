//! MySQL/MariaDB binlog source.
//!
//! mysql_async carries the replication connection (TLS, authentication,
//! packets over 16 MB); the event bodies are decoded here (`events.rs`,
//! `rows.rs`, `jsonb.rs`), driven by the state machine in `stream.rs`.

pub mod charset;
pub mod ddl;
pub mod events;
pub mod jsonb;
pub mod reader;
pub mod rows;
pub mod schema;
pub mod stream;

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts, OptsBuilder, SslOpts};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Reconnect, SourceError};
use crate::config::{MysqlSourceConfig, NamedStart, StartPosition, TlsMode, redact_url};
use crate::event::{Batch, BinlogPosition, Connector, Position};
use crate::stage::filter::TableFilter;
use charset::Collations;
use schema::{CatalogColumn, CatalogTable};
use stream::{BinlogDecoder, Header, StreamError};

pub struct MysqlSource {
    cfg: MysqlSourceConfig,
    task: String,
    filter: TableFilter,
}

/// What the server is and how it is set up for change capture.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub connector: Connector,
    pub version: String,
    pub row_metadata_full: bool,
    /// `binlog_checksum` is CRC32 (not NONE).
    pub checksum: bool,
}

/// Where a dump starts.
enum Start {
    File { file: String, pos: u64 },
    MariadbGtid(String),
    MysqlGtid(String),
}

impl MysqlSource {
    pub fn new(cfg: MysqlSourceConfig, task: String, filter: TableFilter) -> Self {
        MysqlSource { cfg, task, filter }
    }

    fn opts(&self) -> Result<Opts, SourceError> {
        let base = Opts::from_url(&self.cfg.url).map_err(|e| {
            SourceError::Definite(format!("source.url {}: {e}", redact_url(&self.cfg.url)))
        })?;
        let mut b = OptsBuilder::from_opts(base)
            .prefer_socket(false)
            .tcp_keepalive(Some(Duration::from_secs(10)))
            .wait_timeout(Some(28_800));
        let tls = &self.cfg.tls;
        if tls.mode != TlsMode::Disabled {
            let mut ssl = SslOpts::default();
            if let Some(ca) = &tls.ca_file {
                ssl = ssl.with_root_certs(vec![ca.clone().into()]);
            }
            if tls.skip_hostname_check || tls.mode == TlsMode::RequiredInsecure {
                ssl = ssl.with_danger_skip_domain_validation(true);
            }
            if tls.mode == TlsMode::RequiredInsecure {
                ssl = ssl.with_danger_accept_invalid_certs(true);
            }
            b = b.ssl_opts(Some(ssl));
        }
        Ok(b.into())
    }

    async fn connect(&self) -> Result<Conn, SourceError> {
        let opts = self.opts()?;
        match tokio::time::timeout(Duration::from_secs(15), Conn::new(opts)).await {
            Err(_) => Err(SourceError::Transient(format!(
                "connecting to {}: timed out after 15 s",
                redact_url(&self.cfg.url)
            ))),
            Ok(r) => {
                r.map_err(|e| classify(&format!("connecting to {}", redact_url(&self.cfg.url)), e))
            }
        }
    }

    /// Checks that the server can serve row-based change capture to this
    /// user, with an error naming the setting or privilege to change.
    pub async fn precheck(conn: &mut Conn) -> Result<ServerInfo, SourceError> {
        type Settings = (Option<String>, Option<String>, Option<String>, String);
        let row: Option<Settings> = conn
            .query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, VERSION()")
            .await
            .map_err(|e| classify("reading server settings", e))?;
        let Some((log_bin, format, image, version)) = row else {
            return Err(SourceError::Definite(
                "the server returned no settings".into(),
            ));
        };
        let connector = if version.to_ascii_lowercase().contains("mariadb") {
            Connector::Mariadb
        } else {
            Connector::Mysql
        };
        if !matches!(log_bin.as_deref(), Some("1" | "ON")) {
            return Err(SourceError::Definite(format!(
                "binary logging is disabled on the server (log_bin=OFF): start the server with log_bin (e.g. log-bin=mysql-bin and server-id=1 in its config file) and binlog_format=ROW, then restart it ({version})"
            )));
        }
        if !format
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("ROW"))
        {
            return Err(SourceError::Definite(format!(
                "the server's binlog_format is {}, tidemark needs ROW: run SET GLOBAL binlog_format='ROW' and set binlog_format=ROW in the server's config file (sessions started before keep their format)",
                format.as_deref().unwrap_or("unset")
            )));
        }
        if !image
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("FULL"))
        {
            warn!(
                binlog_row_image = image.as_deref().unwrap_or("?"),
                "binlog_row_image is not FULL: before/after images will miss unchanged columns (marked unchanged)"
            );
        }
        let metadata: Option<String> = conn
            .query_first("SELECT @@binlog_row_metadata")
            .await
            .unwrap_or(None);
        let row_metadata_full = metadata
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("FULL"));
        if !row_metadata_full {
            warn!(
                binlog_row_metadata = metadata.as_deref().unwrap_or("unsupported"),
                "binlog_row_metadata is not FULL: column names come from information_schema, which is only right when no schema change is pending in the backlog; set binlog_row_metadata=FULL"
            );
        }
        let checksum: Option<String> = conn
            .query_first("SELECT @@global.binlog_checksum")
            .await
            .unwrap_or(None);
        let checksum = !checksum
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("NONE"));
        let logs: Result<Vec<(String, u64)>, _> = conn.query("SHOW BINARY LOGS").await;
        if let Err(e) = logs {
            return Err(match &e {
                mysql_async::Error::Server(s) if s.code == 1227 || s.code == 1045 => {
                    SourceError::Definite(format!(
                        "the user lacks the privileges to read the binlog ({}): GRANT {} ON *.* TO the tidemark user",
                        s.message,
                        grant_hint(connector)
                    ))
                }
                _ => classify("listing binary logs", e),
            });
        }
        Ok(ServerInfo {
            connector,
            version,
            row_metadata_full,
            checksum,
        })
    }

    /// Reads the binlog until `cancel`, sending batches to `out`. `resume`
    /// is the position up to which everything was delivered before (the
    /// committed offset or the sink's own position).
    pub async fn run(
        self,
        mut resume: Option<Position>,
        out: mpsc::Sender<Batch>,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut reconnect = Reconnect::new(&self.task, "binlog source");
        loop {
            reconnect.session_started();
            let result = self.session(&mut resume, &out, &cancel).await;
            if !reconnect.after(result, &cancel).await? {
                return Ok(());
            }
        }
    }

    async fn session(
        &self,
        resume: &mut Option<Position>,
        out: &mpsc::Sender<Batch>,
        cancel: &CancellationToken,
    ) -> Result<(), SourceError> {
        let mut conn = self.connect().await?;
        let info = Self::precheck(&mut conn).await?;
        let collations: Vec<(u16, String)> = conn
            .query("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL")
            .await
            .unwrap_or_default();
        let collations = Collations::from_rows(collations);
        let logs: Vec<(String, u64)> = conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(|e| classify("listing binary logs", e))?;

        let start = match resume.as_ref() {
            Some(Position::Binlog(b)) => {
                if !logs.iter().any(|(f, _)| **f == *b.file) {
                    return Err(SourceError::Definite(format!(
                        "the stored position {} is in binlog file {}, which the server no longer has (oldest: {}). The binlog was purged before tidemark read it (binlog_expire_logs_seconds/expire_logs_days, or PURGE BINARY LOGS), so changes in between are lost to this task. To recover: reset the task's position with `tidemark offsets reset --config FILE --task {}` (it then starts from the source.start setting) and re-copy the tables' current contents",
                        Position::Binlog(b.clone()),
                        b.file,
                        logs.first().map_or("none", |l| l.0.as_str()),
                        self.task
                    )));
                }
                Start::File {
                    file: b.file.to_string(),
                    pos: b.tx_pos,
                }
            }
            Some(Position::Lsn(_)) => {
                return Err(SourceError::Definite(format!(
                    "the stored position of task {} is a PostgreSQL LSN, but its source is MySQL/MariaDB: the task id was reused for a different source; reset it with `tidemark offsets reset`",
                    self.task
                )));
            }
            None => match &self.cfg.start {
                StartPosition::Current | StartPosition::Named(NamedStart::Current) => {
                    let (file, pos) = master_status(&mut conn, info.connector).await?;
                    Start::File { file, pos }
                }
                StartPosition::Named(NamedStart::Earliest) => {
                    let (file, _) = logs.first().cloned().ok_or_else(|| {
                        SourceError::Definite("the server lists no binary logs".into())
                    })?;
                    Start::File { file, pos: 4 }
                }
                StartPosition::File { file, pos } => {
                    if !logs.iter().any(|(f, _)| f == file) {
                        return Err(SourceError::Definite(format!(
                            "source.start names binlog file {file}, which the server doesn't have (it has {} to {})",
                            logs.first().map_or("none", |l| l.0.as_str()),
                            logs.last().map_or("none", |l| l.0.as_str())
                        )));
                    }
                    Start::File {
                        file: file.clone(),
                        pos: *pos,
                    }
                }
                StartPosition::Gtid { gtid } => match info.connector {
                    Connector::Mariadb => Start::MariadbGtid(gtid.clone()),
                    _ => Start::MysqlGtid(gtid.clone()),
                },
            },
        };
        if resume.is_none()
            && let Start::File { file, pos } = &start
        {
            // Pin a new task's start: until the first event is durable, a
            // restart must begin here, not at a later "current" end.
            let marker = Position::Binlog(BinlogPosition::start_of(file, *pos));
            send(
                out,
                cancel,
                Batch {
                    events: Vec::new(),
                    end: marker.clone(),
                },
            )
            .await?;
            *resume = Some(marker);
        }

        let heartbeat_ns = self.cfg.heartbeat_secs * 1_000_000_000;
        conn.query_drop(format!("SET @master_heartbeat_period = {heartbeat_ns}"))
            .await
            .map_err(|e| classify("setting the heartbeat period", e))?;
        if info.connector == Connector::Mariadb {
            // Capability 4: send GTID events (not BEGIN) and annotations on request.
            conn.query_drop("SET @mariadb_slave_capability = 4")
                .await
                .map_err(|e| classify("announcing replica capabilities", e))?;
        }
        let mut request = BinlogStreamRequest::new(self.cfg.server_id);
        let (file_name, pos) = match &start {
            Start::File { file, pos } => (file.clone(), *pos),
            Start::MariadbGtid(g) => {
                conn.exec_drop("SET @slave_connect_state = ?", (g.as_str(),))
                    .await
                    .map_err(|e| classify("setting the GTID start", e))?;
                conn.query_drop("SET @slave_gtid_strict_mode = 0")
                    .await
                    .map_err(|e| classify("setting the GTID mode", e))?;
                (String::new(), 4)
            }
            Start::MysqlGtid(g) => {
                request = request.with_gtid().with_gtid_set(parse_gtid_set(g)?);
                (String::new(), 4)
            }
        };
        let file_bytes = file_name.clone().into_bytes();
        if !file_name.is_empty() {
            request = request.with_filename(&file_bytes).with_pos(pos);
        }
        info!(task = %self.task, server = %info.version, file = %file_name, pos, "reading binlog");
        let mut stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| dump_error(e, info.connector))?;

        let mut decoder = BinlogDecoder::new(
            info.connector,
            self.filter.clone(),
            collations,
            resume.clone(),
        );
        decoder.set_file(&file_name);
        decoder.set_checksum(info.checksum);
        let mut catalog_conn: Option<Conn> = None;
        let idle = Duration::from_secs(self.cfg.heartbeat_secs * 3);
        let mut ready = None;
        loop {
            let item = match ready.take() {
                Some(item) => item,
                None => {
                    flush(&mut decoder, resume, out, cancel).await?;
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return Ok(()),
                        r = tokio::time::timeout(idle, stream.next()) => match r {
                            Ok(item) => item,
                            Err(_) => return Err(SourceError::Transient(format!(
                                "no binlog event or heartbeat for {} s", idle.as_secs()
                            ))),
                        },
                    }
                }
            };
            let event = match item {
                None => {
                    return Err(SourceError::Transient(
                        "the server closed the binlog stream".into(),
                    ));
                }
                Some(Err(e)) => return Err(dump_error(e, info.connector)),
                Some(Ok(event)) => event,
            };
            let h = event.header();
            let header = Header {
                event_type: h.event_type_raw(),
                timestamp: h.timestamp(),
                server_id: h.server_id(),
                log_pos: u64::from(h.log_pos()),
                event_size: u64::from(h.event_size()),
            };
            tracing::trace!(
                event_type = header.event_type,
                log_pos = header.log_pos,
                size = header.event_size,
                "binlog event"
            );
            loop {
                match decoder.on_event(&header, event.data()) {
                    Ok(()) => break,
                    Err(StreamError::NeedCatalog { db, table }) => {
                        if catalog_conn.is_none() {
                            catalog_conn = Some(self.connect().await?);
                        }
                        if let Some(c) = catalog_conn.as_mut() {
                            let cat = load_catalog(c, &db, &table).await?;
                            decoder.add_catalog(db, table, cat);
                        }
                    }
                    Err(e) => return Err(SourceError::Definite(e.to_string())),
                }
            }
            if decoder.pending_events() >= self.cfg.max_batch_events {
                flush(&mut decoder, resume, out, cancel).await?;
            }
            // Take the next event only if it is already here; otherwise the
            // loop flushes what is pending before waiting.
            ready = stream.next().now_or_never();
        }
    }
}

async fn flush(
    decoder: &mut BinlogDecoder,
    resume: &mut Option<Position>,
    out: &mpsc::Sender<Batch>,
    cancel: &CancellationToken,
) -> Result<(), SourceError> {
    if let Some(batch) = decoder.take_batch() {
        let end = batch.end.clone();
        tracing::trace!(events = batch.events.len(), end = %end, "batch");
        send(out, cancel, batch).await?;
        *resume = Some(end);
    }
    Ok(())
}

async fn send(
    out: &mpsc::Sender<Batch>,
    cancel: &CancellationToken,
    batch: Batch,
) -> Result<(), SourceError> {
    tokio::select! {
        r = out.send(batch) => r.map_err(|_| SourceError::Definite("the task's sink stopped".into())),
        _ = cancel.cancelled() => Ok(()),
    }
}

fn grant_hint(connector: Connector) -> &'static str {
    match connector {
        Connector::Mariadb => "REPLICATION SLAVE, BINLOG MONITOR, SELECT",
        _ => "REPLICATION SLAVE, REPLICATION CLIENT, SELECT",
    }
}

async fn master_status(
    conn: &mut Conn,
    connector: Connector,
) -> Result<(String, u64), SourceError> {
    // MySQL 8.4 renamed SHOW MASTER STATUS.
    let row: Result<Option<mysql_async::Row>, _> = conn.query_first("SHOW MASTER STATUS").await;
    let row = match row {
        Ok(r) => r,
        Err(_) => conn
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .map_err(|e| classify("reading the binlog position", e))?,
    };
    let row = row.ok_or_else(|| {
        SourceError::Definite(format!(
            "the server reports no binlog position (is log_bin on?); GRANT {} to the tidemark user",
            grant_hint(connector)
        ))
    })?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    match (file, pos) {
        (Some(f), Some(p)) => Ok((f, p)),
        _ => Err(SourceError::Definite(
            "unreadable SHOW MASTER STATUS row".into(),
        )),
    }
}

async fn load_catalog(conn: &mut Conn, db: &str, table: &str) -> Result<CatalogTable, SourceError> {
    let rows: Vec<(String, String, Option<String>, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(|e| classify("reading information_schema.COLUMNS", e))?;
    Ok(CatalogTable {
        columns: rows
            .into_iter()
            .map(|(name, ty, charset, key)| CatalogColumn {
                name,
                unsigned: ty.contains("unsigned"),
                labels: parse_labels(&ty),
                charset,
                primary_key: key == "PRI",
            })
            .collect(),
    })
}

/// A MySQL GTID set (`uuid:1-100:200,uuid2:5`) for COM_BINLOG_DUMP_GTID.
fn parse_gtid_set(text: &str) -> Result<Vec<mysql_common::packets::Sid<'static>>, SourceError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            part.parse::<mysql_common::packets::Sid<'static>>()
                .map_err(|e| {
                    SourceError::Definite(format!(
                        "source.start.gtid {part:?} is not a MySQL GTID set (uuid:first-last[:first-last...]): {e}"
                    ))
                })
        })
        .collect()
}

/// Labels of `enum('a','b''c')` / `set(...)` column types.
fn parse_labels(ty: &str) -> Vec<String> {
    let Some(inner) = ty
        .strip_prefix("enum(")
        .or_else(|| ty.strip_prefix("set("))
        .and_then(|s| s.strip_suffix(')'))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '\'') => quoted = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                quoted = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, c) => cur.push(c),
            (false, _) => {}
        }
    }
    out
}

/// Classes a driver error: I/O and lost connections are transient.
fn classify(context: &str, e: mysql_async::Error) -> SourceError {
    match &e {
        mysql_async::Error::Server(s) => match s.code {
            // Access denied, unknown user/db: the operator must act.
            1044 | 1045 | 1227 | 1142 | 1143 | 1698 => SourceError::Definite(format!(
                "{context}: access denied: {} (error {})",
                s.message, s.code
            )),
            // Too many connections, server shutting down, lock wait: retry.
            1040 | 1053 | 1205 | 2006 | 2013 => SourceError::Transient(format!("{context}: {e}")),
            _ => SourceError::Definite(format!("{context}: {} (error {})", s.message, s.code)),
        },
        mysql_async::Error::Url(_) => SourceError::Definite(format!("{context}: {e}")),
        // A certificate that doesn't verify won't verify on the next try.
        mysql_async::Error::Io(io) if is_tls_failure(io) => SourceError::Definite(format!(
            "{context}: TLS handshake failed: {e}. Check source.tls: ca_file must hold the CA that signed the server's certificate, whose names must include the host in the URL (or set skip_hostname_check)"
        )),
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            SourceError::Definite(format!(
                "{context}: source.tls.mode requires TLS but the server doesn't offer it: configure ssl_cert/ssl_key on the server, or set tls.mode = \"disabled\""
            ))
        }
        _ => SourceError::Transient(format!("{context}: {e}")),
    }
}

/// A TLS failure (rustls reports it through the I/O error it wraps).
fn is_tls_failure(e: &mysql_async::IoError) -> bool {
    match e {
        mysql_async::IoError::Tls(_) => true,
        mysql_async::IoError::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
    }
}

/// Errors of the binlog dump itself.
fn dump_error(e: mysql_async::Error, connector: Connector) -> SourceError {
    if let mysql_async::Error::Server(s) = &e {
        match s.code {
            1227 | 1045 => {
                return SourceError::Definite(format!(
                    "the server refused the binlog dump: {} — GRANT {} ON *.* TO the tidemark user",
                    s.message,
                    grant_hint(connector)
                ));
            }
            1236 => {
                return SourceError::Definite(format!(
                    "the server can't send the binlog from the requested position: {} (error 1236). If the binlog was purged, reset the task with `tidemark offsets reset` and re-copy the tables",
                    s.message
                ));
            }
            _ => {}
        }
    }
    classify("reading the binlog", e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_gtid_sets() {
        let sids = parse_gtid_set(
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:11-18, 3e11fa47-71ca-11e1-9e33-c80aa9429563:7",
        )
        .unwrap();
        assert_eq!(sids.len(), 2);
        assert_eq!(sids[0].intervals().len(), 2);
        assert!(parse_gtid_set("0-1-100").is_err());
        assert!(parse_gtid_set("not-a-uuid:1").is_err());
    }

    #[test]
    fn enum_labels_from_column_type() {
        assert_eq!(parse_labels("enum('a','b''c','')"), vec!["a", "b'c", ""]);
        assert_eq!(parse_labels("set('x')"), vec!["x"]);
        assert!(parse_labels("int(11)").is_empty());
    }
}
