//! The only crate that speaks SQL: the append-only operation log, space snapshots, the
//! quarantine table and the migrations that define them (BRIEF §6). PostgreSQL is the
//! production store.

mod doctor;
mod error;
pub mod migrations;
mod postgres;

pub use doctor::DoctorReport;
pub use error::{ErrorClass, StoreError};
pub use postgres::{
    AppendOutcome, LoadedSpace, LogEntry, NewLogEntry, PgStore, PriorRecord, QuarantineEntry,
    StoredSnapshot,
};
