//! Configuration: the TOML model, `${VAR}` secrets, and validation.
//!
//! Loading has two phases: [`Config::load`] parses and runs the pure
//! [`Config::validate`] (no network); connecting happens when a task starts.
//! Every error names the file, the key path and what was expected.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::event::DdlKind;
use crate::event::json::JsonOptions;
use crate::stage::filter::TablePattern;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Daemon-wide settings.
    pub daemon: DaemonConfig,
    /// The tasks this daemon runs: one source, one stage and one sink each.
    #[serde(default)]
    pub tasks: Vec<TaskConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Directory for the offset store (`offsets/`). Created if missing.
    pub data_dir: PathBuf,
    /// Seconds a task may take to drain and commit its positions on
    /// SIGTERM/SIGINT before the daemon exits anyway. Default 20 (below
    /// systemd's default TimeoutStopSec of 90).
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
}

fn default_shutdown_timeout() -> u64 {
    20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Unique task id: letters, digits, `-` and `_`. Offsets are stored under it.
    pub id: String,
    pub source: SourceConfig,
    /// Which tables to capture.
    #[serde(default)]
    pub filter: FilterConfig,
    /// What to do with each kind of DDL statement.
    #[serde(default)]
    pub ddl: DdlConfig,
    /// How values are written as JSON.
    #[serde(default)]
    pub format: JsonOptions,
    pub sink: SinkConfig,
}

/// `[tasks.source]`, chosen by its `type` key.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// `type = "mysql"`: MySQL or MariaDB binlog (the flavour is detected on connect).
    Mysql(MysqlSourceConfig),
    /// `type = "postgres"`: PostgreSQL WAL through a logical replication
    /// slot with the built-in `pgoutput` plugin (PostgreSQL 12 and later).
    Postgres(PostgresSourceConfig),
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, rest) = split_type::<D>(d, &["mysql", "postgres"])?;
        match kind.as_str() {
            "mysql" => nested::<D, _>(rest).map(SourceConfig::Mysql),
            "postgres" => nested::<D, _>(rest).map(SourceConfig::Postgres),
            other => Err(serde::de::Error::custom(format!(
                "unknown source type {other:?}"
            ))),
        }
    }
}

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
    /// Directory for chunks of in-progress transactions (one file per
    /// transaction, deleted at its commit or abort). Default
    /// `<daemon.data_dir>/postgres/<task id>/spill`.
    pub spill_dir: Option<PathBuf>,
    /// Seconds between standby status updates, which report the position
    /// the server may release WAL up to (the slot's `confirmed_flush_lsn`).
    /// Default 10.
    #[serde(default = "default_status_interval")]
    pub status_interval_secs: u64,
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
    fn resolve(&mut self, task_id: &str, data_dir: &Path) {
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
    fn check(&self) -> Result<String, (&'static str, String)> {
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// `db.table` glob patterns (`*` and `?`) of tables to capture. Empty
    /// means every table.
    #[serde(default)]
    pub include: Vec<String>,
    /// `db.table` glob patterns of tables to leave out, applied after `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// DDL policy: `emit` or `skip` per statement kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdlConfig {
    /// Action for kinds not listed in `kinds`. Default `emit`.
    #[serde(default = "default_ddl_action")]
    pub default: DdlAction,
    /// Per-kind actions, e.g. `{ drop_database = "skip", drop_table = "emit" }`.
    /// `drop_database` is `skip` unless set here.
    #[serde(default)]
    pub kinds: HashMap<DdlKind, DdlAction>,
}

fn default_ddl_action() -> DdlAction {
    DdlAction::Emit
}

impl Default for DdlConfig {
    fn default() -> Self {
        DdlConfig {
            default: DdlAction::Emit,
            kinds: HashMap::new(),
        }
    }
}

impl DdlConfig {
    pub fn action(&self, kind: DdlKind) -> DdlAction {
        match self.kinds.get(&kind) {
            Some(a) => *a,
            None if kind == DdlKind::DropDatabase => DdlAction::Skip,
            None => self.default,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DdlAction {
    /// Pass the DDL event to the sink.
    Emit,
    /// Drop the DDL event (the source still tracks the schema change).
    Skip,
}

/// `[tasks.sink]`, chosen by its `type` key.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// `type = "jsonl"`: JSON lines to a file (exactly-once across restarts)
    /// or stdout (`-`, at-least-once).
    Jsonl(JsonlSinkConfig),
    /// `type = "kafka"`: change topics on a Kafka cluster, exactly once
    /// across restarts (see `sink::kafka::config`).
    Kafka(Box<crate::sink::kafka::KafkaSinkConfig>),
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, rest) = split_type::<D>(d, &["jsonl", "kafka"])?;
        match kind.as_str() {
            "jsonl" => nested::<D, _>(rest).map(SinkConfig::Jsonl),
            "kafka" => nested::<D, _>(rest).map(|k| SinkConfig::Kafka(Box::new(k))),
            other => Err(serde::de::Error::custom(format!(
                "unknown sink type {other:?}"
            ))),
        }
    }
}

/// Marks an error message that carries a key path below the current one.
const NESTED_PATH: char = '\u{1}';

/// Reads a table, removes and checks its `type` key.
fn split_type<'de, D: serde::Deserializer<'de>>(
    d: D,
    allowed: &[&str],
) -> Result<(String, toml::Table), D::Error> {
    use serde::de::Error;
    let mut table = toml::Table::deserialize(d)?;
    let kind = match table.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(D::Error::custom(format!(
                "{NESTED_PATH}type{NESTED_PATH}expected a string, one of {allowed:?}, got {other}"
            )));
        }
        None => {
            return Err(D::Error::custom(format!(
                "missing key `type`: expected one of {allowed:?}"
            )));
        }
    };
    if !allowed.contains(&kind.as_str()) {
        return Err(D::Error::custom(format!(
            "{NESTED_PATH}type{NESTED_PATH}unknown type {kind:?}, expected one of {allowed:?}"
        )));
    }
    Ok((kind, table))
}

