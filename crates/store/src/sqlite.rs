//! The embedded store (SQLite through rusqlite's bundled build): what `spacesync serve` uses
//! when no database is configured. Same tables, keys and semantics as PostgreSQL, its own
//! migrations (`migrations/sqlite`, applied with refinery), WAL mode with
//! `synchronous=FULL`, so a commit is on disk before it is acknowledged. Every call runs on
//! tokio's blocking pool, never on the async runtime; one connection serialises them, which
//! is what SQLite does with writers anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use spacesync_protocol::{Operation, Seq};

use crate::doctor::{DoctorReport, compare};
use crate::error::StoreError;
use crate::migrations::SchemaStatus;
use crate::postgres::{
    AppendOutcome, LoadedSpace, LogEntry, NewLogEntry, NewQuarantine, Poison, PoisonKind,
    PriorRecord, QuarantineEntry, StoredSnapshot,
};
use crate::store::{Store, StoreFuture};

mod embedded {
    refinery::embed_migrations!("../../migrations/sqlite");
}

/// The file inside the data directory.
pub const DATABASE_FILE: &str = "spacesync.db";

/// The embedded store.
#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
    created: bool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

fn seq_to_sql(seq: Seq) -> Result<i64, StoreError> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Corrupt(format!("sequence number {seq} is too large")))
}

fn seq_from_sql(seq: i64) -> Seq {
    Seq::try_from(seq).unwrap_or_default()
}

fn to_json(op: &Operation) -> String {
    serde_json::to_string(op).unwrap_or_else(|_| "null".to_owned())
}

impl SqliteStore {
    /// Opens (creating it if needed) the store in `dir`. Nothing is migrated here.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| {
            StoreError::Config(format!(
                "cannot create the data directory {}: {error}",
                dir.display()
            ))
        })?;
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let path = dir.join(DATABASE_FILE);
        let created = !path.exists();
        let connection = Connection::open(&path)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        // WAL: readers do not block the writer. FULL: the WAL is synced at every commit, so an
        // acknowledged op survives a power cut, not only a process crash.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(connection)),
            path,
            created,
        })
    }

    /// Whether `open` created the database file (a brand-new store).
    pub fn created(&self) -> bool {
        self.created
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the blocking pool with the connection.
    async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().map_err(|_| {
                StoreError::Corrupt("the store's connection was poisoned by a panic".to_owned())
            })?;
            work(&mut connection)
        })
        .await
        .map_err(|error| StoreError::Corrupt(format!("a store task failed: {error}")))?
    }

    pub async fn migrate(&self) -> Result<SchemaStatus, StoreError> {
        self.call(|connection| {
            embedded::migrations::runner().run(connection)?;
            schema_status(connection)
        })
        .await
    }

    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        self.call(schema_status).await
    }

    pub async fn doctor(&self) -> Result<DoctorReport, StoreError> {
        self.call(|connection| {
            let expected = Connection::open_in_memory()?;
            let mut expected = expected;
            embedded::migrations::runner().run(&mut expected)?;
            let (live_indexes, live_constraints) = shape(connection)?;
            let (expected_indexes, expected_constraints) = shape(&expected)?;
            let mut report = compare(
                &live_indexes,
                &expected_indexes,
                &live_constraints,
                &expected_constraints,
            );
            let journal: String =
                connection.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
            if !journal.eq_ignore_ascii_case("wal") {
                report
                    .warnings
                    .push(format!("journal_mode is {journal}, not wal"));
            }
            let synchronous: i64 =
                connection.pragma_query_value(None, "synchronous", |row| row.get(0))?;
            if synchronous < 2 {
                report.warnings.push(
                    "synchronous is below FULL: acknowledged ops can be lost in a power cut"
                        .to_owned(),
                );
            }
            Ok(report)
        })
        .await
    }
}

