//! A space as a pure state machine: ops go in with the current time, outcomes come out
//! (applied with a sequence number, duplicate, held, rejected). No I/O and no clock: the caller
//! passes milliseconds in and calls [`Space::expire`] when [`Space::next_deadline`] is due.

use std::collections::BTreeSet;

use serde_json::Value;
use spacesync_protocol::{Operation, RejectCode, Seq};

use crate::action::{self, Action, ParsedOp};
use crate::hold::{HeldOp, Holds};
use crate::state::{Requirement, SpaceState};

mod seen;
use seen::Seen;

/// Limits of one space's holding area. Defaults are documented in `docs/operations.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceConfig {
    /// How long an op may wait for its dependencies before it is rejected.
    pub hold_timeout_ms: u64,
    /// Most ops held at once in one space.
    pub max_held_ops: usize,
    /// Most bytes of op bodies held at once in one space.
    pub max_held_bytes: usize,
    /// Op ids remembered in memory (the newest); a replay of an older one is recognised by the
    /// store's unique key instead. Bounds the memory of a long-lived space.
    pub remember_ops: usize,
}

impl Default for SpaceConfig {
    fn default() -> SpaceConfig {
        SpaceConfig {
            // Real clients send a dependency within the same or the next batch; five seconds
            // covers a slow mobile round trip without keeping poison around for long.
            hold_timeout_ms: 5_000,
            max_held_ops: 1_000,
            max_held_bytes: 4 << 20,
            remember_ops: 10_000,
        }
    }
}

/// What became of an op the space has seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    Accepted(Seq),
    Rejected { code: RejectCode, message: String },
}

/// An op that was applied and must be persisted, acknowledged and broadcast.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub seq: Seq,
    pub operation_id: String,
    pub op: Operation,
}

/// An op that was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub operation_id: String,
    pub code: RejectCode,
    pub message: String,
    pub op: Operation,
    /// The op had been rejected before; this answer repeats it without doing the work again.
    pub repeated: bool,
}

/// Everything that happened to ops in one call, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Applied(Applied),
    /// A replay of an accepted op: its original sequence number, nothing changed.
    Duplicate {
        operation_id: String,
        seq: Seq,
    },
    /// The op waits for these ids.
    Held {
        operation_id: String,
        waiting_for: Vec<String>,
    },
    Rejected(Rejection),
}

/// A log entry that could not be replayed (a corrupt or foreign log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("log entry {got} does not follow sequence number {expected_after}")]
    Gap { expected_after: Seq, got: Seq },
    #[error("log entry {seq} cannot be applied: {message}")]
    Invalid { seq: Seq, message: String },
}

/// What a held op waits for.
struct Waiting {
    missing: BTreeSet<String>,
    targets: Vec<String>,
    blocked_on: Vec<String>,
}

/// One space: its content, its sequence counter, the ops it has seen and the ops it holds.
#[derive(Debug, Clone)]
pub struct Space {
    id: String,
    seq: Seq,
    state: SpaceState,
    seen: Seen,
    holds: Holds,
    config: SpaceConfig,
}

impl Space {
    /// An empty space.
    pub fn new(id: impl Into<String>, config: SpaceConfig) -> Space {
        let id = id.into();
        Space {
            state: SpaceState::new(&id),
            id,
            seq: 0,
            seen: Seen::new(config.remember_ops),
            holds: Holds::default(),
            config,
        }
    }