/// Deserializes the rest of a tagged table, keeping the nested key path.
fn nested<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    table: toml::Table,
) -> Result<T, D::Error> {
    use serde::de::Error;
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        D::Error::custom(format!(
            "{NESTED_PATH}{}{NESTED_PATH}{}",
            e.path(),
            e.inner()
        ))
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSinkConfig {
    /// File to append to, or `-` for stdout.
    pub path: String,
}

/// A configuration error, with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads, substitutes `${VAR}`s, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Self::parse_with_env(text, file, |name| std::env::var(name).ok())
    }

    fn parse_with_env(
        text: &str,
        file: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: file.to_string(),
            key,
            message,
        };
        let text = substitute_env(text, lookup)
            .map_err(|(line, msg)| invalid(format!("line {line}"), msg))?;
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| invalid("(syntax)".into(), one_line(&e.to_string())))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let mut key = match e.path().to_string() {
                p if p == "." => "(top level)".to_string(),
                p => p,
            };
            let mut message = e.inner().message().to_string();
            // A tagged section reports the path below it inside the message.
            if let Some(rest) = message.strip_prefix(NESTED_PATH)
                && let Some((sub, msg)) = rest.split_once(NESTED_PATH)
            {
                if sub != "." {
                    key = format!("{key}.{sub}");
                }
                message = msg.to_string();
            }
            invalid(key, one_line(&message))
        })?;
        config.resolve_defaults();
        config
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        Ok(config)
    }

    /// Fills defaults that depend on other settings (PostgreSQL slot,
    /// publication and state directories).
    fn resolve_defaults(&mut self) {
        for task in &mut self.tasks {
            if let SourceConfig::Postgres(p) = &mut task.source {
                p.resolve(&task.id, &self.daemon.data_dir);
            }
        }
    }

    /// Checks what parsing can't: ids, uniqueness, patterns, URLs. No I/O.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.daemon.data_dir.as_os_str().is_empty() {
            return Err(("daemon.data_dir".into(), "must not be empty".into()));
        }
        let mut ids = HashSet::new();
        let mut server_ids = HashMap::new();
        let mut paths = HashMap::new();
        let mut slots = HashMap::new();
        for (i, task) in self.tasks.iter().enumerate() {
            let key = |k: &str| format!("tasks[{i}].{k}");
            if task.id.is_empty()
                || !task
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err((
                    key("id"),
                    format!(
                        "{:?} is not a valid task id: use letters, digits, '-' and '_'",
                        task.id
                    ),
                ));
            }
            if !ids.insert(task.id.as_str()) {
                return Err((key("id"), format!("duplicate task id {:?}", task.id)));
            }
            match &task.source {
                SourceConfig::Mysql(m) => {
                    let opts = mysql_async::Opts::from_url(&m.url).map_err(|e| {
                        (
                            key("source.url"),
                            format!(
                                "{e}: expected mysql://user:password@host:port (got {})",
                                redact_url(&m.url)
                            ),
                        )
                    })?;
                    if opts.db_name().is_some() {
                        return Err((
                            key("source.url"),
                            "must not name a database: a binlog covers the whole server; select tables with [tasks.filter]".into(),
                        ));
                    }
                    if m.server_id == 0 {
                        return Err((
                            key("source.server_id"),
                            "must be a non-zero replica server id, unique among the server's replicas".into(),
                        ));
                    }
                    let endpoint = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
                    if let Some(other) = server_ids.insert((endpoint, m.server_id), &task.id) {
                        return Err((
                            key("source.server_id"),
                            format!(
                                "server_id {} is already used by task {other:?} on the same server; each binlog reader needs its own",
                                m.server_id
                            ),
                        ));
                    }
                    if m.heartbeat_secs == 0 || m.heartbeat_secs > 3600 {
                        return Err((
                            key("source.heartbeat_secs"),
                            "must be between 1 and 3600".into(),
                        ));
                    }
                    if m.max_batch_events == 0 {
                        return Err((key("source.max_batch_events"), "must be at least 1".into()));
                    }
                    if let StartPosition::File { file, pos } = &m.start
                        && (file.is_empty() || *pos < 4)
                    {
                        return Err((
                            key("source.start"),
                            "file must be a binlog file name and pos at least 4".into(),
                        ));
                    }
                    if m.tls.mode == TlsMode::Disabled
                        && (m.tls.ca_file.is_some() || m.tls.skip_hostname_check)
                    {
                        return Err((
                            key("source.tls.mode"),
                            "ca_file/skip_hostname_check are set but mode is \"disabled\"; set mode = \"required\"".into(),
                        ));
                    }
                }
                SourceConfig::Postgres(p) => {
                    let endpoint = p
                        .check()
                        .map_err(|(k, message)| (key(&format!("source.{k}")), message))?;
                    if let Some(other) = slots.insert((endpoint, p.slot.clone()), &task.id) {
                        return Err((
                            key("source.slot"),
                            format!(
                                "slot {:?} is already used by task {other:?} on the same database; each task needs its own slot",
                                p.slot
                            ),
                        ));
                    }
                }
            }
            for (list, patterns) in [
                ("filter.include", &task.filter.include),
                ("filter.exclude", &task.filter.exclude),
            ] {
                for (j, p) in patterns.iter().enumerate() {
                    TablePattern::parse(p).map_err(|msg| (key(&format!("{list}[{j}]")), msg))?;
                }
            }
            match &task.sink {
                SinkConfig::Jsonl(j) => {
                    if j.path.is_empty() {
                        return Err((key("sink.path"), "must be a file path or \"-\"".into()));
                    }
                    if j.path != "-"
                        && let Some(other) = paths.insert(j.path.clone(), &task.id)
                    {
                        return Err((
                            key("sink.path"),
                            format!("{:?} is already the sink of task {other:?}", j.path),
                        ));
                    }
                }
                SinkConfig::Kafka(k) => {
                    k.check()
                        .map_err(|(k, message)| (key(&format!("sink.{k}")), message))?;
                }
            }
        }
        Ok(())
    }
}

