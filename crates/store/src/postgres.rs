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

/// One `INSERT … SELECT FROM UNNEST(arrays)` whatever the row count: one statement to plan,
/// where a multi-row `VALUES` would be planned anew for each row count and parameter list.
impl crate::InsertExchangeRows for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn insert_exchange_rows(
        &mut self,
        rows: &[crate::exchanges::ExchangeRow],
    ) -> Result<Vec<(String, String)>> {
        fn column<T>(
            rows: &[crate::exchanges::ExchangeRow],
            f: impl Fn(&crate::exchanges::ExchangeRow) -> T,
        ) -> Vec<T> {
            rows.iter().map(f).collect()
        }
        Ok(sqlx::query_as(
            "INSERT INTO exchanges (id, source, dedup_key, external_id, received_at, occurred_at,
                 model, request, response, input_tokens, output_tokens, cost_usd, latency_ms, tags,
                 succeeded)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                 $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[],
                 $12::float8[], $13::float8[], $14::text[], $15::bool[])
             ON CONFLICT (source, dedup_key) DO NOTHING RETURNING source, dedup_key",
        )
        .bind(column(rows, |r| r.id.clone()))
        .bind(column(rows, |r| r.source.clone()))
        .bind(column(rows, |r| r.dedup_key.clone()))
        .bind(column(rows, |r| r.external_id.clone()))
        .bind(column(rows, |r| r.received_at))
        .bind(column(rows, |r| r.occurred_at))
        .bind(column(rows, |r| r.model.clone()))
        .bind(column(rows, |r| r.request.clone()))
        .bind(column(rows, |r| r.response.clone()))
        .bind(column(rows, |r| r.input_tokens))
        .bind(column(rows, |r| r.output_tokens))
        .bind(column(rows, |r| r.cost_usd))
        .bind(column(rows, |r| r.latency_ms))
        .bind(column(rows, |r| r.tags.clone()))
        .bind(column(rows, |r| r.succeeded))
        .fetch_all(&mut **self)
        .await?)
    }
}
