//! The task runner: one source, the stage, one sink, and the offset commit.
//!
//! Only this module sequences write → acknowledge → commit:
//!
//! ```text
//! source ──(bounded channel)──► stage + sink.submit ··(ticket durable)··► committer (offset store)
//! ```
//!
//! A position reaches the offset store only after the sink returned from
//! `write` for every event up to it. On start the task resumes after the
//! greater of the stored position and the sink's own durable position.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{SinkConfig, SourceConfig, TaskConfig};
use crate::event::json::JsonEncoder;
use crate::event::{Batch, Position};
use crate::sink::{AnySink, JsonlSink, KafkaSink, SinkError};
use crate::source::mysql::MysqlSource;
use crate::source::postgres::PostgresSource;
use crate::source::{AnySource, SourceError};
use crate::stage::Stage;
use crate::stage::filter::TableFilter;
use crate::store::{OffsetStore, StoreError};

/// Batches queued between source and sink: memory holds about
/// `CHANNEL_BATCHES × max_batch_events` decoded events, plus the sink's
/// encoded groups (see `sink::writer`).
const CHANNEL_BATCHES: usize = 4;
/// Most events encoded into one group.
const MAX_WRITE_EVENTS: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task {task}: source: {source}")]
    Source {
        task: String,
        #[source]
        source: SourceError,
    },
    #[error("task {task}: sink: {source}")]
    Sink {
        task: String,
        #[source]
        source: SinkError,
    },
    #[error("task {task}: {source}")]
    Store {
        task: String,
        #[source]
        source: StoreError,
    },
    #[error("task {task}: {message}")]
    Config { task: String, message: String },
}

/// The later of two positions (the stored offset and the sink's own).
pub fn later(a: Option<Position>, b: Option<Position>) -> Result<Option<Position>, String> {
    match (a, b) {
        (Some(a), Some(b)) => match a.partial_cmp(&b) {
            Some(std::cmp::Ordering::Less) => Ok(Some(b)),
            Some(_) => Ok(Some(a)),
            None => Err(format!(
                "the stored offset {a} and the sink's position {b} come from different kinds of source; was the sink reused by another task?"
            )),
        },
        (a, b) => Ok(a.or(b)),
    }
}

