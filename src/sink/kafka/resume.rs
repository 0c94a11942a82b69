//! Exactly-once resume: the position of the last message in each partition.
//!
//! Every message carries its event's position in the `tidemark.position`
//! header (and `tidemark.part = 1` on a tombstone). Before the sink first
//! writes to a topic it reads the last message of each partition; a
//! message is then produced only if its (position, part) is above its
//! partition's last one.
//!
//! Why nothing is lost and nothing repeated (idempotent delivery):
//! 1. Events reach the sink in position order, and routing (topic,
//!    partition) is a function of the event, so each partition receives an
//!    increasing sequence of (position, part).
//! 2. The idempotent producer writes each partition in order without gaps
//!    (sequence numbers per partition, retries never reorder): after a crash
//!    a partition holds a *prefix* of what was produced to it.
//! 3. The runner resumes from the offset store, committed only once a
//!    group is durable in *every* partition: every event below the stored
//!    position is in Kafka, and events above it are delivered again.
//! 4. A redelivered message m for partition p with (position, part) <=
//!    last(p) was produced before last(p) by (1), so it is in the prefix by
//!    (2): skipping it repeats nothing. One above last(p) is not in the
//!    prefix: producing it loses nothing.
//!
//! So `durable_position()` returns `None`: the offset store is the safe
//! lower bound, and the per-partition skip removes the duplicates of the
//! crash window. What breaks it (changing a topic's partition count,
//! another producer writing the topics, retention deleting a partition's
//! last message, changed routing) is listed in the README.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::format::{H_PART, H_POSITION};
use crate::event::Position;

/// The resume key of a message: position and part (1 for a tombstone).
pub type Mark = (Position, u8);

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("reading the last messages of topic {topic}")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "topic {topic} partition {partition}: the last message (offset {offset}) has {problem}; exactly-once resume needs every message of the topics tidemark writes to come from tidemark: write to topics of their own (topic_prefix, topic)"
    )]
    Foreign {
        topic: String,
        partition: i32,
        offset: i64,
        problem: String,
    },
    #[error(
        "topic {topic}: no answer from the broker for the last message of partitions {partitions:?} within {secs} s"
    )]
    Timeout {
        topic: String,
        partitions: Vec<i32>,
        secs: u64,
    },
}

/// Reads the mark of the last message of each of `partitions` partitions of
/// `topic` (`None` for an empty partition). Blocking.
///
/// Reads from a little before the high watermark to the end of each
/// partition rather than at `high - 1` exactly: a transactional topic ends
/// with a control record, and some brokers (tansu) report the high
/// watermark of the last *batch*.
pub fn read_last(
    base: &ClientConfig,
    topic: &str,
    partitions: i32,
    read_committed: bool,
    timeout: Duration,
) -> Result<Vec<Option<Mark>>, ResumeError> {
    let kafka = |source| ResumeError::Kafka {
        topic: topic.to_string(),
        source,
    };
    let mut cfg = base.clone();
    cfg.set("group.id", "tidemark-resume")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        );
    let consumer: BaseConsumer = cfg.create().map_err(kafka)?;
    let mut out: Vec<Option<Mark>> = vec![None; partitions.max(0) as usize];
    // (partition, low watermark, high watermark, how far back to read)
    let mut todo: Vec<(i32, i64, i64, i64)> = Vec::new();
    for p in 0..partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(kafka)?;
        if hi > lo {
            todo.push((p, lo, hi, 1));
        }
    }
    let deadline = Instant::now() + timeout;
    while !todo.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for &(p, lo, hi, back) in &todo {
            tpl.add_partition_offset(topic, p, Offset::Offset((hi - back).max(lo)))
                .map_err(kafka)?;
        }
        consumer.assign(&tpl).map_err(kafka)?;
        let mut pending: HashMap<i32, Option<(i64, Mark)>> =
            todo.iter().map(|t| (t.0, None)).collect();
        let mut eof: Vec<i32> = Vec::new();
        while eof.len() < todo.len() {
            if Instant::now() > deadline {
                let mut missing: Vec<i32> = todo
                    .iter()
                    .map(|t| t.0)
                    .filter(|p| !eof.contains(p))
                    .collect();
                missing.sort_unstable();
                return Err(ResumeError::Timeout {
                    topic: topic.to_string(),
                    partitions: missing,
                    secs: timeout.as_secs(),
                });
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) if !eof.contains(&p) => eof.push(p),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(kafka(e)),
                Some(Ok(m)) => {
                    let mark = mark_of(&m).map_err(|problem| ResumeError::Foreign {
                        topic: topic.to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        problem,
                    })?;
                    let slot = pending.entry(m.partition()).or_insert(None);
                    if slot.as_ref().is_none_or(|(o, _)| m.offset() > *o) {
                        *slot = Some((m.offset(), mark));
                    }
                }
            }
        }
        let mut again = Vec::new();
        for (p, lo, hi, back) in todo {
            match pending.remove(&p).flatten() {
                Some((_, mark)) => out[p as usize] = Some(mark),
                // Nothing readable from there (control records, or
                // deleted by retention): look further back.
                None if hi - back > lo => again.push((p, lo, hi, back * 16)),
                None => {}
            }
        }
        todo = again;
    }
    Ok(out)
}

