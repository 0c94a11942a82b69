//! Database targets: change events applied to a MySQL/MariaDB or
//! PostgreSQL server (disaster recovery, migration, sync).
//!
//! - [`DbSink`]: the [`Sink`] face: groups go to one applier task over a
//!   bounded channel; the applier reports each group durable once the
//!   target transaction that holds it committed;
//! - `apply`: the engine-independent part: target transactions, the
//!   conflict policy, DDL, replays after a conflict or a deadlock;
//! - `postgres`, `mysql`: statements and catalogs of each engine;
//! - `render`: values as each engine takes them; `create`: target tables
//!   made from the source's columns.
//!
//! Exactly once: every target transaction also writes the task's position
//! to `<meta_schema>.apply_position` on the target; on open, that position
//! is the sink's [`Sink::durable_position`], which the task resumes after.

mod apply;
mod batch;
mod conflict;
mod create;
mod ddl;
mod mysql;
mod parallel;
mod postgres;
pub mod render;
mod translate;

pub(crate) use mysql::lock_holder as mysql_lock_holder;
pub(crate) use postgres::lock_holder as pg_lock_holder;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot, watch};

use super::{Sink, SinkError};
use crate::config::{DbSinkConfig, DdlConfig};
use crate::error::{BoxError, Classify, ErrorClass};
use crate::event::{Batch, Connector, Position};

/// What went wrong on the target.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DbSinkError {
    message: String,
    class: ErrorClass,
    kind: DbErrorKind,
    /// Set when a DDL statement waits for an operator (`pause` policy).
    pause_at: Option<Position>,
    #[source]
    cause: Option<BoxError>,
}

/// How the applier reacts to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A unique key is taken: a conflict for the policy.
    Duplicate,
    /// Deadlock, lock timeout, serialization failure: run the
    /// transaction again.
    Retry,
    /// A conflict the policy fails on (the message names table, key and
    /// position already).
    Conflict,
    /// A DDL's change is already there (the table exists, the column is
    /// gone): a DDL replayed after a crash between it and its position.
    InEffect,
    Other,
}

impl DbSinkError {
    pub fn definite(message: impl Into<String>) -> DbSinkError {
        DbSinkError {
            message: message.into(),
            class: ErrorClass::Definite,
            kind: DbErrorKind::Other,
            pause_at: None,
            cause: None,
        }
    }

    /// A DDL statement at `at` waits for an operator: the task pauses.
    pub fn pause(message: impl Into<String>, at: Position) -> DbSinkError {
        DbSinkError {
            pause_at: Some(at),
            ..DbSinkError::definite(message)
        }
    }

    /// The position of the DDL statement the task pauses at, if that is
    /// what this error is.
    pub fn pause_at(&self) -> Option<&Position> {
        self.pause_at.as_ref()
    }

    pub fn transient(message: impl Into<String>) -> DbSinkError {
        DbSinkError {
            class: ErrorClass::Transient,
            ..DbSinkError::definite(message)
        }
    }

    fn with_kind(mut self, kind: DbErrorKind) -> DbSinkError {
        self.kind = kind;
        self
    }

    fn caused_by(mut self, cause: impl Into<BoxError>) -> DbSinkError {
        self.cause = Some(cause.into());
        self
    }

    pub fn kind(&self) -> DbErrorKind {
        self.kind
    }

    /// The same error with `context` in front of its message.
    fn context(mut self, context: &str) -> DbSinkError {
        self.message = format!("{context}: {}", self.message);
        self
    }

    fn from_source(e: crate::source::SourceError) -> DbSinkError {
        let class = e.class();
        DbSinkError {
            message: e.to_string().replace("source.", "sink."),
            class,
            kind: DbErrorKind::Other,
            pause_at: None,
            cause: std::error::Error::source(&e).map(|c| c.to_string().into()),
        }
    }
}

impl Classify for DbSinkError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// Messages to the applier.
enum Msg {
    Group {
        ticket: u64,
        batches: Vec<Batch>,
    },
    /// Commit whatever is open (the task is draining), then answer.
    Flush(oneshot::Sender<()>),
}

/// Durability progress published by the applier.
#[derive(Debug, Clone, Default)]
struct Durable {
    ticket: u64,
    error: Option<Arc<DbSinkError>>,
}

