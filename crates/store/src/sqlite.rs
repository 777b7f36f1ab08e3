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

/// Claims ready work on SQLite (one writer at a time: the subquery and update are atomic).
pub(crate) const CLAIM_READY: &str = "UPDATE work_claims SET owner = $1, expires_ms = $2, claims = claims + 1
     WHERE rowid IN (
         SELECT rowid FROM work_claims WHERE finished = FALSE AND expires_ms < $3
         ORDER BY expires_ms, item_seq LIMIT $4)
     RETURNING experiment_id, work_key, claims";

/// Deletes finished jobs from apalis-sqlite's table.
pub(crate) async fn purge_finished_queue_jobs(pool: &SqlitePool) -> Result<u64> {
    let done = sqlx::query("DELETE FROM Jobs WHERE status IN ('Done', 'Killed')").execute(pool).await?;
    Ok(done.rows_affected())
}

/// Jobs of the queue ready for at least `secs` seconds that no worker has taken.
pub(crate) async fn stalled_queue_jobs(pool: &SqlitePool, secs: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM Jobs WHERE status = 'Pending' AND lock_by IS NULL
           AND (run_at IS NULL OR run_at <= CAST(strftime('%s', 'now') AS INTEGER) - ?)",
    )
    .bind(secs)
    .fetch_one(pool)
    .await?)
}

/// Multi-row `INSERT … VALUES` in chunks of 256, 64, 16, 4 or 1 rows: few statement shapes to
/// prepare, 15 parameters a row well inside SQLite's limit.
impl crate::InsertExchangeRows for sqlx::Transaction<'_, sqlx::Sqlite> {
    async fn insert_exchange_rows(
        &mut self,
        rows: &[crate::exchanges::ExchangeRow],
    ) -> Result<Vec<(String, String)>> {
        let mut inserted = Vec::new();
        let mut rest = rows;
        while !rest.is_empty() {
            let size = [256, 64, 16, 4, 1].into_iter().find(|size| rest.len() >= *size).unwrap_or(1);
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO exchanges (id, source, dedup_key, external_id, received_at, occurred_at,
                     model, request, response, input_tokens, output_tokens, cost_usd, latency_ms,
                     tags, succeeded) ",
            );
            insert.push_values(chunk, |mut row, r| {
                row.push_bind(&r.id)
                    .push_bind(&r.source)
                    .push_bind(&r.dedup_key)
                    .push_bind(&r.external_id)
                    .push_bind(r.received_at)
                    .push_bind(r.occurred_at)
                    .push_bind(&r.model)
                    .push_bind(&r.request)
                    .push_bind(&r.response)
                    .push_bind(r.input_tokens)
                    .push_bind(r.output_tokens)
                    .push_bind(r.cost_usd)
                    .push_bind(r.latency_ms)
                    .push_bind(&r.tags)
                    .push_bind(r.succeeded);
            });
            insert.push(" ON CONFLICT (source, dedup_key) DO NOTHING RETURNING source, dedup_key");
            inserted.extend(insert.build_query_as::<(String, String)>().fetch_all(&mut **self).await?);
        }
        Ok(inserted)
    }
}