fn schema_status(connection: &mut Connection) -> Result<SchemaStatus, StoreError> {
    let table: Option<String> = connection
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    let applied: Vec<i32> = if table.is_some() {
        let mut statement =
            connection.prepare("SELECT version FROM refinery_schema_history ORDER BY version")?;
        statement
            .query_map([], |row| row.get::<_, i32>(0))?
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let embedded: Vec<i32> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|migration| migration.version())
        .collect();
    Ok(SchemaStatus {
        pending: embedded
            .iter()
            .copied()
            .filter(|version| !applied.contains(version))
            .collect(),
        unknown: applied
            .iter()
            .copied()
            .filter(|version| !embedded.contains(version))
            .collect(),
        applied,
    })
}

/// Indexes (name → table, columns, uniqueness) and key constraints of our tables.
fn shape(
    connection: &Connection,
) -> Result<(BTreeMap<String, String>, BTreeSet<String>), StoreError> {
    let mut tables = connection.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name != 'refinery_schema_history' ORDER BY name",
    )?;
    let tables: Vec<String> = tables
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut indexes = BTreeMap::new();
    let mut constraints = BTreeSet::new();
    for table in tables {
        let mut list = connection.prepare(&format!("PRAGMA index_list(\"{table}\")"))?;
        let entries: Vec<(String, bool, String)> = list
            .query_map([], |row| {
                Ok((row.get(1)?, row.get::<_, i64>(2)? != 0, row.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        for (name, unique, origin) in entries {
            let mut info = connection.prepare(&format!("PRAGMA index_info(\"{name}\")"))?;
            let columns: Vec<String> = info
                .query_map([], |row| row.get::<_, Option<String>>(2))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect();
            let definition = format!(
                "{table}({}){}",
                columns.join(", "),
                if unique { " UNIQUE" } else { "" }
            );
            if origin == "pk" || origin == "u" {
                constraints.insert(format!("{table}.{}({origin})", columns.join(",")));
            }
            indexes.insert(name, definition);
        }
        // A WITHOUT ROWID table's primary key is the table itself, not an index.
        let mut columns = connection.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
        let mut key: Vec<(i64, String)> = columns
            .query_map([], |row| {
                Ok((row.get::<_, i64>(5)?, row.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|(position, _)| *position > 0)
            .collect();
        key.sort();
        if !key.is_empty() {
            let key: Vec<String> = key.into_iter().map(|(_, name)| name).collect();
            constraints.insert(format!("{table}.{}(pk)", key.join(",")));
        }
    }
    Ok((indexes, constraints))
}

fn append(
    connection: &mut Connection,
    entries: &[NewLogEntry],
) -> Result<AppendOutcome, StoreError> {
    let transaction = connection.transaction()?;
    let now = now_ms();
    let mut poison = None;
    {
        let mut statement = transaction.prepare_cached(
            "INSERT INTO op_log (space_id, seq, operation_id, client_id, name, payload, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (index, entry) in entries.iter().enumerate() {
            let seq = seq_to_sql(entry.seq)?;
            let inserted = statement.execute(params![
                entry.space_id,
                seq,
                entry.operation_id,
                entry.client_id,
                entry.name,
                entry.payload.as_str(),
                now
            ]);
            if let Err(error) = inserted {
                let error = StoreError::from(error);
                if error.is_transient() {
                    // Dropping the transaction rolls everything back: nothing committed.
                    return Err(error);
                }
                // A failed statement is undone on its own; the rows before it stay in the
                // transaction and commit.
                poison = Some(Poison {
                    index,
                    kind: PoisonKind::of(&error),
                    error,
                });
                break;
            }
        }
    }
    transaction.commit()?;
    let committed = poison.as_ref().map_or(entries.len(), |poison| poison.index);
    Ok(AppendOutcome { committed, poison })
}

fn log_after(
    connection: &Connection,
    space_id: &str,
    after: Seq,
    limit: Option<i64>,
) -> Result<Vec<LogEntry>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT seq, operation_id, payload FROM op_log WHERE space_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = statement
        .query_map(
            params![space_id, seq_to_sql(after)?, limit.unwrap_or(i64::MAX)],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(seq, operation_id, payload)| {
            LogEntry::from_row(seq_from_sql(seq), operation_id, &payload)
        })
        .collect()
}

const QUARANTINE_COLUMNS: &str = "SELECT space_id, operation_id, client_id, name, payload, code, detail, \
     first_seen, last_seen, attempts FROM quarantine";

fn quarantine_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<QuarantineEntry> {
    let payload: String = row.get(4)?;
    Ok(QuarantineEntry {
        space_id: row.get(0)?,
        operation_id: row.get(1)?,
        client_id: row.get(2)?,
        name: row.get(3)?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
        code: row.get(5)?,
        detail: row.get(6)?,
        first_seen_unix_ms: row.get(7)?,
        last_seen_unix_ms: row.get(8)?,
        attempts: row.get(9)?,
    })
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("embedded SQLite database {}", self.path.display())
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.call(|connection| {
            connection.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        }))
    }

    fn schema_status(&self) -> StoreFuture<'_, SchemaStatus> {
        Box::pin(SqliteStore::schema_status(self))
    }

    fn migrate(&self) -> StoreFuture<'_, SchemaStatus> {
        Box::pin(SqliteStore::migrate(self))
    }

    fn doctor(&self) -> StoreFuture<'_, DoctorReport> {
        Box::pin(SqliteStore::doctor(self))
    }

    fn append<'a>(&'a self, entries: &'a [NewLogEntry]) -> StoreFuture<'a, AppendOutcome> {
        let entries = entries.to_vec();
        Box::pin(self.call(move |connection| {
            if entries.is_empty() {
                return Ok(AppendOutcome {
                    committed: 0,
                    poison: None,
                });
            }
            append(connection, &entries)
        }))
    }

    fn load<'a>(&'a self, space_id: &'a str) -> StoreFuture<'a, LoadedSpace> {
        let space_id = space_id.to_owned();
        Box::pin(self.call(move |connection| {
            let snapshot = connection
                .query_row(
                    "SELECT seq, format, data FROM snapshots WHERE space_id = ?1 ORDER BY seq DESC LIMIT 1",
                    params![space_id],
                    |row| {
                        Ok(StoredSnapshot {
                            seq: seq_from_sql(row.get(0)?),
                            format: row.get(1)?,
                            data: row.get(2)?,
                        })
                    },
                )
                .optional()?;
            let after = snapshot.as_ref().map_or(0, |snapshot| snapshot.seq);
            let tail = log_after(connection, &space_id, after, None)?;
            Ok(LoadedSpace { snapshot, tail })
        }))
    }

    fn log_after<'a>(
        &'a self,
        space_id: &'a str,
        after: Seq,
        limit: Option<i64>,
    ) -> StoreFuture<'a, Vec<LogEntry>> {
        let space_id = space_id.to_owned();
        Box::pin(self.call(move |connection| log_after(connection, &space_id, after, limit)))
    }

    fn write_snapshot<'a>(
        &'a self,
        space_id: &'a str,
        snapshot: &'a StoredSnapshot,
    ) -> StoreFuture<'a, ()> {
        let space_id = space_id.to_owned();
        let snapshot = snapshot.clone();
        Box::pin(self.call(move |connection| {
            let transaction = connection.transaction()?;
            let seq = seq_to_sql(snapshot.seq)?;
            transaction.execute(
                "INSERT INTO snapshots (space_id, seq, format, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (space_id, seq) DO UPDATE SET format = excluded.format, data = excluded.data",
                params![space_id, seq, snapshot.format, snapshot.data, now_ms()],
            )?;
            transaction.execute(
                "DELETE FROM snapshots WHERE space_id = ?1 AND seq < ?2",
                params![space_id, seq],
            )?;
            transaction.commit()?;
            Ok(())
        }))
    }

    fn prior<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> StoreFuture<'a, Option<PriorRecord>> {
        let (space_id, operation_id) = (space_id.to_owned(), operation_id.to_owned());
        Box::pin(self.call(move |connection| {
            let logged: Option<i64> = connection
                .query_row(
                    "SELECT seq FROM op_log WHERE space_id = ?1 AND operation_id = ?2",
                    params![space_id, operation_id],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(seq) = logged {
                return Ok(Some(PriorRecord::Logged(seq_from_sql(seq))));
            }
            Ok(connection
                .query_row(
                    "SELECT code, detail FROM quarantine WHERE space_id = ?1 AND operation_id = ?2",
                    params![space_id, operation_id],
                    |row| {
                        Ok(PriorRecord::Quarantined {
                            code: row.get(0)?,
                            detail: row.get(1)?,
                        })
                    },
                )
                .optional()?)
        }))
    }

    fn logged_seqs<'a>(
        &'a self,
        space_id: &'a str,
        operation_ids: &'a [String],
    ) -> StoreFuture<'a, HashMap<String, Seq>> {
        let (space_id, operation_ids) = (space_id.to_owned(), operation_ids.to_vec());
        Box::pin(self.call(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq FROM op_log WHERE space_id = ?1 AND operation_id = ?2",
            )?;
            let mut logged = HashMap::new();
            for operation_id in operation_ids {
                let seq: Option<i64> = statement
                    .query_row(params![space_id, operation_id], |row| row.get(0))
                    .optional()?;
                if let Some(seq) = seq {
                    logged.insert(operation_id, seq_from_sql(seq));
                }
            }
            Ok(logged)
        }))
    }

    fn quarantine_batch<'a>(&'a self, records: &'a [NewQuarantine]) -> StoreFuture<'a, ()> {
        let records = records.to_vec();
        Box::pin(self.call(move |connection| {
            if records.is_empty() {
                return Ok(());
            }
            let transaction = connection.transaction()?;
            let now = now_ms();
            {
                let mut statement = transaction.prepare_cached(
                    "INSERT INTO quarantine (space_id, operation_id, client_id, name, payload, code, detail, first_seen, last_seen) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) \
                     ON CONFLICT (space_id, operation_id) DO UPDATE SET attempts = attempts + 1, last_seen = excluded.last_seen",
                )?;
                for record in &records {
                    statement.execute(params![
                        record.space_id,
                        record.operation_id,
                        record.client_id,
                        record.op.name,
                        to_json(&record.op),
                        record.code,
                        record.detail,
                        now
                    ])?;
                }
            }
            transaction.commit()?;
            Ok(())
        }))
    }

    fn quarantine_list<'a>(
        &'a self,
        space_id: Option<&'a str>,
        limit: i64,
    ) -> StoreFuture<'a, Vec<QuarantineEntry>> {
        let space_id = space_id.map(str::to_owned);
        Box::pin(self.call(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "{QUARANTINE_COLUMNS} WHERE (?1 IS NULL OR space_id = ?1) \
                 ORDER BY last_seen DESC, space_id, operation_id LIMIT ?2"
            ))?;
            let entries = statement
                .query_map(params![space_id, limit], quarantine_entry)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(entries)
        }))
    }

    fn quarantine_get<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> StoreFuture<'a, Option<QuarantineEntry>> {
        let (space_id, operation_id) = (space_id.to_owned(), operation_id.to_owned());
        Box::pin(self.call(move |connection| {
            Ok(connection
                .query_row(
                    &format!("{QUARANTINE_COLUMNS} WHERE space_id = ?1 AND operation_id = ?2"),
                    params![space_id, operation_id],
                    quarantine_entry,
                )
                .optional()?)
        }))
    }

    fn quarantine_remove<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (space_id, operation_id) = (space_id.to_owned(), operation_id.to_owned());
        Box::pin(self.call(move |connection| {
            let removed = connection.execute(
                "DELETE FROM quarantine WHERE space_id = ?1 AND operation_id = ?2",
                params![space_id, operation_id],
            )?;
            Ok(removed > 0)
        }))
    }
}
