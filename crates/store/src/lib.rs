//! Persistence: exchanges, experiments, replays and judgments through sqlx, on SQLite (the
//! embedded default, one file) or PostgreSQL (several processes on one database).
//!
//! The queries are written once in the SQL both engines accept (`$N` parameters, `ON CONFLICT`,
//! `RETURNING`, `CASE` instead of two-argument `MAX`) and run on whichever pool the URL opened
//! ([`with_pool!`]); what differs — connecting, tuning, migrations, the job queue's tables — lives
//! in `sqlite.rs` and `postgres.rs`, side by side.
//!
//! Uniqueness constraints carry idempotency: inserting a replay or judgment that already exists
//! is a no-op reported as such, so a retried or duplicated job never adds a row.

mod analytics;
mod batches;
mod bench;
mod cache;
mod calibrations;
mod counters;
mod datasets;
mod drift;
mod early_stop;
mod exchanges;
mod experiments;
mod group;
mod postgres;
mod progress;
mod results;
mod sessions;
mod snapshots;
mod spend;
mod sqlite;
mod work;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

pub use analytics::{HourlyCount, RejectionReason, TrafficRow};
pub use batches::{BatchRow, BatchSummary, PARKED};
pub use bench::RawRow;
pub use cache::{JUDGMENT_CACHE, REPLAY_CACHE};
pub use calibrations::Calibration;
pub use datasets::{DatasetItemRow, DatasetVersion, dataset_item_key};
pub use drift::{Alert, GuardSpec, Schedule, ScheduleRun, ScheduleSpec};
pub use early_stop::SettledCandidate;
pub use exchanges::{Delivery, DeliveryCounts, ExchangeHead, IngestOutcome, SourceStats, StoredExchange};
pub use experiments::{BaselineSpec, DatasetRef, Experiment, ExperimentSpec, Filter, FrozenRubric, StopOn};
/// Nagle's algorithm on this process's PostgreSQL sockets (see `postgres.rs`), for tests.
#[cfg(target_os = "linux")]
pub use postgres::nagle::delayed_sockets_to;
pub use postgres::{create_scratch_database, drop_scratch_database};
pub use progress::Progress;
pub use results::{
    JudgmentRecord, JudgmentScore, REFERENCE_AGAINST_ITSELF, ReplayRecord, SETTLED, UNSUPPORTED_PREFIX,
};
pub use spend::{Paid, Reservation, Reserve, Spend, SpendKind};
pub use work::{Claim, Lease, QUEUED, judgment_work_key, now_ms, replay_work_key};

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
    /// The transaction a write shared with others (group commit) did not commit.
    #[error("the shared transaction did not commit: {0}")]
    GroupCommit(String),
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// One SQLite file (the embedded default).
    Sqlite,
    /// A PostgreSQL database shared by several processes.
    Postgres,
}

impl Engine {
    /// The engine a database URL names: `postgres://` or `postgresql://` is PostgreSQL,
    /// anything else SQLite.
    pub fn of_url(url: &str) -> Engine {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    }
}

/// A connection pool of either engine.
#[derive(Debug, Clone)]
pub enum Pool {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever engine it is: the body is
/// compiled once per engine, so each runs with its own driver's types.
#[macro_export]
#[doc(hidden)]
macro_rules! with_pool {
    ($pool_enum:expr, $pool:ident => $body:expr) => {
        match $pool_enum {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}

/// A small write of a worker: on SQLite it joins the group commit (a transaction shared with
/// the writes that arrive meanwhile, answered after it commits); on PostgreSQL, which commits
/// concurrent transactions side by side, it runs as its own statement. `$conn` is the executor
/// in `$body`, which must own what it uses (on SQLite it runs on the group's task).
macro_rules! small_write {
    ($store:expr, $conn:ident => $body:expr) => {
        match (&$store.pool, &$store.group) {
            ($crate::Pool::Sqlite(_), Some(group)) => {
                group
                    .write(move |$conn: &mut sqlx::SqliteConnection| {
                        Box::pin(async move { $body }) as $crate::group::WriteFuture<'_, _>
                    })
                    .await
            }
            ($crate::Pool::Sqlite(pool), None) => {
                let mut conn = pool.acquire().await?;
                let $conn: &mut sqlx::SqliteConnection = &mut conn;
                async move { $body }.await
            }
            ($crate::Pool::Postgres(pool), _) => {
                let mut conn = pool.acquire().await?;
                let $conn: &mut sqlx::PgConnection = &mut conn;
                async move { $body }.await
            }
        }
    };
}
pub(crate) use small_write;

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// SQLite: the group commit of the workers' small writes.
    group: Option<group::GroupWriter>,
}

impl Store {
    /// Opens the database at `url` and applies migrations: `postgres://…` opens PostgreSQL,
    /// anything else a SQLite file (created if missing).
    pub async fn connect(url: &str) -> Result<Store> {
        Ok(match Engine::of_url(url) {
            Engine::Sqlite => {
                let pool = sqlite::connect(url).await?;
                Store { group: Some(group::GroupWriter::start(pool.clone())), pool: Pool::Sqlite(pool) }
            }
            Engine::Postgres => Store { pool: Pool::Postgres(postgres::connect(url).await?), group: None },
        })
    }

    /// The engine this store runs on.
    pub fn engine(&self) -> Engine {
        match self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }

    /// SQLite's `synchronous` setting of a pooled connection (2 is FULL); `None` on PostgreSQL,
    /// which syncs every commit unless told otherwise.
    pub async fn synchronous_level(&self) -> Result<Option<i64>> {
        match &self.pool {
            Pool::Sqlite(pool) => Ok(Some(sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await?)),
            Pool::Postgres(_) => Ok(None),
        }
    }

    /// The connection pool (the job queue keeps its tables in the same database).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Usage from the nullable token columns: none without an input count.
pub(crate) fn usage_from_columns(input: Option<i64>, output: Option<i64>) -> Option<evaltap_core::Usage> {
    input.map(|i| evaltap_core::Usage {
        input_tokens: i.max(0) as u64,
        output_tokens: output.unwrap_or(0).max(0) as u64,
        ..Default::default()
    })
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| StoreError::Json { what, source })
}

/// Reading a column by name from a row of either engine, into a type both engines decode.
pub(crate) trait Columns {
    /// The column `name`, decoded.
    fn get<T>(&self, name: &str) -> Result<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + for<'r> sqlx::Decode<'r, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>;
}

macro_rules! impl_columns {
    ($($row:ty),*) => {$(
        impl Columns for $row {
            fn get<T>(&self, name: &str) -> Result<T>
            where
                T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
                    + sqlx::Type<sqlx::Sqlite>
                    + for<'r> sqlx::Decode<'r, sqlx::Postgres>
                    + sqlx::Type<sqlx::Postgres>,
            {
                Ok(sqlx::Row::try_get(self, name)?)
            }
        }
    )*};
}
impl_columns!(sqlx::sqlite::SqliteRow, sqlx::postgres::PgRow);

/// Inserting many exchanges at once, each engine its fastest way (`sqlite.rs`, `postgres.rs`);
/// returns the (source, dedup key) of the rows inserted (not those already stored).
pub(crate) trait InsertExchangeRows {
    async fn insert_exchange_rows(
        &mut self,
        rows: &[exchanges::ExchangeRow],
    ) -> Result<Vec<(String, String)>>;
}
