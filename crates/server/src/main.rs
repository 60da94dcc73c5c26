//! `spacesync`: the server and its operator commands.
//!
//! Exit codes: 0 success (for `doctor`: the schema is clean), 1 failure or drift found,
//! 2 the command could not run (bad configuration, unreachable database, schema behind).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use spacesync_core::Outcome;
use spacesync_protocol::Operation;
use spacesync_server::{Server, ServerConfig, actor};
use spacesync_store::{NewLogEntry, PgStore, QuarantineEntry, SqliteStore, Store};

#[derive(Debug, Parser)]
#[command(
    name = "spacesync",
    version,
    about = "Realtime sync server for spatial canvases"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SPACESYNC_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct Database {
    /// PostgreSQL URL (`postgres://user@host/db` or `host=… dbname=…`). Without it, the
    /// embedded store in --data-dir is used.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Where the embedded store keeps its data when no database URL is given.
    #[arg(
        long,
        global = true,
        env = "SPACESYNC_DATA_DIR",
        default_value = "./spacesync-data"
    )]
    data_dir: std::path::PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (WebSocket on /ws, /healthz, /readyz, /metrics) on one port.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "SPACESYNC_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        database: Database,
        /// Apply pending migrations before serving (otherwise a schema that is behind is
        /// refused and nothing is changed).
        #[arg(long)]
        migrate: bool,
    },
    /// Apply pending migrations (under an advisory lock).
    Migrate {
        #[command(flatten)]
        database: Database,
    },
    /// Compare the live schema with the migrations; exit 0 only when it is clean.
    Doctor {
        #[command(flatten)]
        database: Database,
    },
    /// List, inspect, release (re-apply) or drop quarantined ops.
    Quarantine {
        #[command(flatten)]
        database: Database,
        #[command(subcommand)]
        command: QuarantineCommand,
    },
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// Quarantined ops, newest first.
    List {
        /// Only this space.
        #[arg(long)]
        space: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one quarantined op, as JSON.
    Show { space: String, operation_id: String },
    /// Apply a quarantined op again (after a fix) and remove it from the quarantine.
    Release { space: String, operation_id: String },
    /// Remove a quarantined op for good.
    Drop { space: String, operation_id: String },
}

/// An error that means the command could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CannotRun(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<CannotRun>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,refinery_core=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The configured store: PostgreSQL when a URL is given, else the embedded store. The flag
/// says whether it is an embedded store with no schema yet (a new one).
async fn store(database: &Database) -> anyhow::Result<(Arc<dyn Store>, bool)> {
    match database
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty())
    {
        Some(url) => {
            let store = PgStore::connect(url, 8).map_err(|error| CannotRun(error.to_string()))?;
            Ok((Arc::new(store), false))
        }
        None => {
            let store = SqliteStore::open(&database.data_dir)
                .map_err(|error| CannotRun(error.to_string()))?;
            let fresh = store
                .schema_status()
                .await
                .map_err(|error| CannotRun(error.to_string()))?
                .applied
                .is_empty();
            Ok((Arc::new(store), fresh))
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            listen,
            database,
            migrate,
        } => serve(listen, &database, migrate).await,
        Command::Migrate { database } => {
            let (store, _) = store(&database).await?;
            let status = store
                .migrate()
                .await
                .map_err(|error| CannotRun(format!("cannot migrate: {error}")))?;
            println!("schema is current: migrations {:?} applied", status.applied);
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { database } => doctor(&database).await,
        Command::Quarantine { database, command } => quarantine(&database, command).await,
    }
}

