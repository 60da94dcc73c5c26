//! `spacesync load`: drives a spacesync server with many spaces × clients over the native
//! protocol, measures acknowledged throughput and latency (HDR histogram), and checks at the
//! end that nothing was lost, duplicated or diverged:
//!
//! - every acknowledged op is in its space's log exactly once, at the seq it was acked with;
//! - every space's sequence numbers are gapless;
//! - every client's view (what it saw: its acks and the broadcasts) equals a fresh download;
//! - every injected poison op was rejected and is remembered (a resend is refused at once),
//!   and no good op was rejected.
//!
//! Closed loop (the default): each client has one step in flight and sends the next after its
//! answers. Open loop (`rate`): steps are sent on a schedule whatever the answers, and latency
//! is measured from the scheduled time, so a slow server cannot hide queueing.

pub mod server_metrics;
pub mod workload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use indexmap::IndexMap;
use serde_json::{Value, json};
use spacesync_client::{Client, ClientError, ClientReceiver, ClientSender};
use spacesync_core::kinopio::{import, normalized};
use spacesync_core::{Space, SpaceConfig};
use spacesync_protocol::{
    ClientMessage, DecodeError, EncodeError, Format, Operation, RejectCode, Seq, ServerMessage,
};
use tokio::time::Instant;

use crate::workload::{Faults, StepKind, Workload};

/// How long the end-of-run phases wait for answers and catch-up before counting a failure.
const PATIENCE: Duration = Duration::from_secs(30);

/// Most ops a client sends again at once (after a reconnect, or refused as retryable).
const RESEND_WINDOW: usize = 256;

/// How long an op refused as retryable first waits before it is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Sleeps until `at` (forever when `None`: the branch using it is disabled then).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`.
    pub server: String,
    pub spaces: usize,
    pub clients_per_space: usize,
    /// Measured time (after the warmup).
    pub duration: Duration,
    /// Time before measuring starts (load runs, nothing is counted).
    pub warmup: Duration,
    /// Offered steps per second over all clients (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    pub seed: u64,
    pub faults: Faults,
    /// Probability per step that the client drops its connection, reconnects, resumes by
    /// seq and resends what was not answered.
    pub reconnects: f64,
    pub format: Format,
    /// Print a progress line every second to stderr.
    pub progress: bool,
    /// Prefix of the space, client and op ids; [`fresh_run_id`] gives each run its own.
    pub run_id: String,
}

impl Default for LoadConfig {
    fn default() -> LoadConfig {
        LoadConfig {
            server: "ws://127.0.0.1:8080/ws".to_owned(),
            spaces: 10,
            clients_per_space: 2,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            rate: None,
            seed: 1,
            faults: Faults {
                misorder: 0.0,
                duplicates: 0.0,
                poison: 0.0,
            },
            reconnects: 0.0,
            format: Format::MessagePack,
            progress: true,
            run_id: fresh_run_id(),
        }
    }
}

/// A prefix for the space, client and op ids of one run that no other run shares: the
/// process id, the time in milliseconds and a count within the process (all hexadecimal, so
/// the op ids of even a huge run stay within the 64 characters the server accepts). The
/// process id alone repeats (a harness in a container is often pid 1), and a run that met an
/// earlier run's spaces on a long-lived server would fail its check.
pub fn fresh_run_id() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("load-{:x}-{millis:x}-{run:x}", std::process::id())
}

/// What a run measured and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub acked: u64,
    pub acked_ops_per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The server's own ack latency over the measured window (`spacesync_ack_seconds`, from
    /// its `/metrics`): arrival at the server → ack. `None` when it has no such endpoint.
    pub server_ack_p50_ms: Option<f64>,
    pub server_ack_p99_ms: Option<f64>,
    /// The highest p99 of any one second of the measured window: a stall shows here even when
    /// it is too short to move the whole run's p99.
    pub worst_second_p99_ms: f64,
    pub fanout_per_s: f64,
    /// Permanent rejections of the poison ops (expected).
    pub rejected: u64,
    pub poison_sent: u64,
    pub duplicates_sent: u64,
    /// Reconnects the harness injected (`reconnects` rate).
    pub reconnects: u64,
    /// Connections the server or the network ended (a restart, 1001, a slow consumer), after
    /// which the client reconnected, resumed and resent: not an error.
    pub disconnects: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub diverged: u64,
    /// Everything else that went wrong: good ops rejected, poison accepted or not
    /// remembered, wrong duplicate seqs, gaps, protocol errors, timeouts.
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub final_seqs: u64,
    /// `(space, operationId)` of every op the server must have quarantined: the poison ops
    /// and the `overtaken` ones, for a check against the quarantine.
    pub poison_ids: Vec<(String, String)>,
    /// Good ops of an open loop refused `reference_deleted` because the client's own later
    /// delete of their item overtook them while they waited for a retry: the right answer.
    pub overtaken: u64,
}

