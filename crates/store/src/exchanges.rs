use chrono::{DateTime, Utc};
use evaltap_core::Exchange;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::{Result, Store, from_json, to_json};

/// What happened to each exchange of an ingested batch, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    /// Exchanges newly stored.
    pub inserted: usize,
    /// Exchanges already stored (same source and dedup key).
    pub duplicates: usize,
}

/// Counts of one delivery that the store does not see itself, recorded with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    /// Items in the delivery.
    pub received: usize,
    /// Items dropped by sampling.
    pub sampled_out: usize,
    /// Items rejected as malformed.
    pub rejected: usize,
    /// Redactions applied to the stored items.
    pub redactions: usize,
}

/// What a source has sent, over its lifetime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
pub struct SourceStats {
    /// Source name.
    pub source: String,
    /// Items received.
    pub received: i64,
    /// Items stored.
    pub accepted: i64,
    /// Items dropped by sampling.
    pub sampled_out: i64,
    /// Re-deliveries of stored items.
    pub duplicates: i64,
    /// Malformed items.
    pub rejected: i64,
    /// Redactions applied.
    pub redactions: i64,
    /// Last delivery.
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// An exchange as stored.
#[derive(Debug, Clone, Serialize)]
pub struct StoredExchange {
    /// Row id.
    pub id: String,
    /// Source it came from.
    pub source: String,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// The exchange.
    pub exchange: Exchange,
}

impl Store {
    /// Stores a batch in one transaction; returns only once it is committed.
    pub async fn insert_exchanges(&self, source: &str, batch: &[Exchange]) -> Result<IngestOutcome> {
        self.record_delivery(
            source,
            batch,
            DeliveryCounts { received: batch.len(), ..DeliveryCounts::default() },
        )
        .await
    }

