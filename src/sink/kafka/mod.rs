//! Kafka sink: change topics for downstream consumers, exactly once across
//! restarts.
//!
//! `submit` turns a group of batches into messages ([`format`]), routes
//! them ([`route`]), drops the ones a previous run already wrote
//! ([`resume`]) and hands the rest to librdkafka's idempotent producer,
//! tagged with the group's ticket. Delivery reports, on librdkafka's polling
//! thread, count each ticket's messages down; a ticket is durable once all
//! its messages and all earlier tickets' are acknowledged by the broker
//! (`acks=all`). Memory is bounded by `max_in_flight_messages` /
//! `max_in_flight_kbytes`: `submit` waits while they are reached, which
//! holds the source back while the broker is slow or away.
//!
//! With `delivery = "transactional"` each group is one Kafka transaction,
//! durable once committed.

pub mod config;
mod error;
pub mod format;
pub mod resume;
pub mod route;
pub mod schema;
mod topics;
mod track;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tracing::{info, warn};

pub use config::KafkaSinkConfig;
use config::{KafkaDelivery, OnOversized};
pub use error::KafkaSinkError;
use error::{kafka, retriable};
use format::{Formatter, Msg, TxTracker};
use resume::Mark;
use route::Router;
use track::{Ctx, Tracker};

use crate::event::json::JsonOptions;
use crate::event::{Batch, Connector, Position};

/// What the sink knows of a topic it writes.
pub(super) struct TopicInfo {
    partitions: i32,
    /// Per partition, the last mark a previous run wrote; cleared once this
    /// run writes past it.
    last: Vec<Option<Mark>>,
}

/// Time allowed for metadata and admin requests before retrying.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KafkaSink {
    cfg: KafkaSinkConfig,
    task: String,
    producer: Arc<ThreadedProducer<Ctx>>,
    /// Client settings shared by the producer, the admin client and the
    /// resume reader (brokers, security).
    base: ClientConfig,
    router: Router,
    formatter: Formatter,
    tx_meta: Option<TxTracker>,
    topics: HashMap<Arc<str>, TopicInfo>,
    tracker: Arc<Tracker>,
    next_ticket: u64,
    /// The durable ticket last returned by `durable`.
    reported: u64,
    /// Transactional mode: the commit of the last group, running.
    commit: Option<(u64, tokio::task::JoinHandle<Result<(), KafkaError>>)>,
    scratch: Vec<Msg>,
    bytes: u64,
    /// Messages the broker refused as too large, awaiting their dead letter.
    rejected: Vec<(u64, Msg, String)>,
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // Destroying the producer may wait on brokers that don't answer:
        // off the runtime, so that stopping a task never blocks on it.
        let producer = self.producer.clone();
        let _ = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || drop(producer));
    }
}

impl KafkaSink {
    /// Creates the producer (and, in transactional mode, fences earlier
    /// instances of the task). Topics are looked up, created and read back
    /// when first written.
    pub async fn open(
        cfg: KafkaSinkConfig,
        task: &str,
        connector: Connector,
        json: JsonOptions,
    ) -> Result<KafkaSink, KafkaSinkError> {
        let prefix = cfg.prefix(task).to_string();
        let default_topic = match connector {
            Connector::Postgres => "{prefix}.{schema}.{table}",
            _ => "{prefix}.{db}.{table}",
        };
        let overrides: Vec<(String, String)> = cfg
            .table_topics
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let router = Router::new(
            &prefix,
            cfg.topic.as_deref().unwrap_or(default_topic),
            &overrides,
            &cfg.schema_change_topic,
            cfg.transaction_topic.as_deref(),
            cfg.dead_letter_topic
                .as_deref()
                .unwrap_or("{prefix}.dead-letter"),
        )
        .map_err(KafkaSinkError::Config)?;
        let formatter = Formatter::new(
            json,
            cfg.format,
            cfg.schemas,
            cfg.tombstones_on_delete,
            &prefix,
            task,
        );
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", &cfg.brokers)
            .set("client.id", format!("tidemark-{task}"));
        for (k, v) in &cfg.properties {
            base.set(k, v);
        }
        let mut pc = base.clone();
        pc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("compression.type", cfg.compression.name())
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("batch.size", cfg.batch_size.to_string())
            .set("message.max.bytes", cfg.max_message_bytes.to_string())
            .set(
                "queue.buffering.max.messages",
                cfg.max_in_flight_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                cfg.max_in_flight_kbytes.to_string(),
            )
            .set(
                "message.timeout.ms",
                cfg.effective_message_timeout_ms().to_string(),
            );
        let transactional = cfg.delivery == KafkaDelivery::Transactional;
        if transactional {
            pc.set("transactional.id", format!("tidemark-{task}"));
        }
        let tracker = Arc::new(Tracker::new());
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        tracker.transactional.store(transactional, relaxed);
        tracker
            .dead_letter
            .store(cfg.on_oversized == OnOversized::DeadLetter, relaxed);
        tracker.limit.store(cfg.max_message_bytes, relaxed);
        let producer: ThreadedProducer<Ctx> = pc
            .create_with_context(Ctx {
                tracker: tracker.clone(),
            })
            .map_err(kafka("creating the producer"))?;
        let producer = Arc::new(producer);
        if transactional {
            // Fences a previous instance and aborts its open transaction.
            loop {
                let p = producer.clone();
                let r = tokio::task::spawn_blocking(move || p.init_transactions(REQUEST_TIMEOUT))
                    .await
                    .map_err(|e| KafkaSinkError::Config(format!("init task failed: {e}")))?;
                match r {
                    Ok(()) => break,
                    Err(e) if retriable(&e) => {
                        warn!(task = %task, error = %e, "kafka: initializing transactions, retrying");
                    }
                    Err(e) => return Err(kafka("initializing transactions")(e)),
                }
            }
        }
        info!(task = %task, brokers = %cfg.brokers, delivery = ?cfg.delivery, "kafka sink ready");
        Ok(KafkaSink {
            tx_meta: cfg.transaction_topic.as_ref().map(|_| TxTracker::default()),
            cfg,
            task: task.to_string(),
            producer,
            base,
            router,
            formatter,
            topics: HashMap::new(),
            tracker,
            next_ticket: 1,
            reported: 0,
            commit: None,
            scratch: Vec::new(),
            bytes: 0,
            rejected: Vec::new(),
        })
    }

