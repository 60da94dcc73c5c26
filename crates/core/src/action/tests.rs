//! Parsing table: every op name of the vocabulary maps to its actions, and every parse failure
//! to its code.

use serde_json::{Value, json};
use spacesync_protocol::{Operation, RejectCode};

use super::*;

/// A short description of the actions an op parses into, or the rejection code.
fn describe(name: &str, body: Value) -> Result<Vec<String>, RejectCode> {
    let mut op = Operation::new(name, body);
    op.operation_id = Some("op".into());
    parse(&op, "s")
        .map(|parsed| {
            parsed
                .actions
                .iter()
                .map(|action| match action {
                    Action::Upsert { collection, .. } => {
                        format!("upsert {}", collection.json_key())
                    }
                    Action::Merge { collection, patch } => match patch.get("isRemoved") {
                        Some(Value::Bool(removed)) if patch.len() == 2 => {
                            format!("merge {} isRemoved={removed}", collection.json_key())
                        }
                        _ => format!("merge {}", collection.json_key()),
                    },
                    Action::TakeOut { collection, id } => {
                        format!("take out {} {id}", collection.json_key())
                    }
                    Action::CreateStroke { id, .. } => format!("create stroke {id}"),
                    Action::RemoveStroke { id } => format!("remove stroke {id}"),
                    Action::ClearDrawing => "clear drawing".to_owned(),
                    Action::UpdateSpace { .. } => "update space".to_owned(),
                    Action::CreateSpace { items, .. } => {
                        format!("create space with {} items", items.len())
                    }
                })
                .collect()
        })
        .map_err(|error| error.code)
}

fn check(name: &str, body: Value, expected: Result<&[&str], RejectCode>) {
    let expected = expected.map(|lines| {
        lines
            .iter()
            .map(|line| (*line).to_owned())
            .collect::<Vec<_>>()
    });
    assert_eq!(describe(name, body.clone()), expected, "{name} {body}");
}

#[test]
fn vocabulary() {
    let item = json!({"id": "i"});
    check("createCard", item.clone(), Ok(&["upsert cards"]));
    check("updateCard", item.clone(), Ok(&["merge cards"]));
    check(
        "removeCard",
        item.clone(),
        Ok(&["merge cards isRemoved=true"]),
    );
    check(
        "restoreRemovedCard",
        item.clone(),
        Ok(&["merge cards isRemoved=false"]),
    );
    check("deleteCard", item.clone(), Ok(&["take out cards i"]));
    check("createBox", item.clone(), Ok(&["upsert boxes"]));
    check("updateBox", item.clone(), Ok(&["merge boxes"]));
    check("removeBox", item.clone(), Ok(&["take out boxes i"]));
    check("createList", item.clone(), Ok(&["upsert lists"]));
    check("updateList", item.clone(), Ok(&["merge lists"]));
    check("removeList", item.clone(), Ok(&["take out lists i"]));
    check("createLine", item.clone(), Ok(&["upsert lines"]));
    check("updateLine", item.clone(), Ok(&["merge lines"]));
    check("removeLine", item.clone(), Ok(&["take out lines i"]));
    check(
        "createConnection",
        item.clone(),
        Ok(&["upsert connections"]),
    );
    check("updateConnection", item.clone(), Ok(&["merge connections"]));
    check(
        "removeConnection",
        item.clone(),
        Ok(&["take out connections i"]),
    );
    check(
        "createConnectionType",
        item.clone(),
        Ok(&["upsert connectionTypes"]),
    );
    check(
        "updateConnectionType",
        item.clone(),
        Ok(&["merge connectionTypes"]),
    );
    check(
        "removeConnectionType",
        item.clone(),
        Ok(&["take out connectionTypes i"]),
    );
    check("updateTags", item.clone(), Ok(&["upsert tags"]));
    check(
        "updateTags",
        json!([{"id": "a"}, {"id": "b"}]),
        Ok(&["upsert tags", "upsert tags"]),
    );
    check("addTag", item.clone(), Ok(&["upsert tags"]));
    check("removeTag", item.clone(), Ok(&["take out tags i"]));
    let stroke = json!([{"id": "p", "x": 1, "y": 1}]);
    check(
        "createDrawingStroke",
        json!({"stroke": stroke}),
        Ok(&["create stroke p"]),
    );
    check(
        "createDrawingStroke",
        stroke.clone(),
        Ok(&["create stroke p"]),
    );
    check(
        "removeDrawingStroke",
        json!({"stroke": stroke}),
        Ok(&["remove stroke p"]),
    );
    check(
        "removeDrawingStroke",
        json!({"id": "p"}),
        Ok(&["remove stroke p"]),
    );
    check("clearDrawing", json!({}), Ok(&["clear drawing"]));
    check("updateSpace", json!({"name": "n"}), Ok(&["update space"]));
    check(
        "createSpace",
        json!({"id": "s", "cards": [item]}),
        Ok(&["create space with 1 items"]),
    );
    check(
        "createSpace",
        json!({"name": "no id"}),
        Ok(&["create space with 0 items"]),
    );
    check(
        "removeCard",
        json!([{"id": "a"}, {"id": "b"}]),
        Ok(&["merge cards isRemoved=true", "merge cards isRemoved=true"]),
    );
}

#[test]
fn parse_failures() {
    use RejectCode::*;
    check("createCard", json!({"id": ""}), Err(MalformedOperation));
    check("createCard", json!([]), Err(MalformedOperation));
    check("createCard", json!([1]), Err(MalformedOperation));
    check("createCard", json!(true), Err(MalformedOperation));
    check(
        "updateCard",
        json!({"id": "i", "y": "top"}),
        Err(MalformedOperation),
    );
    check(
        "createConnection",
        json!({"id": "i", "startItemId": 1}),
        Err(MalformedOperation),
    );
    check("createDrawingStroke", json!({}), Err(MalformedOperation));
    check("removeDrawingStroke", json!({}), Err(MalformedOperation));
    check("updateSpace", json!("x"), Err(MalformedOperation));
    check(
        "createSpace",
        json!({"id": "s", "cards": {}}),
        Err(MalformedOperation),
    );
    check(
        "createSpace",
        json!({"id": "s", "cards": [1]}),
        Err(MalformedOperation),
    );
    check(
        "createSpace",
        json!({"id": "s", "drawingStrokes": {}}),
        Err(MalformedOperation),
    );
    check(
        "createSpace",
        json!({"id": "s", "drawingStrokes": [[]]}),
        Err(MalformedOperation),
    );
    check("createSpace", json!({"id": 7}), Err(WrongSpace));
    check("createSpace", json!({"id": "t"}), Err(WrongSpace));
    check("createSpace", json!([]), Err(MalformedOperation));
    check("deleteList", json!({"id": "i"}), Err(UnknownOperation));
    check(
        "restoreRemovedBox",
        json!({"id": "i"}),
        Err(UnknownOperation),
    );
    check("createTag", json!({"id": "i"}), Err(UnknownOperation));
    check("createWidget", json!({"id": "i"}), Err(UnknownOperation));
    check("", json!({"id": "i"}), Err(UnknownOperation));
    for name in [
        "updateUser",
        "updateUserCardsCreatedCount",
        "updateUserCardsCreatedCountRaw",
        "updateFavoriteSpaces",
        "updateUserVisitSpaces",
        "createGroup",
        "updateNotification",
    ] {
        check(name, json!({}), Err(UnsupportedOperation));
    }
}