impl Report {
    /// Nothing lost, duplicated or diverged, and no other error.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.diverged == 0 && self.errors == 0
    }

    /// The final JSON line.
    pub fn to_json(&self, config: &LoadConfig) -> Value {
        json!({
            "acked_ops_per_s": round(self.acked_ops_per_s),
            "p50_ms": round(self.p50_ms), "p95_ms": round(self.p95_ms),
            "p99_ms": round(self.p99_ms), "max_ms": round(self.max_ms),
            "server_ack_p50_ms": self.server_ack_p50_ms.map(round),
            "server_ack_p99_ms": self.server_ack_p99_ms.map(round),
            "worst_second_p99_ms": round(self.worst_second_p99_ms),
            "fanout_per_s": round(self.fanout_per_s),
            "acked": self.acked, "rejected": self.rejected,
            "poison_sent": self.poison_sent, "duplicates_sent": self.duplicates_sent,
            "reconnects": self.reconnects, "disconnects": self.disconnects,
            "overtaken": self.overtaken,
            "lost": self.lost, "duplicated": self.duplicated, "diverged": self.diverged,
            "errors": self.errors, "ops_in_logs": self.final_seqs,
            "spaces": config.spaces, "clients_per_space": config.clients_per_space,
            "duration_s": config.duration.as_secs_f64(), "warmup_s": config.warmup.as_secs_f64(),
            "rate": config.rate, "seed": config.seed,
            "misorder": config.faults.misorder, "duplicates": config.faults.duplicates,
            "poison": config.faults.poison, "reconnect_rate": config.reconnects,
            "format": match config.format { Format::MessagePack => "msgpack", Format::Json => "json" },
            "server": config.server,
        })
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        format!(
            "acked {} ops ({:.0}/s), latency p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             worst second's p99 {:.2} ms; fan-out {:.0} broadcasts/s\n\
             server-side (arrival to ack): {}\n\
             poison sent {} (rejected {}), duplicates sent {}, reconnects {}, disconnects {}, overtaken {}\n\
             check: lost {}, duplicated {}, diverged {}, errors {} -> {}{}",
            self.acked,
            self.acked_ops_per_s,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.max_ms,
            self.worst_second_p99_ms,
            self.fanout_per_s,
            match (self.server_ack_p50_ms, self.server_ack_p99_ms) {
                (Some(p50), Some(p99)) => format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
                _ => "not reported by the server".to_owned(),
            },
            self.poison_sent,
            self.rejected,
            self.duplicates_sent,
            self.reconnects,
            self.disconnects,
            self.overtaken,
            self.lost,
            self.duplicated,
            self.diverged,
            self.errors,
            if self.is_clean() { "OK" } else { "FAILED" },
            self.error_samples
                .iter()
                .map(|sample| format!("\n  {sample}"))
                .collect::<String>()
        )
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Why a run could not be carried out (as opposed to a run that found problems).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot reach the server: {0}")]
    Connect(#[from] ClientError),
    #[error("{0}")]
    Protocol(String),
}

/// Counters shared by the clients and the progress printer.
struct Stats {
    measuring: AtomicBool,
    acked: AtomicU64,
    broadcasts: AtomicU64,
    errors: AtomicU64,
    histogram: Mutex<Histogram<u64>>,
    /// This second's latencies; `second_p99` empties it.
    interval: Mutex<Histogram<u64>>,
    /// The highest p99 of a second so far, in µs.
    worst_second_us: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Stats {
    fn error(&self, sample: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut samples) = self.samples.lock()
            && samples.len() < 10
        {
            samples.push(sample);
        }
    }

    fn latency(&self, micros: u64) {
        for histogram in [&self.histogram, &self.interval] {
            if let Ok(mut histogram) = histogram.lock() {
                let _ = histogram.record(micros.max(1));
            }
        }
    }

    /// The p99 of the latencies since the last call, in µs (0 if none), folded into the worst.
    fn second_p99(&self) -> u64 {
        let p99 = self
            .interval
            .lock()
            .map(|mut histogram| {
                let p99 = if histogram.is_empty() {
                    0
                } else {
                    histogram.value_at_quantile(0.99)
                };
                histogram.reset();
                p99
            })
            .unwrap_or(0);
        self.worst_second_us.fetch_max(p99, Ordering::Relaxed);
        p99
    }
}

/// Microseconds from 1 µs to 10 minutes, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid bounds")
}

/// An op a client saw, kept for the end-of-run check as MessagePack: a quarter of the memory
/// of the decoded op. Keeping decoded ops made fresh memory (page faults) a seventh of the
/// harness's CPU, taken from the server it shares the machine with.
struct Kept(Result<Box<[u8]>, String>);

impl Kept {
    fn new(op: &Operation, scratch: &mut Vec<u8>) -> Kept {
        Kept(pack(op, scratch).map_err(|error| format!("cannot keep an op: {error}")))
    }

    fn op(&self) -> Result<Operation, String> {
        match &self.0 {
            Ok(bytes) => unpack(bytes).map_err(|error| format!("cannot read a kept op: {error}")),
            Err(error) => Err(error.clone()),
        }
    }
}

/// `op` as MessagePack: encoded into the client's scratch buffer, then copied once into a box
/// of exactly its size.
fn pack(op: &Operation, scratch: &mut Vec<u8>) -> Result<Box<[u8]>, EncodeError> {
    scratch.clear();
    Format::MessagePack.encode_into(op, scratch)?;
    Ok(Box::from(scratch.as_slice()))
}

fn unpack(bytes: &[u8]) -> Result<Operation, DecodeError> {
    Format::MessagePack.decode(bytes, usize::MAX)
}

/// The ops a client saw, by seq. They arrive in seq order but for resumes, so they are
/// appended as they come and sorted only when read (and only if something came out of order).
/// A later op for the same seq replaces an earlier one. A `BTreeMap` here was a twentieth of
/// the harness's CPU: one search of a cold tree per op, for 400 clients.
struct View {
    entries: Vec<(Seq, Kept)>,
    sorted: bool,
}

