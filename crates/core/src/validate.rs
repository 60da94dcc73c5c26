//! Validation of the fields the server interprets (BRIEF §3). Every other field is kept as the
//! client sent it. A body that breaks these rules is rejected as malformed at once, because a
//! card with `x: "left"` would break every client that renders it.

use serde_json::{Map, Value};

/// Longest item id accepted. Kinopio ids are 21-character nanoids.
pub const MAX_ITEM_ID_LEN: usize = 64;

/// Why a body is malformed. The text is shown to operators and clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl Malformed {
    pub(crate) fn new(message: impl Into<String>) -> Malformed {
        Malformed(message.into())
    }
}

/// Checks that `value` is a valid item id and returns it.
pub fn item_id(value: Option<&Value>, field: &str) -> Result<String, Malformed> {
    match value {
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= MAX_ITEM_ID_LEN => {
            Ok(id.clone())
        }
        Some(Value::String(_)) => Err(Malformed::new(format!(
            "{field} must be a non-empty string of at most {MAX_ITEM_ID_LEN} characters"
        ))),
        None | Some(Value::Null) => Err(Malformed::new(format!("{field} is missing"))),
        Some(_) => Err(Malformed::new(format!("{field} must be a string"))),
    }
}

/// Reads an optional reference field: absent and `null` are `None`, a string is an id.
pub fn optional_reference(
    item: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, Malformed> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        value => item_id(value, field).map(Some),
    }
}

/// Validates the interpreted fields of an item body (a create or an update patch):
/// - `x` and `y` must be finite numbers when present;
/// - `z`, `width`, `height`, `resizeWidth` and `resizeHeight` must be finite numbers or `null`
///   ("not set": real data has `resizeWidth: null`);
/// - `isRemoved` must be a boolean and `name` a string.
///
/// One pass over the item's own fields, not a lookup per interpreted field: each lookup was a
/// search of the item's map comparing strings, ten per item, on every op. When several fields
/// are wrong, the one reported is the first in the list above, whatever the order of the body.
pub fn item_fields(item: &Map<String, Value>) -> Result<(), Malformed> {
    item_id(item.get("id"), "id")?;
    let mut first: Option<(u8, Malformed)> = None;
    for (field, value) in item {
        let (rank, problem) = match field.as_str() {
            "x" => (0, finite_number(value, "x", false)),
            "y" => (1, finite_number(value, "y", false)),
            "z" => (2, finite_number(value, "z", true)),
            "width" => (3, finite_number(value, "width", true)),
            "height" => (4, finite_number(value, "height", true)),
            "resizeWidth" => (5, finite_number(value, "resizeWidth", true)),
            "resizeHeight" => (6, finite_number(value, "resizeHeight", true)),
            "isRemoved" => (
                7,
                (!value.is_boolean()).then(|| Malformed::new("isRemoved must be a boolean")),
            ),
            "name" => (
                8,
                (!value.is_string()).then(|| Malformed::new("name must be a string")),
            ),
            _ => continue,
        };
        if let Some(problem) = problem
            && first.as_ref().is_none_or(|(known, _)| rank < *known)
        {
            first = Some((rank, problem));
        }
    }
    match first {
        Some((_, problem)) => Err(problem),
        None => Ok(()),
    }
}

/// What is wrong with a field that must be a finite number (or `null`, when `nullable`).
fn finite_number(value: &Value, field: &str, nullable: bool) -> Option<Malformed> {
    match value {
        Value::Number(number) if number.as_f64().is_some_and(f64::is_finite) => None,
        Value::Null if nullable => None,
        _ => Some(Malformed::new(format!("{field} must be a finite number"))),
    }
}

/// Validates a drawing stroke (a non-empty array of points with ids and coordinates) and
/// returns its id, the id of its first point.
pub fn stroke(points: &Value) -> Result<String, Malformed> {
    let Some(points) = points.as_array() else {
        return Err(Malformed::new(
            "a drawing stroke must be an array of points",
        ));
    };
    let Some(first) = points.first() else {
        return Err(Malformed::new(
            "a drawing stroke must have at least one point",
        ));
    };
    for point in points {
        let Some(point) = point.as_object() else {
            return Err(Malformed::new("a stroke point must be an object"));
        };
        item_fields(point)?;
    }
    item_id(first.get("id"), "stroke point id")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(item: Value, expected: Result<(), &str>) {
        let Value::Object(item) = item else {
            panic!("test items are objects")
        };
        let got = item_fields(&item).map_err(|Malformed(message)| message);
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(String::as_str),
            expected,
            "{item:?}"
        );
    }

    #[test]
    fn interpreted_fields() {
        check(json!({"id": "a"}), Ok(()));
        check(
            json!({"id": "a", "x": 1, "y": -2.5, "z": null, "resizeWidth": null}),
            Ok(()),
        );
        check(json!({"id": "a", "unknown": {"deep": [1, "x"]}}), Ok(()));
        check(json!({"id": "a", "isRemoved": true, "name": ""}), Ok(()));
        check(json!({}), Err("id is missing"));
        check(json!({"id": null}), Err("id is missing"));
        check(json!({"id": 5}), Err("id must be a string"));
        check(
            json!({"id": ""}),
            Err("id must be a non-empty string of at most 64 characters"),
        );
        check(
            json!({"id": "x".repeat(65)}),
            Err("id must be a non-empty string of at most 64 characters"),
        );
        check(
            json!({"id": "a", "x": "left"}),
            Err("x must be a finite number"),
        );
        check(
            json!({"id": "a", "x": null}),
            Err("x must be a finite number"),
        );
        check(
            json!({"id": "a", "y": true}),
            Err("y must be a finite number"),
        );
        check(
            json!({"id": "a", "width": "10"}),
            Err("width must be a finite number"),
        );
        check(
            json!({"id": "a", "resizeHeight": []}),
            Err("resizeHeight must be a finite number"),
        );
        check(
            json!({"id": "a", "isRemoved": "yes"}),
            Err("isRemoved must be a boolean"),
        );
        check(json!({"id": "a", "name": 3}), Err("name must be a string"));
        // Several wrong fields: the first of x, y, z, width, height, resizeWidth,
        // resizeHeight, isRemoved, name is reported, whatever the order of the body.
        check(
            json!({"name": 3, "id": "a", "isRemoved": 1, "y": "top", "width": "w"}),
            Err("y must be a finite number"),
        );
        check(
            json!({"id": "a", "name": 3, "isRemoved": 1}),
            Err("isRemoved must be a boolean"),
        );
        check(json!({"x": "left"}), Err("id is missing"));
    }

    #[test]
    fn strokes() {
        fn check_stroke(points: Value, expected: Result<&str, &str>) {
            let got = stroke(&points).map_err(|Malformed(message)| message);
            assert_eq!(
                got.as_deref().map_err(String::as_str),
                expected,
                "{points:?}"
            );
        }
        check_stroke(
            json!([{"id": "p1", "x": 1, "y": 2}, {"id": "p2", "x": 2, "y": 3}]),
            Ok("p1"),
        );
        check_stroke(
            json!([]),
            Err("a drawing stroke must have at least one point"),
        );
        check_stroke(
            json!({"id": "p"}),
            Err("a drawing stroke must be an array of points"),
        );
        check_stroke(json!([3]), Err("a stroke point must be an object"));
        check_stroke(
            json!([{"id": "p", "x": "a"}]),
            Err("x must be a finite number"),
        );
    }
}
