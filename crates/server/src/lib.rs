//! The spacesync server: space actors, group commit, the WebSocket endpoint and the HTTP
//! endpoints on one port. `docs/ARCHITECTURE.md` describes the design and its invariants.
//!
//! ```no_run
//! # async fn example(store: std::sync::Arc<dyn spacesync_store::Store>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = spacesync_server::Server::start(Default::default(), store, listener)?;
//! println!("ws://{}/ws", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod actor;
pub mod committer;
pub mod config;
pub mod connection;
pub mod http;
pub mod kinopio_http;
pub mod metrics;
pub mod peer;
pub mod shared;

use std::net::SocketAddr;
use std::sync::Arc;

use spacesync_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{FaultHook, ServerConfig};
pub use metrics::Metrics;
use shared::Shared;

/// A running server.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop_accepting: CancellationToken,
    serving: JoinHandle<std::io::Result<()>>,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every actor flushed its ops and stopped within the timeout.
    pub actors_flushed: bool,
    /// Every connection was closed with 1001 within the timeout.
    pub connections_closed: bool,
}

impl ShutdownReport {
    pub fn is_clean(&self) -> bool {
        self.actors_flushed && self.connections_closed
    }
}

impl Server {
    /// Starts serving on `listener`. The store must already be migrated.
    pub fn start(
        config: ServerConfig,
        store: Arc<dyn Store>,
        listener: TcpListener,
    ) -> std::io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, store));
        let stop_accepting = CancellationToken::new();
        let app = http::router(shared.clone());
        let stop = stop_accepting.clone();
        // Acks and broadcasts are small frames that must leave at once: no Nagle delay.
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
        });
        let serving = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Ok(Server {
            shared,
            local_addr,
            stop_accepting,
            serving,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Number of space actors in memory.
    pub fn loaded_spaces(&self) -> usize {
        self.shared.registry.len()
    }

    /// Graceful shutdown: stop accepting, stop reading, let every actor apply and commit
    /// what it has and answer it, then send each connection what is queued and close it
    /// with 1001.
    pub async fn shutdown(self) -> ShutdownReport {
        let timeout = self.shared.config.shutdown_timeout;
        self.stop_accepting.cancel();
        self.shared.stop_reading();
        self.shared.actors.close();
        let actors_flushed = tokio::time::timeout(timeout, self.shared.actors.wait())
            .await
            .is_ok();
        if !actors_flushed {
            tracing::error!(
                spaces = self.shared.registry.len(),
                "shutdown timed out waiting for spaces to flush; their unacknowledged ops were not applied"
            );
        }
        self.shared.close_connections();
        self.shared.connections.close();
        let connections_closed = tokio::time::timeout(timeout, self.shared.connections.wait())
            .await
            .is_ok();
        let _ = tokio::time::timeout(timeout, self.serving).await;
        ShutdownReport {
            actors_flushed,
            connections_closed,
        }
    }
}