/// Runs a task until `cancel`, then drains and commits. Returns the error
/// that stopped it otherwise.
pub async fn run(
    cfg: TaskConfig,
    store: Arc<dyn OffsetStore>,
    cancel: CancellationToken,
) -> Result<(), TaskError> {
    let task = cfg.id.clone();
    let cfg_err = |message: String| TaskError::Config {
        task: task.clone(),
        message,
    };
    let filter = TableFilter::new(&cfg.filter.include, &cfg.filter.exclude).map_err(&cfg_err)?;
    let encoder = JsonEncoder::new(cfg.format.clone(), task.clone(), task.clone());
    let mut sink = match &cfg.sink {
        SinkConfig::Jsonl(j) => {
            AnySink::Jsonl(JsonlSink::open(&j.path, encoder).await.map_err(|source| {
                TaskError::Sink {
                    task: task.clone(),
                    source,
                }
            })?)
        }
        SinkConfig::Kafka(k) => {
            let connector = match &cfg.source {
                SourceConfig::Postgres(_) => crate::event::Connector::Postgres,
                SourceConfig::Mysql(_) => crate::event::Connector::Mysql,
            };
            let sink = KafkaSink::open(k.as_ref().clone(), &task, connector, cfg.format.clone())
                .await
                .map_err(|e| TaskError::Sink {
                    task: task.clone(),
                    source: e.into(),
                })?;
            AnySink::Kafka(sink)
        }
    };
    let store_err = |source| TaskError::Store {
        task: task.clone(),
        source,
    };
    let (stored, reset) = {
        let store = store.clone();
        let t = task.clone();
        tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((store.load(&t)?, store.was_reset(&t)?))
        })
        .await
        .map_err(|e| cfg_err(format!("offset store task failed: {e}")))?
        .map_err(store_err)?
    };
    // After `offsets reset` the sink's own position is stale by intent.
    let sink_position = if reset { None } else { sink.durable_position() };
    let resume = later(stored.map(|c| c.position), sink_position).map_err(&cfg_err)?;
    info!(task = %task, resume = %resume.as_ref().map_or("(new task)".to_string(), |p| p.to_string()), "starting");

    let (tx, mut rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    let source_cancel = cancel.child_token();
    let source = match &cfg.source {
        SourceConfig::Mysql(m) => {
            AnySource::Mysql(MysqlSource::new(m.clone(), task.clone(), filter.clone()))
        }
        SourceConfig::Postgres(p) => AnySource::Postgres(PostgresSource::new(
            p.clone(),
            task.clone(),
            filter.clone(),
            cfg.filter.include.clone(),
        )),
    };
    let (committed_tx, committed_rx) = watch::channel::<Option<Position>>(None);
    let source_task =
        tokio::spawn(source.run(resume.clone(), tx, source_cancel.clone(), committed_rx));

    let (ack_tx, ack_rx) = watch::channel::<Option<Position>>(None);
    let committer = tokio::spawn(commit_loop(
        task.clone(),
        store.clone(),
        ack_rx,
        committed_tx,
    ));

    let mut stage = Stage::new(filter, cfg.ddl.clone());
    let mut batches: Vec<Batch> = Vec::new();
    // Submitted groups waiting to become durable: (ticket, end position).
    let mut pending: VecDeque<(u64, Position)> = VecDeque::new();
    let ack = |pending: &mut VecDeque<(u64, Position)>, durable: u64| {
        let mut last = None;
        while pending.front().is_some_and(|(t, _)| *t <= durable) {
            last = pending.pop_front().map(|(_, end)| end);
        }
        if let Some(end) = last {
            // Durable up to here: hand to the committer.
            ack_tx.send_replace(Some(end));
        }
    };
    let sink_result: Result<(), SinkError> = async {
        loop {
            tokio::select! {
                biased;
                durable = sink.durable(), if !pending.is_empty() => ack(&mut pending, durable?),
                first = rx.recv() => {
                    let Some(first) = first else { break };
                    batches.clear();
                    let mut events = first.events.len();
                    batches.push(first);
                    // Group commit: what is already queued goes in one write.
                    while events < MAX_WRITE_EVENTS {
                        match rx.try_recv() {
                            Ok(b) => {
                                events += b.events.len();
                                batches.push(b);
                            }
                            Err(_) => break,
                        }
                    }
                    for b in batches.iter_mut() {
                        stage.apply(b);
                    }
                    let ticket = sink.submit(&batches).await?;
                    if let Some(b) = batches.last() {
                        pending.push_back((ticket, b.end.clone()));
                    }
                    // Free the events now, not when the next batch arrives.
                    batches.clear();
                }
            }
        }
        let last = sink.flush().await?;
        ack(&mut pending, last);
        Ok(())
    }
    .await;
    if sink_result.is_err() {
        source_cancel.cancel();
    }
    drop(rx);
    drop(ack_tx);
    let source_result = source_task
        .await
        .unwrap_or_else(|e| Err(SourceError::Definite(format!("binlog reader crashed: {e}"))));
    let commit_result = committer.await.unwrap_or_else(|e| {
        Err(StoreError::Io(sled::Error::ReportableBug(format!(
            "committer crashed: {e}"
        ))))
    });

    sink_result.map_err(|source| TaskError::Sink {
        task: task.clone(),
        source,
    })?;
    commit_result.map_err(store_err)?;
    source_result.map_err(|source| TaskError::Source {
        task: task.clone(),
        source,
    })?;
    info!(task = %task, "stopped");
    Ok(())
}

/// Commits the latest acknowledged position, coalescing acks that arrive
/// while a commit is in progress; commits the last one before returning.
async fn commit_loop(
    task: String,
    store: Arc<dyn OffsetStore>,
    mut acks: watch::Receiver<Option<Position>>,
    committed_out: watch::Sender<Option<Position>>,
) -> Result<(), StoreError> {
    let mut committed: Option<Position> = None;
    loop {
        let closed = acks.changed().await.is_err();
        let latest = acks.borrow_and_update().clone();
        if let Some(p) = latest
            && committed.as_ref() != Some(&p)
        {
            let store = store.clone();
            let t = task.clone();
            let pc = p.clone();
            let r = tokio::task::spawn_blocking(move || store.commit(&t, &pc))
                .await
                .unwrap_or_else(|e| Err(StoreError::Io(sled::Error::ReportableBug(e.to_string()))));
            if let Err(e) = r {
                error!(task = %task, error = %e, "offset commit failed");
                return Err(e);
            }
            tracing::debug!(task = %task, position = %p, "offset committed");
            // Only now may the source release its log up to here.
            committed_out.send_replace(Some(p.clone()));
            committed = Some(p);
        }
        if closed {
            return Ok(());
        }
    }
}
