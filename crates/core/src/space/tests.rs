//! Semantics of every op and every rejection code, and each real client misordering of
//! BRIEF §4.3 as its own test.

use serde_json::{Value, json};
use spacesync_protocol::{Operation, RejectCode};

use super::*;
use crate::Collection;

fn op(operation_id: &str, name: &str, mut body: Value) -> Operation {
    if let Some(fields) = body.as_object_mut() {
        fields.insert("operationId".into(), json!(operation_id));
    }
    Operation::new(name, body)
}

fn space() -> Space {
    Space::new("s", SpaceConfig::default())
}

/// A compact view of outcomes: "applied:<id>@<seq>", "held:<id>", "dup:<id>@<seq>",
/// "rejected:<id>:<code>".
fn summary(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            Outcome::Applied(applied) => {
                format!("applied:{}@{}", applied.operation_id, applied.seq)
            }
            Outcome::Duplicate { operation_id, seq } => format!("dup:{operation_id}@{seq}"),
            Outcome::Held { operation_id, .. } => format!("held:{operation_id}"),
            Outcome::Rejected(rejection) => {
                format!("rejected:{}:{}", rejection.operation_id, rejection.code)
            }
        })
        .collect()
}

fn submit(space: &mut Space, ops: Vec<Operation>) -> Vec<String> {
    summary(&space.submit_all(ops, 0))
}

fn item(space: &Space, collection: Collection, id: &str) -> Option<Value> {
    space
        .state()
        .items(collection)
        .get(id)
        .cloned()
        .map(Value::Object)
}

fn card(id: &str) -> Value {
    json!({"id": id, "x": 10, "y": 20, "name": id})
}

fn connection(id: &str, start: &str, end: &str) -> Value {
    json!({"id": id, "startItemId": start, "endItemId": end})
}

/// Runs `ops` on a fresh space and checks the outcome summary.
fn check(ops: Vec<Operation>, expected: &[&str]) -> Space {
    let mut space = space();
    let got = submit(&mut space, ops);
    assert_eq!(got, expected);
    space
}

// ---------------------------------------------------------------------------------------------
// Semantics of every op.

#[test]
fn creates_are_upserts_and_keep_every_field() {
    let space = check(
        vec![
            op(
                "1",
                "createCard",
                json!({"id": "a", "x": 1, "y": 2, "custom": {"deep": [1]}, "userId": "u", "spaceId": "s"}),
            ),
            op(
                "2",
                "createCard",
                json!({"id": "a", "x": 5, "y": 2, "clientCreatedAt": 9}),
            ),
        ],
        &["applied:1@1", "applied:2@2"],
    );
    assert_eq!(
        item(&space, Collection::Cards, "a"),
        Some(
            json!({"id": "a", "x": 5, "y": 2, "custom": {"deep": [1]}, "userId": "u", "spaceId": "s"})
        )
    );
}

#[test]
fn updates_are_shallow_merges_and_never_take_envelope_fields() {
    let space = check(
        vec![
            op(
                "1",
                "createCard",
                json!({"id": "a", "x": 1, "userId": "creator", "meta": {"a": 1}}),
            ),
            op(
                "2",
                "updateCard",
                json!({"id": "a", "x": 3, "userId": "editor", "spaceId": "s", "meta": {"b": 2}}),
            ),
            op("3", "updateCard", json!({"id": "a"})),
        ],
        &["applied:1@1", "applied:2@2", "applied:3@3"],
    );
    assert_eq!(
        item(&space, Collection::Cards, "a"),
        Some(json!({"id": "a", "x": 3, "userId": "creator", "meta": {"b": 2}}))
    );
}

