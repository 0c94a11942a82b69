//! The runner: the one place that sequences
//! write → durable → commit → release.
//!
//! ```text
//! source.next ─► stage ─► sink.submit ··(ticket durable)··► store.commit ─► source.release
//! ```
//!
//! - A position reaches the offset store only after the sink reported the
//!   ticket of every group up to it durable.
//! - The source may release its log up to a position only after the store
//!   committed it.
//! - One commit is in flight at a time; acknowledgements that arrive
//!   meanwhile are coalesced into the next.
//! - Any failure (source, sink, store) ends the run at once with that
//!   error, so the supervisor sees it: nothing keeps writing while commits
//!   fail, nothing stalls silently.
//! - On stop (pause, stop, shutdown) the source stops reading, everything
//!   submitted is flushed, made durable and committed, then the run
//!   returns. The caller bounds how long that may take.

use std::collections::VecDeque;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::TaskError;
use super::progress::{Pace, Progress};
use crate::event::{Batch, Position};
use crate::sink::Sink;
use crate::source::Source;
use crate::stage::Stage;
use crate::store::{OffsetStore, StoreFuture};

/// Most events encoded into one group.
pub const MAX_WRITE_EVENTS: usize = 4_096;

/// How a run ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// `stop` was cancelled: everything read was drained and committed.
    Stopped,
    /// The source ended by itself (a one-shot task finished).
    Finished,
}

/// A submitted group waiting to become durable.
struct Pending {
    ticket: u64,
    end: Position,
    events: u64,
    /// Commit time of the group's last event (ms), 0 if it has none.
    commit_ms: i64,
}

/// The commit in flight.
struct Commit<'a> {
    pos: Position,
    fut: StoreFuture<'a, ()>,
}

/// What a run needs besides its source and sink.
pub struct RunContext<'a> {
    pub task: &'a str,
    pub store: &'a dyn OffsetStore,
    pub progress: &'a Progress,
    pub stage: &'a mut Stage,
    /// Cancelled to stop (pause, stop, shutdown): the run drains.
    pub stop: CancellationToken,
}

