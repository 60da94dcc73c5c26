//! Idle connections (BRIEF §7: 10,000 on one node, ≤ 30 KiB of server memory each).
//!
//! ```sh
//! cargo build --release --bin spacesync -p spacesync-server
//! bash -c 'ulimit -n 65536 && cargo run --release -p spacesync-benches --bin idle -- 10000'
//! ```
//!
//! Starts `target/release/spacesync serve` on a fresh embedded store as a child process, opens
//! N WebSocket connections that each say hello and join one of 100 spaces, and reads the
//! server's resident memory (VmRSS) before and after. Prints JSON.

use std::process::Command;
use std::time::{Duration, Instant};

use spacesync_client::Client;
use spacesync_protocol::{Format, ServerMessage};
use spacesync_testkit::ServerProcess;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let binary =
        std::env::var("SPACESYNC_BIN").unwrap_or_else(|_| "target/release/spacesync".to_owned());
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut command = Command::new(&binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn");
    let server = ServerProcess::spawn(command);
    let address = server.address;
    let url = format!("ws://{address}/ws");
    // Warm up: one connection and every space loaded, so the figure is per connection.
    let mut warm = Client::connect(&url, Format::MessagePack, Some("warm"))
        .await
        .expect("connects");
    for space in 0..100 {
        warm.join(&format!("idle-{space}"), None)
            .await
            .expect("joins");
        let _ = warm.recv().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.child.id();
    let before = rss_kib(pid);
    let started = Instant::now();
    let mut clients = Vec::with_capacity(count);
    for index in 0..count {
        let mut client = Client::connect(&url, Format::MessagePack, Some(&format!("idle-{index}")))
            .await
            .unwrap_or_else(|error| panic!("connection {index}: {error}"));
        client
            .join(&format!("idle-{}", index % 100), None)
            .await
            .expect("joins");
        match client.recv().await {
            Ok(ServerMessage::Joined { .. }) => {}
            other => panic!("connection {index}: {other:?}"),
        }
        clients.push(client);
        if (index + 1) % 1000 == 0 {
            eprintln!("{} connections open", index + 1);
        }
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per_connection = (after.saturating_sub(before)) as f64 / count as f64;
    println!(
        "{}",
        serde_json::json!({
            "connections": count, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": (per_connection * 100.0).round() / 100.0,
            "open_seconds": opened.as_secs_f64(),
        })
    );
    drop(clients);
    server.terminate();
}