#[test]
fn every_collection_has_create_update_and_remove() {
    for (noun, collection, removed_stays) in [
        ("Card", Collection::Cards, true),
        ("Box", Collection::Boxes, false),
        ("List", Collection::Lists, false),
        ("Line", Collection::Lines, false),
        ("ConnectionType", Collection::ConnectionTypes, false),
    ] {
        let mut space = space();
        let got = submit(
            &mut space,
            vec![
                op(
                    "1",
                    &format!("create{noun}"),
                    json!({"id": "i", "x": 1, "y": 1}),
                ),
                op(
                    "2",
                    &format!("update{noun}"),
                    json!({"id": "i", "color": "red"}),
                ),
            ],
        );
        assert_eq!(got, ["applied:1@1", "applied:2@2"], "{noun}");
        assert_eq!(
            item(&space, collection, "i").and_then(|item| item.get("color").cloned()),
            Some(json!("red"))
        );
        let got = submit(
            &mut space,
            vec![op("3", &format!("remove{noun}"), json!({"id": "i"}))],
        );
        assert_eq!(got, ["applied:3@3"], "{noun}");
        assert_eq!(
            item(&space, collection, "i").is_some(),
            removed_stays,
            "{noun}"
        );
    }
}

#[test]
fn soft_remove_and_restore_keep_the_card() {
    let mut space = space();
    submit(&mut space, vec![op("1", "createCard", card("a"))]);
    assert_eq!(
        submit(&mut space, vec![op("2", "removeCard", json!({"id": "a"}))]),
        ["applied:2@2"]
    );
    assert_eq!(
        item(&space, Collection::Cards, "a").map(|c| c["isRemoved"].clone()),
        Some(json!(true))
    );
    assert_eq!(
        submit(
            &mut space,
            vec![op("3", "restoreRemovedCard", json!({"id": "a"}))]
        ),
        ["applied:3@3"]
    );
    assert_eq!(
        item(&space, Collection::Cards, "a").map(|c| c["isRemoved"].clone()),
        Some(json!(false))
    );
    submit(
        &mut space,
        vec![op("4", "updateCard", json!({"id": "a", "isRemoved": true}))],
    );
    assert_eq!(
        item(&space, Collection::Cards, "a").map(|c| c["isRemoved"].clone()),
        Some(json!(true))
    );
}

#[test]
fn soft_remove_does_not_cascade_but_delete_does() {
    let mut space = space();
    submit(
        &mut space,
        vec![
            op("1", "createCard", card("a")),
            op("2", "createCard", card("b")),
            op("3", "createConnection", connection("c", "a", "b")),
            op(
                "4",
                "updateTags",
                json!({"id": "t", "cardId": "a", "name": "tag"}),
            ),
            op("5", "removeCard", json!({"id": "a"})),
        ],
    );
    assert!(item(&space, Collection::Connections, "c").is_some());
    assert!(item(&space, Collection::Tags, "t").is_some());
    assert_eq!(
        submit(&mut space, vec![op("6", "deleteCard", json!({"id": "a"}))]),
        ["applied:6@6"]
    );
    assert!(item(&space, Collection::Cards, "a").is_none());
    assert!(item(&space, Collection::Connections, "c").is_none());
    assert!(item(&space, Collection::Tags, "t").is_none());
    assert!(item(&space, Collection::Cards, "b").is_some());
}

#[test]
fn removing_a_box_or_list_cascades_to_connections_and_list_members() {
    let mut space = space();
    submit(
        &mut space,
        vec![
            op("1", "createBox", json!({"id": "box", "x": 0, "y": 0})),
            op("2", "createList", json!({"id": "list", "x": 0, "y": 0})),
            op("3", "createCard", json!({"id": "a", "listId": "list"})),
            op("4", "createConnection", connection("c1", "a", "box")),
            op("5", "createConnection", connection("c2", "list", "a")),
            op("6", "removeBox", json!({"id": "box"})),
        ],
    );
    assert!(item(&space, Collection::Connections, "c1").is_none());
    assert!(item(&space, Collection::Connections, "c2").is_some());
    submit(
        &mut space,
        vec![op("7", "removeList", json!({"id": "list"}))],
    );
    assert!(item(&space, Collection::Connections, "c2").is_none());
    assert_eq!(
        item(&space, Collection::Cards, "a").map(|c| c["listId"].clone()),
        Some(Value::Null)
    );
}

