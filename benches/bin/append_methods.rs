//! Which way of appending a batch of log rows is faster on this machine: one
//! `INSERT … SELECT FROM unnest(…)` or binary `COPY` (BRIEF §6, issue 3). `PgStore::append`
//! picks by batch size from this measurement (`COPY_THRESHOLD`).
//!
//! ```sh
//! cargo run --release -p spacesync-benches --bin append-methods
//! ```
//!
//! It creates a database of its own on `SPACESYNC_TEST_DATABASE_URL` (default: the local
//! server), commits batches one after another (each its own transaction, as the committer
//! does) with both methods, alternating, for several rounds, and prints the median rows/s of
//! each and their ratio as a Markdown table. The schema is the real one (migrations applied).

use std::time::Instant;

use serde_json::json;
use spacesync_protocol::Operation;
use spacesync_store::{AppendMethod, NewLogEntry, PgStore};
use spacesync_testkit::TestDatabase;

const ROUNDS: usize = 5;
const BATCHES_PER_ROUND: usize = 200;

fn batch(space: &str, first_seq: u64, size: usize) -> Vec<NewLogEntry> {
    (0..size as u64)
        .map(|n| {
            let seq = first_seq + n;
            let operation_id = format!("{space}-op-{seq:012}");
            // A drag step, the commonest op.
            let op = Operation::new(
                "updateCard",
                json!({"operationId": operation_id, "spaceId": space, "userId": "user-0001",
                       "clientCreatedAt": 1_764_806_400_000u64 + seq, "id": "card-000000000000001",
                       "x": seq % 1000, "y": 200, "z": 3}),
            );
            NewLogEntry::of(
                space,
                seq,
                operation_id,
                Some("bench-client-0001".to_owned()),
                &op,
            )
        })
        .collect()
}

async fn rows_per_second(store: &PgStore, method: AppendMethod, space: &str, size: usize) -> f64 {
    let started = Instant::now();
    for n in 0..BATCHES_PER_ROUND {
        let entries = batch(space, (n * size) as u64 + 1, size);
        let outcome = store.append_with(&entries, method).await.expect("appends");
        assert!(outcome.poison.is_none());
    }
    (BATCHES_PER_ROUND * size) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(database) = TestDatabase::create("append_methods").await else {
        eprintln!("PostgreSQL is needed");
        std::process::exit(2);
    };
    let store = PgStore::connect(database.url(), 1).expect("pool");
    store.migrate().await.expect("migrates");

    println!(
        "| rows per commit | unnest rows/s (median of {ROUNDS}) | COPY rows/s | COPY / unnest |"
    );
    println!("|---:|---:|---:|---:|");
    for size in [1usize, 10, 32, 64, 100, 200, 400, 1000] {
        let mut unnest = Vec::new();
        let mut copy = Vec::new();
        for round in 0..ROUNDS {
            eprintln!("{size} rows per commit: round {}/{ROUNDS}", round + 1);
            let space = format!("u{size}-{round}");
            unnest.push(rows_per_second(&store, AppendMethod::Unnest, &space, size).await);
            let space = format!("c{size}-{round}");
            copy.push(rows_per_second(&store, AppendMethod::Copy, &space, size).await);
        }
        let (unnest, copy) = (median(unnest), median(copy));
        println!(
            "| {size} | {unnest:.0} | {copy:.0} | {:.2} |",
            copy / unnest
        );
    }
}
