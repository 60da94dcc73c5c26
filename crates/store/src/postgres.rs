//! The PostgreSQL store: a deadpool pool of tokio-postgres connections.

use std::collections::HashMap;

use deadpool_postgres::{Hook, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use spacesync_protocol::{OpJson, Operation, Seq};
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, Type};

use crate::error::StoreError;
use crate::migrations::{self, MIGRATION_LOCK_KEY, SchemaStatus};

/// An op to append to the log, already serialised: the server makes an op's JSON once and
/// keeps the same text for resumes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLogEntry {
    pub space_id: String,
    pub seq: Seq,
    pub operation_id: String,
    pub client_id: Option<String>,
    /// The op's name (the log's `name` column).
    pub name: String,
    /// The whole op as JSON (the log's `payload` column).
    pub payload: OpJson,
}

impl NewLogEntry {
    /// An entry for `op`, serialising it.
    pub fn of(
        space_id: impl Into<String>,
        seq: Seq,
        operation_id: impl Into<String>,
        client_id: Option<String>,
        op: &Operation,
    ) -> NewLogEntry {
        NewLogEntry {
            space_id: space_id.into(),
            seq,
            operation_id: operation_id.into(),
            client_id,
            name: op.name.clone(),
            payload: OpJson::of(op),
        }
    }
}

/// An op read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub seq: Seq,
    pub operation_id: String,
    pub op: Operation,
    /// The op's JSON as the log holds it (the server keeps it for resumes).
    pub payload: OpJson,
}

impl LogEntry {
    /// An entry from a log row, decoding its payload text.
    pub(crate) fn from_row(
        seq: Seq,
        operation_id: String,
        payload: &str,
    ) -> Result<LogEntry, StoreError> {
        let (op, payload) = OpJson::parse(payload)
            .map_err(|error| StoreError::Corrupt(format!("op_log payload: {error}")))?;
        Ok(LogEntry {
            seq,
            operation_id,
            op,
            payload,
        })
    }
}

/// A stored snapshot: the encoded space at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub seq: Seq,
    pub format: i32,
    pub data: Vec<u8>,
}

/// What loading a space returns: its latest snapshot and the log after it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadedSpace {
    pub snapshot: Option<StoredSnapshot>,
    pub tail: Vec<LogEntry>,
}

/// The result of appending a batch: how many entries (a prefix) committed, and the entry
/// that failed permanently, if one did. Entries after the poison one were not written: their
/// sequence numbers assumed the poison op, so the caller re-sequences them.
#[derive(Debug)]
pub struct AppendOutcome {
    pub committed: usize,
    pub poison: Option<Poison>,
}

/// The entry of a batch that the store refused for good.
#[derive(Debug)]
pub struct Poison {
    /// Its index in the batch.
    pub index: usize,
    pub kind: PoisonKind,
    pub error: StoreError,
}

/// Why an entry was refused. Only `Refused` is the op's fault; the other two mean the
/// caller's memory disagrees with the log and must be rebuilt from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonKind {
    /// The op id is already in the space's log (a replay of an op older than the memory of
    /// the actor, typically one from before the latest snapshot).
    DuplicateOperation,
    /// The sequence number is taken: something else wrote to the space.
    SeqTaken,
    /// The database refuses the data itself (for example a NUL character in text).
    Refused,
}

impl PoisonKind {
    pub(crate) fn of(error: &StoreError) -> PoisonKind {
        match error.violated_constraint() {
            Some("op_log_operation_id_key") => PoisonKind::DuplicateOperation,
            Some("op_log_pkey") => PoisonKind::SeqTaken,
            _ => PoisonKind::Refused,
        }
    }
}

/// An op to quarantine (or, when it is already there, to count one more attempt of).
#[derive(Debug, Clone, PartialEq)]
pub struct NewQuarantine {
    pub space_id: String,
    pub operation_id: String,
    pub client_id: Option<String>,
    pub op: Operation,
    pub code: String,
    pub detail: String,
}

/// What the store knows about an op id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorRecord {
    Logged(Seq),
    Quarantined { code: String, detail: String },
}

