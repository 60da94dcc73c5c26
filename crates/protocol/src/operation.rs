//! An operation as clients send it (`{name, body}`, the Kinopio shape) and its envelope: the
//! metadata fields (`operationId`, `spaceId`, `userId`, `clientCreatedAt`) that identify it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest `operationId` the server accepts. Kinopio sends 21-character nanoids; 64 leaves room
/// for other clients' UUIDs and prefixed ids while keeping the log's unique index small.
pub const MAX_OPERATION_ID_LEN: usize = 64;

/// One operation: the Kinopio client's `{name, body}`. `operationId` may also be given next to
/// `name` (the native protocol's preferred place); when it is absent it is read from the body.
///
/// The body is shared, not copied, when an op is cloned: the server keeps an op in several
/// places on its way (held, applied, logged, kept for resumes) and it is never changed after
/// decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub name: String,
    #[serde(default)]
    pub body: Arc<Value>,
    #[serde(
        rename = "operationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub operation_id: Option<String>,
}

/// The op metadata read from an operation. Only `operation_id` is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub operation_id: String,
    pub space_id: Option<String>,
    pub user_id: Option<String>,
    pub client_created_at: Option<Value>,
}

/// Why an operation's envelope cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("operationId is missing")]
    MissingOperationId,
    #[error(
        "operationId must be a non-empty string of at most {MAX_OPERATION_ID_LEN} characters, without control characters"
    )]
    InvalidOperationId,
    #[error("{0} must be a string")]
    InvalidField(&'static str),
}

impl Operation {
    /// Builds an operation with its id in the body, as the Kinopio client sends it.
    pub fn new(name: impl Into<String>, body: Value) -> Operation {
        Operation {
            name: name.into(),
            body: Arc::new(body),
            operation_id: None,
        }
    }

    /// Reads the envelope. Array-shaped bodies cannot carry fields (the Kinopio client's
    /// `body.operationId = …` is lost when an array is serialised), so for them the id is taken
    /// from next to `name` or, failing that, derived from the op's content: a retry of the same
    /// op then carries the same id, which is what idempotency needs.
    pub fn envelope(&self) -> Result<Envelope, EnvelopeError> {
        let (operation_id, space_id, user_id) = self.read_envelope()?;
        Ok(Envelope {
            operation_id,
            space_id: space_id.cloned(),
            user_id: user_id.cloned(),
            client_created_at: self
                .body
                .as_object()
                .and_then(|body| body.get("clientCreatedAt"))
                .cloned(),
        })
    }

    /// The op's id, with the envelope checked exactly as [`Operation::envelope`] checks it
    /// (same errors, same order) but without copying the other fields: what the server needs
    /// for every op.
    pub fn operation_id(&self) -> Result<String, EnvelopeError> {
        self.read_envelope()
            .map(|(operation_id, _, _)| operation_id)
    }

    /// The checked id, `spaceId` and `userId`, the last two borrowed.
    fn read_envelope(&self) -> Result<(String, Option<&String>, Option<&String>), EnvelopeError> {
        let body = self.body.as_object();
        let field = |name: &'static str| -> Result<Option<&String>, EnvelopeError> {
            match body.and_then(|body| body.get(name)) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(value)) => Ok(Some(value)),
                Some(_) => Err(EnvelopeError::InvalidField(name)),
            }
        };
        let operation_id = match (&self.operation_id, field("operationId")?) {
            (Some(id), _) => id.clone(),
            (None, Some(id)) => id.clone(),
            (None, None) if self.body.is_array() => self.content_id(),
            (None, None) => return Err(EnvelopeError::MissingOperationId),
        };
        if operation_id.is_empty()
            || operation_id.chars().count() > MAX_OPERATION_ID_LEN
            || operation_id.chars().any(char::is_control)
        {
            return Err(EnvelopeError::InvalidOperationId);
        }
        Ok((operation_id, field("spaceId")?, field("userId")?))
    }

    /// A stable id derived from the op's name and body (FNV-1a over the canonical JSON, whose
    /// object keys are sorted). Used only for ops that arrive without an id.
    fn content_id(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let canonical = serde_json::to_string(&self.body).unwrap_or_default();
        for byte in self.name.bytes().chain([0]).chain(canonical.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("content:{hash:016x}")
    }
}

/// An operation as the JSON the log stores (`{"name", "body", "operationId"?}`), made once when
/// the op is applied: the same text is written to the log and kept in the server's resume
/// window, where it takes several times less memory than the decoded tree (the server's peak
/// memory halved; docs/benchmarks.md, "Memory of busy spaces").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpJson(Arc<str>);