impl View {
    fn new() -> View {
        View {
            entries: Vec::new(),
            sorted: true,
        }
    }

    fn insert(&mut self, seq: Seq, kept: Kept) {
        if self.entries.last().is_some_and(|(last, _)| *last >= seq) {
            self.sorted = false;
        }
        self.entries.push((seq, kept));
    }

    /// Forgets everything up to `seq` (a snapshot covers it).
    fn forget_through(&mut self, seq: Seq) {
        self.entries.retain(|(known, _)| *known > seq);
    }

    /// In seq order, one entry per seq, the last one inserted.
    fn sorted(&mut self) -> &[(Seq, Kept)] {
        if !self.sorted {
            // Stable: entries of one seq stay in arrival order, and the last one is kept.
            self.entries.sort_by_key(|(seq, _)| *seq);
            self.entries.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(later, kept);
                }
                same
            });
            self.sorted = true;
        }
        &self.entries
    }

    /// The highest seq reached from `from` without a gap.
    fn contiguous_from(&mut self, from: Seq) -> Seq {
        let entries = self.sorted();
        let start = entries.partition_point(|(seq, _)| *seq <= from);
        let mut reached = from;
        for (seq, _) in &entries[start..] {
            if *seq != reached + 1 {
                break;
            }
            reached = *seq;
        }
        reached
    }

    /// The entries with `from <= seq <= to`, in order.
    fn range(&mut self, from: Seq, to: Seq) -> &[(Seq, Kept)] {
        let entries = self.sorted();
        let start = entries.partition_point(|(seq, _)| *seq < from);
        let end = entries.partition_point(|(seq, _)| *seq <= to);
        &entries[start..end.max(start)]
    }
}

/// An op waiting for its answer, kept as it will be kept once acknowledged: it is encoded
/// once, when sent, and neither copied nor encoded again on its ack.
struct Pending {
    /// The op as MessagePack.
    op: Box<[u8]>,
    name: String,
    sent_at: Instant,
    kind: StepKind,
}

impl Pending {
    fn new(
        op: &Operation,
        sent_at: Instant,
        kind: StepKind,
        scratch: &mut Vec<u8>,
    ) -> Result<Pending, EncodeError> {
        Ok(Pending {
            op: pack(op, scratch)?,
            name: op.name.clone(),
            sent_at,
            kind,
        })
    }

    fn op(&self) -> Result<Operation, DecodeError> {
        unpack(&self.op)
    }
}

/// One simulated client.
struct LoadClient {
    index: usize,
    space: String,
    client_id: String,
    workload: Workload,
    /// One connection, not split halves: this task alone reads and writes it, and each use of
    /// a half takes the lock the halves share.
    connection: Client,
    pending: IndexMap<String, Pending>,
    /// What this client saw: a snapshot it joined with, and every op after it by seq.
    base: Option<(Seq, Value)>,
    view: View,
    scratch: Vec<u8>,
    /// Good ops acknowledged, with their seq, in the order of their acks (a list, not a map:
    /// a map growing with the run cost the harness a twentieth of its CPU).
    acked: Vec<(String, Seq)>,
    poison: Vec<Operation>,
    poison_rejected: u64,
    duplicates_sent: u64,
    reconnects: u64,
    /// Connections the server or the network ended, after which the client came back.
    disconnects: u64,
    /// Ops refused as retryable (`overloaded`, `store_unavailable`), sent again together at
    /// `retry_at`, without holding up the reading of the connection.
    retry: Vec<Operation>,
    retry_at: Option<Instant>,
    /// The pause before the next retry: doubles with each retry sent (up to a second) while
    /// the server keeps refusing, back to [`RETRY_PAUSE`] at the next ack, so an overloaded
    /// server is not hammered by its own backlog.
    retry_pause: Duration,
    /// Good ops refused because this client's own later delete overtook them (open loop).
    overtaken: Vec<String>,
}

impl LoadClient {
    async fn connect(
        config: &LoadConfig,
        client_id: &str,
        space: &str,
        since: Option<Seq>,
    ) -> Result<Client, ClientError> {
        let mut client = Client::connect(&config.server, config.format, Some(client_id)).await?;
        client.join(space, since).await?;
        Ok(client)
    }

    /// The highest seq up to which this client's view has no gap.
    fn contiguous(&mut self) -> Seq {
        let from = self.base.as_ref().map_or(0, |(seq, _)| *seq);
        self.view.contiguous_from(from)
    }

