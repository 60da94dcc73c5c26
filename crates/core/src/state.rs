//! The content of a space: its meta fields, its collections of items, its drawing strokes and
//! the ids that were taken out of it. `SpaceState` knows how to check an action's references
//! and how to apply an action; ordering, holding and idempotency live in [`crate::Space`].

use std::collections::{BTreeSet, HashSet};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::action::{Action, REFERENCE_FIELDS, Strength};
use crate::collection::{Collection, DRAWING_STROKES_KEY};

/// An item: the JSON object as the client sent it, every field kept.
pub type Item = Map<String, Value>;

/// A collection's items by id, in the order they were first created.
pub type Items = IndexMap<String, Item>;

/// The content of a space. Two states are equal when they hold the same items with the same
/// fields, whatever the order in which the items were created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpaceState {
    /// Every field of the space that is not a collection (name, privacy, users, …).
    pub meta: Map<String, Value>,
    /// The collections, indexed by [`Collection`] in dependency order.
    pub collections: [Items; 7],
    /// Drawing strokes by the id of their first point.
    pub strokes: IndexMap<String, Value>,
    /// Ids taken out of each collection (removed or permanently deleted), so that later
    /// references to them are recognised instead of waited for.
    pub taken_out: [BTreeSet<String>; 7],
    pub strokes_taken_out: BTreeSet<String>,
    /// Collection keys that the space's JSON carries even when empty (those of the file it was
    /// imported from; by default all but the legacy `connectionTypes`).
    pub present_keys: BTreeSet<String>,
}

/// What checking an action's references found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Everything referenced exists: the action can be applied.
    Ready,
    /// These ids were never seen; wait for them.
    Missing(BTreeSet<String>),
    /// The action refers to something taken out of the space.
    Deleted(String),
    /// The action is incomplete in a way only the space can tell (a new connection without
    /// endpoints).
    Malformed(String),
}

impl SpaceState {
    /// An empty space with the default set of collection keys.
    pub fn new(space_id: &str) -> SpaceState {
        let mut meta = Map::new();
        meta.insert("id".into(), Value::String(space_id.to_owned()));
        SpaceState {
            meta,
            present_keys: Collection::DEPENDENCY_ORDER
                .into_iter()
                .filter(|collection| *collection != Collection::ConnectionTypes)
                .map(|collection| collection.json_key().to_owned())
                .chain([DRAWING_STROKES_KEY.to_owned()])
                .collect(),
            ..SpaceState::default()
        }
    }

    pub fn items(&self, collection: Collection) -> &Items {
        &self.collections[collection.index()]
    }

    fn items_mut(&mut self, collection: Collection) -> &mut Items {
        &mut self.collections[collection.index()]
    }

    /// Whether `id` is a live item of any of `collections`.
    pub fn exists_in(&self, id: &str, collections: &[Collection]) -> bool {
        collections
            .iter()
            .any(|collection| self.items(*collection).contains_key(id))
    }

    fn taken_out_of(&self, id: &str, collections: &[Collection]) -> bool {
        collections
            .iter()
            .any(|collection| self.taken_out[collection.index()].contains(id))
    }