impl OpJson {
    /// Serialises `op`. An op decoded from a client always serialises (its maps have string
    /// keys); were one not to, the text is empty and the store refuses it like any bad row.
    pub fn of(op: &Operation) -> OpJson {
        thread_local! {
            /// Serialised into a buffer kept per thread, then copied once to its exact size.
            static BUFFER: std::cell::RefCell<Vec<u8>> =
                std::cell::RefCell::new(Vec::with_capacity(1024));
        }
        BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            let text = match serde_json::to_writer(&mut *buffer, op) {
                Ok(()) => std::str::from_utf8(buffer).unwrap_or_default(),
                Err(_) => "",
            };
            let json = OpJson(Arc::from(text));
            // One huge op must not pin its size in every thread's buffer for good.
            if buffer.capacity() > 64 * 1024 {
                *buffer = Vec::with_capacity(1024);
            }
            json
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The operation back from its JSON.
    pub fn decode(&self) -> Result<Operation, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// An op's JSON as read back from a log: the op decoded from it, and the text kept as it is.
    pub fn parse(text: &str) -> Result<(Operation, OpJson), serde_json::Error> {
        let op = serde_json::from_str(text)?;
        Ok((op, OpJson(Arc::from(text))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(op: Operation, expected: Result<&str, EnvelopeError>) {
        let got = op.envelope().map(|envelope| envelope.operation_id);
        assert_eq!(got.as_deref().map_err(Clone::clone), expected, "{op:?}");
        assert_eq!(
            op.operation_id().as_deref().map_err(Clone::clone),
            expected,
            "{op:?}"
        );
    }

    #[test]
    fn operation_ids_come_from_the_top_level_then_the_body() {
        check(
            Operation::new("updateCard", json!({"operationId": "abc", "id": "1"})),
            Ok("abc"),
        );
        let mut op = Operation::new("updateCard", json!({"operationId": "body", "id": "1"}));
        op.operation_id = Some("top".into());
        check(op, Ok("top"));
        check(
            Operation::new("updateCard", json!({"id": "1"})),
            Err(EnvelopeError::MissingOperationId),
        );
        check(
            Operation::new("updateCard", json!({"operationId": "", "id": "1"})),
            Err(EnvelopeError::InvalidOperationId),
        );
        check(
            Operation::new("updateCard", json!({"operationId": "x".repeat(65)})),
            Err(EnvelopeError::InvalidOperationId),
        );
        check(
            Operation::new("updateCard", json!({"operationId": 7})),
            Err(EnvelopeError::InvalidField("operationId")),
        );
        check(
            Operation::new("updateCard", json!("text")),
            Err(EnvelopeError::MissingOperationId),
        );
    }

    #[test]
    fn array_bodies_get_a_stable_content_id() {
        let first = Operation::new("removeCard", json!([{"id": "a"}, {"id": "b"}]));
        let again = Operation::new("removeCard", json!([{"id": "a"}, {"id": "b"}]));
        let other = Operation::new("removeCard", json!([{"id": "a"}]));
        let id = first.envelope().map(|e| e.operation_id);
        assert_eq!(id, again.envelope().map(|e| e.operation_id));
        assert_ne!(id, other.envelope().map(|e| e.operation_id));
        assert!(id.is_ok_and(|id| id.starts_with("content:")));
    }

    #[test]
    fn envelope_reads_metadata_fields() {
        let op = Operation::new(
            "createCard",
            json!({"operationId": "o", "spaceId": "s", "userId": "u", "clientCreatedAt": 5}),
        );
        assert_eq!(
            op.envelope(),
            Ok(Envelope {
                operation_id: "o".into(),
                space_id: Some("s".into()),
                user_id: Some("u".into()),
                client_created_at: Some(json!(5)),
            })
        );
        let op = Operation::new("createCard", json!({"operationId": "o", "spaceId": 1}));
        assert_eq!(op.envelope(), Err(EnvelopeError::InvalidField("spaceId")));
        assert_eq!(
            op.operation_id(),
            Err(EnvelopeError::InvalidField("spaceId"))
        );
        let op = Operation::new("createCard", json!({"operationId": "o", "userId": ["u"]}));
        assert_eq!(
            op.operation_id(),
            Err(EnvelopeError::InvalidField("userId"))
        );
    }

    #[test]
    fn an_op_comes_back_from_its_json() {
        let mut op = Operation::new(
            "updateCard",
            json!({"operationId": "o", "id": "c", "x": 1.5}),
        );
        let json = OpJson::of(&op);
        assert_eq!(json.decode().ok(), Some(op.clone()));
        op.operation_id = Some("top".into());
        let json = OpJson::of(&op);
        assert!(json.as_str().contains(r#""operationId":"top""#));
        assert_eq!(json.decode().ok(), Some(op.clone()));
        // Read back from a log that formats JSON its own way (PostgreSQL's jsonb adds spaces).
        let spaced = r#"{"body": {"id": "c", "x": 1.5, "operationId": "o"}, "name": "updateCard", "operationId": "top"}"#;
        let (parsed, kept) = OpJson::parse(spaced).expect("parses");
        assert_eq!(parsed, op);
        assert_eq!((kept.as_str(), kept.decode().ok()), (spaced, Some(op)));
        assert!(OpJson::parse("{\"name\": 1}").is_err());
    }
}