    /// Records a message; returns an op to send again (it was refused as retryable).
    fn handle(&mut self, message: ServerMessage, stats: &Stats) -> Option<Operation> {
        match message {
            ServerMessage::Joined {
                seq, snapshot, ops, ..
            } => {
                if let Some(snapshot) = snapshot {
                    self.base = Some((seq, snapshot));
                    self.view.forget_through(seq);
                }
                for op in ops {
                    self.view
                        .insert(op.seq, Kept::new(&op.op, &mut self.scratch));
                }
            }
            ServerMessage::Ack {
                operation_id,
                seq,
                duplicate,
                ..
            } => {
                let pending = self.pending.shift_remove(&operation_id)?;
                match pending.kind {
                    StepKind::Poison => {
                        stats.error(format!(
                            "poison op {operation_id} was accepted at seq {seq}"
                        ));
                    }
                    StepKind::Duplicate(original) => {
                        if seq != original || !duplicate {
                            stats.error(format!(
                                "resent {operation_id} got seq {seq} (duplicate: {duplicate}), first acked at {original}"
                            ));
                        }
                    }
                    StepKind::Good => {
                        // Checked at the end (`check`): an id acked at two seqs is an error.
                        self.acked.push((operation_id, seq));
                        if stats.measuring.load(Ordering::Relaxed) {
                            stats.acked.fetch_add(1, Ordering::Relaxed);
                            let micros = u64::try_from(pending.sent_at.elapsed().as_micros())
                                .unwrap_or(u64::MAX);
                            stats.latency(micros);
                        }
                        if self.workload.keeps_acked()
                            && let Ok(op) = pending.op()
                        {
                            self.workload.acked(&op, seq);
                        }
                        self.view.insert(seq, Kept(Ok(pending.op)));
                    }
                }
            }
            ServerMessage::Rejected {
                operation_id,
                code,
                permanent,
                message,
                ..
            } => {
                let pending = self.pending.shift_remove(&operation_id)?;
                match (pending.kind, permanent) {
                    (StepKind::Poison, true) => self.poison_rejected += 1,
                    (StepKind::Good, true)
                        if code == RejectCode::ReferenceDeleted && self.overtaken(&pending) =>
                    {
                        // Refused (and quarantined) rightly: see `Workload::removed`.
                        self.overtaken.push(operation_id);
                    }
                    (_, false) => {
                        // Retryable (overloaded, store unavailable): send it again.
                        match pending.op() {
                            Ok(op) => {
                                self.pending.insert(operation_id, pending);
                                return Some(op);
                            }
                            Err(error) => stats.error(format!("{operation_id}: {error}")),
                        }
                    }
                    _ => stats.error(format!(
                        "good op {operation_id} ({}) rejected: {code}: {message}",
                        pending.name
                    )),
                }
            }
            ServerMessage::Broadcast { seq, op, .. } => {
                if stats.measuring.load(Ordering::Relaxed) {
                    stats.broadcasts.fetch_add(1, Ordering::Relaxed);
                }
                self.view.insert(seq, Kept::new(&op, &mut self.scratch));
            }
            ServerMessage::Error { code, message } => {
                stats.error(format!("{}: error {code:?}: {message}", self.client_id));
            }
            ServerMessage::Held { .. }
            | ServerMessage::Presence { .. }
            | ServerMessage::Welcome { .. }
            | ServerMessage::Left { .. }
            | ServerMessage::Log { .. } => {}
        }
        None
    }

