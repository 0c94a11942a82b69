//! The runner's ordering contract, on an in-memory source, sink and store:
//! write → durable → commit → release, also when any step fails.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::TaskError;
use super::progress::Progress;
use super::runner::{self, RunContext, RunEnd};
use crate::config::DdlConfig;
use crate::event::{Batch, LsnPosition, Position};
use crate::select::TableFilter;
use crate::sink::{Sink, SinkError};
use crate::source::{Source, SourceError};
use crate::stage::Stage;
use crate::store::{
    Committed, OffsetStore, Ownership, Skip, SnapshotProgress, StoreError, StoreFuture,
};

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Submit(u64, Position),
    Durable(u64),
    Commit(Position),
    Release(Position),
}

type Log = Arc<Mutex<Vec<Step>>>;

fn push(log: &Log, s: Step) {
    log.lock().unwrap().push(s);
}

fn pos(n: u64) -> Position {
    Position::Lsn(LsnPosition {
        commit_lsn: n * 100,
        index: Position::END,
    })
}

struct MemSource {
    batches: VecDeque<Batch>,
    /// Fail instead of yielding batch number `n` (1-based).
    fail_at: Option<usize>,
    taken: usize,
    /// End (`None`) after the last batch; otherwise wait forever.
    finish: bool,
    log: Log,
    closed: bool,
}

impl MemSource {
    fn new(n: u64, log: &Log) -> MemSource {
        MemSource {
            batches: (1..=n)
                .map(|i| Batch {
                    events: Vec::new(),
                    end: pos(i),
                })
                .collect(),
            fail_at: None,
            taken: 0,
            finish: true,
            log: log.clone(),
            closed: false,
        }
    }
}

impl Source for MemSource {
    async fn next(&mut self) -> Result<Option<Batch>, SourceError> {
        if self.fail_at == Some(self.taken + 1) {
            self.fail_at = None;
            return Err(SourceError::transient("connection lost (injected)"));
        }
        // Let the other branches run between batches; nothing is taken
        // before the await, so a dropped call loses nothing (cancel-safe).
        tokio::task::yield_now().await;
        match self.batches.pop_front() {
            Some(b) => {
                self.taken += 1;
                Ok(Some(b))
            }
            None if self.finish => Ok(None),
            None => std::future::pending().await,
        }
    }

    fn release(&mut self, pos: &Position) {
        push(&self.log, Step::Release(pos.clone()));
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.closed = true;
        Ok(())
    }

    fn label(&self) -> &'static str {
        "memory source"
    }
}

#[derive(Default)]
struct MemSink {
    log: Log,
    submitted: u64,
    reported: u64,
    fail_submit_at: Option<u64>,
    fail_durable_at: Option<u64>,
    /// Durability lags submission by this many tickets until flush.
    lag: u64,
}

impl Sink for MemSink {
    async fn submit(&mut self, batches: &[Batch]) -> Result<u64, SinkError> {
        let ticket = self.submitted + 1;
        if self.fail_submit_at == Some(ticket) {
            return Err(SinkError::Stopped("write failed (injected)".into()));
        }
        self.submitted = ticket;
        let end = batches.last().map(|b| b.end.clone()).unwrap_or(pos(0));
        push(&self.log, Step::Submit(ticket, end));
        Ok(ticket)
    }

    async fn durable(&mut self) -> Result<u64, SinkError> {
        loop {
            let target = self.submitted.saturating_sub(self.lag);
            if target > self.reported {
                let next = self.reported + 1;
                if self.fail_durable_at == Some(next) {
                    return Err(SinkError::Stopped("fsync failed (injected)".into()));
                }
                self.reported = next;
                push(&self.log, Step::Durable(next));
                return Ok(next);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        while self.reported < self.submitted {
            let next = self.reported + 1;
            if self.fail_durable_at == Some(next) {
                return Err(SinkError::Stopped("fsync failed (injected)".into()));
            }
            self.reported = next;
            push(&self.log, Step::Durable(next));
        }
        Ok(self.submitted)
    }

    async fn close(&mut self) {}

    fn durable_position(&self) -> Option<Position> {
        None
    }

    fn bytes_written(&self) -> u64 {
        0
    }

    fn label(&self) -> &'static str {
        "memory sink"
    }
}

#[derive(Default)]
struct MemStore {
    log: Log,
    commits: Mutex<u64>,
    fail_at: Option<u64>,
}

impl OffsetStore for MemStore {
    fn load(&self, _: &str) -> StoreFuture<'_, Option<Committed>> {
        Box::pin(async { Ok(None) })
    }

