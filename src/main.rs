//! `tidemark`: the daemon and its command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing::{error, info};

use tidemark::config::Config;
use tidemark::store::{FileOffsetStore, OffsetStore};
use tidemark::task::{Supervisor, SupervisorSettings, TaskState};

#[derive(Parser)]
#[command(name = "tidemark", version, about = "Log-based change data capture")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every task in the config until SIGTERM/SIGINT, then drain and
    /// commit positions before exiting. Tasks that fail stay failed while
    /// the others run; the daemon keeps running.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Exit once no task is running any more (every task completed,
        /// failed or stopped), with status 1 if any failed: for one-shot
        /// use and scripts, not for the service.
        #[arg(long)]
        once: bool,
    },
    /// Parse and validate the config (no network); with --connect, also
    /// check each task's processing rules against the source's tables.
    Validate {
        #[arg(long)]
        config: PathBuf,
        /// Read the source's catalog: every column a rule names exists,
        /// filters type-check, keys survive.
        #[arg(long)]
        connect: bool,
    },
    /// Committed positions.
    Offsets {
        #[command(subcommand)]
        command: OffsetsCommand,
    },
    /// Every task's state, retry, error and progress, as the running
    /// daemon reports them (`<data_dir>/status.json`, rewritten every
    /// second).
    Status {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        task: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// PostgreSQL replication slots.
    Slot {
        #[command(subcommand)]
        command: SlotCommand,
    },
    /// Tasks of a running daemon, through its HTTP API ([daemon.api]).
    Task {
        /// The API's address.
        #[arg(long, env = "TIDEMARK_API", default_value = "http://127.0.0.1:7070")]
        api: String,
        /// The API's bearer token (daemon.api.token).
        #[arg(
            long,
            env = "TIDEMARK_API_TOKEN",
            hide_env_values = true,
            default_value = ""
        )]
        token: String,
        /// For an https:// API: the CA that signed its certificate (PEM).
        #[arg(long, env = "TIDEMARK_API_CA")]
        ca_file: Option<PathBuf>,
        #[command(subcommand)]
        command: TaskCommand,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// One line per task: id, state, mode, origin, summary.
    List {
        /// Only tasks in this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// A task's definition (secrets redacted), state, history and progress, as JSON.
    Get {
        id: String,
    },
    /// Creates tasks from a JSON file: one definition (the keys of a
    /// [[tasks]] entry) or an array of them.
    Create {
        #[arg(long)]
        file: PathBuf,
        /// Start them at once (else they wait for `task start`).
        #[arg(long)]
        start: bool,
    },
    Start {
        id: String,
    },
    /// Drains the task (everything in flight durable and committed) into `paused`.
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Stop {
        id: String,
    },
    /// Drains the task into `completed`: a migration's cutover (a
    /// PostgreSQL source's slot is dropped).
    Complete {
        id: String,
    },
    /// Stops and removes a task created over the API.
    Delete {
        id: String,
    },
    /// Exits 0 when the daemon is ready (every task started, none failed):
    /// for readiness probes.
    Ready,
    /// Checks what the task needs of its servers: each item pass, warn or
    /// fail, with the fix (read-only).
    Precheck {
        id: String,
    },
    /// Tries the source's and the target's connections step by step (DNS,
    /// TCP, TLS, login, version).
    TestConnection {
        id: String,
    },
    /// Copies tables again while the task streams (or at its next start).
    Snapshot {
        id: String,
        /// `db.table`, once per table.
        #[arg(long = "table", required = true)]
        tables: Vec<String>,
    },
    /// Sets the task's flow control at once (0 = no limit).
    Throttle {
        id: String,
        #[arg(long, default_value_t = 0)]
        rows_per_second: u64,
        #[arg(long, default_value_t = 0)]
        bytes_per_second: u64,
    },
}

