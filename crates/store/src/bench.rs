//! The database alone, for `evaltap bench ingest`'s baseline: the same rows inserted with
//! nothing of evaltap in between, on a scratch table shaped like `exchanges`.

use std::time::{Duration, Instant};

use sqlx::Connection as _;

use crate::{Result, Store, with_pool};

/// One row of the baseline: id, dedup key, request and response JSON.
pub type RawRow = (String, String, String, String);

impl Store {
    /// Times inserting `single` one transaction per row, one after another (the least each
    /// acknowledged single POST needs), then `batched` in transactions of `batch` rows as
    /// multi-row inserts, on a scratch table shaped like `exchanges` in this database (same
    /// durability settings), dropped afterwards. Returns the two durations.
    pub async fn time_raw_inserts(
        &self,
        single: &[RawRow],
        batched: &[RawRow],
        batch: usize,
    ) -> Result<(Duration, Duration)> {
        let received_at = chrono::Utc::now().to_rfc3339();
        Ok(with_pool!(&self.pool, pool => {
            sqlx::query(
                "CREATE TABLE bench_raw_exchanges (id TEXT PRIMARY KEY NOT NULL, source TEXT NOT NULL,
                     dedup_key TEXT NOT NULL, received_at TEXT NOT NULL, model TEXT, request TEXT NOT NULL,
                     response TEXT NOT NULL, input_tokens BIGINT, output_tokens BIGINT, cost_usd DOUBLE PRECISION,
                     latency_ms DOUBLE PRECISION, tags TEXT NOT NULL, UNIQUE (source, dedup_key))",
            )
            .execute(pool)
            .await?;
            let mut conn = pool.acquire().await?;
            let started = Instant::now();
            for (id, key, request, response) in single {
                let mut tx = conn.begin().await?;
                sqlx::query(
                    "INSERT INTO bench_raw_exchanges (id, source, dedup_key, received_at, model, request, response,
                         input_tokens, output_tokens, tags) VALUES ($1, 'bench', $2, $3, 'm', $4, $5, 12, 3, '{}')
                     ON CONFLICT (source, dedup_key) DO NOTHING",
                )
                .bind(id)
                .bind(key)
                .bind(&received_at)
                .bind(request)
                .bind(response)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            let single_took = started.elapsed();
            let started = Instant::now();
            for chunk in batched.chunks(batch.max(1)) {
                let mut tx = conn.begin().await?;
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO bench_raw_exchanges (id, source, dedup_key, received_at, model, request, response,
                         input_tokens, output_tokens, tags) ",
                );
                insert.push_values(chunk, |mut row, (id, key, request, response)| {
                    row.push_bind(id)
                        .push_bind("bench")
                        .push_bind(key)
                        .push_bind(&received_at)
                        .push_bind("m")
                        .push_bind(request)
                        .push_bind(response)
                        .push_bind(12_i64)
                        .push_bind(3_i64)
                        .push_bind("{}");
                });
                insert.push(" ON CONFLICT (source, dedup_key) DO NOTHING");
                insert.build().execute(&mut *tx).await?;
                tx.commit().await?;
            }
            let batched_took = started.elapsed();
            drop(conn);
            sqlx::query("DROP TABLE bench_raw_exchanges").execute(pool).await?;
            Ok::<_, sqlx::Error>((single_took, batched_took))
        })?)
    }
}
