//! The op-id memory of a space: the newest op ids and what became of them, at most `capacity`
//! of them; the oldest is forgotten first.
//!
//! Ids are kept as 128-bit keyed hashes, not strings: an entry is ~64 bytes with no allocation
//! of its own, against ~160 bytes and two allocations for the id twice as a `String` (map key
//! and eviction order). That matters when many spaces grow at once: every table doubling
//! touches fresh memory, and in a load run 400 spaces doubled within the same few
//! milliseconds. Two SipHash-1-3 hashes with random per-space keys make the 128 bits: two
//! different ids share a key with a probability of about n²/2¹²⁹ (n ≤ 10,000 here), and a client
//! cannot craft a collision without the keys, which never leave the process.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use spacesync_protocol::{RejectCode, Seq};

use super::Prior;

/// An op id's 128-bit keyed hash.
type Key = u128;

/// What is known of one key; the details of a rejection are kept apart (rejections are rare).
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// `None`: rejected (the code and message are in `Seen::rejected`).
    accepted: Option<Seq>,
    /// Which insertion this is, so a stale entry of the eviction order is skipped.
    generation: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Seen {
    keys: (RandomState, RandomState),
    map: HashMap<Key, Entry, BuildHasherDefault<KeyHasher>>,
    rejected: HashMap<Key, (RejectCode, String), BuildHasherDefault<KeyHasher>>,
    /// Insertion order with the generation of each insertion, so an id removed and inserted
    /// again is not forgotten early by its stale entry.
    order: VecDeque<(Key, u64)>,
    generation: u64,
    capacity: usize,
}

impl Seen {
    pub(super) fn new(capacity: usize) -> Seen {
        Seen {
            keys: (RandomState::new(), RandomState::new()),
            map: HashMap::default(),
            rejected: HashMap::default(),
            order: VecDeque::new(),
            generation: 0,
            capacity: capacity.max(1),
        }
    }

    fn key(&self, operation_id: &str) -> Key {
        (u128::from(self.keys.0.hash_one(operation_id)) << 64)
            | u128::from(self.keys.1.hash_one(operation_id))
    }

    pub(super) fn get(&self, operation_id: &str) -> Option<Prior> {
        let key = self.key(operation_id);
        let entry = self.map.get(&key)?;
        match entry.accepted {
            Some(seq) => Some(Prior::Accepted(seq)),
            None => self
                .rejected
                .get(&key)
                .map(|(code, message)| Prior::Rejected {
                    code: *code,
                    message: message.clone(),
                }),
        }
    }

    pub(super) fn insert(&mut self, operation_id: &str, prior: Prior) {
        let key = self.key(operation_id);
        let accepted = match prior {
            Prior::Accepted(seq) => {
                self.rejected.remove(&key);
                Some(seq)
            }
            Prior::Rejected { code, message } => {
                self.rejected.insert(key, (code, message));
                None
            }
        };
        if let Some(known) = self.map.get_mut(&key) {
            known.accepted = accepted;
            return;
        }
        self.generation += 1;
        self.order.push_back((key, self.generation));
        self.map.insert(
            key,
            Entry {
                accepted,
                generation: self.generation,
            },
        );
        while self.map.len() > self.capacity {
            let Some((oldest, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .map
                .get(&oldest)
                .is_some_and(|known| known.generation == generation)
            {
                self.map.remove(&oldest);
                self.rejected.remove(&oldest);
            }
        }
    }

    pub(super) fn remove(&mut self, operation_id: &str) {
        let key = self.key(operation_id);
        self.map.remove(&key);
        self.rejected.remove(&key);
    }
}

/// The keys are already uniform hashes: the table uses their bits as they are.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used for keys; anything else still hashes all its bytes.
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = (key as u64) ^ ((key >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(message: &str) -> Prior {
        Prior::Rejected {
            code: RejectCode::MalformedOperation,
            message: message.to_owned(),
        }
    }

    #[test]
    fn remembers_accepted_and_rejected_ops_with_their_details() {
        let mut seen = Seen::new(10);
        seen.insert("a", Prior::Accepted(1));
        seen.insert("b", rejected("x must be a number"));
        assert_eq!(seen.get("a"), Some(Prior::Accepted(1)));
        assert_eq!(seen.get("b"), Some(rejected("x must be a number")));
        assert_eq!(seen.get("c"), None);
    }

    #[test]
    fn a_new_verdict_replaces_the_old_one() {
        let mut seen = Seen::new(10);
        seen.insert("a", rejected("first"));
        seen.insert("a", Prior::Accepted(7));
        assert_eq!(seen.get("a"), Some(Prior::Accepted(7)));
        seen.insert("a", rejected("again"));
        assert_eq!(seen.get("a"), Some(rejected("again")));
    }

    #[test]
    fn the_oldest_is_forgotten_first() {
        let mut seen = Seen::new(3);
        for (index, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            seen.insert(id, rejected(id));
            assert!(seen.map.len() <= 3, "after {index}");
        }
        assert_eq!(seen.get("a"), None);
        assert_eq!(seen.get("b"), Some(rejected("b")));
        assert_eq!(seen.get("d"), Some(rejected("d")));
        assert_eq!(seen.rejected.len(), 3, "details leave with their entry");
    }

    #[test]
    fn an_id_removed_and_inserted_again_is_not_forgotten_by_its_stale_place() {
        let mut seen = Seen::new(2);
        seen.insert("a", Prior::Accepted(1));
        seen.remove("a");
        assert_eq!(seen.get("a"), None);
        seen.insert("b", Prior::Accepted(2));
        seen.insert("a", Prior::Accepted(3));
        // "a"'s first place in the order is stale: evicting it must not drop the new "a".
        seen.insert("c", Prior::Accepted(4));
        assert_eq!(seen.get("a"), Some(Prior::Accepted(3)));
        assert_eq!(seen.get("b"), None);
        assert_eq!(seen.get("c"), Some(Prior::Accepted(4)));
    }

    #[test]
    fn ten_thousand_ids_keep_ten_thousand_distinct_keys() {
        let mut seen = Seen::new(10_000);
        for index in 0..10_000u64 {
            seen.insert(&format!("op-{index}"), Prior::Accepted(index));
        }
        assert_eq!(seen.map.len(), 10_000);
        for index in (0..10_000u64).step_by(997) {
            assert_eq!(
                seen.get(&format!("op-{index}")),
                Some(Prior::Accepted(index))
            );
        }
    }
}
