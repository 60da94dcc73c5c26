//! State shared by every task of one server: settings, store, the registry of space actors,
//! the committer, metrics and the shutdown signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use spacesync_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actor::{self, ActorMsg};
use crate::committer::Committer;
use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// A running actor's mailbox. `generation` tells an actor's entry from a later one of the
/// same space, so an actor that unloads removes only its own entry.
#[derive(Debug, Clone)]
pub struct ActorHandle {
    pub tx: mpsc::Sender<ActorMsg>,
    pub generation: u64,
}

/// Why a message could not be handed to a space actor.
#[derive(Debug)]
pub enum DispatchError {
    /// The actor's mailbox is full: answer `overloaded` (retryable).
    Overloaded(ActorMsg),
    /// The server is shutting down: answer `shutting_down` (retryable).
    ShuttingDown(ActorMsg),
}

/// Everything the tasks of one server share.
#[derive(Debug)]
pub struct Shared {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub registry: DashMap<String, ActorHandle>,
    pub committer: Committer,
    pub metrics: Arc<Metrics>,
    /// Space actors, awaited on shutdown.
    pub actors: TaskTracker,
    /// Connections, awaited on shutdown.
    pub connections: TaskTracker,
    /// Cancelled first on shutdown: connections stop reading, no new actors start.
    pub stop_reading: CancellationToken,
    /// Cancelled after every actor flushed: connections send what is queued, then close 1001.
    pub closing: CancellationToken,
    /// The zero of the milliseconds passed to the core.
    pub clock: Instant,
    pub open_connections: AtomicUsize,
    /// Snapshot writes in flight at once (they yield to commits).
    pub snapshot_slots: tokio::sync::Semaphore,
    next_id: AtomicU64,
}

impl Shared {
    pub fn new(config: ServerConfig, store: Arc<dyn Store>) -> Shared {
        let metrics = Arc::new(Metrics::new());
        let committer = Committer::start(
            store.clone(),
            metrics.clone(),
            config.max_commit_rows,
            config.commit_concurrency,
        );
        Shared {
            config,
            store,
            registry: DashMap::new(),
            committer,
            metrics,
            actors: TaskTracker::new(),
            connections: TaskTracker::new(),
            stop_reading: CancellationToken::new(),
            closing: CancellationToken::new(),
            clock: Instant::now(),
            open_connections: AtomicUsize::new(0),
            snapshot_slots: tokio::sync::Semaphore::new(2),
            next_id: AtomicU64::new(1),
        }
    }

    /// A process-unique number (connection ids, actor generations).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Milliseconds since the server started, the core's clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Hands a message to the actor of `space_id`, starting (loading) the actor if none runs.
    pub fn dispatch(
        self: &Arc<Self>,
        space_id: &str,
        mut msg: ActorMsg,
    ) -> Result<(), DispatchError> {
        loop {
            if self.stop_reading.is_cancelled() && !self.registry.contains_key(space_id) {
                return Err(DispatchError::ShuttingDown(msg));
            }
            let handle = self
                .registry
                .entry(space_id.to_owned())
                .or_insert_with(|| actor::spawn(self.clone(), space_id.to_owned()))
                .clone();
            match handle.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(returned)) => {
                    return Err(DispatchError::Overloaded(returned));
                }
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    // The actor ended (unloaded or failed to load) after we looked it up.
                    self.registry
                        .remove_if(space_id, |_, entry| entry.generation == handle.generation);
                    msg = returned;
                }
            }
        }
    }

    /// Hands a message to the actor of `space_id` only if one runs (a leave must not load a
    /// space). Dropped when the mailbox is full: the actor prunes closed members itself.
    pub fn notify(&self, space_id: &str, msg: ActorMsg) {
        if let Some(handle) = self.registry.get(space_id).map(|entry| entry.clone()) {
            let _ = handle.tx.try_send(msg);
        }
    }

    /// Removes an actor's own registry entry (not a later actor's of the same space).
    pub fn unregister(&self, space_id: &str, generation: u64) {
        self.registry
            .remove_if(space_id, |_, entry| entry.generation == generation);
    }
}
