//! The only crate that speaks SQL: the append-only operation log, space snapshots, the
//! quarantine table and the migrations that define them (BRIEF §6), behind one [`Store`]
//! interface with two implementations: PostgreSQL (production, multi-node) and the embedded
//! SQLite store (a fresh machine with no database server).

mod doctor;
mod error;
pub mod migrations;
mod postgres;
mod sqlite;
mod store;

pub use doctor::DoctorReport;
pub use error::{ErrorClass, StoreError};
pub use migrations::SchemaStatus;
pub use postgres::{
    AppendMethod, AppendOutcome, COPY_THRESHOLD, LoadedSpace, LogEntry, NewLogEntry, NewQuarantine,
    PgStore, Poison, PoisonKind, PriorRecord, QuarantineEntry, StoredSnapshot,
};
pub use sqlite::{DATABASE_FILE, SqliteStore};
pub use store::{Store, StoreFuture};
