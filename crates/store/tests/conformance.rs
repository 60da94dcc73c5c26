//! The store conformance suite: the same test bodies run against both implementations of
//! `Store`, PostgreSQL (a database of its own per test) and the embedded SQLite store (a
//! temporary directory per test). Appends, batching across spaces, idempotency across a
//! restart, snapshots + tail, quarantine list/release/drop, poison isolation inside a batch,
//! error classification, migrations and the schema check.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::json;
use spacesync_protocol::Operation;
use spacesync_store::{
    NewLogEntry, NewQuarantine, PgStore, PoisonKind, PriorRecord, SqliteStore, Store,
    StoredSnapshot,
};
use spacesync_testkit::TestDatabase;

/// Opens the same store again, as a restarted server would.
type Reopen = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Store>>>>>;

/// A store under test.
struct Fixture {
    store: Arc<dyn Store>,
    reopen: Reopen,
    /// Keeps the database or directory alive for the test.
    _keep: Box<dyn std::any::Any>,
}

async fn postgres(test: &str) -> Option<Fixture> {
    let database = TestDatabase::create(&format!("conformance_{test}")).await?;
    let url = database.url().to_owned();
    let store = PgStore::connect(&url, 4).expect("pool");
    store.migrate().await.expect("migrates");
    Some(Fixture {
        store: Arc::new(store),
        reopen: Box::new(move || {
            let url = url.clone();
            Box::pin(
                async move { Arc::new(PgStore::connect(&url, 4).expect("pool")) as Arc<dyn Store> },
            )
        }),
        _keep: Box::new(database),
    })
}

async fn sqlite(_test: &str) -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().to_owned();
    let store = SqliteStore::open(&path).expect("opens");
    assert!(store.created());
    Store::migrate(&store).await.expect("migrates");
    Some(Fixture {
        store: Arc::new(store),
        reopen: Box::new(move || {
            let path = path.clone();
            Box::pin(
                async move { Arc::new(SqliteStore::open(&path).expect("opens")) as Arc<dyn Store> },
            )
        }),
        _keep: Box::new(dir),
    })
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod on_postgres {
            $(#[tokio::test]
            async fn $test() {
                if let Some(fixture) = super::postgres(stringify!($test)).await {
                    super::$test(fixture).await;
                }
            })*
        }
        mod on_sqlite {
            $(#[tokio::test]
            async fn $test() {
                if let Some(fixture) = super::sqlite(stringify!($test)).await {
                    super::$test(fixture).await;
                }
            })*
        }
    };
}

conformance!(
    appends_in_order_and_reads_back,
    one_commit_carries_many_spaces,
    idempotency_survives_a_restart,
    load_is_the_latest_snapshot_plus_the_tail,
    quarantine_lists_counts_releases_and_drops,
    a_refused_row_is_isolated_and_the_rows_before_it_commit,
    migrations_are_idempotent_and_the_schema_check_is_clean,
);

fn entry(space: &str, seq: u64, operation_id: &str) -> NewLogEntry {
    NewLogEntry::of(
        space,
        seq,
        operation_id,
        Some("client-1".into()),
        &Operation::new(
            "createCard",
            json!({"operationId": operation_id, "id": format!("c{seq}"), "x": seq, "y": 0, "name": "ü ✓"}),
        ),
    )
}

fn numbered(space: &str, from: u64, to: u64) -> Vec<NewLogEntry> {
    (from..=to)
        .map(|seq| entry(space, seq, &format!("op{seq}")))
        .collect()
}

fn seqs(entries: &[spacesync_store::LogEntry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.seq).collect()
}

async fn appends_in_order_and_reads_back(fixture: Fixture) {
    let store = &fixture.store;
    let batch = numbered("s1", 1, 5);
    let outcome = store.append(&batch).await.expect("appends");
    assert_eq!((outcome.committed, outcome.poison.is_none()), (5, true));
    let loaded = store.load("s1").await.expect("loads");
    assert!(loaded.snapshot.is_none());
    assert_eq!(seqs(&loaded.tail), [1, 2, 3, 4, 5]);
    assert_eq!(
        Some(&loaded.tail[2].op),
        batch[2].payload.decode().ok().as_ref(),
        "the op comes back exactly"
    );
    // With the log's own text of it, which decodes to the same op.
    assert_eq!(
        loaded.tail[2].payload.decode().ok().as_ref(),
        Some(&loaded.tail[2].op)
    );
    assert_eq!(loaded.tail[2].operation_id, "op3");
    assert_eq!(
        seqs(&store.log_after("s1", 3, None).await.expect("reads")),
        [4, 5]
    );
    assert_eq!(
        seqs(&store.log_after("s1", 0, Some(2)).await.expect("reads")),
        [1, 2]
    );
    assert!(store.load("empty").await.expect("loads").tail.is_empty());
    assert!(
        store
            .append(&[])
            .await
            .expect("appends nothing")
            .poison
            .is_none()
    );
    store.ping().await.expect("answers");
}