/// The mark in a message's headers.
fn mark_of<M: Message>(m: &M) -> Result<Mark, String> {
    let headers = m
        .headers()
        .ok_or("no headers (no tidemark.position header)")?;
    let mut position = None;
    let mut part = 0u8;
    for h in headers.iter() {
        match h.key {
            H_POSITION => {
                let text = h
                    .value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .ok_or("an unreadable tidemark.position header")?;
                position = Some(
                    text.parse::<Position>()
                        .map_err(|e| format!("a bad tidemark.position header ({e})"))?,
                );
            }
            H_PART => {
                part = h
                    .value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|t| t.parse().ok())
                    .ok_or("an unreadable tidemark.part header")?;
            }
            _ => {}
        }
    }
    Ok((position.ok_or("no tidemark.position header")?, part))
}

/// True when `(position, part)` is at or below `last`: already in the
/// partition. Positions of different source kinds are an error.
pub fn covered(last: &Mark, position: &Position, part: u8) -> Result<bool, String> {
    match position.partial_cmp(&last.0) {
        Some(std::cmp::Ordering::Less) => Ok(true),
        Some(std::cmp::Ordering::Equal) => Ok(part <= last.1),
        Some(std::cmp::Ordering::Greater) => Ok(false),
        None => Err(format!(
            "the topic's last message has position {} and this task's source writes {position}: was the topic written by another task?",
            last.0
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LsnPosition;

    fn lsn(c: u64, i: u64) -> Position {
        Position::Lsn(LsnPosition {
            commit_lsn: c,
            index: i,
        })
    }

    #[test]
    fn skip_rule() {
        let last = (lsn(100, 3), 0u8);
        assert!(covered(&last, &lsn(100, 2), 0).unwrap());
        assert!(covered(&last, &lsn(100, 3), 0).unwrap());
        // The tombstone after the last event was not written yet.
        assert!(!covered(&last, &lsn(100, 3), 1).unwrap());
        assert!(!covered(&last, &lsn(100, 4), 0).unwrap());
        assert!(!covered(&last, &lsn(101, 1), 0).unwrap());
        let tomb = (lsn(100, 3), 1u8);
        assert!(covered(&tomb, &lsn(100, 3), 1).unwrap());
        let other = "binlog:f.000001:4:10:0".parse::<Position>().unwrap();
        assert!(
            covered(&last, &other, 0)
                .unwrap_err()
                .contains("another task")
        );
    }

    #[test]
    fn marks_from_headers() {
        use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
        let msg = |h: OwnedHeaders| {
            OwnedMessage::new(
                None,
                None,
                "t".into(),
                Timestamp::NotAvailable,
                0,
                7,
                Some(h),
            )
        };
        let h = OwnedHeaders::new()
            .insert(Header {
                key: H_POSITION,
                value: Some("lsn:0/64:3"),
            })
            .insert(Header {
                key: H_PART,
                value: Some("1"),
            });
        assert_eq!(mark_of(&msg(h)).unwrap(), (lsn(100, 3), 1));
        let h = OwnedHeaders::new().insert(Header {
            key: "other",
            value: Some("x"),
        });
        assert!(
            mark_of(&msg(h))
                .unwrap_err()
                .contains("no tidemark.position")
        );
        let h = OwnedHeaders::new().insert(Header {
            key: H_POSITION,
            value: Some("garbage"),
        });
        assert!(
            mark_of(&msg(h))
                .unwrap_err()
                .contains("bad tidemark.position")
        );
    }
}
