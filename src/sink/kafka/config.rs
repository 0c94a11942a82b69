//! `[tasks.sink]` with `type = "kafka"`: the TOML model and its pure
//! validation (no network). Every field's `///` is its reference.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::route::Template;

/// `type = "kafka"`: change topics on a Kafka cluster.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// `{prefix}` in topic names and the envelope's `source.name` (Debezium's
    /// `topic.prefix`). Default: the task id.
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// Topic of each table's row events. Placeholders: `{prefix}`, `{db}`
    /// (database), `{schema}` (PostgreSQL schema; the database for MySQL),
    /// `{table}`. Default `{prefix}.{db}.{table}` for MySQL/MariaDB and
    /// `{prefix}.{schema}.{table}` for PostgreSQL, as Debezium.
    #[serde(default)]
    pub topic: Option<String>,
    /// Per-table topic overrides: `{ "shop.orders" = "orders-cdc" }`, keyed by
    /// `db.table` (MySQL) or `schema.table` (PostgreSQL); values are
    /// templates like `topic`. Several tables may share a topic.
    #[serde(default)]
    pub table_topics: BTreeMap<String, String>,
    /// Topic of DDL (schema change) events. Default `{prefix}`, as Debezium.
    #[serde(default = "default_schema_change_topic")]
    pub schema_change_topic: String,
    /// Topic of transaction metadata records (`BEGIN`/`END` with event counts
    /// per table, as Debezium's `provide.transaction.metadata`). Off unless
    /// set; Debezium's name is `{prefix}.transaction`.
    #[serde(default)]
    pub transaction_topic: Option<String>,
    /// After a delete, write a tombstone (same key, null value) so that log
    /// compaction can drop the row. Default true, as Debezium.
    #[serde(default = "default_true")]
    pub tombstones_on_delete: bool,
    /// Value format: `json` (Debezium's envelope; see `schemas`) or
    /// `protobuf` (`tidemark.v1.ChangeEvent` from `proto/`). Default `json`.
    #[serde(default)]
    pub format: KafkaFormat,
    /// With `format = "json"`: wrap key and value in Kafka Connect's
    /// `{"schema": ..., "payload": ...}` as Debezium does with the JSON
    /// converter's `schemas.enable=true`. Default true; false writes the
    /// payload alone.
    #[serde(default = "default_true")]
    pub schemas: bool,
    /// `idempotent` (default): idempotent producer; exactly once across
    /// restarts for every consumer, by reading back each partition's last
    /// position at start. `transactional`: each group of source transactions
    /// in one Kafka transaction (`transactional.id = tidemark-<task id>`);
    /// consumers must read with `isolation.level=read_committed`.
    #[serde(default)]
    pub delivery: KafkaDelivery,
    /// How topics come to exist.
    #[serde(default)]
    pub topic_creation: TopicCreation,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`. Default `lz4`.
    #[serde(default)]
    pub compression: Compression,
    /// Milliseconds the producer waits to fill a batch (librdkafka
    /// `linger.ms`). Default 5.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Largest batch of messages sent to one partition, in bytes
    /// (librdkafka `batch.size`). Default 1000000.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// Largest message the producer sends, in bytes (librdkafka
    /// `message.max.bytes`); keep it at or below the broker's
    /// `message.max.bytes` and the topics' `max.message.bytes`. Default
    /// 1000000.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// What to do with a message larger than `max_message_bytes`, or that the
    /// broker rejects as too large: `fail` (default: the task stops with an
    /// error naming the topic, the size and the limit) or `dead_letter`
    /// (write a small record naming the event to `dead_letter_topic`
    /// instead, and go on).
    #[serde(default)]
    pub on_oversized: OnOversized,
    /// Topic of dead-letter records. Default `{prefix}.dead-letter`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Most messages waiting for the broker's acknowledgement; `submit`
    /// waits (backpressure on the source) when it is reached. Also
    /// librdkafka's `queue.buffering.max.messages`. Default 100000.
    #[serde(default = "default_max_in_flight_messages")]
    pub max_in_flight_messages: u64,
    /// Most kilobytes of messages waiting for the broker (librdkafka
    /// `queue.buffering.max.kbytes`). Default 65536 (64 MiB).
    #[serde(default = "default_max_in_flight_kbytes")]
    pub max_in_flight_kbytes: u64,
    /// Milliseconds a message may wait for the broker before the task fails
    /// (librdkafka `message.timeout.ms`). Default 0: wait and retry as long
    /// as the broker is away (the source is held back meanwhile); with
    /// `delivery = "transactional"` the default is 60000.
    #[serde(default)]
    pub message_timeout_ms: Option<u64>,
    /// Extra librdkafka properties, e.g. security: `{ "security.protocol" =
    /// "SASL_SSL", "sasl.mechanism" = "SCRAM-SHA-512", "sasl.username" =
    /// "cdc", "sasl.password" = "${KAFKA_PASSWORD}" }`. Keys are checked
    /// against librdkafka's; the ones tidemark sets itself are refused.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}
fn default_schema_change_topic() -> String {
    "{prefix}".into()
}
fn default_linger_ms() -> u64 {
    5
}
fn default_batch_size() -> u64 {
    1_000_000
}
fn default_max_message_bytes() -> u64 {
    1_000_000
}
fn default_max_in_flight_messages() -> u64 {
    100_000
}
fn default_max_in_flight_kbytes() -> u64 {
    65_536
}

/// Value format of change messages.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormat {
    #[default]
    Json,
    Protobuf,
}