async fn one_commit_carries_many_spaces(fixture: Fixture) {
    let store = &fixture.store;
    let mut batch = Vec::new();
    for seq in 1..=3 {
        for space in ["a", "b", "c"] {
            // The same op ids in every space: unique per space, not globally.
            batch.push(entry(space, seq, &format!("op{seq}")));
        }
    }
    let outcome = store.append(&batch).await.expect("appends");
    assert_eq!(outcome.committed, 9);
    for space in ["a", "b", "c"] {
        assert_eq!(
            seqs(&store.load(space).await.expect("loads").tail),
            [1, 2, 3]
        );
    }
}

async fn idempotency_survives_a_restart(fixture: Fixture) {
    fixture
        .store
        .append(&numbered("s", 1, 3))
        .await
        .expect("appends");
    let store = (fixture.reopen)().await;
    assert_eq!(
        store.prior("s", "op2").await.expect("looks up"),
        Some(PriorRecord::Logged(2))
    );
    assert_eq!(store.prior("s", "nope").await.expect("looks up"), None);
    assert_eq!(store.prior("other", "op2").await.expect("looks up"), None);
    // Many ids in one lookup: those the space's log holds, with their seqs.
    let ids: Vec<String> = ["op3", "nope", "op1"].map(String::from).to_vec();
    let logged = store.logged_seqs("s", &ids).await.expect("looks up");
    assert_eq!(
        logged,
        [("op1".to_owned(), 1), ("op3".to_owned(), 3)]
            .into_iter()
            .collect()
    );
    assert!(
        store
            .logged_seqs("other", &ids)
            .await
            .expect("looks up")
            .is_empty()
    );
    assert!(
        store
            .logged_seqs("s", &[])
            .await
            .expect("looks up")
            .is_empty()
    );
    // The log refuses a second row with the same op id or the same seq, and says which.
    let same_id = store
        .append(&[entry("s", 4, "op1")])
        .await
        .expect("answers");
    let poison = same_id.poison.expect("refused");
    assert_eq!(
        (same_id.committed, poison.kind),
        (0, PoisonKind::DuplicateOperation)
    );
    assert!(!poison.error.is_transient(), "{}", poison.error);
    let same_seq = store
        .append(&[entry("s", 3, "new")])
        .await
        .expect("answers");
    let poison = same_seq.poison.expect("refused");
    assert_eq!(poison.kind, PoisonKind::SeqTaken);
    assert!(!poison.error.is_transient());
    assert_eq!(store.load("s").await.expect("loads").tail.len(), 3);
}

async fn load_is_the_latest_snapshot_plus_the_tail(fixture: Fixture) {
    let store = &fixture.store;
    store.append(&numbered("s", 1, 6)).await.expect("appends");
    for seq in [2u64, 4] {
        let snapshot = StoredSnapshot {
            seq,
            format: 1,
            data: vec![seq as u8; 8],
        };
        store.write_snapshot("s", &snapshot).await.expect("writes");
    }
    // Writing the same seq again replaces it.
    let again = StoredSnapshot {
        seq: 4,
        format: 1,
        data: vec![9; 4],
    };
    store.write_snapshot("s", &again).await.expect("writes");
    let loaded = store.load("s").await.expect("loads");
    let snapshot = loaded.snapshot.expect("has a snapshot");
    assert_eq!((snapshot.seq, snapshot.data), (4, vec![9u8; 4]));
    assert_eq!(seqs(&loaded.tail), [5, 6]);
    let reopened = (fixture.reopen)().await;
    assert_eq!(
        reopened
            .load("s")
            .await
            .expect("loads")
            .snapshot
            .map(|s| s.seq),
        Some(4)
    );
}

