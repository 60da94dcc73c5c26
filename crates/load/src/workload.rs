//! The ops a load client sends: a realistic Kinopio mix (creates, drags as bursts of
//! `updateCard` x/y, connections, boxes, lists, renames, removes), with optional misordering,
//! duplicate resends and poison ops. Each client only touches items it created, so every
//! good op must land: a rejection of a good op is a finding, not noise.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use spacesync_protocol::{Operation, Seq};

/// What the workload injects, as probabilities per step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Dependents sent before their dependencies (a connection before its new card).
    pub misorder: f64,
    /// An acknowledged op sent again (must get its original seq back).
    pub duplicates: f64,
    /// A bad op (malformed or unknown; must be rejected and quarantined).
    pub poison: f64,
}

/// One step: ops submitted together, and what the answers must be.
#[derive(Debug, Clone)]
pub struct Step {
    pub ops: Vec<Operation>,
    pub kind: StepKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Must be acknowledged.
    Good,
    /// Must be acknowledged as a duplicate with this seq.
    Duplicate(Seq),
    /// Must be rejected permanently.
    Poison,
}

/// The workload of one client.
#[derive(Debug)]
pub struct Workload {
    rng: StdRng,
    prefix: String,
    space: String,
    next: u64,
    cards: Vec<String>,
    boxes: Vec<String>,
    connections: Vec<String>,
    drag: Option<(String, u32)>,
    faults: Faults,
    /// Acknowledged ops that may be resent as duplicates.
    acked: Vec<(Operation, Seq)>,
    /// Items this client deleted (cards) or removed (connections).
    removed: std::collections::HashSet<String>,
}

