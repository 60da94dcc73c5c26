//! Parsing: an [`Operation`] from the wire becomes a [`ParsedOp`], a list of typed actions on
//! the space, or a rejection. Parsing is pure and looks at nothing but the op itself; whether
//! the references exist is decided later, against the space.

use serde_json::{Map, Value};
use spacesync_protocol::{EnvelopeError, Operation, RejectCode};

use crate::collection::{Collection, DRAWING_STROKES_KEY};
use crate::validate::{self, Malformed};

/// Envelope fields that are op metadata. On updates they are never merged into the item.
const ENVELOPE_FIELDS: &[&str] = &["operationId", "spaceId", "userId", "clientCreatedAt"];
/// Envelope fields that are op metadata only; `userId` and `spaceId` are item fields on creates.
const OP_ONLY_FIELDS: &[&str] = &["operationId", "clientCreatedAt"];

/// Reference fields, the collections they may point at, and whether a reference to a removed
/// item is an error (hard) or only an ordering hint (the legacy `connectionTypeId`).
pub(crate) const REFERENCE_FIELDS: &[(&str, &[Collection], Strength)] = &[
    ("listId", &[Collection::Lists], Strength::Hard),
    (
        "startItemId",
        &[Collection::Cards, Collection::Boxes, Collection::Lists],
        Strength::Hard,
    ),
    (
        "endItemId",
        &[Collection::Cards, Collection::Boxes, Collection::Lists],
        Strength::Hard,
    ),
    ("startCardId", &[Collection::Cards], Strength::Hard),
    ("endCardId", &[Collection::Cards], Strength::Hard),
    (
        "connectionTypeId",
        &[Collection::ConnectionTypes],
        Strength::Ordering,
    ),
    ("cardId", &[Collection::Cards], Strength::Hard),
];

/// How strictly a reference must resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strength {
    /// Must exist; a reference to a removed item is rejected with `reference_deleted`.
    Hard,
    /// Waited for when never seen; kept as sent when the target was removed.
    Ordering,
}

/// Real client operations outside spacesync's scope (BRIEF §4.1), by prefix or by word.
const UNSUPPORTED_PREFIXES: &[&str] = &["updateUser", "createUser", "removeUser", "addUser"];
const UNSUPPORTED_WORDS: &[&str] = &["Favorite", "Notification", "Group", "Visit", "Inbox"];

/// One change to the space. An op is one or more actions, applied together.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create or, when the id exists, shallow-merge (creates are upserts by id).
    Upsert {
        collection: Collection,
        item: Map<String, Value>,
    },
    /// Shallow merge of the given fields into an existing item.
    Merge {
        collection: Collection,
        patch: Map<String, Value>,
    },
    /// Take the item out of the space (remove or permanent delete), cascading to what points
    /// at it. Taking out an item that is already gone changes nothing.
    TakeOut {
        collection: Collection,
        id: String,
    },
    CreateStroke {
        id: String,
        points: Value,
    },
    RemoveStroke {
        id: String,
    },
    ClearDrawing,
    UpdateSpace {
        patch: Map<String, Value>,
    },
    /// A whole space: meta fields, then items in dependency order, then strokes.
    CreateSpace {
        meta: Map<String, Value>,
        items: Vec<(Collection, Map<String, Value>)>,
        strokes: Vec<(String, Value)>,
        present_keys: Vec<String>,
    },
}

impl Action {
    /// The item this action changes, when it changes exactly one existing-or-new item.
    pub(crate) fn target(&self) -> Option<&str> {
        match self {
            Action::Upsert { item, .. } => item.get("id").and_then(Value::as_str),
            Action::Merge { patch, .. } => patch.get("id").and_then(Value::as_str),
            Action::TakeOut { id, .. } | Action::RemoveStroke { id } => Some(id),
            Action::CreateStroke { id, .. } => Some(id),
            Action::ClearDrawing | Action::UpdateSpace { .. } | Action::CreateSpace { .. } => None,
        }
    }
}

/// An operation that parsed: its id, the op and the actions it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedOp {
    pub operation_id: String,
    pub op: Operation,
    pub actions: Vec<Action>,
}

/// Why an operation could not be parsed, with the code the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: RejectCode,
    pub message: String,
}

impl ParseError {
    fn new(code: RejectCode, message: impl Into<String>) -> ParseError {
        ParseError {
            code,
            message: message.into(),
        }
    }
}

impl From<Malformed> for ParseError {
    fn from(Malformed(message): Malformed) -> ParseError {
        ParseError::new(RejectCode::MalformedOperation, message)
    }
}

/// Checks the envelope and reads the op's id, mapping errors to rejection codes.
pub fn operation_id(op: &Operation) -> Result<String, ParseError> {
    op.operation_id().map_err(|error| {
        let code = match error {
            EnvelopeError::MissingOperationId | EnvelopeError::InvalidOperationId => {
                RejectCode::InvalidOperationId
            }
            EnvelopeError::InvalidField(_) => RejectCode::MalformedOperation,
        };
        ParseError::new(code, error.to_string())
    })
}

