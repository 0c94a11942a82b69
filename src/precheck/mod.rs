//! Pre-check: what a task needs of its servers, item by item, each `pass`,
//! `warn` or `fail` with what was found and, for anything but a pass, the
//! fix. Read-only: it changes nothing on any server.
//!
//! - Connections (source and database target) are tried step by step, so
//!   a failure says which step: the host name (DNS), the TCP connection,
//!   TLS, the login, or the server version.
//! - MySQL/MariaDB sources: binary log on, ROW format, FULL row image and
//!   row metadata, the privileges to read the binlog, a server id no other
//!   replica uses, binlog retention against the task's lag, a key on every
//!   selected table.
//! - PostgreSQL sources: version, `wal_level = logical`, the REPLICATION
//!   attribute, free replication slots and WAL senders, the slot's health
//!   and WAL retention, replica identity of every selected table.
//! - Targets: reachable, writable (not read-only), same-named tables
//!   already there; Kafka brokers reachable; a JSONL file's directory.

pub mod inspect;
pub(crate) mod mysql;
mod postgres;

use serde::Serialize;

use crate::config::{SinkConfig, SourceConfig, TaskConfig};

/// An item's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One checked item.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// `source.connection`, `source.binlog_format`, `target.writable`, …
    pub name: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, for a warning or a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Item {
    pub fn pass(name: &str, detail: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// A pre-check's result: the worst item's status, and every item.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub result: Status,
    pub items: Vec<Item>,
}

impl Report {
    fn new(items: Vec<Item>) -> Report {
        let result = items.iter().map(|i| i.status).max().unwrap_or(Status::Pass);
        Report { result, items }
    }
}

/// What the task's state tells the checks.
#[derive(Debug, Clone, Default)]
pub struct TaskFacts {
    /// The task is running (its own replica connection is expected).
    pub running: bool,
    /// Seconds the task is behind, when known.
    pub lag_seconds: Option<f64>,
    /// The committed position's text, when there is one.
    pub committed: Option<String>,
}

/// Every check for `cfg`.
pub async fn run(cfg: &TaskConfig, facts: &TaskFacts) -> Report {
    let mut items = Vec::new();
    match &cfg.source {
        SourceConfig::Mysql(m) => items.extend(mysql::source(cfg, m, facts).await),
        SourceConfig::Postgres(p) => items.extend(postgres::source(cfg, p, facts).await),
    }
    items.extend(target(cfg, true).await);
    items.extend(consistency(cfg).await);
    items.extend(rules(cfg).await);
    Report::new(items)
}

/// The processing rules against the source's tables: every column a rule
/// names exists, keys survive, filters type-check on the columns' types,
/// shards renamed into one table are merged.
pub async fn rules(cfg: &TaskConfig) -> Vec<Item> {
    if cfg.rules.is_empty() {
        return Vec::new();
    }
    let objects = match inspect::objects(cfg, None).await {
        Ok(o) => o,
        Err(e) => {
            return vec![Item::fail(
                "rules",
                format!("the source's tables could not be read to check the rules against: {e}"),
                "check the source connection (test-connection)",
            )];
        }
    };
    let mut rules = match crate::stage::rules::Rules::new(&cfg.id, &cfg.rules, false) {
        Ok(r) => r,
        Err(e) => return vec![Item::fail("rules", e, "fix the rule")],
    };
    let pg = matches!(cfg.source, SourceConfig::Postgres(_));
    let mut items = Vec::new();
    let mut shaped = Vec::new();
    for d in objects["databases"].as_array().into_iter().flatten() {
        let db = d["name"].as_str().unwrap_or_default();
        for t in d["tables"].as_array().into_iter().flatten() {
            if t["selected"] != serde_json::Value::Bool(true) {
                continue;
            }
            let name = t["name"].as_str().unwrap_or_default();
            let cols = t["columns"].as_array().cloned().unwrap_or_default();
            let columns: Vec<crate::event::ColumnDef> = cols
                .iter()
                .map(|c| crate::event::ColumnDef {
                    name: c["name"].as_str().unwrap_or_default().to_string(),
                    type_name: c["type"].as_str().unwrap_or_default().to_string(),
                    nullable: true,
                })
                .collect();
            let key: Vec<usize> = cols
                .iter()
                .enumerate()
                .filter(|(_, c)| c["key"] == serde_json::Value::Bool(true))
                .map(|(i, _)| i)
                .collect();
            let schema = std::sync::Arc::new(crate::event::TableSchema {
                db: if pg { String::new() } else { db.to_string() },
                schema: pg.then(|| db.to_string()),
                name: name.to_string(),
                version: crate::event::TableSchema::fingerprint(&columns, &key),
                columns,
                key,
                uniques: Vec::new(),
                before_complete: true,
                defaults: Vec::new(),
                merged: None,
            });
            match rules.check_table(&schema) {
                Ok(Some(s)) => shaped.push(s),
                Ok(None) => {}
                Err(e) => items.push(Item::fail(
                    &format!("rules.{db}.{name}"),
                    e,
                    "fix the rule (or the table), then check again",
                )),
            }
        }
    }
    if items.is_empty() {
        let detail = if shaped.is_empty() {
            "no selected table matches a rule's tables".to_string()
        } else {
            shaped.join("; ")
        };
        if shaped.is_empty() {
            items.push(Item::warn(
                "rules",
                detail,
                "check the rules' tables patterns against the selected tables",
            ));
        } else {
            items.push(Item::pass("rules", detail));
        }
    }
    items
}

/// Settings that should agree between a source and a database target of
/// the same engine (character set, collation, time zone, SQL mode, name
/// case): each that differs is a warning.
async fn consistency(cfg: &TaskConfig) -> Vec<Item> {
    let same_engine = matches!(
        (&cfg.source, &cfg.sink),
        (SourceConfig::Mysql(_), SinkConfig::Mysql(_))
            | (SourceConfig::Postgres(_), SinkConfig::Postgres(_))
    );
    if !same_engine {
        return Vec::new();
    }
    let p = inspect::parameters(cfg).await;
    let settings = |side: &str| -> std::collections::BTreeMap<String, serde_json::Value> {
        p[side]["settings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["value"].clone())))
            .collect()
    };
    let (src, dst) = (settings("source"), settings("target"));
    if src.is_empty() || dst.is_empty() {
        // A connection failed: its item says so.
        return Vec::new();
    }
    let names: &[&str] = match cfg.source {
        SourceConfig::Mysql(_) => &[
            "character_set_server",
            "collation_server",
            "time_zone",
            "system_time_zone",
            "sql_mode",
            "lower_case_table_names",
        ],
        SourceConfig::Postgres(_) => &["server_encoding", "TimeZone", "lc_collate"],
    };
    let differing: Vec<String> = names
        .iter()
        .filter(|n| src.get(**n) != dst.get(**n))
        .map(|n| {
            format!(
                "{n}: {} on the source, {} on the target",
                src.get(*n).cloned().unwrap_or_default(),
                dst.get(*n).cloned().unwrap_or_default()
            )
        })
        .collect();
    if differing.is_empty() {
        vec![Item::pass(
            "consistency.settings",
            format!("source and target agree on {}", names.join(", ")),
        )]
    } else {
        vec![Item::warn(
            "consistency.settings",
            differing.join("; "),
            "align them, or check that the difference is meant: created tables take the target's defaults (charset, collation), replayed DDL runs under the target's sql_mode, and names compare by the target's rules",
        )]
    }
}

/// The connections only: the source's and the target's.
pub async fn connections(cfg: &TaskConfig) -> Report {
    let mut items = Vec::new();
    match &cfg.source {
        SourceConfig::Mysql(m) => {
            let (item, _) = mysql::connect_source(m).await;
            items.push(item);
        }
        SourceConfig::Postgres(p) => {
            let (item, _) = postgres::connect("source", &p.url, &p.tls, "tasks.source.tls").await;
            items.push(item);
        }
    }
    items.extend(target(cfg, false).await);
    Report::new(items)
}

async fn target(cfg: &TaskConfig, full: bool) -> Vec<Item> {
    match &cfg.sink {
        SinkConfig::Jsonl(j) => {
            if j.path == "-" {
                return vec![Item::pass("target.file", "standard output")];
            }
            let path = std::path::Path::new(&j.path);
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() && !m.permissions().readonly() => vec![Item::pass(
                    "target.file",
                    format!("{} can be written in {}", j.path, dir.display()),
                )],
                Ok(_) => vec![Item::fail(
                    "target.file",
                    format!("{} is not a writable directory", dir.display()),
                    "point sink.path into a directory the daemon's user may write",
                )],
                Err(e) => vec![Item::fail(
                    "target.file",
                    format!("{}: {e}", dir.display()),
                    "create the directory, or point sink.path elsewhere",
                )],
            }
        }
        SinkConfig::Kafka(k) => {
            let mut items = kafka_brokers(&k.brokers).await;
            if full && items.iter().all(|i| i.status == Status::Pass) {
                items.push(kafka_topics(cfg, k).await);
            }
            items
        }
        SinkConfig::Mysql(d) => mysql::target(cfg, d, full).await,
        SinkConfig::Postgres(d) => postgres::target(cfg, d, full).await,
    }
}

/// Each bootstrap broker's host name and TCP port.
async fn kafka_brokers(brokers: &str) -> Vec<Item> {
    let mut items = Vec::new();
    for b in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let Some((host, port)) = b
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse().ok()?)))
        else {
            items.push(Item::fail(
                "target.kafka",
                format!("{b:?} is not host:port"),
                "list the brokers as host:port[,host:port…] in sink.brokers",
            ));
            continue;
        };
        items.push(
            reach("target.kafka", host, port)
                .await
                .unwrap_or_else(|i| i),
        );
    }
    items
}