#[test]
fn card_names_are_last_writer_wins_by_name_updated_at() {
    let mut space = space();
    submit(
        &mut space,
        vec![
            op(
                "1",
                "createCard",
                json!({"id": "a", "name": "new", "nameUpdatedAt": "2026-01-02T00:00:00.000Z"}),
            ),
            op(
                "2",
                "updateCard",
                json!({"id": "a", "name": "stale", "nameUpdatedAt": "2026-01-01T00:00:00.000Z", "x": 7}),
            ),
        ],
    );
    let card = item(&space, Collection::Cards, "a").unwrap_or_default();
    assert_eq!(card["name"], json!("new"));
    assert_eq!(card["nameUpdatedAt"], json!("2026-01-02T00:00:00.000Z"));
    assert_eq!(
        card["x"],
        json!(7),
        "the other fields of the stale update still land"
    );
    submit(
        &mut space,
        vec![op(
            "3",
            "updateCard",
            json!({"id": "a", "name": "newer", "nameUpdatedAt": "2026-01-03T00:00:00.000Z"}),
        )],
    );
    assert_eq!(
        item(&space, Collection::Cards, "a").map(|c| c["name"].clone()),
        Some(json!("newer"))
    );
    // Epoch numbers compare as numbers; a name without a timestamp wins in op order.
    submit(
        &mut space,
        vec![
            op(
                "4",
                "updateCard",
                json!({"id": "a", "name": "n1", "nameUpdatedAt": 200}),
            ),
            op(
                "5",
                "updateCard",
                json!({"id": "a", "name": "n0", "nameUpdatedAt": 100}),
            ),
        ],
    );
    assert_eq!(
        item(&space, Collection::Cards, "a").map(|c| c["name"].clone()),
        Some(json!("n1"))
    );
    submit(
        &mut space,
        vec![op("6", "updateCard", json!({"id": "a", "name": "plain"}))],
    );
    assert_eq!(
        item(&space, Collection::Cards, "a").map(|c| c["name"].clone()),
        Some(json!("plain"))
    );
}

#[test]
fn tags_are_updated_and_removed() {
    let mut space = space();
    let got = submit(
        &mut space,
        vec![
            op("1", "createCard", card("a")),
            op(
                "2",
                "updateTags",
                json!({"id": "t1", "cardId": "a", "name": "x", "color": "red"}),
            ),
            op("3", "updateTags", json!({"id": "t1", "color": "blue"})),
            op("4", "removeTag", json!({"id": "t1", "name": "x"})),
            op("5", "removeTag", json!({"id": "t1"})),
        ],
    );
    assert_eq!(
        got,
        [
            "applied:1@1",
            "applied:2@2",
            "applied:3@3",
            "applied:4@4",
            "applied:5@5"
        ]
    );
    assert!(item(&space, Collection::Tags, "t1").is_none());
}

#[test]
fn drawing_strokes_are_created_removed_and_cleared() {
    let stroke = |id: &str| json!([{"id": id, "x": 1, "y": 2, "color": "#fff"}, {"id": format!("{id}-2"), "x": 2, "y": 3}]);
    let mut space = space();
    let got = submit(
        &mut space,
        vec![
            op("1", "createDrawingStroke", json!({"stroke": stroke("p1")})),
            op("2", "createDrawingStroke", json!({"stroke": stroke("p2")})),
            op("3", "removeDrawingStroke", json!({"stroke": stroke("p1")})),
        ],
    );
    assert_eq!(got, ["applied:1@1", "applied:2@2", "applied:3@3"]);
    assert_eq!(space.state().strokes.keys().collect::<Vec<_>>(), ["p2"]);
    submit(&mut space, vec![op("4", "clearDrawing", json!({}))]);
    assert!(space.state().strokes.is_empty());
    // Array-shaped body: the stroke itself.
    let mut body = Operation::new("createDrawingStroke", stroke("p3"));
    body.operation_id = Some("5".into());
    assert_eq!(submit(&mut space, vec![body]), ["applied:5@5"]);
}

