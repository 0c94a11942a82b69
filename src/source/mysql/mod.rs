//! MySQL/MariaDB binlog source.
//!
//! mysql_async carries the replication connection (TLS, authentication,
//! packets over 16 MB); the event bodies are decoded here (`events.rs`,
//! `rows.rs`, `jsonb.rs`), driven by the state machine in `stream.rs`.

pub mod charset;
pub mod ddl;
pub(crate) mod errors;
pub mod events;
pub mod jsonb;
pub mod reader;
pub mod rows;
pub mod schema;
pub(crate) mod server;
pub mod stream;

use std::time::Duration;

use std::sync::{Arc, Mutex};

use futures_util::{FutureExt, StreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts, OptsBuilder, SslOpts};
use tracing::{debug, info, warn};

use super::{ReaderContext, SourceError, SourceMetrics};
use crate::config::{MysqlSourceConfig, NamedStart, StartPosition, TlsMode, redact_url};
use crate::event::{Batch, BinlogPosition, Connector, Position};
use crate::select::TableFilter;
use charset::Collations;
use errors::{classify, dump_error, grant_hint};
use server::{load_catalog, master_status, parse_gtid_set};
use stream::{BinlogDecoder, Header, StreamError};

pub struct MysqlSource {
    cfg: MysqlSourceConfig,
    task: String,
    filter: TableFilter,
    /// Transactions whose statement-based DML the operator skipped.
    skips: Vec<Position>,
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
        MysqlSource {
            cfg,
            task,
            filter,
            skips: Vec::new(),
        }
    }

    /// Transactions whose statement-based DML is skipped (`offsets skip`).
    pub fn with_skips(mut self, skips: Vec<Position>) -> Self {
        self.skips = skips;
        self
    }

    pub(crate) fn opts(&self) -> Result<Opts, SourceError> {
        let base = Opts::from_url(&self.cfg.url).map_err(|e| {
            SourceError::definite(format!("source.url {}: {e}", redact_url(&self.cfg.url)))
        })?;
        let mut b = OptsBuilder::from_opts(base)
            .prefer_socket(false)
            // A replica reads events up to the protocol's limit (1 GiB),
            // whatever the server's max_allowed_packet for clients: a
            // rows event over it (a transaction updating large BLOBs) must
            // not stall the task.
            .max_allowed_packet(Some(MAX_EVENT_BYTES))
            .tcp_keepalive(Some(Duration::from_secs(10)))
            .wait_timeout(Some(28_800));
        b = b.ssl_opts(ssl_opts(&self.cfg.tls));
        Ok(b.into())
    }

    pub(crate) async fn connect(&self) -> Result<Conn, SourceError> {
        let opts = self.opts()?;
        super::resolve(opts.ip_or_hostname(), opts.tcp_port()).await?;
        match tokio::time::timeout(Duration::from_secs(15), Conn::new(opts)).await {
            Err(_) => Err(SourceError::transient(format!(
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
            return Err(SourceError::definite("the server returned no settings"));
        };
        let connector = if version.to_ascii_lowercase().contains("mariadb") {
            Connector::Mariadb
        } else {
            Connector::Mysql
        };
        if !matches!(log_bin.as_deref(), Some("1" | "ON")) {
            return Err(SourceError::definite(format!(
                "binary logging is disabled on the server (log_bin=OFF): start the server with log_bin (e.g. log-bin=mysql-bin and server-id=1 in its config file) and binlog_format=ROW, then restart it ({version})"
            )));
        }
        if !format
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("ROW"))
        {
            return Err(SourceError::definite(format!(
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
                    SourceError::definite(format!(
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

    /// Reads the binlog from after `ctx.resume` until `ctx.cancel`, sending
    /// batches to `ctx.out`. Returns the first error: the supervisor
    /// decides whether to restart.
    pub async fn read(self, ctx: ReaderContext) -> Result<(), SourceError> {
        let mut resume = ctx.resume.clone();
        let out = &ctx;
        let cancel = &ctx.cancel;
        let resume = &mut resume;
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

        let start = match resume.as_ref().map(Position::stream_position) {
            Some(Position::Binlog(b)) => {
                if !logs.iter().any(|(f, _)| **f == *b.file) {
                    return Err(SourceError::definite(format!(
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
            Some(Position::Lsn(_) | Position::Snapshot(_)) => {
                return Err(SourceError::definite(format!(
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
                    let (file, _) = logs
                        .first()
                        .cloned()
                        .ok_or_else(|| SourceError::definite("the server lists no binary logs"))?;
                    Start::File { file, pos: 4 }
                }
                StartPosition::File { file, pos } => {
                    if !logs.iter().any(|(f, _)| f == file) {
                        return Err(SourceError::definite(format!(
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
            out.send(Batch {
                events: Vec::new(),
                end: marker.clone(),
            })
            .await?;
            // The start is fixed: the first read position (nothing before
            // it belongs to the stream).
            ctx.read_to.send_replace(Some(marker.clone()));
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
        // The stream starts here (see `ReaderContext::read_to`); a GTID
        // start is known once the server names its file.
        if !file_name.is_empty() {
            ctx.read_to
                .send_replace(Some(Position::Binlog(BinlogPosition::start_of(
                    &file_name, pos,
                ))));
        }
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
        decoder.set_skips(&self.skips);
        decoder.set_exclude_flagged(self.cfg.exclude_replicated);
        let mut catalog_conn: Option<Conn> = None;
        let idle = Duration::from_secs(self.cfg.heartbeat_secs * 3);
        let read_pos = Arc::new(Mutex::new((file_name.clone(), pos)));
        let _probe = LagProbe::spawn(self.opts()?, read_pos.clone(), ctx.metrics.clone());
        let mut ready = None;
        let mut last_pos = pos;
        loop {
            let item = match ready.take() {
                Some(item) => item,
                None => {
                    flush(&mut decoder, resume, out).await?;
                    if let Some(p) = decoder.read_to() {
                        ctx.read_to.send_replace(Some(p));
                    }
                    if let Ok(mut p) = read_pos.lock() {
                        p.0.clear();
                        p.0.push_str(decoder.file());
                        p.1 = last_pos;
                    }
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return Ok(()),
                        r = tokio::time::timeout(idle, stream.next()) => match r {
                            Ok(item) => item,
                            Err(_) => return Err(SourceError::transient(format!(
                                "no binlog event or heartbeat from the server for {} s (heartbeat_secs = {}): the connection is considered dead",
                                idle.as_secs(), self.cfg.heartbeat_secs
                            ))),
                        },
                    }
                }
            };
            let event = match item {
                None => {
                    return Err(SourceError::transient(
                        "the server closed the binlog stream",
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
                flags: h.flags_raw(),
            };
            ctx.metrics.read(header.event_size);
            if header.log_pos != 0 {
                last_pos = header.log_pos;
            }
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
                    Err(StreamError::StatementDml { file, pos, tx, sql }) => {
                        return Err(SourceError::definite(format!(
                            "statement-based DML on a table this task captures, in the binlog at {file}:{pos} ({sql:.120}): its rows are not in the binlog, so tidemark can't capture this change. Set binlog_format=ROW on the server (SET GLOBAL binlog_format='ROW', and in its config file) so that it doesn't happen again. To go past this one transaction without its statement-logged changes: stop tidemark, run `tidemark offsets skip --config FILE --task {} --transaction {tx}`, and start it again (the skip is recorded and logged)",
                            self.task
                        )));
                    }
                    Err(e) => return Err(SourceError::definite("reading the binlog").caused_by(e)),
                }
            }
            if decoder.pending_events() >= self.cfg.max_batch_events {
                flush(&mut decoder, resume, out).await?;
            }
            // Take the next event only if it is already here; otherwise the
            // loop flushes what is pending before waiting.
            ready = stream.next().now_or_never();
        }
    }
}

/// The largest event the binlog connection accepts: the protocol's (and
/// the servers') limit for max_allowed_packet.
const MAX_EVENT_BYTES: usize = 1 << 30;

async fn flush(
    decoder: &mut BinlogDecoder,
    resume: &mut Option<Position>,
    ctx: &ReaderContext,
) -> Result<(), SourceError> {
    if let Some(batch) = decoder.take_batch() {
        let end = batch.end.clone();
        tracing::trace!(events = batch.events.len(), end = %end, "batch");
        ctx.send(batch).await?;
        *resume = Some(end);
    }
    Ok(())
}

/// Measures how many binlog bytes the server holds past the read position
/// (`SHOW BINARY LOGS` every few seconds, on a connection of its own),
/// for the task's progress. Stops when dropped.
struct LagProbe(tokio::task::JoinHandle<()>);

impl LagProbe {
    const EVERY: Duration = Duration::from_secs(5);

    fn spawn(opts: Opts, read: Arc<Mutex<(String, u64)>>, metrics: Arc<SourceMetrics>) -> LagProbe {
        LagProbe(tokio::spawn(async move {
            let mut conn: Option<Conn> = None;
            loop {
                tokio::time::sleep(Self::EVERY).await;
                if conn.is_none() {
                    conn = Conn::new(opts.clone()).await.ok();
                }
                let Some(c) = conn.as_mut() else { continue };
                let logs: Result<Vec<(String, u64)>, _> = c.query("SHOW BINARY LOGS").await;
                let logs = match logs {
                    Ok(l) => l,
                    Err(e) => {
                        debug!(error = %e, "binlog lag probe failed");
                        conn = None;
                        continue;
                    }
                };
                let (file, pos) = match read.lock() {
                    Ok(p) => p.clone(),
                    Err(_) => return,
                };
                if let Some(lag) = binlog_bytes_after(&logs, &file, pos) {
                    metrics.set_lag_bytes(lag);
                }
            }
        }))
    }
}

impl Drop for LagProbe {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Bytes of binlog after `file:pos`, given the server's files and sizes.
fn binlog_bytes_after(logs: &[(String, u64)], file: &str, pos: u64) -> Option<u64> {
    let i = logs.iter().position(|(f, _)| f == file)?;
    let here = logs[i].1.saturating_sub(pos);
    Some(here + logs[i + 1..].iter().map(|(_, size)| size).sum::<u64>())
}

/// mysql_async's TLS options for `[… .tls]` (sources, database targets,
/// pre-checks): none when disabled.
pub(crate) fn ssl_opts(tls: &crate::config::TlsConfig) -> Option<SslOpts> {
    if tls.mode == TlsMode::Disabled {
        return None;
    }
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
    Some(ssl)
}

#[cfg(test)]
mod lag_tests {
    #[test]
    fn bytes_after_a_position_span_later_files() {
        let logs = vec![
            ("b.000001".to_string(), 1000),
            ("b.000002".to_string(), 500),
            ("b.000003".to_string(), 200),
        ];
        assert_eq!(super::binlog_bytes_after(&logs, "b.000002", 300), Some(400));
        assert_eq!(super::binlog_bytes_after(&logs, "b.000003", 200), Some(0));
        assert_eq!(super::binlog_bytes_after(&logs, "b.000009", 4), None);
    }
}
