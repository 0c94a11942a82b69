//! Topics the sink writes: looked up, created when allowed, and read back
//! (each partition's last mark) before the first write.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use tracing::{info, warn};

use super::config::{KafkaDelivery, TopicCreationMode};
use super::error::{kafka, retriable};
use super::{KafkaSink, KafkaSinkError, REQUEST_TIMEOUT, TopicInfo, resume};

impl KafkaSink {
    /// Looks a topic up, creates it when allowed, and reads the last mark
    /// of each partition.
    pub(super) async fn prepare_topic(&self, topic: &str) -> Result<TopicInfo, KafkaSinkError> {
        let mut created = false;
        let mut backoff = crate::retry::Backoff::default();
        let partitions = loop {
            let p = self.producer.clone();
            let t = topic.to_string();
            let md = tokio::task::spawn_blocking(move || {
                p.client()
                    .fetch_metadata(Some(&t), REQUEST_TIMEOUT)
                    .map(|md| {
                        md.topics()
                            .iter()
                            .find(|x| x.name() == t)
                            .map(|x| (x.error(), x.partitions().len() as i32))
                    })
            })
            .await
            .map_err(|e| KafkaSinkError::Config(format!("metadata task failed: {e}")))?;
            match md {
                Ok(Some((None, n))) if n > 0 => break n,
                Ok(_) if !created => {
                    if self.cfg.topic_creation.mode == TopicCreationMode::RequireExisting {
                        return Err(KafkaSinkError::MissingTopic {
                            topic: topic.to_string(),
                        });
                    }
                    self.create_topic(topic).await?;
                    created = true;
                }
                Ok(_) => {
                    // Created; waiting for the metadata to show it.
                    tokio::time::sleep(backoff.next_delay().min(Duration::from_secs(2))).await;
                }
                Err(e) if retriable(&e) => {
                    warn!(task = %self.task, topic, error = %e, "kafka: metadata unavailable, retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(kafka(format!("looking up topic {topic}"))(e)),
            }
        };
        let base = self.base.clone();
        let t = topic.to_string();
        let read_committed = self.cfg.delivery == KafkaDelivery::Transactional;
        let last = tokio::task::spawn_blocking(move || {
            resume::read_last(
                &base,
                &t,
                partitions,
                read_committed,
                Duration::from_secs(60),
            )
        })
        .await
        .map_err(|e| KafkaSinkError::Config(format!("resume task failed: {e}")))??;
        let written = last.iter().filter(|l| l.is_some()).count();
        info!(task = %self.task, topic, partitions, partitions_with_data = written, "kafka: topic ready");
        Ok(TopicInfo { partitions, last })
    }

    async fn create_topic(&self, topic: &str) -> Result<(), KafkaSinkError> {
        let admin: AdminClient<DefaultClientContext> = self
            .base
            .create()
            .map_err(kafka("creating the admin client"))?;
        let tc = &self.cfg.topic_creation;
        let retention = tc.retention_ms.map(|r| r.to_string());
        let mut nt = NewTopic::new(
            topic,
            tc.partitions,
            TopicReplication::Fixed(tc.replication_factor),
        );
        if let Some(r) = &retention {
            nt = nt.set("retention.ms", r);
        }
        if let Some(c) = &tc.cleanup_policy {
            nt = nt.set("cleanup.policy", c);
        }
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = admin
            .create_topics([&nt], &opts)
            .await
            .map_err(kafka(format!("creating topic {topic}")))?;
        for r in results {
            match r {
                Ok(_) => {
                    info!(task = %self.task, topic, partitions = tc.partitions, "kafka: topic created")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(kafka(format!("creating topic {topic}"))(
                        KafkaError::AdminOp(code),
                    ));
                }
            }
        }
        Ok(())
    }
}
