//! PostgreSQL source: logical replication through a slot with the built-in
//! `pgoutput` plugin (PostgreSQL 12 and later).
//!
//! - `connect.rs`: the SQL connection (tokio-postgres) and the replication
//!   connection (pgwire-replication), with pinned session settings and TLS;
//! - `setup.rs`: prechecks, publication and slot, error classification;
//! - `pgoutput.rs`: the pure message decoder; `types.rs`: value decoding;
//! - `stream.rs`: the state machine (messages → events, positions, resume);
//! - `spill.rs`: streamed in-progress transactions on disk;
//! - `ack.rs`: what the slot's `confirmed_flush_lsn` may advance to;
//! - `catalog.rs`: user types and key columns from the catalog.
//!
//! On PostgreSQL 14+ the stream uses protocol version 2 with `streaming
//! 'on'`: a transaction larger than the server's `logical_decoding_work_mem`
//! arrives in chunks before it commits; they go to a spill file and are
//! emitted, in batches, once Stream Commit arrives. Older servers (or
//! `streaming = false`) use protocol version 1, where the server spills and
//! sends the transaction after its commit; either way memory stays bounded,
//! since a transaction's events go out in batches as they are read.
//!
//! Acknowledgement: the task's `committed` channel carries positions once
//! the offset store holds them; only then does the confirmed position (the
//! standby status update's flush LSN) pass a transaction's end. On an idle
//! or filtered-out database the server's keepalives carry its WAL position,
//! which is confirmed once nothing read is waiting (see `ack.rs`): the
//! walsender sends a keepalive each time it catches up with new WAL while
//! the confirmed position is behind, so the slot follows WAL written by
//! other databases too, and the server can recycle it.

pub mod ack;
pub mod catalog;
pub mod connect;
pub mod pgoutput;
pub mod setup;
pub mod spill;
pub mod stream;
pub mod types;

use std::time::Duration;

use futures_util::FutureExt;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio::sync::watch;
use tracing::{debug, info};

use super::{ReaderContext, SourceError};
use crate::config::PostgresSourceConfig;
use crate::event::position::format_lsn;
use crate::event::{LsnPosition, Position};
use crate::select::TableFilter;
use ack::AckTracker;
use pgoutput::{LogicalMessage, PG_EPOCH_UNIX_MICROS, StreamCommit};
use spill::Spill;
use stream::{StreamError, WalDecoder};

pub use setup::drop_slot;

/// A task's PostgreSQL source: one slot, one publication, one database.
pub struct PostgresSource {
    cfg: PostgresSourceConfig,
    task: String,
    filter: TableFilter,
    /// `filter.include`, for creating the publication.
    include: Vec<String>,
}

impl PostgresSource {
    /// `include`: the task's `filter.include` patterns, for creating the
    /// publication; `filter` selects the tables whose changes are emitted.
    pub fn new(
        cfg: PostgresSourceConfig,
        task: String,
        filter: TableFilter,
        include: Vec<String>,
    ) -> Self {
        PostgresSource {
            cfg,
            task,
            filter,
            include,
        }
    }

    /// Reads the WAL from after `ctx.resume` until `ctx.cancel`, sending
    /// batches to `ctx.out`; confirms to the server what the runner
    /// released. Returns the first error: the supervisor decides whether
    /// to restart.
    pub async fn read(self, mut ctx: ReaderContext) -> Result<(), SourceError> {
        let mut resume = match ctx.resume.as_ref().map(Position::stream_position) {
            None => None,
            Some(Position::Lsn(l)) => Some(*l),
            Some(p) => {
                return Err(SourceError::definite(format!(
                    "the stored position of task {} is a binlog position ({p}), but its source is PostgreSQL: the task id was reused for a different source; reset it with `tidemark offsets reset`",
                    self.task
                )));
            }
        };
        let mut ack = AckTracker::new(resume);
        let mut released = ctx.released.clone();
        self.session(&mut resume, &mut ctx, &mut released, &mut ack)
            .await
    }

