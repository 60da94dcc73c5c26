//! Property tests of the core's invariants on synthetic spaces (complete without the real
//! sample files): any arrival order of a valid op sequence ends in the same state; duplicating
//! any subset of ops changes nothing; arbitrary bodies never panic and are always answered.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use spacesync_core::kinopio::creation_ops;
use spacesync_core::synthetic::{self, Shape};
use spacesync_core::{Outcome, Space, SpaceConfig};
use spacesync_protocol::Operation;

fn built(ops: Vec<Operation>) -> (Space, Vec<Outcome>) {
    let mut space = Space::new("s", SpaceConfig::default());
    let outcomes = space.submit_all(ops, 0);
    (space, outcomes)
}

fn rejected(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Outcome::Rejected(_)))
        .count()
}

/// A realistic edit session after the creates: drags, renames, removes, deletes.
fn edits(space: &Value) -> Vec<Operation> {
    let cards: Vec<&str> = space["cards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|card| card["id"].as_str())
        .collect();
    let mut ops = Vec::new();
    for (index, id) in cards.iter().enumerate().take(6) {
        let body =
            json!({"operationId": format!("drag-{index}"), "id": id, "x": index * 10, "y": 5});
        ops.push(Operation::new("updateCard", body));
    }
    if let Some(id) = cards.first() {
        let body = json!({"operationId": "rename", "id": id, "name": "renamed", "nameUpdatedAt": "2027-01-01T00:00:00.000Z"});
        ops.push(Operation::new("updateCard", body));
        ops.push(Operation::new(
            "removeCard",
            json!({"operationId": "soft", "id": id}),
        ));
    }
    if let Some(id) = cards.get(1) {
        ops.push(Operation::new(
            "deleteCard",
            json!({"operationId": "delete", "id": id}),
        ));
    }
    ops
}

fn shuffled<T: Clone>(items: &[T], order: &[usize]) -> Vec<T> {
    let mut indexed: Vec<(usize, &T)> = order.iter().copied().zip(items).collect();
    indexed.sort_by_key(|(key, _)| *key);
    indexed.into_iter().map(|(_, item)| item.clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_arrival_order_of_creates_ends_in_the_same_state(seed in 0u64..1_000, order in proptest::collection::vec(any::<usize>(), 60)) {
        let file = synthetic::space("s", Shape::small(), seed);
        let ops = creation_ops(&file);
        let (in_order, _) = built(ops.clone());
        let (permuted, outcomes) = built(shuffled(&ops, &order));
        prop_assert_eq!(rejected(&outcomes), 0);
        prop_assert_eq!(permuted.held_count(), 0);
        prop_assert_eq!(permuted.state(), in_order.state());
        prop_assert_eq!(permuted.seq(), ops.len() as u64);
    }

    #[test]
    fn connections_first_and_reverse_end_in_the_same_state(seed in 0u64..1_000) {
        let file = synthetic::space("s", Shape::small(), seed);
        let ops = creation_ops(&file);
        let (in_order, _) = built(ops.clone());
        let (reversed, outcomes) = built(ops.iter().rev().cloned().collect());
        prop_assert_eq!(rejected(&outcomes), 0);
        prop_assert_eq!(reversed.state(), in_order.state());
        let (mut dependents, mut rest): (Vec<Operation>, Vec<Operation>) = ops
            .iter()
            .cloned()
            .partition(|op| op.name == "createConnection" || op.name == "updateTags");
        dependents.append(&mut rest);
        let (connections_first, outcomes) = built(dependents);
        prop_assert_eq!(rejected(&outcomes), 0);
        prop_assert_eq!(connections_first.state(), in_order.state());
    }

    #[test]
    fn duplicating_any_subset_of_ops_changes_nothing(seed in 0u64..1_000, duplicate in proptest::collection::vec(any::<bool>(), 80)) {
        let file = synthetic::space("s", Shape::small(), seed);
        let mut ops = creation_ops(&file);
        ops.extend(edits(&file));
        let (once, _) = built(ops.clone());
        // Each chosen op is sent again right away, and the whole chosen subset again at the end.
        let mut with_duplicates = Vec::new();
        let mut again = Vec::new();
        for (op, twice) in ops.iter().zip(duplicate.iter().chain(std::iter::repeat(&false))) {
            with_duplicates.push(op.clone());
            if *twice {
                with_duplicates.push(op.clone());
                again.push(op.clone());
            }
        }
        with_duplicates.extend(again);
        let (duplicated, outcomes) = built(with_duplicates);
        prop_assert_eq!(duplicated.state(), once.state());
        prop_assert_eq!(duplicated.seq(), once.seq());
        let duplicates = outcomes.iter().filter(|o| matches!(o, Outcome::Duplicate { .. })).count();
        prop_assert_eq!(duplicates, duplicate.iter().take(ops.len()).filter(|d| **d).count() * 2);
    }

    #[test]
    fn replaying_any_prefix_twice_changes_nothing(seed in 0u64..1_000, cut in 0usize..60) {
        let file = synthetic::space("s", Shape::small(), seed);
        let ops = creation_ops(&file);
        let cut = cut.min(ops.len());
        let (once, _) = built(ops.clone());
        let mut twice_ops = ops[..cut].to_vec();
        twice_ops.extend(ops.iter().cloned());
        let (twice, _) = built(twice_ops);
        prop_assert_eq!(twice.state(), once.state());
        prop_assert_eq!(twice.seq(), once.seq());
    }

    #[test]
    fn arbitrary_bodies_never_panic_and_are_answered_with_a_code(name_index in 0usize..40, body in arbitrary_json()) {
        let names = [
            "createCard", "updateCard", "removeCard", "deleteCard", "restoreRemovedCard", "createBox",
            "updateBox", "removeBox", "createList", "updateList", "removeList", "createLine", "updateLine",
            "removeLine", "createConnection", "updateConnection", "removeConnection", "createConnectionType",
            "updateConnectionType", "removeConnectionType", "createDrawingStroke", "removeDrawingStroke",
            "clearDrawing", "updateTags", "removeTag", "createSpace", "updateSpace", "updateUser",
            "nonsense", "", "addTag", "deleteBox", "createTag", "updateFavoriteSpaces", "removeTags",
            "restoreRemovedBox", "create", "update", "remove", "delete",
        ];
        let name = names[name_index % names.len()];
        let mut space = Space::new("s", SpaceConfig::default());
        // Seed the space so updates and removes have something to hit.
        space.submit(Operation::new("createCard", json!({"operationId": "seed", "id": "a"})), 0);
        let mut with_id = body.clone();
        if let Some(fields) = with_id.as_object_mut() {
            fields.insert("operationId".into(), json!("op"));
        }
        for body in [body, with_id] {
            let outcomes = space.submit(Operation::new(name, body), 0);
            prop_assert!(!outcomes.is_empty(), "every op is answered");
        }
        let expired = space.expire(u64::MAX);
        prop_assert_eq!(space.held_count(), 0);
        prop_assert!(expired.iter().all(|o| matches!(o, Outcome::Rejected(_))));
    }
}

/// Arbitrary JSON, biased towards item-like objects with the fields the server interprets.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|n| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)),
        "[a-z]{0,3}".prop_map(Value::String),
        Just(json!("a")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("id".to_owned()),
                        Just("x".to_owned()),
                        Just("name".to_owned()),
                        Just("startItemId".to_owned()),
                        Just("endItemId".to_owned()),
                        Just("cardId".to_owned()),
                        Just("listId".to_owned()),
                        Just("stroke".to_owned()),
                        Just("isRemoved".to_owned()),
                        Just("cards".to_owned()),
                        "[a-z]{1,3}",
                    ],
                    inner,
                ),
                0..6,
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}
