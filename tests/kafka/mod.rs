//! Kafka sink tests against a real Kafka-protocol broker (tansu, started by
//! tests/servers/tansu.sh) and rdkafka's mock cluster for fault injection.
//! Consumers assign partitions explicitly (tansu's group protocol is slow
//! to assign).

mod crash;
mod debezium;
mod e2e;
mod faults;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

/// A topic prefix unique to this test run (tansu keeps topics in memory
/// across runs).
pub fn prefix(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// A consumed message.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    pub fn json(&self) -> Value {
        match &self.value {
            Some(v) => serde_json::from_slice(v).unwrap_or_else(|e| {
                panic!("value is not JSON ({e}): {}", String::from_utf8_lossy(v))
            }),
            None => Value::Null,
        }
    }

    pub fn key_json(&self) -> Value {
        match &self.key {
            Some(k) => serde_json::from_slice(k).unwrap(),
            None => Value::Null,
        }
    }

    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).map(String::as_str)
    }
}

fn partitions(c: &BaseConsumer, topic: &str, deadline: Instant) -> i32 {
    loop {
        if let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5))
            && let Some(t) = md.topics().iter().find(|t| t.name() == topic)
            && t.error().is_none()
            && !t.partitions().is_empty()
        {
            return t.partitions().len() as i32;
        }
        if Instant::now() > deadline {
            panic!("topic {topic} did not appear");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads `topics` from the start until at least `expected` messages
/// arrived and every partition is at its end; panics after `timeout`.
pub fn consume(brokers: &str, topics: &[&str], expected: usize, timeout: Duration) -> Vec<Record> {
    let deadline = Instant::now() + timeout;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tidemark-tests")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut total = 0;
    for t in topics {
        let n = partitions(&c, t, deadline);
        total += n;
        for p in 0..n {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut at_end: std::collections::HashSet<(String, i32)> = Default::default();
    loop {
        if out.len() >= expected && at_end.len() as i32 == total {
            return out;
        }
        if Instant::now() > deadline {
            // Per partition: messages read, and the offsets they span.
            let mut spans: BTreeMap<(String, i32), (usize, i64, i64)> = BTreeMap::new();
            for r in &out {
                let e = spans
                    .entry((r.topic.clone(), r.partition))
                    .or_insert((0, i64::MAX, -1));
                e.0 += 1;
                e.1 = e.1.min(r.offset);
                e.2 = e.2.max(r.offset);
            }
            eprintln!(
                "read {} of {expected} messages from {topics:?} in {timeout:?}; per partition (count, first offset, last offset): {spans:?}",
                out.len()
            );
            return out;
        }
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // The topic isn't in the error; EOF of any topic's partition p.
                for t in topics {
                    at_end.insert((t.to_string(), p));
                }
                at_end.retain(|(t, q)| {
                    tpl.elements_for_topic(t)
                        .iter()
                        .any(|e| e.partition() == *q)
                });
            }
            Some(Err(e)) => panic!("consuming: {e}"),
            Some(Ok(m)) => {
                at_end.remove(&(m.topic().to_string(), m.partition()));
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
}

/// [`consume`] from async code (on a blocking thread).
pub async fn consume_owned(
    brokers: String,
    topics: Vec<String>,
    expected: usize,
    timeout: Duration,
) -> Vec<Record> {
    tokio::task::spawn_blocking(move || {
        let t: Vec<&str> = topics.iter().map(String::as_str).collect();
        consume(&brokers, &t, expected, timeout)
    })
    .await
    .unwrap()
}

/// Changes per key in topic order: key → [(op, value)], from Debezium JSON
/// records without schema (tombstones left out).
pub fn per_key(records: &[Record], field: &str) -> BTreeMap<String, Vec<(String, Value)>> {
    let mut out: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    let mut sorted: Vec<&Record> = records.iter().filter(|r| r.value.is_some()).collect();
    sorted.sort_by_key(|r| (r.topic.clone(), r.partition, r.offset));
    for r in sorted {
        let v = r.json();
        let op = v["op"].as_str().unwrap_or_default().to_string();
        let image = if op == "d" { &v["before"] } else { &v["after"] };
        out.entry(format!("{}/{}", r.topic, r.key_json()))
            .or_default()
            .push((op, image[field].clone()));
    }
    out
}
