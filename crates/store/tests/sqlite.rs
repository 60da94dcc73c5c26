//! What only the embedded store does: where its file lives, its durability settings, its
//! migrations and the schema check on SQLite (what both stores do is in `conformance.rs`).

use spacesync_store::{DATABASE_FILE, SqliteStore, Store};

#[tokio::test]
async fn a_new_store_is_created_in_its_directory_and_migrates_only_when_asked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("nested").join("data");
    let store = SqliteStore::open(&data).expect("creates the directory and the file");
    assert!(store.created());
    assert!(data.join(DATABASE_FILE).exists());
    let status = store.schema_status().await.expect("reads");
    assert_eq!((status.applied.len(), status.pending.clone()), (0, vec![1]));
    assert!(store.describe().contains(DATABASE_FILE));
    Store::migrate(&store).await.expect("migrates");
    drop(store);
    let reopened = SqliteStore::open(&data).expect("opens");
    assert!(!reopened.created());
    assert!(reopened.schema_status().await.expect("reads").is_current());
}

#[tokio::test]
async fn doctor_flags_a_hand_added_duplicate_index() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("opens");
    Store::migrate(&store).await.expect("migrates");
    assert!(store.doctor().await.expect("inspects").schema_is_clean());
    let connection = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).expect("opens");
    connection
        .execute_batch("CREATE UNIQUE INDEX op_log_by_operation ON op_log (space_id, operation_id)")
        .expect("adds an index");
    let report = store.doctor().await.expect("inspects");
    assert_eq!(report.extra_indexes, ["op_log_by_operation"]);
    assert_eq!(report.duplicate_indexes.len(), 1);
    assert!(report.duplicate_indexes[0].contains(&"op_log_by_operation".to_owned()));
    connection
        .execute_batch("DROP INDEX op_log_by_operation")
        .expect("drops it");
    assert!(store.doctor().await.expect("inspects").schema_is_clean());
}
