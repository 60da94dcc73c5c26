//! The Kinopio-compatible HTTP API against a real PostgreSQL: `POST /operations` and
//! `GET /space/{id}`, as the Kinopio client uses them, including its real ordering bugs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use spacesync_core::kinopio::{creation_ops, normalized};
use spacesync_protocol::Format;
use spacesync_server::{Server, ServerConfig};
use spacesync_testkit::{TestDatabase, samples};

/// An op as the Kinopio client queues it: `{name, body}` with the envelope in the body.
fn kinopio(name: &str, operation_id: &str, space: &str, body: Value) -> Value {
    let mut body = body;
    body["operationId"] = json!(operation_id);
    body["spaceId"] = json!(space);
    body["userId"] = json!("user-1");
    body["clientCreatedAt"] = json!(1_764_806_400_000u64);
    json!({"name": name, "body": body})
}

fn card_op(operation_id: &str, space: &str, id: &str) -> Value {
    kinopio(
        "createCard",
        operation_id,
        space,
        json!({"id": id, "x": 1, "y": 2, "name": id}),
    )
}

fn connection_op(operation_id: &str, space: &str, id: &str, start: &str, end: &str) -> Value {
    kinopio(
        "createConnection",
        operation_id,
        space,
        json!({"id": id, "startItemId": start, "endItemId": end}),
    )
}

async fn server_on(database: &TestDatabase, config: ServerConfig) -> Server {
    let store = Arc::new(migrated_store(database.url()).await);
    start(store, config).await
}

