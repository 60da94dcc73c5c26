//! The only crate that speaks SQL: the append-only operation log, space snapshots, the
//! quarantine table and the migrations that define them (BRIEF §6). PostgreSQL is the
//! production store.

mod doctor;
mod error;
pub mod migrations;
mod postgres;
mod store;

pub use doctor::DoctorReport;
pub use error::{ErrorClass, StoreError};
pub use migrations::SchemaStatus;
pub use postgres::{
    AppendMethod, AppendOutcome, COPY_THRESHOLD, LoadedSpace, LogEntry, NewLogEntry, NewQuarantine,
    PgStore, Poison, PoisonKind, PriorRecord, QuarantineEntry, StoredSnapshot,
};
pub use store::{Store, StoreFuture};