/// A sink applying change events to a database.
pub struct DbSink {
    tx: mpsc::Sender<Msg>,
    durable: watch::Receiver<Durable>,
    next: u64,
    open_position: Option<Position>,
    bytes: Arc<AtomicU64>,
    label: &'static str,
    applier: Option<tokio::task::JoinHandle<()>>,
    tally: apply::Tally,
}

/// What the target holds for a task when the sink opens.
pub struct Opened {
    /// Everything up to here is applied.
    pub position: Option<Position>,
    /// Ranges of changes past `position` that parallel workers applied.
    pub done: Vec<(Position, Position)>,
}

impl Opened {
    fn parse(
        task: &str,
        table: &str,
        position: Option<String>,
        done: &[String],
        target: &str,
    ) -> Result<Opened, DbSinkError> {
        let bad = |text: &str, e: crate::event::position::ParsePositionError| {
            DbSinkError::definite(format!(
                "the position {text:?} of task {task} in {table} on the target is not a position ({e}): delete the task's rows there to start it over"
            ))
        };
        let position = match position {
            Some(text) => Some(text.parse::<Position>().map_err(|e| bad(&text, e))?),
            None => None,
        };
        let mut set = Vec::new();
        for line in done
            .iter()
            .flat_map(|t| t.lines())
            .filter(|l| !l.is_empty())
        {
            let (lo, hi) = line.split_once('\t').unwrap_or((line, line));
            let lo = lo.parse::<Position>().map_err(|e| bad(line, e))?;
            let hi = hi.parse::<Position>().map_err(|e| bad(line, e))?;
            if position.as_ref().is_none_or(|w| &hi > w) {
                set.push((lo, hi));
            }
        }
        match &position {
            Some(p) => {
                tracing::info!(task, position = %p, applied_past_it = set.len(), target, "resuming after the target's position")
            }
            None if !set.is_empty() => {
                tracing::info!(
                    task,
                    applied_past_it = set.len(),
                    target,
                    "the target holds transactions parallel workers applied before any position: they are skipped"
                )
            }
            None => {}
        }
        Ok(Opened {
            position,
            done: set,
        })
    }
}

/// The name of the lock a task holds on its target while it applies
/// (`exclusive`): the task and the place of its position row. At most 64
/// characters (MySQL's `GET_LOCK` limit); a longer one ends in a digest.
pub(crate) fn lock_name(meta: &str, task: &str) -> String {
    let name = format!("tidemark:{meta}:{task}");
    if name.len() <= 64 {
        return name;
    }
    let d = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut head: String = String::new();
    for c in name.chars() {
        if head.len() + c.len_utf8() > 64 - 33 {
            break;
        }
        head.push(c);
    }
    format!("{head}#{hex}")
}

/// The same lock as one PostgreSQL advisory-lock key: the first 8 bytes of
/// the name's SHA-256 (stable across versions and machines).
pub(crate) fn lock_key(meta: &str, task: &str) -> i64 {
    let name = format!("tidemark:{meta}:{task}");
    let d = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    i64::from_be_bytes(b)
}

/// The task's lock on the target is held by another session: a second
/// tidemark running the task, or a session of a stopped one the server
/// hasn't ended yet. Transient: the task waits, and takes over once the
/// holder is gone.
fn lock_held(task: &str, position_table: &str, holder: &str, end_it: &str) -> DbSinkError {
    DbSinkError::transient(format!(
        "task {task} is already applying into this target from another session ({holder}): a second tidemark runs the same task, or a stopped one's session is still open. Both writing would mix their rows and overwrite one position in {position_table}. This task waits and takes over when that session ends: stop the other tidemark, or give one of the two tasks another id (or another meta_schema); a session left by a stopped tidemark ends when the server notices it (wait_timeout, TCP keepalive), or now with {end_it}"
    ))
}

/// Which engine the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Mysql,
    Postgres,
}