    /// Every id an action creates, for waking the ops that wait for them.
    pub fn created_ids(action: &Action) -> Vec<&str> {
        match action {
            Action::Upsert { .. } | Action::CreateStroke { .. } => {
                action.target().into_iter().collect()
            }
            Action::CreateSpace { items, strokes, .. } => items
                .iter()
                .filter_map(|(_, item)| item.get("id").and_then(Value::as_str))
                .chain(strokes.iter().map(|(id, _)| id.as_str()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Checks the references of all the actions of one op. Ids created by the op itself count
    /// as existing (a `createSpace` carries its cards and the connections between them).
    pub fn requirement(&self, actions: &[Action]) -> Requirement {
        let provided: HashSet<&str> = actions.iter().flat_map(Self::created_ids).collect();
        let mut missing = BTreeSet::new();
        for action in actions {
            match self.action_requirement(action, &provided, &mut missing) {
                Requirement::Ready | Requirement::Missing(_) => {}
                other => return other,
            }
        }
        if missing.is_empty() {
            Requirement::Ready
        } else {
            Requirement::Missing(missing)
        }
    }

    fn action_requirement(
        &self,
        action: &Action,
        provided: &HashSet<&str>,
        missing: &mut BTreeSet<String>,
    ) -> Requirement {
        let mut need = |id: &str, collections: &[Collection], strength: Strength| {
            if self.exists_in(id, collections) || provided.contains(id) {
                return Requirement::Ready;
            }
            if self.taken_out_of(id, collections) {
                if strength == Strength::Hard {
                    return Requirement::Deleted(id.to_owned());
                }
                return Requirement::Ready;
            }
            missing.insert(id.to_owned());
            Requirement::Ready
        };
        let references =
            |item: &Item, need: &mut dyn FnMut(&str, &[Collection], Strength) -> Requirement| {
                for (field, collections, strength) in REFERENCE_FIELDS {
                    if let Some(Value::String(id)) = item.get(*field) {
                        let found = need(id, collections, *strength);
                        if found != Requirement::Ready {
                            return found;
                        }
                    }
                }
                Requirement::Ready
            };
        match action {
            Action::Upsert { collection, item } => {
                let is_new = item
                    .get("id")
                    .and_then(Value::as_str)
                    .is_none_or(|id| !self.items(*collection).contains_key(id));
                if is_new && let Some(problem) = incomplete(*collection, item) {
                    return Requirement::Malformed(problem);
                }
                references(item, &mut need)
            }
            Action::Merge { collection, patch } => {
                if let Some(id) = patch.get("id").and_then(Value::as_str) {
                    let found = need(id, &[*collection], Strength::Hard);
                    if found != Requirement::Ready {
                        return found;
                    }
                }
                references(patch, &mut need)
            }
            Action::TakeOut { collection, id } => {
                // Taking out what is already gone is a no-op, not an error: clients remove a
                // connection that a card delete already cascaded to.
                if !self.taken_out_of(id, &[*collection]) {
                    need(id, &[*collection], Strength::Hard);
                }
                Requirement::Ready
            }
            Action::RemoveStroke { id } => {
                if !self.strokes.contains_key(id) && !self.strokes_taken_out.contains(id) {
                    missing.insert(id.clone());
                }
                Requirement::Ready
            }
            Action::CreateSpace { items, .. } => {
                for (collection, item) in items {
                    if let Some(problem) = incomplete(*collection, item) {
                        return Requirement::Malformed(problem);
                    }
                    let found = references(item, &mut need);
                    if found != Requirement::Ready {
                        return found;
                    }
                }
                Requirement::Ready
            }
            Action::CreateStroke { .. } | Action::ClearDrawing | Action::UpdateSpace { .. } => {
                Requirement::Ready
            }
        }
    }

    /// Applies one action whose requirement is [`Requirement::Ready`].
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Upsert { collection, item } => self.upsert(collection, item),
            Action::Merge { collection, patch } => self.merge(collection, patch),
            Action::TakeOut { collection, id } => self.take_out(collection, &id),
            Action::CreateStroke { id, points } => {
                self.strokes_taken_out.remove(&id);
                self.strokes.insert(id, points);
            }
            Action::RemoveStroke { id } => {
                if self.strokes.shift_remove(&id).is_some() {
                    self.strokes_taken_out.insert(id);
                }
            }
            Action::ClearDrawing => {
                let ids: Vec<String> = self.strokes.drain(..).map(|(id, _)| id).collect();
                self.strokes_taken_out.extend(ids);
            }
            Action::UpdateSpace { patch } => {
                for (key, value) in patch {
                    if key != "id" {
                        self.meta.insert(key, value);
                    }
                }
            }
            Action::CreateSpace {
                meta,
                items,
                strokes,
                present_keys,
            } => {
                self.meta.extend(meta);
                self.present_keys = present_keys.into_iter().collect();
                for (collection, item) in items {
                    self.upsert(collection, item);
                }
                for (id, points) in strokes {
                    self.strokes_taken_out.remove(&id);
                    self.strokes.insert(id, points);
                }
            }
        }
    }

    fn upsert(&mut self, collection: Collection, item: Item) {
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            return;
        };
        self.taken_out[collection.index()].remove(id);
        if self.items(collection).contains_key(id) {
            self.merge(collection, item);
        } else {
            let id = id.to_owned();
            self.items_mut(collection).insert(id, item);
        }
    }

    fn merge(&mut self, collection: Collection, patch: Item) {
        let Some(id) = patch.get("id").and_then(Value::as_str) else {
            return;
        };
        let Some(existing) = self.items_mut(collection).get_mut(id) else {
            return;
        };
        let keep_name = collection == Collection::Cards
            && patch.contains_key("name")
            && name_is_older(patch.get("nameUpdatedAt"), existing.get("nameUpdatedAt"));
        for (key, value) in patch {
            if keep_name && (key == "name" || key == "nameUpdatedAt") {
                continue;
            }
            existing.insert(key, value);
        }
    }

    fn take_out(&mut self, collection: Collection, id: &str) {
        if self.items_mut(collection).shift_remove(id).is_none() {
            return;
        }
        self.taken_out[collection.index()].insert(id.to_owned());
        match collection {
            Collection::Cards | Collection::Boxes | Collection::Lists => {
                self.cascade_connections(id);
                if collection == Collection::Cards {
                    self.retain_taking_out(Collection::Tags, |tag| {
                        tag.get("cardId").and_then(Value::as_str) != Some(id)
                    });
                }
                if collection == Collection::Lists {
                    // Cards stay on the canvas when their list goes; only the link is cut.
                    for card in self.items_mut(Collection::Cards).values_mut() {
                        if card.get("listId").and_then(Value::as_str) == Some(id) {
                            card.insert("listId".into(), Value::Null);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn cascade_connections(&mut self, id: &str) {
        self.retain_taking_out(Collection::Connections, |connection| {
            !["startItemId", "endItemId", "startCardId", "endCardId"]
                .iter()
                .any(|field| connection.get(*field).and_then(Value::as_str) == Some(id))
        });
    }

    fn retain_taking_out(&mut self, collection: Collection, keep: impl Fn(&Item) -> bool) {
        let mut gone = Vec::new();
        self.items_mut(collection).retain(|id, item| {
            let kept = keep(item);
            if !kept {
                gone.push(id.clone());
            }
            kept
        });
        self.taken_out[collection.index()].extend(gone);
    }
}

/// What a new item of a collection must carry beyond its id, checked only on creation so that
/// duplicate creates and partial upserts of existing items stay valid.
fn incomplete(collection: Collection, item: &Item) -> Option<String> {
    let has = |field: &str| item.get(field).is_some_and(Value::is_string);
    match collection {
        Collection::Connections => {
            let modern = has("startItemId") && has("endItemId");
            let legacy = has("startCardId") && has("endCardId");
            (!modern && !legacy).then(|| {
                "a connection needs startItemId and endItemId (or legacy startCardId and endCardId)"
                    .to_owned()
            })
        }
        Collection::Tags => (!has("cardId")).then(|| "a tag needs a cardId".to_owned()),
        _ => None,
    }
}

/// Card names are last-writer-wins by `nameUpdatedAt` (BRIEF §2, R6): an incoming name older
/// than the stored one is ignored. Timestamps are ISO 8601 strings (which sort as text) or
/// epoch numbers; a missing or incomparable timestamp lets the incoming name win, in op order.
fn name_is_older(incoming: Option<&Value>, stored: Option<&Value>) -> bool {
    match (incoming, stored) {
        (Some(Value::String(incoming)), Some(Value::String(stored))) => incoming < stored,
        (Some(Value::Number(incoming)), Some(Value::Number(stored))) => {
            match (incoming.as_f64(), stored.as_f64()) {
                (Some(incoming), Some(stored)) => incoming < stored,
                _ => false,
            }
        }
        _ => false,
    }
}
