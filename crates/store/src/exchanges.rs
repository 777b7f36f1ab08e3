use crate::Columns;
use chrono::{DateTime, Utc};
use evaltap_core::Exchange;
use serde::Serialize;
use serde_json::Value;

use crate::with_pool;
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

/// One delivery of a group commit: a source's kept exchanges and its counts.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Source name.
    pub source: &'a str,
    /// Exchanges to store.
    pub exchanges: &'a [Exchange],
    /// Counts the store does not see itself.
    pub counts: DeliveryCounts,
}

/// An exchange as one row of the `exchanges` table.
#[derive(Debug, Clone)]
pub(crate) struct ExchangeRow {
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) dedup_key: String,
    pub(crate) external_id: Option<String>,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) occurred_at: Option<DateTime<Utc>>,
    pub(crate) model: Option<String>,
    pub(crate) request: String,
    pub(crate) response: String,
    pub(crate) input_tokens: Option<i64>,
    pub(crate) output_tokens: Option<i64>,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) tags: String,
    pub(crate) succeeded: bool,
}

/// What a source has sent, over its lifetime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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

/// The parts of a stored exchange a listing shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeHead {
    /// Row id.
    pub id: String,
    /// Source.
    pub source: String,
    /// Tags.
    pub tags: serde_json::Value,
    /// The request as stored (redacted).
    pub request: serde_json::Value,
}

