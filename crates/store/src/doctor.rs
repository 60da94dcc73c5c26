//! `doctor`: compares the live schema with the one the embedded migrations define (R4), and
//! checks the durability settings that acknowledgements depend on. The expected schema is
//! built by running the migrations' SQL into a scratch schema inside a transaction that is
//! rolled back, so the comparison is exact and nothing is left behind.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::StoreError;
use crate::migrations::migrations;
use crate::postgres::PgStore;

/// What `doctor` found. Clean means the schema is exactly what the migrations define.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorReport {
    /// Indexes in the database that the migrations do not define.
    pub extra_indexes: Vec<String>,
    /// Groups of indexes with the same definition (same table, columns, uniqueness).
    pub duplicate_indexes: Vec<Vec<String>>,
    /// Indexes the migrations define that the database lacks.
    pub missing_indexes: Vec<String>,
    /// Constraints the database has and the migrations do not define (`table.name`).
    pub extra_constraints: Vec<String>,
    /// Constraints the migrations define and the database lacks (`table.name`).
    pub missing_constraints: Vec<String>,
    /// Settings that break "ack after durable commit" (fsync or synchronous_commit off).
    pub warnings: Vec<String>,
}

impl DoctorReport {
    /// No schema drift. Warnings about settings do not make the schema unclean, but the CLI
    /// reports them.
    pub fn schema_is_clean(&self) -> bool {
        self.extra_indexes.is_empty()
            && self.duplicate_indexes.is_empty()
            && self.missing_indexes.is_empty()
            && self.extra_constraints.is_empty()
            && self.missing_constraints.is_empty()
    }
}

/// Tables that are not ours to judge (refinery's bookkeeping).
const IGNORED_TABLES: &[&str] = &["refinery_schema_history"];
const SCRATCH_SCHEMA: &str = "spacesync_doctor_expected";

impl PgStore {
    /// Compares the live `public` schema with the migrations and reads the durability settings.
    pub async fn doctor(&self) -> Result<DoctorReport, StoreError> {
        let mut client = self.client().await?;
        let live_indexes = indexes(&client, "public").await?;
        let live_constraints = constraints(&client, "public").await?;

        let transaction = client.transaction().await?;
        transaction
            .batch_execute(&format!(
                "CREATE SCHEMA {SCRATCH_SCHEMA}; SET LOCAL search_path = {SCRATCH_SCHEMA}"
            ))
            .await?;
        for migration in migrations::runner().get_migrations() {
            transaction
                .batch_execute(migration.sql().unwrap_or_default())
                .await?;
        }
        let expected_indexes = indexes(&transaction, SCRATCH_SCHEMA).await?;
        let expected_constraints = constraints(&transaction, SCRATCH_SCHEMA).await?;
        transaction.rollback().await?;

        let mut report = compare(
            &live_indexes,
            &expected_indexes,
            &live_constraints,
            &expected_constraints,
        );
        for setting in ["fsync", "synchronous_commit"] {
            let value: String = client
                .query_one("SELECT current_setting($1)", &[&setting])
                .await?
                .get(0);
            if value == "off" {
                report.warnings.push(format!(
                    "{setting} is off: acknowledged ops can be lost in a crash"
                ));
            }
        }
        Ok(report)
    }
}

/// The findings from the live and expected schemas: indexes as name → definition (equal
/// definitions are duplicates), constraints as comparable strings.
pub(crate) fn compare(
    live_indexes: &BTreeMap<String, String>,
    expected_indexes: &BTreeMap<String, String>,
    live_constraints: &BTreeSet<String>,
    expected_constraints: &BTreeSet<String>,
) -> DoctorReport {
    let mut report = DoctorReport::default();
    let mut by_definition: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, definition) in live_indexes {
        by_definition
            .entry(definition.clone())
            .or_default()
            .push(name.clone());
        if !expected_indexes.contains_key(name) {
            report.extra_indexes.push(name.clone());
        }
    }
    report.duplicate_indexes = by_definition
        .into_values()
        .filter(|names| names.len() > 1)
        .collect();
    report.missing_indexes = expected_indexes
        .keys()
        .filter(|name| !live_indexes.contains_key(*name))
        .cloned()
        .collect();
    report.extra_constraints = live_constraints
        .difference(expected_constraints)
        .cloned()
        .collect();
    report.missing_constraints = expected_constraints
        .difference(live_constraints)
        .cloned()
        .collect();
    report
}

/// Index name → definition without its name and schema, so equal definitions compare equal.
async fn indexes(
    client: &impl deadpool_postgres::GenericClient,
    schema: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    let rows = rows_of_our_tables(
        client,
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1",
        schema,
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let name: String = row.get(1);
            let definition: String = row.get(2);
            let normalized = definition
                .replacen(&format!(" {name} ON "), " ON ", 1)
                .replace(&format!("{schema}."), "");
            (name, normalized)
        })
        .collect())
}

/// `table.constraint(kind)` of every constraint in the schema.
async fn constraints(
    client: &impl deadpool_postgres::GenericClient,
    schema: &str,
) -> Result<BTreeSet<String>, StoreError> {
    let rows = rows_of_our_tables(
        client,
        "SELECT c.relname, k.conname, k.contype::text FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1",
        schema,
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| {
            format!(
                "{}.{}({})",
                row.get::<_, &str>(0),
                row.get::<_, &str>(1),
                row.get::<_, &str>(2)
            )
        })
        .collect())
}

/// Runs a catalogue query for `schema` whose first column is a table name, keeping only the
/// rows of our tables.
async fn rows_of_our_tables(
    client: &impl deadpool_postgres::GenericClient,
    query: &str,
    schema: &str,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let mut rows = client.query(query, &[&schema]).await?;
    rows.retain(|row| !IGNORED_TABLES.contains(&row.get::<_, &str>(0)));
    Ok(rows)
}
