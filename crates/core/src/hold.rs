//! The ops a space holds because they reference items that do not exist yet (BRIEF §4.3),
//! indexed by arrival, by operation id, by the ids they wait for and by the item they change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::action::ParsedOp;

/// A held op.
#[derive(Debug, Clone)]
pub(crate) struct HeldOp {
    pub parsed: ParsedOp,
    /// Ids the op waits for (never seen so far).
    pub missing: BTreeSet<String>,
    /// Items this op changes, so later ops on the same item wait behind it.
    pub targets: Vec<String>,
    /// When the op is given up on, in the caller's milliseconds.
    pub deadline_ms: u64,
    pub bytes: usize,
    /// Every key this op is registered under in `waiting_on`, so removing it leaves no trace.
    pub registered: BTreeSet<String>,
}

/// Held ops of one space.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holds {
    by_arrival: BTreeMap<u64, HeldOp>,
    by_operation_id: HashMap<String, u64>,
    /// Id → arrivals of the held ops to re-check when that id appears or is freed.
    waiting_on: HashMap<String, BTreeSet<u64>>,
    /// Item id → arrivals of held ops that change it.
    by_target: HashMap<String, BTreeSet<u64>>,
    bytes: usize,
    next_arrival: u64,
}

impl Holds {
    pub fn len(&self) -> usize {
        self.by_arrival.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, arrival: u64) -> Option<&HeldOp> {
        self.by_arrival.get(&arrival)
    }

    pub fn arrival_of(&self, operation_id: &str) -> Option<u64> {
        self.by_operation_id.get(operation_id).copied()
    }

    /// The arrival number the next op will get. Arrival order is the order ops reached the
    /// space; released ops are applied in it.
    pub fn next_arrival(&mut self) -> u64 {
        self.next_arrival += 1;
        self.next_arrival
    }

    /// The items for which an op that arrived at `arrival` must wait behind an earlier held op
    /// that changes the same item. Earlier ops that wait for the item itself to be created do
    /// not block (the create they wait for must go through).
    pub fn blocking_targets(&self, arrival: u64, targets: &[String]) -> Vec<String> {
        targets
            .iter()
            .filter(|target| {
                self.by_target.get(*target).is_some_and(|arrivals| {
                    arrivals.range(..arrival).any(|earlier| {
                        self.by_arrival
                            .get(earlier)
                            .is_some_and(|held| !held.missing.contains(*target))
                    })
                })
            })
            .cloned()
            .collect()
    }

    /// Holds a new op.
    pub fn hold(&mut self, arrival: u64, mut held: HeldOp, blocked_on: &[String]) {
        for id in held.missing.iter().chain(blocked_on) {
            self.waiting_on
                .entry(id.clone())
                .or_default()
                .insert(arrival);
            held.registered.insert(id.clone());
        }
        for target in &held.targets {
            self.by_target
                .entry(target.clone())
                .or_default()
                .insert(arrival);
        }
        self.bytes += held.bytes;
        self.by_operation_id
            .insert(held.parsed.operation_id.clone(), arrival);
        self.by_arrival.insert(arrival, held);
    }

    /// Updates what a held op waits for after a re-check.
    pub fn rewait(&mut self, arrival: u64, missing: BTreeSet<String>, blocked_on: &[String]) {
        let Some(held) = self.by_arrival.get_mut(&arrival) else {
            return;
        };
        for id in missing.iter().chain(blocked_on) {
            self.waiting_on
                .entry(id.clone())
                .or_default()
                .insert(arrival);
            held.registered.insert(id.clone());
        }
        held.missing = missing;
    }

    /// Takes an op out of the holds (released or rejected).
    pub fn remove(&mut self, arrival: u64) -> Option<HeldOp> {
        let held = self.by_arrival.remove(&arrival)?;
        self.bytes = self.bytes.saturating_sub(held.bytes);
        self.by_operation_id.remove(&held.parsed.operation_id);
        for target in &held.targets {
            if let Some(arrivals) = self.by_target.get_mut(target) {
                arrivals.remove(&arrival);
                if arrivals.is_empty() {
                    self.by_target.remove(target);
                }
            }
        }
        for id in &held.registered {
            if let Some(arrivals) = self.waiting_on.get_mut(id) {
                arrivals.remove(&arrival);
                if arrivals.is_empty() {
                    self.waiting_on.remove(id);
                }
            }
        }
        Some(held)
    }

    /// The arrivals of the ops to re-check now that `id` exists, was rejected or was freed.
    pub fn take_waiters(&mut self, id: &str) -> BTreeSet<u64> {
        self.waiting_on.remove(id).unwrap_or_default()
    }

    /// Held ops whose deadline has passed, in arrival order.
    pub fn expired(&self, now_ms: u64) -> Vec<u64> {
        self.by_arrival
            .iter()
            .filter(|(_, held)| held.deadline_ms <= now_ms)
            .map(|(arrival, _)| *arrival)
            .collect()
    }

    /// The earliest deadline, so the owner can wake up in time to expire it.
    pub fn next_deadline(&self) -> Option<u64> {
        self.by_arrival.values().map(|held| held.deadline_ms).min()
    }

    /// Held ops waiting for `id`, in arrival order.
    pub fn waiting_for(&self, id: &str) -> Vec<u64> {
        self.by_arrival
            .iter()
            .filter(|(_, held)| held.missing.contains(id))
            .map(|(arrival, _)| *arrival)
            .collect()
    }
}