async fn quarantine_lists_counts_releases_and_drops(fixture: Fixture) {
    let store = &fixture.store;
    let op = Operation::new(
        "createCard",
        json!({"operationId": "q1", "id": "a", "x": "left"}),
    );
    let record = |space: &str, id: &str, code: &str| NewQuarantine {
        space_id: space.into(),
        operation_id: id.into(),
        client_id: Some("c".into()),
        op: op.clone(),
        code: code.into(),
        detail: "x must be a finite number".into(),
    };
    for _ in 0..3 {
        store
            .quarantine_batch(&[record("s", "q1", "malformed_operation")])
            .await
            .expect("quarantines");
    }
    store
        .quarantine_batch(&[
            record("t", "q2", "unknown_operation"),
            record("s", "q3", "internal_error"),
        ])
        .await
        .expect("quarantines");
    let entry = store
        .quarantine_get("s", "q1")
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        (entry.attempts, entry.code.as_str(), entry.name.as_str()),
        (3, "malformed_operation", "createCard")
    );
    assert_eq!(entry.payload["body"]["x"], json!("left"));
    assert!(entry.last_seen_unix_ms >= entry.first_seen_unix_ms);
    assert_eq!(
        store.quarantine_list(None, 10).await.expect("lists").len(),
        3
    );
    assert_eq!(
        store
            .quarantine_list(Some("t"), 10)
            .await
            .expect("lists")
            .len(),
        1
    );
    assert_eq!(
        store.quarantine_list(None, 1).await.expect("lists").len(),
        1
    );
    assert!(matches!(
        store.prior("s", "q1").await.expect("looks up"),
        Some(PriorRecord::Quarantined { code, .. }) if code == "malformed_operation"
    ));
    // Release: out of the quarantine and into the log; drop: out for good.
    assert!(store.quarantine_remove("s", "q3").await.expect("removes"));
    store
        .append(&[entry_with_id("s", 1, "q3")])
        .await
        .expect("appends");
    assert_eq!(
        store.prior("s", "q3").await.expect("looks up"),
        Some(PriorRecord::Logged(1))
    );
    assert!(store.quarantine_remove("s", "q1").await.expect("drops"));
    assert!(
        !store
            .quarantine_remove("s", "q1")
            .await
            .expect("already gone")
    );
    assert!(
        store
            .quarantine_get("s", "q1")
            .await
            .expect("reads")
            .is_none()
    );
    let reopened = (fixture.reopen)().await;
    assert_eq!(
        reopened
            .quarantine_list(None, 10)
            .await
            .expect("lists")
            .len(),
        1
    );
}

fn entry_with_id(space: &str, seq: u64, operation_id: &str) -> NewLogEntry {
    entry(space, seq, operation_id)
}

async fn a_refused_row_is_isolated_and_the_rows_before_it_commit(fixture: Fixture) {
    let store = &fixture.store;
    store
        .append(&[entry("s", 1, "old")])
        .await
        .expect("appends");
    // Row 3 replays an op id the log has: refused for good; rows 4 and 5 are not written
    // (their seqs assumed row 3); rows 1 and 2 commit.
    let batch = vec![
        entry("s", 2, "a"),
        entry("s", 3, "b"),
        entry("s", 4, "old"),
        entry("s", 5, "c"),
        entry("s", 6, "d"),
    ];
    let outcome = store.append(&batch).await.expect("answers");
    assert_eq!(outcome.committed, 2);
    let poison = outcome.poison.expect("the refused row is named");
    assert_eq!(
        (poison.index, poison.kind),
        (2, PoisonKind::DuplicateOperation)
    );
    assert!(!poison.error.is_transient());
    assert_eq!(seqs(&store.load("s").await.expect("loads").tail), [1, 2, 3]);
    // The caller re-sequences the rest.
    let rest = store
        .append(&[entry("s", 4, "c"), entry("s", 5, "d")])
        .await
        .expect("appends");
    assert_eq!((rest.committed, rest.poison.is_none()), (2, true));
}

async fn migrations_are_idempotent_and_the_schema_check_is_clean(fixture: Fixture) {
    let store = &fixture.store;
    for _ in 0..3 {
        assert!(store.migrate().await.expect("migrates").is_current());
    }
    let status = store.schema_status().await.expect("reads");
    assert!(status.is_current() && status.applied == [1], "{status:?}");
    let report = store.doctor().await.expect("inspects");
    assert!(report.schema_is_clean(), "{report:?}");
    assert!(report.warnings.is_empty(), "{report:?}");
}
