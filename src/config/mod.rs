//! Configuration: the TOML model, `${VAR}` secrets, and validation.
//!
//! Loading has two phases: [`Config::load`] parses and runs the pure
//! [`Config::validate`] (no network); connecting happens when a task starts.
//! Every error names the file, the key path and what was expected.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::event::DdlKind;
use crate::event::json::JsonOptions;
use crate::select::TablePattern;

mod env;
pub mod rules;
mod source;
mod target;

pub use env::redact_url;
use env::{one_line, substitute_env};
pub use source::{
    MysqlSourceConfig, NamedStart, PostgresSourceConfig, StartPosition, TlsConfig, TlsMode,
};
pub use target::{
    ConflictAction, ConflictConfig, ConflictOp, ConflictRule, DbSinkConfig, TablePolicy,
};

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
    /// The HTTP control API (`[daemon.api]`); off when absent.
    pub api: Option<ApiConfig>,
}

/// `[daemon.api]`: the HTTP task API, metrics and health endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on. Default `127.0.0.1:7070` (loopback only).
    #[serde(default = "default_api_listen")]
    pub listen: String,
    /// Bearer token every request but `/healthz` must carry
    /// (`Authorization: Bearer …`); at least 16 characters. Required:
    /// `token = "${TIDEMARK_API_TOKEN}"`.
    pub token: String,
    /// Largest request body, in bytes. Default 1 MiB.
    #[serde(default = "default_api_body")]
    pub max_body_bytes: usize,
    /// Directories the files a task created over the API names (JSONL
    /// output, CA files) must be in: absolute paths. Default: the data
    /// directory only.
    #[serde(default)]
    pub allowed_dirs: Vec<PathBuf>,
    /// `http://host:port/path` that every task state change and warning
    /// is POSTed to (JSON); none by default.
    pub webhook: Option<String>,
    /// Seconds between pre-checks of every running task (a failing or
    /// warning item becomes a warning on the task: events, webhook, its
    /// view); 0 = off. Default 300.
    #[serde(default = "default_precheck_interval")]
    pub precheck_interval_secs: u64,
    /// TLS for the API: the server's certificate chain and private key
    /// (PEM files); both or neither. Plain HTTP when absent.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

/// A webhook URL: `http://host:port/path`.
pub fn check_webhook(w: &str) -> Result<(), String> {
    let ok = w
        .strip_prefix("http://")
        .is_some_and(|r| r.split('/').next().is_some_and(|a| a.contains(':')));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{w:?}: expected http://host:port/path (plain HTTP; put a proxy in front for HTTPS)"
        ))
    }
}

/// `[tasks.notify]`: where this task's state changes and warnings go.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://host:port/path` this task's state changes and warnings are
    /// POSTed to (JSON), besides `daemon.api.webhook`.
    pub webhook: Option<String>,
}

fn default_precheck_interval() -> u64 {
    300
}

fn default_api_listen() -> String {
    "127.0.0.1:7070".into()
}

fn default_api_body() -> usize {
    1 << 20
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
    /// A display name and a description, for operators (free text).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Notifications of this task (`[tasks.notify]`).
    #[serde(default)]
    pub notify: NotifyConfig,
    /// What the task is for, as a replication service names it:
    /// `"sync"` (default), `"migration"` or `"dr"`.
    #[serde(default)]
    pub kind: TaskKind,
    /// `"stream"`: changes from the start position on;
    /// `"snapshot+stream"`: first copy the rows the selected tables hold,
    /// then go on with their changes; `"snapshot"`: copy the rows and
    /// complete (a one-shot copy or export). Default: `stream` for a sync
    /// task, `snapshot+stream` for a migration or DR task.
    #[serde(default, rename = "mode")]
    pub mode_given: Option<TaskMode>,
    /// `mode` as resolved (see [`TaskConfig::resolve`]).
    #[serde(skip)]
    pub mode: TaskMode,
    /// How tables are copied (`snapshot` modes, re-snapshots).
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// Flow control (`[tasks.throttle]`), in every phase; changeable
    /// while the task runs (`PUT /api/v1/tasks/{id}/throttle`).
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// Processing rules (`[[tasks.rules]]`), applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<rules::RuleConfig>,
    /// The daemon's data directory (set by [`TaskConfig::resolve`]).
    #[serde(skip)]
    pub data_dir: PathBuf,
}

