//! What only the PostgreSQL store does, against a real server (what both stores do is in
//! `conformance.rs`). Each test gets a database of its own, created
//! from scratch and migrated, and dropped afterwards. The server is `SPACESYNC_TEST_DATABASE_URL`
//! (default: the local `postgres` database on 127.0.0.1:5432). Without a reachable server the
//! tests print that they were skipped; with `CI=true` they fail instead.

use serde_json::json;
use spacesync_protocol::Operation;
use spacesync_store::{
    AppendMethod, COPY_THRESHOLD, NewLogEntry, PgStore, PoisonKind, PriorRecord, StoreError,
};
use spacesync_testkit::TestDatabase;

async fn store(database: &TestDatabase) -> PgStore {
    let store = PgStore::connect(database.url(), 4).expect("pool");
    store.migrate().await.expect("migrates");
    store
}

fn entry(space: &str, seq: u64, operation_id: &str, body: serde_json::Value) -> NewLogEntry {
    let mut body = body;
    body["operationId"] = json!(operation_id);
    NewLogEntry::of(
        space,
        seq,
        operation_id,
        Some("client-1".into()),
        &Operation::new("createCard", body),
    )
}

/// `count` card creates with seqs 1.. and op ids `op1`…, card ids `c1`… and `x` = seq.
fn numbered_batch(space: &str, count: u64) -> Vec<NewLogEntry> {
    (1..=count)
        .map(|seq| {
            entry(
                space,
                seq,
                &format!("op{seq}"),
                json!({"id": format!("c{seq}"), "x": seq}),
            )
        })
        .collect()
}

async fn index_count(store_url: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(store_url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'",
            &[],
        )
        .await
        .expect("counts")
        .get(0)
}

#[tokio::test]
async fn sessions_flush_their_writes_early_unless_the_url_says_otherwise() {
    let Some(database) = TestDatabase::create("session_options").await else {
        return;
    };
    let store = PgStore::connect(database.url(), 1).expect("pool");
    assert_eq!(
        store
            .session_setting("backend_flush_after")
            .await
            .expect("shows"),
        "256kB"
    );
    // A URL whose options set it keeps its own value; its other options apply too.
    let url = format!(
        "{} options='-c backend_flush_after=0 -c application_name=mine'",
        database.url()
    );
    let store = PgStore::connect(&url, 1).expect("pool");
    assert_eq!(
        store
            .session_setting("backend_flush_after")
            .await
            .expect("shows"),
        "0"
    );
    assert_eq!(
        store
            .session_setting("application_name")
            .await
            .expect("shows"),
        "mine"
    );
}

#[tokio::test]
async fn migrating_is_idempotent_and_never_adds_indexes() {
    let Some(database) = TestDatabase::create("migrate").await else {
        return;
    };
    let store = PgStore::connect(database.url(), 2).expect("pool");
    let before = store.schema_status().await.expect("status");
    assert!(!before.is_current());
    assert_eq!(before.applied, Vec::<i32>::new());
    let status = store.migrate().await.expect("migrates");
    assert!(status.is_current(), "{status:?}");
    let indexes = index_count(database.url()).await;
    for _ in 0..30 {
        assert!(store.migrate().await.expect("migrates again").is_current());
    }
    assert_eq!(index_count(database.url()).await, indexes);
}

#[tokio::test]
async fn concurrent_migrations_take_turns_under_the_advisory_lock() {
    let Some(database) = TestDatabase::create("migrate_concurrent").await else {
        return;
    };
    let store = PgStore::connect(database.url(), 4).expect("pool");
    let (first, second) = tokio::join!(store.migrate(), store.migrate());
    assert!(first.expect("first migrates").is_current());
    assert!(second.expect("second migrates").is_current());
}

#[tokio::test]
async fn a_poison_op_is_isolated_and_the_ops_before_it_land() {
    let Some(database) = TestDatabase::create("poison").await else {
        return;
    };
    let store = store(&database).await;
    // jsonb refuses a NUL character: a real op the core accepts and the database never will.
    let batch = vec![
        entry("s", 1, "good1", json!({"id": "a"})),
        entry("s", 2, "good2", json!({"id": "b"})),
        entry("s", 3, "poison", json!({"id": "c", "name": "bad\u{0}name"})),
        entry("s", 4, "good3", json!({"id": "d"})),
    ];
    let outcome = store.append(&batch).await.expect("append answers");
    assert_eq!(outcome.committed, 2);
    let poison = outcome.poison.expect("the poison op is named");
    assert_eq!((poison.index, poison.kind), (2, PoisonKind::Refused));
    let error = poison.error;
    assert!(!error.is_transient(), "{error}");
    let loaded = store.load("s").await.expect("loads");
    assert_eq!(
        loaded
            .tail
            .iter()
            .map(|entry| entry.operation_id.as_str())
            .collect::<Vec<_>>(),
        ["good1", "good2"]
    );

    // The caller quarantines it and re-sequences the rest.
    store
        .quarantine(
            "s",
            "poison",
            Some("client-1"),
            &batch[2].payload.decode().expect("decodes"),
            "constraint_violation",
            &error.to_string(),
        )
        .await
        .expect("quarantines even a payload jsonb refuses");
    let rest = store
        .append(&[entry("s", 3, "good3", json!({"id": "d"}))])
        .await
        .expect("appends");
    assert_eq!((rest.committed, rest.poison.is_none()), (1, true));
    assert!(matches!(
        store.prior("s", "poison").await.expect("looks up"),
        Some(PriorRecord::Quarantined { code, .. }) if code == "constraint_violation"
    ));
}