#[test]
fn update_space_changes_meta_but_never_the_owner_or_id() {
    let mut space = space();
    submit(
        &mut space,
        vec![
            op(
                "1",
                "createSpace",
                json!({"id": "s", "name": "first", "userId": "owner", "cards": [card("a")]}),
            ),
            op(
                "2",
                "updateSpace",
                json!({"id": "other", "name": "second", "userId": "editor", "background": "b.png"}),
            ),
        ],
    );
    let meta = &space.state().meta;
    assert_eq!(meta.get("name"), Some(&json!("second")));
    assert_eq!(meta.get("userId"), Some(&json!("owner")));
    assert_eq!(meta.get("id"), Some(&json!("s")));
    assert_eq!(meta.get("background"), Some(&json!("b.png")));
}

#[test]
fn create_space_applies_nested_items_in_dependency_order() {
    let space = check(
        vec![op(
            "1",
            "createSpace",
            json!({
                "id": "s",
                "tags": [{"id": "t", "cardId": "a"}],
                "connections": [{"id": "c", "startCardId": "a", "endCardId": "b", "connectionTypeId": "ct"}],
                "cards": [card("a"), {"id": "b", "listId": "l"}],
                "connectionTypes": [{"id": "ct", "color": "red"}],
                "lists": [{"id": "l", "x": 0, "y": 0}],
                "drawingStrokes": [[{"id": "p", "x": 1, "y": 1}]],
            }),
        )],
        &["applied:1@1"],
    );
    assert!(item(&space, Collection::Connections, "c").is_some());
    assert!(item(&space, Collection::Tags, "t").is_some());
    assert_eq!(space.state().strokes.len(), 1);
}

#[test]
fn array_bodies_apply_to_every_element() {
    let mut remove = Operation::new("removeBox", json!([{"id": "b1"}, {"id": "b2"}]));
    remove.operation_id = Some("3".into());
    let space = check(
        vec![
            op("1", "createBox", json!({"id": "b1", "x": 0, "y": 0})),
            op("2", "createBox", json!({"id": "b2", "x": 0, "y": 0})),
            remove,
        ],
        &["applied:1@1", "applied:2@2", "applied:3@3"],
    );
    assert!(space.state().items(Collection::Boxes).is_empty());
}

#[test]
fn legacy_connections_with_card_ids_and_types() {
    let space = check(
        vec![
            op(
                "1",
                "createConnectionType",
                json!({"id": "ct", "color": "red"}),
            ),
            op("2", "createCard", card("a")),
            op("3", "createCard", card("b")),
            op(
                "4",
                "createConnection",
                json!({"id": "c", "startCardId": "a", "endCardId": "b", "connectionTypeId": "ct"}),
            ),
        ],
        &["applied:1@1", "applied:2@2", "applied:3@3", "applied:4@4"],
    );
    assert!(item(&space, Collection::Connections, "c").is_some());
}

// ---------------------------------------------------------------------------------------------
// Idempotency.

#[test]
fn a_replayed_op_gets_its_original_seq_and_changes_nothing() {
    let mut space = space();
    submit(
        &mut space,
        vec![
            op("1", "createCard", card("a")),
            op("2", "updateCard", json!({"id": "a", "x": 5})),
        ],
    );
    let before = space.state().clone();
    let got = submit(
        &mut space,
        vec![op("1", "createCard", json!({"id": "a", "x": 999}))],
    );
    assert_eq!(got, ["dup:1@1"]);
    assert_eq!(space.state(), &before);
    assert_eq!(space.seq(), 2);
}

#[test]
fn a_rejected_op_is_rejected_again_at_once_when_resubmitted() {
    let mut space = space();
    let bad = op("1", "createCard", json!({"id": "a", "x": "left"}));
    assert_eq!(
        submit(&mut space, vec![bad.clone()]),
        ["rejected:1:malformed_operation"]
    );
    let again = space.submit(bad, 0);
    assert!(matches!(
        &again[..],
        [Outcome::Rejected(Rejection {
            repeated: true,
            code: RejectCode::MalformedOperation,
            ..
        })]
    ));
    assert_eq!(space.seq(), 0);
}

