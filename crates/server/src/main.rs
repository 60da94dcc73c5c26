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

/// mimalloc: the server allocates many small, short-lived values per op (JSON bodies, frames)
/// on several threads; glibc's allocator contended on its arena locks in the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before returning it to the OS. Its default (1 s) made
/// the server give back and re-fault the same memory all through a load run: the kernel
/// zeroing it was 8% of the server's CPU (`clear_page_erms`, 5,000 faults in 10 s). At 10 s
/// the faults drop to ~700 and the memory still goes back after a burst. `MIMALLOC_PURGE_DELAY`
/// in the environment overrides it.
const ALLOCATOR_PURGE_DELAY_MS: i64 = 10_000;

/// `mi_option_purge_delay` and `mi_option_allow_thp` in mimalloc v3's `mi_option_e`; the Rust
/// bindings do not name them.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Allocator settings for latency, each overridden by its `MIMALLOC_…` environment variable.
///
/// Transparent huge pages are turned off for the process (as Redis and MongoDB advise for
/// theirs). With them, memory grows 2 MiB at a time and the kernel zeroes each 2 MiB page in
/// the thread that first touches it, which stalls every task on that runtime worker: at 11,000
/// ops/s, the harness's p99 went from 28–34 ms with them to 7.5–9 ms without, for ~5% of peak
/// throughput (docs/benchmarks.md). `MIMALLOC_ALLOW_THP=1` keeps them.
fn tune_allocator() {
    // Each option is set only if it still holds v3's documented default: a mimalloc whose
    // options are numbered differently is left alone rather than misconfigured.
    // SAFETY: `mi_option_get`/`mi_option_set` take plain integers, touch only mimalloc's option
    // table (atomics) and are documented as callable at any time, from any thread.
    // `prctl(PR_SET_THP_DISABLE)` takes integer arguments and only sets a flag of this process.
    #[allow(unsafe_code)]
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
            && libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1_000
        {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS as _);
        }
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none()
            && libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP) == 1
        {
            // mimalloc stops asking for huge pages for new memory; the kernel stops giving
            // them for memory already mapped (mimalloc's first arena is mapped before `main`).
            libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

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

impl Database {
    /// The PostgreSQL URL, if one is configured (blank counts as none).
    fn url(&self) -> Option<&str> {
        self.database_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
    }
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
        #[command(flatten)]
        limits: LimitArgs,
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
    /// Load-test a server and check that nothing was lost, duplicated or diverged.
    Load(Box<LoadArgs>),
    /// List, inspect, release (re-apply) or drop quarantined ops.
    Quarantine {
        #[command(flatten)]
        database: Database,
        #[command(subcommand)]
        command: QuarantineCommand,
    },
}

/// The limits an operator tunes most; the rest keep their documented defaults.
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Most open WebSocket connections; more are closed with 1013.
    #[arg(long, env = "SPACESYNC_MAX_CONNECTIONS", default_value_t = ServerConfig::default().max_connections)]
    max_connections: usize,
    /// Largest WebSocket message in bytes; larger ones close the connection with 1009.
    #[arg(long, env = "SPACESYNC_MAX_MESSAGE_BYTES", default_value_t = ServerConfig::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Most ops in one submit.
    #[arg(long, env = "SPACESYNC_MAX_OPS_PER_BATCH", default_value_t = ServerConfig::default().max_ops_per_batch)]
    max_ops_per_batch: usize,
    /// How long an op may wait for its dependencies (`5s`, `500ms`).
    #[arg(long, env = "SPACESYNC_HOLD_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    hold_timeout: std::time::Duration,
    /// A snapshot after this many ops of a space.
    #[arg(long, env = "SPACESYNC_SNAPSHOT_EVERY", default_value_t = ServerConfig::default().snapshot_every)]
    snapshot_every: u64,
    /// Committed ops each space keeps in memory for resuming clients (older resume points
    /// are served from the log); about 1 KB each.
    #[arg(long, env = "SPACESYNC_RESUME_WINDOW", default_value_t = ServerConfig::default().resume_window)]
    resume_window: usize,
    /// Store transactions the group committer keeps in flight at once.
    #[arg(long, env = "SPACESYNC_COMMIT_CONCURRENCY", default_value_t = ServerConfig::default().commit_concurrency)]
    commit_concurrency: usize,
}