#[tokio::test]
async fn an_unreachable_database_is_a_transient_error() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binds")
        .local_addr()
        .expect("addr")
        .port();
    let store = PgStore::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"),
        1,
    )
    .expect("pool");
    let error: StoreError = store.ping().await.expect_err("nothing listens");
    assert!(error.is_transient(), "{error}");
    let error = store
        .append(&[entry("s", 1, "a", json!({"id": "a"}))])
        .await
        .expect_err("nothing listens");
    assert!(error.is_transient(), "{error}");
}

#[tokio::test]
async fn doctor_is_clean_after_migrating_and_flags_drift() {
    let Some(database) = TestDatabase::create("doctor").await else {
        return;
    };
    let store = store(&database).await;
    let report = store.doctor().await.expect("doctor runs");
    assert!(report.schema_is_clean(), "{report:?}");
    assert_eq!(
        report.warnings,
        Vec::<String>::new(),
        "the test server commits durably"
    );

    // The original outage: an ORM adds the same index again at every boot.
    let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE INDEX op_log_space_id_seq ON op_log (space_id, seq);
             CREATE INDEX op_log_space_id_seq1 ON op_log (space_id, seq);
             ALTER TABLE quarantine ADD CONSTRAINT quarantine_attempts_positive CHECK (attempts > 0);
             ALTER TABLE snapshots DROP CONSTRAINT snapshots_pkey;",
        )
        .await
        .expect("drifts the schema");
    let report = store.doctor().await.expect("doctor runs");
    assert!(!report.schema_is_clean());
    assert_eq!(
        report.extra_indexes,
        ["op_log_space_id_seq", "op_log_space_id_seq1"]
    );
    assert_eq!(
        report.duplicate_indexes,
        [vec![
            "op_log_space_id_seq".to_owned(),
            "op_log_space_id_seq1".to_owned()
        ]]
    );
    assert_eq!(report.missing_indexes, ["snapshots_pkey"]);
    assert_eq!(
        report.extra_constraints,
        ["quarantine.quarantine_attempts_positive(c)"]
    );
    assert_eq!(report.missing_constraints, ["snapshots.snapshots_pkey(p)"]);
    // Doctor itself changed nothing: the scratch schema is gone.
    let scratch: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'spacesync_doctor%'",
            &[],
        )
        .await
        .expect("counts")
        .get(0);
    assert_eq!(scratch, 0);
}

#[tokio::test]
async fn both_append_methods_write_the_same_rows_and_isolate_poison() {
    let Some(database) = TestDatabase::create("append_methods").await else {
        return;
    };
    let store = store(&database).await;
    for method in [AppendMethod::Unnest, AppendMethod::Copy] {
        let space = format!("{method:?}");
        let mut batch = numbered_batch(&space, 100);
        batch[60] = entry(&space, 61, "poison", json!({"id": "p", "name": "nul\u{0}"}));
        let outcome = store.append_with(&batch, method).await.expect("answers");
        assert_eq!(outcome.committed, 60, "{method:?}");
        let poison = outcome.poison.expect("named");
        assert_eq!((poison.index, poison.kind), (60, PoisonKind::Refused));
        let clean = store
            .append_with(&numbered_batch(&format!("{space}-clean"), 100), method)
            .await
            .expect("appends");
        assert_eq!((clean.committed, clean.poison.is_none()), (100, true));
        let loaded = store.load(&format!("{space}-clean")).await.expect("loads");
        assert_eq!(loaded.tail.len(), 100);
        assert_eq!(
            Some(loaded.tail[99].op.clone()),
            numbered_batch("x", 100)[99].payload.decode().ok()
        );
    }
    // `append` picks COPY from the threshold on; the result is the same.
    let outcome = store
        .append(&numbered_batch("auto", COPY_THRESHOLD as u64))
        .await
        .expect("appends");
    assert_eq!(outcome.committed, COPY_THRESHOLD);
}

#[tokio::test]
async fn the_writer_has_connections_of_its_own() {
    let Some(database) = TestDatabase::create("writer").await else {
        return;
    };
    // A pool of one connection, open (the ping keeps it in the pool).
    let store = PgStore::connect(database.url(), 1).expect("pool");
    store.migrate().await.expect("migrates");
    store.ping().await.expect("pings");
    let writer = spacesync_store::Store::writer(&store, 2).expect("PostgreSQL gives a writer");
    writer
        .append(&numbered_batch("s", 3))
        .await
        .expect("appends");
    // The writer opened a connection of its own instead of taking the pool's only one.
    let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    let others: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("counts")
        .get(0);
    assert_eq!(others, 2, "the pool's connection and the writer's");
    let logged = store.log_after("s", 0, None).await.expect("reads");
    assert_eq!(logged.len(), 3);
}

#[tokio::test]
async fn a_log_row_that_is_not_an_op_is_corrupt_not_transient() {
    let Some(database) = TestDatabase::create("store_corrupt_row").await else {
        return;
    };
    let store = store(&database).await;
    store
        .append(&[entry("s", 1, "good", json!({"id": "a"}))])
        .await
        .expect("appends");
    // Written behind the store's back: valid JSON, but no op (`name` must be a string).
    let (admin, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    admin
        .execute(
            "INSERT INTO op_log (space_id, seq, operation_id, name, payload) \
             VALUES ('s', 2, 'bad', 'createCard', '{\"name\": 1, \"body\": {}}')",
            &[],
        )
        .await
        .expect("inserts");
    let error = store
        .load("s")
        .await
        .expect_err("a corrupt row fails the load");
    assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("op_log payload"), "{error}");
}