/// A quarantined op.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineEntry {
    pub space_id: String,
    pub operation_id: String,
    pub client_id: Option<String>,
    pub name: String,
    pub payload: Value,
    pub code: String,
    pub detail: String,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    pub attempts: i32,
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PgStore")
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

/// A setting of the server's own database sessions, made on each new connection (`SET`)
/// unless the database URL's `options` set `backend_flush_after` themselves.
///
/// `backend_flush_after`: once a session has written 256 kB of data pages (the log's heap and
/// index pages it evicts from a full `shared_buffers`), PostgreSQL asks the kernel to write
/// them out. PostgreSQL's default leaves a session's writes to the kernel, which keeps them
/// for 30 s and then writes them in one burst, and every commit's WAL flush waits behind that
/// burst: at half of peak on the test VM, 350–380 MB at a time and a 96–135 ms stall of every
/// ack. With it: 128–233 MB dirty at most, slow acks (over 32 ms) cut by ~40%
/// (docs/benchmarks.md, "What the tail is made of").
///
/// A `SET`, not a startup option: a database or a pooler that does not know the setting
/// refuses only the `SET`, which is logged, and the connection is used as it is.
pub const SESSION_SETTING: &str = "SET backend_flush_after = '256kB'";

const INSERT_BATCH: &str = "INSERT INTO op_log (space_id, seq, operation_id, client_id, name, payload) \
     SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::jsonb[])";
const INSERT_ONE: &str = "INSERT INTO op_log (space_id, seq, operation_id, client_id, name, payload) \
     VALUES ($1, $2, $3, $4, $5, $6)";