    fn commit(&self, _: &str, p: &Position) -> StoreFuture<'_, ()> {
        let p = p.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let n = {
                let mut c = self.commits.lock().unwrap();
                *c += 1;
                *c
            };
            if self.fail_at == Some(n) {
                return Err(StoreError::Io {
                    message: "disk full (injected)".into(),
                    source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                });
            }
            push(&self.log, Step::Commit(p));
            Ok(())
        })
    }

    fn reset(&self, _: &str) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn was_reset(&self, _: &str) -> StoreFuture<'_, bool> {
        Box::pin(async { Ok(false) })
    }

    fn list(&self) -> StoreFuture<'_, Vec<(String, Committed)>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn skips(&self, _: &str) -> StoreFuture<'_, Vec<Skip>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn add_skip(&self, _: &str, _: &Skip) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn snapshot(&self, _: &str) -> StoreFuture<'_, Option<SnapshotProgress>> {
        Box::pin(async { Ok(None) })
    }

    fn save_snapshot(&self, _: &str, _: &SnapshotProgress) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn clear_snapshot(&self, _: &str) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn owner(&self, _: &str) -> StoreFuture<'_, Option<Ownership>> {
        Box::pin(async { Ok(None) })
    }

    fn claim(&self, _: &str, n: &str, e: i64) -> StoreFuture<'_, Result<Ownership, Ownership>> {
        let o = Ownership {
            node: n.to_string(),
            epoch: 1,
            expires_at_ms: e,
        };
        Box::pin(async move { Ok(Ok(o)) })
    }
}

/// Checks the order on the log: a durable ticket was submitted before; a
/// commit covers only durable groups; a release only committed positions.
fn check_order(log: &[Step]) {
    let mut submitted: Vec<(u64, Position)> = Vec::new();
    let mut durable_end: Option<Position> = None;
    let mut committed: Option<Position> = None;
    for (i, s) in log.iter().enumerate() {
        match s {
            Step::Submit(t, end) => submitted.push((*t, end.clone())),
            Step::Durable(t) => {
                let (_, end) = submitted.iter().find(|(st, _)| st == t).unwrap_or_else(|| {
                    panic!("step {i}: ticket {t} durable before it was submitted: {log:?}")
                });
                durable_end = Some(end.clone());
            }
            Step::Commit(p) => {
                assert!(
                    durable_end.as_ref().is_some_and(|d| d >= p),
                    "step {i}: commit of {p} before it was durable (durable up to {durable_end:?}): {log:?}"
                );
                committed = Some(p.clone());
            }
            Step::Release(p) => assert!(
                committed.as_ref().is_some_and(|c| c >= p),
                "step {i}: release of {p} before its commit (committed {committed:?}): {log:?}"
            ),
        }
    }
}

fn last_commit(log: &[Step]) -> Option<Position> {
    log.iter().rev().find_map(|s| match s {
        Step::Commit(p) => Some(p.clone()),
        _ => None,
    })
}

async fn run_with(
    source: &mut MemSource,
    sink: &mut MemSink,
    store: &MemStore,
    stop: CancellationToken,
) -> Result<RunEnd, TaskError> {
    let stage = Stage::new(TableFilter::default(), DdlConfig::default());
    run_staged(source, sink, store, stage, stop).await
}

