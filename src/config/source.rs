//! `[tasks.source]` sections: MySQL/MariaDB and PostgreSQL.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::redact_url;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceConfig {
    /// `mysql://user:password@host:port`; use `${VAR}` for the password.
    pub url: String,
    /// Replica server id this task registers with; unique among the
    /// server's replicas and among tasks.
    pub server_id: u32,
    /// Where a task without a stored position starts: `"current"` (default:
    /// the server's binlog end), `"earliest"` (oldest binlog still on the
    /// server), `{ file = "mysql-bin.000003", pos = 4 }`, or `{ gtid = "..." }`
    /// (a MariaDB GTID position `0-1-100[,1-2-5]` or a MySQL GTID set
    /// `uuid:1-100`; events after it are read).
    #[serde(default)]
    pub start: StartPosition,
    /// Seconds between server heartbeats on an idle binlog; a connection
    /// silent for three periods is considered dead and reconnected. Default 5.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// TLS to the server.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Largest number of events handed to the sink in one batch. Default 4096.
    #[serde(default = "default_batch_events")]
    pub max_batch_events: usize,
    /// Leave out the changes a tidemark database target applied to this
    /// server (they carry MariaDB's `@@skip_replication` flag), so that
    /// the two tasks of a bidirectional pair don't send each other's
    /// changes back. Default false.
    #[serde(default)]
    pub exclude_replicated: bool,
}

fn default_heartbeat() -> u64 {
    5
}

fn default_batch_events() -> usize {
    4096
}

impl fmt::Debug for MysqlSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlSourceConfig")
            .field("url", &redact_url(&self.url))
            .field("server_id", &self.server_id)
            .field("start", &self.start)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `postgres://user:password@host:port/database`: the database whose
    /// changes are captured (logical decoding works per database); use
    /// `${VAR}` for the password. The user needs the REPLICATION attribute
    /// (or superuser), and ownership of the tables (or superuser) for
    /// tidemark to create the publication. TLS is set in `tls`, not here.
    pub url: String,
    /// Logical replication slot (`pgoutput`). Default `tidemark_<task id>`
    /// (lowercased, `-` as `_`). Letters `a-z`, digits and `_`, at most 63.
    /// Created when missing (see `create_slot`); tidemark never drops a slot
    /// by itself: `tidemark slot drop` does, for a slot tidemark created.
    #[serde(default)]
    pub slot: String,
    /// Publication naming the tables to decode. Default `tidemark_<task id>`.
    /// Created when missing (see `create_publication`): `FOR ALL TABLES`
    /// when `filter.include` is empty, `FOR TABLES IN SCHEMA` when every
    /// include pattern is `schema.*` (PostgreSQL 15+), else `FOR TABLE` with
    /// the tables that match the patterns when it is created.
    #[serde(default)]
    pub publication: String,
    /// Create the slot when it does not exist. Default true. When false, a
    /// missing slot is an error.
    #[serde(default = "default_true")]
    pub create_slot: bool,
    /// Create the publication when it does not exist. Default true. When
    /// false, a missing publication is an error.
    #[serde(default = "default_true")]
    pub create_publication: bool,
    /// Receive large in-progress transactions in chunks (pgoutput protocol
    /// version 2, `streaming 'on'`; PostgreSQL 14+), spilled to `spill_dir`
    /// until they commit, instead of the server sending them whole after the
    /// commit. Default true; older servers use protocol version 1.
    #[serde(default = "default_true")]
    pub streaming: bool,
    /// Leave out the transactions a tidemark database target applied to
    /// this database (under a `tidemark_<task>` replication origin), so
    /// that the two tasks of a bidirectional pair don't send each other's
    /// changes back. Default false.
    #[serde(default)]
    pub exclude_replicated: bool,
    /// Directory for chunks of in-progress transactions (one file per
    /// transaction, deleted at its commit or abort). Default
    /// `<daemon.data_dir>/postgres/<task id>/spill`.
    pub spill_dir: Option<PathBuf>,
    /// Seconds between standby status updates, which report the position
    /// the server may release WAL up to (the slot's `confirmed_flush_lsn`).
    /// Default 10.
    #[serde(default = "default_status_interval")]
    pub status_interval_secs: u64,
    /// Seconds the server may stay silent before the connection is
    /// considered dead and the task reconnects. While the stream is idle,
    /// each status update asks the server for a reply, so a live server is
    /// never silent for long; a stopped walsender or a network black hole
    /// is. Default 30; must exceed `status_interval_secs`.
    #[serde(default = "default_server_timeout")]
    pub server_timeout_secs: u64,
    /// TLS to the server (both the SQL and the replication connection).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Largest number of events handed to the sink in one batch. Default
    /// 2048: with the task's bounded channel this bounds the memory of a
    /// large transaction's events in flight (see docs/benchmarks.md).
    #[serde(default = "default_pg_batch_events")]
    pub max_batch_events: usize,
    /// Where the task keeps its PostgreSQL state (`slot.json`, the spill
    /// directory): `<daemon.data_dir>/postgres/<task id>`. Set on load.
    #[serde(skip)]
    pub state_dir: PathBuf,
}

fn default_true() -> bool {
    true
}

fn default_status_interval() -> u64 {
    10
}

fn default_server_timeout() -> u64 {
    30
}

fn default_pg_batch_events() -> usize {
    2048
}

