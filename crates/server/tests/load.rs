//! A short load run with every fault turned on (misordering, duplicate resends, poison ops,
//! reconnects with replay), against a server on each store, and the checker's verdict:
//! nothing lost, duplicated or diverged; exactly the poison ops quarantined. Timings are
//! printed, never asserted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use spacesync_load::LoadConfig;
use spacesync_load::workload::Faults;
use spacesync_server::ServerConfig;
use spacesync_store::{SqliteStore, Store};
use spacesync_testkit::TestDatabase;

async fn smoke(store: Arc<dyn Store>, name: &str) {
    let mut config = ServerConfig {
        // Small windows so reconnects also resume from the log and from snapshots, and the
        // checker reads logs far longer than the server resumes from, in many small pages.
        resume_window: 16,
        resume_from_log: 40,
        log_page: 64,
        snapshot_every: 50,
        ..ServerConfig::default()
    };
    // Few op ids in memory, so most duplicate resends are older than the space remembers:
    // the log recognises them, also those whose card has been deleted since.
    config.space.remember_ops = 64;
    let server = start(store.clone(), config).await;
    let load = LoadConfig {
        server: ws_url(&server),
        spaces: 3,
        clients_per_space: 3,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(300),
        rate: None,
        seed: 7,
        faults: Faults {
            misorder: 0.3,
            duplicates: 0.05,
            poison: 0.05,
        },
        reconnects: 0.03,
        progress: false,
        run_id: format!("smoke-{name}"),
        ..LoadConfig::default()
    };
    let report = spacesync_load::run(load.clone())
        .await
        .expect("the run completes");
    eprintln!("{name}: {}", report.summary());
    assert!(report.is_clean(), "{name}: {}", report.summary());
    assert!(
        report.acked > 100,
        "{name}: the run did work: {}",
        report.summary()
    );
    assert!(report.poison_sent > 0 && report.reconnects > 0 && report.duplicates_sent > 0);
    // The server's own ack latency over the window, read from its `/metrics`.
    let (Some(p50), Some(p99)) = (report.server_ack_p50_ms, report.server_ack_p99_ms) else {
        panic!("{name}: no server-side latency: {}", report.summary());
    };
    assert!(0.0 < p50 && p50 <= p99, "{name}: p50 {p50} p99 {p99}");
    // Every measured second's p99 is tracked without progress lines; the run's p99 cannot be
    // above the worst second's (at most 1% of each second is above it), up to HDR rounding.
    assert!(
        report.worst_second_p99_ms > 0.0 && report.worst_second_p99_ms * 1.01 >= report.p99_ms,
        "{name}: worst second {} vs p99 {}",
        report.worst_second_p99_ms,
        report.p99_ms
    );
    assert_eq!(
        report.rejected, report.poison_sent,
        "every poison op was rejected"
    );
    let mut quarantined = Vec::new();
    for index in 0..load.spaces {
        let space = format!("{}-s{index}", load.run_id);
        for entry in store
            .quarantine_list(Some(&space), 100_000)
            .await
            .expect("lists")
        {
            quarantined.push((entry.space_id, entry.operation_id));
        }
    }
    let mut expected = report.poison_ids.clone();
    quarantined.sort();
    expected.sort();
    assert_eq!(
        quarantined, expected,
        "exactly the poison ops are quarantined"
    );
    assert!(server.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_load_on_postgres_loses_nothing() {
    let Some(database) = TestDatabase::create("load_smoke").await else {
        return;
    };
    smoke(Arc::new(migrated_store(database.url()).await), "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_load_on_the_embedded_store_loses_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("opens");
    Store::migrate(&store).await.expect("migrates");
    smoke(Arc::new(store), "embedded").await;
}
