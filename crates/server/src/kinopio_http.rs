//! The Kinopio-compatible HTTP API (BRIEF §5): `POST /operations` takes the client's queue, a
//! JSON array of `{name, body}`, possibly for several spaces; `GET /space/{id}` returns a
//! space in the client's shape. Ops go through the same space actors as WebSocket ops, so
//! both share one order per space, and their broadcasts reach WebSocket members.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};
use spacesync_protocol::{Operation, RejectCode, Seq};
use tokio::sync::{Notify, oneshot};

use crate::actor::{ActorMsg, Answer, Download, Waiter};
use crate::connection::valid_id;
use crate::shared::{DispatchError, Shared};

/// The final answer to one op of a request.
#[derive(Debug, Clone)]
enum Result_ {
    Landed { seq: Seq, duplicate: bool },
    Refused { code: RejectCode, message: String },
}

/// The ops of one request that went to actors, and their answers as they arrive.
#[derive(Debug)]
pub struct HttpBatch {
    client_id: String,
    state: Mutex<BatchState>,
    done: Notify,
}

#[derive(Debug, Default)]
struct BatchState {
    /// (space, op id) → its answer, once known.
    answers: HashMap<(String, String), Option<Result_>>,
    remaining: usize,
}

impl HttpBatch {
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Records the final answer of an op (a `held` is not final and is ignored).
    pub fn answer(&self, space_id: &str, operation_id: &str, answer: Answer) {
        let result = match answer {
            Answer::Held { .. } => return,
            Answer::Ack { seq, duplicate } => Result_::Landed { seq, duplicate },
            Answer::Rejected { code, message } => Result_::Refused { code, message },
        };
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(slot) = state
            .answers
            .get_mut(&(space_id.to_owned(), operation_id.to_owned()))
            && slot.is_none()
        {
            *slot = Some(result);
            state.remaining = state.remaining.saturating_sub(1);
            if state.remaining == 0 {
                self.done.notify_one();
            }
        }
    }

    fn expect(&self, space_id: &str, operation_id: &str) {
        if let Ok(mut state) = self.state.lock() {
            let key = (space_id.to_owned(), operation_id.to_owned());
            if let std::collections::hash_map::Entry::Vacant(slot) = state.answers.entry(key) {
                slot.insert(None);
                state.remaining += 1;
            }
        }
    }

    fn result(&self, space_id: &str, operation_id: &str) -> Option<Result_> {
        self.state.lock().ok().and_then(|state| {
            state
                .answers
                .get(&(space_id.to_owned(), operation_id.to_owned()))
                .cloned()
                .flatten()
        })
    }

    fn remaining(&self) -> usize {
        self.state.lock().map_or(0, |state| state.remaining)
    }
}

/// One element of the request, as far as it could be read.
enum Item {
    /// Routed to a space actor.
    Sent {
        name: String,
        space_id: String,
        operation_id: String,
    },
    /// Refused before reaching a space.
    Refused {
        name: Option<String>,
        operation_id: Option<String>,
        status: u16,
        code: String,
        message: String,
    },
}

fn error_body(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({
            "operations": [],
            "errors": [{
                "status": status.as_u16(),
                "name": null,
                "operationId": null,
                "code": code,
                "message": message,
            }],
        })),
    )
        .into_response()
}

/// The space an op belongs to: `spaceId` next to `name` when given (the only place an array
/// body or an item copied from another space can say it), else `body.spaceId`, else for
/// `createSpace` the space's own `id`, else the `spaceId` of an array body's first element.
fn space_of(element: &Value, body: &Value, name: &str) -> Option<String> {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    text(element.get("spaceId"))
        .or_else(|| text(body.get("spaceId")))
        .or_else(|| {
            (name == "createSpace")
                .then(|| text(body.get("id")))
                .flatten()
        })
        .or_else(|| {
            text(
                body.as_array()
                    .and_then(|items| items.first())
                    .and_then(|first| first.get("spaceId")),
            )
        })
}