impl fmt::Debug for PostgresSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSourceConfig")
            .field("url", &redact_url(&self.url))
            .field("slot", &self.slot)
            .field("publication", &self.publication)
            .field("create_slot", &self.create_slot)
            .field("create_publication", &self.create_publication)
            .field("streaming", &self.streaming)
            .field("spill_dir", &self.spill_dir)
            .field("status_interval_secs", &self.status_interval_secs)
            .field("server_timeout_secs", &self.server_timeout_secs)
            .field("tls", &self.tls)
            .finish()
    }
}

impl PostgresSourceConfig {
    /// The default slot and publication name of a task: `tidemark_<id>`,
    /// lowercased, `-` as `_`, cut to PostgreSQL's 63 bytes.
    pub fn default_name(task_id: &str) -> String {
        let mut name: String = format!("tidemark_{task_id}")
            .chars()
            .map(|c| match c {
                '-' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        name.truncate(63);
        name
    }

    /// Fills the defaults that depend on the task and the daemon.
    pub(super) fn resolve(&mut self, task_id: &str, data_dir: &Path) {
        if self.slot.is_empty() {
            self.slot = Self::default_name(task_id);
        }
        if self.publication.is_empty() {
            self.publication = Self::default_name(task_id);
        }
        self.state_dir = data_dir.join("postgres").join(task_id);
        if self.spill_dir.is_none() {
            self.spill_dir = Some(self.state_dir.join("spill"));
        }
    }

    /// Checks the settings (no I/O). Returns the server endpoint and
    /// database, for the uniqueness check of slots; errors are
    /// `(key below the source, message)`.
    pub(super) fn check(&self) -> Result<String, (&'static str, String)> {
        use std::str::FromStr;
        let pg = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            (
                "url",
                format!(
                    "{e}: expected postgres://user:password@host:port/database (got {})",
                    redact_url(&self.url)
                ),
            )
        })?;
        let Some(db) = pg.get_dbname() else {
            return Err((
                "url",
                "must name the database to capture, e.g. postgres://user:password@host:5432/shop (logical decoding works per database)".into(),
            ));
        };
        if pg.get_user().is_none() {
            return Err((
                "url",
                "must name the user: postgres://user:password@host/database".into(),
            ));
        }
        let host = match pg.get_hosts() {
            [tokio_postgres::config::Host::Tcp(h)] => h.clone(),
            [tokio_postgres::config::Host::Unix(p)] => p.display().to_string(),
            [] => return Err(("url", "must name the server host".into())),
            _ => return Err(("url", "must name exactly one host".into())),
        };
        if pg.get_ssl_mode() != tokio_postgres::config::SslMode::Prefer {
            return Err((
                "url",
                "set TLS with [tasks.source.tls] (mode = \"required\"), not sslmode in the URL"
                    .into(),
            ));
        }
        for (key, name) in [("slot", &self.slot), ("publication", &self.publication)] {
            if name.is_empty()
                || name.len() > 63
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err((
                    key,
                    format!(
                        "{name:?} is not a valid {key} name: use lowercase letters a-z, digits and '_', at most 63"
                    ),
                ));
            }
        }
        if self.status_interval_secs == 0 || self.status_interval_secs > 3600 {
            return Err(("status_interval_secs", "must be between 1 and 3600".into()));
        }
        if self.server_timeout_secs <= self.status_interval_secs
            || self.server_timeout_secs > 86_400
        {
            return Err((
                "server_timeout_secs",
                format!(
                    "must be more than status_interval_secs ({}) and at most 86400",
                    self.status_interval_secs
                ),
            ));
        }
        if self.max_batch_events == 0 {
            return Err(("max_batch_events", "must be at least 1".into()));
        }
        if self
            .spill_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(("spill_dir", "must not be empty".into()));
        }
        if self.tls.mode == TlsMode::Disabled
            && (self.tls.ca_file.is_some() || self.tls.skip_hostname_check)
        {
            return Err((
                "tls.mode",
                "ca_file/skip_hostname_check are set but mode is \"disabled\"; set mode = \"required\"".into(),
            ));
        }
        if self.tls.mode == TlsMode::Required
            && !self.tls.skip_hostname_check
            && host.parse::<std::net::IpAddr>().is_ok()
        {
            // pgwire-replication (the replication connection) refuses to
            // match a certificate against an IP address.
            return Err((
                "tls",
                format!(
                    "host {host} is an IP address, and the replication connection verifies certificates by host name only: use the server's DNS name in the URL, or set skip_hostname_check = true (the certificate chain is still verified)"
                ),
            ));
        }
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        Ok(format!("{host}:{port}/{db}"))
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StartPosition {
    #[default]
    #[serde(skip)]
    Current,
    Named(NamedStart),
    File {
        file: String,
        pos: u64,
    },
    Gtid {
        gtid: String,
    },
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NamedStart {
    Current,
    Earliest,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `disabled` (default), `required` (encrypt, verify the certificate
    /// against `ca_file` or the system roots), or `required_insecure`
    /// (encrypt without verifying: test setups only).
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM file with the CA certificate(s) to trust.
    pub ca_file: Option<PathBuf>,
    /// Skip the host name check (the certificate chain is still verified).
    #[serde(default)]
    pub skip_hostname_check: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Disabled,
    Required,
    RequiredInsecure,
}