#[test]
fn a_resubmitted_held_op_is_reported_held_once() {
    let mut space = space();
    let connection_op = op("1", "createConnection", connection("c", "a", "b"));
    assert_eq!(
        submit(&mut space, vec![connection_op.clone(), connection_op]),
        ["held:1", "held:1"]
    );
    assert_eq!(space.held_count(), 1);
    let got = submit(
        &mut space,
        vec![
            op("2", "createCard", card("a")),
            op("3", "createCard", card("b")),
        ],
    );
    assert_eq!(got, ["applied:2@1", "applied:3@2", "applied:1@3"]);
}

#[test]
fn remembered_priors_from_the_store_count_as_seen() {
    let mut space = space();
    space.remember("old", Prior::Accepted(41));
    assert_eq!(
        submit(&mut space, vec![op("old", "createCard", card("a"))]),
        ["dup:old@41"]
    );
    assert_eq!(space.seq(), 0);
}

// ---------------------------------------------------------------------------------------------
// Every rejection code the core produces.

#[test]
fn rejection_codes() {
    fn rejects(ops: Vec<Operation>, code: RejectCode) {
        let mut space = space();
        let outcomes = space.submit_all(ops, 0);
        let last = outcomes.last().cloned();
        match last {
            Some(Outcome::Rejected(rejection)) => assert_eq!(rejection.code, code, "{rejection:?}"),
            other => panic!("expected {code}, got {other:?}"),
        }
    }
    use RejectCode::*;
    rejects(
        vec![op("1", "createCard", json!({"id": "a", "x": "left"}))],
        MalformedOperation,
    );
    rejects(
        vec![op("1", "createCard", json!({"x": 1}))],
        MalformedOperation,
    );
    rejects(
        vec![op("1", "createCard", json!({"id": 3}))],
        MalformedOperation,
    );
    rejects(
        vec![op("1", "createCard", json!({"id": "a", "listId": 3}))],
        MalformedOperation,
    );
    rejects(
        vec![op("1", "createConnection", json!({"id": "c"}))],
        MalformedOperation,
    );
    rejects(
        vec![op("1", "updateTags", json!({"id": "t"}))],
        MalformedOperation,
    );
    rejects(vec![op("1", "updateSpace", json!([1]))], MalformedOperation);
    rejects(
        vec![op("1", "createDrawingStroke", json!({"stroke": []}))],
        MalformedOperation,
    );
    let mut text_body = Operation::new("createCard", json!("text"));
    text_body.operation_id = Some("1".into());
    rejects(vec![text_body], MalformedOperation);
    rejects(
        vec![Operation::new("createCard", json!(null))],
        InvalidOperationId,
    );
    rejects(
        vec![Operation::new("createCard", json!({"id": "a"}))],
        InvalidOperationId,
    );
    rejects(
        vec![op("1", "explodeCard", json!({"id": "a"}))],
        UnknownOperation,
    );
    rejects(
        vec![op("1", "createTag", json!({"id": "a"}))],
        UnknownOperation,
    );
    rejects(
        vec![op("1", "deleteBox", json!({"id": "a"}))],
        UnknownOperation,
    );
    rejects(
        vec![op("1", "updateUser", json!({"id": "u"}))],
        UnsupportedOperation,
    );
    rejects(
        vec![op("1", "updateUserCardsCreatedCount", json!({}))],
        UnsupportedOperation,
    );
    rejects(
        vec![op("1", "updateFavoriteSpace", json!({}))],
        UnsupportedOperation,
    );
    rejects(
        vec![op("1", "createSpace", json!({"id": "elsewhere"}))],
        WrongSpace,
    );
    rejects(
        vec![
            op("1", "createCard", card("a")),
            op("2", "createCard", card("b")),
            op("3", "deleteCard", json!({"id": "a"})),
            op("4", "createConnection", connection("c", "a", "b")),
        ],
        ReferenceDeleted,
    );
    rejects(
        vec![
            op("1", "createBox", json!({"id": "b"})),
            op("2", "removeBox", json!({"id": "b"})),
            op("3", "updateBox", json!({"id": "b", "x": 1})),
        ],
        ReferenceDeleted,
    );
}

