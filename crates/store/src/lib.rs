//! Persistence: exchanges, experiments, replays and judgments in SQLite through sqlx.
//!
//! Uniqueness constraints carry idempotency: inserting a replay or judgment that already exists
//! is a no-op reported as such, so a retried or duplicated job never adds a row.

mod datasets;
mod drift;
mod exchanges;
mod experiments;
mod results;

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use datasets::{DatasetItemRow, DatasetVersion, dataset_item_key};
pub use drift::{Alert, Schedule, ScheduleRun, ScheduleSpec};
pub use exchanges::{DeliveryCounts, IngestOutcome, SourceStats, StoredExchange};
pub use experiments::{BaselineSpec, DatasetRef, Experiment, ExperimentSpec, Filter, FrozenRubric};
pub use results::{Calibration, JudgmentRecord, Progress, ReplayRecord, Spend, SpendKind};

/// Subject name of the production response in judgments.
pub const BASELINE: &str = "baseline";

/// Item kind of a production exchange.
pub const ITEM_EXCHANGE: &str = "exchange";
/// Item kind of a golden dataset item.
pub const ITEM_DATASET: &str = "dataset_item";

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored JSON column could not be decoded.
    #[error("corrupt stored JSON in {what}: {source}")]
    Json {
        /// Which column.
        what: &'static str,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// The request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if missing) the database at `url` and applies migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A 202 promises the exchange is stored: FULL syncs the WAL at every commit, so a
            // power loss cannot take back what was acknowledged (NORMAL could lose the last
            // commits).
            .synchronous(SqliteSynchronous::Full)
            // Short lock waits under concurrent workers are expected; warn only on long ones.
            .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10))
            // The server, the workers and apalis share the file: wait for locks, don't fail.
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        let mut migrator = sqlx::migrate!("../../migrations/sqlite");
        // apalis records its own migrations in `_sqlx_migrations` on the same file.
        migrator.dangerous_set_table_name("_evaltap_migrations");
        migrator.run(&pool).await?;
        Ok(Store { pool })
    }

    /// The `synchronous` setting of a pooled connection (2 is FULL).
    pub async fn synchronous_level(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("PRAGMA synchronous").fetch_one(&self.pool).await?)
    }

    /// The connection pool (apalis uses it for its job tables).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Usage from the nullable token columns: none without an input count.
pub(crate) fn usage_from_columns(input: Option<i64>, output: Option<i64>) -> Option<evaltap_core::Usage> {
    input.map(|i| evaltap_core::Usage {
        input_tokens: i.max(0) as u64,
        output_tokens: output.unwrap_or(0).max(0) as u64,
    })
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| StoreError::Json { what, source })
}
