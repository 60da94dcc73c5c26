//! How long reading a space's log tail takes: the part of loading a space that grows with the
//! ops since its last snapshot (up to `snapshot_every`, 1,000 by default).
//!
//! ```sh
//! cargo run --release -p spacesync-benches --bin tail
//! ```
//!
//! On a database of its own (`SPACESYNC_TEST_DATABASE_URL`, default the local server): a space
//! with 999 logged ops and no snapshot (a card create, then drags of it with the envelope the
//! Kinopio client sends), read with `PgStore::load` 50 times after 5 warm-up reads. Prints the
//! median and p95 in milliseconds as JSON.

/// The same allocator as the `spacesync` binary, so the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use serde_json::json;
use spacesync_protocol::Operation;
use spacesync_store::{NewLogEntry, PgStore};
use spacesync_testkit::TestDatabase;

const OPS: u64 = 999;
const READS: usize = 50;

fn op(space: &str, seq: u64) -> Operation {
    let envelope = json!({"operationId": format!("op-{seq:06}"), "spaceId": space,
                          "userId": "user-0001", "clientCreatedAt": 1_764_806_400_000u64 + seq});
    let mut body = if seq == 1 {
        json!({"id": "card-1", "x": 10, "y": 20, "z": 1, "name": "a card", "frameId": 0})
    } else {
        json!({"id": "card-1", "x": seq % 1000, "y": 200})
    };
    if let (Some(body), Some(envelope)) = (body.as_object_mut(), envelope.as_object()) {
        body.extend(envelope.clone());
    }
    Operation::new(if seq == 1 { "createCard" } else { "updateCard" }, body)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(database) = TestDatabase::create("tail_read").await else {
        eprintln!("PostgreSQL is needed");
        std::process::exit(2);
    };
    let store = PgStore::connect(database.url(), 1).expect("pool");
    store.migrate().await.expect("migrates");
    let space = "tail-space";
    let entries: Vec<NewLogEntry> = (1..=OPS)
        .map(|seq| NewLogEntry::of(space, seq, format!("op-{seq:06}"), None, &op(space, seq)))
        .collect();
    assert!(
        store
            .append(&entries)
            .await
            .expect("appends")
            .poison
            .is_none()
    );
    let mut times = Vec::new();
    for read in 0..READS + 5 {
        let started = Instant::now();
        let loaded = store.load(space).await.expect("loads");
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        assert_eq!(loaded.tail.len() as u64, OPS);
        if read >= 5 {
            times.push(elapsed);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        json!({"tail_ops": OPS, "reads": READS, "p50_ms": at(0.5), "p95_ms": at(0.95)})
    );
}