/// `POST /operations`.
pub async fn post_operations(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if shared.stop_reading.is_cancelled() {
        return error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            RejectCode::ShuttingDown.as_str(),
            "the server is shutting down; resend to another node".to_owned(),
        );
    }
    let limit = shared.config.max_http_body_bytes;
    let bytes: Bytes = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                RejectCode::TooLarge.as_str(),
                format!("the request body is over the limit of {limit} bytes; nothing was applied"),
            );
        }
    };
    let elements = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(elements)) => elements,
        Ok(_) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a JSON array of {name, body}; nothing was applied".to_owned(),
            );
        }
        Err(error) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the body is not JSON ({error}); nothing was applied"),
            );
        }
    };

    let client_id = elements
        .iter()
        .find_map(|element| element.get("body")?.get("userId")?.as_str())
        .map_or_else(|| "http".to_owned(), |user| format!("http:{user}"));
    let batch = Arc::new(HttpBatch {
        client_id,
        state: Mutex::new(BatchState::default()),
        done: Notify::new(),
    });
    let mut items = Vec::with_capacity(elements.len());
    // Ops per space, in request order; spaces in order of first appearance.
    let mut per_space: Vec<(String, Vec<Operation>)> = Vec::new();
    for element in elements {
        let name = element
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let refused = |code: &str, message: String, operation_id: Option<String>| Item::Refused {
            name: name.clone(),
            operation_id,
            status: 400,
            code: code.to_owned(),
            message,
        };
        let Some(op_name) = name.clone() else {
            items.push(refused(
                RejectCode::MalformedOperation.as_str(),
                "an op must be an object with a string name and a body".to_owned(),
                None,
            ));
            continue;
        };
        let body = element.get("body").cloned().unwrap_or(Value::Null);
        let operation = Operation {
            name: op_name.clone(),
            body: body.into(),
            operation_id: element
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let operation_id = match operation.operation_id() {
            Ok(operation_id) => operation_id,
            Err(error) => {
                items.push(refused(
                    RejectCode::InvalidOperationId.as_str(),
                    error.to_string(),
                    operation
                        .body
                        .get("operationId")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                ));
                continue;
            }
        };
        let Some(space_id) =
            space_of(&element, &operation.body, &op_name).filter(|id| valid_id(id))
        else {
            items.push(refused(
                RejectCode::MalformedOperation.as_str(),
                "the op names no valid spaceId (in its body, or next to its name)".to_owned(),
                Some(operation_id),
            ));
            continue;
        };
        batch.expect(&space_id, &operation_id);
        match per_space.iter_mut().find(|(id, _)| *id == space_id) {
            Some((_, ops)) => ops.push(operation),
            None => per_space.push((space_id.clone(), vec![operation])),
        }
        items.push(Item::Sent {
            name: op_name,
            space_id,
            operation_id,
        });
    }

    for (space_id, ops) in per_space {
        let msg = ActorMsg::Submit {
            waiter: Waiter::Http(batch.clone()),
            ops,
            received: tokio::time::Instant::now(),
        };
        if let Err(error) = shared.dispatch(&space_id, msg) {
            let (code, msg) = match error {
                DispatchError::Overloaded(msg) => (RejectCode::Overloaded, msg),
                DispatchError::ShuttingDown(msg) => (RejectCode::ShuttingDown, msg),
            };
            if let ActorMsg::Submit { ops, .. } = msg {
                for op in ops {
                    if let Ok(operation_id) = op.operation_id() {
                        batch.answer(
                            &space_id,
                            &operation_id,
                            Answer::Rejected {
                                code,
                                message: "not applied; resend with backoff".to_owned(),
                            },
                        );
                    }
                }
            }
        }
    }

    // Every op is answered when it lands or is refused; a held op may wait up to the hold
    // timeout for a dependency from another request. What is still unanswered after the
    // answer timeout (the store is down) is reported 503: resending is safe, replays are
    // idempotent.
    let deadline = tokio::time::Instant::now() + shared.config.http_answer_timeout;
    while batch.remaining() > 0 {
        let notified = batch.done.notified();
        if batch.remaining() == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break;
        }
    }

    let mut operations = Vec::new();
    let mut errors = Vec::new();
    for item in items {
        match item {
            Item::Refused {
                name,
                operation_id,
                status,
                code,
                message,
            } => errors.push(json!({
                "status": status, "name": name, "operationId": operation_id,
                "code": code, "message": message,
            })),
            Item::Sent {
                name,
                space_id,
                operation_id,
            } => match batch.result(&space_id, &operation_id) {
                Some(Result_::Landed { seq, duplicate }) => operations.push(json!({
                    "name": name, "operationId": operation_id, "spaceId": space_id,
                    "seq": seq, "duplicate": duplicate,
                })),
                Some(Result_::Refused { code, message }) => errors.push(json!({
                    "status": if code.is_permanent() { 400 } else { 503 },
                    "name": name, "operationId": operation_id, "spaceId": space_id,
                    "code": code, "message": message,
                })),
                None => errors.push(json!({
                    "status": 503, "name": name, "operationId": operation_id, "spaceId": space_id,
                    "code": RejectCode::StoreUnavailable,
                    "message": format!(
                        "not acknowledged within {} ms (the store is unavailable or slow); resend: replays are idempotent",
                        shared.config.http_answer_timeout.as_millis()
                    ),
                })),
            },
        }
    }
    let status = if errors.iter().any(|error| error["status"] == json!(503)) {
        StatusCode::SERVICE_UNAVAILABLE
    } else if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        Json(json!({"operations": operations, "errors": errors})),
    )
        .into_response()
}

/// `GET /space/{id}`.
pub async fn get_space(
    State(shared): State<Arc<Shared>>,
    Path(space_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !valid_id(&space_id) {
        return not_found(&space_id);
    }
    let (reply, answer) = oneshot::channel();
    if shared
        .dispatch(&space_id, ActorMsg::Download { reply })
        .is_err()
    {
        return unavailable("the space is busy or the server is stopping; retry");
    }
    let download: Option<Download> =
        match tokio::time::timeout(Duration::from_secs(30), answer).await {
            Ok(Ok(Ok(download))) => download,
            Ok(Ok(Err(reason))) => {
                return unavailable(&format!("the space cannot be loaded right now: {reason}"));
            }
            _ => return unavailable("the space cannot be loaded right now; retry"),
        };
    let Some(download) = download else {
        return not_found(&space_id);
    };
    let etag = format!("\"{}\"", download.seq);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.split(',').any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == etag
            })
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(download.json));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert("x-space-seq", HeaderValue::from(download.seq));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn not_found(space_id: &str) -> Response {
    // The id as asked, cut to the longest a valid one can be (any length can be asked).
    let shown = crate::connection::shorten(space_id);
    (
        StatusCode::NOT_FOUND,
        Json(json!({"status": 404, "code": "space_not_found", "message": format!("no space {shown:?}")})),
    )
        .into_response()
}

fn unavailable(message: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": 503, "code": "space_unavailable", "message": message})),
    )
        .into_response()
}
