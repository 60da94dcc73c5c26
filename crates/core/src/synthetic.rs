//! A generator of synthetic spaces in the shapes of real Kinopio spaces (cards in lists,
//! boxes, lines, legacy connection types, connections between cards, boxes and lists, tags,
//! drawing strokes). Seeded, so tests and benches are repeatable and complete on a plain clone
//! without the real sample files.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// How many of each item a generated space has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub cards: usize,
    pub connections: usize,
    pub boxes: usize,
    pub lists: usize,
    pub lines: usize,
    pub connection_types: usize,
    pub tags: usize,
    pub strokes: usize,
}

impl Shape {
    /// A small space with something in every collection.
    pub fn small() -> Shape {
        Shape {
            cards: 12,
            connections: 8,
            boxes: 2,
            lists: 2,
            lines: 1,
            connection_types: 2,
            tags: 3,
            strokes: 2,
        }
    }

    /// The download target of BRIEF §7: 1,000 cards and 1,000 connections.
    pub fn thousand() -> Shape {
        Shape {
            cards: 1_000,
            connections: 1_000,
            boxes: 20,
            lists: 10,
            lines: 5,
            connection_types: 0,
            tags: 50,
            strokes: 10,
        }
    }
}

/// Generates a space in the Kinopio JSON shape. Every reference resolves.
pub fn space(space_id: &str, shape: Shape, seed: u64) -> Value {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next_id = {
        let mut counter = 0u64;
        move |prefix: &str| {
            counter += 1;
            format!("{prefix}{counter:x}-{seed:x}")
        }
    };
    let user = "synthetic-user";
    let lists: Vec<Value> = (0..shape.lists)
        .map(|_| {
            json!({"id": next_id("L"), "name": "List", "x": rng.random_range(0..4000), "y": rng.random_range(0..4000),
                   "z": 0, "resizeWidth": 206, "height": 206, "isCollapsed": false, "color": "rgb(12, 155, 31)",
                   "spaceId": space_id, "userId": user})
        })
        .collect();
    let cards: Vec<Value> = (0..shape.cards)
        .map(|index| {
            let list_id = match (index % 5, lists.is_empty()) {
                (0, false) => lists[rng.random_range(0..lists.len())]["id"].clone(),
                _ => Value::Null,
            };
            json!({"id": next_id("C"), "name": format!("card {index} with some text"), "x": rng.random_range(0..4000),
                   "y": rng.random_range(0..4000), "z": index, "width": 200, "height": 80, "resizeWidth": null,
                   "isRemoved": false, "listId": list_id, "nameUpdatedAt": "2026-01-12T20:38:42.867Z",
                   "urlPreviewIsVisible": true, "backgroundColor": null, "counterValue": 0,
                   "spaceId": space_id, "userId": user})
        })
        .collect();
    let boxes: Vec<Value> = (0..shape.boxes)
        .map(|_| {
            json!({"id": next_id("B"), "name": "Box", "x": rng.random_range(0..4000), "y": rng.random_range(0..4000),
                   "resizeWidth": 300, "resizeHeight": 200, "color": "#e3e3e3", "fill": "filled",
                   "spaceId": space_id, "userId": user})
        })
        .collect();
    let lines: Vec<Value> = (0..shape.lines)
        .map(|_| json!({"id": next_id("N"), "name": "Line", "y": rng.random_range(0..4000), "color": "#ccc", "spaceId": space_id, "userId": user}))
        .collect();
    let connection_types: Vec<Value> = (0..shape.connection_types)
        .map(|index| json!({"id": next_id("T"), "name": format!("Connection {index}"), "color": "#a0f7f0", "spaceId": space_id, "userId": user}))
        .collect();
    let endpoints: Vec<&Value> = cards
        .iter()
        .chain(&boxes)
        .chain(&lists)
        .map(|item| &item["id"])
        .collect();
    let connections: Vec<Value> = if endpoints.is_empty() {
        Vec::new()
    } else {
        (0..shape.connections)
            .map(|_| {
                let start = endpoints[rng.random_range(0..endpoints.len())].clone();
                let end = endpoints[rng.random_range(0..endpoints.len())].clone();
                let mut connection = json!({"id": next_id("X"), "startItemId": start, "endItemId": end,
                    "path": "m723,683 q90,40 113,168", "directionIsVisible": true, "labelIsVisible": false,
                    "color": "rgb(123, 238, 159)", "spaceId": space_id, "userId": user});
                if !connection_types.is_empty() {
                    connection["connectionTypeId"] = connection_types[rng.random_range(0..connection_types.len())]["id"].clone();
                }
                connection
            })
            .collect()
    };
    let tags: Vec<Value> = if cards.is_empty() {
        Vec::new()
    } else {
        (0..shape.tags)
            .map(|index| {
                json!({"id": next_id("G"), "name": format!("tag{}", index % 7), "color": "#fcb8eb",
                       "cardId": cards[rng.random_range(0..cards.len())]["id"].clone(), "spaceId": space_id, "userId": user})
            })
            .collect()
    };
    let strokes: Vec<Value> = (0..shape.strokes)
        .map(|_| {
            let (x, y) = (rng.random_range(0..2000), rng.random_range(0..2000));
            (0..8)
                .map(|step| json!({"id": next_id("P"), "x": x + step, "y": y + 2 * step, "color": "#a0f7f0", "diameter": 20, "userId": user}))
                .collect::<Value>()
        })
        .collect();
    let mut space = json!({
        "id": space_id, "name": "Synthetic space", "privacy": "private", "showInExplore": false,
        "background": "", "isTemplate": false, "isRemoved": false, "userId": user,
        "users": [{"id": user, "color": "cyan"}], "collaborators": [], "removedCards": [],
        "cards": cards, "connections": connections, "boxes": boxes, "lists": lists, "lines": lines,
        "tags": tags, "drawingStrokes": strokes,
    });
    if !connection_types.is_empty() {
        space["connectionTypes"] = Value::Array(connection_types);
    }
    space
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_space() {
        assert_eq!(space("s", Shape::small(), 7), space("s", Shape::small(), 7));
        assert_ne!(space("s", Shape::small(), 7), space("s", Shape::small(), 8));
    }

    #[test]
    fn generated_spaces_import_with_every_reference_resolved() {
        for seed in 0..20 {
            let file = space("s", Shape::small(), seed);
            let imported = crate::kinopio::import(&file, crate::SpaceConfig::default());
            assert!(imported.is_ok(), "seed {seed}: {imported:?}");
        }
        let big = space("big", Shape::thousand(), 1);
        assert_eq!(big["cards"].as_array().map(Vec::len), Some(1_000));
        assert!(crate::kinopio::import(&big, crate::SpaceConfig::default()).is_ok());
    }
}
