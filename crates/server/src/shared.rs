//! State shared by every task of one server: settings, store, the registry of space actors,
//! the committer, metrics and the shutdown signals.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
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
use crate::peer::{Peer, signal};

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
    /// Cancelled first on shutdown ([`Shared::stop_reading`]): connections stop reading, no
    /// new actors start.
    pub stop_reading: CancellationToken,
    /// Cancelled after every actor flushed ([`Shared::close_connections`]): connections send
    /// what is queued, then close 1001.
    pub closing: CancellationToken,
    /// Every connection past its hello, told of the two steps above by its own signal bits
    /// (see [`Peer`]), which cost it less to watch than the shared tokens.
    peers: DashMap<u64, Weak<Peer>>,
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
            peers: DashMap::new(),
            clock: Instant::now(),
            open_connections: AtomicUsize::new(0),
            snapshot_slots: tokio::sync::Semaphore::new(2),
            next_id: AtomicU64::new(1),
        }
    }

    /// Registers a connection for the shutdown signals until the returned guard is dropped.
    /// A connection that registers after a step began is told of it at once.
    pub fn register_peer(self: &Arc<Self>, peer: &Arc<Peer>) -> PeerRegistration {
        self.peers.insert(peer.id, Arc::downgrade(peer));
        // After the insert: a step that began before it did not see this peer (the map's lock
        // orders the two), so its token is already cancelled here.
        let mut bits = 0;
        if self.stop_reading.is_cancelled() {
            bits |= signal::STOP_READING;
        }
        if self.closing.is_cancelled() {
            bits |= signal::CLOSING;
        }
        if bits != 0 {
            peer.raise(bits);
        }
        PeerRegistration {
            shared: self.clone(),
            peer_id: peer.id,
        }
    }

    /// Shutdown, first step: connections stop reading and no new actors start.
    pub fn stop_reading(&self) {
        self.stop_reading.cancel();
        self.raise_all(signal::STOP_READING);
    }

    /// Shutdown, after every actor flushed: connections send what is queued and close 1001.
    pub fn close_connections(&self) {
        self.closing.cancel();
        self.raise_all(signal::CLOSING);
    }

    fn raise_all(&self, bits: u8) {
        for entry in &self.peers {
            if let Some(peer) = entry.value().upgrade() {
                peer.raise(bits);
            }
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
    pub fn dispatch(self: &Arc<Self>, space_id: &str, msg: ActorMsg) -> Result<(), DispatchError> {
        self.dispatch_cached(space_id, &mut None, msg)
    }

    /// [`Shared::dispatch`] through the mailbox a connection kept for a space it joined:
    /// `cached` is tried first and replaced when its actor has ended (unloaded, failed, or
    /// stopped), so a busy connection neither looks the space up in the registry nor copies
    /// its id for every submit.
    pub fn dispatch_cached(
        self: &Arc<Self>,
        space_id: &str,
        cached: &mut Option<ActorHandle>,
        mut msg: ActorMsg,
    ) -> Result<(), DispatchError> {
        loop {
            let handle = match cached.take() {
                Some(handle) => handle,
                None => {
                    if self.stop_reading.is_cancelled() && !self.registry.contains_key(space_id) {
                        return Err(DispatchError::ShuttingDown(msg));
                    }
                    match self.registry.get(space_id) {
                        Some(entry) => entry.clone(),
                        None => self
                            .registry
                            .entry(space_id.to_owned())
                            .or_insert_with(|| actor::spawn(self.clone(), space_id.to_owned()))
                            .clone(),
                    }
                }
            };
            match handle.tx.try_send(msg) {
                Ok(()) => {
                    *cached = Some(handle);
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Full(returned)) => {
                    *cached = Some(handle);
                    return Err(DispatchError::Overloaded(returned));
                }
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    // The actor ended (unloaded, failed, or stopped) after it was looked up
                    // or kept: forget it, and its registry entry if that is still its own.
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

/// A connection's place in [`Shared`]'s registry, removed when dropped.
#[derive(Debug)]
pub struct PeerRegistration {
    shared: Arc<Shared>,
    peer_id: u64,
}

impl Drop for PeerRegistration {
    fn drop(&mut self) {
        self.shared.peers.remove(&self.peer_id);
    }
}

#[cfg(test)]
mod tests {
    use spacesync_protocol::Format;
    use spacesync_store::SqliteStore;

    use super::*;

    fn peer(shared: &Shared) -> (Arc<Peer>, mpsc::Receiver<crate::peer::Outbound>) {
        let (tx, rx) = mpsc::channel(1);
        let peer = Peer::new(shared.next_id(), "client".to_owned(), Format::Json, tx);
        (Arc::new(peer), rx)
    }

    async fn raised(peer: &Peer) -> u8 {
        std::future::poll_fn(|cx| peer.poll_signals(0, cx)).await
    }

    #[tokio::test]
    async fn connections_hear_each_shutdown_step_whenever_they_registered() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let shared = Arc::new(Shared::new(ServerConfig::default(), store));
        let (early, _early_rx) = peer(&shared);
        let early_registration = shared.register_peer(&early);

        shared.stop_reading();
        assert_eq!(raised(&early).await, signal::STOP_READING);
        // One that registers after the step began hears it at once.
        let (late, _late_rx) = peer(&shared);
        let _late_registration = shared.register_peer(&late);
        assert_eq!(raised(&late).await, signal::STOP_READING);

        // A connection that ended is no longer told anything.
        drop(early_registration);
        shared.close_connections();
        assert_eq!(raised(&late).await, signal::STOP_READING | signal::CLOSING);
        assert_eq!(raised(&early).await, signal::STOP_READING);
        assert!(
            !late.is_closed() && !early.is_closed(),
            "shutdown kills no one"
        );
    }

    #[tokio::test]
    async fn a_kept_mailbox_whose_actor_ended_is_replaced_by_a_fresh_actor() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("store");
        store.migrate().await.expect("schema");
        let shared = Arc::new(Shared::new(ServerConfig::default(), Arc::new(store)));
        let mut cached = None;
        shared
            .dispatch_cached("space-a", &mut cached, ActorMsg::Shutdown)
            .expect("dispatched");
        let first = cached.clone().expect("the mailbox is kept");
        tokio::time::timeout(std::time::Duration::from_secs(10), first.tx.closed())
            .await
            .expect("the actor stops");

        let (reply, answer) = tokio::sync::oneshot::channel();
        shared
            .dispatch_cached("space-a", &mut cached, ActorMsg::Download { reply })
            .expect("dispatched to a fresh actor");
        let second = cached.expect("the new mailbox is kept");
        assert_ne!(second.generation, first.generation);
        let download = tokio::time::timeout(std::time::Duration::from_secs(10), answer)
            .await
            .expect("answered")
            .expect("not dropped");
        assert!(
            matches!(download, Ok(None)),
            "an empty space has nothing to download"
        );
    }
}