    async fn session(
        &self,
        resume: &mut Option<LsnPosition>,
        ctx: &mut ReaderContext,
        committed: &mut watch::Receiver<Option<Position>>,
        ack: &mut AckTracker,
    ) -> Result<(), SourceError> {
        let target = connect::Target::parse(&self.cfg.url)?;
        super::resolve(&target.host, target.port).await?;
        let app = setup::application_name(&self.task);
        let client = connect::sql(&target, &self.cfg.tls, &app, "tasks.source.tls").await?;
        let info = setup::precheck(&client, &target).await?;
        setup::ensure_publication(
            &client,
            &self.cfg,
            &self.include,
            &self.filter,
            &info,
            &target,
        )
        .await?;
        let slot =
            setup::ensure_slot(&client, &self.cfg, &self.task, &target, resume.is_some()).await?;
        // The stream starts here: what committed before was delivered by
        // an earlier run, or (a new slot) is before the stream. A snapshot
        // reads its chunks only from now on, so that none reflects a point
        // the stream doesn't continue from.
        ctx.read_to.send_if_modified(|p| {
            let start = Position::Lsn(LsnPosition {
                commit_lsn: slot.confirmed_flush,
                index: 0,
            });
            let newer = p
                .as_ref()
                .is_none_or(|c| c.partial_cmp(&start).is_some_and(|o| o.is_lt()));
            if newer {
                *p = Some(start);
            }
            newer
        });
        let spill_dir = self
            .cfg
            .spill_dir
            .clone()
            .unwrap_or_else(|| self.cfg.state_dir.join("spill"));
        let spill = Spill::open(&spill_dir).map_err(|e| spill_err(&spill_dir, e))?;

        let streaming = self.cfg.streaming && info.streams();
        let status = Duration::from_secs(self.cfg.status_interval_secs);
        let rcfg = connect::replication(
            &target,
            &self.cfg.tls,
            &self.cfg.slot,
            &self.cfg.publication,
        )
        .with_protocol_version(if streaming { 2 } else { 1 })
        .with_streaming(streaming)
        .with_messages(false)
        .with_start_lsn(Lsn(0))
        .with_ack_lsn(Lsn(slot.confirmed_flush))
        .with_status_interval(status)
        // Idle, the client asks for a keepalive at every wakeup: a snapshot
        // chunk waits for the stream to have read up to its point, which
        // a quiet stream only tells through keepalives.
        .with_wakeup_interval(status.min(Duration::from_secs(1)))
        .with_buffer_size(1024)
        .with_application_name(app);
        let mut repl = ReplicationClient::connect_gated(rcfg)
            .await
            .map_err(|e| setup::classify_stream(&e))?;
        repl.start().await.map_err(|e| setup::classify_stream(&e))?;
        match tokio::time::timeout(Duration::from_secs(30), repl.wait_started()).await {
            Err(_) => {
                return Err(SourceError::transient(
                    "the server did not start replication within 30 s",
                ));
            }
            Ok(Err(e)) if e.sqlstate() == Some("55006") => {
                let pid = active_pid(&client, &self.cfg.slot).await.unwrap_or(0);
                return Err(setup::slot_in_use(&client, &self.cfg.slot, pid, &self.task).await);
            }
            Ok(r) => r.map_err(|e| {
                setup::stream_error(&e, &self.task, &self.cfg.slot, &self.cfg.publication)
            })?,
        }
        ack.reset_session();
        ack.start_at(slot.confirmed_flush);
        info!(
            task = %self.task,
            server = %info.version,
            slot = %self.cfg.slot,
            publication = %self.cfg.publication,
            protocol = if streaming { 2 } else { 1 },
            confirmed_flush = %format_lsn(slot.confirmed_flush),
            resume = %resume.map_or("(none)".to_string(), |r| Position::Lsn(r).to_string()),
            "reading WAL"
        );
        let mut s = Session {
            task: &self.task,
            slot: &self.cfg.slot,
            publication: &self.cfg.publication,
            max_batch: self.cfg.max_batch_events,
            client,
            repl,
            decoder: {
                let mut d = WalDecoder::new(target.database.clone(), self.filter.clone(), *resume);
                d.set_exclude_replicated(self.cfg.exclude_replicated);
                d
            },
            spill,
            excluded_streams: std::collections::HashSet::new(),
            ack,
            resume,
            ctx,
            confirmed_sent: slot.confirmed_flush,
            batch_started: None,
            server_timeout: Duration::from_secs(self.cfg.server_timeout_secs),
            last_heard: tokio::time::Instant::now(),
            seen_to: 0,
        };
        let r = s.run(committed).await;
        s.repl.stop();
        r
    }
}

