//! Builds a task's parts from its config: the stage, the sink (opened, so
//! that its own durable position is known) and the source (spawned from
//! the resume position).

use std::sync::Arc;

use super::TaskError;
use crate::config::{SinkConfig, SourceConfig, TaskConfig};
use crate::event::Position;
use crate::event::json::JsonEncoder;
use crate::select::TableFilter;
use crate::sink::{AnySink, DbSink, JsonlSink, KafkaSink};
use crate::source::mysql::MysqlSource;
use crate::source::postgres::PostgresSource;
use crate::source::snapshot::SnapshotSource;
use crate::source::{LogSource, SourceMetrics};
use crate::stage::Stage;

/// Batches queued between the source's reader and the runner: memory holds
/// about `CHANNEL_BATCHES × max_batch_events` decoded events, plus the
/// sink's encoded groups (see `sink::writer`).
pub const CHANNEL_BATCHES: usize = 4;

/// What the task's source is, for messages.
pub fn source_label(cfg: &TaskConfig) -> &'static str {
    match cfg.source {
        SourceConfig::Mysql(_) => "MySQL/MariaDB source",
        SourceConfig::Postgres(_) => "PostgreSQL source",
    }
}

pub fn filter(cfg: &TaskConfig) -> Result<TableFilter, TaskError> {
    TableFilter::new(&cfg.filter.include, &cfg.filter.exclude).map_err(TaskError::Config)
}

pub fn stage(cfg: &TaskConfig) -> Result<Stage, TaskError> {
    let stage = Stage::new(filter(cfg)?, cfg.ddl.clone());
    if cfg.rules.is_empty() {
        return Ok(stage);
    }
    stage
        .with_rules(
            &cfg.id,
            &cfg.rules,
            cfg.dead_letter_path(),
            Some(cfg.rules_state_path()),
        )
        .map_err(TaskError::Config)
}

/// Opens the task's sink (reading back its own position, if it keeps one).
/// `approved_ddl`: the DDL statement an operator resumed the task at
/// (database targets, `pause` policy).
pub async fn open_sink(
    cfg: &TaskConfig,
    approved_ddl: Option<Position>,
) -> Result<AnySink, TaskError> {
    match &cfg.sink {
        SinkConfig::Jsonl(j) => {
            let encoder = JsonEncoder::new(cfg.format.clone(), cfg.id.clone(), cfg.id.clone());
            let sink =
                JsonlSink::open(&j.path, encoder)
                    .await
                    .map_err(|source| TaskError::Sink {
                        what: "JSONL sink",
                        source,
                    })?;
            Ok(AnySink::Jsonl(sink))
        }
        SinkConfig::Kafka(k) => {
            let connector = match &cfg.source {
                SourceConfig::Postgres(_) => crate::event::Connector::Postgres,
                SourceConfig::Mysql(_) => crate::event::Connector::Mysql,
            };
            let sink = KafkaSink::open(k.as_ref().clone(), &cfg.id, connector, cfg.format.clone())
                .await
                .map_err(|e| TaskError::Sink {
                    what: "Kafka sink",
                    source: e.into(),
                })?;
            Ok(AnySink::Kafka(sink))
        }
        SinkConfig::Mysql(t) | SinkConfig::Postgres(t) => {
            let engine = match &cfg.sink {
                SinkConfig::Postgres(_) => crate::sink::db::Engine::Postgres,
                _ => crate::sink::db::Engine::Mysql,
            };
            let connector = match &cfg.source {
                SourceConfig::Postgres(_) => crate::event::Connector::Postgres,
                SourceConfig::Mysql(_) => crate::event::Connector::Mysql,
            };
            let sink = DbSink::open(
                engine,
                t.as_ref().clone(),
                &cfg.id,
                connector,
                cfg.ddl.clone(),
                approved_ddl,
            )
            .await
            .map_err(|e| TaskError::Sink {
                what: if engine == crate::sink::db::Engine::Postgres {
                    "PostgreSQL target"
                } else {
                    "MySQL target"
                },
                source: crate::sink::SinkError::Database(std::sync::Arc::new(e)),
            })?;
            Ok(AnySink::Database(sink))
        }
    }
}

/// Starts the task's source reading after `resume`; `skips`: transactions
/// whose statement-logged DML the operator chose to skip.
pub fn spawn_source(
    cfg: &TaskConfig,
    resume: Option<Position>,
    skips: Vec<Position>,
    metrics: Arc<SourceMetrics>,
) -> Result<LogSource, TaskError> {
    let filter = filter(cfg)?;
    let label = source_label(cfg);
    Ok(match &cfg.source {
        SourceConfig::Mysql(m) => {
            let src = MysqlSource::new(m.clone(), cfg.id.clone(), filter).with_skips(skips);
            LogSource::spawn(label, resume, CHANNEL_BATCHES, metrics, |ctx| src.read(ctx))
        }
        SourceConfig::Postgres(p) => {
            let src = PostgresSource::new(
                p.clone(),
                cfg.id.clone(),
                filter,
                cfg.filter.include.clone(),
            );
            LogSource::spawn(label, resume, CHANNEL_BATCHES, metrics, |ctx| src.read(ctx))
        }
    })
}

/// Wraps the task's log reader with its snapshot: the tables its mode
/// copies, the re-snapshots asked for (`requests`), in one order with the
/// stream.
pub async fn snapshot_source(
    cfg: &TaskConfig,
    stream: LogSource,
    resume: Option<Position>,
    store: Arc<dyn crate::store::OffsetStore>,
    stats: Arc<crate::source::snapshot::SnapshotStats>,
    requests: tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
) -> Result<SnapshotSource, TaskError> {
    use crate::config::TaskMode;
    use crate::source::snapshot::{Engine, Plan, Settings, mysql::MysqlEngine, postgres::PgEngine};
    let filter = filter(cfg)?;
    let engine = match &cfg.source {
        SourceConfig::Mysql(m) => Engine::Mysql(MysqlEngine::new(
            Arc::new(MysqlSource::new(m.clone(), cfg.id.clone(), filter.clone())),
            filter,
        )),
        SourceConfig::Postgres(p) => Engine::Postgres(PgEngine::new(p, &cfg.id, filter)),
    };
    let plan = Plan {
        engine,
        settings: Settings {
            chunk_rows: cfg.snapshot.chunk_rows,
            workers: cfg.snapshot.workers,
        },
        initial: cfg.mode != TaskMode::Stream,
        complete: cfg.mode == TaskMode::Snapshot,
        task: cfg.id.clone(),
        store,
        stats,
        requests: Some(requests),
    };
    SnapshotSource::start(stream, resume, plan)
        .await
        .map_err(|source| TaskError::Source {
            what: source_label(cfg),
            source,
        })
}