impl PgStore {
    /// A pool for `url` (a libpq URL or key=value string). Connections open lazily.
    ///
    /// Each new connection gets [`SESSION_SETTING`] unless the URL's `options` set it.
    pub fn connect(url: &str, max_connections: usize) -> Result<PgStore, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|error: tokio_postgres::Error| StoreError::Config(error.to_string()))?;
        Ok(PgStore {
            pool: pool(&config, max_connections)?,
            config,
        })
    }

    /// The same database through a new pool of `max_connections` (opened lazily, on the
    /// runtime that first uses them).
    pub fn with_pool_size(&self, max_connections: usize) -> Result<PgStore, StoreError> {
        Ok(PgStore {
            pool: pool(&self.config, max_connections)?,
            config: self.config.clone(),
        })
    }

    /// Where this store's data lives (host, port and database; never the password).
    pub fn description(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let dbname = self.config.get_dbname().unwrap_or("(default)");
        format!("PostgreSQL database {dbname} on {host}:{port}")
    }

    /// The value of a setting in the store's own sessions, for checking what
    /// [`SESSION_SETTING`] and the URL's `options` gave them.
    pub async fn session_setting(&self, name: &str) -> Result<String, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await?;
        Ok(row.get(0))
    }

    /// Applies pending migrations under an advisory lock, on a dedicated connection.
    pub async fn migrate(&self) -> Result<SchemaStatus, StoreError> {
        let (mut client, connection) = self.config.connect(NoTls).await?;
        let connection = tokio::spawn(connection);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let result = migrations::migrations::runner()
            .run_async(&mut client)
            .await;
        let unlock = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await;
        drop(client);
        connection.abort();
        result?;
        unlock?;
        self.schema_status().await
    }

    /// Compares the applied migrations with the embedded ones, without changing anything.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let client = self.pool.get().await?;
        let exists: bool = client
            .query_one(
                "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        let applied: Vec<i32> = if exists {
            client
                .query(
                    "SELECT version FROM refinery_schema_history ORDER BY version",
                    &[],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect()
        } else {
            Vec::new()
        };
        let embedded = migrations::embedded_versions();
        Ok(SchemaStatus {
            pending: embedded
                .iter()
                .filter(|version| !applied.contains(version))
                .copied()
                .collect(),
            unknown: applied
                .iter()
                .filter(|version| !embedded.contains(version))
                .copied()
                .collect(),
            applied,
        })
    }

    /// A pooled connection, for the store's own modules.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pool.get().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Appends a batch in one transaction: one multi-row `INSERT … SELECT FROM unnest(…)` for
    /// small batches, binary `COPY` from [`COPY_THRESHOLD`] rows on (each is faster in its
    /// range; `docs/benchmarks.md` has the measurement). If the batch fails permanently, the
    /// poison entry is found by inserting one entry at a time under savepoints, and the good
    /// prefix before it is committed. Transient failures are returned as errors with nothing
    /// committed; the caller retries.
    pub async fn append(&self, entries: &[NewLogEntry]) -> Result<AppendOutcome, StoreError> {
        let method = if entries.len() >= COPY_THRESHOLD {
            AppendMethod::Copy
        } else {
            AppendMethod::Unnest
        };
        self.append_with(entries, method).await
    }

    /// [`PgStore::append`] with a chosen method (the benchmark compares them).
    pub async fn append_with(
        &self,
        entries: &[NewLogEntry],
        method: AppendMethod,
    ) -> Result<AppendOutcome, StoreError> {
        if entries.is_empty() {
            return Ok(AppendOutcome {
                committed: 0,
                poison: None,
            });
        }
        let mut client = self.pool.get().await?;
        let written = match method {
            // One statement is one transaction (autocommit): all or nothing, and durable when
            // `execute` returns (it waits for ReadyForQuery, which follows the commit): one
            // round trip instead of three with BEGIN and COMMIT around it.
            AppendMethod::Unnest => insert_unnest(&client, entries).await,
            // `COPY`'s sink returns at CommandComplete, before an implicit commit would be
            // flushed, so it runs in an explicit transaction whose COMMIT is awaited.
            AppendMethod::Copy => insert_copy(&mut client, entries).await,
        };
        match written {
            Ok(()) => {
                return Ok(AppendOutcome {
                    committed: entries.len(),
                    poison: None,
                });
            }
            Err(error) => {
                if error.is_transient() {
                    return Err(error);
                }
            }
        }
        self.append_isolating(&mut client, entries).await
    }

    async fn append_isolating(
        &self,
        client: &mut deadpool_postgres::Object,
        entries: &[NewLogEntry],
    ) -> Result<AppendOutcome, StoreError> {
        let mut transaction = client.transaction().await?;
        let statement = transaction.prepare(INSERT_ONE).await?;
        for (index, entry) in entries.iter().enumerate() {
            let savepoint = transaction.savepoint("entry").await?;
            let row = Row::of(entry)?;
            let inserted = savepoint.execute(&statement, &row.params()).await;
            match inserted {
                Ok(_) => savepoint.commit().await?,
                Err(error) => {
                    let error = StoreError::from(error);
                    if error.is_transient() {
                        return Err(error);
                    }
                    savepoint.rollback().await?;
                    transaction.commit().await?;
                    return Ok(AppendOutcome {
                        committed: index,
                        poison: Some(Poison {
                            index,
                            kind: PoisonKind::of(&error),
                            error,
                        }),
                    });
                }
            }
        }
        transaction.commit().await?;
        Ok(AppendOutcome {
            committed: entries.len(),
            poison: None,
        })
    }

    /// Loads a space: its latest snapshot and every log entry after it, in order.
    pub async fn load(&self, space_id: &str) -> Result<LoadedSpace, StoreError> {
        let client = self.pool.get().await?;
        let snapshot = client
            .query_opt(
                "SELECT seq, format, data FROM snapshots WHERE space_id = $1 ORDER BY seq DESC LIMIT 1",
                &[&space_id],
            )
            .await?
            .map(|row| StoredSnapshot {
                seq: seq_from_sql(row.get(0)),
                format: row.get(1),
                data: row.get(2),
            });
        let after = snapshot.as_ref().map_or(0, |snapshot| snapshot.seq);
        let tail = self.log_after_with(&client, space_id, after, None).await?;
        Ok(LoadedSpace { snapshot, tail })
    }

    /// Log entries after `after`, in order, at most `limit` of them.
    pub async fn log_after(
        &self,
        space_id: &str,
        after: Seq,
        limit: Option<i64>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let client = self.pool.get().await?;
        self.log_after_with(&client, space_id, after, limit).await
    }

    async fn log_after_with(
        &self,
        client: &deadpool_postgres::Object,
        space_id: &str,
        after: Seq,
        limit: Option<i64>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let after = seq_to_sql(after)?;
        let rows = client
            .query(
                "SELECT seq, operation_id, payload FROM op_log WHERE space_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
                &[&space_id, &after, &limit.unwrap_or(i64::MAX)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                // A payload that is not JSON text is a corrupt row, not a database fault to retry.
                let RawJson(payload) = row
                    .try_get(2)
                    .map_err(|error| StoreError::Corrupt(format!("op_log payload: {error}")))?;
                LogEntry::from_row(seq_from_sql(row.get(0)), row.get(1), payload)
            })
            .collect()
    }

    /// Stores a snapshot and drops older ones of the same space (the log keeps the history).
    pub async fn write_snapshot(
        &self,
        space_id: &str,
        snapshot: &StoredSnapshot,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let seq = seq_to_sql(snapshot.seq)?;
        transaction
            .execute(
                "INSERT INTO snapshots (space_id, seq, format, data) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT ON CONSTRAINT snapshots_pkey DO UPDATE SET format = EXCLUDED.format, data = EXCLUDED.data",
                &[&space_id, &seq, &snapshot.format, &snapshot.data],
            )
            .await?;
        transaction
            .execute(
                "DELETE FROM snapshots WHERE space_id = $1 AND seq < $2",
                &[&space_id, &seq],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// What the store knows about an op id: its seq in the log, or its quarantine record.
    pub async fn prior(
        &self,
        space_id: &str,
        operation_id: &str,
    ) -> Result<Option<PriorRecord>, StoreError> {
        let client = self.pool.get().await?;
        if let Some(row) = client
            .query_opt(
                "SELECT seq FROM op_log WHERE space_id = $1 AND operation_id = $2",
                &[&space_id, &operation_id],
            )
            .await?
        {
            return Ok(Some(PriorRecord::Logged(seq_from_sql(row.get(0)))));
        }
        Ok(client
            .query_opt(
                "SELECT code, detail FROM quarantine WHERE space_id = $1 AND operation_id = $2",
                &[&space_id, &operation_id],
            )
            .await?
            .map(|row| PriorRecord::Quarantined {
                code: row.get(0),
                detail: row.get(1),
            }))
    }

    /// Which of `operation_ids` the space's log holds, with their seqs, in one query.
    pub async fn logged_seqs(
        &self,
        space_id: &str,
        operation_ids: &[String],
    ) -> Result<HashMap<String, Seq>, StoreError> {
        if operation_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT operation_id, seq FROM op_log WHERE space_id = $1 AND operation_id = ANY($2)",
                &[&space_id, &operation_ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), seq_from_sql(row.get(1))))
            .collect())
    }

    /// Quarantines an op, or counts one more attempt of an op already quarantined.
    #[allow(clippy::too_many_arguments)]
    pub async fn quarantine(
        &self,
        space_id: &str,
        operation_id: &str,
        client_id: Option<&str>,
        op: &Operation,
        code: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.quarantine_batch(&[NewQuarantine {
            space_id: space_id.to_owned(),
            operation_id: operation_id.to_owned(),
            client_id: client_id.map(str::to_owned),
            op: op.clone(),
            code: code.to_owned(),
            detail: detail.to_owned(),
        }])
        .await
    }

    /// Quarantines ops in one transaction; an op already there counts one more attempt.
    pub async fn quarantine_batch(&self, records: &[NewQuarantine]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let statement = transaction
            .prepare(
                "INSERT INTO quarantine (space_id, operation_id, client_id, name, payload, code, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT ON CONSTRAINT quarantine_pkey DO UPDATE \
                 SET attempts = quarantine.attempts + 1, last_seen = now()",
            )
            .await?;
        for record in records {
            // Text that jsonb refuses (a NUL character) must not stop the op from being
            // quarantined: the payload is then kept as a JSON string of its escaped text.
            let payload = operation_json(&record.op);
            let payload = match serde_json::to_string(&payload) {
                Ok(text) if text.contains("\\u0000") => Value::String(text),
                _ => payload,
            };
            let detail = record.detail.replace('\0', "\\0");
            let name = record.op.name.replace('\0', "\\0");
            transaction
                .execute(
                    &statement,
                    &[
                        &record.space_id,
                        &record.operation_id,
                        &record.client_id,
                        &name,
                        &Json(payload),
                        &record.code,
                        &detail,
                    ],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Quarantined ops, newest first, optionally of one space.
    pub async fn quarantine_list(
        &self,
        space_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<QuarantineEntry>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "{QUARANTINE_COLUMNS} WHERE ($1::text IS NULL OR space_id = $1) \
                     ORDER BY last_seen DESC, space_id, operation_id LIMIT $2"
                ),
                &[&space_id, &limit],
            )
            .await?;
        Ok(rows.iter().map(quarantine_entry).collect())
    }

    /// One quarantined op.
    pub async fn quarantine_get(
        &self,
        space_id: &str,
        operation_id: &str,
    ) -> Result<Option<QuarantineEntry>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_opt(
                &format!("{QUARANTINE_COLUMNS} WHERE space_id = $1 AND operation_id = $2"),
                &[&space_id, &operation_id],
            )
            .await?
            .as_ref()
            .map(quarantine_entry))
    }

    /// Removes a quarantined op (dropped for good, or about to be released and re-applied).
    /// Returns whether it existed.
    pub async fn quarantine_remove(
        &self,
        space_id: &str,
        operation_id: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let removed = client
            .execute(
                "DELETE FROM quarantine WHERE space_id = $1 AND operation_id = $2",
                &[&space_id, &operation_id],
            )
            .await?;
        Ok(removed > 0)
    }
}

