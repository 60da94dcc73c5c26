//! One actor per active space: the only writer of its space.
//!
//! A cycle: take everything in the mailbox → apply it to the core space (hold, release,
//! reject) → hand the applied ops to the committer in one batch → once they are durable,
//! quarantine the poison ops, then answer every op in outcome order (acks, rejections) and
//! broadcast the applied ones, with their seqs, to the other members. Messages that arrive
//! while a batch is being written wait in the mailbox and form the next batch.
//!
//! Joins are answered between cycles, so the state they see is exactly the committed state,
//! and live broadcasts start right after it.
//!
//! Recovery (`redo`): after a panic inside the core, a poison row the store refused, or a
//! replay of an op older than the actor's memory, the space is rebuilt from the store (the
//! committed state) and every op of the cycle that is not settled yet is applied again, in
//! arrival order, without the op that caused it. Each recovery removes that op, so it ends.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;
use spacesync_core::{Outcome, Prior, Rejection, Snapshot, Space};
use spacesync_protocol::{
    OpJson, Operation, RejectCode, Seq, SequencedOperation, ServerError, ServerMessage,
};
use spacesync_store::{
    LogEntry, NewLogEntry, NewQuarantine, PoisonKind, PriorRecord, Store, StoredSnapshot,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::committer::{CommitResult, backoff};
use crate::peer::{Encoded, Peer};
use crate::shared::{ActorHandle, Shared};

/// A message to a space actor.
#[derive(Debug)]
pub enum ActorMsg {
    Submit {
        waiter: Waiter,
        ops: Vec<Operation>,
        /// When the server took the ops in (for `spacesync_ack_seconds`).
        received: Instant,
    },
    Join {
        peer: Arc<Peer>,
        since: Option<Seq>,
    },
    Leave {
        peer_id: u64,
    },
    /// A page of the committed log (`readLog`), at most `limit` ops after `after`.
    ReadLog {
        peer: Arc<Peer>,
        after: Seq,
        limit: usize,
    },
    Presence {
        peer: Arc<Peer>,
        data: Value,
    },
    /// The space as the Kinopio client downloads it; `None` for a space with no ops.
    Download {
        reply: tokio::sync::oneshot::Sender<Result<Option<Download>, String>>,
    },
    Shutdown,
}

/// A downloaded space: its JSON (Kinopio shape) at `seq`, encoded once per seq.
#[derive(Debug, Clone)]
pub struct Download {
    pub seq: Seq,
    pub json: bytes::Bytes,
}

/// Who waits for the answer to an op.
#[derive(Debug, Clone)]
pub enum Waiter {
    Peer(Arc<Peer>),
    Http(Arc<crate::kinopio_http::HttpBatch>),
}

/// The answer to one op.
#[derive(Debug, Clone)]
pub enum Answer {
    Ack { seq: Seq, duplicate: bool },
    Held { waiting_for: Vec<String> },
    Rejected { code: RejectCode, message: String },
}

impl Waiter {
    fn peer_id(&self) -> Option<u64> {
        match self {
            Waiter::Peer(peer) => Some(peer.id),
            Waiter::Http(_) => None,
        }
    }

    fn same_as(&self, other: &Waiter) -> bool {
        match (self, other) {
            (Waiter::Peer(one), Waiter::Peer(other)) => one.id == other.id,
            (Waiter::Http(one), Waiter::Http(other)) => Arc::ptr_eq(one, other),
            _ => false,
        }
    }

    fn client_id(&self) -> Option<&str> {
        match self {
            Waiter::Peer(peer) => Some(&peer.client_id),
            Waiter::Http(batch) => Some(batch.client_id()),
        }
    }

    pub fn answer(&self, space_id: &str, operation_id: &str, answer: Answer) {
        match self {
            Waiter::Peer(peer) => {
                peer.send(&answer_message(space_id, operation_id, answer));
            }
            Waiter::Http(batch) => batch.answer(space_id, operation_id, answer),
        }
    }
}

pub fn answer_message(space_id: &str, operation_id: &str, answer: Answer) -> ServerMessage {
    let space_id = space_id.to_owned();
    let operation_id = operation_id.to_owned();
    match answer {
        Answer::Ack { seq, duplicate } => ServerMessage::Ack {
            space_id,
            operation_id,
            seq,
            duplicate,
        },
        Answer::Held { waiting_for } => ServerMessage::Held {
            space_id,
            operation_id,
            waiting_for,
        },
        Answer::Rejected { code, message } => ServerMessage::Rejected {
            space_id,
            operation_id,
            code,
            permanent: code.is_permanent(),
            message,
        },
    }
}

/// Starts the actor of a space; it loads the space before reading its mailbox.
pub fn spawn(shared: Arc<Shared>, space_id: String) -> ActorHandle {
    let (tx, rx) = mpsc::channel(shared.config.mailbox.max(1));
    let generation = shared.next_id();
    let tracker = shared.actors.clone();
    tracker.spawn(run(shared, space_id, generation, rx));
    ActorHandle { tx, generation }
}

/// An op waiting to be applied.
struct Work {
    op: Operation,
    /// Who submitted it (none when the op is applied again during a recovery).
    waiter: Option<Waiter>,
    received: Instant,
}

/// Who waits for an op's final answer, and since when (its first arrival).
struct Waiting {
    since: Instant,
    waiters: Vec<Waiter>,
}

/// Why the actor cannot go on.
#[derive(Debug, thiserror::Error)]
enum ActorError {
    #[error("cannot load the space: {0}")]
    Load(String),
}

struct Actor {
    shared: Arc<Shared>,
    id: String,
    generation: u64,
    rx: mpsc::Receiver<ActorMsg>,
    space: Space,
    members: HashMap<u64, Arc<Peer>>,
    /// Op id → who waits for its final answer.
    waiters: HashMap<String, Waiting>,
    /// Held ops in arrival order, kept so a recovery can apply them again.
    held: IndexMap<String, Operation>,
    /// Committed ops, newest last, for resuming clients: the JSON written to the log (several
    /// times smaller than the decoded op), decoded again only for a resume.
    recent: VecDeque<(Seq, OpJson)>,
    incoming: Vec<Work>,
    /// Joins to answer after the current cycle, from the committed state.
    joins: Vec<(Arc<Peer>, Option<Seq>)>,
    /// `readLog`s to answer after the current cycle, from the committed state.
    log_reads: Vec<(Arc<Peer>, Seq, usize)>,
    /// Downloads to answer after the current cycle.
    downloads: Vec<tokio::sync::oneshot::Sender<Result<Option<Download>, String>>>,
    download: Option<Download>,
    presence: IndexMap<u64, (Arc<Peer>, Value)>,
    next_presence: Instant,
    last_snapshot_seq: Seq,
    /// A snapshot is taken in the background once the space reaches this seq.
    next_snapshot_seq: Seq,
    /// The seq of the last op known durable (equal to `space.seq()` between cycles).
    committed: Seq,
    /// `unload_after` plus up to a quarter of it, so spaces loaded together do not all unload
    /// (and snapshot) in the same instant.
    unload_after: Duration,
    last_activity: Instant,
    export: Option<(Seq, Value)>,
    shutting_down: bool,
}

async fn run(shared: Arc<Shared>, space_id: String, generation: u64, rx: mpsc::Receiver<ActorMsg>) {
    shared.metrics.actors.inc();
    let started = std::time::Instant::now();
    let loaded = load_with_retry(&shared, &space_id, 3).await;
    if let Ok(loaded) = &loaded {
        tracing::debug!(
            space_id,
            seq = loaded.space.seq(),
            tail = loaded.tail.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "space loaded"
        );
    }
    match loaded {
        Ok(loaded) => {
            shared.metrics.actor_loads.inc();
            let now = Instant::now();
            let head = loaded.space.seq();
            let mut actor = Actor {
                id: space_id,
                generation,
                rx,
                space: loaded.space,
                members: HashMap::new(),
                waiters: HashMap::new(),
                held: IndexMap::new(),
                recent: VecDeque::new(),
                incoming: Vec::new(),
                joins: Vec::new(),
                log_reads: Vec::new(),
                downloads: Vec::new(),
                download: None,
                presence: IndexMap::new(),
                next_presence: now,
                last_snapshot_seq: loaded.snapshot_seq,
                next_snapshot_seq: loaded.snapshot_seq
                    + first_snapshot_after(shared.config.snapshot_every),
                committed: head,
                unload_after: shared
                    .config
                    .unload_after
                    .mul_f64(1.0 + rand::random::<f64>() / 4.0),
                last_activity: now,
                export: None,
                shutting_down: false,
                shared: shared.clone(),
            };
            actor.remember_recent(
                loaded
                    .tail
                    .into_iter()
                    .map(|logged| (logged.seq, logged.payload)),
            );
            if let Err(error) = actor.run().await {
                actor.fail(&error.to_string());
            }
        }
        Err(error) => {
            shared.metrics.actor_load_failures.inc();
            tracing::error!(space_id, %error, "space failed to load; it is not replaced by an empty one");
            shared.unregister(&space_id, generation);
            refuse_all(&space_id, rx, &error.to_string());
        }
    }
    shared.metrics.actors.dec();
}

/// Answers every queued message of an actor that cannot run: ops are not applied
/// (`store_unavailable`, retryable) and joins fail with `space_unavailable`.
fn refuse_all(space_id: &str, mut rx: mpsc::Receiver<ActorMsg>, reason: &str) {
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        refuse(space_id, msg, reason);
    }
}

