//! Shared inputs for the criterion benches: realistic ops and spaces from the synthetic
//! generator, so every bench runs on a plain clone.

use serde_json::json;
use spacesync_core::kinopio::{creation_ops, import};
use spacesync_core::synthetic::{self, Shape};
use spacesync_core::{Space, SpaceConfig};
use spacesync_protocol::{ClientMessage, Operation};

/// A drag: a burst of `updateCard` x/y, the most common op in real sessions.
pub fn drag_batch(card_ids: &[String], count: usize) -> Vec<Operation> {
    (0..count)
        .map(|index| {
            let id = &card_ids[index % card_ids.len()];
            Operation::new(
                "updateCard",
                json!({"operationId": format!("drag-{index:08}-abcdefghijk"), "spaceId": "bench-space",
                       "userId": "euGhpBrR9eBcjKnK16C_g", "clientCreatedAt": 1_774_632_447_341u64,
                       "id": id, "x": 100 + index, "y": 200 + index}),
            )
        })
        .collect()
}

/// A submit message of `count` drag ops.
pub fn submit_message(count: usize) -> ClientMessage {
    let ids: Vec<String> = (0..50).map(|index| format!("card-{index}")).collect();
    ClientMessage::Submit {
        space_id: "bench-space".into(),
        ops: drag_batch(&ids, count),
    }
}

/// The 1,000-card + 1,000-connection space of BRIEF §7, loaded.
pub fn thousand_card_space() -> Space {
    let file = synthetic::space("bench-space", Shape::thousand(), 1);
    match import(&file, SpaceConfig::default()) {
        Ok(space) => space,
        Err(error) => panic!("the synthetic space imports: {error}"),
    }
}

/// The ops that build the 1,000-card space item by item.
pub fn thousand_card_ops() -> Vec<Operation> {
    creation_ops(&synthetic::space("bench-space", Shape::thousand(), 1))
}

/// The ids of a space's cards.
pub fn card_ids(space: &Space) -> Vec<String> {
    space
        .state()
        .items(spacesync_core::Collection::Cards)
        .keys()
        .cloned()
        .collect()
}