#[derive(Subcommand)]
enum SlotCommand {
    /// Drop the replication slot of a PostgreSQL task, so that the server
    /// stops retaining WAL for it: run it before removing the task from the
    /// config. Stop the daemon first. Only a slot tidemark created, unless
    /// --force.
    Drop {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        task: String,
        /// Drop the slot even if tidemark did not create it.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum OffsetsCommand {
    /// Show committed positions, human-readable (also while the daemon
    /// runs).
    Show {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        task: Option<String>,
    },
    /// Forget a task's position: it starts again from its `source.start`.
    /// Stop the daemon first.
    Reset {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        task: String,
    },
    /// Skip the statement-logged changes of one transaction that stopped a
    /// task ("statement-based DML ... on a table this task captures"): the
    /// binlog holds no rows for them. Give the transaction as the error
    /// printed it. Recorded and logged. Stop the daemon first.
    Skip {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        task: String,
        /// The transaction's position, e.g. `binlog:mysql-bin.000001:65447:*`.
        #[arg(long)]
        transaction: String,
        /// Why, for the record.
        #[arg(long, default_value = "skipped with `tidemark offsets skip`")]
        reason: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEMARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // TIDEMARK_LOG_FORMAT=json: one JSON object per line (for log
    // shippers); else text, coloured only on a terminal.
    if std::env::var("TIDEMARK_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .init();
    }
    let result = match cli.command {
        Command::Run { config, once } => run(&config, once),
        Command::Validate { config, connect } => validate(&config, connect),
        Command::Offsets { command } => offsets(command),
        Command::Slot { command } => slot(command),
        Command::Status { config, task, json } => status(&config, task.as_deref(), json),
        Command::Task {
            api,
            token,
            ca_file,
            command,
        } => task_cli(&api, &token, ca_file.as_deref(), command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config> {
    Ok(Config::load(path)?)
}

fn validate(path: &std::path::Path, connect: bool) -> Result<ExitCode> {
    let config = load(path)?;
    println!(
        "{}: ok ({} task{})",
        path.display(),
        config.tasks.len(),
        if config.tasks.len() == 1 { "" } else { "s" }
    );
    if !connect {
        return Ok(ExitCode::SUCCESS);
    }
    let rt = small_runtime()?;
    let mut failed = false;
    for task in &config.tasks {
        for item in rt.block_on(tidemark::precheck::rules(task)) {
            let v = serde_json::to_value(&item).unwrap_or_default();
            let f = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            failed |= f("status") == "fail";
            println!(
                "task {}: {} {}: {}",
                task.id,
                f("status"),
                f("name"),
                f("detail")
            );
            if !f("fix").is_empty() {
                println!("    fix: {}", f("fix"));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn open_store(config: &Config) -> Result<FileOffsetStore> {
    Ok(FileOffsetStore::open(&config.daemon.data_dir)?)
}

/// A runtime for the offline commands' store calls.
fn small_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn offsets(command: OffsetsCommand) -> Result<ExitCode> {
    match command {
        OffsetsCommand::Show { config, task } => {
            let config = load(&config)?;
            // Reads only: works while the daemon runs (records are
            // replaced atomically, so a read sees a whole one).
            let store = FileOffsetStore::open_read_only(&config.daemon.data_dir)?;
            let rt = small_runtime()?;
            let ids: Vec<String> = match task {
                Some(t) => vec![t],
                None => config.tasks.iter().map(|t| t.id.clone()).collect(),
            };
            for id in ids {
                match rt.block_on(store.load(&id))? {
                    None => println!("{id}: no committed position (starts from source.start)"),
                    Some(c) => println!(
                        "{id}: {} (committed {})",
                        describe(&c.position),
                        format_ms(c.committed_at_ms)
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        OffsetsCommand::Skip {
            config,
            task,
            transaction,
            reason,
        } => skip(&config, &task, &transaction, &reason),
        OffsetsCommand::Reset { config, task } => {
            let config = load(&config)?;
            if !config.tasks.iter().any(|t| t.id == task) {
                anyhow::bail!("no task {task:?} in the config");
            }
            let store = open_store(&config)?;
            small_runtime()?.block_on(store.reset(&task))?;
            tidemark::task::supervisor::forget_rules_state(&config.daemon.data_dir, &task);
            println!("{task}: position reset");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn skip(config: &std::path::Path, task: &str, transaction: &str, reason: &str) -> Result<ExitCode> {
    let config = load(config)?;
    if !config.tasks.iter().any(|t| t.id == task) {
        anyhow::bail!("no task {task:?} in the config");
    }
    let position: tidemark::event::Position = transaction.parse().map_err(|e| {
        anyhow::anyhow!(
            "--transaction {transaction:?} is not a position ({e}): give it as the error printed it, e.g. binlog:mysql-bin.000001:65447:*"
        )
    })?;
    let store = open_store(&config)?;
    let skip = tidemark::store::Skip {
        position: position.to_string(),
        at_ms: tidemark::store::now_ms(),
        reason: reason.to_string(),
    };
    small_runtime()?.block_on(store.add_skip(task, &skip))?;
    println!(
        "{task}: the statement-logged changes of transaction {position} will be skipped at the next start"
    );
    Ok(ExitCode::SUCCESS)
}

fn status(path: &std::path::Path, task: Option<&str>, json: bool) -> Result<ExitCode> {
    use tidemark::task::report;
    let config = load(path)?;
    let r = report::read(&config.daemon.data_dir).with_context(|| {
        format!(
            "reading {} (is the daemon running with this config?)",
            report::path(&config.daemon.data_dir).display()
        )
    })?;
    let age_s = (tidemark::store::now_ms() - r.written_at_ms).max(0) / 1000;
    let running = std::path::Path::new(&format!("/proc/{}", r.pid)).exists();
    if json {
        let tasks: Vec<&report::TaskReport> = r
            .tasks
            .iter()
            .filter(|t| task.is_none_or(|id| t.id == id))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "written_at_ms": r.written_at_ms,
                "pid": r.pid,
                "daemon_running": running,
                "tasks": tasks,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !running || age_s > 10 {
        println!(
            "(written {age_s} s ago by pid {}, which {})",
            r.pid,
            if running {
                "still runs"
            } else {
                "is no longer running"
            }
        );
    }
    for t in r.tasks.iter().filter(|t| task.is_none_or(|id| t.id == id)) {
        let p = &t.progress;
        let n = |k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        println!("{}: {}", t.id, t.summary);
        println!(
            "  events read {}, written {}, filtered {}; transactions {}; restarts {}",
            n("events_read"),
            n("events_written"),
            n("events_filtered"),
            n("transactions"),
            n("restarts")
        );
        println!(
            "  committed {}; lag {}",
            p.get("committed_position")
                .and_then(|v| v.as_str())
                .unwrap_or("(none)"),
            match p.get("lag_seconds").and_then(|v| v.as_f64()) {
                Some(s) => format!("{s:.1} s"),
                None => "unknown".into(),
            }
        );
        if let Some(tables) = p.get("snapshot").and_then(|v| v.as_object()) {
            for (name, s) in tables {
                let n = |k: &str| s.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
                let eta = match s.get("eta_seconds").and_then(|v| v.as_f64()) {
                    Some(e) if s.get("state").and_then(|v| v.as_str()) != Some("done") => {
                        format!(", about {e:.0} s left")
                    }
                    _ => String::new(),
                };
                // Tables an earlier run copied have no rate in this one.
                let rate = match s.get("rows_per_second").and_then(|v| v.as_f64()) {
                    Some(r) if r > 0.0 => format!(", {r:.0} rows/s"),
                    _ => String::new(),
                };
                println!(
                    "  snapshot {name}: {} — {} of ~{} rows, chunks {}/{}{rate}{eta}",
                    s.get("state").and_then(|v| v.as_str()).unwrap_or("?"),
                    n("rows_copied"),
                    n("estimated_rows"),
                    n("chunks_done"),
                    n("chunks_total"),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn slot(command: SlotCommand) -> Result<ExitCode> {
    let SlotCommand::Drop {
        config,
        task,
        force,
    } = command;
    let config = load(&config)?;
    let Some(t) = config.tasks.iter().find(|t| t.id == task) else {
        anyhow::bail!("no task {task:?} in the config");
    };
    let tidemark::config::SourceConfig::Postgres(pg) = &t.source else {
        anyhow::bail!("task {task:?} does not read PostgreSQL: it has no replication slot");
    };
    let runtime = small_runtime()?;
    let message = runtime.block_on(tidemark::source::postgres::drop_slot(pg, &task, force))?;
    println!("{task}: {message}");
    Ok(ExitCode::SUCCESS)
}

fn describe(p: &tidemark::event::Position) -> String {
    use tidemark::event::Position;
    match p {
        Position::Binlog(b) if p.is_tx_end() => format!(
            "binlog {} after the transaction at {} (text form {p})",
            b.file, b.tx_pos
        ),
        Position::Binlog(b) if b.event_pos == 0 => {
            format!(
                "binlog {} position {} (nothing read yet; text form {p})",
                b.file, b.tx_pos
            )
        }
        Position::Binlog(b) => format!(
            "binlog {} transaction at {}, through row {} of the event at {} (text form {p})",
            b.file, b.tx_pos, b.row, b.event_pos
        ),
        Position::Lsn(l) if p.is_tx_end() => format!(
            "WAL after the transaction committed at {} (text form {p})",
            tidemark::event::position::format_lsn(l.commit_lsn)
        ),
        Position::Lsn(l) => format!(
            "WAL transaction committed at {}, through change {} (text form {p})",
            tidemark::event::position::format_lsn(l.commit_lsn),
            l.index
        ),
        Position::Snapshot(s) if p.is_tx_end() => format!(
            "snapshot chunk {} copied at {} (text form {p})",
            s.seq, s.at
        ),
        Position::Snapshot(s) => format!(
            "snapshot chunk {} copied at {}, through row {} (text form {p})",
            s.seq, s.at, s.row
        ),
    }
}

fn format_ms(ms: i64) -> String {
    tidemark::task::format_ms(ms)
}

fn run(path: &std::path::Path, once: bool) -> Result<ExitCode> {
    let config = load(path)?;
    let store: Arc<dyn OffsetStore> = Arc::new(open_store(&config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let code = runtime.block_on(async move {
        let settings = SupervisorSettings {
            drain_timeout: Duration::from_secs(config.daemon.shutdown_timeout_secs),
            data_dir: config.daemon.data_dir.clone(),
            ..SupervisorSettings::default()
        };
        let supervisor = Arc::new(Supervisor::new(store, settings));
        // The API's address first: one in use fails the start before any
        // task runs.
        let listener = match &config.daemon.api {
            Some(api_cfg) => Some(tidemark::api::bind(api_cfg).await?),
            None => None,
        };
        let api_tls = match &config.daemon.api {
            Some(tidemark::config::ApiConfig {
                tls_cert_file: Some(cert),
                tls_key_file: Some(key),
                ..
            }) => Some(tidemark::api::tls::server_config(cert, key).map_err(anyhow::Error::msg)?),
            _ => None,
        };
        for task in config.tasks.clone() {
            supervisor.add(task, true)?;
        }
        // Tasks created over the API, in the state they were left in.
        let config_tasks: Vec<String> = config.tasks.iter().map(|t| t.id.clone()).collect();
        let allowed = config
            .daemon
            .api
            .as_ref()
            .map(|a| a.allowed_dirs.clone())
            .unwrap_or_default();
        let api_store = tidemark::api::persist::ApiTasks::new(&config.daemon.data_dir, &allowed);
        for problem in tidemark::api::restore(&supervisor, &api_store, &config_tasks) {
            error!("{problem}");
        }
        let api_stop = tokio_util::sync::CancellationToken::new();
        let mut api = None;
        let api_server = match (&config.daemon.api, listener) {
            (Some(api_cfg), Some(listener)) => {
                let a = Arc::new(tidemark::api::Api::new(
                    supervisor.clone(),
                    config_tasks.clone(),
                    api_store,
                    api_cfg,
                ));
                api = Some(a.clone());
                tokio::spawn(a.events.clone().watch(supervisor.clone(), api_stop.clone()));
                if api_cfg.precheck_interval_secs > 0 {
                    tokio::spawn(a.clone().precheck_loop(
                        Duration::from_secs(api_cfg.precheck_interval_secs),
                        api_stop.clone(),
                    ));
                }
                tokio::spawn(tidemark::api::events::task_webhooks(
                    a.events.clone(),
                    supervisor.clone(),
                    api_stop.clone(),
                ));
                if let Some(url) = &api_cfg.webhook {
                    tokio::spawn(tidemark::api::events::webhook(
                        a.events.clone(),
                        url.clone(),
                        api_stop.clone(),
                    ));
                }
                Some(tokio::spawn(tidemark::api::serve(
                    a,
                    listener,
                    api_cfg.max_body_bytes,
                    api_tls,
                    api_stop.clone(),
                )))
            }
            _ => None,
        };
        let report_stop = tokio_util::sync::CancellationToken::new();
        let reporter = tokio::spawn(tidemark::task::report::run(
            supervisor.clone(),
            config.daemon.data_dir.clone(),
            report_stop.clone(),
        ));
        info!(tasks = supervisor.tasks().len(), "tidemark running");
        let heartbeat_stop = tokio_util::sync::CancellationToken::new();
        let heartbeat = tokio::spawn(tidemark::service::heartbeat(
            supervisor.clone(),
            heartbeat_stop.clone(),
        ));
        tidemark::service::ready(&supervisor);
        let Signals { mut term, mut hup } = Signals::new();
        let mut current = config.tasks.clone();
        loop {
            tokio::select! {
                _ = shutdown_requested(&mut term) => {
                    info!("shutdown requested: draining tasks");
                    break;
                }
                _ = hangup(&mut hup) => {
                    info!("SIGHUP: reloading {}", path.display());
                    tidemark::service::reload(path, &supervisor, &mut current, &config).await;
                    if let Some(a) = &api {
                        a.set_config_tasks(current.iter().map(|t| t.id.clone()).collect());
                    }
                }
                _ = supervisor.all_idle(), if once => {
                    info!("every task ended (--once)");
                    break;
                }
            }
        }
        tidemark::service::stopping();
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        let deadline = Duration::from_secs(config.daemon.shutdown_timeout_secs);
        // The tasks' own drain timeout is the same: a little more here
        // lets them record how their drain ended.
        api_stop.cancel();
        if let Some(server) = api_server {
            let _ = server.await;
        }
        let undrained = supervisor.shutdown(deadline + Duration::from_secs(2)).await;
        report_stop.cancel();
        let _ = reporter.await;
        // The final states (stopped, failed), for `tidemark status` after exit.
        let _ = tidemark::task::report::write(&supervisor, &config.daemon.data_dir);
        if !undrained.is_empty() {
            error!(
                timeout_secs = deadline.as_secs(),
                tasks = %undrained.join(", "),
                "tasks did not stop in time; exiting anyway (what they had not made durable is read again at the next start)"
            );
            return Ok::<_, anyhow::Error>(ExitCode::from(2));
        }
        let failed: Vec<String> = supervisor
            .tasks()
            .into_iter()
            .filter(|t| t.state() == TaskState::Failed)
            .map(|t| format!("{}: {}", t.id(), t.status().error.unwrap_or_default()))
            .collect();
        for f in &failed {
            error!(task = %f, "task failed");
        }
        // A service stopped on request exits 0 (its failed tasks were
        // reported as they failed); `--once` reports them in its status.
        Ok(if once && !failed.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })?;
    // Threads stuck on a blocked sink (a full pipe, a frozen file system)
    // must not keep the process alive: leave without waiting for them.
    runtime.shutdown_background();
    Ok(code)
}

/// SIGTERM / SIGINT (shutdown) and SIGHUP (reload).
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate())
            .map_err(|e| error!(error = %e, "can't listen for SIGTERM"))
            .ok();
        let hup = signal(SignalKind::hangup())
            .map_err(|e| error!(error = %e, "can't listen for SIGHUP: no reload"))
            .ok();
        Signals { term, hup }
    }
}

async fn shutdown_requested(term: &mut Option<tokio::signal::unix::Signal>) {
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn hangup(hup: &mut Option<tokio::signal::unix::Signal>) {
    match hup.as_mut() {
        Some(h) => {
            h.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// `tidemark task …`: one request to the daemon's API; the answer on
/// stdout (JSON, or a table for `list`), an error's message on stderr with
/// status 1.
fn task_cli(
    api: &str,
    token: &str,
    ca_file: Option<&std::path::Path>,
    command: TaskCommand,
) -> Result<ExitCode> {
    let client =
        tidemark::api::client::Client::new(api, token, ca_file).map_err(anyhow::Error::msg)?;
    let (method, path, body) = match &command {
        TaskCommand::List { state } => (
            "GET",
            match state {
                Some(s) => format!("/api/v1/tasks?state={s}"),
                None => "/api/v1/tasks".into(),
            },
            String::new(),
        ),
        TaskCommand::Get { id } => ("GET", format!("/api/v1/tasks/{id}"), String::new()),
        TaskCommand::Ready => ("GET", "/readyz".to_string(), String::new()),
        TaskCommand::Create { file, start } => (
            "POST",
            format!("/api/v1/tasks?start={start}"),
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        ),
        TaskCommand::Start { id } => ("POST", format!("/api/v1/tasks/{id}/start"), String::new()),
        TaskCommand::Pause { id } => ("POST", format!("/api/v1/tasks/{id}/pause"), String::new()),
        TaskCommand::Resume { id } => ("POST", format!("/api/v1/tasks/{id}/resume"), String::new()),
        TaskCommand::Stop { id } => ("POST", format!("/api/v1/tasks/{id}/stop"), String::new()),
        TaskCommand::Complete { id } => (
            "POST",
            format!("/api/v1/tasks/{id}/complete"),
            String::new(),
        ),
        TaskCommand::Delete { id } => ("DELETE", format!("/api/v1/tasks/{id}"), String::new()),
        TaskCommand::Snapshot { id, tables } => (
            "POST",
            format!("/api/v1/tasks/{id}/snapshot"),
            serde_json::json!({ "tables": tables }).to_string(),
        ),
        TaskCommand::Precheck { id } => (
            "POST",
            format!("/api/v1/tasks/{id}/precheck"),
            String::new(),
        ),
        TaskCommand::TestConnection { id } => (
            "POST",
            format!("/api/v1/tasks/{id}/test-connection"),
            String::new(),
        ),
        TaskCommand::Throttle {
            id,
            rows_per_second,
            bytes_per_second,
        } => (
            "PUT",
            format!("/api/v1/tasks/{id}/throttle"),
            serde_json::json!({"rows_per_second": rows_per_second, "bytes_per_second": bytes_per_second})
                .to_string(),
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reply = runtime
        .block_on(client.call(method, &path, &body))
        .map_err(anyhow::Error::msg)?;
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
    if !(200..300).contains(&reply.status) {
        let msg = json["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| reply.body.clone());
        eprintln!("error: {msg} (HTTP {})", reply.status);
        return Ok(ExitCode::FAILURE);
    }
    match command {
        TaskCommand::List { .. } => {
            for t in json["tasks"].as_array().into_iter().flatten() {
                let field = |k: &str| t[k].as_str().unwrap_or("").to_string();
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    field("id"),
                    field("state"),
                    field("mode"),
                    field("origin"),
                    field("summary")
                );
            }
        }
        TaskCommand::Precheck { .. } | TaskCommand::TestConnection { .. } => {
            let report = if json["precheck"].is_object() {
                &json["precheck"]
            } else {
                &json["connections"]
            };
            for item in report["items"].as_array().into_iter().flatten() {
                let f = |k: &str| item[k].as_str().unwrap_or("").to_string();
                println!("{:<5} {:<28} {}", f("status"), f("name"), f("detail"));
                if !f("fix").is_empty() {
                    println!("{:<34} fix: {}", "", f("fix"));
                }
            }
            let result = report["result"].as_str().unwrap_or("fail");
            println!("result: {result}");
            if result == "fail" {
                return Ok(ExitCode::FAILURE);
            }
        }
        _ => println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or(reply.body)
        ),
    }
    Ok(ExitCode::SUCCESS)
}
