//! The embedded migrations (`migrations/*.sql`, refinery naming) and the schema status that
//! `serve` checks before starting: booting never changes the schema (R4).

refinery::embed_migrations!("../../migrations/postgres");

/// Advisory lock key taken while migrating, so two processes never migrate at once.
/// ("spacesyn" in ASCII.)
pub const MIGRATION_LOCK_KEY: i64 = 0x7370_6163_6573_796e;

/// Where the live schema stands against the embedded migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Versions applied in the database.
    pub applied: Vec<i32>,
    /// Versions embedded in this build and not yet applied.
    pub pending: Vec<i32>,
    /// Versions applied in the database that this build does not know (a newer build ran).
    pub unknown: Vec<i32>,
}

impl SchemaStatus {
    /// The schema is exactly what this build expects.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

/// Versions embedded in this build.
pub fn embedded_versions() -> Vec<i32> {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|migration| migration.version())
        .collect()
}
