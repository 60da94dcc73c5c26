//! Boot time (BRIEF §7: ready in ≤ 1 s with 10,000 spaces stored; the same after 50 restarts,
//! and the schema unchanged).
//!
//! ```sh
//! cargo build --release --bin spacesync -p spacesync-server
//! cargo run --release -p spacesync-benches --bin boot -- 50
//! ```
//!
//! On a database of its own: migrate, store 10,000 spaces (3 ops each, and a snapshot for every
//! tenth), then start `target/release/spacesync serve` N times and measure from spawn to the
//! first `200` of `/readyz`, then SIGTERM and wait. Prints JSON with the median, p95 and max,
//! and the index count before and after.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use spacesync_store::PgStore;
use spacesync_testkit::{ServerProcess, TestDatabase, execute, query_i64};

fn ready(address: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: boot\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

#[tokio::main]
async fn main() {
    let boots: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let binary =
        std::env::var("SPACESYNC_BIN").unwrap_or_else(|_| "target/release/spacesync".to_owned());
    let Some(database) = TestDatabase::create("bench_boot").await else {
        std::process::exit(2);
    };
    let url = database.url().to_owned();
    PgStore::connect(&url, 2)
        .expect("pool")
        .migrate()
        .await
        .expect("migrates");
    execute(
        &url,
        "INSERT INTO op_log (space_id, seq, operation_id, name, payload) \
         SELECT 'space-' || s, n, 'op-' || s || '-' || n, 'createCard', \
                jsonb_build_object('name', 'createCard', 'body', jsonb_build_object('operationId', 'op-' || s || '-' || n, 'id', 'card-' || n, 'x', n, 'y', 0)) \
         FROM generate_series(1, 10000) AS s, generate_series(1, 3) AS n; \
         INSERT INTO snapshots (space_id, seq, format, data) \
         SELECT 'space-' || s, 3, 1, decode(repeat('00', 2048), 'hex') FROM generate_series(1, 10000, 10) AS s",
    )
    .await;
    let spaces = query_i64(&url, "SELECT count(DISTINCT space_id) FROM op_log").await;
    let indexes = query_i64(
        &url,
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'",
    )
    .await;
    let mut times = Vec::with_capacity(boots);
    for boot in 0..boots {
        let started = Instant::now();
        let mut command = Command::new(&binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
            .env("RUST_LOG", "warn");
        let server = ServerProcess::spawn(command);
        let address = server.address;
        while !ready(address) {
            std::thread::sleep(Duration::from_millis(2));
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let code = server.terminate();
        assert_eq!(code, 0, "boot {boot}");
        if (boot + 1) % 10 == 0 {
            eprintln!("{} boots", boot + 1);
        }
    }
    let indexes_after = query_i64(
        &url,
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'",
    )
    .await;
    let first = times[0];
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "spaces_stored": spaces, "boots": boots,
            "first_ms": first, "median_ms": times[times.len() / 2],
            "p95_ms": times[(times.len() * 95 / 100).min(times.len() - 1)],
            "max_ms": times[times.len() - 1],
            "indexes_before": indexes, "indexes_after": indexes_after,
        })
    );
}
