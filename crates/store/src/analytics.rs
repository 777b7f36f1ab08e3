//! Aggregates over stored traffic for the spend and sources pages: grouped in the database,
//! never row by row.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Columns as _, Pool, Result, Store, with_pool};

/// Stored traffic of one source and model over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrafficRow {
    /// Source.
    pub source: String,
    /// Model that served it (`None` when the gateway did not say).
    pub model: Option<String>,
    /// Stored exchanges (after sampling).
    pub requests: u64,
    /// Of those, the ones that carried a cost.
    pub priced: u64,
    /// Sum of the costs carried, USD.
    pub cost_usd: f64,
    /// Prompt tokens of the exchanges without a cost (priced from configured prices, if any).
    pub unpriced_input_tokens: u64,
    /// Completion tokens of the exchanges without a cost.
    pub unpriced_output_tokens: u64,
}

/// Stored exchanges of one source in one hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourlyCount {
    /// Source.
    pub source: String,
    /// The hour, `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    /// Stored exchanges.
    pub requests: u64,
}

/// A reason the door refused items, with how often.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RejectionReason {
    /// Source.
    pub source: String,
    /// The reason as the sender was told.
    pub reason: String,
    /// Items refused for it.
    pub count: u64,
    /// When it last happened.
    pub last_seen_at: DateTime<Utc>,
}

fn count(value: Option<i64>) -> u64 {
    value.unwrap_or(0).max(0) as u64
}

impl Store {
    /// Stored traffic per source and model received in `[since, until)`.
    pub async fn traffic_by_source_and_model(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<TrafficRow>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT source, model, COUNT(*) AS requests, COUNT(cost_usd) AS priced,
                        SUM(cost_usd) AS cost_usd,
                        SUM(CASE WHEN cost_usd IS NULL THEN input_tokens END) AS unpriced_input,
                        SUM(CASE WHEN cost_usd IS NULL THEN output_tokens END) AS unpriced_output
                 FROM exchanges WHERE received_at >= $1 AND received_at < $2
                 GROUP BY source, model ORDER BY source, model",
            )
            .bind(since)
            .bind(until)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(TrafficRow {
                        source: r.get("source")?,
                        model: r.get("model")?,
                        requests: count(r.get("requests")?),
                        priced: count(r.get("priced")?),
                        cost_usd: r.get::<Option<f64>>("cost_usd")?.unwrap_or(0.0),
                        unpriced_input_tokens: count(r.get("unpriced_input")?),
                        unpriced_output_tokens: count(r.get("unpriced_output")?),
                    })
                })
                .collect()
        })
    }

    /// Stored exchanges per source and hour received in `[since, until)`, oldest first.
    pub async fn hourly_traffic(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<HourlyCount>> {
        let hour = match &self.pool {
            Pool::Sqlite(_) => crate::sqlite::RECEIVED_HOUR,
            Pool::Postgres(_) => crate::postgres::RECEIVED_HOUR,
        };
        let sql = format!(
            "SELECT source, {hour} AS hour, COUNT(*) AS requests FROM exchanges
             WHERE received_at >= $1 AND received_at < $2 GROUP BY source, {hour} ORDER BY 2, 1"
        );
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(since).bind(until).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(HourlyCount {
                        source: r.get("source")?,
                        hour: r.get("hour")?,
                        requests: count(r.get("requests")?),
                    })
                })
                .collect()
        })
    }

    /// Counts refusals by reason (one statement per distinct reason).
    pub async fn record_rejections(&self, source: &str, reasons: &[String]) -> Result<()> {
        let mut distinct: Vec<(&str, i64)> = Vec::new();
        for reason in reasons {
            match distinct.iter_mut().find(|(r, _)| *r == reason.as_str()) {
                Some(entry) => entry.1 += 1,
                None => distinct.push((reason.as_str(), 1)),
            }
        }
        let now = Utc::now();
        with_pool!(&self.pool, p => {
            for (reason, n) in distinct {
                sqlx::query(
                    "INSERT INTO rejection_reasons (source, reason, count, last_seen_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (source, reason) DO UPDATE
                     SET count = rejection_reasons.count + excluded.count, last_seen_at = excluded.last_seen_at",
                )
                .bind(source)
                .bind(reason)
                .bind(n)
                .bind(now)
                .execute(p)
                .await?;
            }
            Ok(())
        })
    }

    /// The `limit` most common refusal reasons of each source.
    pub async fn top_rejection_reasons(&self, limit: usize) -> Result<Vec<RejectionReason>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT source, reason, count, last_seen_at FROM rejection_reasons ORDER BY source, count DESC, reason",
            )
            .fetch_all(p)
            .await?;
            let mut out: Vec<RejectionReason> = Vec::new();
            for r in &rows {
                let source: String = r.get("source")?;
                if out.iter().filter(|x| x.source == source).count() >= limit {
                    continue;
                }
                out.push(RejectionReason {
                    source,
                    reason: r.get("reason")?,
                    count: count(r.get("count")?),
                    last_seen_at: r.get("last_seen_at")?,
                });
            }
            Ok(out)
        })
    }
}