/// Runs until `ctx.stop`, the source's end, or the first error.
pub async fn run<S: Source, K: Sink>(
    source: &mut S,
    sink: &mut K,
    ctx: RunContext<'_>,
) -> Result<RunEnd, TaskError> {
    let mut r = Runner {
        task: ctx.task,
        store: ctx.store,
        progress: ctx.progress,
        pending: VecDeque::new(),
        acked: None,
        commit: None,
        committed: None,
    };
    let stage = ctx.stage;
    // Processing rules run on their own thread, a group ahead of the
    // sink's encoding (the selection alone stays inline: it is cheap).
    let (stage_tx, mut stage_rx) = match stage.has_rules() {
        true => {
            let w = StageWorker::start(stage, r.progress.rules.clone());
            (Some(w.tx), Some(w.rx))
        }
        false => (None, None),
    };
    // Groups handed to the worker and not yet back.
    let mut in_stage = 0usize;
    let source_label = source.label();
    let source_err = |e| TaskError::Source {
        what: source_label,
        source: e,
    };
    let sink_label = sink.label();
    let sink_err = |e| TaskError::Sink {
        what: sink_label,
        source: e,
    };
    let mut batches: Vec<Batch> = Vec::new();
    // The source's end (or failure) seen while filling a group: acted on
    // once that group is submitted.
    let mut held: Option<Result<RunEnd, crate::source::SourceError>> = None;
    // Flow control (`throttle`): a group taken waits, read but not yet
    // submitted, until it is paid for (`waiting`: its events read).
    let mut pace = Pace::default();
    let mut waiting: Option<u64> = None;
    let end = loop {
        if let Some(events) = waiting
            && pace.ready()
        {
            waiting = None;
            let ticket = sink.submit(&batches).await.map_err(sink_err)?;
            r.progress.on_submit(&batches, events, sink.bytes_written());
            if let Some(b) = batches.last() {
                let commit_ms = batches
                    .iter()
                    .rev()
                    .find_map(|b| b.events.last())
                    .map_or(0, |ev| ev.tx.commit_ts_ms.max(1));
                r.pending.push_back(Pending {
                    ticket,
                    end: b.end.clone(),
                    events: batches.iter().map(|b| b.events.len() as u64).sum(),
                    commit_ms,
                });
            }
            // Free the events now, not when the next batch arrives.
            batches.clear();
        }
        if waiting.is_none()
            && in_stage == 0
            && let Some(h) = held.take()
        {
            break h.map_err(source_err);
        }
        tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => break Ok(RunEnd::Stopped),
            done = wait_commit(&mut r.commit) => {
                done.map_err(TaskError::Store)?;
                r.committed(source);
            }
            durable = sink.durable(), if !r.pending.is_empty() => {
                let ticket = durable.map_err(sink_err)?;
                r.durable(ticket);
                r.progress.add_conflicts(sink.take_conflicts());
            }
            _ = pace.wait(), if waiting.is_some() => {}
            staged = staged_group(&mut stage_rx), if waiting.is_none() && in_stage > 0 => {
                in_stage -= 1;
                match staged {
                    Some((group, Ok(()), events)) => {
                        batches = group;
                        pace.account(&r.progress.throttle, &batches, events);
                        waiting = Some(events);
                    }
                    Some((_, Err(e), _)) => break Err(TaskError::Rules(e)),
                    None => break Err(TaskError::Rules("the processing rules' thread ended".into())),
                }
            }
            next = source.next(), if waiting.is_none() && held.is_none() && in_stage < STAGE_AHEAD => {
                let first = match next {
                    Ok(Some(b)) => b,
                    // Groups still with the rules' thread go first.
                    Ok(None) if in_stage > 0 => {
                        held = Some(Ok(RunEnd::Finished));
                        continue;
                    }
                    Err(e) if in_stage > 0 => {
                        held = Some(Err(e));
                        continue;
                    }
                    Ok(None) => break Ok(RunEnd::Finished),
                    Err(e) => break Err(source_err(e)),
                };
                batches.clear();
                let mut events = first.events.len();
                batches.push(first);
                // Group commit: what is already queued goes in one write
                // (under flow control, a quarter second's worth at most).
                let cap = pace.group_cap(&r.progress.throttle, MAX_WRITE_EVENTS);
                while events < cap {
                    match source.next().now_or_never() {
                        Some(Ok(Some(b))) => {
                            events += b.events.len();
                            batches.push(b);
                        }
                        Some(Ok(None)) => {
                            held = Some(Ok(RunEnd::Finished));
                            break;
                        }
                        Some(Err(e)) => {
                            held = Some(Err(e));
                            break;
                        }
                        None => break,
                    }
                }
                r.progress.on_read(&batches);
                if let Some(tx) = &stage_tx {
                    let group = std::mem::take(&mut batches);
                    if tx.send((group, events as u64)).is_err() {
                        break Err(TaskError::Rules("the processing rules' thread ended".into()));
                    }
                    in_stage += 1;
                    continue;
                }
                if let Some(e) = batches
                    .iter_mut()
                    .find_map(|b| stage.apply(b).err())
                {
                    // Nothing of this group goes on: the earlier groups
                    // are drained and committed, and the resume reads it
                    // again.
                    batches.clear();
                    break Err(TaskError::Rules(e));
                }
                pace.account(&r.progress.throttle, &batches, events as u64);
                waiting = Some(events as u64);
            }
        }
        r.start_commit();
    };
    // Stop taking batches: what is still queued is read again next time.
    // Drain first (the source still releases what gets committed), then
    // close the source.
    match end {
        Ok(how) => {
            r.drain(sink, source)
                .await
                .map_err(|e| e.into_task(sink_label))?;
            source.close().await.map_err(source_err)?;
            info!(task = %ctx.task, end = ?how, committed = %r.committed.as_ref().map_or("(none)".to_string(), |p| p.to_string()), "drained");
            Ok(how)
        }
        Err(e) => {
            // What the sink accepted is still made durable and committed, so
            // the restart repeats as little as possible; the source's error
            // is the one reported.
            if let TaskError::Source { .. } | TaskError::Rules(_) = e
                && let Err(drain) = r.drain(sink, source).await
            {
                debug!(task = %ctx.task, error = %crate::error::chain(&drain.into_task(sink_label)), "drain after a source failure failed");
            }
            let _ = source.close().await;
            Err(e)
        }
    }
}

/// The next group back from the rules' thread (never, without one).
async fn staged_group(rx: &mut Option<tokio::sync::mpsc::Receiver<Staged>>) -> Option<Staged> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A staged group: the batches, the stage's verdict, the events read.
type Staged = (Vec<Batch>, Result<(), String>, u64);

/// Groups the rules' thread may hold ahead of the sink.
const STAGE_AHEAD: usize = 2;

/// A group with the events read for it, as the stage thread takes it.
type Group = (Vec<Batch>, u64);

/// The stage on its own thread: groups in, staged groups out, in order.
struct StageWorker {
    tx: std::sync::mpsc::SyncSender<Group>,
    rx: tokio::sync::mpsc::Receiver<Staged>,
}