async fn active_pid(client: &tokio_postgres::Client, slot: &str) -> Option<i32> {
    client
        .query_opt(
            "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get(0).ok())
}

/// One replication session's state.
struct Session<'a> {
    task: &'a str,
    slot: &'a str,
    publication: &'a str,
    max_batch: usize,
    client: tokio_postgres::Client,
    repl: ReplicationClient,
    decoder: WalDecoder,
    spill: Spill,
    /// Streamed transactions whose origin `exclude_replicated` leaves out.
    excluded_streams: std::collections::HashSet<u32>,
    ack: &'a mut AckTracker,
    resume: &'a mut Option<LsnPosition>,
    ctx: &'a ReaderContext,
    /// The LSN last handed to the replication client as flushed.
    confirmed_sent: u64,
    /// When the first change of the pending batch was read.
    batch_started: Option<tokio::time::Instant>,
    /// Longest the server may stay silent: idle, the client asks for a
    /// reply (a keepalive) at every status interval, so a live server is
    /// never silent for long.
    server_timeout: Duration,
    /// When the server last sent anything.
    last_heard: tokio::time::Instant,
    /// Every transaction committing before this LSN was read: the end of
    /// the last commit record, or the WAL position of the last keepalive.
    seen_to: u64,
}

/// Longest a change waits for more to fill its batch: bounds the latency
/// added to a quiet stream, while a backlog goes out in full batches.
const LINGER: Duration = Duration::from_millis(10);

type Received = Result<Option<ReplicationEvent>, pgwire_replication::PgWireError>;