/// Whether an op name is a real client operation that spacesync deliberately does not handle.
pub fn is_unsupported(name: &str) -> bool {
    UNSUPPORTED_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || UNSUPPORTED_WORDS.iter().any(|word| name.contains(word))
}

/// Parses an op for the space `space_id`.
pub fn parse(op: &Operation, space_id: &str) -> Result<ParsedOp, ParseError> {
    let operation_id = operation_id(op)?;
    parse_enveloped(op.clone(), operation_id, space_id).map_err(|(error, _)| error)
}

/// [`parse`] for an op whose envelope was already checked (`operation_id(&op)`): the op moves
/// into the result instead of being copied, and comes back with the error if it does not parse.
pub fn parse_enveloped(
    op: Operation,
    operation_id: String,
    space_id: &str,
) -> Result<ParsedOp, (ParseError, Operation)> {
    if is_unsupported(&op.name) {
        let error = ParseError::new(
            RejectCode::UnsupportedOperation,
            format!("{} is not a space operation", op.name),
        );
        return Err((error, op));
    }
    // An item's `spaceId` is not checked against the space: items copied from another space
    // keep their old `spaceId` (real data has them), and routing an op to its space is the
    // server's job. Only a `createSpace` for another space is refused.
    match actions(&op, space_id) {
        Ok(actions) => Ok(ParsedOp {
            operation_id,
            op,
            actions,
        }),
        Err(error) => Err((error, op)),
    }
}