    /// Bytes of the messages handed to the producer so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Always `None`: the offset store bounds where the source restarts, and
    /// each partition's last message removes the duplicates (see [`resume`]).
    pub fn durable_position(&self) -> Option<Position> {
        None
    }

    /// Encodes and queues a group; returns its ticket. Waits while the
    /// in-flight limits are reached.
    pub async fn submit(&mut self, batches: &[Batch]) -> Result<u64, KafkaSinkError> {
        self.tracker.check()?;
        let transactional = self.cfg.delivery == KafkaDelivery::Transactional;
        if transactional {
            // One Kafka transaction at a time.
            self.finish_commit().await?;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.tracker.open(ticket);
        let now_ns = now_ns();
        let mut msgs = std::mem::take(&mut self.scratch);
        msgs.clear();
        for batch in batches {
            for ev in &batch.events {
                if let Some(tx) = self.tx_meta.as_mut() {
                    let (closed, begun) = tx.event(ev);
                    let topic: Arc<str> = self.router.transaction.as_deref().unwrap_or("").into();
                    for r in closed.iter().chain(begun.iter()) {
                        msgs.push(self.formatter.tx_record(r, topic.clone()));
                    }
                }
                let topic = self.router.event_topic(ev);
                self.formatter.event(ev, topic, now_ns, &mut msgs);
            }
            if let Some(tx) = self.tx_meta.as_mut()
                && let Some(end) = tx.batch_end(&batch.end)
            {
                let topic: Arc<str> = self.router.transaction.as_deref().unwrap_or("").into();
                msgs.push(self.formatter.tx_record(&end, topic));
            }
        }
        let mut began = false;
        for m in msgs.drain(..) {
            let Some(partition) = self.route(&m).await? else {
                continue;
            };
            if transactional && !began {
                self.producer
                    .begin_transaction()
                    .map_err(kafka("beginning a transaction"))?;
                began = true;
            }
            self.produce(m, partition, ticket).await?;
        }
        self.scratch = msgs;
        self.tracker.seal(ticket);
        if transactional && !began {
            // Nothing to write: durable once the groups before it are.
            self.tracker.committed(ticket);
        }
        if began {
            let p = self.producer.clone();
            let timeout = Duration::from_millis(self.cfg.effective_message_timeout_ms().max(1000));
            let handle = tokio::task::spawn_blocking(move || p.commit_transaction(timeout));
            self.commit = Some((ticket, handle));
        }
        Ok(ticket)
    }

    /// The partition `m` goes to, or `None` when a previous run already
    /// wrote it.
    async fn route(&mut self, m: &Msg) -> Result<Option<i32>, KafkaSinkError> {
        if !self.topics.contains_key(&m.topic) {
            let info = self.prepare_topic(&m.topic).await?;
            self.topics.insert(m.topic.clone(), info);
        }
        let Some(info) = self.topics.get_mut(&m.topic) else {
            return Ok(None);
        };
        let p = route::partition_for(m.partition_key(), info.partitions);
        if let Some(slot) = info.last.get_mut(p as usize)
            && let Some(last) = slot
        {
            let covered = resume::covered(last, &m.position, m.part).map_err(|message| {
                KafkaSinkError::Foreign {
                    topic: m.topic.to_string(),
                    message,
                }
            })?;
            if covered {
                tracing::debug!(topic = %m.topic, partition = p, position = %m.position, "already written: skipped");
                return Ok(None);
            }
            *slot = None;
        }
        Ok(Some(p))
    }

    /// Produces one message, waiting while the queue is full; routes an
    /// oversized one by the `on_oversized` policy.
    async fn produce(&mut self, m: Msg, partition: i32, ticket: u64) -> Result<(), KafkaSinkError> {
        let headers = headers(&self.task, &m);
        loop {
            self.tracker
                .wait_capacity(self.cfg.max_in_flight_messages)
                .await?;
            let mut rec = BaseRecord::with_opaque_to(&m.topic, ticket as usize)
                .partition(partition)
                .headers(headers.clone());
            if let Some(k) = &m.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &m.value {
                rec = rec.payload(v.as_slice());
            }
            self.tracker.sent(ticket);
            let size = m.size() as u64;
            match self.producer.send(rec) {
                Ok(()) => {
                    self.bytes += size;
                    return Ok(());
                }
                Err((e, _)) => {
                    self.tracker.unsent(ticket);
                    match e {
                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                            self.tracker.wait_delivery().await;
                        }
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge) => {
                            return self.oversized(m, ticket, "").await;
                        }
                        e => {
                            return Err(kafka(format!("producing to {}", m.topic))(e));
                        }
                    }
                }
            }
        }
    }

    /// Applies `on_oversized` to a message over the size limit.
    async fn oversized(&mut self, m: Msg, ticket: u64, detail: &str) -> Result<(), KafkaSinkError> {
        let limit = self.cfg.max_message_bytes;
        if self.cfg.on_oversized == OnOversized::Fail {
            return Err(KafkaSinkError::Oversized {
                topic: m.topic.to_string(),
                size: m.size(),
                limit,
                position: m.position.to_string(),
                detail: detail.to_string(),
            });
        }
        let topic: Arc<str> = self.router.dead_letter.as_str().into();
        warn!(task = %self.task, topic = %m.topic, size = m.size(), limit, position = %m.position, dead_letter = %topic, "kafka: message too large, written to the dead-letter topic");
        let error = format!(
            "message of {} bytes is over the limit of {limit} bytes{detail}",
            m.size()
        );
        let dl = self.formatter.dead_letter(&m, limit, &error, topic);
        let Some(p) = Box::pin(self.route(&dl)).await? else {
            return Ok(());
        };
        Box::pin(self.produce(dl, p, ticket)).await
    }

    /// Waits until the durable ticket advances past the last one returned.
    /// Cancel-safe: progress lives in the tracker.
    pub async fn durable(&mut self) -> Result<u64, KafkaSinkError> {
        loop {
            if let Some((ticket, handle)) = self.commit.as_mut() {
                let ticket = *ticket;
                let r = handle
                    .await
                    .map_err(|e| KafkaSinkError::Config(format!("commit task failed: {e}")));
                self.commit = None;
                r?.map_err(kafka("committing a transaction"))?;
                self.tracker.committed(ticket);
            }
            self.retry_rejected().await?;
            self.tracker.check()?;
            let d = self.tracker.durable();
            if d > self.reported {
                self.reported = d;
                return Ok(d);
            }
            self.tracker.wait_delivery().await;
        }
    }

    /// Waits until everything submitted is durable; returns the last ticket.
    pub async fn flush(&mut self) -> Result<u64, KafkaSinkError> {
        let last = self.next_ticket - 1;
        while self.reported < last {
            self.durable().await?;
        }
        Ok(last)
    }

    async fn finish_commit(&mut self) -> Result<(), KafkaSinkError> {
        if self.commit.is_some() {
            let target = self.commit.as_ref().map_or(0, |c| c.0);
            while self.tracker.durable() < target {
                self.durable().await?;
            }
        }
        Ok(())
    }

    /// Messages the broker refused as too large (idempotent mode): dead
    /// letters in their place, or the task's error.
    ///
    /// Cancel-safe (the runner selects on `durable`): a refused message
    /// leaves `self.rejected` only once its dead letter was handed to the
    /// producer and its ticket settled, with no await in between, so a
    /// dropped call neither loses it nor sends it twice.
    async fn retry_rejected(&mut self) -> Result<(), KafkaSinkError> {
        self.rejected.extend(self.tracker.take_rejected());
        while let Some((ticket, m, detail)) = self.rejected.first().cloned() {
            self.oversized(m, ticket, &detail).await?;
            // The refused message is settled by its replacement.
            self.tracker.settle(ticket);
            self.rejected.remove(0);
        }
        Ok(())
    }
}

fn headers(task: &str, m: &Msg) -> OwnedHeaders {
    let position = m.position.to_string();
    let mut h = OwnedHeaders::new_with_capacity(5)
        .insert(Header {
            key: format::H_TASK,
            value: Some(task),
        })
        .insert(Header {
            key: format::H_POSITION,
            value: Some(&position),
        })
        .insert(Header {
            key: format::H_OP,
            value: Some(m.op),
        });
    if let Some(t) = &m.table {
        h = h.insert(Header {
            key: format::H_TABLE,
            value: Some(t),
        });
    }
    if m.part != 0 {
        h = h.insert(Header {
            key: format::H_PART,
            value: Some(&m.part.to_string()),
        });
    }
    h
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}
