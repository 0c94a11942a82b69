//! `tidemark`: the daemon and its command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use tidemark::config::Config;
use tidemark::store::{OffsetStore, SledOffsetStore};

#[derive(Parser)]
#[command(name = "tidemark", version, about = "Log-based change data capture")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every task in the config until SIGTERM/SIGINT, then drain and
    /// commit positions before exiting.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Parse and validate the config (no network).
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Committed positions.
    Offsets {
        #[command(subcommand)]
        command: OffsetsCommand,
    },
    /// PostgreSQL replication slots.
    Slot {
        #[command(subcommand)]
        command: SlotCommand,
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
    /// Show committed positions, human-readable.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in files, pipes or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TIDEMARK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Validate { config } => validate(&config),
        Command::Offsets { command } => offsets(command),
        Command::Slot { command } => slot(command),
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

fn validate(path: &std::path::Path) -> Result<ExitCode> {
    let config = load(path)?;
    println!(
        "{}: ok ({} task{})",
        path.display(),
        config.tasks.len(),
        if config.tasks.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

fn open_store(config: &Config) -> Result<SledOffsetStore> {
    std::fs::create_dir_all(&config.daemon.data_dir).with_context(|| {
        format!(
            "creating daemon.data_dir {}",
            config.daemon.data_dir.display()
        )
    })?;
    SledOffsetStore::open(&config.daemon.data_dir).with_context(|| {
        "opening the offset store (is another tidemark running with the same data_dir?)".to_string()
    })
}

fn offsets(command: OffsetsCommand) -> Result<ExitCode> {
    match command {
        OffsetsCommand::Show { config, task } => {
            let config = load(&config)?;
            let store = open_store(&config)?;
            let ids: Vec<String> = match task {
                Some(t) => vec![t],
                None => config.tasks.iter().map(|t| t.id.clone()).collect(),
            };
            for id in ids {
                match store.load(&id)? {
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
        OffsetsCommand::Reset { config, task } => {
            let config = load(&config)?;
            if !config.tasks.iter().any(|t| t.id == task) {
                anyhow::bail!("no task {task:?} in the config");
            }
            let store = open_store(&config)?;
            store.reset(&task)?;
            println!("{task}: position reset");
            Ok(ExitCode::SUCCESS)
        }
    }
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
    }
}

fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let d = tidemark::event::value::Date::from_epoch_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        d.year,
        d.month,
        d.day,
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn run(path: &std::path::Path) -> Result<ExitCode> {
    let config = load(path)?;
    let store: Arc<dyn OffsetStore> = Arc::new(open_store(&config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let root = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let total = config.tasks.len();
        for task in config.tasks.clone() {
            let id = task.id.clone();
            let store = store.clone();
            let cancel = root.child_token();
            let done = done_tx.clone();
            tracker.spawn(async move {
                let r = tidemark::task::run(task, store, cancel).await;
                if let Err(e) = &r {
                    error!(task = %id, error = %e, "task failed");
                }
                let _ = done.send(r.is_ok());
            });
        }
        tracker.close();
        drop(done_tx);
        info!(tasks = total, "tidemark running");

        let mut failed = 0;
        let mut finished = 0;
        let signal = shutdown_signal();
        tokio::pin!(signal);
        let mut by_signal = false;
        while finished < total {
            tokio::select! {
                _ = &mut signal, if !by_signal => {
                    info!("shutdown requested: draining tasks");
                    by_signal = true;
                    root.cancel();
                    break;
                }
                r = done_rx.recv() => match r {
                    Some(ok) => {
                        finished += 1;
                        if !ok { failed += 1; }
                    }
                    None => break,
                },
            }
        }
        if by_signal {
            let deadline = Duration::from_secs(config.daemon.shutdown_timeout_secs);
            if tokio::time::timeout(deadline, tracker.wait())
                .await
                .is_err()
            {
                warn!(
                    timeout_secs = deadline.as_secs(),
                    "tasks did not stop in time"
                );
                return Ok(ExitCode::FAILURE);
            }
            while let Ok(ok) = done_rx.try_recv() {
                if !ok {
                    failed += 1;
                }
            }
        }
        Ok(if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "can't listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
