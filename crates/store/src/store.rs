//! The interface the server writes through. PostgreSQL implements it here; the embedded store
//! implements the same one, and one conformance suite checks both.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use spacesync_protocol::Seq;

use crate::doctor::DoctorReport;
use crate::error::StoreError;
use crate::migrations::SchemaStatus;
use crate::postgres::{
    AppendOutcome, LoadedSpace, LogEntry, NewLogEntry, NewQuarantine, PgStore, PriorRecord,
    QuarantineEntry, StoredSnapshot,
};

/// A boxed store future (the trait is used as `Arc<dyn Store>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Durable storage of op logs, snapshots and quarantined ops.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Which store this is and where its data lives, for logs and the start banner.
    fn describe(&self) -> String;
    /// Whether the store answers.
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// Where the schema stands against this build's migrations.
    fn schema_status(&self) -> StoreFuture<'_, SchemaStatus>;
    /// Applies pending migrations (only when asked: booting never changes the schema).
    fn migrate(&self) -> StoreFuture<'_, SchemaStatus>;
    /// Compares the live schema with the migrations and checks durability settings.
    fn doctor(&self) -> StoreFuture<'_, DoctorReport>;
    /// A handle for the committer with connections of its own (`connections` of them), so
    /// commits never wait for a connection busy with a load or a snapshot, and their I/O runs
    /// on the committer's own thread. `None`: the committer shares this handle.
    fn writer(&self, _connections: usize) -> Option<Arc<dyn Store>> {
        None
    }
    /// Appends a batch (of one or several spaces) in one transaction; see [`AppendOutcome`].
    fn append<'a>(&'a self, entries: &'a [NewLogEntry]) -> StoreFuture<'a, AppendOutcome>;
    /// The latest snapshot of a space and the log after it.
    fn load<'a>(&'a self, space_id: &'a str) -> StoreFuture<'a, LoadedSpace>;
    /// Log entries after `after`, in order, at most `limit`.
    fn log_after<'a>(
        &'a self,
        space_id: &'a str,
        after: Seq,
        limit: Option<i64>,
    ) -> StoreFuture<'a, Vec<LogEntry>>;
    /// Stores a snapshot, replacing older ones of the space.
    fn write_snapshot<'a>(
        &'a self,
        space_id: &'a str,
        snapshot: &'a StoredSnapshot,
    ) -> StoreFuture<'a, ()>;
    /// What the store knows about an op id.
    fn prior<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> StoreFuture<'a, Option<PriorRecord>>;
    /// Which of `operation_ids` the space's log holds, with their seqs (one query for many
    /// ids: the server asks this for the ops it refused in a cycle).
    fn logged_seqs<'a>(
        &'a self,
        space_id: &'a str,
        operation_ids: &'a [String],
    ) -> StoreFuture<'a, HashMap<String, Seq>>;
    /// Quarantines ops (one more attempt for those already there).
    fn quarantine_batch<'a>(&'a self, records: &'a [NewQuarantine]) -> StoreFuture<'a, ()>;
    /// Quarantined ops, newest first, optionally of one space.
    fn quarantine_list<'a>(
        &'a self,
        space_id: Option<&'a str>,
        limit: i64,
    ) -> StoreFuture<'a, Vec<QuarantineEntry>>;
    /// One quarantined op.
    fn quarantine_get<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> StoreFuture<'a, Option<QuarantineEntry>>;
    /// Removes a quarantined op; whether it existed.
    fn quarantine_remove<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> StoreFuture<'a, bool>;
}

impl Store for PgStore {
    fn describe(&self) -> String {
        self.description()
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(PgStore::ping(self))
    }

    fn schema_status(&self) -> StoreFuture<'_, SchemaStatus> {
        Box::pin(PgStore::schema_status(self))
    }

    fn migrate(&self) -> StoreFuture<'_, SchemaStatus> {
        Box::pin(PgStore::migrate(self))
    }

    fn doctor(&self) -> StoreFuture<'_, DoctorReport> {
        Box::pin(PgStore::doctor(self))
    }

    fn writer(&self, connections: usize) -> Option<Arc<dyn Store>> {
        let writer = self.with_pool_size(connections).ok()?;
        Some(Arc::new(writer))
    }

    fn append<'a>(&'a self, entries: &'a [NewLogEntry]) -> StoreFuture<'a, AppendOutcome> {
        Box::pin(PgStore::append(self, entries))
    }

    fn load<'a>(&'a self, space_id: &'a str) -> StoreFuture<'a, LoadedSpace> {
        Box::pin(PgStore::load(self, space_id))
    }

    fn log_after<'a>(
        &'a self,
        space_id: &'a str,
        after: Seq,
        limit: Option<i64>,
    ) -> StoreFuture<'a, Vec<LogEntry>> {
        Box::pin(PgStore::log_after(self, space_id, after, limit))
    }

    fn write_snapshot<'a>(
        &'a self,
        space_id: &'a str,
        snapshot: &'a StoredSnapshot,
    ) -> StoreFuture<'a, ()> {
        Box::pin(PgStore::write_snapshot(self, space_id, snapshot))
    }

    fn prior<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> StoreFuture<'a, Option<PriorRecord>> {
        Box::pin(PgStore::prior(self, space_id, operation_id))
    }

    fn logged_seqs<'a>(
        &'a self,
        space_id: &'a str,
        operation_ids: &'a [String],
    ) -> StoreFuture<'a, HashMap<String, Seq>> {
        Box::pin(PgStore::logged_seqs(self, space_id, operation_ids))
    }

    fn quarantine_batch<'a>(&'a self, records: &'a [NewQuarantine]) -> StoreFuture<'a, ()> {
        Box::pin(PgStore::quarantine_batch(self, records))
    }

    fn quarantine_list<'a>(
        &'a self,
        space_id: Option<&'a str>,
        limit: i64,
    ) -> StoreFuture<'a, Vec<QuarantineEntry>> {
        Box::pin(PgStore::quarantine_list(self, space_id, limit))
    }

    fn quarantine_get<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> StoreFuture<'a, Option<QuarantineEntry>> {
        Box::pin(PgStore::quarantine_get(self, space_id, operation_id))
    }

    fn quarantine_remove<'a>(
        &'a self,
        space_id: &'a str,
        operation_id: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(PgStore::quarantine_remove(self, space_id, operation_id))
    }
}
