//! The database stopped and restarted under a running server. This test runs a private
//! throwaway PostgreSQL cluster: it never stops the shared server other tests use.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use spacesync_protocol::{Format, ServerError};
use spacesync_server::ServerConfig;
use spacesync_testkit::Cluster;

#[tokio::test]
async fn the_database_stops_and_restarts_under_a_running_server() {
    let Some(cluster) = tokio::task::spawn_blocking(|| Cluster::start("outage"))
        .await
        .expect("starts the cluster")
    else {
        return;
    };
    let cluster = Arc::new(cluster);
    let url = cluster.url();
    let store = Arc::new(migrated_store(&url).await);
    let server = start(store, ServerConfig::default()).await;
    let address = server.local_addr();
    let ws = ws_url(&server);
    assert_eq!(http_get(address, "/readyz").await.0, 200);

    let mut alice = Member::join(&ws, Format::MessagePack, "alice", "o", None).await;
    alice.submit(vec![card("o1", "a"), card("o2", "b")]).await;
    alice.answered(&["o1", "o2"]).await;

    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .expect("stops");
    let (status, body) = http_get(address, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(http_get(address, "/healthz").await.0, 200);

    // Ops sent during the outage are not acknowledged; a space that cannot load says so.
    alice
        .submit(vec![connection("o3", "c", "a", "b"), card("o4", "d")])
        .await;
    let mut bob = Member::connect(&ws, Format::Json, "bob", "elsewhere").await;
    bob.client.join("elsewhere", None).await.expect("sends");
    bob.until(|member| !member.errors.is_empty()).await;
    assert_eq!(bob.errors[0].0, ServerError::SpaceUnavailable);

    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.start_server())
        .await
        .expect("starts again");
    // The retried commit goes through: acks with the next seqs, nothing lost.
    alice.answered(&["o3", "o4"]).await;
    assert_eq!(alice.acks["o3"], (3, false));
    assert_eq!(alice.acks["o4"], (4, false));
    assert!(alice.rejected.is_empty(), "{:?}", alice.rejected);
    assert!(
        server.metrics().commit_retries.get() >= 1,
        "the commit was retried while the database was down"
    );
    let ready = tokio::time::timeout(PATIENCE, async {
        while http_get(address, "/readyz").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "ready again after the database is back");
    let log = logged(&url, "o").await;
    assert_eq!(
        log.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        ["o1", "o2", "o3", "o4"]
    );
    // The space that could not load loads now.
    let bob = Member::join(&ws, Format::Json, "bob", "elsewhere", None).await;
    assert_eq!(bob.joined_seq, Some(0));
    assert!(server.shutdown().await.is_clean());
}