    /// Stores a delivery's kept exchanges and updates the source's counters, in one
    /// transaction; returns only once it is committed.
    pub async fn record_delivery(
        &self,
        source: &str,
        batch: &[Exchange],
        counts: DeliveryCounts,
    ) -> Result<IngestOutcome> {
        let mut outcome = IngestOutcome::default();
        let mut tx = self.pool.begin().await?;
        let now = Utc::now();
        for exchange in batch {
            let usage = exchange.usage;
            let done = sqlx::query(
                "INSERT INTO exchanges (id, source, dedup_key, external_id, received_at, occurred_at,
                     model, request, response, input_tokens, output_tokens, cost_usd, latency_ms,
                     tags, succeeded)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (source, dedup_key) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(source)
            .bind(exchange.dedup_key())
            .bind(&exchange.external_id)
            .bind(now)
            .bind(exchange.occurred_at)
            .bind(&exchange.model)
            .bind(to_json(&exchange.request))
            .bind(to_json(&exchange.response))
            .bind(usage.map(|u| u.input_tokens as i64))
            .bind(usage.map(|u| u.output_tokens as i64))
            .bind(exchange.cost_usd)
            .bind(exchange.latency_ms)
            .bind(to_json(&exchange.tags))
            .bind(exchange.succeeded)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                outcome.inserted += 1;
            } else {
                outcome.duplicates += 1;
            }
        }
        sqlx::query(
            "INSERT INTO source_stats (source, received, accepted, sampled_out, duplicates, rejected, redactions, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (source) DO UPDATE SET
               received = received + ?2, accepted = accepted + ?3, sampled_out = sampled_out + ?4,
               duplicates = duplicates + ?5, rejected = rejected + ?6, redactions = redactions + ?7,
               last_seen_at = ?8",
        )
        .bind(source)
        .bind(counts.received as i64)
        .bind(outcome.inserted as i64)
        .bind(counts.sampled_out as i64)
        .bind(outcome.duplicates as i64)
        .bind(counts.rejected as i64)
        .bind(counts.redactions as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Lifetime counters of every source that has sent something.
    pub async fn source_stats(&self) -> Result<Vec<SourceStats>> {
        Ok(sqlx::query_as("SELECT * FROM source_stats ORDER BY source").fetch_all(&self.pool).await?)
    }

    /// Stored exchanges of a source, newest first (rows that do not read back are skipped; see
    /// [`Store::readable_exchanges`]).
    pub async fn recent_exchanges(&self, source: Option<&str>, limit: i64) -> Result<Vec<StoredExchange>> {
        Ok(self.readable_exchanges(source, limit).await?.0)
    }

    /// Stored exchanges of a source, newest first, and how many rows were skipped because they
    /// do not read back: one bad row never fails a list.
    pub async fn readable_exchanges(
        &self,
        source: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<StoredExchange>, usize)> {
        let rows = sqlx::query(
            "SELECT id, source, external_id, received_at, occurred_at, model, request, response,
                    input_tokens, output_tokens, cost_usd, latency_ms, tags, succeeded
             FROM exchanges WHERE (?1 IS NULL OR source = ?1) ORDER BY received_at DESC, id DESC LIMIT ?2",
        )
        .bind(source)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(skip_unreadable(rows.iter().map(decode_exchange)))
    }

    /// The exchange with this id.
    pub async fn exchange(&self, id: &str) -> Result<Option<StoredExchange>> {
        let row = sqlx::query(
            "SELECT id, source, external_id, received_at, occurred_at, model, request, response,
                    input_tokens, output_tokens, cost_usd, latency_ms, tags, succeeded
             FROM exchanges WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| decode_exchange(&row)).transpose()
    }

    /// Successful exchanges matching `filter`, oldest first (the pool golden items are promoted
    /// from).
    pub async fn matching_exchanges(&self, filter: &crate::Filter) -> Result<Vec<StoredExchange>> {
        let rows = sqlx::query(
            "SELECT id, source, external_id, received_at, occurred_at, model, request, response,
                    input_tokens, output_tokens, cost_usd, latency_ms, tags, succeeded
             FROM exchanges WHERE succeeded = 1
               AND (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR model = ?2)
               AND (?3 IS NULL OR received_at >= ?3) AND (?4 IS NULL OR received_at < ?4)
             ORDER BY received_at, id",
        )
        .bind(&filter.source)
        .bind(&filter.model)
        .bind(filter.since)
        .bind(filter.until)
        .fetch_all(&self.pool)
        .await?;
        Ok(skip_unreadable(rows.iter().map(decode_exchange)).0)
    }

    /// Number of stored exchanges.
    pub async fn count_exchanges(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM exchanges").fetch_one(&self.pool).await?)
    }
}

fn decode_exchange(row: &sqlx::sqlite::SqliteRow) -> Result<StoredExchange> {
    let input: Option<i64> = row.try_get("input_tokens")?;
    let output: Option<i64> = row.try_get("output_tokens")?;
    let request: String = row.try_get("request")?;
    let response: String = row.try_get("response")?;
    let tags: String = row.try_get("tags")?;
    Ok(StoredExchange {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        received_at: row.try_get("received_at")?,
        exchange: Exchange {
            external_id: row.try_get("external_id")?,
            occurred_at: row.try_get("occurred_at")?,
            request: from_json::<Value>("exchanges.request", &request)?,
            response: from_json::<Value>("exchanges.response", &response)?,
            model: row.try_get("model")?,
            usage: crate::usage_from_columns(input, output),
            cost_usd: row.try_get("cost_usd")?,
            latency_ms: row.try_get("latency_ms")?,
            tags: from_json::<Value>("exchanges.tags", &tags)?,
            succeeded: row.try_get("succeeded")?,
        },
    })
}

/// The rows that decode, and how many did not (each logged): a corrupt row is counted, never
/// fatal to a list.
fn skip_unreadable(rows: impl Iterator<Item = Result<StoredExchange>>) -> (Vec<StoredExchange>, usize) {
    let mut skipped = 0;
    let readable = rows
        .filter_map(|row| match row {
            Ok(exchange) => Some(exchange),
            Err(err) => {
                skipped += 1;
                tracing_log(&err);
                None
            }
        })
        .collect();
    (readable, skipped)
}

fn tracing_log(err: &crate::StoreError) {
    log::warn!("skipping a stored exchange that does not read back: {err}");
}