#[test]
fn unsupported_ops_are_answered_but_not_remembered_or_sequenced() {
    let mut space = space();
    let user_op = op("u1", "updateUserVisitSpaces", json!({}));
    assert_eq!(
        submit(&mut space, vec![user_op.clone(), user_op]),
        [
            "rejected:u1:unsupported_operation",
            "rejected:u1:unsupported_operation"
        ]
    );
    assert!(space.prior("u1").is_none());
    assert_eq!(space.seq(), 0);
}

#[test]
fn an_op_waiting_for_a_rejected_create_is_rejected_with_dependency_rejected() {
    let mut space = space();
    let got = submit(
        &mut space,
        vec![
            op("1", "createConnection", connection("c", "a", "b")),
            op("2", "createCard", card("b")),
            op("3", "createCard", json!({"id": "a", "x": "nope"})),
        ],
    );
    assert_eq!(
        got,
        [
            "held:1",
            "applied:2@1",
            "rejected:3:malformed_operation",
            "rejected:1:dependency_rejected"
        ]
    );
    assert_eq!(space.held_count(), 0);
}

#[test]
fn held_ops_time_out_with_the_missing_ids_named() {
    let mut space = space();
    let outcomes = space.submit(
        op("1", "createConnection", connection("c", "ghost", "phantom")),
        1_000,
    );
    assert_eq!(summary(&outcomes), ["held:1"]);
    assert_eq!(space.next_deadline(), Some(6_000));
    assert!(space.expire(5_999).is_empty());
    let expired = space.expire(6_000);
    match &expired[..] {
        [Outcome::Rejected(rejection)] => {
            assert_eq!(rejection.code, RejectCode::DependencyTimeout);
            assert!(
                rejection.message.contains("ghost") && rejection.message.contains("phantom"),
                "{}",
                rejection.message
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(space.held_count(), 0);
    assert_eq!(space.next_deadline(), None);
    // The op id is now known as rejected; a retry is refused without holding again.
    assert_eq!(
        submit(
            &mut space,
            vec![op(
                "1",
                "createConnection",
                connection("c", "ghost", "phantom")
            )]
        ),
        ["rejected:1:dependency_timeout"]
    );
}

#[test]
fn holding_is_bounded_in_count_and_bytes() {
    let config = SpaceConfig {
        max_held_ops: 2,
        ..SpaceConfig::default()
    };
    let mut space = Space::new("s", config);
    let got = submit(
        &mut space,
        (0..3)
            .map(|i| {
                op(
                    &format!("{i}"),
                    "updateCard",
                    json!({"id": format!("missing{i}")}),
                )
            })
            .collect(),
    );
    assert_eq!(got, ["held:0", "held:1", "rejected:2:hold_limit_exceeded"]);

    let config = SpaceConfig {
        max_held_bytes: 100,
        ..SpaceConfig::default()
    };
    let mut space = Space::new("s", config);
    let got = submit(
        &mut space,
        vec![op(
            "big",
            "updateCard",
            json!({"id": "m", "text": "x".repeat(200)}),
        )],
    );
    assert_eq!(got, ["rejected:big:hold_limit_exceeded"]);
}

// ---------------------------------------------------------------------------------------------
// The real client misorderings of BRIEF §4.3, each as its own test.

#[test]
fn misorder_whole_batch_in_reverse_order() {
    let in_order = vec![
        op("1", "createList", json!({"id": "l", "x": 0, "y": 0})),
        op("2", "createCard", json!({"id": "a", "listId": "l"})),
        op("3", "createCard", card("b")),
        op("4", "createConnectionType", json!({"id": "ct"})),
        op(
            "5",
            "createConnection",
            json!({"id": "c", "startItemId": "a", "endItemId": "b", "connectionTypeId": "ct"}),
        ),
        op("6", "updateTags", json!({"id": "t", "cardId": "b"})),
        op("7", "updateCard", json!({"id": "a", "x": 99})),
    ];
    let mut forward = space();
    submit(&mut forward, in_order.clone());
    let mut backward = space();
    let outcomes = backward.submit_all(in_order.into_iter().rev(), 0);
    assert!(
        outcomes.iter().all(|o| !matches!(o, Outcome::Rejected(_))),
        "{outcomes:?}"
    );
    assert_eq!(backward.state(), forward.state());
    assert_eq!(backward.seq(), 7);
    assert_eq!(backward.held_count(), 0);
}

#[test]
fn misorder_connection_queued_before_the_cards_and_boxes_it_joins() {
    // Duplicate-by-drag and copy-to-space queue the connection ahead of its items.
    let space = check(
        vec![
            op("1", "createConnection", connection("c", "card", "box")),
            op("2", "createCard", card("card")),
            op("3", "createBox", json!({"id": "box", "x": 0, "y": 0})),
        ],
        &["held:1", "applied:2@1", "applied:3@2", "applied:1@3"],
    );
    assert!(item(&space, Collection::Connections, "c").is_some());
}

#[test]
fn misorder_update_merged_into_an_earlier_queue_slot_ahead_of_its_create() {
    let space = check(
        vec![
            op(
                "1",
                "updateCard",
                json!({"id": "a", "x": 50, "name": "renamed"}),
            ),
            op(
                "2",
                "createCard",
                json!({"id": "a", "x": 0, "y": 0, "name": "a"}),
            ),
        ],
        &["held:1", "applied:2@1", "applied:1@2"],
    );
    let card = item(&space, Collection::Cards, "a").unwrap_or_default();
    assert_eq!(
        (card["x"].clone(), card["name"].clone()),
        (json!(50), json!("renamed"))
    );
}

#[test]
fn misorder_two_overlapping_batches_with_the_dependency_in_the_second() {
    let mut space = space();
    let first = submit(
        &mut space,
        vec![
            op("1", "createCard", card("a")),
            op("2", "createConnection", connection("c", "a", "b")),
        ],
    );
    assert_eq!(first, ["applied:1@1", "held:2"]);
    let second = submit(
        &mut space,
        vec![
            op("2", "createConnection", connection("c", "a", "b")),
            op("3", "createCard", card("b")),
        ],
    );
    assert_eq!(second, ["held:2", "applied:3@2", "applied:2@3"]);
}

#[test]
fn misorder_create_type_remove_it_then_connection_using_it() {
    let space = check(
        vec![
            op("1", "createCard", card("a")),
            op("2", "createCard", card("b")),
            op(
                "3",
                "createConnectionType",
                json!({"id": "ct", "color": "pink"}),
            ),
            op("4", "removeConnectionType", json!({"id": "ct"})),
            op(
                "5",
                "createConnection",
                json!({"id": "c", "startItemId": "a", "endItemId": "b", "connectionTypeId": "ct", "color": "pink"}),
            ),
        ],
        &[
            "applied:1@1",
            "applied:2@2",
            "applied:3@3",
            "applied:4@4",
            "applied:5@5",
        ],
    );
    let connection = item(&space, Collection::Connections, "c").unwrap_or_default();
    assert_eq!(connection["connectionTypeId"], json!("ct"), "kept as sent");
}

#[test]
fn misorder_connection_before_a_connection_type_never_seen_waits_for_it() {
    check(
        vec![
            op("1", "createCard", card("a")),
            op("2", "createCard", card("b")),
            op(
                "3",
                "createConnection",
                json!({"id": "c", "startItemId": "a", "endItemId": "b", "connectionTypeId": "ct"}),
            ),
            op("4", "createConnectionType", json!({"id": "ct"})),
        ],
        &[
            "applied:1@1",
            "applied:2@2",
            "held:3",
            "applied:4@3",
            "applied:3@4",
        ],
    );
}

#[test]
fn misorder_parent_deletes_interleaved_with_removal_of_their_connections() {
    let space = check(
        vec![
            op("1", "createCard", card("a")),
            op("2", "createCard", card("b")),
            op("3", "createCard", card("d")),
            op("4", "createConnection", connection("c1", "a", "b")),
            op("5", "createConnection", connection("c2", "b", "d")),
            op("6", "deleteCard", json!({"id": "a"})),
            op("7", "removeConnection", json!({"id": "c1"})),
            op("8", "removeConnection", json!({"id": "c2"})),
            op("9", "deleteCard", json!({"id": "b"})),
            op("10", "deleteCard", json!({"id": "b"})),
        ],
        &[
            "applied:1@1",
            "applied:2@2",
            "applied:3@3",
            "applied:4@4",
            "applied:5@5",
            "applied:6@6",
            "applied:7@7",
            "applied:8@8",
            "applied:9@9",
            "applied:10@10",
        ],
    );
    assert!(space.state().items(Collection::Connections).is_empty());
    assert_eq!(
        space
            .state()
            .items(Collection::Cards)
            .keys()
            .collect::<Vec<_>>(),
        ["d"]
    );
}

#[test]
fn misorder_remove_before_its_create_is_held_the_same_way() {
    let space = check(
        vec![
            op("1", "removeBox", json!({"id": "b"})),
            op("2", "createBox", json!({"id": "b", "x": 0, "y": 0})),
        ],
        &["held:1", "applied:2@1", "applied:1@2"],
    );
    assert!(item(&space, Collection::Boxes, "b").is_none());
}

#[test]
fn later_ops_on_an_item_wait_behind_its_held_update() {
    // The held update moves the card into a list that does not exist yet; a later drag of the
    // same card must not be overtaken by it.
    let space = check(
        vec![
            op("1", "createCard", card("a")),
            op("2", "updateCard", json!({"id": "a", "listId": "l", "x": 1})),
            op("3", "updateCard", json!({"id": "a", "x": 2})),
            op("4", "createList", json!({"id": "l", "x": 0, "y": 0})),
        ],
        &[
            "applied:1@1",
            "held:2",
            "held:3",
            "applied:4@2",
            "applied:2@3",
            "applied:3@4",
        ],
    );
    assert_eq!(
        item(&space, Collection::Cards, "a").map(|c| c["x"].clone()),
        Some(json!(2))
    );
}

// ---------------------------------------------------------------------------------------------
// Replay from the log.

#[test]
fn replaying_the_log_rebuilds_the_same_space() {
    let mut live = space();
    let outcomes = live.submit_all(
        vec![
            op("1", "createConnection", connection("c", "a", "b")),
            op("2", "createCard", card("a")),
            op("3", "createCard", card("b")),
            op("4", "deleteCard", json!({"id": "a"})),
        ],
        0,
    );
    let mut replayed = space();
    for outcome in outcomes {
        if let Outcome::Applied(applied) = outcome {
            assert_eq!(replayed.replay(applied.seq, &applied.op), Ok(()));
        }
    }
    assert_eq!(replayed.state(), live.state());
    assert_eq!(replayed.seq(), live.seq());
    assert_eq!(replayed.prior("1"), Some(Prior::Accepted(3)));
    assert!(matches!(
        replayed.replay(9, &op("9", "createCard", card("z"))),
        Err(ReplayError::Gap { .. })
    ));
    assert!(matches!(
        replayed.replay(5, &op("9", "updateCard", json!({"id": "nope"}))),
        Err(ReplayError::Invalid { .. })
    ));
}

#[test]
fn memory_of_op_ids_is_bounded_to_the_newest() {
    let config = SpaceConfig {
        remember_ops: 3,
        ..SpaceConfig::default()
    };
    let mut space = Space::new("s", config);
    submit(
        &mut space,
        (1..=5)
            .map(|i| op(&format!("op{i}"), "createCard", card(&format!("c{i}"))))
            .collect(),
    );
    assert_eq!(space.prior("op1"), None, "the oldest are forgotten");
    assert_eq!(space.prior("op2"), None);
    assert_eq!(space.prior("op5"), Some(Prior::Accepted(5)));
    // Forgetting and remembering again keeps the newest.
    space.forget("op3");
    space.remember("op3", Prior::Accepted(3));
    space.remember("x", Prior::Accepted(9));
    assert_eq!(space.prior("op3"), Some(Prior::Accepted(3)));
    assert_eq!(space.prior("x"), Some(Prior::Accepted(9)));
}
