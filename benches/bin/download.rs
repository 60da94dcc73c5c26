//! Space download, hot and cold (BRIEF §7: a 1,000-card + 1,000-connection space, p50 ≤ 3 ms
//! hot with the actor in memory, ≤ 25 ms cold from snapshot + tail).
//!
//! ```sh
//! cargo run --release -p spacesync-benches --bin download
//! ```
//!
//! On a database of its own on the local PostgreSQL: the synthetic `Shape::thousand()` space is
//! uploaded as one `createSpace`, snapshotted, and given a tail of 50 drags in the log. Hot:
//! 300 `GET /space/{id}` in a row from a loaded actor. Cold: 30 times, a running server whose
//! actor for the space has unloaded answers one `GET`, i.e. loads the snapshot, replays the
//! tail, exports and encodes. Client-side latency over loopback HTTP; medians and p95 printed
//! as JSON.

/// The same allocator as the `spacesync` binary, so the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use spacesync_core::synthetic::{Shape, space};
use spacesync_protocol::Operation;
use spacesync_server::{Server, ServerConfig};
use spacesync_store::{NewLogEntry, PgStore, Store};
use spacesync_testkit::TestDatabase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(address: std::net::SocketAddr, path: &str) -> (u16, usize) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("writes");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("reads");
    let status = String::from_utf8_lossy(&response[..12.min(response.len())])
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response.len())
}

async fn post(address: std::net::SocketAddr, body: &serde_json::Value) -> u16 {
    let body = serde_json::to_vec(body).expect("encodes");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    stream
        .write_all(
            format!(
                "POST /operations HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("writes");
    stream.write_all(&body).await.expect("writes");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("reads");
    String::from_utf8_lossy(&response[..12.min(response.len())])
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

async fn start(store: Arc<dyn Store>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    Server::start(ServerConfig::default(), store, listener).expect("starts")
}

fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let Some(database) = TestDatabase::create("bench_download").await else {
        eprintln!("PostgreSQL is needed");
        std::process::exit(2);
    };
    let pg = PgStore::connect(database.url(), 8).expect("pool");
    pg.migrate().await.expect("migrates");
    let store: Arc<dyn Store> = Arc::new(pg);
    let id = "bench-thousand";
    let mut file = space(id, Shape::thousand(), 42);
    file["operationId"] = json!("import");
    let cards = file["cards"].as_array().map_or(0, Vec::len);
    let connections = file["connections"].as_array().map_or(0, Vec::len);

    // Upload, then a graceful shutdown writes the snapshot at seq 1.
    let server = start(store.clone()).await;
    let status = post(
        server.local_addr(),
        &json!([{"name": "createSpace", "body": file}]),
    )
    .await;
    assert_eq!(status, 200, "upload");
    server.shutdown().await;
    // A tail of 50 drags after the snapshot, written straight to the log.
    let card = file["cards"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let tail: Vec<NewLogEntry> = (2..=51u64)
        .map(|seq| {
            NewLogEntry::of(
                id,
                seq,
                format!("drag-{seq}"),
                None,
                &Operation::new(
                    "updateCard",
                    json!({"operationId": format!("drag-{seq}"), "id": card, "x": seq, "y": 10}),
                ),
            )
        })
        .collect();
    assert!(store.append(&tail).await.expect("appends").poison.is_none());

    // Where a cold load's time goes, once, for the record.
    for _ in 0..3 {
        let started = Instant::now();
        let loaded = store.load(id).await.expect("loads");
        let fetched = started.elapsed();
        let snapshot = loaded.snapshot.expect("a snapshot");
        let bytes = snapshot.data.len();
        let decoded = spacesync_core::Snapshot::decode(&snapshot.data).expect("decodes");
        let decoded_at = started.elapsed();
        let mut restored = decoded.into_space(Default::default());
        for entry in &loaded.tail {
            restored.replay(entry.seq, &entry.op).expect("replays");
        }
        let replayed_at = started.elapsed();
        let json = serde_json::to_vec(&restored.state().to_kinopio()).expect("encodes");
        let exported_at = started.elapsed();
        eprintln!(
            "cold load parts: fetch {:.1} ms ({bytes} bytes snapshot), decode {:.1} ms, replay {:.1} ms, export+encode {:.1} ms ({} bytes)",
            fetched.as_secs_f64() * 1e3,
            (decoded_at - fetched).as_secs_f64() * 1e3,
            (replayed_at - decoded_at).as_secs_f64() * 1e3,
            (exported_at - replayed_at).as_secs_f64() * 1e3,
            json.len()
        );
    }
    let (admin, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    let path = format!("/space/{id}");

    // Cold: the server runs (its database pool is warm) but the space is not in memory: the
    // actor unloads after 20 ms idle. Its unload snapshot is removed each time, so every GET
    // loads the same snapshot + 50-op tail.
    let config = ServerConfig {
        unload_after: Duration::from_millis(20),
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let server = Server::start(config, store.clone(), listener).expect("starts");
    let _ = get(server.local_addr(), "/space/warm-the-pool").await;
    let mut cold = Vec::new();
    let mut size = 0;
    for round in 0..30 {
        eprint!("\rcold {}/30", round + 1);
        while server.loaded_spaces() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        admin
            .batch_execute(&format!(
                "DELETE FROM snapshots WHERE space_id = '{id}' AND seq > 1"
            ))
            .await
            .expect("resets the snapshot");
        let started = Instant::now();
        let (status, bytes) = get(server.local_addr(), &path).await;
        cold.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200);
        size = bytes;
    }
    eprintln!();
    server.shutdown().await;

    // Hot: the actor stays loaded.
    let server = start(store.clone()).await;
    let _ = get(server.local_addr(), &path).await;
    let mut hot = Vec::new();
    for round in 0..300 {
        if round % 50 == 0 {
            eprint!("\rhot {}/300", round + 1);
        }
        let started = Instant::now();
        let (status, _) = get(server.local_addr(), &path).await;
        hot.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200);
    }
    eprintln!();
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    println!(
        "{}",
        json!({
            "space": {"cards": cards, "connections": connections, "tail_ops": 50, "response_bytes": size},
            "hot_p50_ms": quantile(&mut hot, 0.5), "hot_p95_ms": quantile(&mut hot, 0.95),
            "cold_p50_ms": quantile(&mut cold, 0.5), "cold_p95_ms": quantile(&mut cold, 0.95),
            "hot_samples": hot.len(), "cold_samples": cold.len(),
        })
    );
}