fn actions(op: &Operation, space_id: &str) -> Result<Vec<Action>, ParseError> {
    let name = op.name.as_str();
    if let Some((verb, collection)) = item_op(name) {
        return each_item(&op.body, |item| item_action(verb, collection, item));
    }
    match name {
        "updateTags" | "addTag" => each_item(&op.body, |item| {
            item_action(Verb::Create, Collection::Tags, item)
        }),
        "createDrawingStroke" => Ok(vec![create_stroke(&op.body)?]),
        "removeDrawingStroke" => Ok(vec![remove_stroke(&op.body)?]),
        "clearDrawing" => Ok(vec![Action::ClearDrawing]),
        "updateSpace" => {
            let patch = object(&op.body, "updateSpace body")?;
            Ok(vec![Action::UpdateSpace {
                patch: copy_without(patch, ENVELOPE_FIELDS),
            }])
        }
        "createSpace" => Ok(vec![create_space(&op.body, space_id)?]),
        _ => Err(ParseError::new(
            RejectCode::UnknownOperation,
            format!("unknown operation {name:?}"),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Create,
    Update,
    SoftRemove,
    Restore,
    TakeOut,
}

/// Maps the regular `verbNoun` op names to a verb and a collection.
fn item_op(name: &str) -> Option<(Verb, Collection)> {
    let (verb, noun) = [
        ("create", Verb::Create),
        ("update", Verb::Update),
        ("restoreRemoved", Verb::Restore),
        ("remove", Verb::TakeOut),
        ("delete", Verb::TakeOut),
    ]
    .into_iter()
    .find_map(|(prefix, verb)| name.strip_prefix(prefix).map(|noun| (verb, noun)))?;
    let collection = Collection::DEPENDENCY_ORDER
        .into_iter()
        .find(|collection| collection.op_noun() == noun)?;
    match (verb, collection) {
        // A card is removed softly (`isRemoved: true`) and deleted permanently.
        (Verb::TakeOut, Collection::Cards) if name.starts_with("remove") => {
            Some((Verb::SoftRemove, collection))
        }
        (Verb::Restore, Collection::Cards) => Some((verb, collection)),
        (Verb::Restore, _) => None,
        // Only cards have a permanent delete distinct from remove.
        (Verb::TakeOut, other) if name.starts_with("delete") && other != Collection::Cards => None,
        // Tags are created and updated by `updateTags`; removed by `removeTag`.
        (Verb::Create | Verb::Update, Collection::Tags) => None,
        _ => Some((verb, collection)),
    }
}

/// The action for one item of an item op. Creates and updates validate the item where it is
/// and copy out only the fields they keep; removes, restores and deletes read only its `id`.
fn item_action(
    verb: Verb,
    collection: Collection,
    item: &Map<String, Value>,
) -> Result<Action, ParseError> {
    let id = match verb {
        Verb::Create | Verb::Update => {
            validate::item_fields(item)?;
            for (field, _, _) in REFERENCE_FIELDS {
                validate::optional_reference(item, field)?;
            }
            validate::item_id(item.get("id"), "id")?
        }
        Verb::SoftRemove | Verb::Restore | Verb::TakeOut => {
            validate::item_id(item.get("id"), "id")?
        }
    };
    Ok(match verb {
        Verb::Create => Action::Upsert {
            collection,
            item: clone_without(item, OP_ONLY_FIELDS),
        },
        Verb::Update => Action::Merge {
            collection,
            patch: copy_without(item, ENVELOPE_FIELDS),
        },
        Verb::SoftRemove | Verb::Restore => {
            let mut patch = Map::new();
            patch.insert("id".into(), Value::String(id));
            patch.insert("isRemoved".into(), Value::Bool(verb == Verb::SoftRemove));
            Action::Merge { collection, patch }
        }
        Verb::TakeOut => Action::TakeOut { collection, id },
    })
}

/// Applies `each` to the body, or to every element of an array-shaped body.
fn each_item(
    body: &Value,
    mut each: impl FnMut(&Map<String, Value>) -> Result<Action, ParseError>,
) -> Result<Vec<Action>, ParseError> {
    match body {
        Value::Object(item) => Ok(vec![each(item)?]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| each(object(item, "each element of the body")?))
            .collect(),
        Value::Array(_) => Err(Malformed::new("the body is an empty array").into()),
        _ => Err(Malformed::new("the body must be an object or an array of objects").into()),
    }
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ParseError> {
    value
        .as_object()
        .ok_or_else(|| Malformed::new(format!("{what} must be an object")).into())
}

/// A copy of `map` minus `fields`, field by field: what is left out is never copied. For an
/// update's patch (a drag's `id`, `x`, `y` and its envelope) this beats cloning the map and
/// removing the envelope after; for a created item, usually large, it does not (criterion,
/// "Apply" in docs/benchmarks.md), so creates use [`clone_without`].
fn copy_without(map: &Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    map.iter()
        .filter(|(key, _)| !fields.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// A clone of `map` with `fields` removed after.
fn clone_without(map: &Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    let mut copy = map.clone();
    for field in fields {
        copy.remove(*field);
    }
    copy
}

/// The stroke of a drawing op: `{stroke: [points]}` as the client sends it, or the array itself.
fn stroke_points(body: &Value) -> Option<&Value> {
    match body {
        Value::Array(_) => Some(body),
        Value::Object(fields) => fields.get("stroke"),
        _ => None,
    }
}

fn create_stroke(body: &Value) -> Result<Action, ParseError> {
    let points =
        stroke_points(body).ok_or_else(|| Malformed::new("createDrawingStroke needs a stroke"))?;
    let id = validate::stroke(points)?;
    Ok(Action::CreateStroke {
        id,
        points: points.clone(),
    })
}

fn remove_stroke(body: &Value) -> Result<Action, ParseError> {
    let id = match stroke_points(body) {
        Some(points) => validate::stroke(points)?,
        // `{id}` names the stroke by its first point's id.
        None => validate::item_id(body.get("id"), "id")?,
    };
    Ok(Action::RemoveStroke { id })
}

fn create_space(body: &Value, space_id: &str) -> Result<Action, ParseError> {
    let fields = object(body, "createSpace body")?;
    match fields.get("id") {
        Some(Value::String(id)) if id == space_id => {}
        None => {}
        Some(other) => {
            return Err(ParseError::new(
                RejectCode::WrongSpace,
                format!("createSpace for space {other}, not {space_id}"),
            ));
        }
    }
    let mut meta = Map::new();
    let mut present_keys = Vec::new();
    let mut items = Vec::new();
    let mut strokes = Vec::new();
    for (key, value) in fields {
        if OP_ONLY_FIELDS.contains(&key.as_str()) || key == "spaceId" {
            continue;
        }
        if let Some(collection) = Collection::DEPENDENCY_ORDER
            .into_iter()
            .find(|collection| collection.json_key() == key)
        {
            present_keys.push(key.clone());
            for item in collection_items(value, key)? {
                match item_action(Verb::Create, collection, item)? {
                    Action::Upsert { item, .. } => items.push((collection, item)),
                    _ => unreachable_action()?,
                }
            }
        } else if key == DRAWING_STROKES_KEY {
            present_keys.push(key.clone());
            for points in value.as_array().into_iter().flatten() {
                strokes.push((validate::stroke(points)?, points.clone()));
            }
            if !value.is_array() {
                return Err(Malformed::new("drawingStrokes must be an array").into());
            }
        } else {
            meta.insert(key.clone(), value.clone());
        }
    }
    meta.insert("id".into(), Value::String(space_id.to_owned()));
    // Dependency order, keeping the file's order within each collection.
    items.sort_by_key(|(collection, _)| *collection);
    Ok(Action::CreateSpace {
        meta,
        items,
        strokes,
        present_keys,
    })
}

fn collection_items<'a>(
    value: &'a Value,
    key: &str,
) -> Result<Vec<&'a Map<String, Value>>, ParseError> {
    let Some(items) = value.as_array() else {
        return Err(Malformed::new(format!("{key} must be an array")).into());
    };
    items
        .iter()
        .map(|item| object(item, &format!("each of {key}")))
        .collect()
}

/// `item_action(Verb::Create, …)` always returns an upsert; this keeps the match total without
/// a panic should that ever change.
fn unreachable_action() -> Result<(), ParseError> {
    Err(ParseError::new(
        RejectCode::InternalError,
        "create did not produce an upsert",
    ))
}

#[cfg(test)]
mod tests;
