//! The `spacesync` binary: serve, migrate, doctor and quarantine, driven as an operator would.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::json;
use spacesync_protocol::Format;
use spacesync_testkit::{ServerProcess, TestDatabase, execute, query_i64};

fn spacesync() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spacesync"));
    command.env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    command
}

fn run(args: &[&str], database: &str) -> (i32, String, String) {
    let output = spacesync()
        .args(args)
        .env("DATABASE_URL", database)
        .output()
        .expect("runs spacesync");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn serve(database: &str, extra: &[&str]) -> ServerProcess {
    let mut command = spacesync();
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database,
        ])
        .args(extra)
        .stdout(Stdio::null());
    ServerProcess::spawn(command)
}

const INDEXES: &str = "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'";
const TABLES: &str = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_schema_that_is_behind_and_changes_nothing() {
    let Some(database) = TestDatabase::create("cli_behind").await else {
        return;
    };
    let (code, _, stderr) = run(&["serve", "--listen", "127.0.0.1:0"], database.url());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("spacesync migrate"), "{stderr}");
    assert_eq!(
        query_i64(database.url(), TABLES).await,
        0,
        "serve created nothing"
    );
    // A database URL that is not one says so and exits 2.
    let (code, _, stderr) = run(&["doctor"], "host=127.0.0.1 port=notaport");
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_boots_leave_the_schema_and_its_indexes_unchanged() {
    let Some(database) = TestDatabase::create("cli_thirty_boots").await else {
        return;
    };
    let url = database.url().to_owned();
    // The first boot migrates (explicitly); it serves a client and shuts down cleanly.
    let serving = serve(&url, &["--migrate"]);
    let (status, body) = http_get(serving.address, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ws = format!("ws://{}/ws", serving.address);
    let mut alice = Member::join(&ws, Format::Json, "alice", "boots", None).await;
    alice.submit(vec![card("b1", "a")]).await;
    alice.answered(&["b1"]).await;
    let indexes = query_i64(&url, INDEXES).await;
    let tables = query_i64(&url, TABLES).await;
    assert!(indexes >= 4, "{indexes}");
    let code = tokio::task::spawn_blocking(move || serving.terminate())
        .await
        .expect("terminates");
    assert_eq!(code, 0, "SIGTERM exits 0");
    assert_eq!(alice.close_code().await, 1001);

    for boot in 1..30 {
        let serving = serve(&url, &[]);
        let (status, body) = http_get(serving.address, "/readyz").await;
        assert_eq!(status, 200, "boot {boot}: {body}");
        let code = tokio::task::spawn_blocking(move || serving.terminate())
            .await
            .expect("terminates");
        assert_eq!(code, 0, "boot {boot}");
        assert_eq!(query_i64(&url, INDEXES).await, indexes, "boot {boot}");
    }
    assert_eq!(query_i64(&url, TABLES).await, tables);
    let (code, stdout, _) = run(&["doctor"], &url);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("schema is clean"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_flags_a_hand_added_duplicate_index() {
    let Some(database) = TestDatabase::create("cli_doctor").await else {
        return;
    };
    let (code, stdout, stderr) = run(&["migrate"], database.url());
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, _) = run(&["doctor"], database.url());
    assert_eq!(code, 0, "{stdout}");
    execute(
        database.url(),
        "CREATE UNIQUE INDEX op_log_by_operation ON op_log (space_id, operation_id)",
    )
    .await;
    let (code, stdout, _) = run(&["doctor"], database.url());
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("duplicate indexes"), "{stdout}");
    assert!(stdout.contains("op_log_by_operation"), "{stdout}");
    assert!(
        stdout.contains("extra index: op_log_by_operation"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_ops_are_listed_shown_released_and_dropped() {
    let Some(database) = TestDatabase::create("cli_quarantine").await else {
        return;
    };
    let url = database.url().to_owned();
    let store = migrated_store(&url).await;
    let waits = connection("q1", "c", "a", "b");
    store
        .quarantine(
            "qs",
            "q1",
            Some("alice"),
            &waits,
            "dependency_timeout",
            "waited for a, b",
        )
        .await
        .expect("quarantines");
    store
        .quarantine(
            "qs",
            "q2",
            Some("alice"),
            &card("q2", "a"),
            "internal_error",
            "a bug, since fixed",
        )
        .await
        .expect("quarantines");
    store
        .quarantine(
            "qs",
            "q3",
            None,
            &op("teleport", "q3", json!({})),
            "unknown_operation",
            "unknown",
        )
        .await
        .expect("quarantines");

    let (code, stdout, _) = run(&["quarantine", "list"], &url);
    assert_eq!(code, 0);
    for id in ["q1", "q2", "q3"] {
        assert!(stdout.contains(id), "{stdout}");
    }
    let (code, stdout, _) = run(&["quarantine", "list", "--json", "--space", "qs"], &url);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 3);
    let (code, stdout, _) = run(&["quarantine", "show", "qs", "q1"], &url);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(shown["code"], json!("dependency_timeout"));
    assert_eq!(shown["payload"]["body"]["startItemId"], json!("a"));

    // The connection still waits for its cards: not released.
    let (code, _, stderr) = run(&["quarantine", "release", "qs", "q1"], &url);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("still waits"), "{stderr}");
    // The card applies: released at seq 1, out of the quarantine, in the log.
    let (code, stdout, stderr) = run(&["quarantine", "release", "qs", "q2"], &url);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("seq 1"), "{stdout}");
    assert_eq!(logged(&url, "qs").await, [(1, "q2".to_owned())]);
    let (code, _, _) = run(&["quarantine", "drop", "qs", "q3"], &url);
    assert_eq!(code, 0);
    let (code, _, _) = run(&["quarantine", "drop", "qs", "q3"], &url);
    assert_eq!(code, 1, "already gone");
    let left: Vec<String> = quarantined(&url, "qs")
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(left, ["q1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_while_the_space_is_loaded_reaches_its_members_in_order() {
    let Some(database) = TestDatabase::create("cli_release_live").await else {
        return;
    };
    let url = database.url().to_owned();
    let store = std::sync::Arc::new(migrated_store(&url).await);
    let server = start(store.clone(), spacesync_server::ServerConfig::default()).await;
    let ws = ws_url(&server);
    let mut alice = Member::join(&ws, Format::Json, "alice", "live", None).await;
    let mut bob = Member::join(&ws, Format::MessagePack, "bob", "live", None).await;
    alice.submit(vec![card("l1", "a")]).await;
    alice.answered(&["l1"]).await;
    store
        .quarantine(
            "live",
            "l2",
            None,
            &card("l2", "b"),
            "internal_error",
            "since fixed",
        )
        .await
        .expect("quarantines");
    let (code, stdout, stderr) = run(&["quarantine", "release", "live", "l2"], &url);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("seq 2"), "{stdout}");
    // The server's next write finds seq 2 taken, reloads, relays the released op, goes on.
    alice.submit(vec![card("l3", "c")]).await;
    alice.answered(&["l3"]).await;
    assert_eq!(alice.acks["l3"], (3, false));
    alice.until(|member| member.seqs.len() == 3).await;
    alice.assert_gapless(1, 3);
    bob.until(|member| member.seqs.len() == 3).await;
    bob.assert_gapless(1, 3);
    let (seq, space) = download(&ws, "live").await;
    assert_eq!(seq, 3);
    assert_eq!(ids(&space, "cards"), ["a", "b", "c"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_serve_runs_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let spawn = |data: String| {
        let mut command = spacesync();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &data])
            .stdout(Stdio::null());
        let serving = ServerProcess::spawn(command);
        let store_line = serving.store_line.clone();
        (serving, store_line)
    };
    let (serving, store_line) = spawn(data_arg.clone());
    assert!(store_line.contains("embedded SQLite"), "{store_line}");
    assert!(store_line.contains("spacesync.db"), "{store_line}");
    let (status, body) = http_get(serving.address, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let response = post_operations(
        serving.address,
        json!([{"name": "createCard", "body": {"operationId": "o1", "spaceId": "s", "id": "a", "x": 0, "y": 0}}]),
    )
    .await;
    assert_eq!(response.status, 200);
    let code = tokio::task::spawn_blocking(move || serving.terminate())
        .await
        .expect("stops");
    assert_eq!(code, 0);

    // The data is there after a restart; doctor and quarantine work on the embedded store.
    let (serving, _) = spawn(data_arg.clone());
    let response = http(serving.address, "GET", "/space/s", &[], b"").await;
    assert_eq!(response.header("x-space-seq"), Some("1"));
    let code = tokio::task::spawn_blocking(move || serving.terminate())
        .await
        .expect("stops");
    assert_eq!(code, 0);
    let output = spacesync()
        .args(["doctor", "--data-dir", &data_arg])
        .output()
        .expect("runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let output = spacesync()
        .args(["quarantine", "list", "--data-dir", &data_arg])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("empty"));
}

#[test]
fn spacesync_load_runs_checks_and_prints_one_json_line() {
    let output = spacesync()
        .args([
            "load",
            "--spaces",
            "2",
            "--clients-per-space",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--poison",
            "0.05",
            "--misorder",
            "0.2",
            "--json",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().expect("a final line");
    let report: serde_json::Value = serde_json::from_str(line).expect("JSON");
    for field in [
        "acked_ops_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "fanout_per_s",
        "rejected",
        "lost",
        "duplicated",
        "diverged",
        "errors",
        "spaces",
        "clients_per_space",
        "duration_s",
        "warmup_s",
        "rate",
        "seed",
    ] {
        assert!(report.get(field).is_some(), "{field} missing in {line}");
    }
    assert_eq!(report["lost"], json!(0));
    assert_eq!(report["diverged"], json!(0));
    assert!(
        report["acked_ops_per_s"]
            .as_f64()
            .is_some_and(|rate| rate > 0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_limits_from_flags_and_announces_them() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut command = spacesync();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args([
            "--max-ops-per-batch",
            "7",
            "--max-message-bytes",
            "65536",
            "--hold-timeout",
            "750ms",
            // Accepted too (their effects are tested through the library's config).
            "--resume-window",
            "16",
            "--commit-concurrency",
            "3",
        ])
        .stdout(Stdio::null());
    let serving = ServerProcess::spawn(command);
    let client = spacesync_client::Client::connect(
        &format!("ws://{}/ws", serving.address),
        Format::Json,
        None,
    )
    .await
    .expect("connects");
    let limits = client.limits().expect("welcome has limits").clone();
    assert_eq!(
        (
            limits.max_ops_per_batch,
            limits.max_message_bytes,
            limits.hold_timeout_ms
        ),
        (7, 65_536, 750)
    );
    drop(client);
    let code = tokio::task::spawn_blocking(move || serving.terminate())
        .await
        .expect("stops");
    assert_eq!(code, 0);
}
