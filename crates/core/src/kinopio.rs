//! The Kinopio client's JSON shape of a space: export (what `GET /space/:id` returns) and
//! import of such a file (as one `createSpace`). Every field the client sent is kept.

use serde_json::{Map, Value};
use spacesync_protocol::{Operation, RejectCode};

use crate::collection::{Collection, DRAWING_STROKES_KEY};
use crate::space::{Outcome, Space, SpaceConfig};
use crate::state::SpaceState;

/// Why a Kinopio file could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the space has no string id")]
    MissingId,
    #[error("the space was rejected ({code}): {message}")]
    Rejected { code: RejectCode, message: String },
    #[error("the space references ids it does not contain: {0:?}")]
    Dangling(Vec<String>),
}

impl SpaceState {
    /// The space in the Kinopio client's shape: meta fields plus every collection the space
    /// carries (those of its source file, or all but an empty legacy `connectionTypes`).
    pub fn to_kinopio(&self) -> Value {
        let mut space: Map<String, Value> = self.meta.clone();
        for collection in Collection::DEPENDENCY_ORDER {
            let items = self.items(collection);
            let key = collection.json_key();
            if !items.is_empty() || self.present_keys.contains(key) {
                let items = items.values().cloned().map(Value::Object).collect();
                space.insert(key.to_owned(), Value::Array(items));
            }
        }
        if !self.strokes.is_empty() || self.present_keys.contains(DRAWING_STROKES_KEY) {
            let strokes = self.strokes.values().cloned().collect();
            space.insert(DRAWING_STROKES_KEY.to_owned(), Value::Array(strokes));
        }
        Value::Object(space)
    }
}

/// Imports a Kinopio space file as a new space whose first op (seq 1) is its `createSpace`.
pub fn import(file: &Value, config: SpaceConfig) -> Result<Space, ImportError> {
    let id = file
        .get("id")
        .and_then(Value::as_str)
        .ok_or(ImportError::MissingId)?;
    let mut space = Space::new(id, config);
    let mut body = file.clone();
    if let Some(fields) = body.as_object_mut() {
        fields.insert("operationId".into(), Value::String(format!("import-{id}")));
    }
    for outcome in space.submit(Operation::new("createSpace", body), 0) {
        match outcome {
            Outcome::Applied(_) | Outcome::Duplicate { .. } => {}
            Outcome::Held { waiting_for, .. } => return Err(ImportError::Dangling(waiting_for)),
            Outcome::Rejected(rejection) => {
                return Err(ImportError::Rejected {
                    code: rejection.code,
                    message: rejection.message,
                });
            }
        }
    }
    Ok(space)
}

/// A space's JSON with every collection sorted by id, for comparing spaces whose items were
/// created in different orders.
pub fn normalized(space: &Value) -> Value {
    let mut space = space.clone();
    if let Some(fields) = space.as_object_mut() {
        for (key, value) in fields.iter_mut() {
            if let (true, Some(items)) = (is_collection_key(key), value.as_array_mut()) {
                items.sort_by_key(sort_key);
            }
        }
    }
    space
}

fn sort_key(item: &Value) -> String {
    let item = item
        .as_array()
        .and_then(|points| points.first())
        .unwrap_or(item);
    item.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The ops that build a space item by item, as a client that created it would have sent them:
/// an empty `createSpace` with its meta, then one create per item in dependency order, then one
/// `createDrawingStroke` per stroke. Op ids are derived from item ids, so the list is stable.
pub fn creation_ops(space: &Value) -> Vec<Operation> {
    let Some(fields) = space.as_object() else {
        return Vec::new();
    };
    let mut ops = Vec::new();
    // The space itself, empty: its meta fields and the collection keys it carries.
    let mut meta: Map<String, Value> = fields
        .iter()
        .map(|(key, value)| match is_collection_key(key) {
            true => (key.clone(), Value::Array(Vec::new())),
            false => (key.clone(), value.clone()),
        })
        .collect();
    meta.insert("operationId".into(), Value::String("space".into()));
    ops.push(Operation::new("createSpace", Value::Object(meta)));
    for collection in Collection::DEPENDENCY_ORDER {
        let name = match collection {
            Collection::Tags => "updateTags".to_owned(),
            other => format!("create{}", other.op_noun()),
        };
        for item in fields
            .get(collection.json_key())
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut body = item.clone();
            let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
            let operation_id = format!("{}-{id}", collection.json_key());
            if let Some(body) = body.as_object_mut() {
                body.insert("operationId".into(), Value::String(operation_id));
            }
            ops.push(Operation::new(name.clone(), body));
        }
    }
    for stroke in fields
        .get(DRAWING_STROKES_KEY)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = sort_key(stroke);
        let mut body = Map::new();
        body.insert("operationId".into(), Value::String(format!("stroke-{id}")));
        body.insert("stroke".into(), stroke.clone());
        ops.push(Operation::new("createDrawingStroke", Value::Object(body)));
    }
    ops
}

fn is_collection_key(key: &str) -> bool {
    key == DRAWING_STROKES_KEY
        || Collection::DEPENDENCY_ORDER
            .iter()
            .any(|collection| collection.json_key() == key)
}