fn refuse(space_id: &str, msg: ActorMsg, reason: &str) {
    match msg {
        ActorMsg::Submit { waiter, ops, .. } => {
            for op in ops {
                if let Ok(operation_id) = op.operation_id() {
                    waiter.answer(
                        space_id,
                        &operation_id,
                        Answer::Rejected {
                            code: RejectCode::StoreUnavailable,
                            message: format!("the space cannot be loaded right now: {reason}"),
                        },
                    );
                }
            }
        }
        ActorMsg::Join { peer, .. }
        | ActorMsg::ReadLog { peer, .. }
        | ActorMsg::Presence { peer, .. } => {
            peer.send(&ServerMessage::Error {
                code: ServerError::SpaceUnavailable,
                message: format!("space {space_id} cannot be loaded right now: {reason}"),
            });
        }
        ActorMsg::Download { reply } => {
            let _ = reply.send(Err(reason.to_owned()));
        }
        ActorMsg::Leave { .. } | ActorMsg::Shutdown => {}
    }
}

/// A space as loaded from the store.
#[derive(Debug)]
pub struct Loaded {
    pub space: Space,
    pub snapshot_seq: Seq,
    /// The log after the snapshot, each op with the JSON the log holds.
    pub tail: Vec<LogEntry>,
}

async fn load_with_retry(
    shared: &Shared,
    space_id: &str,
    attempts: u32,
) -> Result<Loaded, ActorError> {
    let mut attempt = 0;
    loop {
        match load(&*shared.store, space_id, shared.config.space.clone()).await {
            Ok(loaded) => return Ok(loaded),
            Err((error, transient)) => {
                attempt += 1;
                if !transient || attempt >= attempts {
                    return Err(ActorError::Load(error));
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
}

/// Loads a space: latest snapshot, the log after it, and the ids of its quarantined ops (so a
/// resubmission of one is refused again at once). Errors say whether a retry may help.
pub async fn load(
    store: &dyn Store,
    space_id: &str,
    config: spacesync_core::SpaceConfig,
) -> Result<Loaded, (String, bool)> {
    let stored = store
        .load(space_id)
        .await
        .map_err(|error| (error.to_string(), error.is_transient()))?;
    let (mut space, snapshot_seq) = match stored.snapshot {
        Some(snapshot) => {
            let decoded = Snapshot::decode(&snapshot.data)
                .map_err(|error| (format!("snapshot at seq {}: {error}", snapshot.seq), false))?;
            if decoded.space_id != space_id || decoded.seq != snapshot.seq {
                return Err((
                    format!(
                        "snapshot at seq {} belongs to {} at {}",
                        snapshot.seq, decoded.space_id, decoded.seq
                    ),
                    false,
                ));
            }
            (decoded.into_space(config), snapshot.seq)
        }
        None => (Space::new(space_id, config), 0),
    };
    for entry in &stored.tail {
        space
            .replay(entry.seq, &entry.op)
            .map_err(|error| (error.to_string(), false))?;
    }
    let tail = stored.tail;
    let quarantined = store
        .quarantine_list(Some(space_id), 100_000)
        .await
        .map_err(|error| (error.to_string(), error.is_transient()))?;
    for entry in quarantined {
        let code = RejectCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == entry.code)
            .unwrap_or(RejectCode::InternalError);
        space.remember(
            entry.operation_id,
            Prior::Rejected {
                code,
                message: entry.detail,
            },
        );
    }
    Ok(Loaded {
        space,
        snapshot_seq,
        tail,
    })
}

/// Runs `f`, turning a panic into an error carrying its message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned())
    })
}

