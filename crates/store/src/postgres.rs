//! PostgreSQL: one database shared by any number of `serve` and `worker` processes.

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::Result;

/// Connects to the database at `url` and applies `migrations/postgres`. Several processes may
/// start at once: the migrator serialises them with an advisory lock.
pub(crate) async fn connect(url: &str) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10))
        // Silence `NOTICE: relation … already exists, skipping` from idempotent DDL.
        .options([("client_min_messages", "warning")]);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?;
    let mut migrator = sqlx::migrate!("../../migrations/postgres");
    // The queue's migrations are apalis' own, in its `apalis` schema and table.
    migrator.dangerous_set_table_name("_evaltap_migrations");
    migrator.run(&pool).await?;
    Ok(pool)
}

/// Deletes finished jobs from apalis-postgres' table.
pub(crate) async fn purge_finished_queue_jobs(pool: &PgPool) -> Result<u64> {
    let done =
        sqlx::query("DELETE FROM apalis.jobs WHERE status IN ('Done', 'Killed')").execute(pool).await?;
    Ok(done.rows_affected())
}

/// Creates a new, empty database named `<prefix>_<uuid>` on the server `admin_url` connects to;
/// returns its URL and name. (Benchmarks and tests each get a database of their own.)
pub async fn create_scratch_database(admin_url: &str, prefix: &str) -> Result<(String, String)> {
    use sqlx::Connection as _;
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(crate::StoreError::Conflict(format!("`{name}` is not a plain database name")));
    }
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
    Ok((format!("{base}/{name}"), name))
}

/// Drops a database made by [`create_scratch_database`], closing its connections.
pub async fn drop_scratch_database(admin_url: &str, name: &str) -> Result<()> {
    use sqlx::Connection as _;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(crate::StoreError::Conflict(format!("`{name}` is not a plain database name")));
    }
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    Ok(())
}