impl StageWorker {
    fn start(stage: &mut Stage, stats: std::sync::Arc<super::progress::RulesStats>) -> StageWorker {
        // The run owns its stage: the worker takes it for the run's length.
        let mut stage = std::mem::replace(
            stage,
            Stage::new(
                crate::select::TableFilter::default(),
                crate::config::DdlConfig::default(),
            ),
        );
        let (tx, in_rx) = std::sync::mpsc::sync_channel::<Group>(STAGE_AHEAD);
        let (out_tx, rx) = tokio::sync::mpsc::channel(STAGE_AHEAD);
        let spawned = std::thread::Builder::new()
            .name("stage".into())
            .spawn(move || {
                // Filter errors of this run already added to the task's count.
                let mut counted = 0;
                while let Ok((mut group, events)) = in_rx.recv() {
                    let r = group
                        .iter_mut()
                        .find_map(|b| stage.apply(b).err())
                        .map_or(Ok(()), Err);
                    if r.is_err() {
                        group.clear();
                    }
                    let groups = stage.merge_groups();
                    if !groups.is_empty() {
                        *stats.merge_groups.lock().unwrap_or_else(|p| p.into_inner()) = groups;
                    }
                    let errors = stage.rule_errors();
                    stats
                        .filter_errors
                        .fetch_add(errors - counted, std::sync::atomic::Ordering::Relaxed);
                    counted = errors;
                    let failed = r.is_err();
                    if out_tx.blocking_send((group, r, events)).is_err() || failed {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            // No thread: the receiver reports the end on first use.
            tracing::error!(error = %e, "starting the processing rules' thread failed");
        }
        StageWorker { tx, rx }
    }
}

struct Runner<'a> {
    task: &'a str,
    store: &'a dyn OffsetStore,
    progress: &'a Progress,
    pending: VecDeque<Pending>,
    /// Durable and not yet committed.
    acked: Option<Position>,
    commit: Option<Commit<'a>>,
    committed: Option<Position>,
}

enum DrainError {
    Sink(crate::sink::SinkError),
    Store(crate::store::StoreError),
}

impl DrainError {
    fn into_task(self, sink: &'static str) -> TaskError {
        match self {
            DrainError::Sink(source) => TaskError::Sink { what: sink, source },
            DrainError::Store(e) => TaskError::Store(e),
        }
    }
}

impl<'a> Runner<'a> {
    /// Every group with a ticket up to `ticket` is durable.
    fn durable(&mut self, ticket: u64) {
        let mut last: Option<Position> = None;
        let (mut groups, mut events, mut commit_ms) = (0u64, 0u64, 0i64);
        while self.pending.front().is_some_and(|p| p.ticket <= ticket) {
            if let Some(p) = self.pending.pop_front() {
                groups += 1;
                events += p.events;
                if p.commit_ms > 0 {
                    commit_ms = p.commit_ms;
                }
                last = Some(p.end);
            }
        }
        if let Some(end) = last {
            self.progress.on_durable(&end, groups, events, commit_ms);
            self.acked = Some(end);
        }
    }

    /// Starts committing the latest acknowledged position, unless a commit
    /// is in flight (it is picked up when that one finishes).
    fn start_commit(&mut self) {
        if self.commit.is_some() {
            return;
        }
        if let Some(pos) = self.acked.take() {
            let fut = self.store.commit(self.task, &pos);
            self.commit = Some(Commit { pos, fut });
        }
    }

    /// The commit in flight finished: only now may the source release.
    fn committed<S: Source>(&mut self, source: &mut S) {
        if let Some(c) = self.commit.take() {
            debug!(task = %self.task, position = %c.pos, "offset committed");
            source.release(&c.pos);
            self.progress.on_commit(&c.pos);
            self.committed = Some(c.pos);
        }
    }

    /// Flushes the sink, commits everything durable and releases it.
    async fn drain<K: Sink, S: Source>(
        &mut self,
        sink: &mut K,
        source: &mut S,
    ) -> Result<(), DrainError> {
        if !self.pending.is_empty() {
            let last = sink.flush().await.map_err(DrainError::Sink)?;
            self.durable(last);
        }
        // The commit in flight, then the last acknowledged position.
        loop {
            if let Some(c) = self.commit.as_mut() {
                c.fut.as_mut().await.map_err(DrainError::Store)?;
                self.committed(source);
            }
            self.start_commit();
            if self.commit.is_none() {
                break;
            }
        }
        sink.close().await;
        Ok(())
    }
}

/// Waits for the commit in flight; never resolves when there is none.
async fn wait_commit(c: &mut Option<Commit<'_>>) -> Result<(), crate::store::StoreError> {
    match c {
        Some(c) => c.fut.as_mut().await,
        None => std::future::pending().await,
    }
}

use futures_util::FutureExt;