    /// A space restored from a snapshot taken at `seq`.
    pub fn from_state(
        id: impl Into<String>,
        seq: Seq,
        state: SpaceState,
        config: SpaceConfig,
    ) -> Space {
        Space {
            id: id.into(),
            seq,
            state,
            seen: Seen::new(config.remember_ops),
            holds: Holds::default(),
            config,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sequence number of the last applied op (0 for a new space).
    pub fn seq(&self) -> Seq {
        self.seq
    }

    pub fn state(&self) -> &SpaceState {
        &self.state
    }

    pub fn held_count(&self) -> usize {
        self.holds.len()
    }

    pub fn held_bytes(&self) -> usize {
        self.holds.bytes()
    }

    /// When the earliest held op times out; call [`Space::expire`] then.
    pub fn next_deadline(&self) -> Option<u64> {
        self.holds.next_deadline()
    }

    /// What is known about an op id: accepted, rejected, or nothing (never seen, or seen so
    /// long ago that only the store knows; the caller asks the store then).
    pub fn prior(&self, operation_id: &str) -> Option<Prior> {
        self.seen.get(operation_id)
    }

    /// Records what the durable store knows about an op, so a replay is recognised without
    /// asking the store again.
    pub fn remember(&mut self, operation_id: impl AsRef<str>, prior: Prior) {
        self.seen.insert(operation_id.as_ref(), prior);
    }

    /// Forgets what is known about an op id, so it is judged afresh (an operator releasing a
    /// quarantined op).
    pub fn forget(&mut self, operation_id: &str) {
        self.seen.remove(operation_id);
    }

    /// Submits one op at time `now_ms`. The outcomes include this op's and those of any held
    /// ops it released, in the order they happened.
    pub fn submit(&mut self, op: Operation, now_ms: u64) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        self.submit_into(op, now_ms, &mut outcomes);
        outcomes
    }

    /// Submits a batch, in order.
    pub fn submit_all(
        &mut self,
        ops: impl IntoIterator<Item = Operation>,
        now_ms: u64,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for op in ops {
            self.submit_into(op, now_ms, &mut outcomes);
        }
        outcomes
    }

    fn submit_into(&mut self, op: Operation, now_ms: u64, outcomes: &mut Vec<Outcome>) {
        let operation_id = match action::operation_id(&op) {
            Ok(operation_id) => operation_id,
            Err(error) => {
                outcomes.push(rejected(String::new(), error.code, error.message, op));
                return;
            }
        };
        if let Some(prior) = self.seen.get(&operation_id) {
            outcomes.push(match prior {
                Prior::Accepted(seq) => Outcome::Duplicate { operation_id, seq },
                Prior::Rejected { code, message } => Outcome::Rejected(Rejection {
                    operation_id,
                    code,
                    message,
                    op,
                    repeated: true,
                }),
            });
            return;
        }
        if let Some(arrival) = self.holds.arrival_of(&operation_id) {
            let waiting_for = self
                .holds
                .get(arrival)
                .map(|held| held.missing.iter().cloned().collect())
                .unwrap_or_default();
            outcomes.push(Outcome::Held {
                operation_id,
                waiting_for,
            });
            return;
        }
        let parsed = match action::parse_enveloped(op, operation_id.clone(), &self.id) {
            Ok(parsed) => parsed,
            Err((error, op)) => {
                let created = created_id_guess(&op);
                self.reject(operation_id, error.code, error.message, op, outcomes);
                if let Some(id) = created {
                    self.reject_dependents(&id, outcomes);
                }
                return;
            }
        };
        let arrival = self.holds.next_arrival();
        self.consider(arrival, parsed, now_ms, outcomes);
    }

    /// Decides what to do with a parsed op that is not held yet: apply it, hold it or reject it.
    fn consider(
        &mut self,
        arrival: u64,
        parsed: ParsedOp,
        now_ms: u64,
        outcomes: &mut Vec<Outcome>,
    ) {
        let targets = targets(&parsed.actions);
        let blocked_on = self.holds.blocking_targets(arrival, &targets);
        match self.state.requirement(&parsed.actions) {
            Requirement::Ready if blocked_on.is_empty() => self.apply(parsed, outcomes),
            Requirement::Ready => {
                let waiting = Waiting {
                    missing: BTreeSet::new(),
                    targets,
                    blocked_on,
                };
                self.hold(arrival, parsed, waiting, now_ms, outcomes)
            }
            Requirement::Missing(missing) => {
                let waiting = Waiting {
                    missing,
                    targets,
                    blocked_on,
                };
                self.hold(arrival, parsed, waiting, now_ms, outcomes)
            }
            Requirement::Deleted(id) => self.reject_parsed(
                parsed,
                RejectCode::ReferenceDeleted,
                format!("{id} was removed from the space"),
                outcomes,
            ),
            Requirement::Malformed(message) => {
                self.reject_parsed(parsed, RejectCode::MalformedOperation, message, outcomes)
            }
        }
    }

    fn hold(
        &mut self,
        arrival: u64,
        parsed: ParsedOp,
        waiting: Waiting,
        now_ms: u64,
        outcomes: &mut Vec<Outcome>,
    ) {
        let Waiting {
            missing,
            targets,
            blocked_on,
        } = waiting;
        let bytes = serde_json::to_vec(&parsed.op.body).map_or(0, |body| body.len());
        if self.holds.len() >= self.config.max_held_ops
            || self.holds.bytes() + bytes > self.config.max_held_bytes
        {
            let message = format!(
                "the space already holds {} ops ({} bytes) waiting for dependencies",
                self.holds.len(),
                self.holds.bytes()
            );
            self.reject_parsed(parsed, RejectCode::HoldLimitExceeded, message, outcomes);
            return;
        }
        let mut waiting_for: Vec<String> = missing.iter().cloned().collect();
        waiting_for.extend(blocked_on.iter().cloned());
        outcomes.push(Outcome::Held {
            operation_id: parsed.operation_id.clone(),
            waiting_for,
        });
        let held = HeldOp {
            parsed,
            missing,
            targets,
            deadline_ms: now_ms.saturating_add(self.config.hold_timeout_ms),
            bytes,
            registered: BTreeSet::new(),
        };
        self.holds.hold(arrival, held, &blocked_on);
    }

    fn apply(&mut self, parsed: ParsedOp, outcomes: &mut Vec<Outcome>) {
        let freed = freed_ids(&parsed.actions);
        self.apply_now(parsed, outcomes);
        self.release(freed, outcomes);
    }

    /// Gives the op the next sequence number and applies it. Its requirement is `Ready`.
    fn apply_now(&mut self, parsed: ParsedOp, outcomes: &mut Vec<Outcome>) {
        self.seq += 1;
        for action in parsed.actions {
            self.state.apply(action);
        }
        let operation_id = parsed.operation_id;
        self.seen.insert(&operation_id, Prior::Accepted(self.seq));
        outcomes.push(Outcome::Applied(Applied {
            seq: self.seq,
            operation_id,
            op: parsed.op,
        }));
    }

    /// Re-checks the held ops that wait for any of `ids`, applying those that became ready in
    /// arrival order; applying one may release more, which are considered in the same loop.
    fn release(&mut self, ids: Vec<String>, outcomes: &mut Vec<Outcome>) {
        let mut candidates: BTreeSet<u64> = BTreeSet::new();
        for id in &ids {
            candidates.extend(self.holds.take_waiters(id));
        }
        while let Some(arrival) = candidates.pop_first() {
            let Some(held) = self.holds.get(arrival) else {
                continue;
            };
            let blocked_on = self.holds.blocking_targets(arrival, &held.targets);
            let requirement = self.state.requirement(&held.parsed.actions);
            let missing = match requirement {
                Requirement::Ready if blocked_on.is_empty() => None,
                Requirement::Ready => Some(BTreeSet::new()),
                Requirement::Missing(missing) => Some(missing),
                Requirement::Deleted(id) => {
                    let message = format!("{id} was removed from the space");
                    self.reject_held(
                        arrival,
                        RejectCode::ReferenceDeleted,
                        message,
                        outcomes,
                        &mut candidates,
                    );
                    continue;
                }
                Requirement::Malformed(message) => {
                    self.reject_held(
                        arrival,
                        RejectCode::MalformedOperation,
                        message,
                        outcomes,
                        &mut candidates,
                    );
                    continue;
                }
            };
            match missing {
                // Still waiting: record what for now.
                Some(missing) => self.holds.rewait(arrival, missing, &blocked_on),
                None => {
                    let Some(held) = self.holds.remove(arrival) else {
                        continue;
                    };
                    // Ops that waited for what it creates, or queued behind it, are next.
                    for id in freed_ids(&held.parsed.actions) {
                        candidates.extend(self.holds.take_waiters(&id));
                    }
                    self.apply_now(held.parsed, outcomes);
                }
            }
        }
    }

    fn reject_held(
        &mut self,
        arrival: u64,
        code: RejectCode,
        message: String,
        outcomes: &mut Vec<Outcome>,
        candidates: &mut BTreeSet<u64>,
    ) {
        if let Some(held) = self.holds.remove(arrival) {
            for target in &held.targets {
                candidates.extend(self.holds.take_waiters(target));
            }
            self.reject_parsed(held.parsed, code, message, outcomes);
        }
    }

    /// Rejects held ops whose deadline has passed, and the ops that waited for them.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for arrival in self.holds.expired(now_ms) {
            let Some(held) = self.holds.remove(arrival) else {
                continue;
            };
            let missing: Vec<&str> = held.missing.iter().map(String::as_str).collect();
            let message = if missing.is_empty() {
                format!(
                    "waited {} ms behind earlier held ops on {}",
                    self.config.hold_timeout_ms,
                    held.targets.join(", ")
                )
            } else {
                format!(
                    "waited {} ms for {} which never arrived",
                    self.config.hold_timeout_ms,
                    missing.join(", ")
                )
            };
            let targets = held.targets.clone();
            self.reject_parsed(
                held.parsed,
                RejectCode::DependencyTimeout,
                message,
                &mut outcomes,
            );
            // Ops queued behind it on the same items may go now.
            self.release(targets, &mut outcomes);
        }
        outcomes
    }

    fn reject_parsed(
        &mut self,
        parsed: ParsedOp,
        code: RejectCode,
        message: String,
        outcomes: &mut Vec<Outcome>,
    ) {
        let created: Vec<String> = parsed
            .actions
            .iter()
            .flat_map(SpaceState::created_ids)
            .filter(|id| !self.exists_anywhere(id))
            .map(str::to_owned)
            .collect();
        self.reject(parsed.operation_id, code, message, parsed.op, outcomes);
        for id in created {
            self.reject_dependents(&id, outcomes);
        }
    }

    fn reject(
        &mut self,
        operation_id: String,
        code: RejectCode,
        message: String,
        op: Operation,
        outcomes: &mut Vec<Outcome>,
    ) {
        if code.is_quarantined() && !operation_id.is_empty() {
            self.seen.insert(
                &operation_id,
                Prior::Rejected {
                    code,
                    message: message.clone(),
                },
            );
        }
        outcomes.push(rejected(operation_id, code, message, op));
    }

    /// Rejects every held op that waits for `id`, whose create was just rejected.
    fn reject_dependents(&mut self, id: &str, outcomes: &mut Vec<Outcome>) {
        for arrival in self.holds.waiting_for(id) {
            if let Some(held) = self.holds.remove(arrival) {
                let targets = held.targets.clone();
                self.reject_parsed(
                    held.parsed,
                    RejectCode::DependencyRejected,
                    format!("it waited for {id}, whose create was rejected"),
                    outcomes,
                );
                self.release(targets, outcomes);
            }
        }
    }

    fn exists_anywhere(&self, id: &str) -> bool {
        self.state
            .exists_in(id, &crate::Collection::DEPENDENCY_ORDER)
            || self.state.strokes.contains_key(id)
    }

    /// Applies an op read back from the log at `seq`. The log holds only ops that were
    /// applied, in order, so they apply again without holding.
    pub fn replay(&mut self, seq: Seq, op: &Operation) -> Result<(), ReplayError> {
        if seq != self.seq + 1 {
            return Err(ReplayError::Gap {
                expected_after: self.seq,
                got: seq,
            });
        }
        let parsed = action::parse(op, &self.id).map_err(|error| ReplayError::Invalid {
            seq,
            message: error.message,
        })?;
        match self.state.requirement(&parsed.actions) {
            Requirement::Ready => {}
            other => {
                return Err(ReplayError::Invalid {
                    seq,
                    message: format!("{other:?}"),
                });
            }
        }
        for action in parsed.actions {
            self.state.apply(action);
        }
        self.seq = seq;
        self.seen.insert(&parsed.operation_id, Prior::Accepted(seq));
        Ok(())
    }
}

fn rejected(operation_id: String, code: RejectCode, message: String, op: Operation) -> Outcome {
    Outcome::Rejected(Rejection {
        operation_id,
        code,
        message,
        op,
        repeated: false,
    })
}

/// The items an op changes, so that later ops on the same item wait behind it while it is held.
fn targets(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(Action::target)
        .map(str::to_owned)
        .collect()
}

/// The ids whose waiters an applied op may release: what it created and what it changed
/// (ops queued behind it on the same item).
fn freed_ids(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .flat_map(SpaceState::created_ids)
        .map(str::to_owned)
        .chain(targets(actions))
        .collect()
}

/// The id a create that failed to parse would have created, so ops waiting for it are told.
fn created_id_guess(op: &Operation) -> Option<String> {
    if !op.name.starts_with("create") {
        return None;
    }
    op.body.get("id").and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests;