/// Connects the applier's connection (it applies what must go serially and
/// moves the position) and, for parallel apply, `workers` more; opens the
/// task's position and starts the applier.
async fn start_applier<T: apply::Target + 'static>(
    settings: apply::Settings,
    bytes: Arc<AtomicU64>,
    rx: mpsc::Receiver<Msg>,
    durable: watch::Sender<Durable>,
) -> Result<(Option<Position>, tokio::task::JoinHandle<()>, apply::Tally), DbSinkError> {
    let mut t = T::connect(&settings, None).await?;
    let opened = t
        .open(
            &settings.task,
            settings.cfg.conflict.journal,
            settings.cfg.exclusive,
        )
        .await?;
    let mut extra = Vec::new();
    if settings.cfg.workers > 1 {
        for w in 1..=settings.cfg.workers {
            extra.push(T::connect(&settings, Some(w)).await?);
        }
    }
    let a = apply::Applier::with_workers(t, settings, bytes, opened.done, extra);
    let tally = a.tally.clone();
    Ok((opened.position, tokio::spawn(a.run(rx, durable)), tally))
}

impl DbSink {
    /// Connects, makes sure the position table exists and reads the task's
    /// position from it.
    pub async fn open(
        engine: Engine,
        cfg: DbSinkConfig,
        task: &str,
        source: Connector,
        ddl: DdlConfig,
        approved_ddl: Option<Position>,
    ) -> Result<DbSink, DbSinkError> {
        let bytes = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(2);
        let (durable_tx, durable) = watch::channel(Durable::default());
        let settings = apply::Settings {
            task: task.to_string(),
            source,
            ddl,
            cfg,
            approved_ddl,
        };
        let (label, (open_position, applier, tally)) = match engine {
            Engine::Postgres => (
                "PostgreSQL target",
                start_applier::<postgres::PgTarget>(settings, bytes.clone(), rx, durable_tx)
                    .await?,
            ),
            Engine::Mysql => (
                "MySQL target",
                start_applier::<mysql::MysqlTarget>(settings, bytes.clone(), rx, durable_tx)
                    .await?,
            ),
        };
        Ok(DbSink {
            tx,
            durable,
            next: 0,
            open_position,
            bytes,
            label,
            applier: Some(applier),
            tally,
        })
    }

    fn failed(&self) -> Option<SinkError> {
        self.durable
            .borrow()
            .error
            .as_ref()
            .map(|e| SinkError::Database(e.clone()))
    }

    fn stopped(&self) -> SinkError {
        self.failed()
            .unwrap_or_else(|| SinkError::Stopped(format!("{}: the applier stopped", self.label)))
    }
}

impl Sink for DbSink {
    fn take_conflicts(&mut self) -> Vec<(String, [u64; 3])> {
        let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        t.drain().collect()
    }

    async fn submit(&mut self, batches: &[Batch]) -> Result<u64, SinkError> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        self.next += 1;
        let msg = Msg::Group {
            ticket: self.next,
            batches: batches.to_vec(),
        };
        if self.tx.send(msg).await.is_err() {
            return Err(self.stopped());
        }
        Ok(self.next)
    }

    async fn durable(&mut self) -> Result<u64, SinkError> {
        let seen = self.durable.borrow_and_update().ticket;
        loop {
            {
                let d = self.durable.borrow_and_update();
                if let Some(e) = &d.error {
                    return Err(SinkError::Database(e.clone()));
                }
                if d.ticket > seen {
                    return Ok(d.ticket);
                }
            }
            if self.durable.changed().await.is_err() {
                return Err(self.stopped());
            }
        }
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(reply)).await.is_err() || done.await.is_err() {
            return Err(self.stopped());
        }
        let d = self.durable.borrow();
        match &d.error {
            Some(e) => Err(SinkError::Database(e.clone())),
            None => Ok(d.ticket),
        }
    }

    async fn close(&mut self) {
        // Closing the channel ends the applier once it is idle.
        let (dead, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(a) = self.applier.take() {
            let _ = a.await;
        }
    }

    fn durable_position(&self) -> Option<Position> {
        self.open_position.clone()
    }

    fn bytes_written(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn label(&self) -> &'static str {
        self.label
    }
}

impl Drop for DbSink {
    fn drop(&mut self) {
        // A stop that timed out: the applier's open transaction is rolled
        // back by the server when its connection goes.
        if let Some(a) = self.applier.take() {
            a.abort();
        }
    }
}