/// `[tasks.throttle]`: 0 (the default) is no limit.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Most change events (snapshot rows included) per second.
    #[serde(default)]
    pub rows_per_second: u64,
    /// Most bytes of row data (the values of the events' images) per second.
    #[serde(default)]
    pub bytes_per_second: u64,
}

/// What a task is for (`kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Continuous replication of the selected tables, with selection and
    /// policies.
    #[default]
    Sync,
    /// A full copy, then the changes since, until the operator completes
    /// the task (the cutover: `POST /api/v1/tasks/{id}/complete`).
    Migration,
    /// A continuous replica of databases into a database target (disaster
    /// recovery).
    Dr,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Sync => "sync",
            TaskKind::Migration => "migration",
            TaskKind::Dr => "dr",
        }
    }
}

/// What a task does (`mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum TaskMode {
    #[default]
    #[serde(rename = "stream")]
    Stream,
    #[serde(rename = "snapshot+stream")]
    SnapshotStream,
    #[serde(rename = "snapshot")]
    Snapshot,
}

impl TaskMode {
    pub fn name(self) -> &'static str {
        match self {
            TaskMode::Stream => "stream",
            TaskMode::SnapshotStream => "snapshot+stream",
            TaskMode::Snapshot => "snapshot",
        }
    }
}

/// `[tasks.snapshot]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Rows per chunk: each chunk is read in one snapshot and held in
    /// memory until its place in the stream comes. Default 8192.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
    /// Chunks read at once, each on its own connection, across tables and
    /// across the chunks of one table. Default 4.
    #[serde(default = "default_snapshot_workers")]
    pub workers: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            chunk_rows: default_chunk_rows(),
            workers: default_snapshot_workers(),
        }
    }
}

fn default_chunk_rows() -> u64 {
    8192
}

fn default_snapshot_workers() -> usize {
    4
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
    /// Pass the DDL event to the sink (`apply` says the same for database
    /// targets, which run it).
    #[serde(alias = "apply")]
    Emit,
    /// Drop the DDL event (the source still tracks the schema change).
    Skip,
    /// Fail the task at the statement (database targets), naming it; the
    /// operator applies it by hand, sets the kind to `skip` and resumes.
    Fail,
    /// Pause the task at the statement (database targets): resuming it
    /// applies the statement; setting the kind to `skip` (modify) before
    /// resuming passes over it.
    Pause,
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
    /// `type = "mysql"`: apply the changes to a MySQL/MariaDB server.
    Mysql(Box<DbSinkConfig>),
    /// `type = "postgres"`: apply the changes to a PostgreSQL database.
    Postgres(Box<DbSinkConfig>),
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, rest) = split_type::<D>(d, &["jsonl", "kafka", "mysql", "postgres"])?;
        match kind.as_str() {
            "jsonl" => nested::<D, _>(rest).map(SinkConfig::Jsonl),
            "kafka" => nested::<D, _>(rest).map(|k| SinkConfig::Kafka(Box::new(k))),
            "mysql" => nested::<D, _>(rest).map(|k| SinkConfig::Mysql(Box::new(k))),
            "postgres" => nested::<D, _>(rest).map(|k| SinkConfig::Postgres(Box::new(k))),
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
            task.resolve(&self.daemon.data_dir);
        }
    }

    /// Checks what parsing can't: ids, uniqueness, patterns, URLs. No I/O.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.daemon.data_dir.as_os_str().is_empty() {
            return Err(("daemon.data_dir".into(), "must not be empty".into()));
        }
        if let Some(api) = &self.daemon.api {
            if api.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err((
                    "daemon.api.listen".into(),
                    format!(
                        "{:?} is not an address and port (e.g. \"127.0.0.1:7070\")",
                        api.listen
                    ),
                ));
            }
            if api.token.chars().count() < 16 {
                return Err((
                    "daemon.api.token".into(),
                    "must be at least 16 characters (e.g. `openssl rand -hex 24`), given as token = \"${TIDEMARK_API_TOKEN}\"".into(),
                ));
            }
            if let Some(w) = &api.webhook {
                check_webhook(w).map_err(|m| ("daemon.api.webhook".to_string(), m))?;
            }
            if api.tls_cert_file.is_some() != api.tls_key_file.is_some() {
                return Err((
                    "daemon.api.tls_cert_file".into(),
                    "set both tls_cert_file and tls_key_file (PEM), or neither".into(),
                ));
            }
            if !(1024..=(64 << 20)).contains(&api.max_body_bytes) {
                return Err((
                    "daemon.api.max_body_bytes".into(),
                    "must be between 1024 and 67108864".into(),
                ));
            }
        }
        for (i, task) in self.tasks.iter().enumerate() {
            let key = |k: String| format!("tasks[{i}].{k}");
            task.validate().map_err(|(k, m)| (key(k), m))?;
            for other in &self.tasks[..i] {
                if let Some((k, m)) = task.conflicts_with(other) {
                    return Err((key(k), m));
                }
            }
        }
        Ok(())
    }
}

