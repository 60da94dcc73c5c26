//! The whole server against a real PostgreSQL: clients over WebSockets, ops through actors and
//! the group committer into the log. Each test has a database of its own.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use spacesync_client::{Client, ClientError};
use spacesync_protocol::{ClientMessage, Format, Operation, RejectCode, Seq, ServerError};
use spacesync_server::ServerConfig;
use spacesync_testkit::TestDatabase;

/// One step of a scenario: which client submits which ops, and which of them must be held
/// before the next step (so the misorder really reaches the server in that order).
struct Step {
    client: usize,
    ops: Vec<Operation>,
    held: Vec<&'static str>,
}

fn step(client: usize, ops: Vec<Operation>, held: &[&'static str]) -> Step {
    Step {
        client,
        ops,
        held: held.to_vec(),
    }
}

/// Runs a scenario over two connections (one MessagePack, one JSON) and checks that every op
/// was acknowledged, that both clients saw every seq exactly once and in order, and returns
/// the downloaded space.
async fn run_scenario(url: &str, space: &str, steps: Vec<Step>) -> serde_json::Value {
    let mut members = [
        Member::join(url, Format::MessagePack, "alice", space, None).await,
        Member::join(url, Format::Json, "bob", space, None).await,
    ];
    let mut mine: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut total = 0;
    for step in steps {
        let member = &mut members[step.client];
        for op in &step.ops {
            let id = op.envelope().expect("test ops have ids").operation_id;
            if !mine[step.client].contains(&id) {
                mine[step.client].push(id);
                total += 1;
            }
        }
        member.submit(step.ops).await;
        let held: Vec<String> = step.held.iter().map(|id| (*id).to_owned()).collect();
        member
            .until(move |member| held.iter().all(|id| member.held.contains(id)))
            .await;
    }
    for (index, member) in members.iter_mut().enumerate() {
        let ids: Vec<&str> = mine[index].iter().map(String::as_str).collect();
        member.answered(&ids).await;
        assert!(member.rejected.is_empty(), "{:?}", member.rejected);
        member
            .until(|member| member.seqs.len() as u64 >= total)
            .await;
        member.assert_gapless(1, total);
    }
    let (seq, snapshot) = download(url, space).await;
    assert_eq!(seq, total);
    snapshot
}

#[tokio::test]
async fn misorders_across_two_connections_are_ordered_by_the_server() {
    let Some(database) = TestDatabase::create("server_misorders").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let server = start(store, ServerConfig::default()).await;
    let url = ws_url(&server);

    // A whole batch in reverse order, split over two connections.
    let space = run_scenario(
        &url,
        "reverse",
        vec![
            step(
                0,
                vec![
                    op("updateCard", "r5", json!({"id": "a", "x": 99})),
                    connection("r4", "c", "a", "b"),
                ],
                &["r5", "r4"],
            ),
            step(1, vec![card("r3", "b"), card("r2", "a")], &[]),
        ],
    )
    .await;
    assert_eq!(ids(&space, "cards"), ["a", "b"]);
    assert_eq!(ids(&space, "connections"), ["c"]);

    // A connection queued before the card and the box it joins.
    let space = run_scenario(
        &url,
        "drag",
        vec![
            step(0, vec![connection("d1", "c", "card", "box")], &["d1"]),
            step(
                1,
                vec![
                    card("d2", "card"),
                    op("createBox", "d3", json!({"id": "box", "x": 0, "y": 0})),
                ],
                &[],
            ),
        ],
    )
    .await;
    assert_eq!(ids(&space, "boxes"), ["box"]);
    assert_eq!(ids(&space, "connections"), ["c"]);

    // An update merged into an earlier queue slot, ahead of its create.
    let space = run_scenario(
        &url,
        "merged",
        vec![
            step(
                0,
                vec![op(
                    "updateCard",
                    "m1",
                    json!({"id": "a", "x": 50, "name": "renamed"}),
                )],
                &["m1"],
            ),
            step(1, vec![card("m2", "a")], &[]),
        ],
    )
    .await;
    assert_eq!(space["cards"][0]["name"], json!("renamed"));

    // Two overlapping batches from one client, the dependency in the second; the other
    // client's op on the same connection waits behind.
    let space = run_scenario(
        &url,
        "overlap",
        vec![
            step(
                0,
                vec![card("o1", "a"), connection("o2", "c", "a", "b")],
                &["o2"],
            ),
            step(
                1,
                vec![op(
                    "updateConnection",
                    "o4",
                    json!({"id": "c", "color": "red"}),
                )],
                &["o4"],
            ),
            step(
                0,
                vec![connection("o2", "c", "a", "b"), card("o3", "b")],
                &[],
            ),
        ],
    )
    .await;
    assert_eq!(space["connections"][0]["color"], json!("red"));

    // createConnectionType, removeConnectionType, then a connection using that type.
    let space = run_scenario(
        &url,
        "types",
        vec![
            step(
                0,
                vec![op(
                    "createConnection",
                    "t5",
                    json!({"id": "c", "startItemId": "a", "endItemId": "b", "connectionTypeId": "ct"}),
                )],
                &["t5"],
            ),
            step(
                1,
                vec![
                    card("t1", "a"),
                    card("t2", "b"),
                    op("createConnectionType", "t3", json!({"id": "ct", "color": "pink"})),
                    op("removeConnectionType", "t4", json!({"id": "ct"})),
                ],
                &[],
            ),
        ],
    )
    .await;
    assert_eq!(space["connections"][0]["connectionTypeId"], json!("ct"));

    // Parent deletes interleaved with the removal of their connections, from both clients.
    let space = run_scenario(
        &url,
        "deletes",
        vec![
            step(
                0,
                vec![
                    card("p1", "a"),
                    card("p2", "b"),
                    connection("p3", "c1", "a", "b"),
                ],
                &[],
            ),
            step(1, vec![op("deleteCard", "p4", json!({"id": "a"}))], &[]),
            step(
                0,
                vec![op("removeConnection", "p5", json!({"id": "c1"}))],
                &[],
            ),
            step(1, vec![op("deleteCard", "p6", json!({"id": "b"}))], &[]),
        ],
    )
    .await;
    assert!(ids(&space, "cards").is_empty());
    assert!(ids(&space, "connections").is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn acks_come_only_after_the_commit() {
    let Some(database) = TestDatabase::create("server_ack_after_commit").await else {
        return;
    };
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (gate_tx, gate) = tokio::sync::watch::channel(false);
    let store = GatedStore {
        inner: migrated_store(database.url()).await,
        started: started_tx,
        gate,
    };
    let server = start(Arc::new(store), ServerConfig::default()).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::Json, "alice", "s", None).await;
    alice.submit(vec![card("op1", "a")]).await;
    // The append has started and is held at the gate: nothing is committed yet.
    tokio::time::timeout(PATIENCE, started.recv())
        .await
        .expect("the append starts");
    // A message answered by the connection itself travels behind anything queued for it
    // before: if an ack had been sent before the commit, it would arrive first.
    alice
        .client
        .send_frame(spacesync_client::tungstenite::Message::Text(
            "not json".into(),
        ))
        .await
        .expect("sends");
    alice.until(|member| !member.errors.is_empty()).await;
    assert!(alice.acks.is_empty(), "acknowledged before the commit");
    assert!(logged(database.url(), "s").await.is_empty());
    // The op arrived before this instant, and the commit is held until the gate opens.
    let held_at_gate = std::time::Instant::now();
    gate_tx.send(true).expect("opens the gate");
    let held_at_gate = held_at_gate.elapsed();
    alice.answered(&["op1"]).await;
    assert_eq!(alice.acks["op1"], (1, false));
    assert_eq!(logged(database.url(), "s").await, [(1, "op1".to_owned())]);
    // The ack-latency and commit-wait histograms saw the op's batch once, and their times
    // cover the commit it waited for.
    let metrics = server.metrics().render();
    for histogram in ["ack_seconds", "commit_wait_seconds"] {
        assert!(
            metrics.contains(&format!("spacesync_{histogram}_count 1\n")),
            "{metrics}"
        );
        let sum: f64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("spacesync_{histogram}_sum ")))
            .and_then(|value| value.parse().ok())
            .expect("the histogram's sum");
        assert!(
            sum >= held_at_gate.as_secs_f64(),
            "{histogram}: {sum} < {held_at_gate:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn every_member_sees_every_seq_once_and_in_order() {
    let Some(database) = TestDatabase::create("server_fanout").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let server = start(store, ServerConfig::default()).await;
    let url = ws_url(&server);
    let mut members = Vec::new();
    for (index, format) in [Format::Json, Format::MessagePack, Format::Json]
        .into_iter()
        .enumerate()
    {
        members.push(Member::join(&url, format, &format!("c{index}"), "fan", None).await);
    }
    // Every member sends 3 batches of 20 card ops without waiting for answers.
    for batch in 0..3 {
        for (index, member) in members.iter_mut().enumerate() {
            let ops = (0..20)
                .map(|n| {
                    card(
                        &format!("c{index}-{batch}-{n}"),
                        &format!("card-{index}-{batch}-{n}"),
                    )
                })
                .collect();
            member.submit(ops).await;
        }
    }
    let total = 3 * 3 * 20;
    for member in &mut members {
        member.until(|member| member.seqs.len() >= total).await;
        member.assert_gapless(1, total as u64);
        assert_eq!(member.acks.len(), 60);
        assert_eq!(
            member.broadcasts.len(),
            120,
            "only the others' ops are broadcast"
        );
    }
    let log = logged(database.url(), "fan").await;
    assert_eq!(log.len(), total);
    assert!(
        log.iter()
            .enumerate()
            .all(|(index, (seq, _))| *seq == index as i64 + 1)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_resumes_after_a_disconnect_without_gap_or_duplicate() {
    let Some(database) = TestDatabase::create("server_resume").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let config = ServerConfig {
        resume_window: 5,
        resume_from_log: 6,
        ..ServerConfig::default()
    };
    let server = start(store, config).await;
    let url = ws_url(&server);
    let mut writer = Member::join(&url, Format::Json, "writer", "r", None).await;
    let mut reader = Member::join(&url, Format::MessagePack, "reader", "r", None).await;
    writer.submit(vec![card("w1", "a"), card("w2", "b")]).await;
    reader.until(|member| member.seqs.len() == 2).await;
    reader.client.close().await.expect("closes");

    // While it is away: three more ops, within the resume window. The server keeps them as
    // the JSON it logged; they come back exactly as sent (floats, text, nesting, unknown fields).
    let away = vec![
        card("w3", "c"),
        op(
            "createCard",
            "w4",
            json!({"id": "d", "x": 1.5, "y": -2, "name": "ü ✓ \"q\"\n", "extra": {"nested": [1, null, true, 0.1]}}),
        ),
        card("w5", "e"),
    ];
    writer.submit(away.clone()).await;
    writer.answered(&["w3", "w4", "w5"]).await;
    let mut back = Member::join(&url, Format::MessagePack, "reader", "r", Some(2)).await;
    assert_eq!(back.joined_seq, Some(5));
    assert!(back.snapshot.is_none());
    assert_eq!(back.joined_ops, [3, 4, 5]);
    assert_eq!(back.joined_with, (3..=5).zip(away).collect::<Vec<_>>());
    // Live ops follow from seq 6.
    writer.submit(vec![card("w6", "f")]).await;
    back.until(|member| member.seqs.len() == 4).await;
    assert_eq!(back.seqs, [3, 4, 5, 6]);

    writer
        .submit(
            (7..=12)
                .map(|n| card(&format!("w{n}"), &format!("x{n}")))
                .collect(),
        )
        .await;
    writer.answered(&["w12"]).await;
    // Older than memory: served from the log when at most 6 ops behind...
    let from_log = Member::join(&url, Format::Json, "log", "r", Some(6)).await;
    assert_eq!(from_log.joined_seq, Some(12));
    assert!(from_log.snapshot.is_none());
    assert_eq!(from_log.joined_ops, [7, 8, 9, 10, 11, 12]);
    // ...and older than that: the whole space.
    let old = Member::join(&url, Format::Json, "old", "r", Some(1)).await;
    assert_eq!(old.joined_seq, Some(12));
    assert!(old.joined_ops.is_empty());
    assert_eq!(
        ids(old.snapshot.as_ref().expect("snapshot"), "cards").len(),
        12
    );
    // A resume point at the head gets nothing but live ops.
    let head = Member::join(&url, Format::Json, "head", "r", Some(12)).await;
    assert!(head.snapshot.is_none() && head.joined_ops.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn the_log_is_read_page_by_page_from_memory_and_from_the_store() {
    let Some(database) = TestDatabase::create("server_read_log").await else {
        return;
    };
    let store = Arc::new(FlakyStore::new(migrated_store(database.url()).await));
    let config = ServerConfig {
        resume_window: 5,
        resume_from_log: 0,
        log_page: 4,
        ..ServerConfig::default()
    };
    let server = start(store.clone(), config).await;
    let url = ws_url(&server);
    let mut writer = Member::join(&url, Format::Json, "writer", "l", None).await;
    let sent: Vec<Operation> = (1..=11)
        .map(|n| card(&format!("o{n}"), &format!("c{n}")))
        .collect();
    writer.submit(sent.clone()).await;
    writer.answered(&["o11"]).await;
    let expected: Vec<(Seq, Operation)> = (1..).zip(sent).collect();

    // A reader that never joins, in the other format: pages of the server's size, the older
    // ones from the store and the newest (seqs 7–11) from memory, each op exactly as sent.
    let mut reader = Member::connect(&url, Format::MessagePack, "reader", "l").await;
    let mut read = Vec::new();
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let (head, ops) = reader.read_log(after, None).await;
        assert_eq!(head, 11);
        let Some(last) = ops.last().map(|(seq, _)| *seq) else {
            break;
        };
        pages.push(ops.len());
        read.extend(ops);
        after = last;
    }
    assert_eq!(pages, [4, 4, 3]);
    assert_eq!(read, expected);
    // A page crossing from the store into memory, the client's own smaller limit, a limit of
    // 0 (one op) and one over the server's page size (its page size).
    let seqs = |ops: Vec<(Seq, Operation)>| ops.into_iter().map(|(seq, _)| seq).collect::<Vec<_>>();
    assert_eq!(seqs(reader.read_log(5, None).await.1), [6, 7, 8, 9]);
    assert_eq!(seqs(reader.read_log(1, Some(2)).await.1), [2, 3]);
    assert_eq!(seqs(reader.read_log(9, Some(0)).await.1), [10]);
    assert_eq!(seqs(reader.read_log(0, Some(1_000)).await.1), [1, 2, 3, 4]);
    // At or past the head, and a space nobody wrote: nothing, with the head.
    assert_eq!(reader.read_log(11, None).await, (11, Vec::new()));
    assert_eq!(reader.read_log(500, None).await, (11, Vec::new()));
    let mut stranger = Member::connect(&url, Format::Json, "stranger", "never-written").await;
    assert_eq!(stranger.read_log(0, None).await, (0, Vec::new()));
    // Reading is not joining: the reader gets no broadcasts of later ops.
    writer.submit(vec![card("o12", "c12")]).await;
    writer.answered(&["o12"]).await;
    assert_eq!(reader.read_log(11, None).await.0, 12);
    assert!(reader.broadcasts.is_empty() && reader.errors.is_empty());
    // A log the store cannot read right now: a retryable error, and the next read works.
    store
        .fail_log_after
        .store(true, std::sync::atomic::Ordering::SeqCst);
    reader
        .client
        .send(&ClientMessage::ReadLog {
            space_id: "l".into(),
            after: 0,
            limit: None,
        })
        .await
        .expect("sends");
    reader.until(|member| !member.errors.is_empty()).await;
    assert_eq!(reader.errors[0].0, ServerError::SpaceUnavailable);
    store
        .fail_log_after
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(seqs(reader.read_log(0, Some(2)).await.1), [1, 2]);
    reader.errors.clear();
    // A bad space id is refused like a join's.
    reader
        .client
        .send(&ClientMessage::ReadLog {
            space_id: String::new(),
            after: 0,
            limit: None,
        })
        .await
        .expect("sends");
    reader.until(|member| !member.errors.is_empty()).await;
    assert_eq!(reader.errors[0].0, ServerError::MalformedMessage);
    server.shutdown().await;
}

#[tokio::test]
async fn a_log_page_ends_after_about_a_messages_worth_of_ops() {
    let Some(database) = TestDatabase::create("server_read_log_bytes").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let config = ServerConfig {
        max_message_bytes: 4_096,
        resume_window: 3,
        ..ServerConfig::default()
    };
    let server = start(store, config).await;
    let url = ws_url(&server);
    let mut writer = Member::join(&url, Format::Json, "writer", "b", None).await;
    // Each op's JSON is over 1,500 bytes: a page holds the ops up to the first that passes
    // 4,096 bytes, so three, whether they come from the store or from memory.
    let name = "n".repeat(1_500);
    for n in 1..=7 {
        let id = format!("o{n}");
        writer
            .submit(vec![op(
                "createCard",
                &id,
                json!({"id": format!("c{n}"), "x": 1, "y": 2, "name": name}),
            )])
            .await;
        writer.answered(&[id.as_str()]).await;
    }
    let mut reader = Member::connect(&url, Format::MessagePack, "reader", "b").await;
    let mut pages = Vec::new();
    let mut after = 0;
    while after < 7 {
        let (head, ops) = reader.read_log(after, None).await;
        assert_eq!(head, 7);
        pages.push(ops.iter().map(|(seq, _)| *seq).collect::<Vec<_>>());
        after = ops.last().expect("a page moves forward").0;
    }
    assert_eq!(pages, [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_replay_after_a_restart_gets_the_original_seq_and_changes_nothing() {
    let Some(database) = TestDatabase::create("server_replay").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    // Snapshots every 2 ops: after the restart the replayed op is older than the snapshot
    // the space loads from, so only the log's unique index knows it.
    let config = ServerConfig {
        snapshot_every: 2,
        ..ServerConfig::default()
    };
    let server = start(store.clone(), config.clone()).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::Json, "alice", "d", None).await;
    alice
        .submit(vec![
            card("d1", "a"),
            card("d2", "b"),
            card("d3", "c"),
            card("d4", "e"),
            op("updateCard", "d5", json!({"id": "a", "x": 5})),
        ])
        .await;
    alice.answered(&["d1", "d2", "d3", "d4", "d5"]).await;
    assert!(server.shutdown().await.is_clean());

    let server = start(store, config).await;
    let url = ws_url(&server);
    // Bob, another client, replays Alice's first op (a create, older than the snapshot), her
    // update, and a new op.
    let mut bob = Member::join(&url, Format::MessagePack, "bob", "d", None).await;
    bob.submit(vec![
        card("d1", "a"),
        op("updateCard", "d5", json!({"id": "a", "x": 5})),
        op("updateCard", "d6", json!({"id": "a", "x": 6})),
    ])
    .await;
    bob.answered(&["d1", "d5", "d6"]).await;
    assert_eq!(bob.acks["d1"], (1, true));
    assert_eq!(bob.acks["d5"], (5, true));
    assert_eq!(bob.acks["d6"], (6, false));
    let log = logged(database.url(), "d").await;
    assert_eq!(log.len(), 6);
    let (seq, space) = download(&url, "d").await;
    assert_eq!(seq, 6);
    assert_eq!(space["cards"][0]["x"], json!(6));
    server.shutdown().await;
}

#[tokio::test]
async fn a_poison_op_inside_a_batch_is_quarantined_and_the_others_land() {
    let Some(database) = TestDatabase::create("server_poison").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    // Resumes from memory only, so the last join below shows what the memory holds.
    let config = ServerConfig {
        resume_from_log: 0,
        ..ServerConfig::default()
    };
    let server = start(store, config).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::MessagePack, "alice", "p", None).await;
    let mut bob = Member::join(&url, Format::Json, "bob", "p", None).await;
    // The core accepts a NUL character in a name; PostgreSQL's jsonb never will.
    alice
        .submit(vec![
            card("g1", "a"),
            card("g2", "b"),
            op(
                "createCard",
                "bad",
                json!({"id": "z", "x": 0, "y": 0, "name": "nul\u{0}"}),
            ),
            connection("g3", "c", "a", "b"),
            op("updateCard", "g4", json!({"id": "a", "x": 4})),
            // Waits for the poison card's create, which is refused: rejected too.
            op("updateCard", "g5", json!({"id": "z", "x": 5})),
            // Garbage the core refuses before any write.
            op("createCard", "g6", json!({"id": "y", "x": "left", "y": 0})),
            op("teleportCard", "g7", json!({"id": "a"})),
        ])
        .await;
    alice
        .answered(&["g1", "g2", "bad", "g3", "g4", "g5", "g6", "g7"])
        .await;
    assert_eq!(alice.acks["g1"], (1, false));
    assert_eq!(alice.acks["g2"], (2, false));
    assert_eq!(alice.acks["g3"], (3, false));
    assert_eq!(alice.acks["g4"], (4, false));
    let code = |member: &Member, id: &str| member.rejected[id].0;
    assert_eq!(code(&alice, "bad"), RejectCode::ConstraintViolation);
    assert!(alice.rejected["bad"].1, "permanent");
    assert_eq!(code(&alice, "g6"), RejectCode::MalformedOperation);
    assert_eq!(code(&alice, "g7"), RejectCode::UnknownOperation);
    assert!(matches!(
        code(&alice, "g5"),
        RejectCode::DependencyRejected | RejectCode::DependencyTimeout
    ));
    bob.until(|member| member.seqs.len() == 4).await;
    bob.assert_gapless(1, 4);
    let quarantine = quarantined(database.url(), "p").await;
    let codes: Vec<(&str, &str)> = quarantine
        .iter()
        .map(|(id, code, _)| (id.as_str(), code.as_str()))
        .collect();
    assert!(
        codes.contains(&("bad", "constraint_violation")),
        "{codes:?}"
    );
    assert!(codes.contains(&("g6", "malformed_operation")), "{codes:?}");
    assert!(codes.contains(&("g7", "unknown_operation")), "{codes:?}");

    // A resubmission is refused again at once, counted as another attempt.
    alice.rejected.clear();
    alice
        .submit(vec![op("teleportCard", "g7", json!({"id": "a"}))])
        .await;
    alice.answered(&["g7"]).await;
    assert_eq!(code(&alice, "g7"), RejectCode::UnknownOperation);
    let attempts = quarantined(database.url(), "p")
        .await
        .into_iter()
        .find(|(id, _, _)| id == "g7")
        .map(|(_, _, attempts)| attempts);
    assert_eq!(attempts, Some(2));
    assert_eq!(logged(database.url(), "p").await.len(), 4);
    // The resume window holds the rows committed before the refused one and those after it.
    let carol = Member::join(&url, Format::Json, "carol", "p", Some(0)).await;
    assert!(carol.snapshot.is_none());
    assert_eq!(carol.joined_ops, [1, 2, 3, 4]);
    let names: Vec<&str> = carol
        .joined_with
        .iter()
        .map(|(_, op)| op.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["createCard", "createCard", "createConnection", "updateCard"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_panic_in_one_actor_quarantines_its_op_and_the_rest_carries_on() {
    let Some(database) = TestDatabase::create("server_panic").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let config = ServerConfig {
        fault: Some(Arc::new(|_space: &str, op: &Operation| {
            if op.body.get("explode").is_some() {
                panic!("injected fault");
            }
        })),
        ..ServerConfig::default()
    };
    let server = start(store, config).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::Json, "alice", "boom", None).await;
    let mut other = Member::join(&url, Format::Json, "carol", "calm", None).await;
    alice
        .submit(vec![
            card("k1", "a"),
            // Held until k4 arrives, across the panic and the restart from the store.
            connection("k2", "c", "a", "b"),
            op(
                "createCard",
                "k3",
                json!({"id": "x", "x": 0, "y": 0, "explode": true}),
            ),
            card("k4", "b"),
        ])
        .await;
    other.submit(vec![card("n1", "a")]).await;
    alice.answered(&["k1", "k2", "k3", "k4"]).await;
    other.answered(&["n1"]).await;
    assert_eq!(alice.rejected["k3"].0, RejectCode::InternalError);
    assert_eq!(alice.acks.len(), 3);
    assert_eq!(other.acks["n1"], (1, false));
    let (seq, space) = download(&url, "boom").await;
    assert_eq!(seq, 3);
    assert_eq!(ids(&space, "cards"), ["a", "b"]);
    assert_eq!(ids(&space, "connections"), ["c"]);
    assert_eq!(
        quarantined(database.url(), "boom").await,
        [("k3".to_owned(), "internal_error".to_owned(), 1)]
    );
    assert_eq!(server.metrics().actor_panics.get(), 1);
    // The actor goes on serving.
    alice.submit(vec![card("k5", "d")]).await;
    alice.answered(&["k5"]).await;
    assert_eq!(alice.acks["k5"], (4, false));
    server.shutdown().await;
}

#[tokio::test]
async fn a_held_op_whose_dependency_never_arrives_is_quarantined_naming_it() {
    let Some(database) = TestDatabase::create("server_hold_timeout").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let mut config = ServerConfig::default();
    config.space.hold_timeout_ms = 200;
    let server = start(store, config).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::Json, "alice", "h", None).await;
    alice
        .submit(vec![card("h1", "a"), connection("h2", "c", "a", "ghost")])
        .await;
    alice.answered(&["h1", "h2"]).await;
    let (code, permanent, message) = alice.rejected["h2"].clone();
    assert_eq!(code, RejectCode::DependencyTimeout);
    assert!(permanent && message.contains("ghost"), "{message}");
    assert_eq!(
        quarantined(database.url(), "h").await,
        [("h2".to_owned(), "dependency_timeout".to_owned(), 1)]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_are_answered_and_never_hurt_other_connections() {
    let Some(database) = TestDatabase::create("server_protocol").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let config = ServerConfig {
        max_message_bytes: 64 * 1024,
        max_ops_per_batch: 10,
        ..ServerConfig::default()
    };
    let server = start(store, config).await;
    let url = ws_url(&server);
    let mut bystander = Member::join(&url, Format::Json, "bystander", "quiet", None).await;

    // Anything before hello: error + 1002.
    let mut client = Client::open(&url, Format::Json).await.expect("opens");
    client.join("quiet", None).await.expect("sends");
    expect_error_then_close(&mut client, ServerError::HelloRequired, 1002).await;

    // No common version: error + 4000.
    let mut client = Client::open(&url, Format::MessagePack)
        .await
        .expect("opens");
    client
        .send(&spacesync_protocol::ClientMessage::Hello {
            versions: vec![99],
            client_id: None,
        })
        .await
        .expect("sends");
    expect_error_then_close(&mut client, ServerError::UnsupportedVersion, 4000).await;

    // After hello: bad frames are answered and the connection stays usable.
    let mut member = Member::connect(&url, Format::Json, "messy", "messy").await;
    for frame in [
        "{",
        "[]",
        r#"{"type":"teleport"}"#,
        r#"{"type":"join","spaceId":"messy","extra":1}"#,
        r#"{"type":"join","spaceId":""}"#,
        r#"{"type":"hello","versions":[1]}"#,
        r#"{"type":"submit","spaceId":"messy","ops":[]}"#,
        r#"{"type":"presence","spaceId":"messy","data":{}}"#,
    ] {
        member
            .client
            .send_frame(spacesync_client::tungstenite::Message::Text(frame.into()))
            .await
            .expect("sends");
    }
    member.until(|member| member.errors.len() == 8).await;
    let codes: Vec<ServerError> = member.errors.iter().map(|(code, _)| *code).collect();
    assert_eq!(
        codes,
        [
            ServerError::MalformedMessage,
            ServerError::MalformedMessage,
            ServerError::MalformedMessage,
            ServerError::MalformedMessage,
            ServerError::MalformedMessage,
            ServerError::MalformedMessage,
            ServerError::NotJoined,
            ServerError::NotJoined,
        ]
    );
    // Too many ops in one batch: nothing applied.
    member.client.join("messy", None).await.expect("joins");
    member.until(|member| member.joined_seq.is_some()).await;
    member
        .submit(
            (0..11)
                .map(|n| card(&format!("m{n}"), &format!("c{n}")))
                .collect(),
        )
        .await;
    member.until(|member| member.errors.len() == 9).await;
    assert_eq!(member.errors[8].0, ServerError::TooLarge);
    // Ops without a usable id are rejected, not quarantined.
    member
        .submit(vec![
            Operation::new("createCard", json!({"id": "a", "x": 0, "y": 0})),
            op("createCard", "bad\nid", json!({"id": "b", "x": 0, "y": 0})),
            card("fine", "c"),
        ])
        .await;
    member.answered(&["", "fine"]).await;
    assert_eq!(member.acks["fine"], (1, false));
    assert_eq!(quarantined(database.url(), "messy").await, []);

    // A message over the size limit closes the connection with 1009.
    let mut big = Member::join(&url, Format::Json, "big", "messy", None).await;
    let huge = "x".repeat(70 * 1024);
    big.submit(vec![op(
        "createCard",
        "huge",
        json!({"id": "h", "x": 0, "y": 0, "name": huge}),
    )])
    .await;
    assert_eq!(big.close_code().await, 1009);

    // The bystander never noticed.
    bystander.submit(vec![card("b1", "a")]).await;
    bystander.answered(&["b1"]).await;
    assert_eq!(bystander.acks["b1"], (1, false));
    server.shutdown().await;
}

async fn expect_error_then_close(client: &mut Client, code: ServerError, close: u16) {
    let message = tokio::time::timeout(PATIENCE, client.recv())
        .await
        .expect("answers")
        .expect("an error message");
    assert!(
        matches!(&message, spacesync_protocol::ServerMessage::Error { code: got, .. } if *got == code),
        "{message:?}"
    );
    let closed = tokio::time::timeout(PATIENCE, client.recv())
        .await
        .expect("closes");
    assert!(
        matches!(closed, Err(ClientError::Closed { code, .. }) if code == close),
        "{closed:?}"
    );
}

#[tokio::test]
async fn presence_is_relayed_to_the_others_and_never_stored() {
    let Some(database) = TestDatabase::create("server_presence").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let server = start(store, ServerConfig::default()).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::Json, "alice", "pr", None).await;
    let mut bob = Member::join(&url, Format::MessagePack, "bob", "pr", None).await;
    for x in 0..5 {
        alice
            .client
            .send(&spacesync_protocol::ClientMessage::Presence {
                space_id: "pr".into(),
                data: json!({"cursor": {"x": x, "y": 0}}),
            })
            .await
            .expect("sends");
    }
    bob.until(|member| {
        member
            .presence
            .last()
            .is_some_and(|(_, data)| data["cursor"]["x"] == json!(4))
    })
    .await;
    // Coalesced: at most one message per tick, the last one always arrives.
    assert!(bob.presence.len() <= 5);
    assert!(bob.presence.iter().all(|(client, _)| client == "alice"));
    assert!(logged(database.url(), "pr").await.is_empty());
    // The sender does not get its own presence back: its next message is the ack.
    alice.submit(vec![card("a1", "a")]).await;
    alice.answered(&["a1"]).await;
    assert!(alice.presence.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4001_and_resumes() {
    let Some(database) = TestDatabase::create("server_slow").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let config = ServerConfig {
        outbound_queue: 4,
        ..ServerConfig::default()
    };
    let server = start(store, config).await;
    let url = ws_url(&server);
    // The slow client joins and then does not read.
    let mut slow = Member::join(&url, Format::Json, "slow", "busy", None).await;
    let mut writer = Member::join(&url, Format::Json, "writer", "busy", None).await;
    // Large broadcasts (40 × 4 × 100 KiB = 16 MiB) fill the socket buffers, then the
    // 4-message queue.
    let name = "n".repeat(100 * 1024);
    let batches = 40;
    for batch in 0..batches {
        let ops = (0..4)
            .map(|n| {
                op(
                    "createCard",
                    &format!("s{batch}-{n}"),
                    json!({"id": format!("c{batch}-{n}"), "x": 0, "y": 0, "name": name}),
                )
            })
            .collect();
        writer.submit(ops).await;
        let last = format!("s{batch}-3");
        writer.answered(&[last.as_str()]).await;
    }
    let sent: u64 = batches * 4;
    assert_eq!(slow.close_code().await, 4001);
    assert!(
        (slow.seqs.len() as u64) < sent,
        "closed before it got everything"
    );
    assert!(
        server
            .metrics()
            .render()
            .contains("spacesync_connections_closed_total{reason=\"slow_consumer\"} 1")
    );
    // It resumes from the last seq it applied and misses nothing.
    let since = slow.seqs.last().copied().unwrap_or(0);
    let back = Member::join(&url, Format::Json, "slow", "busy", Some(since)).await;
    let head = back.joined_seq.expect("joined");
    assert_eq!(head, sent);
    if back.snapshot.is_none() {
        assert_eq!(back.joined_ops, (since + 1..=head).collect::<Vec<_>>());
    }
    server.shutdown().await;
}

/// The idle timer is armed once and moved on only when it fires: a connection that keeps
/// talking for several timeouts stays open, and one that then goes quiet is still closed.
#[tokio::test]
async fn a_talking_connection_outlives_its_idle_timeout_and_a_quiet_one_does_not() {
    let Some(database) = TestDatabase::create("server_idle_talk").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let config = ServerConfig {
        idle_timeout: Duration::from_secs(1),
        ping_interval: Duration::from_secs(60),
        ..ServerConfig::default()
    };
    let server = start(store, config).await;
    let mut member = Member::join(&ws_url(&server), Format::Json, "talker", "s", None).await;
    // Three timeouts' worth of traffic, a message every 100 ms (a tenth of the timeout).
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let id = format!("op-{sent}");
        member
            .submit(vec![card(&id, &format!("card-{sent}"))])
            .await;
        member.answered(&[&id]).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent >= 10, "only {sent} ops in 3 s");
    assert_eq!(
        member.acks.len(),
        sent,
        "every op acked: {:?}",
        member.rejected
    );
    // Then silence: closed with 4002.
    assert_eq!(member.close_code().await, 4002);
    server.shutdown().await;
}

#[tokio::test]
async fn idle_spaces_unload_and_load_again_from_the_store() {
    let Some(database) = TestDatabase::create("server_unload").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let config = ServerConfig {
        unload_after: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let server = start(store, config).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::Json, "alice", "u", None).await;
    alice.submit(vec![card("u1", "a"), card("u2", "b")]).await;
    alice.answered(&["u1", "u2"]).await;
    alice.client.close().await.expect("closes");
    let unloaded = tokio::time::timeout(PATIENCE, async {
        while server.loaded_spaces() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(unloaded.is_ok(), "the idle space never unloaded");
    let (seq, space) = download(&url, "u").await;
    assert_eq!(seq, 2);
    assert_eq!(ids(&space, "cards"), ["a", "b"]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_space_whose_log_cannot_be_read_is_never_replaced_by_an_empty_one() {
    let Some(database) = TestDatabase::create("server_corrupt").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    // A log with a gap: seq 1 then seq 3.
    spacesync_testkit::execute(
        database.url(),
        r#"INSERT INTO op_log (space_id, seq, operation_id, name, payload) VALUES
           ('broken', 1, 'a', 'createCard', '{"name":"createCard","body":{"operationId":"a","id":"a","x":0,"y":0}}'),
           ('broken', 3, 'b', 'createCard', '{"name":"createCard","body":{"operationId":"b","id":"b","x":0,"y":0}}')"#,
    )
    .await;
    let server = start(store, ServerConfig::default()).await;
    let url = ws_url(&server);
    let mut alice = Member::connect(&url, Format::Json, "alice", "broken").await;
    alice.client.join("broken", None).await.expect("sends");
    alice.until(|member| !member.errors.is_empty()).await;
    assert_eq!(alice.errors[0].0, ServerError::SpaceUnavailable);
    assert_eq!(
        logged(database.url(), "broken").await.len(),
        2,
        "nothing was written"
    );
    // Other spaces are served.
    let mut bob = Member::join(&url, Format::Json, "bob", "fine", None).await;
    bob.submit(vec![card("f1", "a")]).await;
    bob.answered(&["f1"]).await;
    assert_eq!(server.metrics().actor_load_failures.get(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_answers_everything_then_closes_with_1001() {
    let Some(database) = TestDatabase::create("server_shutdown").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let server = start(store, ServerConfig::default()).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::Json, "alice", "g", None).await;
    alice
        .submit(vec![card("s1", "a"), connection("s2", "c", "a", "never")])
        .await;
    alice.until(|member| member.held.contains("s2")).await;
    let report = server.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(alice.close_code().await, 1001);
    assert_eq!(alice.acks["s1"], (1, false));
    // The held op is answered as retryable, not quarantined.
    assert_eq!(alice.rejected["s2"].0, RejectCode::ShuttingDown);
    assert!(!alice.rejected["s2"].1);
    assert_eq!(quarantined(database.url(), "g").await, []);
}

#[tokio::test]
async fn connection_limits_and_timeouts_close_with_their_codes() {
    let Some(database) = TestDatabase::create("server_limits").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let config = ServerConfig {
        max_connections: 1,
        hello_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_secs(60),
        ..ServerConfig::default()
    };
    let server = start(store, config).await;
    let url = ws_url(&server);
    // A client id that is not acceptable is replaced by one the server makes up.
    let long_id = "x".repeat(500);
    let first = Client::connect(&url, Format::Json, Some(&long_id))
        .await
        .expect("connects");
    assert!(
        first.client_id().starts_with("anon-"),
        "{}",
        first.client_id()
    );
    let mut first = Member::new(first, "s");
    // The one slot is taken: the next connection is closed with 1013.
    let mut second = Client::open(&url, Format::Json).await.expect("opens");
    let refused = second.recv().await.expect_err("closed at once");
    assert!(
        matches!(refused, ClientError::Closed { code: 1013, .. }),
        "{refused:?}"
    );
    // Silence past the idle timeout: 4002.
    assert_eq!(first.close_code().await, 4002);
    // No hello within the hello timeout: 4002.
    let mut quiet = Client::open(&url, Format::Json).await.expect("opens");
    let closed = tokio::time::timeout(PATIENCE, quiet.recv())
        .await
        .expect("closed in time")
        .expect_err("closed");
    assert!(
        matches!(closed, ClientError::Closed { code: 4002, .. }),
        "{closed:?}"
    );
    assert!(
        server
            .metrics()
            .render()
            .contains("spacesync_connections_refused_total 1")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_old_replay_of_an_op_the_space_has_outgrown_gets_its_original_seq() {
    let Some(database) = TestDatabase::create("server_outgrown").await else {
        return;
    };
    let store = Arc::new(FlakyStore::new(migrated_store(database.url()).await));
    let mut config = ServerConfig::default();
    config.space.remember_ops = 2;
    let server = start(store.clone(), config).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::Json, "alice", "g", None).await;
    let drag = op("updateCard", "u1", json!({"id": "c1", "x": 5, "y": 6}));
    alice.submit(vec![card("d1", "c1"), drag.clone()]).await;
    alice.answered(&["u1"]).await;
    let more: Vec<Operation> = (2..=4)
        .map(|n| card(&format!("d{n}"), &format!("c{n}")))
        .collect();
    alice.submit(more).await;
    alice.answered(&["d4"]).await;
    alice
        .submit(vec![op("deleteCard", "x1", json!({"id": "c1"}))])
        .await;
    alice.answered(&["x1"]).await;
    assert_eq!(alice.acks["x1"], (6, false));

    // u1 is forgotten in memory and its card is gone: the log says it was accepted at seq 2.
    // While the log cannot be read, the answer is retryable, not a verdict.
    let mut bob = Member::join(&url, Format::Json, "bob", "g", Some(6)).await;
    store
        .fail_lookups
        .store(true, std::sync::atomic::Ordering::SeqCst);
    bob.submit(vec![drag.clone()]).await;
    bob.answered(&["u1"]).await;
    let (code, permanent, _) = &bob.rejected["u1"];
    assert_eq!((*code, *permanent), (RejectCode::StoreUnavailable, false));
    store
        .fail_lookups
        .store(false, std::sync::atomic::Ordering::SeqCst);
    bob.rejected.clear();
    // Once it can be read: the replay gets its seq; a new op on the deleted card in the same
    // batch (looked up with it) is still refused.
    let fresh = |id: &str| op("updateCard", id, json!({"id": "c1", "x": 1, "y": 1}));
    bob.submit(vec![fresh("u2"), drag.clone(), fresh("u3")])
        .await;
    bob.answered(&["u2", "u1", "u3"]).await;
    assert_eq!(bob.acks.get("u1"), Some(&(2, true)), "{:?}", bob.rejected);
    for id in ["u2", "u3"] {
        assert_eq!(bob.rejected[id].0, RejectCode::ReferenceDeleted);
    }
    // Now remembered: a second replay is answered the same way.
    bob.acks.clear();
    bob.submit(vec![drag]).await;
    bob.answered(&["u1"]).await;
    assert_eq!(bob.acks.get("u1"), Some(&(2, true)));
    // Only the new ops are quarantined.
    let quarantine: Vec<String> = quarantined(database.url(), "g")
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(quarantine, ["u2", "u3"]);
    assert_eq!(logged(database.url(), "g").await.len(), 6);
    assert!(bob.seqs.is_empty() && alice.seqs.len() == 6);
    server.shutdown().await;
}

#[tokio::test]
async fn a_replay_older_than_the_actors_memory_gets_its_original_seq() {
    let Some(database) = TestDatabase::create("server_forgotten").await else {
        return;
    };
    let store = Arc::new(migrated_store(database.url()).await);
    let mut config = ServerConfig::default();
    config.space.remember_ops = 2;
    let server = start(store, config).await;
    let url = ws_url(&server);
    let mut alice = Member::join(&url, Format::Json, "alice", "f", None).await;
    alice
        .submit(
            (1..=5)
                .map(|n| card(&format!("f{n}"), &format!("c{n}")))
                .collect(),
        )
        .await;
    alice.answered(&["f1", "f2", "f3", "f4", "f5"]).await;
    let mut bob = Member::join(&url, Format::Json, "bob", "f", Some(5)).await;
    // f1 is long forgotten in memory; the log's unique key recognises it. The op after it
    // in the same batch still lands with the next seq.
    bob.submit(vec![card("f1", "c1"), card("f6", "c6")]).await;
    bob.answered(&["f1", "f6"]).await;
    assert_eq!(bob.acks["f1"], (1, true));
    assert_eq!(bob.acks["f6"], (6, false));
    alice.until(|member| member.seqs.len() == 6).await;
    alice.assert_gapless(1, 6);
    assert_eq!(logged(database.url(), "f").await.len(), 6);
    server.shutdown().await;
}