/// What the cycle decided for one op, answered once its batch is durable.
type Outcomes = Vec<Outcome>;

impl Actor {
    async fn run(&mut self) -> Result<(), ActorError> {
        // One timer and one shutdown waiter for the actor's life: made anew on every pass they
        // cost a timer wheel entry and a waiter list entry per cycle. The timer is moved only
        // when the next wake comes earlier than it is set for, or after it fired (a wake that
        // comes too early just passes through the loop once more).
        let stopping = self.shared.stop_reading.clone().cancelled_owned();
        let sleep = tokio::time::sleep_until(self.next_wake());
        tokio::pin!(stopping, sleep);
        loop {
            let wake = self.next_wake();
            if sleep.is_elapsed() || wake < sleep.deadline() {
                sleep.as_mut().reset(wake);
            }
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(msg) => {
                        self.handle(msg);
                        // Everything that queued up meanwhile goes into the same cycle.
                        while self.incoming.len() < self.shared.config.max_commit_rows {
                            match self.rx.try_recv() {
                                Ok(msg) => self.handle(msg),
                                Err(_) => break,
                            }
                        }
                    }
                    None => self.shutting_down = true,
                },
                () = &mut sleep => {}
                () = &mut stopping, if !self.shutting_down => {
                    self.shutting_down = true;
                }
            }
            let now_ms = self.shared.now_ms();
            let expiring = self
                .space
                .next_deadline()
                .is_some_and(|deadline| deadline <= now_ms);
            if !self.incoming.is_empty() || expiring {
                self.cycle().await?;
            }
            for (peer, since) in std::mem::take(&mut self.joins) {
                self.join(peer, since).await;
            }
            for (peer, after, limit) in std::mem::take(&mut self.log_reads) {
                self.read_log(&peer, after, limit).await;
            }
            for reply in std::mem::take(&mut self.downloads) {
                let _ = reply.send(Ok(self.download()));
            }
            self.relay_presence();
            if self.shutting_down {
                self.stop().await;
                return Ok(());
            }
            if self.is_idle() {
                self.unload().await;
                return Ok(());
            }
        }
    }

    /// Keeps committed ops for resumes, newest last, at most `resume_window` of them.
    fn remember_recent(&mut self, committed: impl IntoIterator<Item = (Seq, OpJson)>) {
        self.recent.extend(committed);
        let excess = self
            .recent
            .len()
            .saturating_sub(self.shared.config.resume_window);
        self.recent.drain(..excess);
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = self.last_activity + self.unload_after;
        if let Some(deadline) = self.space.next_deadline() {
            let wait = deadline.saturating_sub(self.shared.now_ms());
            wake = wake.min(now + Duration::from_millis(wait));
        }
        if !self.presence.is_empty() {
            wake = wake.min(self.next_presence);
        }
        wake.max(now)
    }

    fn is_idle(&self) -> bool {
        self.members.is_empty()
            && self.incoming.is_empty()
            && self.joins.is_empty()
            && self.log_reads.is_empty()
            && self.downloads.is_empty()
            && self.held.is_empty()
            && self.space.held_count() == 0
            && self.presence.is_empty()
            && self.last_activity.elapsed() >= self.unload_after
    }

    fn handle(&mut self, msg: ActorMsg) {
        self.last_activity = Instant::now();
        match msg {
            ActorMsg::Submit {
                waiter,
                ops,
                received,
            } => {
                self.incoming.extend(ops.into_iter().map(|op| Work {
                    op,
                    waiter: Some(waiter.clone()),
                    received,
                }));
            }
            ActorMsg::Join { peer, since } => self.joins.push((peer, since)),
            ActorMsg::ReadLog { peer, after, limit } => self.log_reads.push((peer, after, limit)),
            ActorMsg::Leave { peer_id } => {
                self.members.remove(&peer_id);
                self.presence.shift_remove(&peer_id);
            }
            ActorMsg::Presence { peer, data } => {
                if self.members.contains_key(&peer.id) {
                    if self.presence.is_empty() {
                        self.next_presence = self.next_presence.max(Instant::now());
                    }
                    self.presence.insert(peer.id, (peer, data));
                } else {
                    peer.send(&ServerMessage::Error {
                        code: ServerError::NotJoined,
                        message: format!("presence for {} before joining it", self.id),
                    });
                }
            }
            ActorMsg::Download { reply } => self.downloads.push(reply),
            ActorMsg::Shutdown => self.shutting_down = true,
        }
    }

    /// Answers a join with the committed state (joins are answered between cycles): the ops
    /// after `since` from memory, else from the log when there are at most
    /// `resume_from_log` of them, else the whole space.
    async fn join(&mut self, peer: Arc<Peer>, since: Option<Seq>) {
        let seq = self.space.seq();
        let oldest_kept = self.recent.front().map_or(seq + 1, |(seq, _)| *seq);
        let ops = match since {
            Some(since) if since == seq => Some(Vec::new()),
            // An op that does not decode (it cannot: the server wrote it) sends the whole space.
            Some(since) if since < seq && since + 1 >= oldest_kept => self
                .recent
                .iter()
                .filter(|(seq, _)| *seq > since)
                .map(|(seq, json)| {
                    json.decode()
                        .ok()
                        .map(|op| SequencedOperation { seq: *seq, op })
                })
                .collect(),
            Some(since) if since < seq && seq - since <= self.shared.config.resume_from_log => {
                self.ops_from_log(since, seq).await
            }
            // No resume point, one too old, or one the server never reached (the client's
            // state came from elsewhere): the whole space.
            _ => None,
        };
        let message = match ops {
            Some(ops) => ServerMessage::Joined {
                space_id: self.id.clone(),
                seq,
                snapshot: None,
                ops,
            },
            None => ServerMessage::Joined {
                space_id: self.id.clone(),
                seq,
                snapshot: Some(self.export()),
                ops: Vec::new(),
            },
        };
        if peer.send(&message) {
            self.members.insert(peer.id, peer);
        }
    }

    /// Answers a `readLog` from the committed state (between cycles, like joins): the ops
    /// after `after`, at most `limit` of them and about one message's worth of JSON (at least
    /// one op), from memory while the resume window still holds them, else from the log as
    /// the store has it. A gap or a repeat in the log is passed on, not smoothed over: the
    /// reader is checking it.
    async fn read_log(&self, peer: &Peer, after: Seq, limit: usize) {
        let head = self.space.seq();
        let budget = self.shared.config.max_message_bytes;
        let oldest_kept = self.recent.front().map_or(head + 1, |(seq, _)| *seq);
        let mut ops = Vec::new();
        let mut bytes = 0;
        let mut take = |seq: Seq, op: Operation, json_len: usize| {
            if ops.len() >= limit || (bytes >= budget && !ops.is_empty()) {
                return false;
            }
            bytes += json_len;
            ops.push(SequencedOperation { seq, op });
            true
        };
        let failure = if after >= head {
            None
        } else if after + 1 >= oldest_kept {
            let mut failure = None;
            for (seq, json) in self.recent.iter().filter(|(seq, _)| *seq > after) {
                match json.decode() {
                    Ok(op) => {
                        if !take(*seq, op, json.as_str().len()) {
                            break;
                        }
                    }
                    Err(error) => {
                        failure = Some(error.to_string());
                        break;
                    }
                }
            }
            failure
        } else {
            let rows = i64::try_from(limit).unwrap_or(i64::MAX);
            match self
                .shared
                .store
                .log_after(&self.id, after, Some(rows))
                .await
            {
                Ok(entries) => {
                    for entry in entries.into_iter().filter(|entry| entry.seq <= head) {
                        let len = entry.payload.as_str().len();
                        if !take(entry.seq, entry.op, len) {
                            break;
                        }
                    }
                    None
                }
                Err(error) => Some(error.to_string()),
            }
        };
        let message = match failure {
            None => ServerMessage::Log {
                space_id: self.id.clone(),
                head,
                ops,
            },
            Some(error) => {
                tracing::warn!(space_id = %self.id, %error, "cannot read the log for readLog");
                ServerMessage::Error {
                    code: ServerError::SpaceUnavailable,
                    message: format!(
                        "the log of {} cannot be read right now ({error}); retry the readLog",
                        self.id
                    ),
                }
            }
        };
        peer.send(&message);
    }

    /// The committed ops after `since` up to `seq`, read from the log; `None` when the log
    /// cannot be read now or does not hold exactly those (the caller sends the whole space).
    async fn ops_from_log(&self, since: Seq, seq: Seq) -> Option<Vec<SequencedOperation>> {
        let limit = i64::try_from(seq - since).ok()?;
        let entries = match self
            .shared
            .store
            .log_after(&self.id, since, Some(limit))
            .await
        {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(space_id = %self.id, %error, "cannot read the log for a resume; sending the whole space");
                return None;
            }
        };
        let contiguous = entries.len() as u64 == seq - since
            && entries
                .iter()
                .zip(since + 1..)
                .all(|(entry, expected)| entry.seq == expected);
        contiguous.then(|| {
            entries
                .into_iter()
                .map(|entry| SequencedOperation {
                    seq: entry.seq,
                    op: entry.op,
                })
                .collect()
        })
    }

    /// The committed space as JSON bytes, encoded once per seq; `None` for a space no op ever
    /// reached.
    fn download(&mut self) -> Option<Download> {
        let seq = self.space.seq();
        if seq == 0 {
            return None;
        }
        if let Some(download) = &self.download
            && download.seq == seq
        {
            return Some(download.clone());
        }
        let json = match serde_json::to_vec(&self.export()) {
            Ok(json) => bytes::Bytes::from(json),
            Err(error) => {
                tracing::error!(space_id = %self.id, %error, "cannot encode the space");
                return None;
            }
        };
        let download = Download { seq, json };
        self.download = Some(download.clone());
        Some(download)
    }

    /// The space in the Kinopio client's shape, cached per seq.
    fn export(&mut self) -> Value {
        let seq = self.space.seq();
        match &self.export {
            Some((cached, value)) if *cached == seq => value.clone(),
            _ => {
                let value = self.space.state().to_kinopio();
                self.export = Some((seq, value.clone()));
                value
            }
        }
    }

    fn relay_presence(&mut self) {
        if self.presence.is_empty() || Instant::now() < self.next_presence {
            return;
        }
        self.next_presence = Instant::now() + self.shared.config.presence_tick;
        for (peer_id, (peer, data)) in std::mem::take(&mut self.presence) {
            let message = ServerMessage::Presence {
                space_id: self.id.clone(),
                client_id: peer.client_id.clone(),
                data,
            };
            let mut encoded = Encoded::new(&message);
            for member in self.members.values() {
                if member.id != peer_id
                    && let Some(frame) = encoded.frame(member.format)
                {
                    member.send_frame(frame);
                }
            }
        }
        self.members.retain(|_, member| !member.is_closed());
    }

    /// One cycle: apply, commit, answer. Loops through recoveries until the batch is settled.
    async fn cycle(&mut self) -> Result<(), ActorError> {
        let mut work: VecDeque<Work> = self.incoming.drain(..).collect();
        // Ops held before this cycle come first if the cycle has to be redone.
        let mut arrivals: IndexMap<String, Operation> = self.held.clone();
        let mut outcomes: Outcomes = Vec::new();
        let mut seq_conflicts = 0;

        let now_ms = self.shared.now_ms();
        match guarded(|| self.space.expire(now_ms)) {
            Ok(expired) => {
                for outcome in expired {
                    self.note(outcome, None, None, &mut outcomes);
                }
            }
            Err(message) => {
                // Which held op broke it is unknown: quarantine them all rather than loop.
                self.shared.metrics.actor_panics.inc();
                tracing::error!(space_id = %self.id, panic = %message, "panic while expiring held ops");
                let held: Vec<(String, Operation)> = self.held.drain(..).collect();
                let rejections = held
                    .into_iter()
                    .map(|(operation_id, op)| internal_error(operation_id, op, &message))
                    .collect::<Vec<_>>();
                self.rebuild(&[]).await?;
                for rejection in &rejections {
                    self.space.remember(
                        rejection.operation_id.clone(),
                        Prior::Rejected {
                            code: rejection.code,
                            message: rejection.message.clone(),
                        },
                    );
                }
                let settled = rejections.into_iter().map(Outcome::Rejected).collect();
                self.settle(settled).await;
                arrivals.clear();
            }
        }

        loop {
            while let Some(Work {
                op,
                waiter,
                received,
            }) = work.pop_front()
            {
                let operation_id = op.operation_id().unwrap_or_default();
                if !operation_id.is_empty() {
                    if let Some(waiter) = &waiter {
                        // One answer per op id and connection, however often it was sent.
                        let waiting =
                            self.waiters
                                .entry(operation_id.clone())
                                .or_insert_with(|| Waiting {
                                    since: received,
                                    waiters: Vec::new(),
                                });
                        if !waiting.waiters.iter().any(|known| known.same_as(waiter)) {
                            waiting.waiters.push(waiter.clone());
                        }
                    }
                    arrivals
                        .entry(operation_id.clone())
                        .or_insert_with(|| op.clone());
                }
                let now_ms = self.shared.now_ms();
                let fault = self.shared.config.fault.as_ref();
                let space_id = &self.id;
                let space = &mut self.space;
                let name = op.name.clone();
                // The op moves into the core; `arrivals` keeps the copy a hold or a recovery needs.
                let result = guarded(|| {
                    if let Some(fault) = fault {
                        fault(space_id, &op);
                    }
                    space.submit(op, now_ms)
                });
                match result {
                    Ok(results) => {
                        for outcome in results {
                            let held_op = arrivals.get(&operation_id);
                            self.note(outcome, held_op, waiter.as_ref(), &mut outcomes);
                        }
                    }
                    Err(message) => {
                        self.shared.metrics.actor_panics.inc();
                        tracing::error!(
                            space_id = %self.id,
                            operation_id = %operation_id,
                            panic = %message,
                            "panic while applying an op; quarantining it and restarting the space from the store"
                        );
                        let op = arrivals
                            .shift_remove(&operation_id)
                            .unwrap_or_else(|| Operation::new(name, Value::Null));
                        let rejection = internal_error(operation_id.clone(), op, &message);
                        if operation_id.is_empty() {
                            if let Some(waiter) = &waiter {
                                waiter.answer(
                                    &self.id,
                                    "",
                                    Answer::Rejected {
                                        code: rejection.code,
                                        message: rejection.message.clone(),
                                    },
                                );
                            }
                        } else {
                            self.quarantine(std::slice::from_ref(&rejection)).await;
                            self.answer_all(
                                &operation_id,
                                Answer::Rejected {
                                    code: rejection.code,
                                    message: rejection.message.clone(),
                                },
                            );
                        }
                        let verdict = (!operation_id.is_empty()).then(|| {
                            (
                                operation_id.clone(),
                                Prior::Rejected {
                                    code: rejection.code,
                                    message: rejection.message.clone(),
                                },
                            )
                        });
                        self.rebuild(verdict.as_slice()).await?;
                        work = self.redo(&mut arrivals, &HashSet::new(), work);
                        outcomes.clear();
                    }
                }
            }

            let entries: Vec<NewLogEntry> = outcomes
                .iter()
                .filter_map(|outcome| match outcome {
                    Outcome::Applied(applied) => Some(NewLogEntry::of(
                        self.id.clone(),
                        applied.seq,
                        applied.operation_id.clone(),
                        self.client_of(&applied.operation_id),
                        &applied.op,
                    )),
                    _ => None,
                })
                .collect();
            let mut logged: Vec<(Seq, OpJson)> = entries
                .iter()
                .map(|entry| (entry.seq, entry.payload.clone()))
                .collect();
            let result = match self.shared.committer.commit(entries).await {
                Some(result) => result,
                None => return Err(ActorError::Load("the committer stopped".to_owned())),
            };
            let poison = match result {
                CommitResult::Committed => {
                    self.remember_recent(logged);
                    self.settle(std::mem::take(&mut outcomes)).await;
                    break;
                }
                CommitResult::Poison(poison) => poison,
            };
            // The rows before the refused one committed.
            logged.truncate(poison.index);
            self.remember_recent(logged);

            // Outcomes before the refused row are durable and answered now.
            let position = outcomes
                .iter()
                .enumerate()
                .filter(|(_, outcome)| matches!(outcome, Outcome::Applied(_)))
                .nth(poison.index)
                .map_or(outcomes.len(), |(position, _)| position);
            let mut rest = outcomes.split_off(position);
            let settled_before = std::mem::take(&mut outcomes);
            let mut settled: HashSet<String> = settled_before.iter().map(outcome_id).collect();
            self.settle(settled_before).await;
            let Some(Outcome::Applied(refused)) = (!rest.is_empty()).then(|| rest.remove(0)) else {
                break;
            };
            let mut verdicts = Vec::new();
            match poison.kind {
                kind @ (PoisonKind::DuplicateOperation | PoisonKind::Refused) => {
                    // A replay of an op older than this actor's memory is answered with its
                    // original seq; anything else the store refuses is quarantined.
                    let original = match kind {
                        PoisonKind::DuplicateOperation => {
                            match self.prior_with_retry(&refused.operation_id).await {
                                Some(PriorRecord::Logged(seq)) => Some(seq),
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    if let Some(seq) = original {
                        self.shared.metrics.ops_duplicate.inc();
                        let answer = Answer::Ack {
                            seq,
                            duplicate: true,
                        };
                        self.answer_all(&refused.operation_id, answer);
                        verdicts.push((refused.operation_id.clone(), Prior::Accepted(seq)));
                    } else {
                        tracing::warn!(space_id = %self.id, operation_id = %refused.operation_id, error = %poison.error, "the store refused an op; quarantined");
                        let rejection = Rejection {
                            operation_id: refused.operation_id.clone(),
                            code: RejectCode::ConstraintViolation,
                            message: format!("the store refused the op: {}", poison.error),
                            op: refused.op.clone(),
                            repeated: false,
                        };
                        verdicts.push(self.refuse_for_good(rejection).await);
                    }
                    settled.insert(refused.operation_id.clone());
                }
                PoisonKind::SeqTaken => {
                    seq_conflicts += 1;
                    tracing::warn!(space_id = %self.id, seq = refused.seq, "sequence number already taken in the log: another writer; reloading the space");
                    if seq_conflicts > 3 {
                        // Give up on this cycle rather than loop: nothing was applied, the
                        // clients retry.
                        self.rebuild(&[]).await?;
                        for (operation_id, _) in arrivals.drain(..) {
                            self.answer_all(
                                &operation_id,
                                Answer::Rejected {
                                    code: RejectCode::StoreUnavailable,
                                    message:
                                        "the space's log is being written by someone else; retry"
                                            .to_owned(),
                                },
                            );
                        }
                        self.held.clear();
                        return Ok(());
                    }
                }
            }
            self.rebuild(&verdicts).await?;
            work = self.redo(&mut arrivals, &settled, work);
        }
        self.after_commit();
        Ok(())
    }

    /// Quarantines an op and answers it; returns the verdict the rebuilt space remembers.
    async fn refuse_for_good(&mut self, rejection: Rejection) -> (String, Prior) {
        self.quarantine(std::slice::from_ref(&rejection)).await;
        self.shared.metrics.rejected(rejection.code.as_str());
        self.answer_all(
            &rejection.operation_id,
            Answer::Rejected {
                code: rejection.code,
                message: rejection.message.clone(),
            },
        );
        (
            rejection.operation_id,
            Prior::Rejected {
                code: rejection.code,
                message: rejection.message,
            },
        )
    }

    /// The ops to apply again after a rebuild: every arrival not settled, in arrival order,
    /// then the work not reached yet. Their waiters are still registered.
    fn redo(
        &mut self,
        arrivals: &mut IndexMap<String, Operation>,
        settled: &HashSet<String>,
        rest: VecDeque<Work>,
    ) -> VecDeque<Work> {
        self.held.clear();
        let mut work: VecDeque<Work> = arrivals
            .drain(..)
            .filter(|(operation_id, _)| !settled.contains(operation_id))
            .map(|(_, op)| Work {
                op,
                waiter: None,
                received: Instant::now(),
            })
            .collect();
        work.extend(rest);
        work
    }

    /// Records an outcome of the core: answers `held` at once, keeps the rest for after the
    /// commit. `op` and `waiter` are those of the op just submitted (a `held` is always its).
    fn note(
        &mut self,
        outcome: Outcome,
        op: Option<&Operation>,
        waiter: Option<&Waiter>,
        outcomes: &mut Outcomes,
    ) {
        match outcome {
            Outcome::Held {
                operation_id,
                waiting_for,
            } => {
                if let Some(op) = op
                    && !self.held.contains_key(&operation_id)
                {
                    self.shared.metrics.ops_held.inc();
                    self.held.insert(operation_id.clone(), op.clone());
                }
                if let Some(waiter) = waiter {
                    waiter.answer(&self.id, &operation_id, Answer::Held { waiting_for });
                }
            }
            Outcome::Rejected(rejection) if rejection.operation_id.is_empty() => {
                // No usable id: nothing to quarantine it under or to wait for; answer now.
                self.shared.metrics.rejected(rejection.code.as_str());
                if let Some(waiter) = waiter {
                    waiter.answer(
                        &self.id,
                        "",
                        Answer::Rejected {
                            code: rejection.code,
                            message: rejection.message,
                        },
                    );
                }
            }
            other => {
                self.held.shift_remove(outcome_id_ref(&other));
                outcomes.push(other);
            }
        }
    }

    /// Answers durable outcomes in order: quarantine first, then acks, rejections and
    /// broadcasts.
    async fn settle(&mut self, mut outcomes: Outcomes) {
        self.recognise_old_replays(&mut outcomes).await;
        let rejections: Vec<Rejection> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Rejected(rejection) if rejection.code.is_quarantined() => {
                    Some(rejection.clone())
                }
                _ => None,
            })
            .collect();
        self.quarantine(&rejections).await;
        for outcome in outcomes {
            match outcome {
                Outcome::Applied(applied) => {
                    self.shared.metrics.ops_accepted.inc();
                    let waiters = match self.waiters.remove(&applied.operation_id) {
                        Some(waiting) => {
                            self.shared
                                .metrics
                                .ack_seconds
                                .observe(waiting.since.elapsed().as_secs_f64());
                            waiting.waiters
                        }
                        None => Vec::new(),
                    };
                    for waiter in &waiters {
                        waiter.answer(
                            &self.id,
                            &applied.operation_id,
                            Answer::Ack {
                                seq: applied.seq,
                                duplicate: false,
                            },
                        );
                    }
                    let senders: Vec<u64> = waiters.iter().filter_map(Waiter::peer_id).collect();
                    self.broadcast(applied.seq, applied.op, &senders);
                }
                Outcome::Duplicate { operation_id, seq } => {
                    self.shared.metrics.ops_duplicate.inc();
                    self.answer_all(
                        &operation_id,
                        Answer::Ack {
                            seq,
                            duplicate: true,
                        },
                    );
                }
                Outcome::Rejected(rejection) => {
                    self.shared.metrics.rejected(rejection.code.as_str());
                    if rejection.code.is_quarantined() && !rejection.repeated {
                        tracing::info!(
                            space_id = %self.id,
                            operation_id = %rejection.operation_id,
                            code = %rejection.code,
                            detail = %rejection.message,
                            repeated = rejection.repeated,
                            "op rejected and quarantined"
                        );
                    }
                    self.answer_all(
                        &rejection.operation_id,
                        Answer::Rejected {
                            code: rejection.code,
                            message: rejection.message,
                        },
                    );
                }
                Outcome::Held { .. } => {}
            }
        }
        self.members.retain(|_, member| !member.is_closed());
    }

    /// An op refused because of what the space has become since (its card deleted, …) may be
    /// the replay of an op accepted long ago, older than the ids the space remembers: a client
    /// that never got its ack resends it after 10,000 other ops. The log knows it, and such a
    /// replay gets its original seq like any other, not a rejection (nor a quarantine row).
    /// Only these rejections are looked up; when the log cannot be read, the answer is a
    /// retryable `store_unavailable` rather than a verdict the server is not sure of.
    async fn recognise_old_replays(&mut self, outcomes: &mut Outcomes) {
        let candidate = |outcome: &Outcome| match outcome {
            Outcome::Rejected(rejection) => {
                !rejection.repeated
                    && !rejection.operation_id.is_empty()
                    && may_be_an_old_replay(rejection.code)
            }
            _ => false,
        };
        let candidates: Vec<String> = outcomes
            .iter()
            .filter(|outcome| candidate(outcome))
            .map(outcome_id)
            .collect();
        if candidates.is_empty() {
            return;
        }
        // One lookup for the whole cycle, however many ops a client sent at a deleted card.
        let logged = match self.shared.store.logged_seqs(&self.id, &candidates).await {
            Ok(logged) => Ok(logged),
            Err(error) => {
                tracing::warn!(space_id = %self.id, ops = candidates.len(), %error, "cannot tell whether refused ops are old replays; answered retryable");
                Err(error.to_string())
            }
        };
        for outcome in outcomes.iter_mut().filter(|outcome| candidate(outcome)) {
            let Outcome::Rejected(rejection) = outcome else {
                continue;
            };
            match &logged {
                Ok(logged) => {
                    if let Some(&seq) = logged.get(&rejection.operation_id) {
                        self.space
                            .remember(&rejection.operation_id, Prior::Accepted(seq));
                        *outcome = Outcome::Duplicate {
                            operation_id: std::mem::take(&mut rejection.operation_id),
                            seq,
                        };
                    }
                }
                Err(error) => {
                    self.space.forget(&rejection.operation_id);
                    rejection.code = RejectCode::StoreUnavailable;
                    rejection.message = format!(
                        "the op may be an old replay and the log cannot be read to tell: {error}; retry"
                    );
                }
            }
        }
    }

    /// Sends a committed op to every member but `except` (it is already in the resume window).
    fn broadcast(&mut self, seq: Seq, op: Operation, except: &[u64]) {
        self.committed = seq;
        if self.members.keys().all(|member| except.contains(member)) {
            return;
        }
        let message = ServerMessage::Broadcast {
            space_id: self.id.clone(),
            seq,
            op,
        };
        let mut encoded = Encoded::new(&message);
        for member in self.members.values() {
            if !except.contains(&member.id)
                && let Some(frame) = encoded.frame(member.format)
            {
                self.shared.metrics.broadcasts.inc();
                member.send_frame(frame);
            }
        }
    }

    /// The client recorded with an op: the first that sent it.
    fn client_of(&self, operation_id: &str) -> Option<String> {
        self.waiters
            .get(operation_id)
            .and_then(|waiting| waiting.waiters.first())
            .and_then(Waiter::client_id)
            .map(str::to_owned)
    }

    fn answer_all(&mut self, operation_id: &str, answer: Answer) {
        if let Some(waiting) = self.waiters.remove(operation_id) {
            for waiter in waiting.waiters {
                waiter.answer(&self.id, operation_id, answer.clone());
            }
        }
    }

    /// Writes rejections to the quarantine table, retrying transient errors. A permanent
    /// error is logged and the op is still answered (it was never applied).
    async fn quarantine(&self, rejections: &[Rejection]) {
        if rejections.is_empty() {
            return;
        }
        let records: Vec<NewQuarantine> = rejections
            .iter()
            .map(|rejection| NewQuarantine {
                space_id: self.id.clone(),
                operation_id: rejection.operation_id.clone(),
                client_id: self.client_of(&rejection.operation_id),
                op: rejection.op.clone(),
                code: rejection.code.as_str().to_owned(),
                detail: rejection.message.clone(),
            })
            .collect();
        let mut attempt = 0;
        loop {
            match self.shared.store.quarantine_batch(&records).await {
                Ok(()) => {
                    self.shared.metrics.quarantined.inc_by(records.len() as u64);
                    return;
                }
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    if attempt == 1 {
                        tracing::warn!(space_id = %self.id, %error, "cannot write the quarantine; retrying");
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(error) => {
                    tracing::error!(space_id = %self.id, %error, "the quarantine write was refused; the ops are rejected but not recorded");
                    return;
                }
            }
        }
    }

    async fn prior_with_retry(&self, operation_id: &str) -> Option<PriorRecord> {
        let mut attempt = 0;
        loop {
            match self.shared.store.prior(&self.id, operation_id).await {
                Ok(prior) => return prior,
                Err(error) if error.is_transient() && attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(error) => {
                    tracing::error!(space_id = %self.id, operation_id, %error, "cannot look up an op");
                    return None;
                }
            }
        }
    }

    /// Replaces the space with its committed state from the store (retrying transient errors)
    /// and records the verdicts reached for the ops that caused the rebuild.
    async fn rebuild(&mut self, verdicts: &[(String, Prior)]) -> Result<(), ActorError> {
        let mut attempt = 0;
        let loaded = loop {
            match load(
                &*self.shared.store,
                &self.id,
                self.shared.config.space.clone(),
            )
            .await
            {
                Ok(loaded) => break loaded,
                Err((error, true)) => {
                    attempt += 1;
                    if attempt == 1 {
                        tracing::warn!(space_id = %self.id, %error, "cannot reload the space; retrying");
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err((error, false)) => return Err(ActorError::Load(error)),
            }
        };
        let head = loaded.space.seq();
        self.space = loaded.space;
        self.export = None;
        self.download = None;
        if head > self.committed {
            // Someone else wrote to the log (an operator releasing a quarantined op): the
            // members get those ops in order, or are told to rejoin when the tail lacks them.
            let external: Vec<LogEntry> = loaded
                .tail
                .into_iter()
                .filter(|op| op.seq > self.committed)
                .collect();
            tracing::info!(space_id = %self.id, from = self.committed + 1, to = head, "the log has ops this actor did not write; relaying them");
            if external.len() as u64 == head - self.committed {
                self.remember_recent(
                    external
                        .iter()
                        .map(|logged| (logged.seq, logged.payload.clone())),
                );
                for op in external {
                    self.broadcast(op.seq, op.op, &[]);
                }
            } else {
                for member in std::mem::take(&mut self.members).into_values() {
                    member.send(&ServerMessage::Error {
                        code: ServerError::SpaceUnavailable,
                        message: format!(
                            "space {} was changed outside this server; rejoin with since",
                            self.id
                        ),
                    });
                }
                self.recent.clear();
                self.committed = head;
            }
        }
        for (operation_id, prior) in verdicts {
            self.space.remember(operation_id, prior.clone());
        }
        Ok(())
    }

    fn after_commit(&mut self) {
        if self.space.seq() >= self.next_snapshot_seq {
            self.snapshot_in_background();
        }
    }

    fn stored_snapshot(&self) -> Option<StoredSnapshot> {
        let snapshot = Snapshot::of(&self.space);
        match snapshot.encode() {
            Ok(data) => Some(StoredSnapshot {
                seq: snapshot.seq,
                format: i32::try_from(snapshot.version).unwrap_or(1),
                data,
            }),
            Err(error) => {
                tracing::error!(space_id = %self.id, %error, "cannot encode a snapshot");
                None
            }
        }
    }

    fn snapshot_in_background(&mut self) {
        let Some(snapshot) = self.stored_snapshot() else {
            return;
        };
        self.last_snapshot_seq = snapshot.seq;
        self.next_snapshot_seq = snapshot.seq + self.shared.config.snapshot_every.max(1);
        let shared = self.shared.clone();
        let space_id = self.id.clone();
        self.shared.actors.spawn(async move {
            let _turn = shared.snapshot_slots.acquire().await;
            match shared.store.write_snapshot(&space_id, &snapshot).await {
                Ok(()) => {
                    shared.metrics.snapshots_written.inc();
                }
                Err(error) => {
                    tracing::warn!(space_id, %error, "cannot write a snapshot; the log still has every op");
                }
            }
        });
    }

    async fn snapshot_now(&mut self) {
        if self.space.seq() == self.last_snapshot_seq {
            return;
        }
        // Snapshots queue for a few slots, so many spaces unloading at once never crowd out
        // the commits that acks wait for.
        let _turn = self.shared.snapshot_slots.acquire().await;
        let Some(snapshot) = self.stored_snapshot() else {
            return;
        };
        match self.shared.store.write_snapshot(&self.id, &snapshot).await {
            Ok(()) => {
                self.last_snapshot_seq = snapshot.seq;
                self.shared.metrics.snapshots_written.inc();
            }
            Err(error) => {
                tracing::warn!(space_id = %self.id, %error, "cannot write the final snapshot; the log still has every op");
            }
        }
    }

    /// Unloads an idle space: snapshot, leave the registry, and hand any message that slipped
    /// in meanwhile to a fresh actor (which loads what this one committed).
    async fn unload(&mut self) {
        self.snapshot_now().await;
        self.shared.unregister(&self.id, self.generation);
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            if let Err(error) = self.shared.dispatch(&self.id, msg) {
                let (crate::shared::DispatchError::Overloaded(msg)
                | crate::shared::DispatchError::ShuttingDown(msg)) = error;
                refuse(&self.id, msg, "the space was unloading");
            }
        }
        tracing::debug!(space_id = %self.id, "space unloaded");
    }

    /// Shutdown: everything queued was applied and committed by the last cycle; held ops are
    /// answered `shutting_down` (retryable), a snapshot is written, the actor leaves.
    async fn stop(&mut self) {
        // Anything that arrived in the same breath is applied too.
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg);
        }
        if !self.incoming.is_empty() && self.cycle().await.is_err() {
            return;
        }
        for (operation_id, _) in std::mem::take(&mut self.held) {
            self.answer_all(
                &operation_id,
                Answer::Rejected {
                    code: RejectCode::ShuttingDown,
                    message: "the server is shutting down; resubmit on the next connection"
                        .to_owned(),
                },
            );
        }
        self.snapshot_now().await;
        self.shared.unregister(&self.id, self.generation);
    }

    /// The actor cannot go on (its log cannot be read back): every waiter and member is told,
    /// and the space is left unloaded, never replaced by an empty one.
    fn fail(&mut self, reason: &str) {
        tracing::error!(space_id = %self.id, reason, "space actor stopped");
        self.shared.unregister(&self.id, self.generation);
        for (operation_id, waiting) in std::mem::take(&mut self.waiters) {
            for waiter in waiting.waiters {
                waiter.answer(
                    &self.id,
                    &operation_id,
                    Answer::Rejected {
                        code: RejectCode::StoreUnavailable,
                        message: format!("the space cannot be loaded right now: {reason}"),
                    },
                );
            }
        }
        for member in self.members.values() {
            member.send(&ServerMessage::Error {
                code: ServerError::SpaceUnavailable,
                message: format!("space {} stopped: {reason}; rejoin later", self.id),
            });
        }
        let (_, rx) = mpsc::channel(1);
        let rx = std::mem::replace(&mut self.rx, rx);
        refuse_all(&self.id, rx, reason);
    }
}

