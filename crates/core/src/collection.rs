//! The typed collections of a space (BRIEF §3), their names in the Kinopio JSON and the order
//! in which a whole space is applied so that every reference exists before it is used.

use serde::{Deserialize, Serialize};

/// A collection of items in a space. Drawing strokes are not items (they are arrays of points)
/// and are kept apart by [`crate::SpaceState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Collection {
    Lists,
    Cards,
    Boxes,
    Lines,
    ConnectionTypes,
    Connections,
    Tags,
}

impl Collection {
    /// Every collection in dependency order: lists before the cards that sit in them, cards,
    /// boxes and lists before the connections and tags that point at them.
    pub const DEPENDENCY_ORDER: [Collection; 7] = [
        Collection::Lists,
        Collection::Cards,
        Collection::Boxes,
        Collection::Lines,
        Collection::ConnectionTypes,
        Collection::Connections,
        Collection::Tags,
    ];

    /// The key of the collection in a Kinopio space.
    pub fn json_key(self) -> &'static str {
        match self {
            Collection::Lists => "lists",
            Collection::Cards => "cards",
            Collection::Boxes => "boxes",
            Collection::Lines => "lines",
            Collection::ConnectionTypes => "connectionTypes",
            Collection::Connections => "connections",
            Collection::Tags => "tags",
        }
    }

    /// The word used in operation names (`createCard`, `removeConnectionType`…).
    pub fn op_noun(self) -> &'static str {
        match self {
            Collection::Lists => "List",
            Collection::Cards => "Card",
            Collection::Boxes => "Box",
            Collection::Lines => "Line",
            Collection::ConnectionTypes => "ConnectionType",
            Collection::Connections => "Connection",
            Collection::Tags => "Tag",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The key under which drawing strokes are stored in a Kinopio space.
pub const DRAWING_STROKES_KEY: &str = "drawingStrokes";
