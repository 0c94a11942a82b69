//! Delivery tracking: which tickets are durable.
//!
//! librdkafka reports each message's fate on its polling thread
//! ([`Ctx::delivery`]); the tracker counts every ticket's messages down and
//! advances the durable ticket over the prefix of groups that are sealed
//! (fully submitted) and fully acknowledged. The async side waits on
//! [`Tracker::wait_delivery`], woken by each report.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Headers, Message};
use rdkafka::producer::ProducerContext;

use super::KafkaSinkError;
use super::format::{H_OP, H_PART, H_POSITION, H_TABLE, Msg};
use crate::event::Position;

#[derive(Debug, Default)]
struct Group {
    outstanding: u64,
    sealed: bool,
}

/// The first delivery failure: the task stops with it.
#[derive(Debug, Clone)]
struct Failure {
    topic: String,
    position: String,
    size: usize,
    error: KafkaError,
    oversized: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Ticket of `groups[0]`.
    base: u64,
    groups: VecDeque<Group>,
    durable: u64,
    in_flight: u64,
    failure: Option<Failure>,
    /// Messages the broker refused as too large, to be dead-lettered.
    rejected: Vec<(u64, Msg, String)>,
}

pub struct Tracker {
    inner: Mutex<Inner>,
    notify: tokio::sync::Notify,
    /// Transactional mode: only commits make groups durable.
    pub transactional: std::sync::atomic::AtomicBool,
    /// Dead-letter broker rejections instead of failing.
    pub dead_letter: std::sync::atomic::AtomicBool,
    /// `max_message_bytes`, for error messages.
    pub limit: std::sync::atomic::AtomicU64,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker {
            inner: Mutex::new(Inner {
                base: 1,
                ..Default::default()
            }),
            notify: tokio::sync::Notify::new(),
            transactional: false.into(),
            dead_letter: false.into(),
            limit: 0.into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent counters.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts group `ticket` (tickets come in order).
    pub fn open(&self, ticket: u64) {
        let mut g = self.lock();
        if g.groups.is_empty() {
            g.base = ticket;
        }
        g.groups.push_back(Group::default());
    }

    fn with_group(&self, ticket: u64, f: impl FnOnce(&mut Group)) {
        let mut g = self.lock();
        if let Some(i) = ticket.checked_sub(g.base)
            && let Some(grp) = g.groups.get_mut(i as usize)
        {
            f(grp);
        }
    }

    /// A message of `ticket` was handed to librdkafka.
    pub fn sent(&self, ticket: u64) {
        self.with_group(ticket, |g| g.outstanding += 1);
        self.lock().in_flight += 1;
    }

    /// librdkafka refused it at once: not in flight after all.
    pub fn unsent(&self, ticket: u64) {
        self.with_group(ticket, |g| g.outstanding = g.outstanding.saturating_sub(1));
        let mut g = self.lock();
        g.in_flight = g.in_flight.saturating_sub(1);
    }

    /// Every message of `ticket` was handed over.
    pub fn seal(&self, ticket: u64) {
        self.with_group(ticket, |g| g.sealed = true);
        self.advance();
    }

    /// A refused message of `ticket` was replaced (dead letter).
    pub fn settle(&self, ticket: u64) {
        self.with_group(ticket, |g| g.outstanding = g.outstanding.saturating_sub(1));
        self.advance();
    }

    /// Transactional mode: `ticket` and everything before it committed.
    pub fn committed(&self, ticket: u64) {
        let mut g = self.lock();
        while g.base <= ticket && !g.groups.is_empty() {
            g.groups.pop_front();
            g.base += 1;
        }
        g.durable = g.durable.max(ticket);
        drop(g);
        self.notify.notify_one();
    }

    fn advance(&self) {
        if self
            .transactional
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let mut g = self.lock();
        let mut moved = false;
        while g
            .groups
            .front()
            .is_some_and(|f| f.sealed && f.outstanding == 0)
        {
            g.groups.pop_front();
            g.durable = g.base;
            g.base += 1;
            moved = true;
        }
        drop(g);
        if moved {
            self.notify.notify_one();
        }
    }

    pub fn durable(&self) -> u64 {
        self.lock().durable
    }

    /// The delivery failure that stops the task, if any.
    pub fn check(&self) -> Result<(), KafkaSinkError> {
        let g = self.lock();
        let Some(f) = g.failure.clone() else {
            return Ok(());
        };
        drop(g);
        Err(if f.oversized {
            KafkaSinkError::Oversized {
                topic: f.topic,
                size: f.size,
                limit: self.limit.load(std::sync::atomic::Ordering::Relaxed),
                position: f.position,
                detail: format!(" (the broker refused it: {})", f.error),
            }
        } else {
            KafkaSinkError::Delivery {
                topic: f.topic,
                position: f.position,
                source: Box::new(f.error),
            }
        })
    }

    pub fn take_rejected(&self) -> Vec<(u64, Msg, String)> {
        std::mem::take(&mut self.lock().rejected)
    }

    /// Waits for a delivery report (or 100 ms: a report between the
    /// caller's check and this wait is not lost, only late).
    pub async fn wait_delivery(&self) {
        let _ = tokio::time::timeout(Duration::from_millis(100), self.notify.notified()).await;
    }

    /// Waits while `cap` messages are in flight.
    pub async fn wait_capacity(&self, cap: u64) -> Result<(), KafkaSinkError> {
        loop {
            self.check()?;
            if self.lock().in_flight < cap {
                return Ok(());
            }
            self.wait_delivery().await;
        }
    }

    fn report(&self, ticket: u64, result: &DeliveryResult<'_>) {
        let mut g = self.lock();
        g.in_flight = g.in_flight.saturating_sub(1);
        match result {
            Ok(_) => {
                drop(g);
                self.with_group(ticket, |grp| {
                    grp.outstanding = grp.outstanding.saturating_sub(1)
                });
                self.advance();
            }
            Err((e, m)) => {
                let too_large =
                    e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge);
                let msg = rebuild(m);
                if too_large
                    && self.dead_letter.load(std::sync::atomic::Ordering::Relaxed)
                    && let Some(msg) = msg
                {
                    g.rejected
                        .push((ticket, msg, format!(" (the broker refused it: {e})")));
                } else if g.failure.is_none() {
                    g.failure = Some(Failure {
                        topic: m.topic().to_string(),
                        position: header(m, H_POSITION).unwrap_or_default(),
                        size: m.payload_len() + m.key().map_or(0, <[u8]>::len),
                        error: e.clone(),
                        oversized: too_large,
                    });
                }
            }
        }
        self.notify.notify_one();
    }
}

fn header<M: Message>(m: &M, key: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The message a delivery report is about, rebuilt from its headers.
fn rebuild<M: Message>(m: &M) -> Option<Msg> {
    let position: Position = header(m, H_POSITION)?.parse().ok()?;
    let op = match header(m, H_OP).as_deref() {
        Some("c") => "c",
        Some("u") => "u",
        Some("d") => "d",
        Some("r") => "r",
        Some("t") => "t",
        Some("ddl") => "ddl",
        Some("begin") => "begin",
        Some("end") => "end",
        _ => "?",
    };
    Some(Msg {
        topic: m.topic().into(),
        key: m.key().map(<[u8]>::to_vec),
        hash_key: None,
        value: m.payload().map(<[u8]>::to_vec),
        position,
        part: header(m, H_PART).and_then(|p| p.parse().ok()).unwrap_or(0),
        op,
        table: header(m, H_TABLE),
    })
}

/// librdkafka's callbacks: delivery reports and logs.
pub struct Ctx {
    pub tracker: Arc<Tracker>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transport errors while a broker is away are retried by librdkafka.
        tracing::warn!(error = %error, "librdkafka: {reason}");
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        self.tracker.report(ticket as u64, result);
    }
}
