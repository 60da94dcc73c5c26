//! Server settings. Every limit has a default documented in `docs/operations.md`.

use std::sync::Arc;
use std::time::Duration;

use spacesync_core::SpaceConfig;
use spacesync_protocol::Operation;

/// Called before each op is applied, inside the actor's panic guard. Tests use it to inject a
/// panic into one actor; production servers leave it unset.
pub type FaultHook = Arc<dyn Fn(&str, &Operation) + Send + Sync>;

/// Settings of one server.
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest WebSocket message (and HTTP body) accepted, in bytes.
    pub max_message_bytes: usize,
    /// Largest `POST /operations` body, in bytes (larger: 413, nothing applied).
    pub max_http_body_bytes: usize,
    /// How long `POST /operations` waits for every op's answer; ops still unanswered then
    /// (the store is down) are reported 503.
    pub http_answer_timeout: Duration,
    /// Most ops in one `submit`.
    pub max_ops_per_batch: usize,
    /// Most open WebSocket connections; more are closed with 1013.
    pub max_connections: usize,
    /// Messages queued for one connection before it is closed as a slow consumer (4001).
    pub outbound_queue: usize,
    /// Messages queued for one space actor before submits are refused as `overloaded`.
    pub mailbox: usize,
    /// How often the server pings a connection.
    pub ping_interval: Duration,
    /// A connection that sends nothing (not even a pong) for this long is closed (4002).
    pub idle_timeout: Duration,
    /// Time a new connection has to send `hello`.
    pub hello_timeout: Duration,
    /// Hold limits of each space.
    pub space: SpaceConfig,
    /// A snapshot is written after this many ops since the last one (and when a space unloads).
    pub snapshot_every: u64,
    /// Ops kept in memory per space for resuming clients.
    pub resume_window: usize,
    /// Resume points older than memory are served from the log when at most this many ops
    /// behind; older ones get the whole space.
    pub resume_from_log: u64,
    /// Most ops in one answer to `readLog` (a page also ends once its ops' JSON passes
    /// `max_message_bytes`).
    pub log_page: usize,
    /// A space with no members and nothing pending unloads after this long.
    pub unload_after: Duration,
    /// Presence is coalesced and relayed once per tick (at most one message per client per
    /// tick: the rate limit).
    pub presence_tick: Duration,
    /// Most log rows in one commit.
    pub max_commit_rows: usize,
    /// Commits in flight at once (each may carry many spaces).
    pub commit_concurrency: usize,
    /// Database connections for loads, snapshots, lookups and quarantine writes. Commits
    /// have `commit_concurrency` connections of their own on top.
    pub pool_size: usize,
    /// How long a graceful shutdown waits for actors to flush before giving up.
    pub shutdown_timeout: Duration,
    /// Test-only fault injection; see [`FaultHook`].
    pub fault: Option<FaultHook>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_message_bytes: 1 << 20,
            max_http_body_bytes: 8 << 20,
            http_answer_timeout: Duration::from_secs(15),
            max_ops_per_batch: 500,
            max_connections: 20_000,
            outbound_queue: 1_024,
            mailbox: 4_096,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            space: SpaceConfig::default(),
            snapshot_every: 1_000,
            resume_window: 1_000,
            resume_from_log: 10_000,
            log_page: 1_000,
            unload_after: Duration::from_secs(60),
            presence_tick: Duration::from_millis(50),
            max_commit_rows: 5_000,
            commit_concurrency: 2,
            pool_size: 8,
            shutdown_timeout: Duration::from_secs(30),
            fault: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerConfig")
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_ops_per_batch", &self.max_ops_per_batch)
            .field("max_connections", &self.max_connections)
            .field("outbound_queue", &self.outbound_queue)
            .field("mailbox", &self.mailbox)
            .field("space", &self.space)
            .field("snapshot_every", &self.snapshot_every)
            .field("fault", &self.fault.is_some())
            .finish_non_exhaustive()
    }
}