/// Rejections that an op accepted long ago can get when it is replayed, because the space
/// changed since (what it refers to was deleted, or never comes back): the log is asked before
/// they are answered. The others judge the op itself, which has not changed.
fn may_be_an_old_replay(code: RejectCode) -> bool {
    matches!(
        code,
        RejectCode::ReferenceDeleted
            | RejectCode::DependencyTimeout
            | RejectCode::DependencyRejected
    )
}

/// Ops from a load to the space's first snapshot: `every` less a random part of up to half of
/// it. Spaces loaded together and written at the same pace (a deploy, a load test) would
/// otherwise all snapshot in the same instant, every `every` ops: in a 400-space run at
/// half of peak, each round stalled acks for ~100 ms. Later snapshots follow `every` ops
/// after the space's own last one, so the spread lasts, and a space's log tail never
/// exceeds `every` ops.
fn first_snapshot_after(every: u64) -> u64 {
    let every = every.max(1);
    every - rand::random_range(0..=every / 2)
}

fn internal_error(operation_id: String, op: Operation, panic: &str) -> Rejection {
    Rejection {
        operation_id,
        code: RejectCode::InternalError,
        message: format!("the server failed while applying this op ({panic}); it was quarantined"),
        op,
        repeated: false,
    }
}

fn outcome_id(outcome: &Outcome) -> String {
    outcome_id_ref(outcome).to_owned()
}

fn outcome_id_ref(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Applied(applied) => &applied.operation_id,
        Outcome::Duplicate { operation_id, .. } | Outcome::Held { operation_id, .. } => {
            operation_id
        }
        Outcome::Rejected(rejection) => &rejection.operation_id,
    }
}

#[cfg(test)]
mod tests {
    use super::first_snapshot_after;

    #[test]
    fn first_snapshots_are_spread_over_the_second_half_of_the_interval() {
        let firsts: Vec<u64> = (0..1_000).map(|_| first_snapshot_after(1_000)).collect();
        assert!(firsts.iter().all(|first| (500..=1_000).contains(first)));
        // Spread, not one value: spaces loaded together must not snapshot together.
        assert!(firsts.iter().any(|first| *first < 600));
        assert!(firsts.iter().any(|first| *first > 900));
        assert_eq!(first_snapshot_after(1), 1);
        assert_eq!(
            first_snapshot_after(0),
            1,
            "a zero setting still means every op"
        );
    }
}