/// DNS, then TCP: `Ok` with a pass item, `Err` with the failing one.
pub(crate) async fn reach(name: &str, host: &str, port: u16) -> Result<Item, Item> {
    let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            return Err(Item::fail(
                name,
                format!("dns: the host name {host:?} does not resolve ({e})"),
                "check the host name's spelling and the DNS the daemon's host uses",
            ));
        }
    };
    let Some(addr) = addrs.first() else {
        return Err(Item::fail(
            name,
            format!("dns: the host name {host:?} resolves to no address"),
            "check the host name and DNS",
        ));
    };
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        Ok(Ok(_)) => Ok(Item::pass(
            name,
            format!("tcp: {host}:{port} ({addr}) accepts connections"),
        )),
        Ok(Err(e)) => Err(Item::fail(
            name,
            format!("tcp: {host}:{port} ({addr}): {e}"),
            "check that the server runs and listens on that port, and that no firewall stands between",
        )),
        Err(_) => Err(Item::fail(
            name,
            format!("tcp: {host}:{port} ({addr}): no answer in 5 s"),
            "check the address, the server, and firewalls between",
        )),
    }
}

/// Whether tidemark may create its topics: a creation validated by the
/// brokers (`validate_only`: nothing is created), as the sink's
/// `topic_creation` would ask it.
async fn kafka_topics(cfg: &TaskConfig, k: &crate::sink::kafka::KafkaSinkConfig) -> Item {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::error::RDKafkaErrorCode;
    let name = "target.kafka_topics";
    if k.topic_creation.mode == crate::sink::kafka::config::TopicCreationMode::RequireExisting {
        return Item::pass(
            name,
            "topic_creation.mode = \"require_existing\": the topics must exist (a missing one fails the task, naming it)",
        );
    }
    let mut cc = rdkafka::ClientConfig::new();
    cc.set("bootstrap.servers", &k.brokers)
        .set("client.id", format!("tidemark-precheck-{}", cfg.id));
    for (key, v) in &k.properties {
        cc.set(key, v);
    }
    let admin: AdminClient<DefaultClientContext> = match cc.create() {
        Ok(a) => a,
        Err(e) => {
            return Item::fail(
                name,
                format!("the Kafka client can't start: {e}"),
                "check sink.properties",
            );
        }
    };
    let probe = format!("{}.tidemark_precheck", k.prefix(&cfg.id));
    let nt = NewTopic::new(
        &probe,
        k.topic_creation.partitions,
        TopicReplication::Fixed(k.topic_creation.replication_factor),
    );
    let opts = AdminOptions::new()
        .validate_only(true)
        .operation_timeout(Some(std::time::Duration::from_secs(10)))
        .request_timeout(Some(std::time::Duration::from_secs(10)));
    match admin.create_topics([&nt], &opts).await {
        Ok(results) => match results.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {
                Item::pass(
                    name,
                    format!(
                        "the brokers accept creating topics like {probe} ({} partitions, replication factor {})",
                        k.topic_creation.partitions, k.topic_creation.replication_factor
                    ),
                )
            }
            Some(Err((_, code))) => Item::fail(
                name,
                format!("the brokers refuse creating {probe}: {code}"),
                "grant the principal CREATE on the cluster or the topics' prefix, fit topic_creation.partitions / replication_factor to the cluster, or create the topics and set topic_creation.mode = \"require_existing\"",
            ),
        },
        Err(e) => Item::fail(
            name,
            format!("asking the brokers: {e}"),
            "check the brokers and sink.properties (security settings)",
        ),
    }
}