impl LimitArgs {
    fn config(&self) -> ServerConfig {
        let mut config = ServerConfig {
            max_connections: self.max_connections,
            max_message_bytes: self.max_message_bytes,
            max_ops_per_batch: self.max_ops_per_batch,
            snapshot_every: self.snapshot_every.max(1),
            commit_concurrency: self.commit_concurrency.max(1),
            resume_window: self.resume_window,
            ..ServerConfig::default()
        };
        config.space.hold_timeout_ms =
            u64::try_from(self.hold_timeout.as_millis()).unwrap_or(u64::MAX);
        config
    }
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// WebSocket URL of the server to load (`ws://host:port/ws`). Without it, a server with
    /// the defaults of `serve` is started in this process: on --database-url if given, else on
    /// a fresh embedded store in a temporary directory (removed afterwards; --data-dir is not
    /// used, so a load never writes into your data).
    #[arg(long)]
    server: Option<String>,
    /// Spaces to load, each with its own clients and ops (fresh space ids for every run).
    #[arg(long, default_value_t = 10)]
    spaces: usize,
    /// Clients (connections) per space; each sees the others' ops as broadcasts.
    #[arg(long, default_value_t = 2)]
    clients_per_space: usize,
    /// Measured time, after the warmup (`10s`, `500ms`, `2m`, or seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: std::time::Duration,
    /// Time the load runs before measuring starts (its ops are checked, not measured).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: std::time::Duration,
    /// Offered load in steps per second over all clients (open loop). Without it: closed
    /// loop, one step in flight per client.
    #[arg(long)]
    rate: Option<f64>,
    /// Seed of the workload: the same seed sends the same ops in the same order per client.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability per connection step of sending a dependent before its dependency.
    #[arg(long, default_value_t = 0.0)]
    misorder: f64,
    /// Probability per step of resending an acknowledged op.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Probability per step of a poison op (malformed or unknown).
    #[arg(long, default_value_t = 0.0)]
    poison: f64,
    /// Probability per step of dropping the connection, resuming and resending.
    #[arg(long, default_value_t = 0.0)]
    reconnects: f64,
    /// Speak JSON instead of MessagePack.
    #[arg(long)]
    json_frames: bool,
    /// Print only the final JSON line (no progress, no summary).
    #[arg(long)]
    json: bool,
    /// With a self-started server on PostgreSQL: apply pending migrations first.
    #[arg(long)]
    migrate: bool,
    #[command(flatten)]
    database: Database,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(index) => text.split_at(index),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
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
    tune_allocator();
    let cli = Cli::parse();
    // A load run prints its own progress; the server it starts only speaks up on trouble.
    let default_filter = match cli.command {
        Command::Load(_) => "warn",
        _ => "info,refinery_core=warn",
    };
    init_logging(cli.log_format, default_filter);
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

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
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
async fn store(database: &Database, pool_size: usize) -> anyhow::Result<(Arc<dyn Store>, bool)> {
    match database.url() {
        Some(url) => {
            let store =
                PgStore::connect(url, pool_size).map_err(|error| CannotRun(error.to_string()))?;
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
            limits,
        } => serve(listen, &database, migrate, limits.config()).await,
        Command::Migrate { database } => {
            let (store, _) = store(&database, 2).await?;
            let status = store
                .migrate()
                .await
                .map_err(|error| CannotRun(format!("cannot migrate: {error}")))?;
            println!("schema is current: migrations {:?} applied", status.applied);
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { database } => doctor(&database).await,
        Command::Quarantine { database, command } => quarantine(&database, command).await,
        Command::Load(args) => load(*args).await,
    }
}

async fn serve(
    listen: SocketAddr,
    database: &Database,
    migrate: bool,
    config: ServerConfig,
) -> anyhow::Result<ExitCode> {
    let (store, fresh) = store(database, config.pool_size).await?;
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
    let signals = Signals::install()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| CannotRun(format!("cannot listen on {listen}: {error}")))?;
    let server = Server::start(config, store, listener)?;
    let address = server.local_addr();
    tracing::info!(%address, store = %description, "spacesync serving");
    eprintln!(
        "spacesync {} serving on ws://{address}/ws (health: http://{address}/healthz)\nstore: {description}",
        env!("CARGO_PKG_VERSION")
    );
    signals.wait().await;
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

/// SIGINT or SIGTERM. Installed before the server announces itself, so a signal that
/// follows the announcement is never missed.
#[cfg(unix)]
struct Signals(tokio::signal::unix::Signal, tokio::signal::unix::Signal);

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals(
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.0.recv() => {}
            _ = self.1.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn doctor(database: &Database) -> anyhow::Result<ExitCode> {
    let (store, _) = store(database, 2).await?;
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
    let (store, _) = store(database, 2).await?;
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
                // Columns as wide as their widest value, so long ids stay aligned.
                let width = |header: &str, value: fn(&QuarantineEntry) -> &str| {
                    entries
                        .iter()
                        .map(|entry| value(entry).chars().count())
                        .chain([header.len()])
                        .max()
                        .unwrap_or_default()
                };
                let space_width = width("space", |entry| &entry.space_id);
                let operation_width = width("operation", |entry| &entry.operation_id);
                let code_width = width("code", |entry| &entry.code);
                let name_width = width("name", |entry| &entry.name);
                println!(
                    "{:<space_width$}  {:<operation_width$}  {:<code_width$}  {:<name_width$}  {:>8}  detail",
                    "space", "operation", "code", "name", "attempts"
                );
                for entry in &entries {
                    println!(
                        "{:<space_width$}  {:<operation_width$}  {:<code_width$}  {:<name_width$}  {:>8}  {}",
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
                .append(&[NewLogEntry::of(
                    space,
                    applied.seq,
                    applied.operation_id.clone(),
                    entry.client_id.clone(),
                    &applied.op,
                )])
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

async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    // Without --server: a server of our own, on the configured database or a fresh embedded
    // store in a temporary directory.
    let mut own = None;
    let mut temporary = None;
    let server_url = match &args.server {
        Some(url) => url.clone(),
        None => {
            let store: Arc<dyn Store> = match args.database.url() {
                Some(url) => {
                    let store =
                        PgStore::connect(url, 16).map_err(|error| CannotRun(error.to_string()))?;
                    let status = if args.migrate {
                        store.migrate().await
                    } else {
                        store.schema_status().await
                    }
                    .map_err(|error| CannotRun(error.to_string()))?;
                    if !status.pending.is_empty() {
                        return Err(CannotRun("the database schema is behind: pass --migrate or run `spacesync migrate`".to_owned()).into());
                    }
                    Arc::new(store)
                }
                None => {
                    let dir = tempfile::tempdir().map_err(|error| CannotRun(error.to_string()))?;
                    let store = SqliteStore::open(dir.path())
                        .map_err(|error| CannotRun(error.to_string()))?;
                    Store::migrate(&store)
                        .await
                        .map_err(|error| CannotRun(error.to_string()))?;
                    temporary = Some(dir);
                    Arc::new(store)
                }
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let server = Server::start(ServerConfig::default(), store.clone(), listener)?;
            let url = format!("ws://{}/ws", server.local_addr());
            if !args.json {
                eprintln!("load: started a server on {url} ({})", store.describe());
            }
            own = Some((server, store));
            url
        }
    };
    let config = spacesync_load::LoadConfig {
        server: server_url,
        spaces: args.spaces.max(1),
        clients_per_space: args.clients_per_space.max(1),
        duration: args.duration,
        warmup: args.warmup,
        rate: args.rate,
        seed: args.seed,
        faults: spacesync_load::workload::Faults {
            misorder: args.misorder,
            duplicates: args.duplicates,
            poison: args.poison,
        },
        reconnects: args.reconnects,
        format: if args.json_frames {
            spacesync_protocol::Format::Json
        } else {
            spacesync_protocol::Format::MessagePack
        },
        progress: !args.json,
        run_id: spacesync_load::fresh_run_id(),
    };
    let mut report = spacesync_load::run(config.clone())
        .await
        .map_err(|error| CannotRun(error.to_string()))?;
    if let Some((server, store)) = own {
        // With the store at hand: exactly the poison ops are quarantined.
        let mut spaces: Vec<String> = (0..config.spaces)
            .map(|index| format!("{}-s{index}", config.run_id))
            .collect();
        spaces.sort();
        let mut quarantined = Vec::new();
        for space in &spaces {
            for entry in store.quarantine_list(Some(space), i64::MAX).await? {
                quarantined.push((entry.space_id, entry.operation_id));
            }
        }
        quarantined.sort();
        let mut expected = report.poison_ids.clone();
        expected.sort();
        if quarantined != expected {
            report.errors += 1;
            report.error_samples.push(format!(
                "the quarantine holds {} ops, {} poison ops were sent",
                quarantined.len(),
                expected.len()
            ));
        }
        server.shutdown().await;
    }
    drop(temporary);
    if !args.json {
        eprintln!("{}", report.summary());
    }
    println!("{}", report.to_json(&config));
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