const QUARANTINE_COLUMNS: &str = "SELECT space_id, operation_id, client_id, name, payload, code, detail, \
     (extract(epoch from first_seen) * 1000)::bigint, (extract(epoch from last_seen) * 1000)::bigint, attempts \
     FROM quarantine";

fn quarantine_entry(row: &tokio_postgres::Row) -> QuarantineEntry {
    let Json(payload): Json<Value> = row.get(4);
    QuarantineEntry {
        space_id: row.get(0),
        operation_id: row.get(1),
        client_id: row.get(2),
        name: row.get(3),
        payload,
        code: row.get(5),
        detail: row.get(6),
        first_seen_unix_ms: row.get(7),
        last_seen_unix_ms: row.get(8),
        attempts: row.get(9),
    }
}

fn pool(config: &tokio_postgres::Config, max_connections: usize) -> Result<Pool, StoreError> {
    pool_with(config, max_connections, SESSION_SETTING)
}

/// [`pool`] with the statement each new connection runs first (a test passes one the database
/// refuses).
fn pool_with(
    config: &tokio_postgres::Config,
    max_connections: usize,
    setting: &'static str,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager).max_size(max_connections.max(1));
    let url_sets_it = config
        .get_options()
        .is_some_and(|options| options.contains("backend_flush_after"));
    if !url_sets_it {
        builder = builder.post_create(Hook::async_fn(move |client, _| {
            Box::pin(async move {
                if let Err(error) = client.batch_execute(setting).await {
                    tracing::warn!(%error, setting, "the database refused a session setting; going on without it");
                }
                Ok(())
            })
        }));
    }
    builder
        .build()
        .map_err(|error| StoreError::Config(error.to_string()))
}

