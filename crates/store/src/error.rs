//! Store errors, classified (BRIEF §4.4): transient failures are retried with backoff and
//! nothing is acknowledged meanwhile; permanent ones quarantine the op that caused them.

use tokio_postgres::error::SqlState;

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("embedded database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("connection pool error: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("cannot create the connection pool: {0}")]
    CreatePool(#[from] deadpool_postgres::CreatePoolError),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("invalid database URL: {0}")]
    Config(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The database is unreachable, restarting, or the transaction lost a race: retry later.
    Transient,
    /// The data itself is refused: retrying the same write fails the same way.
    Permanent,
}

/// SQLSTATE classes and codes that a retry can fix: connection exceptions (08), insufficient
/// resources (53), operator intervention (57: admin shutdown, crash shutdown, cannot connect
/// now), system errors (58), serialization failure and deadlock (40001, 40P01).
fn sqlstate_is_transient(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code.starts_with("58")
        || code == "40001"
        || code == "40P01"
}

impl StoreError {
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Database(error) => classify_postgres(error),
            StoreError::Sqlite(error) => classify_sqlite(error),
            StoreError::Pool(deadpool_postgres::PoolError::Backend(error)) => {
                classify_postgres(error)
            }
            StoreError::Pool(_) => ErrorClass::Transient,
            StoreError::CreatePool(_) | StoreError::Config(_) => ErrorClass::Permanent,
            StoreError::Migration(_) => ErrorClass::Transient,
            StoreError::Corrupt(_) => ErrorClass::Permanent,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// The name of the constraint the database reported as violated, if that is the error.
    /// The embedded store's unique keys are reported under the PostgreSQL names.
    pub fn violated_constraint(&self) -> Option<&str> {
        match self {
            StoreError::Database(error) => error.as_db_error().and_then(|error| error.constraint()),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, Some(message)))
                if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                if message.contains("op_log.operation_id") {
                    Some("op_log_operation_id_key")
                } else if message.contains("op_log.seq") {
                    Some("op_log_pkey")
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// SQLite: a busy or locked database, I/O trouble, a full disk or a file that cannot be
/// opened may pass; everything else (constraints, corrupt data) will not.
fn classify_sqlite(error: &rusqlite::Error) -> ErrorClass {
    use rusqlite::ErrorCode;
    match error.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory,
        ) => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

fn classify_postgres(error: &tokio_postgres::Error) -> ErrorClass {
    match error.code() {
        Some(code) if sqlstate_is_transient(code) => ErrorClass::Transient,
        Some(_) => ErrorClass::Permanent,
        // No SQLSTATE: the connection closed, timed out or never opened.
        None => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        fn check(code: SqlState, transient: bool) {
            assert_eq!(sqlstate_is_transient(&code), transient, "{}", code.code());
        }
        check(SqlState::CONNECTION_EXCEPTION, true);
        check(SqlState::CONNECTION_FAILURE, true);
        check(SqlState::ADMIN_SHUTDOWN, true);
        check(SqlState::CRASH_SHUTDOWN, true);
        check(SqlState::CANNOT_CONNECT_NOW, true);
        check(SqlState::T_R_SERIALIZATION_FAILURE, true);
        check(SqlState::T_R_DEADLOCK_DETECTED, true);
        check(SqlState::TOO_MANY_CONNECTIONS, true);
        check(SqlState::DISK_FULL, true);
        check(SqlState::UNIQUE_VIOLATION, false);
        check(SqlState::CHECK_VIOLATION, false);
        check(SqlState::INVALID_TEXT_REPRESENTATION, false);
        check(SqlState::UNTRANSLATABLE_CHARACTER, false);
        check(SqlState::PROGRAM_LIMIT_EXCEEDED, false);
    }

    #[test]
    fn sqlite_codes() {
        fn check(code: i32, transient: bool) {
            let error = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ));
            assert_eq!(error.is_transient(), transient, "{code}");
        }
        check(rusqlite::ffi::SQLITE_BUSY, true);
        check(rusqlite::ffi::SQLITE_LOCKED, true);
        check(rusqlite::ffi::SQLITE_IOERR, true);
        check(rusqlite::ffi::SQLITE_FULL, true);
        check(rusqlite::ffi::SQLITE_CANTOPEN, true);
        check(rusqlite::ffi::SQLITE_CONSTRAINT, false);
        check(rusqlite::ffi::SQLITE_CORRUPT, false);
        check(rusqlite::ffi::SQLITE_MISMATCH, false);
    }
}
