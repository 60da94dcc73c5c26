//! The whole server on the embedded store (SQLite): the same guarantees as on PostgreSQL, on a
//! machine with no database server. These tests need nothing but a temporary directory.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use spacesync_protocol::{Format, RejectCode};
use spacesync_server::ServerConfig;
use spacesync_store::{SqliteStore, Store};

async fn embedded(dir: &std::path::Path) -> Arc<SqliteStore> {
    let store = SqliteStore::open(dir).expect("opens");
    Store::migrate(&store).await.expect("migrates");
    Arc::new(store)
}

#[tokio::test]
async fn the_embedded_store_orders_acknowledges_recovers_and_replays() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = ServerConfig {
        snapshot_every: 3,
        fault: Some(Arc::new(|_: &str, op: &spacesync_protocol::Operation| {
            if op.body.get("explode").is_some() {
                panic!("injected fault");
            }
        })),
        ..ServerConfig::default()
    };
    let server = start(embedded(dir.path()).await, config.clone()).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::MessagePack, "alice", "e", None).await;
    let mut bob = Member::join(&url, Format::Json, "bob", "e", None).await;
    // A connection before its cards, across two connections.
    alice.submit(vec![connection("e3", "c", "a", "b")]).await;
    alice.until(|member| member.held.contains("e3")).await;
    bob.submit(vec![
        card("e1", "a"),
        op(
            "createCard",
            "boom",
            json!({"id": "x", "x": 0, "y": 0, "explode": true}),
        ),
        card("e2", "b"),
        op("teleportCard", "e4", json!({"id": "a"})),
    ])
    .await;
    alice.answered(&["e3"]).await;
    bob.answered(&["e1", "boom", "e2", "e4"]).await;
    assert_eq!(bob.rejected["boom"].0, RejectCode::InternalError);
    assert_eq!(bob.rejected["e4"].0, RejectCode::UnknownOperation);
    for member in [&mut alice, &mut bob] {
        member.until(|member| member.seqs.len() == 3).await;
        member.assert_gapless(1, 3);
    }
    assert!(server.shutdown().await.is_clean());

    // A restart on the same directory: replays from another client get their original seqs.
    let server = start(embedded(dir.path()).await, config).await;
    let url = ws_url(&server);
    let mut carol = Member::join(&url, Format::Json, "carol", "e", None).await;
    carol
        .submit(vec![
            card("e1", "a"),
            op("teleportCard", "e4", json!({"id": "a"})),
            card("e5", "d"),
        ])
        .await;
    carol.answered(&["e1", "e4", "e5"]).await;
    assert_eq!(carol.acks["e1"], (1, true));
    assert_eq!(carol.rejected["e4"].0, RejectCode::UnknownOperation);
    assert_eq!(carol.acks["e5"], (4, false));
    let response = http(server.local_addr(), "GET", "/space/e", &[], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-space-seq"), Some("4"));
    assert_eq!(ids(&response.json(), "cards"), ["a", "b", "d"]);
    let store = SqliteStore::open(dir.path()).expect("opens");
    let quarantine: Vec<(String, i32)> = store
        .quarantine_list(Some("e"), 10)
        .await
        .expect("lists")
        .into_iter()
        .map(|entry| (entry.operation_id, entry.attempts))
        .collect();
    assert!(
        quarantine.contains(&("boom".to_owned(), 1)),
        "{quarantine:?}"
    );
    assert!(quarantine.contains(&("e4".to_owned(), 2)), "{quarantine:?}");
    server.shutdown().await;
}