fn parts(n: u64) -> (Log, MemSource, MemSink, MemStore) {
    let log: Log = Arc::default();
    let source = MemSource::new(n, &log);
    let sink = MemSink {
        log: log.clone(),
        lag: 2,
        ..Default::default()
    };
    let store = MemStore {
        log: log.clone(),
        ..Default::default()
    };
    (log, source, sink, store)
}

#[tokio::test]
async fn everything_read_is_durable_committed_then_released_in_order() {
    let (log, mut source, mut sink, store) = parts(200);
    let end = run_with(&mut source, &mut sink, &store, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(end, RunEnd::Finished);
    let log = log.lock().unwrap().clone();
    check_order(&log);
    assert_eq!(
        last_commit(&log),
        Some(pos(200)),
        "the last position is committed"
    );
    assert!(
        log.iter().any(|s| matches!(s, Step::Release(_))),
        "positions are released as they are committed: {log:?}"
    );
    assert!(source.closed);
}

#[tokio::test]
async fn a_failed_write_commits_nothing_unwritten() {
    let (log, mut source, mut sink, store) = parts(50);
    sink.fail_submit_at = Some(10);
    let e = run_with(&mut source, &mut sink, &store, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(e, TaskError::Sink { .. }), "{e:?}");
    let log = log.lock().unwrap().clone();
    check_order(&log);
    assert!(last_commit(&log).is_none_or(|p| p <= pos(9)), "{log:?}");
}

#[tokio::test]
async fn a_failed_sync_stops_the_run_and_commits_only_what_was_durable() {
    let (log, mut source, mut sink, store) = parts(50);
    sink.fail_durable_at = Some(5);
    let e = run_with(&mut source, &mut sink, &store, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(e, TaskError::Sink { .. }), "{e:?}");
    let log = log.lock().unwrap().clone();
    check_order(&log);
    // Ticket 4's group ended at position 4 at the latest.
    assert!(last_commit(&log).is_none_or(|p| p <= pos(4)), "{log:?}");
}

#[tokio::test]
async fn a_failed_commit_stops_the_run_at_once_and_releases_nothing_more() {
    let (log, mut source, mut sink, mut store) = parts(10_000);
    store.fail_at = Some(3);
    source.finish = false;
    let e = run_with(&mut source, &mut sink, &store, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(e, TaskError::Store(_)), "{e:?}");
    let log = log.lock().unwrap().clone();
    check_order(&log);
    let commits = log.iter().filter(|s| matches!(s, Step::Commit(_))).count();
    assert_eq!(commits, 2, "{log:?}");
    let releases: Vec<&Step> = log
        .iter()
        .filter(|s| matches!(s, Step::Release(_)))
        .collect();
    assert!(releases.len() <= 2, "{log:?}");
    // The run did not go on reading after the failure.
    assert!(
        source.taken < 10_000,
        "read everything despite failing commits"
    );
}

#[tokio::test]
async fn a_source_failure_still_commits_what_the_sink_accepted() {
    let (log, mut source, mut sink, store) = parts(50);
    source.fail_at = Some(21);
    let e = run_with(&mut source, &mut sink, &store, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(e, TaskError::Source { .. }), "{e:?}");
    let log = log.lock().unwrap().clone();
    check_order(&log);
    assert_eq!(last_commit(&log), Some(pos(20)), "{log:?}");
}

#[tokio::test]
async fn stop_drains_everything_submitted() {
    let (log, mut source, mut sink, store) = parts(100_000);
    source.finish = false;
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.cancel();
    });
    let end = run_with(&mut source, &mut sink, &store, stop)
        .await
        .unwrap();
    assert_eq!(end, RunEnd::Stopped);
    let log = log.lock().unwrap().clone();
    check_order(&log);
    let last_submitted = log
        .iter()
        .rev()
        .find_map(|s| match s {
            Step::Submit(_, e) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        last_commit(&log),
        Some(last_submitted),
        "drained to the last write"
    );
    assert!(source.closed);
    assert!(source.taken < 100_000);
}

