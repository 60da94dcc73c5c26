//! The database stopped and restarted under a running server. This test runs a private
//! throwaway PostgreSQL cluster: it never stops the shared server other tests use.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use spacesync_protocol::{Format, ServerError};
use spacesync_server::{Server, ServerConfig};
use spacesync_testkit::Cluster;

/// A private cluster (`None` where the test cannot run one, outside CI) and a server on it.
async fn server_on_a_private_cluster(name: &'static str) -> Option<(Arc<Cluster>, String, Server)> {
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(name))
        .await
        .expect("starts the cluster")?;
    let cluster = Arc::new(cluster);
    let url = cluster.url();
    let store = Arc::new(migrated_store(&url).await);
    let server = start(store, ServerConfig::default()).await;
    Some((cluster, url, server))
}

#[tokio::test]
async fn the_database_stops_and_restarts_under_a_running_server() {
    let Some((cluster, url, server)) = server_on_a_private_cluster("outage").await else {
        return;
    };
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

/// A load run with every fault on while the database stops for a moment and comes back: the
/// server keeps retrying its commits, acknowledges nothing it has not written, and the run
/// ends with nothing lost, duplicated or diverged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_run_across_a_database_outage_loses_nothing() {
    let Some((cluster, url, server)) = server_on_a_private_cluster("outage_load").await else {
        return;
    };
    let load = spacesync_load::LoadConfig {
        server: ws_url(&server),
        spaces: 3,
        clients_per_space: 2,
        duration: Duration::from_secs(5),
        warmup: Duration::from_millis(200),
        seed: 13,
        faults: spacesync_load::workload::Faults {
            misorder: 0.2,
            duplicates: 0.05,
            poison: 0.05,
        },
        reconnects: 0.02,
        progress: false,
        run_id: "outage".to_owned(),
        ..spacesync_load::LoadConfig::default()
    };
    let run = tokio::spawn(spacesync_load::run(load));
    let got_going = tokio::time::timeout(PATIENCE, async {
        while logged(&url, "outage-s0").await.len() < 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(got_going.is_ok(), "the run never got going");
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .expect("stops");
    // Down until the server has tried and failed to commit, then back.
    let retried = tokio::time::timeout(PATIENCE, async {
        while server.metrics().commit_retries.get() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        retried.is_ok(),
        "no commit was retried while the database was down"
    );
    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.start_server())
        .await
        .expect("starts again");
    let report = run.await.expect("the run ends").expect("the run completes");
    eprintln!("outage: {}", report.summary());
    assert!(report.is_clean(), "{}", report.summary());
    assert!(
        report.acked > 100 && report.poison_sent > 0,
        "{}",
        report.summary()
    );
    assert!(server.shutdown().await.is_clean());
}
