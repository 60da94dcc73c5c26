//! The server process is killed (SIGKILL: no shutdown, no flush) in the middle of a load run
//! and started again on the same port and store, on each store. Every op it acknowledged
//! before dying must be in the log after it; the clients reconnect, resume and resend what was
//! never answered; the checker finds nothing lost, duplicated or diverged.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use spacesync_load::LoadConfig;
use spacesync_load::workload::Faults;
use spacesync_testkit::{ServerProcess, TestDatabase, free_port};

/// `spacesync serve` on `port` with `store_args`, as its own process.
fn serve(port: u16, store_args: &[String]) -> ServerProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spacesync"));
    command
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(store_args)
        .stdout(Stdio::null());
    ServerProcess::spawn(command)
}

/// The server's count of accepted ops, from its `/metrics` (0 while it cannot be read).
async fn accepted(address: std::net::SocketAddr) -> f64 {
    let (_, metrics) = http_get(address, "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("spacesync_ops_accepted_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn killed_mid_run(name: &str, store_args: Vec<String>) {
    let port = free_port();
    let mut server = serve(port, &store_args);
    let address = server.address;
    let load = LoadConfig {
        server: format!("ws://{address}/ws"),
        spaces: 3,
        clients_per_space: 2,
        duration: Duration::from_secs(4),
        warmup: Duration::from_millis(200),
        seed: 5,
        faults: Faults {
            misorder: 0.2,
            duplicates: 0.05,
            poison: 0.0,
        },
        progress: false,
        run_id: format!("crash-{name}"),
        ..LoadConfig::default()
    };
    let run = tokio::spawn(spacesync_load::run(load));
    // Kill it once the run is under way, well before its end.
    let waited = tokio::time::timeout(PATIENCE, async {
        while accepted(address).await < 300.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{name}: the run never got going");
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaps the server");
    let again = serve(port, &store_args);
    assert_eq!(again.address, address);
    let report = run.await.expect("the run ends").expect("the run completes");
    eprintln!("{name}: {}", report.summary());
    assert!(report.is_clean(), "{name}: {}", report.summary());
    assert!(report.acked > 300, "{name}: {}", report.summary());
    assert_eq!(report.disconnects, 6, "{name}: every client came back once");
    assert_eq!(
        again.terminate(),
        0,
        "{name}: the second server stops cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_on_postgres_loses_nothing_it_acknowledged() {
    let Some(database) = TestDatabase::create("crash_postgres").await else {
        return;
    };
    let store = vec![
        "--database-url".to_owned(),
        database.url().to_owned(),
        "--migrate".to_owned(),
    ];
    killed_mid_run("postgres", store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_on_the_embedded_store_loses_nothing_it_acknowledged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = vec!["--data-dir".to_owned(), dir.path().display().to_string()];
    killed_mid_run("embedded", store).await;
}