/// The op as stored in the log: `{name, body}` plus `operationId` when it was given apart.
fn operation_json(op: &Operation) -> Value {
    serde_json::to_value(op).unwrap_or(Value::Null)
}

fn seq_to_sql(seq: Seq) -> Result<i64, StoreError> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Corrupt(format!("sequence number {seq} is too large")))
}

fn seq_from_sql(seq: i64) -> Seq {
    Seq::try_from(seq).unwrap_or_default()
}

/// How a batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendMethod {
    /// One `INSERT … SELECT FROM unnest($1, …)` with a prepared statement.
    Unnest,
    /// Binary `COPY … FROM STDIN`.
    Copy,
}

/// Batches of at least this many rows are written with binary `COPY`.
pub const COPY_THRESHOLD: usize = 256;

async fn insert_unnest(
    client: &deadpool_postgres::ClientWrapper,
    entries: &[NewLogEntry],
) -> Result<(), StoreError> {
    let columns = Columns::of(entries)?;
    // Prepared once per pooled connection: a batch costs one round trip.
    let statement = client.prepare_cached(INSERT_BATCH).await?;
    client
        .execute(
            &statement,
            &[
                &columns.space_ids,
                &columns.seqs,
                &columns.operation_ids,
                &columns.client_ids,
                &columns.names,
                &columns.payloads,
            ],
        )
        .await?;
    Ok(())
}