    /// Whether an op refused as `reference_deleted` targets an item this client removed.
    fn overtaken(&self, pending: &Pending) -> bool {
        pending.op().is_ok_and(|op| {
            op.body
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| self.workload.removed(id))
        })
    }

    /// Handles a message; what came back retryable waits to be sent again (see `retry_pause`).
    fn receive(&mut self, message: ServerMessage, stats: &Stats) {
        if matches!(message, ServerMessage::Ack { .. }) {
            self.retry_pause = RETRY_PAUSE;
        }
        if let Some(op) = self.handle(message, stats) {
            self.retry.push(op);
            let pause = self.retry_pause;
            self.retry_at.get_or_insert_with(|| Instant::now() + pause);
        }
    }

    /// Sends the ops waiting for a retry, in batches the server accepts.
    /// Sends the ops waiting to go again, at most [`RESEND_WINDOW`] of them (in batches the
    /// server accepts); the rest follow after the pause. A client replaying a large backlog
    /// in one go would get more answers at once than the server queues for a connection, and
    /// be closed as a slow consumer before it read them.
    async fn send_retries(&mut self) -> Result<(), ClientError> {
        let window: Vec<Operation> = self
            .retry
            .drain(..self.retry.len().min(RESEND_WINDOW))
            .collect();
        self.retry_at = (!self.retry.is_empty()).then(|| Instant::now() + self.retry_pause);
        self.retry_pause = (self.retry_pause * 2).min(Duration::from_secs(1));
        let batch = self
            .connection
            .limits()
            .map_or(100, |limits| limits.max_ops_per_batch as usize)
            .max(1);
        for chunk in window.chunks(batch) {
            self.connection.submit(&self.space, chunk.to_vec()).await?;
        }
        Ok(())
    }

    async fn send_step(
        &mut self,
        config: &LoadConfig,
        scheduled: Instant,
    ) -> Result<(), ClientError> {
        let step = self.workload.step();
        match step.kind {
            StepKind::Poison => self.poison.extend(step.ops.iter().cloned()),
            StepKind::Duplicate(_) => self.duplicates_sent += 1,
            StepKind::Good => {}
        }
        for op in &step.ops {
            let id = op.operation_id().unwrap_or_default();
            let pending = Pending::new(op, scheduled, step.kind, &mut self.scratch)?;
            self.pending.insert(id, pending);
        }
        self.connection.submit(&self.space, step.ops).await?;
        if config.reconnects > 0.0 && rand::random::<f64>() < config.reconnects {
            self.reconnects += 1;
            self.reconnect(config).await?;
        }
        Ok(())
    }

    /// Drops the connection without a goodbye, reconnects, resumes from the last seq it has
    /// without a gap, and resends every op not answered yet (same op ids). A server that is
    /// not there (restarting) is tried again, with backoff, for up to [`PATIENCE`].
    async fn reconnect(&mut self, config: &LoadConfig) -> Result<(), ClientError> {
        let since = self.contiguous();
        let deadline = Instant::now() + PATIENCE;
        let mut pause = Duration::from_millis(50);
        let connection = loop {
            match LoadClient::connect(config, &self.client_id, &self.space, Some(since)).await {
                Ok(connection) => break connection,
                Err(error) if error.should_reconnect() && Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(error) => return Err(error),
            }
        };
        // The old connection is dropped here: it is cut mid-stream.
        self.connection = connection;
        let ops = self
            .pending
            .values()
            .map(Pending::op)
            .collect::<Result<Vec<Operation>, DecodeError>>()?;
        // Everything unanswered goes again (the ops waiting for a retry included), starting
        // now, a window at a time (`send_retries`).
        self.retry = ops;
        self.retry_at = (!self.retry.is_empty()).then(Instant::now);
        self.retry_pause = RETRY_PAUSE;
        Ok(())
    }

    /// After the connection failed: when it ended the way a server ends connections its
    /// clients should come back on (shutting down, restarting, a slow consumer, the network),
    /// reconnects, resumes and resends (counted in `disconnects`); otherwise, or when no
    /// reconnect succeeds, records an error. Whether the client can go on.
    async fn recover(
        &mut self,
        config: &LoadConfig,
        stats: &Stats,
        error: ClientError,
        during: &str,
    ) -> bool {
        if !error.should_reconnect() {
            stats.error(format!("{}: {during}: {error}", self.client_id));
            return false;
        }
        self.disconnects += 1;
        match self.reconnect(config).await {
            Ok(()) => true,
            Err(again) => {
                stats.error(format!(
                    "{}: {during}: {error}; no reconnect within {} s: {again}",
                    self.client_id,
                    PATIENCE.as_secs()
                ));
                false
            }
        }
    }

    /// Takes what the connection gave: a message (answered as [`LoadClient::receive`] does),
    /// or the error that ended it ([`LoadClient::recover`]). Whether the client can go on.
    async fn take(
        &mut self,
        received: Result<ServerMessage, ClientError>,
        config: &LoadConfig,
        stats: &Stats,
        during: &str,
    ) -> bool {
        match received {
            Ok(message) => {
                self.receive(message, stats);
                true
            }
            Err(error) => self.recover(config, stats, error, during).await,
        }
    }

    /// Runs the workload until `end`.
    async fn run(
        &mut self,
        config: &LoadConfig,
        stats: &Stats,
        end: Instant,
        interval: Option<Duration>,
    ) {
        let clients = (config.spaces * config.clients_per_space).max(1);
        let mut schedule = interval.map(|period| {
            // Clients start at evenly spread phases of the period: aligned schedules would
            // offer the whole load in one burst per period and measure the burst, not the rate.
            let phase = period.mul_f64(self.index as f64 / clients as f64);
            let mut ticker = tokio::time::interval_at(Instant::now() + phase, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            ticker
        });
        // One timer for the whole run, not one per pass (a pass per op).
        let ended = tokio::time::sleep_until(end);
        tokio::pin!(ended);
        loop {
            if Instant::now() >= end {
                return;
            }
            let closed_loop_ready = schedule.is_none() && self.pending.is_empty();
            if closed_loop_ready {
                if let Err(error) = self.send_step(config, Instant::now()).await
                    && !self.recover(config, stats, error, "send failed").await
                {
                    return;
                }
                continue;
            }
            let tick = async {
                match schedule.as_mut() {
                    Some(ticker) => ticker.tick().await,
                    None => std::future::pending().await,
                }
            };
            let retry_at = self.retry_at;
            tokio::select! {
                () = sleep_until_some(retry_at), if retry_at.is_some() => {
                    if let Err(error) = self.send_retries().await
                        && !self.recover(config, stats, error, "send failed").await
                    {
                        return;
                    }
                }
                scheduled = tick => {
                    if self.pending.len() < 10_000
                        && let Err(error) = self.send_step(config, scheduled).await
                        && !self.recover(config, stats, error, "send failed").await
                    {
                        return;
                    }
                }
                received = self.connection.recv() => {
                    if !self.take(received, config, stats, "connection lost").await {
                        return;
                    }
                }
                () = &mut ended => return,
            }
        }
    }

    /// Waits until every op sent has its answer (reconnecting as [`LoadClient::recover`] does).
    /// "Never answered" means no answer for [`PATIENCE`] while ops were waiting: a backlog
    /// left by an open loop beyond the server's capacity is waited for as long as it drains.
    async fn settle(&mut self, config: &LoadConfig, stats: &Stats) {
        let mut deadline = Instant::now() + PATIENCE;
        while !self.pending.is_empty() {
            let retry_at = self.retry_at;
            let received = tokio::select! {
                received = tokio::time::timeout_at(deadline, self.connection.recv()) => received,
                () = sleep_until_some(retry_at), if retry_at.is_some() => {
                    if let Err(error) = self.send_retries().await
                        && !self.recover(config, stats, error, "while settling").await
                    {
                        return;
                    }
                    continue;
                }
            };
            match received {
                Ok(received) => {
                    let waiting = self.pending.len();
                    if !self.take(received, config, stats, "while settling").await {
                        return;
                    }
                    if self.pending.len() < waiting {
                        deadline = Instant::now() + PATIENCE;
                    }
                }
                Err(_) => {
                    stats.error(format!(
                        "{}: {} ops never answered",
                        self.client_id,
                        self.pending.len()
                    ));
                    return;
                }
            }
        }
    }

    /// Reads until its view has every seq up to `head`.
    /// A connection the server closed meanwhile (one left unread while other spaces were
    /// checked) is reconnected, which resumes from the view's last seq.
    async fn catch_up(&mut self, config: &LoadConfig, head: Seq, stats: &Stats) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while self.contiguous() < head {
            match tokio::time::timeout_at(deadline, self.connection.recv()).await {
                Ok(received) => {
                    if !self
                        .take(received, config, stats, "while catching up")
                        .await
                    {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// The space as this client saw it.
    fn view(&mut self, head: Seq) -> Result<Value, String> {
        let mut space = match &self.base {
            Some((seq, snapshot)) => {
                let imported =
                    import(snapshot, SpaceConfig::default()).map_err(|error| error.to_string())?;
                Space::from_state(
                    self.space.clone(),
                    *seq,
                    imported.state().clone(),
                    SpaceConfig::default(),
                )
            }
            None => Space::new(self.space.clone(), SpaceConfig::default()),
        };
        for (seq, kept) in self.view.range(space.seq() + 1, head) {
            space
                .replay(*seq, &kept.op()?)
                .map_err(|error| error.to_string())?;
        }
        Ok(space.state().to_kinopio())
    }
}

/// Runs the load and the checker.
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    let stats = Arc::new(Stats {
        measuring: AtomicBool::new(false),
        acked: AtomicU64::new(0),
        broadcasts: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        histogram: Mutex::new(histogram()),
        interval: Mutex::new(histogram()),
        worst_second_us: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
    });
    let clients_total = config.spaces * config.clients_per_space;
    let interval = config
        .rate
        .filter(|rate| *rate > 0.0)
        .map(|rate| Duration::from_secs_f64(clients_total as f64 / rate));

    // Connect everyone first; the clock starts when all have joined.
    let mut clients = Vec::with_capacity(clients_total);
    for space_index in 0..config.spaces {
        let space = format!("{}-s{space_index}", config.run_id);
        for client_index in 0..config.clients_per_space {
            let index = space_index * config.clients_per_space + client_index;
            let client_id = format!("{}-c{index}", config.run_id);
            let connection = LoadClient::connect(&config, &client_id, &space, None).await?;
            let seed = config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(index as u64);
            let mut client = LoadClient {
                index,
                workload: Workload::new(seed, &client_id, &space, config.faults),
                space: space.clone(),
                client_id,
                connection,
                pending: IndexMap::new(),
                base: None,
                view: View::new(),
                scratch: Vec::new(),
                acked: Vec::new(),
                poison: Vec::new(),
                poison_rejected: 0,
                duplicates_sent: 0,
                reconnects: 0,
                disconnects: 0,
                retry: Vec::new(),
                retry_at: None,
                retry_pause: RETRY_PAUSE,
                overtaken: Vec::new(),
            };
            let joined = tokio::time::timeout(PATIENCE, client.connection.recv())
                .await
                .map_err(|_| LoadError::Protocol("no answer to join".to_owned()))??;
            if !matches!(joined, ServerMessage::Joined { .. }) {
                return Err(LoadError::Protocol(format!(
                    "expected joined, got {joined:?}"
                )));
            }
            client.handle(joined, &stats);
            clients.push(client);
        }
    }

    let start = Instant::now();
    let measure_from = start + config.warmup;
    let end = measure_from + config.duration;
    let seconds = tokio::spawn(seconds(
        stats.clone(),
        config.progress,
        start,
        measure_from,
        end,
    ));
    let measuring = stats.clone();
    let server = config.server.clone();
    let scrape_before = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        measuring.measuring.store(true, Ordering::Relaxed);
        server_metrics::scrape(&server).await
    });
    let server = config.server.clone();
    let scrape_after = tokio::spawn(async move {
        tokio::time::sleep_until(end).await;
        server_metrics::scrape(&server).await
    });

    let mut tasks = Vec::new();
    for mut client in clients {
        let stats = stats.clone();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            client.run(&config, &stats, end, interval).await;
            stats.measuring.store(false, Ordering::Relaxed);
            client.settle(&config, &stats).await;
            client
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        match task.await {
            Ok(client) => clients.push(client),
            Err(error) => stats.error(format!("a client task failed: {error}")),
        }
    }
    seconds.abort();
    // The last, partial second of the window.
    stats.second_p99();
    clients.sort_by_key(|client| client.index);

    let mut report = Report::default();
    if let (Ok(Some(before)), Ok(Some(after))) = (scrape_before.await, scrape_after.await) {
        report.server_ack_p50_ms = server_metrics::quantile_ms(&before, &after, 0.50);
        report.server_ack_p99_ms = server_metrics::quantile_ms(&before, &after, 0.99);
    }
    check(&config, &mut clients, &stats, &mut report).await?;

    let measured = config.duration.as_secs_f64().max(f64::EPSILON);
    report.acked = stats.acked.load(Ordering::Relaxed);
    report.acked_ops_per_s = report.acked as f64 / measured;
    report.fanout_per_s = stats.broadcasts.load(Ordering::Relaxed) as f64 / measured;
    if let Ok(histogram) = stats.histogram.lock() {
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        report.p50_ms = ms(0.50);
        report.p95_ms = ms(0.95);
        report.p99_ms = ms(0.99);
        report.max_ms = histogram.max() as f64 / 1000.0;
    }
    report.worst_second_p99_ms = stats.worst_second_us.load(Ordering::Relaxed) as f64 / 1000.0;
    report.errors += stats.errors.load(Ordering::Relaxed);
    if let Ok(samples) = stats.samples.lock() {
        report.error_samples.extend(samples.iter().cloned());
    }
    Ok(report)
}

/// The end-of-run checks, per space.
async fn check(
    config: &LoadConfig,
    clients: &mut [LoadClient],
    stats: &Stats,
    report: &mut Report,
) -> Result<(), LoadError> {
    for space_index in 0..config.spaces {
        let space = format!("{}-s{space_index}", config.run_id);
        // A connection of its own per space: settling a space's clients can take long enough
        // (under overload) for a connection kept idle meanwhile to be closed by the server.
        let checker = Client::connect(
            &config.server,
            Format::MessagePack,
            Some(&format!("{}-checker", config.run_id)),
        )
        .await?;
        let (mut sender, mut receiver) = checker.split();
        // The whole log, page by page, then the whole space.
        let (head, logged) = read_log(&mut sender, &mut receiver, &space).await?;
        sender
            .send(&ClientMessage::Join {
                space_id: space.clone(),
                since: None,
            })
            .await?;
        let (_, download, _) = next_joined(&mut receiver).await?;
        let download = download.unwrap_or(Value::Null);
        sender
            .send(&ClientMessage::Leave {
                space_id: space.clone(),
            })
            .await?;
        report.final_seqs += head;

        // Gapless, and every op id once.
        let mut by_id: HashMap<String, Vec<Seq>> = HashMap::new();
        for (expected, entry) in (1..).zip(&logged) {
            if entry.seq != expected {
                stats.error(format!(
                    "{space}: log seq {} where {expected} was expected",
                    entry.seq
                ));
                break;
            }
            let id = entry.op.operation_id().unwrap_or_default();
            by_id.entry(id).or_default().push(entry.seq);
        }
        if logged.len() as u64 != head {
            stats.error(format!(
                "{space}: {} log entries for head seq {head}",
                logged.len()
            ));
        }
        report.duplicated += by_id
            .values()
            .filter(|seqs| seqs.len() > 1)
            .map(|seqs| seqs.len() as u64 - 1)
            .sum::<u64>();

        for client in clients.iter_mut().filter(|client| client.space == space) {
            client.acked.sort_unstable();
            client.acked.dedup();
            for pair in client.acked.windows(2) {
                if pair[0].0 == pair[1].0 {
                    stats.error(format!(
                        "{} acked at {} and at {}",
                        pair[0].0, pair[0].1, pair[1].1
                    ));
                }
            }
            for (id, seq) in &client.acked {
                match by_id.get(id) {
                    Some(seqs) if seqs.contains(seq) => {}
                    _ => {
                        report.lost += 1;
                        if report.lost <= 5 {
                            stats.error(format!(
                                "{space}: {id} was acked at {seq} and is not in the log there"
                            ));
                        }
                    }
                }
            }
            report.poison_sent += client.poison.len() as u64;
            report.rejected += client.poison_rejected;
            report.duplicates_sent += client.duplicates_sent;
            report.reconnects += client.reconnects;
            report.overtaken += client.overtaken.len() as u64;
            report.poison_ids.extend(
                client
                    .overtaken
                    .iter()
                    .map(|id| (space.clone(), id.clone())),
            );
            // Poison ops are remembered: a resend is refused again at once.
            if !client.poison.is_empty() {
                let ids: Vec<String> = client
                    .poison
                    .iter()
                    .filter_map(|op| op.operation_id().ok())
                    .collect();
                report
                    .poison_ids
                    .extend(ids.iter().map(|id| (space.clone(), id.clone())));
                for (op, id) in client.poison.iter().zip(ids) {
                    let pending =
                        Pending::new(op, Instant::now(), StepKind::Poison, &mut client.scratch)
                            .map_err(|error| LoadError::Connect(error.into()))?;
                    client.pending.insert(id, pending);
                }
                let ops: Vec<Operation> = client.poison.clone();
                let before = client.poison_rejected;
                // A connection the server closed meanwhile (a slow consumer under overload) is
                // reconnected, which resends them.
                if let Err(error) = client.connection.submit(&space, ops).await {
                    client
                        .recover(config, stats, error, "resending poison")
                        .await;
                }
                client.settle(config, stats).await;
                if client.poison_rejected - before != client.poison.len() as u64 {
                    stats.error(format!(
                        "{}: not every poison op was refused again",
                        client.client_id
                    ));
                }
                client.poison_rejected = before;
            }
            // The client's view equals the download.
            let caught_up = client.catch_up(config, head, stats).await;
            report.disconnects += client.disconnects;
            let same = caught_up
                && client
                    .view(head)
                    .map(|view| normalized(&view) == normalized(&download))
                    .unwrap_or(false);
            if !same {
                report.diverged += 1;
                stats.error(format!(
                    "{}: its view differs from the download (caught up: {caught_up})",
                    client.client_id
                ));
            }
        }
    }
    Ok(())
}

/// A space's whole committed log, read with `readLog` a page at a time: its head seq and
/// the ops as the log holds them (a gap or a repeat in it is left for the caller to find).
async fn read_log(
    sender: &mut ClientSender,
    receiver: &mut ClientReceiver,
    space: &str,
) -> Result<(Seq, Vec<spacesync_protocol::SequencedOperation>), LoadError> {
    let mut logged = Vec::new();
    let mut after = 0;
    loop {
        sender
            .send(&ClientMessage::ReadLog {
                space_id: space.to_owned(),
                after,
                limit: None,
            })
            .await?;
        let (head, ops) = loop {
            let message = tokio::time::timeout(PATIENCE, receiver.recv())
                .await
                .map_err(|_| {
                    LoadError::Protocol("the checker got no answer to readLog".to_owned())
                })??;
            match message {
                ServerMessage::Log { head, ops, .. } => break (head, ops),
                ServerMessage::Error { code, message } => {
                    return Err(LoadError::Protocol(format!(
                        "checker readLog failed: {code:?}: {message}"
                    )));
                }
                _ => continue,
            }
        };
        // A page that moves nothing forward ends the read: the log holds no more.
        let Some(last) = ops.last().map(|op| op.seq).filter(|last| *last > after) else {
            return Ok((head, logged));
        };
        after = last;
        logged.extend(ops);
        if after >= head {
            return Ok((head, logged));
        }
    }
}

async fn next_joined(
    receiver: &mut ClientReceiver,
) -> Result<
    (
        Seq,
        Option<Value>,
        Vec<spacesync_protocol::SequencedOperation>,
    ),
    LoadError,
> {
    loop {
        let message = tokio::time::timeout(PATIENCE, receiver.recv())
            .await
            .map_err(|_| LoadError::Protocol("the checker got no answer to join".to_owned()))??;
        match message {
            ServerMessage::Joined {
                seq, snapshot, ops, ..
            } => return Ok((seq, snapshot, ops)),
            ServerMessage::Error { code, message } => {
                return Err(LoadError::Protocol(format!(
                    "checker join failed: {code:?}: {message}"
                )));
            }
            _ => continue,
        }
    }
}

/// Every second: the second's p99 (only measured ops are recorded), and with `print` a
/// progress line on stderr.
async fn seconds(
    stats: Arc<Stats>,
    print: bool,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = 0;
    loop {
        ticker.tick().await;
        let acked = stats.acked.load(Ordering::Relaxed);
        let p99 = stats.second_p99() as f64 / 1000.0;
        if !print {
            continue;
        }
        let phase = if Instant::now() < measure_from {
            "warmup"
        } else if Instant::now() < end {
            "measuring"
        } else {
            "checking"
        };
        eprintln!(
            "[{:>4}s {phase:>9}] {:>8} acked/s  p99 {p99:>7.2} ms  errors {}",
            start.elapsed().as_secs(),
            acked - last,
            stats.errors.load(Ordering::Relaxed)
        );
        last = acked;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kept(name: &str) -> Kept {
        Kept::new(&Operation::new(name, json!({})), &mut Vec::new())
    }

    fn names(entries: &[(Seq, Kept)]) -> Vec<(Seq, String)> {
        entries
            .iter()
            .map(|(seq, kept)| (*seq, kept.op().expect("decodes").name))
            .collect()
    }

    #[test]
    fn every_run_gets_ids_of_its_own_that_the_server_accepts() {
        let (first, second) = (fresh_run_id(), fresh_run_id());
        assert_ne!(first, second, "two runs of one process");
        // The longest op id of a huge run (100,000 clients, 10^12 ops each, the highest pid
        // Linux gives) stays within what the server accepts.
        let longest = format!(
            "{}-c99999-op1000000000000",
            first.replace(&format!("{:x}", std::process::id()), "3fffff")
        );
        assert!(
            longest.chars().count() <= spacesync_protocol::operation::MAX_OPERATION_ID_LEN,
            "{longest}"
        );
    }

    #[test]
    fn the_view_reads_in_seq_order_with_the_last_op_of_a_seq() {
        let mut view = View::new();
        view.insert(1, kept("a"));
        view.insert(2, kept("b"));
        view.insert(4, kept("d"));
        // A resume replays 2 and 3 after 4 arrived; the replayed 2 replaces the first.
        view.insert(2, kept("b-again"));
        view.insert(3, kept("c"));
        assert_eq!(
            names(view.range(1, 10)),
            vec![
                (1, "a".to_owned()),
                (2, "b-again".to_owned()),
                (3, "c".to_owned()),
                (4, "d".to_owned())
            ]
        );
        assert_eq!(names(view.range(2, 3)).len(), 2);
        assert!(view.range(5, 9).is_empty());
        assert!(view.range(3, 2).is_empty());
    }

    #[test]
    fn the_view_knows_how_far_it_has_no_gap() {
        let mut view = View::new();
        assert_eq!(view.contiguous_from(0), 0);
        view.insert(1, kept("a"));
        view.insert(2, kept("b"));
        view.insert(5, kept("e"));
        assert_eq!(view.contiguous_from(0), 2);
        view.insert(4, kept("d"));
        view.insert(3, kept("c"));
        assert_eq!(view.contiguous_from(0), 5);
        // From a snapshot at 3: what is after it counts, from it on.
        view.forget_through(3);
        assert_eq!(view.contiguous_from(3), 5);
        assert_eq!(view.contiguous_from(0), 0, "1 to 3 are forgotten");
    }
}