impl Session<'_> {
    async fn run(
        &mut self,
        committed: &mut watch::Receiver<Option<Position>>,
    ) -> Result<(), SourceError> {
        let mut committed_open = true;
        let mut ready: Option<Received> = None;
        loop {
            let received = match ready.take() {
                Some(r) => r,
                None if self.lingers() => {
                    // The stream paused with a part batch pending: give it
                    // a moment to go on, so that a backlog (which arrives
                    // in socket-sized bursts) goes out in full batches
                    // rather than one small, fsynced write per burst.
                    let deadline =
                        self.batch_started.unwrap_or_else(tokio::time::Instant::now) + LINGER;
                    match tokio::time::timeout_at(deadline, self.repl.recv()).await {
                        Ok(r) => r,
                        Err(_) => {
                            self.batch_started = None;
                            continue;
                        }
                    }
                }
                None => {
                    self.flush().await?;
                    self.confirm();
                    if self.seen_to > 0
                        && self.decoder.is_drained()
                        && !self.decoder.in_transaction()
                    {
                        self.ctx.read_to.send_if_modified(|p| {
                            let next = Position::Lsn(LsnPosition {
                                commit_lsn: self.seen_to,
                                index: 0,
                            });
                            let moved = p.as_ref() != Some(&next);
                            *p = Some(next);
                            moved
                        });
                    }
                    let silent_until = self.last_heard + self.server_timeout;
                    tokio::select! {
                        biased;
                        _ = self.ctx.cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep_until(silent_until) => {
                            return Err(SourceError::transient(format!(
                                "the server sent nothing for {} s, not even a keepalive it was asked for (source.server_timeout_secs): the walsender or the network path is stuck; reconnecting",
                                self.server_timeout.as_secs()
                            )));
                        }
                        changed = committed.changed(), if committed_open => {
                            match changed {
                                Ok(()) => {
                                    if let Some(p) = committed.borrow_and_update().clone() {
                                        self.ack.committed(&p);
                                    }
                                }
                                Err(_) => committed_open = false,
                            }
                            continue;
                        }
                        r = self.repl.recv() => r,
                    }
                }
            };
            let event = received
                .map_err(|e| self.stream_error(e))?
                .ok_or_else(|| SourceError::transient("the server ended the replication stream"))?;
            self.last_heard = tokio::time::Instant::now();
            self.on_event(event).await?;
            if self.decoder.pending_events() >= self.max_batch {
                self.flush().await?;
            } else if self.batch_started.is_none() && !self.decoder.is_drained() {
                self.batch_started = Some(tokio::time::Instant::now());
            }
            if self.ctx.cancel.is_cancelled() {
                return Ok(());
            }
            // Under a steady stream the loop may not wait for a while:
            // take committed positions as they come.
            if committed_open && committed.has_changed().unwrap_or(false) {
                if let Some(p) = committed.borrow_and_update().clone() {
                    self.ack.committed(&p);
                }
                self.confirm();
            }
            // Take the next event only if it is already here; otherwise the
            // loop flushes what is pending before waiting.
            ready = self.repl.recv().now_or_never();
        }
    }

    fn stream_error(&self, e: pgwire_replication::PgWireError) -> SourceError {
        setup::stream_error(&e, self.task, self.slot, self.publication)
    }

    async fn on_event(&mut self, event: ReplicationEvent) -> Result<(), SourceError> {
        match event {
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                self.ctx
                    .metrics
                    .set_lag_bytes(wal_end.0.saturating_sub(self.confirmed_sent));
                let drained = self.decoder.is_drained() && !self.decoder.in_transaction();
                self.ack.keepalive(wal_end.0, drained);
                self.seen_to = self.seen_to.max(wal_end.0);
            }
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => {
                let ts = commit_time_micros.saturating_add(PG_EPOCH_UNIX_MICROS);
                self.decoder.begin(xid, final_lsn.0, ts).map_err(definite)?;
                self.ack.begin();
            }
            ReplicationEvent::Commit { lsn, end_lsn, .. } => {
                self.decoder.commit(lsn.0).map_err(definite)?;
                self.ack.commit(lsn.0, end_lsn.0);
                self.seen_to = self.seen_to.max(end_lsn.0);
            }
            ReplicationEvent::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            } => {
                self.ctx.metrics.read(data.len() as u64);
                if wal_end.0 != 0 {
                    self.ctx
                        .metrics
                        .set_lag_bytes(wal_end.0.saturating_sub(self.confirmed_sent));
                }
                self.on_data(wal_start.0, data).await?
            }
            // Logical messages are not requested; a bounded replay is not used.
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    async fn on_data(&mut self, lsn: u64, data: bytes::Bytes) -> Result<(), SourceError> {
        if let Some(xid) = self.spill.current() {
            if data.first() == Some(&b'E') {
                return self.spill.stop().map_err(|e| spill_err(&self.spill.dir, e));
            }
            if data.first() == Some(&b'O') {
                // The streamed transaction's replication origin (its first
                // block carries it, without an xid).
                if let LogicalMessage::Origin(o) =
                    pgoutput::decode(&data, false).map_err(|e| malformed(lsn, e))?
                    && self.decoder.excludes_origin(&o.name)
                {
                    self.excluded_streams.insert(xid);
                }
                return Ok(());
            }
            let subxid = pgoutput::streamed_xid(&data).map_err(|e| malformed(lsn, e))?;
            return self
                .spill
                .append(subxid, lsn, &data)
                .map_err(|e| spill_err(&self.spill.dir, e));
        }
        let msg = pgoutput::decode(&data, false).map_err(|e| malformed(lsn, e))?;
        match msg {
            LogicalMessage::StreamStart(s) => self
                .spill
                .start(s.xid, s.first_segment)
                .map_err(|e| spill_err(&self.spill.dir, e)),
            LogicalMessage::StreamStop => Ok(()),
            LogicalMessage::StreamCommit(c) => self.replay(c).await,
            LogicalMessage::StreamAbort(a) => {
                if a.xid == a.subxid {
                    info!(task = %self.task, xid = a.xid, "dropped an aborted streamed transaction");
                } else {
                    debug!(
                        xid = a.xid,
                        subxid = a.subxid,
                        "streamed subtransaction aborted"
                    );
                }
                self.spill
                    .abort(a.xid, a.subxid)
                    .map_err(|e| spill_err(&self.spill.dir, e))
            }
            LogicalMessage::Begin(b) => {
                self.decoder
                    .begin(b.xid, b.final_lsn, b.commit_ts_us)
                    .map_err(definite)?;
                self.ack.begin();
                Ok(())
            }
            LogicalMessage::Commit(c) => {
                self.decoder.commit(c.commit_lsn).map_err(definite)?;
                self.ack.commit(c.commit_lsn, c.end_lsn);
                self.seen_to = self.seen_to.max(c.end_lsn);
                Ok(())
            }
            other => self.apply(&other, lsn).await,
        }
    }

    /// Emits a committed streamed transaction from its spill file.
    async fn replay(&mut self, c: StreamCommit) -> Result<(), SourceError> {
        self.decoder
            .begin(c.xid, c.commit_lsn, c.commit_ts_us)
            .map_err(definite)?;
        if self.excluded_streams.remove(&c.xid) {
            self.decoder.skip_open_transaction();
        }
        self.ack.begin();
        if let Some(mut reader) = self
            .spill
            .read(c.xid)
            .map_err(|e| spill_err(&self.spill.dir, e))?
        {
            info!(
                task = %self.task,
                xid = c.xid,
                commit_lsn = %format_lsn(c.commit_lsn),
                spilled_records = reader.records,
                "replaying a streamed transaction from its spill file"
            );
            while let Some(rec) = reader
                .next_record()
                .map_err(|e| spill_err(&self.spill.dir, e))?
            {
                let msg = pgoutput::decode(&rec.data, true).map_err(|e| malformed(rec.lsn, e))?;
                self.apply(&msg, rec.lsn).await?;
                if self.decoder.pending_events() >= self.max_batch {
                    self.flush().await?;
                }
            }
        }
        self.decoder.commit(c.commit_lsn).map_err(definite)?;
        self.ack.commit(c.commit_lsn, c.end_lsn);
        self.seen_to = self.seen_to.max(c.end_lsn);
        self.spill
            .remove(c.xid)
            .map_err(|e| spill_err(&self.spill.dir, e))
    }

    /// Hands a message to the decoder, loading catalog entries it asks for.
    async fn apply(&mut self, msg: &LogicalMessage, lsn: u64) -> Result<(), SourceError> {
        for _ in 0..4 {
            match self.decoder.apply(msg, lsn) {
                Ok(()) => return Ok(()),
                Err(StreamError::NeedCatalog { rel_id, types }) => {
                    let decoder = &self.decoder;
                    let mut defs =
                        catalog::load_types(&self.client, &types, |o| decoder.knows_type(o))
                            .await
                            .map_err(|e| setup::classify("reading pg_type", e))?;
                    // Types the catalog no longer has are kept as text.
                    for oid in types {
                        defs.entry(oid).or_insert(types::TypeDef::Other {
                            name: oid.to_string(),
                        });
                    }
                    self.decoder.add_types(defs);
                    let info = catalog::load_relation(&self.client, rel_id)
                        .await
                        .map_err(|e| setup::classify("reading pg_attribute", e))?;
                    self.decoder.add_relation_info(rel_id, info);
                }
                Err(e) => return Err(definite(e)),
            }
        }
        Err(SourceError::definite(format!(
            "the catalog did not describe the relation of the {} message at {}",
            msg.name(),
            format_lsn(lsn)
        )))
    }

    /// True while a part batch may wait for more changes (see [`LINGER`]).
    fn lingers(&self) -> bool {
        self.batch_started
            .is_some_and(|t| t.elapsed() < LINGER && self.decoder.pending_events() > 0)
    }

    async fn flush(&mut self) -> Result<(), SourceError> {
        self.batch_started = None;
        if let Some(batch) = self.decoder.take_batch() {
            let end = match &batch.end {
                Position::Lsn(l) => *l,
                Position::Binlog(_) | Position::Snapshot(_) => {
                    return Err(SourceError::definite("a non-WAL position in a WAL batch"));
                }
            };
            tracing::trace!(events = batch.events.len(), end = %batch.end, "batch");
            self.ctx.send(batch).await?;
            if self.ctx.cancel.is_cancelled() {
                return Ok(());
            }
            *self.resume = Some(end);
        }
        Ok(())
    }

    /// Tells the server how far it may release WAL.
    fn confirm(&mut self) {
        let lsn = self.ack.confirm();
        if lsn > self.confirmed_sent {
            debug!(task = %self.task, lsn = %format_lsn(lsn), pending = self.ack.pending(), "confirming flush position");
            self.repl.update_applied_lsn(Lsn(lsn));
            self.confirmed_sent = lsn;
        }
    }
}

fn definite(e: StreamError) -> SourceError {
    SourceError::definite("decoding the WAL").caused_by(e)
}

fn malformed(lsn: u64, e: pgoutput::DecodeError) -> SourceError {
    SourceError::definite(format!("malformed pgoutput message at {}", format_lsn(lsn))).caused_by(e)
}

/// A spill file problem. A full disk or a removed file is retried: a new
/// session streams the transaction again from its start. A directory
/// tidemark may not write needs the operator.
fn spill_err(dir: &std::path::Path, e: std::io::Error) -> SourceError {
    use crate::error::{ErrorClass, io_class, is_disk_full};
    let what = format!("spill directory {}", dir.display());
    let err = if is_disk_full(&e) {
        SourceError::transient(crate::error::disk_full_message(&what, dir))
    } else if io_class(&e) == ErrorClass::Definite {
        SourceError::definite(format!(
            "{what}: tidemark can't write there (set source.spill_dir to a writable directory, or fix its permissions)"
        ))
    } else {
        SourceError::transient(what)
    };
    err.caused_by(e)
}