/// Replaces `${VAR}` with the variable's value, escaped for a TOML basic
/// string. An unset variable is an error `(line, message)`. `$${` writes a
/// literal `${`.
fn substitute_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(lit) = after.strip_prefix("${") {
                out.push_str("${");
                rest = lit;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = body
                    .find('}')
                    .ok_or_else(|| (n + 1, "unterminated ${...}".to_string()))?;
                let name = &body[..end];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err((n + 1, format!("invalid variable name ${{{name}}}")));
                }
                let value = lookup(name).ok_or_else(|| {
                    (
                        n + 1,
                        format!(
                            "environment variable {name} is not set (referenced as ${{{name}}})"
                        ),
                    )
                })?;
                for c in value.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c => out.push(c),
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A URL with its password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let (userinfo, host) = rest.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"
[daemon]
data_dir = "/var/lib/tidemark"
[[tasks]]
id = "shop"
[tasks.source]
type = "mysql"
url = "mysql://repl:${MYSQL_PASSWORD}@127.0.0.1:3306"
server_id = 5401
[tasks.filter]
include = ["shop.*"]
[tasks.sink]
type = "jsonl"
path = "/var/lib/tidemark/shop.jsonl"
"#;

    fn parse_with(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, "test.toml", |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
    }

    fn err(text: &str) -> String {
        parse_with(text, &[("MYSQL_PASSWORD", "pw")])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn issue_example_parses() {
        let c = parse_with(ISSUE_EXAMPLE, &[("MYSQL_PASSWORD", "s3\"cret")]).unwrap();
        assert_eq!(c.tasks.len(), 1);
        let SourceConfig::Mysql(m) = &c.tasks[0].source else {
            panic!("not mysql")
        };
        assert_eq!(m.url, "mysql://repl:s3\"cret@127.0.0.1:3306");
        assert_eq!(m.start, StartPosition::Current);
        assert!(!format!("{m:?}").contains("s3"), "secret leaked into Debug");
        assert_eq!(
            c.tasks[0].ddl.action(DdlKind::DropDatabase),
            DdlAction::Skip
        );
        assert_eq!(c.tasks[0].ddl.action(DdlKind::AlterTable), DdlAction::Emit);
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let e = parse_with(ISSUE_EXAMPLE, &[]).unwrap_err().to_string();
        assert!(e.contains("MYSQL_PASSWORD is not set"), "{e}");
        assert!(e.contains("line 8"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let e = err(&ISSUE_EXAMPLE.replace("server_id = 5401", "server_id = 5401\nserverid = 1"));
        assert!(e.contains("tasks[0].source"), "{e}");
        assert!(e.contains("serverid"), "{e}");
    }

    #[test]
    fn wrong_types_name_key_and_expectation() {
        let e = err(&ISSUE_EXAMPLE.replace("server_id = 5401", "server_id = \"x\""));
        assert!(e.contains("tasks[0].source.server_id"), "{e}");
        assert!(e.contains("u32"), "{e}");
        assert!(e.starts_with("test.toml: "), "{e}");
    }

    #[test]
    fn semantic_errors() {
        let e = err(&ISSUE_EXAMPLE.replace("server_id = 5401", "server_id = 0"));
        assert!(e.contains("tasks[0].source.server_id"), "{e}");
        let e = err(&ISSUE_EXAMPLE.replace("shop.*", "shop"));
        assert!(e.contains("tasks[0].filter.include[0]"), "{e}");
        let e = err(&ISSUE_EXAMPLE.replace("id = \"shop\"", "id = \"sh op\""));
        assert!(e.contains("tasks[0].id"), "{e}");
        let twice = format!(
            "{ISSUE_EXAMPLE}\n{}",
            &ISSUE_EXAMPLE[ISSUE_EXAMPLE.find("[[tasks]]").unwrap()..]
        );
        let e = err(&twice);
        assert!(e.contains("duplicate task id"), "{e}");
        let e = err(&ISSUE_EXAMPLE.replace("@127.0.0.1:3306", "@127.0.0.1:3306/shop"));
        assert!(e.contains("must not name a database"), "{e}");
        let e = err(&ISSUE_EXAMPLE.replace("type = \"jsonl\"", "type = \"kafkaa\""));
        assert!(e.contains("tasks[0].sink"), "{e}");
        assert!(e.contains("kafkaa"), "{e}");
    }

    #[test]
    fn start_positions_and_ddl_kinds() {
        let c = parse_with(
            &ISSUE_EXAMPLE.replace(
                "server_id = 5401",
                "server_id = 5401\nstart = { file = \"mysql-bin.000003\", pos = 1234 }",
            ),
            &[("MYSQL_PASSWORD", "x")],
        )
        .unwrap();
        let SourceConfig::Mysql(m) = &c.tasks[0].source else {
            panic!("not mysql")
        };
        assert_eq!(
            m.start,
            StartPosition::File {
                file: "mysql-bin.000003".into(),
                pos: 1234
            }
        );
        for (text, expected) in [
            ("\"earliest\"", StartPosition::Named(NamedStart::Earliest)),
            (
                "{ gtid = \"0-1-100\" }",
                StartPosition::Gtid {
                    gtid: "0-1-100".into(),
                },
            ),
        ] {
            let c = parse_with(
                &ISSUE_EXAMPLE.replace(
                    "server_id = 5401",
                    &format!("server_id = 5401\nstart = {text}"),
                ),
                &[("MYSQL_PASSWORD", "x")],
            )
            .unwrap();
            let SourceConfig::Mysql(m) = &c.tasks[0].source else {
                panic!("not mysql")
            };
            assert_eq!(m.start, expected);
        }
        let c = parse_with(
            &format!("{ISSUE_EXAMPLE}\n[tasks.ddl]\ndefault = \"skip\"\nkinds = {{ drop_database = \"emit\" }}\n"),
            &[("MYSQL_PASSWORD", "x")],
        )
        .unwrap();
        assert_eq!(
            c.tasks[0].ddl.action(DdlKind::DropDatabase),
            DdlAction::Emit
        );
        assert_eq!(c.tasks[0].ddl.action(DdlKind::CreateTable), DdlAction::Skip);
        let e = err(&format!(
            "{ISSUE_EXAMPLE}\n[tasks.ddl]\nkinds = {{ drop_everything = \"emit\" }}\n"
        ));
        assert!(e.contains("tasks[0].ddl.kinds"), "{e}");
    }

    #[test]
    fn substitution_escapes_and_literal_dollars() {
        let out = substitute_env("a = \"${X}\" # $${Y} and $5", |_| Some("q\"\\".into())).unwrap();
        assert_eq!(out, "a = \"q\\\"\\\\\" # ${Y} and $5");
        assert!(substitute_env("a = \"${X\"", |_| None).is_err());
        // Comment lines are left alone.
        assert_eq!(
            substitute_env("# ${NOPE}\n", |_| None).unwrap(),
            "# ${NOPE}\n"
        );
    }

    const PG_EXAMPLE: &str = r#"
[daemon]
data_dir = "/var/lib/tidemark"
[[tasks]]
id = "Shop-EU"
[tasks.source]
type = "postgres"
url = "postgres://repl:${PG_PASSWORD}@127.0.0.1:5432/shop"
[tasks.filter]
include = ["public.*"]
[tasks.sink]
type = "jsonl"
path = "/var/lib/tidemark/shop.jsonl"
"#;

    fn pg_err(text: &str) -> String {
        parse_with(text, &[("PG_PASSWORD", "pw")])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn postgres_source_defaults() {
        let c = parse_with(PG_EXAMPLE, &[("PG_PASSWORD", "s3cret")]).unwrap();
        let SourceConfig::Postgres(p) = &c.tasks[0].source else {
            panic!("not postgres")
        };
        assert_eq!(p.slot, "tidemark_shop_eu");
        assert_eq!(p.publication, "tidemark_shop_eu");
        assert!(p.create_slot && p.create_publication && p.streaming);
        assert_eq!(p.status_interval_secs, 10);
        assert_eq!(p.max_batch_events, 2048);
        assert_eq!(
            p.state_dir,
            PathBuf::from("/var/lib/tidemark/postgres/Shop-EU")
        );
        assert_eq!(
            p.spill_dir.as_deref(),
            Some(Path::new("/var/lib/tidemark/postgres/Shop-EU/spill"))
        );
        assert!(
            !format!("{p:?}").contains("s3cret"),
            "secret leaked into Debug"
        );
        let long = PostgresSourceConfig::default_name(&"x".repeat(100));
        assert_eq!(long.len(), 63);
    }

    #[test]
    fn postgres_source_validation_names_the_key() {
        let e = pg_err(&PG_EXAMPLE.replace("5432/shop", "5432"));
        assert!(e.contains("tasks[0].source.url"), "{e}");
        assert!(e.contains("must name the database"), "{e}");
        let e = pg_err(&PG_EXAMPLE.replace("5432/shop", "5432/shop?sslmode=require"));
        assert!(e.contains("[tasks.source.tls]"), "{e}");
        let e = pg_err(&PG_EXAMPLE.replace("5432/shop\"", "5432/shop\"\nslot = \"Bad-Slot\""));
        assert!(e.contains("tasks[0].source.slot"), "{e}");
        assert!(e.contains("not a valid slot name"), "{e}");
        let e = pg_err(&PG_EXAMPLE.replace("5432/shop\"", "5432/shop\"\nstatus_interval_secs = 0"));
        assert!(e.contains("tasks[0].source.status_interval_secs"), "{e}");
        let e = pg_err(
            &PG_EXAMPLE.replace("5432/shop\"", "5432/shop\"\ntls = { mode = \"required\" }"),
        );
        assert!(e.contains("tasks[0].source.tls"), "{e}");
        assert!(e.contains("DNS name"), "{e}");
        let e = pg_err(&PG_EXAMPLE.replace("5432/shop\"", "5432/shop\"\nslots = \"x\""));
        assert!(e.contains("tasks[0].source") && e.contains("slots"), "{e}");
        // Two tasks on one database can't share a slot.
        let second = PG_EXAMPLE[PG_EXAMPLE.find("[[tasks]]").unwrap()..]
            .replace("Shop-EU", "shop_eu")
            .replace("shop.jsonl", "shop2.jsonl");
        let e = pg_err(&format!("{PG_EXAMPLE}\n{second}"));
        assert!(e.contains("tasks[1].source.slot"), "{e}");
        assert!(e.contains("already used by task"), "{e}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("mysql://repl:secret@127.0.0.1:3306"),
            "mysql://repl:***@127.0.0.1:3306"
        );
        assert_eq!(redact_url("mysql://repl@h"), "mysql://repl@h");
    }
}
