//! Prometheus metrics (`GET /metrics`). Names are listed in `docs/operations.md`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub connections_refused: Counter,
    pub connections_closed: Family<Labels, Counter>,
    pub actors: Gauge,
    pub actor_loads: Counter,
    pub actor_load_failures: Counter,
    pub actor_panics: Counter,
    pub ops_accepted: Counter,
    pub ops_duplicate: Counter,
    pub ops_held: Counter,
    pub ops_rejected: Family<Labels, Counter>,
    pub quarantined: Counter,
    pub broadcasts: Counter,
    pub commit_seconds: Histogram,
    /// From an op's arrival at the server to its ack (its first arrival, for resends).
    pub ack_seconds: Histogram,
    /// From an actor handing a batch to the committer to its answer: queue plus commit.
    pub commit_wait_seconds: Histogram,
    pub commit_rows: Histogram,
    pub commit_retries: Counter,
    pub snapshots_written: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("spacesync");
        let metrics = Metrics {
            connections: Gauge::default(),
            connections_refused: Counter::default(),
            connections_closed: Family::default(),
            actors: Gauge::default(),
            actor_loads: Counter::default(),
            actor_load_failures: Counter::default(),
            actor_panics: Counter::default(),
            ops_accepted: Counter::default(),
            ops_duplicate: Counter::default(),
            ops_held: Counter::default(),
            ops_rejected: Family::default(),
            quarantined: Counter::default(),
            broadcasts: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            ack_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            commit_wait_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            commit_rows: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            commit_retries: Counter::default(),
            snapshots_written: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open WebSocket connections",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once because the connection limit was reached",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections closed, by close code",
            metrics.connections_closed.clone(),
        );
        registry.register("actors", "Space actors in memory", metrics.actors.clone());
        registry.register(
            "actor_loads",
            "Spaces loaded from the store",
            metrics.actor_loads.clone(),
        );
        registry.register(
            "actor_load_failures",
            "Space loads that failed",
            metrics.actor_load_failures.clone(),
        );
        registry.register(
            "actor_panics",
            "Panics contained inside space actors",
            metrics.actor_panics.clone(),
        );
        registry.register(
            "ops_accepted",
            "Ops made durable",
            metrics.ops_accepted.clone(),
        );
        registry.register(
            "ops_duplicate",
            "Replays of accepted ops, answered with their original seq",
            metrics.ops_duplicate.clone(),
        );
        registry.register(
            "ops_held",
            "Ops held for a dependency",
            metrics.ops_held.clone(),
        );
        registry.register(
            "ops_rejected",
            "Ops rejected, by code",
            metrics.ops_rejected.clone(),
        );
        registry.register(
            "quarantined",
            "Quarantine writes (new poison ops and repeated attempts)",
            metrics.quarantined.clone(),
        );
        registry.register(
            "broadcasts",
            "Broadcast messages queued to connections",
            metrics.broadcasts.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time to commit one batch of log rows",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "ack_seconds",
            "Time from an op's arrival at the server to its acknowledgement (after the commit)",
            metrics.ack_seconds.clone(),
        );
        registry.register(
            "commit_wait_seconds",
            "Time a space waits for its batch to be durable: the committer's queue plus the commit",
            metrics.commit_wait_seconds.clone(),
        );
        registry.register(
            "commit_rows",
            "Log rows per commit",
            metrics.commit_rows.clone(),
        );
        registry.register(
            "commit_retries",
            "Commits retried after a transient store error",
            metrics.commit_retries.clone(),
        );
        registry.register(
            "snapshots_written",
            "Space snapshots written",
            metrics.snapshots_written.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    pub fn rejected(&self, code: &'static str) {
        self.ops_rejected.get_or_create(&vec![("code", code)]).inc();
    }

    pub fn closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
