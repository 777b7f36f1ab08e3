//! SQLite: one file, WAL, every commit synced.

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::Result;

/// Opens (creating if missing) the file at `url` and applies `migrations/sqlite`.
pub(crate) async fn connect(url: &str) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // A 202 promises the exchange is stored: FULL syncs the WAL at every commit, so a
        // power loss cannot take back what was acknowledged (NORMAL could lose the last
        // commits).
        .synchronous(SqliteSynchronous::Full)
        // Short lock waits under concurrent workers are expected; warn only on long ones.
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10))
        // The server, the workers and the queue share the file: wait for locks, don't fail.
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
    let mut migrator = sqlx::migrate!("../../migrations/sqlite");
    // apalis records its own migrations in `_sqlx_migrations` on the same file.
    migrator.dangerous_set_table_name("_evaltap_migrations");
    migrator.run(&pool).await?;
    Ok(pool)
}

/// Deletes finished jobs from apalis-sqlite's table.
pub(crate) async fn purge_finished_queue_jobs(pool: &SqlitePool) -> Result<u64> {
    let done = sqlx::query("DELETE FROM Jobs WHERE status IN ('Done', 'Killed')").execute(pool).await?;
    Ok(done.rows_affected())
}