/// One log row as statement parameters, in `op_log` column order.
struct Row<'a> {
    entry: &'a NewLogEntry,
    seq: i64,
    payload: RawJson<'a>,
}

impl<'a> Row<'a> {
    fn of(entry: &'a NewLogEntry) -> Result<Row<'a>, StoreError> {
        Ok(Row {
            entry,
            seq: seq_to_sql(entry.seq)?,
            payload: RawJson(entry.payload.as_str()),
        })
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
        [
            &self.entry.space_id,
            &self.seq,
            &self.entry.operation_id,
            &self.entry.client_id,
            &self.entry.name,
            &self.payload,
        ]
    }
}

async fn insert_copy(
    client: &mut deadpool_postgres::Object,
    entries: &[NewLogEntry],
) -> Result<(), StoreError> {
    let transaction = client.transaction().await?;
    let sink = transaction
        .copy_in(
            "COPY op_log (space_id, seq, operation_id, client_id, name, payload) FROM STDIN BINARY",
        )
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
        ],
    );
    let mut writer = std::pin::pin!(writer);
    for entry in entries {
        let row = Row::of(entry)?;
        writer.as_mut().write(&row.params()).await?;
    }
    writer.finish().await?;
    transaction.commit().await?;
    Ok(())
}

/// The batch as columns, for one `INSERT … SELECT FROM unnest(…)`; borrowed, so a batch is
/// serialised straight from the entries.
struct Columns<'a> {
    space_ids: Vec<&'a str>,
    seqs: Vec<i64>,
    operation_ids: Vec<&'a str>,
    client_ids: Vec<Option<&'a str>>,
    names: Vec<&'a str>,
    payloads: Vec<RawJson<'a>>,
}

impl<'a> Columns<'a> {
    fn of(entries: &'a [NewLogEntry]) -> Result<Columns<'a>, StoreError> {
        Ok(Columns {
            space_ids: entries
                .iter()
                .map(|entry| entry.space_id.as_str())
                .collect(),
            seqs: entries
                .iter()
                .map(|entry| seq_to_sql(entry.seq))
                .collect::<Result<_, _>>()?,
            operation_ids: entries
                .iter()
                .map(|entry| entry.operation_id.as_str())
                .collect(),
            client_ids: entries
                .iter()
                .map(|entry| entry.client_id.as_deref())
                .collect(),
            names: entries.iter().map(|entry| entry.name.as_str()).collect(),
            payloads: entries
                .iter()
                .map(|entry| RawJson(entry.payload.as_str()))
                .collect(),
        })
    }
}

/// JSON text sent as a `json` or `jsonb` parameter, or read from such a column, as it is
/// (binary `jsonb` is a version byte, then the text), where `Json<T>` would serialise or build a
/// value.
#[derive(Debug, Clone, Copy)]
struct RawJson<'a>(&'a str);

impl<'a> tokio_postgres::types::FromSql<'a> for RawJson<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<RawJson<'a>, Box<dyn std::error::Error + Sync + Send>> {
        let text = match (*ty == Type::JSONB, raw.split_first()) {
            (false, _) => raw,
            (true, Some((1, text))) => text,
            (true, _) => return Err("unsupported jsonb version".into()),
        };
        Ok(RawJson(std::str::from_utf8(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

impl tokio_postgres::types::ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    tokio_postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use spacesync_testkit::TestDatabase;

    use super::pool_with;

    #[tokio::test]
    async fn a_session_setting_the_database_refuses_leaves_the_connection_usable() {
        let Some(database) = TestDatabase::create("refused_setting").await else {
            return;
        };
        let config: tokio_postgres::Config = database.url().parse().expect("url");
        // What a database or pooler that does not know the setting answers: an error.
        let pool = pool_with(&config, 1, "SET no_such_setting = 1").expect("pool");
        let client = pool.get().await.expect("the connection is kept");
        let row = client.query_one("SELECT 1", &[]).await.expect("usable");
        assert_eq!(row.get::<_, i32>(0), 1);
    }
}