impl TaskConfig {
    /// A task definition as JSON with the keys of a `[[tasks]]` entry
    /// (`${VAR}` substituted as in the config file), parsed and checked on
    /// its own. Errors are `(key, message)`.
    pub fn from_json(text: &str) -> Result<TaskConfig, (String, String)> {
        Self::from_json_with_env(text, |name| std::env::var(name).ok())
    }

    fn from_json_with_env(
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<TaskConfig, (String, String)> {
        let text = substitute_env(text, lookup).map_err(|(_, msg)| ("(body)".to_string(), msg))?;
        let mut de = serde_json::Deserializer::from_str(&text);
        let cfg: TaskConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let mut key = match e.path().to_string() {
                p if p == "." => "(top level)".to_string(),
                p => p,
            };
            let mut message = e.inner().to_string();
            if let Some(rest) = message.strip_prefix(NESTED_PATH)
                && let Some((sub, msg)) = rest.split_once(NESTED_PATH)
            {
                if sub != "." {
                    key = format!("{key}.{sub}");
                }
                message = msg.to_string();
            }
            (key, one_line(&message))
        })?;
        Ok(cfg)
    }

    /// Fills the defaults that depend on the daemon's data directory
    /// (PostgreSQL slot, publication and state directories).
    pub fn resolve(&mut self, data_dir: &Path) {
        self.mode = self.mode_given.unwrap_or(match self.kind {
            TaskKind::Sync => TaskMode::Stream,
            TaskKind::Migration | TaskKind::Dr => TaskMode::SnapshotStream,
        });
        if let SourceConfig::Postgres(p) = &mut self.source {
            p.resolve(&self.id, data_dir);
        }
        self.data_dir = data_dir.to_path_buf();
    }

    /// Where the processing rules keep their shard merges' schema changes.
    pub fn rules_state_path(&self) -> PathBuf {
        self.data_dir
            .join("rules")
            .join(format!("{}.json", self.id))
    }

    /// Where rows a rule's filter failed on go (`on_error = "dead_letter"`).
    pub fn dead_letter_path(&self) -> PathBuf {
        self.data_dir
            .join("dead-letter")
            .join(format!("{}.jsonl", self.id))
    }

    /// Checks one task on its own (no I/O); errors are `(key below the
    /// task, message)`. Tasks created one by one (the API) get the same
    /// checks and messages as a config file.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let key = |k: &str| k.to_string();
        if let Some(w) = &self.notify.webhook {
            check_webhook(w).map_err(|m| (key("notify.webhook"), m))?;
        }
        for (i, r) in self.rules.iter().enumerate() {
            r.validate()
                .map_err(|(k, m)| (format!("rules[{i}].{k}"), m))?;
        }
        let mode = self.mode_given.unwrap_or(self.mode);
        match self.kind {
            TaskKind::Migration if mode == TaskMode::Stream => {
                return Err((
                    key("mode"),
                    "a migration copies the tables first: use mode = \"snapshot+stream\" (copy, then changes until the cutover) or \"snapshot\" (copy only), or kind = \"sync\" for changes only".into(),
                ));
            }
            TaskKind::Dr
                if !matches!(self.sink, SinkConfig::Mysql(_) | SinkConfig::Postgres(_)) =>
            {
                return Err((
                    key("kind"),
                    "a DR task replicates into a database: sink.type must be \"mysql\" or \"postgres\" (kind = \"sync\" for Kafka or JSONL)".into(),
                ));
            }
            _ => {}
        }
        if !(1..=1_000_000).contains(&self.snapshot.chunk_rows) {
            return Err((
                key("snapshot.chunk_rows"),
                format!(
                    "{} is out of range: use 1 to 1000000 rows (a chunk is held in memory)",
                    self.snapshot.chunk_rows
                ),
            ));
        }
        if !(1..=64).contains(&self.snapshot.workers) {
            return Err((
                key("snapshot.workers"),
                format!(
                    "{} is out of range: use 1 to 64 (each worker holds a connection to the source)",
                    self.snapshot.workers
                ),
            ));
        }
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err((
                key("id"),
                format!(
                    "{:?} is not a valid task id: use letters, digits, '-' and '_'",
                    self.id
                ),
            ));
        }
        match &self.source {
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
                        "must be a non-zero replica server id, unique among the server's replicas"
                            .into(),
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
                p.check()
                    .map_err(|(k, message)| (format!("source.{k}"), message))?;
            }
        }
        for (list, patterns) in [
            ("filter.include", &self.filter.include),
            ("filter.exclude", &self.filter.exclude),
        ] {
            for (j, p) in patterns.iter().enumerate() {
                TablePattern::parse(p).map_err(|msg| (format!("{list}[{j}]"), msg))?;
            }
        }
        if matches!(self.sink, SinkConfig::Jsonl(_) | SinkConfig::Kafka(_)) {
            let acting = std::iter::once(("default".to_string(), self.ddl.default)).chain(
                self.ddl
                    .kinds
                    .iter()
                    .map(|(k, a)| (format!("kinds.{}", k.name()), *a)),
            );
            for (key_name, action) in acting {
                if matches!(action, DdlAction::Fail | DdlAction::Pause) {
                    return Err((
                        key(&format!("ddl.{key_name}")),
                        "\"fail\" and \"pause\" act on database targets (sink type mysql or postgres); a JSONL or Kafka sink passes DDL on (\"emit\") or drops it (\"skip\")".into(),
                    ));
                }
            }
        }
        match &self.sink {
            SinkConfig::Jsonl(j) => {
                if j.path.is_empty() {
                    return Err((key("sink.path"), "must be a file path or \"-\"".into()));
                }
            }
            SinkConfig::Kafka(k) => {
                k.check()
                    .map_err(|(k, message)| (format!("sink.{k}"), message))?;
            }
            SinkConfig::Mysql(t) | SinkConfig::Postgres(t) => {
                t.check(matches!(self.sink, SinkConfig::Postgres(_)))
                    .map_err(|(k, message)| (format!("sink.{k}"), message))?;
            }
        }
        Ok(())
    }

    /// What two tasks can't share: a replica server id on one MySQL server,
    /// a slot on one PostgreSQL database, a sink file (compared by its
    /// canonical path). Returns `(key of self, message)`.
    pub fn conflicts_with(&self, other: &TaskConfig) -> Option<(String, String)> {
        if self.id == other.id {
            return Some(("id".into(), format!("duplicate task id {:?}", self.id)));
        }
        match (&self.source, &other.source) {
            (SourceConfig::Mysql(a), SourceConfig::Mysql(b)) if a.server_id == b.server_id => {
                let endpoint = |url: &str| {
                    mysql_async::Opts::from_url(url)
                        .ok()
                        .map(|o| format!("{}:{}", o.ip_or_hostname(), o.tcp_port()))
                };
                if endpoint(&a.url).is_some() && endpoint(&a.url) == endpoint(&b.url) {
                    return Some((
                        "source.server_id".into(),
                        format!(
                            "server_id {} is already used by task {:?} on the same server; each binlog reader needs its own",
                            a.server_id, other.id
                        ),
                    ));
                }
            }
            (SourceConfig::Postgres(a), SourceConfig::Postgres(b))
                if a.slot == b.slot && a.check().ok() == b.check().ok() =>
            {
                return Some((
                    "source.slot".into(),
                    format!(
                        "slot {:?} is already used by task {:?} on the same database; each task needs its own slot",
                        a.slot, other.id
                    ),
                ));
            }
            _ => {}
        }
        if let (SinkConfig::Jsonl(a), SinkConfig::Jsonl(b)) = (&self.sink, &other.sink)
            && a.path != "-"
            && b.path != "-"
            && crate::sink::canonical_file_path(Path::new(&a.path))
                == crate::sink::canonical_file_path(Path::new(&b.path))
        {
            return Some((
                "sink.path".into(),
                format!(
                    "{:?} is already the sink of task {:?} (as {:?})",
                    a.path, other.id, b.path
                ),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests;