/// Deletes task `task`'s position rows (`apply_position`, `apply_done`)
/// from a database target, so that a task created later with the same id
/// starts afresh there; the conflict journal stays. Returns what was done.
pub async fn forget_task(engine: Engine, cfg: &DbSinkConfig, task: &str) -> Result<String, String> {
    let shown = crate::config::redact_url(&cfg.url);
    match engine {
        Engine::Postgres => {
            let target = crate::source::postgres::connect::Target::parse(&cfg.url)
                .map_err(|e| e.to_string())?;
            let client = crate::source::postgres::connect::sql(
                &target,
                &cfg.tls,
                "tidemark-admin",
                "tasks.sink.tls",
            )
            .await
            .map_err(|e| crate::error::chain(&e))?;
            let m = apply::pg_ident(&cfg.meta_schema);
            let mut n = 0;
            for table in ["apply_position", "apply_done"] {
                let exists: bool = client
                    .query_one(
                        "SELECT to_regclass($1) IS NOT NULL",
                        &[&format!("{m}.{table}")],
                    )
                    .await
                    .map_err(|e| e.to_string())?
                    .get(0);
                if exists {
                    n += client
                        .execute(
                            &format!("DELETE FROM {m}.{table} WHERE task = $1"),
                            &[&task],
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(format!(
                "{n} position row(s) of task {task} deleted from {shown}"
            ))
        }
        Engine::Mysql => {
            use mysql_async::prelude::Queryable;
            let opts = crate::precheck::mysql::opts(&cfg.url, &cfg.tls)?;
            let mut conn = mysql_async::Conn::new(opts)
                .await
                .map_err(|e| e.to_string())?;
            let m = apply::my_ident(&cfg.meta_schema);
            let mut n = 0;
            for table in ["apply_position", "apply_done"] {
                match conn
                    .exec_drop(format!("DELETE FROM {m}.{table} WHERE task = ?"), (task,))
                    .await
                {
                    Ok(()) => n += conn.affected_rows(),
                    // The table isn't there: nothing to forget.
                    Err(mysql_async::Error::Server(e)) if e.code == 1146 || e.code == 1049 => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            let _ = conn.disconnect().await;
            Ok(format!(
                "{n} position row(s) of task {task} deleted from {shown}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Opened, lock_key, lock_name};

    #[test]
    fn lock_names_fit_mysql_and_stay_the_same_everywhere() {
        assert_eq!(lock_name("tidemark", "orders"), "tidemark:tidemark:orders");
        let long = "x".repeat(100);
        let name = lock_name("tidemark", &long);
        assert!(name.len() <= 64, "{name}");
        // The digest is SHA-256's: every version and machine names it alike.
        assert!(
            name.ends_with("#3e305c62e4f80f433d9c20061feaf3ef"),
            "{name}"
        );
        assert_ne!(name, lock_name("tidemark", &format!("{long}y")));
        assert!(lock_name("tidemark", &"é".repeat(40)).len() <= 64);
        assert_eq!(lock_key("tidemark", "t"), -5837170820198768125);
        assert_ne!(lock_key("tidemark", "t"), lock_key("other", "t"));
    }

    #[test]
    fn transactions_applied_past_the_position_are_remembered() {
        let w = "lsn:0/100:*".to_string();
        let done = vec![
            "lsn:0/90:1\tlsn:0/90:*\nlsn:0/200:1\tlsn:0/200:*".to_string(),
            "lsn:0/300:*".to_string(),
        ];
        let o = Opened::parse("t", "tidemark.apply_position", Some(w), &done, "target")
            .expect("parses");
        let mut got: Vec<String> = o
            .done
            .iter()
            .map(|(lo, hi)| format!("{lo}..{hi}"))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec!["lsn:0/200:1..lsn:0/200:*", "lsn:0/300:*..lsn:0/300:*"],
            "at or below the position: forgotten"
        );
        assert_eq!(
            o.position.map(|p| p.to_string()).as_deref(),
            Some("lsn:0/100:*")
        );
        let bad = Opened::parse("t", "x", Some("nonsense".into()), &[], "target")
            .err()
            .expect("a damaged position is an error");
        assert!(
            bad.to_string().contains("delete the task's rows there"),
            "{bad}"
        );
    }
}