async fn serve(listen: SocketAddr, database: &Database, migrate: bool) -> anyhow::Result<ExitCode> {
    let (store, fresh) = store(database).await?;
    // A brand-new embedded store is initialised (there is no schema to change yet); an
    // existing one is never migrated without being asked.
    let status = if migrate || fresh {
        store
            .migrate()
            .await
            .map_err(|error| CannotRun(format!("cannot migrate: {error}")))?
    } else {
        store
            .schema_status()
            .await
            .map_err(|error| CannotRun(format!("cannot read the schema: {error}")))?
    };
    if !status.pending.is_empty() {
        return Err(CannotRun(format!(
            "the database schema is behind: migrations {:?} are not applied. Run `spacesync migrate` \
             (or start with `serve --migrate`); serve never changes the schema on its own",
            status.pending
        ))
        .into());
    }
    if !status.unknown.is_empty() {
        tracing::warn!(
            unknown = ?status.unknown,
            "the database has migrations this build does not know (a newer version ran); serving anyway"
        );
    }
    let description = store.describe();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| CannotRun(format!("cannot listen on {listen}: {error}")))?;
    let server = Server::start(ServerConfig::default(), store, listener)?;
    let address = server.local_addr();
    tracing::info!(%address, store = %description, "spacesync serving");
    eprintln!(
        "spacesync {} serving on ws://{address}/ws (health: http://{address}/healthz)\nstore: {description}",
        env!("CARGO_PKG_VERSION")
    );
    wait_for_signal().await;
    tracing::info!("shutting down: flushing every space, then closing connections with 1001");
    let report = server.shutdown().await;
    if report.is_clean() {
        tracing::info!("stopped cleanly");
        Ok(ExitCode::SUCCESS)
    } else {
        tracing::error!(?report, "stopped before everything was flushed");
        Ok(ExitCode::from(1))
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn doctor(database: &Database) -> anyhow::Result<ExitCode> {
    let (store, _) = store(database).await?;
    let status = store
        .schema_status()
        .await
        .map_err(|error| CannotRun(format!("cannot read the schema: {error}")))?;
    let report = store
        .doctor()
        .await
        .map_err(|error| CannotRun(format!("cannot inspect the schema: {error}")))?;
    println!("store: {}", store.describe());
    println!("migrations applied: {:?}", status.applied);
    let mut problems = 0;
    let mut section = |title: &str, items: Vec<String>| {
        for item in items {
            println!("{title}: {item}");
            problems += 1;
        }
    };
    section(
        "pending migration",
        status.pending.iter().map(i32::to_string).collect(),
    );
    section(
        "unknown migration",
        status.unknown.iter().map(i32::to_string).collect(),
    );
    section("extra index", report.extra_indexes.clone());
    section(
        "duplicate indexes",
        report
            .duplicate_indexes
            .iter()
            .map(|group| group.join(" = "))
            .collect(),
    );
    section("missing index", report.missing_indexes.clone());
    section("extra constraint", report.extra_constraints.clone());
    section("missing constraint", report.missing_constraints.clone());
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    if problems == 0 {
        println!("schema is clean");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{problems} problem(s) found; see docs/operations.md (schema drift)");
        Ok(ExitCode::from(1))
    }
}

async fn quarantine(database: &Database, command: QuarantineCommand) -> anyhow::Result<ExitCode> {
    let (store, _) = store(database).await?;
    match command {
        QuarantineCommand::List { space, limit, json } => {
            let entries = store
                .quarantine_list(space.as_deref(), limit)
                .await
                .map_err(|error| CannotRun(error.to_string()))?;
            if json {
                for entry in &entries {
                    println!("{}", entry_json(entry));
                }
            } else if entries.is_empty() {
                println!("the quarantine is empty");
            } else {
                println!(
                    "{:<24} {:<24} {:<22} {:<18} {:>8}  detail",
                    "space", "operation", "code", "name", "attempts"
                );
                for entry in &entries {
                    println!(
                        "{:<24} {:<24} {:<22} {:<18} {:>8}  {}",
                        entry.space_id,
                        entry.operation_id,
                        entry.code,
                        entry.name,
                        entry.attempts,
                        entry.detail.chars().take(80).collect::<String>()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show {
            space,
            operation_id,
        } => match store.quarantine_get(&space, &operation_id).await? {
            Some(entry) => {
                println!("{}", serde_json::to_string_pretty(&entry_json(&entry))?);
                Ok(ExitCode::SUCCESS)
            }
            None => bail!("{operation_id} is not quarantined in {space}"),
        },
        QuarantineCommand::Drop {
            space,
            operation_id,
        } => {
            if store.quarantine_remove(&space, &operation_id).await? {
                println!("dropped {operation_id} from the quarantine of {space}");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!("{operation_id} is not quarantined in {space}")
            }
        }
        QuarantineCommand::Release {
            space,
            operation_id,
        } => release(&*store, &space, &operation_id).await,
    }
}

fn entry_json(entry: &QuarantineEntry) -> serde_json::Value {
    serde_json::json!({
        "spaceId": entry.space_id,
        "operationId": entry.operation_id,
        "clientId": entry.client_id,
        "name": entry.name,
        "code": entry.code,
        "detail": entry.detail,
        "attempts": entry.attempts,
        "firstSeenUnixMs": entry.first_seen_unix_ms,
        "lastSeenUnixMs": entry.last_seen_unix_ms,
        "payload": entry.payload,
    })
}

/// Re-applies a quarantined op to its space as it is in the store, appends it, and removes
/// it from the quarantine. A running server that has the space loaded notices the new log
/// entry at its next write (its sequence number is taken) and reloads the space.
async fn release(store: &dyn Store, space: &str, operation_id: &str) -> anyhow::Result<ExitCode> {
    let Some(entry) = store.quarantine_get(space, operation_id).await? else {
        bail!("{operation_id} is not quarantined in {space}");
    };
    let op: Operation = serde_json::from_value(entry.payload.clone()).with_context(
        || "the stored payload is not an op (it held text the database refuses); drop it instead",
    )?;
    let loaded = actor::load(store, space, Default::default())
        .await
        .map_err(|(error, _)| anyhow::anyhow!("cannot load {space}: {error}"))?;
    let mut space_state = loaded.space;
    space_state.forget(operation_id);
    let outcomes = space_state.submit(op, 0);
    let Some(outcome) = outcomes.into_iter().next() else {
        bail!("the op produced no outcome");
    };
    match outcome {
        Outcome::Applied(applied) => {
            let outcome = store
                .append(&[NewLogEntry {
                    space_id: space.to_owned(),
                    seq: applied.seq,
                    operation_id: applied.operation_id.clone(),
                    client_id: entry.client_id.clone(),
                    op: applied.op,
                }])
                .await?;
            if let Some(poison) = outcome.poison {
                bail!("the store refused the op again: {}", poison.error);
            }
            store.quarantine_remove(space, operation_id).await?;
            println!(
                "released {operation_id}: applied to {space} at seq {}",
                applied.seq
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Duplicate { seq, .. } => {
            store.quarantine_remove(space, operation_id).await?;
            println!(
                "{operation_id} is already in the log of {space} at seq {seq}; removed from the quarantine"
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Held { waiting_for, .. } => {
            bail!(
                "not released: the op still waits for {waiting_for:?}, which the space does not have"
            )
        }
        Outcome::Rejected(rejection) => {
            bail!(
                "not released: rejected again ({}): {}",
                rejection.code,
                rejection.message
            )
        }
    }
}