fn stage_with_rules(rules: &str) -> Stage {
    #[derive(serde::Deserialize)]
    struct R {
        rules: Vec<crate::config::rules::RuleConfig>,
    }
    let r: R = toml::from_str(rules).unwrap();
    Stage::new(TableFilter::default(), DdlConfig::default())
        .with_rules(
            "t",
            &r.rules,
            std::env::temp_dir().join("tidemark-dead-letter-unused.jsonl"),
            None,
        )
        .unwrap()
}

async fn run_staged(
    source: &mut MemSource,
    sink: &mut MemSink,
    store: &MemStore,
    mut stage: Stage,
    stop: CancellationToken,
) -> Result<RunEnd, TaskError> {
    let progress = Progress::default();
    runner::run(
        source,
        sink,
        RunContext {
            task: "t",
            store,
            progress: &progress,
            stage: &mut stage,
            stop,
        },
    )
    .await
}

/// A row of `shop.orders (id, amount)`.
fn order_event(amount: crate::event::Value, at: Position) -> crate::event::ChangeEvent {
    use crate::event::{ChangeEvent, ColumnDef, Connector, Op, TableSchema, TxMeta, Value};
    let columns = vec![
        ColumnDef {
            name: "id".into(),
            type_name: "int".into(),
            nullable: false,
        },
        ColumnDef {
            name: "amount".into(),
            type_name: "int".into(),
            nullable: true,
        },
    ];
    ChangeEvent {
        op: Op::Create,
        position: at,
        tx: Arc::new(TxMeta::default()),
        table: Some(Arc::new(TableSchema {
            merged: None,
            db: "shop".into(),
            schema: None,
            name: "orders".into(),
            version: TableSchema::fingerprint(&columns, &[0]),
            columns,
            key: vec![0],
            uniques: Vec::new(),
            before_complete: true,
            defaults: Vec::new(),
        })),
        before: None,
        after: Some(vec![Value::Int(1), amount]),
        ddl: None,
        source_offset: 0,
        tx_order: 1,
        table_order: 1,
        connector: Connector::Mariadb,
        copying: false,
    }
}

#[tokio::test]
async fn the_rules_thread_keeps_the_order_contract() {
    let (log, mut source, mut sink, store) = parts(300);
    for (i, b) in source.batches.iter_mut().enumerate() {
        b.events.push(order_event(
            crate::event::Value::Int(i as i64),
            b.end.clone(),
        ));
    }
    let stage = stage_with_rules(
        "[[rules]]\ntables = [\"shop.*\"]\nfilter = 'row.amount % 2 == 0'\nrename_table = { to = \"dw.orders\" }\n",
    );
    let end = run_staged(
        &mut source,
        &mut sink,
        &store,
        stage,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(end, RunEnd::Finished);
    let log = log.lock().unwrap().clone();
    check_order(&log);
    assert_eq!(last_commit(&log), Some(pos(300)), "{log:?}");
    assert!(source.closed);
}

#[tokio::test]
async fn a_failing_rule_stops_the_run_and_commits_only_what_came_before() {
    let (log, mut source, mut sink, store) = parts(50);
    for (i, b) in source.batches.iter_mut().enumerate() {
        // The 20th row has no amount: the filter can't judge it.
        let amount = if i == 19 {
            crate::event::Value::Null
        } else {
            crate::event::Value::Int(5)
        };
        b.events.push(order_event(amount, b.end.clone()));
    }
    let stage = stage_with_rules("[[rules]]\ntables = [\"shop.*\"]\nfilter = 'row.amount > 1'\n");
    let e = run_staged(
        &mut source,
        &mut sink,
        &store,
        stage,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let TaskError::Rules(message) = &e else {
        panic!("{e:?}");
    };
    assert!(
        message.contains("rule 1") && message.contains("shop.orders"),
        "{message}"
    );
    let log = log.lock().unwrap().clone();
    check_order(&log);
    assert!(last_commit(&log).is_none_or(|p| p <= pos(19)), "{log:?}");
    assert!(source.closed);
}