/// An exchange as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
        let mut outcomes = self.record_deliveries(&[Delivery { source, exchanges: batch, counts }]).await?;
        Ok(outcomes.pop().unwrap_or_default())
    }

    /// Stores several deliveries in one transaction (group commit): their exchanges in
    /// multi-row inserts, each source's counters once. Returns each delivery's outcome, in
    /// order, only once everything is committed; if the commit fails, none is stored. An
    /// exchange sent twice in one group counts as inserted for the first delivery that has it.
    pub async fn record_deliveries(&self, deliveries: &[Delivery<'_>]) -> Result<Vec<IngestOutcome>> {
        let now = Utc::now();
        // Every row of the group, with the delivery it belongs to.
        let rows: Vec<(usize, &Exchange, String)> = deliveries
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.exchanges.iter().map(move |e| (i, e, e.dedup_key())))
            .collect();
        let table_rows: Vec<ExchangeRow> = rows
            .iter()
            .map(|(i, exchange, key)| {
                let usage = exchange.usage;
                ExchangeRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    source: deliveries[*i].source.to_string(),
                    dedup_key: key.clone(),
                    external_id: exchange.external_id.clone(),
                    received_at: now,
                    occurred_at: exchange.occurred_at,
                    model: exchange.model.clone(),
                    request: to_json(&exchange.request),
                    response: to_json(&exchange.response),
                    input_tokens: usage.map(|u| u.input_tokens as i64),
                    output_tokens: usage.map(|u| u.output_tokens as i64),
                    cost_usd: exchange.cost_usd,
                    latency_ms: exchange.latency_ms,
                    tags: to_json(&exchange.tags),
                    succeeded: exchange.succeeded,
                }
            })
            .collect();
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let mut inserted: std::collections::HashSet<(String, String)> =
                crate::InsertExchangeRows::insert_exchange_rows(&mut tx, &table_rows).await?.into_iter().collect();
            let mut outcomes = vec![IngestOutcome::default(); deliveries.len()];
            let mut hourly = crate::analytics::HourlyRollup::default();
            for (i, exchange, key) in &rows {
                if inserted.remove(&(deliveries[*i].source.to_string(), key.clone())) {
                    outcomes[*i].inserted += 1;
                    hourly.add(deliveries[*i].source, exchange);
                } else {
                    outcomes[*i].duplicates += 1;
                }
            }
            // Each source's counters once per group.
            let mut by_source: Vec<(&str, DeliveryCounts, IngestOutcome)> = Vec::new();
            for (delivery, outcome) in deliveries.iter().zip(&outcomes) {
                let entry = match by_source.iter_mut().position(|(s, ..)| *s == delivery.source) {
                    Some(at) => &mut by_source[at],
                    None => {
                        by_source.push((delivery.source, DeliveryCounts::default(), IngestOutcome::default()));
                        by_source.last_mut().expect("just pushed")
                    }
                };
                entry.1.received += delivery.counts.received;
                entry.1.sampled_out += delivery.counts.sampled_out;
                entry.1.rejected += delivery.counts.rejected;
                entry.1.redactions += delivery.counts.redactions;
                entry.2.inserted += outcome.inserted;
                entry.2.duplicates += outcome.duplicates;
            }
            // Rows are locked in one order (by source, then model) by every transaction, so
            // concurrent group commits — several writers, or several serve processes on one
            // PostgreSQL — wait for each other instead of deadlocking.
            by_source.sort_by(|a, b| a.0.cmp(b.0));
            for (source, counts, outcome) in &by_source {
                sqlx::query(
                    "INSERT INTO source_stats (source, received, accepted, sampled_out, duplicates, rejected, redactions, last_seen_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (source) DO UPDATE SET
                       received = source_stats.received + $2, accepted = source_stats.accepted + $3,
                       sampled_out = source_stats.sampled_out + $4, duplicates = source_stats.duplicates + $5,
                       rejected = source_stats.rejected + $6, redactions = source_stats.redactions + $7,
                       last_seen_at = $8",
                )
                .bind(*source)
                .bind(counts.received as i64)
                .bind(outcome.inserted as i64)
                .bind(counts.sampled_out as i64)
                .bind(outcome.duplicates as i64)
                .bind(counts.rejected as i64)
                .bind(counts.redactions as i64)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            // The hourly rollup the spend and sources pages read, in the same transaction.
            let hour = crate::analytics::hour_of(now);
            for (source, model, requests, priced, cost, input, output) in hourly.rows() {
                sqlx::query(crate::analytics::HourlyRollup::UPSERT)
                    .bind(&hour)
                    .bind(source)
                    .bind(model)
                    .bind(requests)
                    .bind(priced)
                    .bind(cost)
                    .bind(input)
                    .bind(output)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(outcomes)
        })
    }

    /// Lifetime counters of every source that has sent something.
    pub async fn source_stats(&self) -> Result<Vec<SourceStats>> {
        Ok(
            with_pool!(&self.pool, p => sqlx::query_as("SELECT * FROM source_stats ORDER BY source").fetch_all(p).await)?,
        )
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
        with_pool!(&self.pool, p => {
        let rows = sqlx::query(
            "SELECT id, source, external_id, received_at, occurred_at, model, request, response,
                    input_tokens, output_tokens, cost_usd, latency_ms, tags, succeeded
             FROM exchanges WHERE ($1 IS NULL OR source = $1) ORDER BY received_at DESC, id DESC LIMIT $2",
        )
        .bind(source)
        .bind(limit)
        .fetch_all(p)
        .await?;
        Ok(skip_unreadable(rows.iter().map(decode_exchange)))
        })
    }

    /// What a listing shows of the exchanges an experiment sampled: id, source, tags and the
    /// request (not the response), in one query. Rows whose JSON does not read back get empty
    /// values rather than failing the listing.
    pub async fn experiment_exchange_heads(&self, experiment_id: &str) -> Result<Vec<ExchangeHead>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT e.id, e.source, e.tags, e.request
                 FROM experiment_items i JOIN exchanges e ON e.id = i.item_id
                 WHERE i.experiment_id = $1",
            )
            .bind(experiment_id)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    let tags: String = r.get("tags")?;
                    let request: String = r.get("request")?;
                    Ok(ExchangeHead {
                        id: r.get("id")?,
                        source: r.get("source")?,
                        tags: serde_json::from_str(&tags).unwrap_or_default(),
                        request: serde_json::from_str(&request).unwrap_or_default(),
                    })
                })
                .collect()
        })
    }

    /// The exchanges an experiment sampled, in one query; and how many rows did not read
    /// back (each logged, never fatal).
    pub async fn experiment_exchanges(&self, experiment_id: &str) -> Result<(Vec<StoredExchange>, usize)> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT e.id, e.source, e.external_id, e.received_at, e.occurred_at, e.model, e.request,
                        e.response, e.input_tokens, e.output_tokens, e.cost_usd, e.latency_ms, e.tags,
                        e.succeeded
                 FROM experiment_items i JOIN exchanges e ON e.id = i.item_id
                 WHERE i.experiment_id = $1 ORDER BY e.id",
            )
            .bind(experiment_id)
            .fetch_all(p)
            .await?;
            Ok(skip_unreadable(rows.iter().map(decode_exchange)))
        })
    }

    /// The exchange with this id.
    pub async fn exchange(&self, id: &str) -> Result<Option<StoredExchange>> {
        with_pool!(&self.pool, p => {
        let row = sqlx::query(
            "SELECT id, source, external_id, received_at, occurred_at, model, request, response,
                    input_tokens, output_tokens, cost_usd, latency_ms, tags, succeeded
             FROM exchanges WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(p)
        .await?;
        row.map(|row| decode_exchange(&row)).transpose()
        })
    }

    /// Successful exchanges matching `filter`, oldest first (the pool golden items are promoted
    /// from).
    pub async fn matching_exchanges(&self, filter: &crate::Filter) -> Result<Vec<StoredExchange>> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query(
            "SELECT id, source, external_id, received_at, occurred_at, model, request, response,
                    input_tokens, output_tokens, cost_usd, latency_ms, tags, succeeded
             FROM exchanges WHERE succeeded = TRUE
               AND ($1 IS NULL OR source = $1) AND ($2 IS NULL OR model = $2)
               AND ($3 IS NULL OR received_at >= $3) AND ($4 IS NULL OR received_at < $4)
             ORDER BY received_at, id",
        )
        .bind(&filter.source)
        .bind(&filter.model)
        .bind(filter.since)
        .bind(filter.until)
        .fetch_all(p)
        .await?;
        let (mut exchanges, _) = skip_unreadable(rows.iter().map(decode_exchange));
        exchanges.retain(|stored| filter.tags_match(&stored.exchange.tags));
        Ok(exchanges)
        })
    }

    /// Up to `limit` exchanges matching `filter` (failed calls too), newest first, starting
    /// `offset` rows in; rows that do not read back are skipped and counted.
    pub async fn exchanges_matching(
        &self,
        filter: &crate::Filter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredExchange>, usize)> {
        with_pool!(&self.pool, p => {
        let rows = sqlx::query(
            "SELECT id, source, external_id, received_at, occurred_at, model, request, response,
                    input_tokens, output_tokens, cost_usd, latency_ms, tags, succeeded
             FROM exchanges WHERE ($1 IS NULL OR source = $1) AND ($2 IS NULL OR model = $2)
               AND ($3 IS NULL OR received_at >= $3) AND ($4 IS NULL OR received_at < $4)
             ORDER BY received_at DESC, id DESC LIMIT $5 OFFSET $6",
        )
        .bind(&filter.source)
        .bind(&filter.model)
        .bind(filter.since)
        .bind(filter.until)
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await?;
        Ok(skip_unreadable(rows.iter().map(decode_exchange)))
        })
    }

    /// Number of stored exchanges.
    pub async fn count_exchanges(&self) -> Result<i64> {
        Ok(
            with_pool!(&self.pool, p => sqlx::query_scalar("SELECT COUNT(*) FROM exchanges").fetch_one(p).await)?,
        )
    }
}

fn decode_exchange(row: &impl Columns) -> Result<StoredExchange> {
    let input: Option<i64> = row.get("input_tokens")?;
    let output: Option<i64> = row.get("output_tokens")?;
    let request: String = row.get("request")?;
    let response: String = row.get("response")?;
    let tags: String = row.get("tags")?;
    Ok(StoredExchange {
        id: row.get("id")?,
        source: row.get("source")?,
        received_at: row.get("received_at")?,
        exchange: Exchange {
            external_id: row.get("external_id")?,
            occurred_at: row.get("occurred_at")?,
            request: from_json::<Value>("exchanges.request", &request)?,
            response: from_json::<Value>("exchanges.response", &response)?,
            model: row.get("model")?,
            usage: crate::usage_from_columns(input, output),
            cost_usd: row.get("cost_usd")?,
            latency_ms: row.get("latency_ms")?,
            tags: from_json::<Value>("exchanges.tags", &tags)?,
            succeeded: row.get("succeeded")?,
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