/// Delivery mode; see the README's "Delivery guarantees".
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaDelivery {
    #[default]
    Idempotent,
    Transactional,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl Compression {
    /// librdkafka's `compression.type` value.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnOversized {
    #[default]
    Fail,
    DeadLetter,
}

/// `[tasks.sink.topic_creation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicCreation {
    /// `auto` (default): create a missing topic with the settings below.
    /// `require_existing`: a missing topic stops the task with an error
    /// naming it.
    #[serde(default)]
    pub mode: TopicCreationMode,
    /// Partitions of a created topic. Default 1. Changing a topic's
    /// partition count later moves keys to other partitions: see the
    /// README's delivery guarantees.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of a created topic. Default 1.
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// `retention.ms` of a created topic (`-1`: forever). Default: the
    /// broker's.
    #[serde(default)]
    pub retention_ms: Option<i64>,
    /// `cleanup.policy` of a created topic: `delete`, `compact` or
    /// `compact,delete`. Default: the broker's.
    #[serde(default)]
    pub cleanup_policy: Option<String>,
}

fn default_partitions() -> i32 {
    1
}
fn default_replication() -> i32 {
    1
}

impl Default for TopicCreation {
    fn default() -> Self {
        TopicCreation {
            mode: TopicCreationMode::Auto,
            partitions: default_partitions(),
            replication_factor: default_replication(),
            retention_ms: None,
            cleanup_policy: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TopicCreationMode {
    #[default]
    Auto,
    RequireExisting,
}

/// Properties tidemark sets itself, with the setting to use instead.
const MANAGED: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("enable.idempotence", "delivery"),
    ("transactional.id", "delivery"),
    ("acks", "delivery"),
    ("request.required.acks", "delivery"),
    ("max.in.flight.requests.per.connection", "delivery"),
    ("max.in.flight", "delivery"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("linger.ms", "linger_ms"),
    ("queue.buffering.max.ms", "linger_ms"),
    ("batch.size", "batch_size"),
    ("message.max.bytes", "max_message_bytes"),
    ("queue.buffering.max.messages", "max_in_flight_messages"),
    ("queue.buffering.max.kbytes", "max_in_flight_kbytes"),
    ("message.timeout.ms", "message_timeout_ms"),
    ("delivery.timeout.ms", "message_timeout_ms"),
    ("partitioner", "(tidemark partitions by key itself)"),
    ("group.id", "(not used by the sink)"),
    ("enable.partition.eof", "(set by the sink)"),
    ("isolation.level", "(set by the sink)"),
];

impl KafkaSinkConfig {
    /// `{prefix}`: the configured prefix or the task id.
    pub fn prefix<'a>(&'a self, task: &'a str) -> &'a str {
        self.topic_prefix.as_deref().unwrap_or(task)
    }

    /// The `message.timeout.ms` in force.
    pub fn effective_message_timeout_ms(&self) -> u64 {
        match (self.message_timeout_ms, self.delivery) {
            (Some(t), _) => t,
            (None, KafkaDelivery::Idempotent) => 0,
            (None, KafkaDelivery::Transactional) => 60_000,
        }
    }

    /// Checks the settings without I/O. Errors are `(key below the sink, message)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        let brokers: Vec<&str> = self.brokers.split(',').map(str::trim).collect();
        if brokers.iter().any(|b| b.is_empty() || !b.contains(':')) {
            return err(
                "brokers",
                format!("{:?}: expected host:port[,host:port...]", self.brokers),
            );
        }
        if let Some(p) = &self.topic_prefix
            && (p.is_empty() || !p.chars().all(topic_char))
        {
            return err(
                "topic_prefix",
                format!("{p:?}: use letters, digits, '.', '_' and '-'"),
            );
        }
        let templates = [
            ("topic", self.topic.as_deref()),
            (
                "schema_change_topic",
                Some(self.schema_change_topic.as_str()),
            ),
            ("transaction_topic", self.transaction_topic.as_deref()),
            ("dead_letter_topic", self.dead_letter_topic.as_deref()),
        ];
        for (key, t) in templates {
            if let Some(t) = t {
                Template::parse(t).map_err(|m| (key.to_string(), m))?;
            }
        }
        for (table, t) in &self.table_topics {
            let key = format!("table_topics.{table:?}");
            if table.split('.').count() != 2 || table.contains('*') {
                return err(
                    &key,
                    "keys are tables named `db.table` (MySQL) or `schema.table` (PostgreSQL)"
                        .into(),
                );
            }
            Template::parse(t).map_err(|m| (key, m))?;
        }
        if self.dead_letter_topic.is_some() && self.on_oversized != OnOversized::DeadLetter {
            return err(
                "dead_letter_topic",
                "is set but on_oversized is \"fail\"; set on_oversized = \"dead_letter\"".into(),
            );
        }
        let tc = &self.topic_creation;
        if !(1..=100_000).contains(&tc.partitions) {
            return err(
                "topic_creation.partitions",
                "must be between 1 and 100000".into(),
            );
        }
        if !(1..=1000).contains(&tc.replication_factor) {
            return err(
                "topic_creation.replication_factor",
                "must be between 1 and 1000".into(),
            );
        }
        if let Some(r) = tc.retention_ms
            && r < -1
        {
            return err(
                "topic_creation.retention_ms",
                "must be -1 (forever) or a number of milliseconds".into(),
            );
        }
        if let Some(p) = &tc.cleanup_policy
            && !matches!(
                p.as_str(),
                "delete" | "compact" | "compact,delete" | "delete,compact"
            )
        {
            return err(
                "topic_creation.cleanup_policy",
                format!("{p:?}: expected \"delete\", \"compact\" or \"compact,delete\""),
            );
        }
        if self.linger_ms > 900_000 {
            return err("linger_ms", "must be at most 900000".into());
        }
        if !(1..=2_147_483_647).contains(&self.batch_size) {
            return err("batch_size", "must be between 1 and 2147483647".into());
        }
        if !(1000..=1_000_000_000).contains(&self.max_message_bytes) {
            return err(
                "max_message_bytes",
                "must be between 1000 and 1000000000".into(),
            );
        }
        if !(1..=2_147_483_647).contains(&self.max_in_flight_messages) {
            return err(
                "max_in_flight_messages",
                "must be between 1 and 2147483647".into(),
            );
        }
        if !(1..=2_147_483_647).contains(&self.max_in_flight_kbytes) {
            return err(
                "max_in_flight_kbytes",
                "must be between 1 and 2147483647".into(),
            );
        }
        if self.max_in_flight_kbytes * 1024 < self.max_message_bytes {
            return err(
                "max_in_flight_kbytes",
                "must hold at least one message of max_message_bytes".into(),
            );
        }
        if self.delivery == KafkaDelivery::Transactional && self.effective_message_timeout_ms() == 0
        {
            return err(
                "message_timeout_ms",
                "must be set (at most the transaction timeout, 60000 by default) with delivery = \"transactional\"".into(),
            );
        }
        for key in self.properties.keys() {
            let k = format!("properties.{key:?}");
            if let Some((_, instead)) = MANAGED.iter().find(|(m, _)| m == key) {
                return err(
                    &k,
                    format!("is set by tidemark; use the sink's `{instead}` setting"),
                );
            }
        }
        // librdkafka checks names and values itself, without connecting.
        let mut cc = rdkafka::ClientConfig::new();
        for (key, value) in &self.properties {
            cc.set(key, value);
            if let Err(e) = cc.create_native_config() {
                return err(&format!("properties.{key:?}"), format!("{e}"));
            }
        }
        Ok(())
    }
}

/// Characters Kafka allows in topic names.
pub fn topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Property names whose values are secrets.
fn secret(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key.ends_with(".key")
        || key.contains("key.pem")
}

impl fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if secret(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaSinkConfig")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("topic", &self.topic)
            .field("table_topics", &self.table_topics)
            .field("format", &self.format)
            .field("schemas", &self.schemas)
            .field("delivery", &self.delivery)
            .field("topic_creation", &self.topic_creation)
            .field("compression", &self.compression)
            .field("on_oversized", &self.on_oversized)
            .field("properties", &props)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<KafkaSinkConfig, String> {
        let text = format!("brokers = \"127.0.0.1:9092\"\n{extra}");
        let c: KafkaSinkConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.check().map_err(|(k, m)| format!("{k}: {m}"))?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.prefix("t1"), "t1");
        assert_eq!(c.schema_change_topic, "{prefix}");
        assert!(c.tombstones_on_delete && c.schemas);
        assert_eq!(c.delivery, KafkaDelivery::Idempotent);
        assert_eq!(c.compression, Compression::Lz4);
        assert_eq!(c.effective_message_timeout_ms(), 0);
        assert_eq!(c.topic_creation.partitions, 1);
        assert!(c.transaction_topic.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        for (extra, key) in [
            ("topic = \"{prefix}.{tabel}\"", "topic"),
            ("table_topics = { \"shop\" = \"x\" }", "table_topics"),
            ("dead_letter_topic = \"dlq\"", "dead_letter_topic"),
            (
                "topic_creation = { partitions = 0 }",
                "topic_creation.partitions",
            ),
            (
                "topic_creation = { cleanup_policy = \"forever\" }",
                "topic_creation.cleanup_policy",
            ),
            ("properties = { \"acks\" = \"1\" }", "properties.\"acks\""),
            (
                "properties = { \"no.such.property\" = \"1\" }",
                "properties.\"no.such.property\"",
            ),
            (
                "properties = { \"socket.timeout.ms\" = \"abc\" }",
                "properties.\"socket.timeout.ms\"",
            ),
            (
                "delivery = \"transactional\"\nmessage_timeout_ms = 0",
                "message_timeout_ms",
            ),
            ("max_message_bytes = 10", "max_message_bytes"),
            ("topic_prefix = \"a b\"", "topic_prefix"),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.starts_with(key), "{extra}: {e}");
        }
        let e = parse("").map(|_| ());
        assert!(e.is_ok());
        let e = toml::from_str::<KafkaSinkConfig>("brokers = \"h:1\"\nlinger = 3").unwrap_err();
        assert!(e.to_string().contains("linger"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        let c = parse("properties = { \"sasl.username\" = \"u\", \"sasl.password\" = \"hunter2\", \"security.protocol\" = \"SASL_PLAINTEXT\", \"sasl.mechanism\" = \"PLAIN\" }").unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && d.contains("sasl.username"), "{d}");
    }
}