impl Workload {
    pub fn new(seed: u64, prefix: &str, space: &str, faults: Faults) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            prefix: prefix.to_owned(),
            space: space.to_owned(),
            next: 0,
            cards: Vec::new(),
            boxes: Vec::new(),
            connections: Vec::new(),
            drag: None,
            faults,
            acked: Vec::new(),
            removed: std::collections::HashSet::new(),
        }
    }

    /// Whether this client itself took `id` out of the space. In an open loop a client's ops
    /// overtake one another when some are refused as retryable and sent again, so an update
    /// of a card can arrive after the same client's later delete of it: `reference_deleted`
    /// is then the right answer, not a finding.
    pub fn removed(&self, id: &str) -> bool {
        self.removed.contains(id)
    }

    /// Whether [`Workload::acked`] wants the acknowledged ops (only to resend duplicates).
    pub fn keeps_acked(&self) -> bool {
        self.faults.duplicates > 0.0
    }

    /// Remembers an acknowledged op as a candidate for a duplicate resend.
    pub fn acked(&mut self, op: &Operation, seq: Seq) {
        if self.faults.duplicates <= 0.0 {
            return;
        }
        if self.acked.len() < 256 {
            self.acked.push((op.clone(), seq));
        } else {
            let slot = self.rng.random_range(0..self.acked.len());
            self.acked[slot] = (op.clone(), seq);
        }
    }

    fn id(&mut self, kind: &str) -> String {
        self.next += 1;
        format!("{}-{kind}{}", self.prefix, self.next)
    }

    fn op(&mut self, name: &str, mut body: Value) -> Operation {
        let operation_id = self.id("op");
        body["operationId"] = json!(operation_id);
        body["spaceId"] = json!(self.space);
        body["userId"] = json!(self.prefix);
        body["clientCreatedAt"] = json!(self.next);
        Operation::new(name, body)
    }

    fn create_card(&mut self) -> (Operation, String) {
        let id = self.id("card");
        let x = self.rng.random_range(0..2_000);
        let y = self.rng.random_range(0..2_000);
        let op = self.op(
            "createCard",
            json!({"id": id, "x": x, "y": y, "z": 1, "name": format!("card {}", self.next), "frameId": 0}),
        );
        (op, id)
    }

    /// The next step.
    pub fn step(&mut self) -> Step {
        let roll: f64 = self.rng.random();
        if roll < self.faults.poison {
            let op = if self.rng.random_bool(0.5) {
                self.op(
                    "createCard",
                    json!({"id": self.prefix.clone() + "-bad", "x": "left", "y": 0}),
                )
            } else {
                self.op("teleportCard", json!({"id": "nowhere"}))
            };
            return Step {
                ops: vec![op],
                kind: StepKind::Poison,
            };
        }
        if roll < self.faults.poison + self.faults.duplicates && !self.acked.is_empty() {
            let (op, seq) = self.acked[self.rng.random_range(0..self.acked.len())].clone();
            return Step {
                ops: vec![op],
                kind: StepKind::Duplicate(seq),
            };
        }
        // A drag burst in progress continues. Nothing between its steps removes a card (only
        // the mix below deletes, and it waits for the burst to end), so the card is still there.
        if let Some((card, left)) = self.drag.take() {
            let (x, y) = (
                self.rng.random_range(0..2_000),
                self.rng.random_range(0..2_000),
            );
            let op = self.op("updateCard", json!({"id": card, "x": x, "y": y}));
            if left > 1 {
                self.drag = Some((card, left - 1));
            }
            return good(vec![op]);
        }
        if self.cards.len() < 2 {
            let (op, id) = self.create_card();
            self.cards.push(id);
            return good(vec![op]);
        }
        let mix: u32 = self.rng.random_range(0..100);
        let ops = match mix {
            0..=39 => {
                let card = pick(&mut self.rng, &self.cards).unwrap_or_default();
                self.drag = Some((card.clone(), self.rng.random_range(2..8)));
                let (x, y) = (
                    self.rng.random_range(0..2_000),
                    self.rng.random_range(0..2_000),
                );
                vec![self.op("updateCard", json!({"id": card, "x": x, "y": y}))]
            }
            40..=54 => {
                let (op, id) = self.create_card();
                self.cards.push(id);
                vec![op]
            }
            55..=69 => {
                let start = pick(&mut self.rng, &self.cards).unwrap_or_default();
                let misorder = self.rng.random_bool(self.faults.misorder.clamp(0.0, 1.0));
                let connection = self.id("conn");
                self.connections.push(connection.clone());
                if misorder {
                    // The connection to a new card first, the card after it.
                    let (create, card) = self.create_card();
                    self.cards.push(card.clone());
                    let op = self.op(
                        "createConnection",
                        json!({"id": connection, "startItemId": start, "endItemId": card, "color": "#c9c9c9"}),
                    );
                    vec![op, create]
                } else {
                    let end = pick(&mut self.rng, &self.cards).unwrap_or_default();
                    vec![self.op(
                        "createConnection",
                        json!({"id": connection, "startItemId": start, "endItemId": end, "color": "#c9c9c9"}),
                    )]
                }
            }
            70..=74 => {
                let id = self.id("box");
                self.boxes.push(id.clone());
                vec![self.op("createBox", json!({"id": id, "x": 0, "y": 0, "resizeWidth": 200, "resizeHeight": 150, "name": "box"}))]
            }
            75..=77 => {
                let id = self.id("list");
                vec![self.op(
                    "createList",
                    json!({"id": id, "x": 300, "y": 0, "name": "list"}),
                )]
            }
            78..=89 => {
                let card = pick(&mut self.rng, &self.cards).unwrap_or_default();
                let name = format!("renamed {}", self.next);
                vec![self.op(
                    "updateCard",
                    json!({"id": card, "name": name, "nameUpdatedAt": self.next}),
                )]
            }
            90..=93 => match pick(&mut self.rng, &self.boxes) {
                Some(id) => {
                    let (x, y) = (
                        self.rng.random_range(0..2_000),
                        self.rng.random_range(0..2_000),
                    );
                    vec![self.op("updateBox", json!({"id": id, "x": x, "y": y}))]
                }
                None => {
                    let (op, id) = self.create_card();
                    self.cards.push(id);
                    vec![op]
                }
            },
            94..=96 => match pick(&mut self.rng, &self.connections) {
                Some(id) => {
                    self.connections.retain(|known| *known != id);
                    self.removed.insert(id.clone());
                    vec![self.op("removeConnection", json!({"id": id}))]
                }
                None => vec![self.op(
                    "updateCard",
                    json!({"id": self.cards[0].clone(), "x": 1, "y": 1}),
                )],
            },
            _ => {
                // Delete a card for good; the client never touches it again.
                let index = self.rng.random_range(0..self.cards.len());
                let card = self.cards.remove(index);
                self.removed.insert(card.clone());
                vec![self.op("deleteCard", json!({"id": card}))]
            }
        };
        good(ops)
    }
}

/// One of `items` at random (without copying the list: it grows with the run).
fn pick(rng: &mut StdRng, items: &[String]) -> Option<String> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())].clone())
}

fn good(ops: Vec<Operation>) -> Step {
    Step {
        ops,
        kind: StepKind::Good,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_remembers_what_it_took_out_and_nothing_else() {
        let none = Faults {
            misorder: 0.0,
            duplicates: 0.0,
            poison: 0.0,
        };
        let mut workload = Workload::new(3, "c", "s", none);
        let mut taken_out = Vec::new();
        let mut created = Vec::new();
        for _ in 0..2_000 {
            for op in workload.step().ops {
                let id = op.body["id"].as_str().unwrap_or_default().to_owned();
                match op.name.as_str() {
                    "deleteCard" | "removeConnection" => taken_out.push(id),
                    "createCard" => created.push(id),
                    _ => {}
                }
            }
        }
        assert!(!taken_out.is_empty());
        assert!(taken_out.iter().all(|id| workload.removed(id)));
        let kept = created.iter().filter(|id| !taken_out.contains(id));
        assert!(kept.clone().count() > 0);
        assert!(kept.into_iter().all(|id| !workload.removed(id)));
    }
}
