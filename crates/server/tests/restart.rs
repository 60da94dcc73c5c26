//! The server process stops in the middle of a load run and starts again on the same port and
//! store: killed (SIGKILL: no shutdown, no flush), on each store, and stopped gracefully
//! (SIGTERM, as in a deploy). Every op it acknowledged before stopping must be in the log
//! after it; the clients reconnect (with backoff while nothing listens), resume and resend
//! what was never answered; the checker finds nothing lost, duplicated or diverged.

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

/// How the first server stops.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Kill,
    Terminate,
}

async fn restarted_mid_run(name: &str, store_args: Vec<String>, stop: Stop) {
    let port = free_port();
    let server = serve(port, &store_args);
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
        run_id: format!("restart-{name}"),
        ..LoadConfig::default()
    };
    let run = tokio::spawn(spacesync_load::run(load));
    // Stop it once the run is under way, well before its end.
    let waited = tokio::time::timeout(PATIENCE, async {
        while accepted(address).await < 300.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{name}: the run never got going");
    match stop {
        Stop::Kill => {
            let mut child = server.child;
            child.kill().expect("SIGKILL");
            child.wait().expect("reaps the server");
        }
        Stop::Terminate => assert_eq!(server.terminate(), 0, "{name}: it stops cleanly"),
    }
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
    let Some(database) = TestDatabase::create("restart_killed").await else {
        return;
    };
    let store = vec![
        "--database-url".to_owned(),
        database.url().to_owned(),
        "--migrate".to_owned(),
    ];
    restarted_mid_run("postgres", store, Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_on_the_embedded_store_loses_nothing_it_acknowledged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = vec!["--data-dir".to_owned(), dir.path().display().to_string()];
    restarted_mid_run("embedded", store, Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_run_for_a_deploy_loses_nothing() {
    let Some(database) = TestDatabase::create("restart_terminated").await else {
        return;
    };
    let store = vec![
        "--database-url".to_owned(),
        database.url().to_owned(),
        "--migrate".to_owned(),
    ];
    restarted_mid_run("deploy", store, Stop::Terminate).await;
}