/// `(operationId, seq)` of every landed op, in response order.
fn landed(response: &HttpResponse) -> Vec<(String, u64)> {
    response.json()["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|op| {
            (
                op["operationId"].as_str().unwrap_or_default().to_owned(),
                op["seq"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

async fn space_seq(address: std::net::SocketAddr, space: &str) -> u64 {
    let response = http(address, "GET", &format!("/space/{space}"), &[], b"").await;
    assert_eq!(response.status, 200);
    response
        .header("x-space-seq")
        .and_then(|seq| seq.parse().ok())
        .expect("X-Space-Seq")
}

#[tokio::test]
async fn every_sample_space_uploads_as_create_space_and_as_reversed_creates_and_downloads_identical()
 {
    let Some(samples) = samples() else { return };
    for (index, (path, file)) in samples.into_iter().enumerate() {
        let id = file["id"].as_str().expect("an id").to_owned();

        // As one createSpace.
        let Some(database) = TestDatabase::create(&format!("http_sample_whole_{index}")).await
        else {
            return;
        };
        let server = server_on(&database, ServerConfig::default()).await;
        let address = server.local_addr();
        let mut body = file.clone();
        body["operationId"] = json!(format!("import-{id}"));
        let response =
            post_operations(address, json!([{"name": "createSpace", "body": body}])).await;
        assert_eq!(response.status, 200, "{path}: {}", response.json());
        assert_eq!(landed(&response), [(format!("import-{id}"), 1)], "{path}");
        let download = http(address, "GET", &format!("/space/{id}"), &[], b"").await;
        assert_eq!(download.status, 200, "{path}");
        assert_eq!(
            download.json(),
            file,
            "{path}: downloaded exactly as the file"
        );
        assert_eq!(download.header("x-space-seq"), Some("1"));
        server.shutdown().await;
        drop(database);

        // As individual creates in reverse order, split over four concurrent requests. The
        // space is named next to each op: items copied from other spaces keep their own
        // `spaceId` field, which the download must preserve.
        let Some(database) = TestDatabase::create(&format!("http_sample_ops_{index}")).await else {
            return;
        };
        let server = server_on(&database, ServerConfig::default()).await;
        let address = server.local_addr();
        let ops: Vec<Value> = creation_ops(&file)
            .into_iter()
            .rev()
            .map(|op| {
                let mut value = serde_json::to_value(op).expect("op");
                value["spaceId"] = json!(id);
                value
            })
            .collect();
        let chunk = ops.len().div_ceil(4);
        let requests = ops
            .chunks(chunk)
            .map(|chunk| post_operations(address, Value::Array(chunk.to_vec())));
        let responses = futures::future::join_all(requests).await;
        let mut seqs: Vec<u64> = Vec::new();
        for response in &responses {
            assert_eq!(response.status, 200, "{path}: {}", response.json());
            seqs.extend(landed(response).into_iter().map(|(_, seq)| seq));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=ops.len() as u64).collect::<Vec<_>>(), "{path}");
        let download = http(address, "GET", &format!("/space/{id}"), &[], b"").await;
        assert_eq!(
            normalized(&download.json()),
            normalized(&file),
            "{path}: same space whatever the order"
        );
        assert_eq!(
            download.header("x-space-seq"),
            Some(ops.len().to_string().as_str()),
            "X-Space-Seq is the number of distinct ops accepted"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn the_brief_misorders_as_http_batches() {
    let Some(database) = TestDatabase::create("http_misorders").await else {
        return;
    };
    let server = server_on(&database, ServerConfig::default()).await;
    let address = server.local_addr();

    // A whole batch in reverse order, in one request.
    let response = post_operations(
        address,
        json!([
            kinopio("updateCard", "r4", "rev", json!({"id": "a", "x": 9})),
            connection_op("r3", "rev", "c", "a", "b"),
            card_op("r2", "rev", "b"),
            card_op("r1", "rev", "a"),
        ]),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.json());
    assert_eq!(space_seq(address, "rev").await, 4);

    // A connection queued before the card and box it joins, the items in a concurrent request.
    let (first, second) = tokio::join!(
        post_operations(
            address,
            json!([connection_op("d1", "drag", "c", "card", "box")])
        ),
        post_operations(
            address,
            json!([
                card_op("d2", "drag", "card"),
                kinopio(
                    "createBox",
                    "d3",
                    "drag",
                    json!({"id": "box", "x": 0, "y": 0})
                ),
            ])
        ),
    );
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(space_seq(address, "drag").await, 3);

    // An update merged ahead of its create; two overlapping batches, the dependency in the
    // second; a type created, removed, then used; parent deletes interleaved with removals.
    let (first, second) = tokio::join!(
        post_operations(
            address,
            json!([
                kinopio(
                    "updateCard",
                    "m1",
                    "mix",
                    json!({"id": "a", "name": "renamed"})
                ),
                card_op("m2", "mix", "a"),
                connection_op("m3", "mix", "c1", "a", "b"),
            ])
        ),
        post_operations(
            address,
            json!([
                connection_op("m3", "mix", "c1", "a", "b"),
                card_op("m4", "mix", "b"),
                kinopio("createConnectionType", "m5", "mix", json!({"id": "ct"})),
                kinopio("removeConnectionType", "m6", "mix", json!({"id": "ct"})),
                kinopio(
                    "createConnection",
                    "m7",
                    "mix",
                    json!({"id": "c2", "startItemId": "b", "endItemId": "a", "connectionTypeId": "ct"})
                ),
                kinopio("deleteCard", "m8", "mix", json!({"id": "a"})),
                kinopio("removeConnection", "m9", "mix", json!({"id": "c1"})),
            ])
        ),
    );
    assert_eq!(first.status, 200, "{}", first.json());
    assert_eq!(second.status, 200, "{}", second.json());
    let download = http(address, "GET", "/space/mix", &[], b"").await.json();
    assert_eq!(ids(&download, "cards"), ["b"]);
    assert!(ids(&download, "connections").is_empty());
    assert_eq!(space_seq(address, "mix").await, 9);
    server.shutdown().await;
}

#[tokio::test]
async fn a_mixed_batch_lands_the_good_ops_and_reports_each_failure() {
    let Some(database) = TestDatabase::create("http_mixed").await else {
        return;
    };
    let mut config = ServerConfig::default();
    config.space.hold_timeout_ms = 300;
    let server = server_on(&database, config).await;
    let address = server.local_addr();
    let response = post_operations(
        address,
        json!([
            card_op("good1", "mx", "a"),
            kinopio("teleportCard", "unknown", "mx", json!({"id": "a"})),
            kinopio("createCard", "malformed", "mx", json!({"id": "b", "x": "left", "y": 0})),
            connection_op("orphan", "mx", "c", "a", "never-arrives"),
            card_op("good2", "mx", "d"),
            {"body": {"operationId": "nameless"}},
            {"name": "createCard", "body": {"id": "e", "x": 0, "y": 0, "operationId": "spaceless"}},
        ]),
    )
    .await;
    assert_eq!(response.status, 400);
    let body = response.json();
    assert_eq!(
        landed(&response),
        [("good1".to_owned(), 1), ("good2".to_owned(), 2)]
    );
    let errors: Vec<(String, String, u64)> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| {
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
            (
                error["operationId"].as_str().unwrap_or("-").to_owned(),
                error["code"].as_str().unwrap_or_default().to_owned(),
                error["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("unknown".to_owned(), "unknown_operation".to_owned(), 400),
            (
                "malformed".to_owned(),
                "malformed_operation".to_owned(),
                400
            ),
            ("orphan".to_owned(), "dependency_timeout".to_owned(), 400),
            ("-".to_owned(), "malformed_operation".to_owned(), 400),
            (
                "spaceless".to_owned(),
                "malformed_operation".to_owned(),
                400
            ),
        ]
    );
    assert!(
        body["errors"][2]["message"]
            .as_str()
            .is_some_and(|message| message.contains("never-arrives"))
    );
    assert_eq!(body["errors"][0]["name"], json!("teleportCard"));
    assert_eq!(space_seq(address, "mx").await, 2);
    let quarantine: Vec<String> = quarantined(database.url(), "mx")
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(quarantine, ["malformed", "orphan", "unknown"]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_replayed_request_gets_the_same_seqs_and_changes_nothing_also_after_a_restart() {
    let Some(database) = TestDatabase::create("http_replay").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let config = ServerConfig {
        snapshot_every: 1,
        ..ServerConfig::default()
    };
    let request = json!([
        card_op("x1", "rp", "a"),
        card_op("x2", "rp", "b"),
        kinopio("updateCard", "x3", "rp", json!({"id": "a", "x": 42})),
        card_op("y1", "other", "a"),
    ]);
    let server = start(store.clone(), config.clone()).await;
    let first = post_operations(server.local_addr(), request.clone()).await;
    assert_eq!(first.status, 200);
    let seqs = landed(&first);
    assert_eq!(
        seqs,
        [
            ("x1".to_owned(), 1),
            ("x2".to_owned(), 2),
            ("x3".to_owned(), 3),
            ("y1".to_owned(), 1)
        ]
    );
    let again = post_operations(server.local_addr(), request.clone()).await;
    assert_eq!(again.status, 200);
    assert_eq!(landed(&again), seqs);
    assert!(
        again.json()["operations"]
            .as_array()
            .is_some_and(|ops| ops.iter().all(|op| op["duplicate"] == json!(true)))
    );
    assert!(server.shutdown().await.is_clean());

    let server = start(store, config).await;
    let after_restart = post_operations(server.local_addr(), request.clone()).await;
    assert_eq!(after_restart.status, 200, "{}", after_restart.json());
    assert_eq!(landed(&after_restart), seqs);
    assert_eq!(space_seq(server.local_addr(), "rp").await, 3);
    assert_eq!(logged(database.url(), "rp").await.len(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn ops_sent_over_http_are_broadcast_to_websocket_members_in_one_order() {
    let Some(database) = TestDatabase::create("http_broadcast").await else {
        return;
    };
    let server = server_on(&database, ServerConfig::default()).await;
    let address = server.local_addr();
    let url = ws_url(&server);
    let mut member = Member::join(&url, Format::MessagePack, "watcher", "bc", None).await;
    member.submit(vec![card("w1", "a")]).await;
    member.answered(&["w1"]).await;
    let response = post_operations(
        address,
        json!([
            connection_op("h2", "bc", "c", "a", "b"),
            card_op("h1", "bc", "b")
        ]),
    )
    .await;
    assert_eq!(response.status, 200);
    member.until(|member| member.seqs.len() == 3).await;
    member.assert_gapless(1, 3);
    let names: Vec<&str> = member
        .broadcasts
        .iter()
        .map(|(_, op)| op.name.as_str())
        .collect();
    assert_eq!(names, ["createCard", "createConnection"]);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_refused_whole_and_downloads_answer_404_and_304() {
    let Some(database) = TestDatabase::create("http_bad").await else {
        return;
    };
    let config = ServerConfig {
        max_http_body_bytes: 4 * 1024,
        ..ServerConfig::default()
    };
    let server = server_on(&database, config).await;
    let address = server.local_addr();
    let json_header = [("Content-Type", "application/json")];
    for (body, status) in [
        (&b"{not json"[..], 400),
        (&b"{\"name\":\"createCard\"}"[..], 400),
        (&b"\"a string\""[..], 400),
    ] {
        let response = http(address, "POST", "/operations", &json_header, body).await;
        assert_eq!(response.status, status);
        let body = response.json();
        assert_eq!(body["operations"], json!([]));
        assert_eq!(body["errors"][0]["status"], json!(status));
        assert_eq!(body["errors"][0]["code"], json!("invalid_request"));
    }
    let big = json!([kinopio(
        "createCard",
        "big",
        "bad",
        json!({"id": "a", "x": 0, "y": 0, "name": "x".repeat(8 * 1024)})
    )]);
    let response = post_operations(address, big).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["errors"][0]["code"], json!("too_large"));
    let unknown = http(address, "GET", "/space/nothing-here", &[], b"").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["status"], json!(404));
    // An id longer than any valid one is not echoed whole.
    let long = "x".repeat(5_000);
    let unknown = http(address, "GET", &format!("/space/{long}"), &[], b"").await;
    assert_eq!(unknown.status, 404);
    let message = unknown.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("xxx") && message.len() < 200, "{message}");
    assert_eq!(logged(database.url(), "bad").await, []);

    let response = post_operations(address, json!([card_op("e1", "etag", "a")])).await;
    assert_eq!(response.status, 200);
    let first = http(address, "GET", "/space/etag", &[], b"").await;
    let etag = first.header("etag").expect("ETag").to_owned();
    let again = http(
        address,
        "GET",
        "/space/etag",
        &[("If-None-Match", &etag)],
        b"",
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("x-space-seq"), Some("1"));
    let response = post_operations(address, json!([card_op("e2", "etag", "b")])).await;
    assert_eq!(response.status, 200);
    let changed = http(
        address,
        "GET",
        "/space/etag",
        &[("If-None-Match", &etag)],
        b"",
    )
    .await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert_eq!(changed.header("x-space-seq"), Some("2"));
    server.shutdown().await;
}

#[tokio::test]
async fn an_unavailable_store_answers_503_and_loses_nothing_acknowledged() {
    let Some(database) = TestDatabase::create("http_unavailable").await else {
        return;
    };
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (gate_tx, gate) = tokio::sync::watch::channel(true);
    let store = GatedStore {
        inner: migrated_store(database.url()).await,
        started: started_tx,
        gate,
    };
    let config = ServerConfig {
        http_answer_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    };
    let server = start(Arc::new(store), config).await;
    let address = server.local_addr();
    let response = post_operations(address, json!([card_op("u1", "un", "a")])).await;
    assert_eq!(response.status, 200);
    // The database stalls: the commit does not come back within the answer timeout.
    gate_tx.send(false).expect("closes the gate");
    let request = json!([card_op("u2", "un", "b"), card_op("u3", "un", "c")]);
    let response = post_operations(address, request.clone()).await;
    assert_eq!(response.status, 503);
    let body = response.json();
    assert_eq!(body["operations"], json!([]));
    assert!(body["errors"].as_array().is_some_and(|errors| {
        errors.len() == 2
            && errors.iter().all(|error| {
                error["status"] == json!(503) && error["code"] == json!("store_unavailable")
            })
    }));
    while started.try_recv().is_ok() {}
    gate_tx.send(true).expect("opens the gate");
    // Resending is safe: whatever landed meanwhile is a duplicate with its seq.
    let resent = post_operations(address, request.clone()).await;
    assert_eq!(resent.status, 200, "{}", resent.json());
    assert_eq!(
        landed(&resent),
        [("u2".to_owned(), 2), ("u3".to_owned(), 3)]
    );
    assert_eq!(logged(database.url(), "un").await.len(), 3);
    server.shutdown().await;
}
