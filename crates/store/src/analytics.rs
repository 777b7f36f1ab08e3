//! Aggregates over stored traffic for the spend and sources pages: grouped in the database,
//! never row by row.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Columns as _, Result, Store, with_pool};

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

/// The hour a timestamp falls in, as `traffic_hourly` keys it.
pub(crate) fn hour_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H").to_string()
}

/// Stored exchanges of one group commit, summed per source and model for `traffic_hourly`.
#[derive(Debug, Default)]
pub(crate) struct HourlyRollup {
    rows: Vec<TrafficRow>,
}

impl HourlyRollup {
    /// Counts one stored exchange.
    pub(crate) fn add(&mut self, source: &str, exchange: &evaltap_core::Exchange) {
        let model = exchange.model.clone();
        let at = match self.rows.iter().position(|r| r.source == source && r.model == model) {
            Some(at) => at,
            None => {
                self.rows.push(TrafficRow { source: source.to_string(), model, ..TrafficRow::default() });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[at];
        row.requests += 1;
        match exchange.cost_usd {
            Some(cost) => {
                row.priced += 1;
                row.cost_usd += cost;
            }
            None => {
                let usage = exchange.usage.unwrap_or_default();
                row.unpriced_input_tokens += usage.input_tokens;
                row.unpriced_output_tokens += usage.output_tokens;
            }
        }
    }

    /// The sums, as the binds of [`HourlyRollup::UPSERT`] after the hour: (source, model,
    /// requests, priced, cost, unpriced prompt tokens, unpriced completion tokens).
    pub(crate) fn rows(&self) -> impl Iterator<Item = (String, String, i64, i64, f64, i64, i64)> + '_ {
        let mut rows: Vec<&TrafficRow> = self.rows.iter().collect();
        rows.sort_by(|a, b| (&a.source, &a.model).cmp(&(&b.source, &b.model)));
        rows.into_iter().map(|r| {
            (
                r.source.clone(),
                r.model.clone().unwrap_or_default(),
                r.requests as i64,
                r.priced as i64,
                r.cost_usd,
                r.unpriced_input_tokens as i64,
                r.unpriced_output_tokens as i64,
            )
        })
    }

    /// Adds one source and model's sums to an hour: $1 hour, then [`HourlyRollup::rows`].
    pub(crate) const UPSERT: &'static str =
        "INSERT INTO traffic_hourly (hour, source, model, requests, priced, cost_usd,
             unpriced_input_tokens, unpriced_output_tokens)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (hour, source, model) DO UPDATE SET
           requests = traffic_hourly.requests + excluded.requests,
           priced = traffic_hourly.priced + excluded.priced,
           cost_usd = traffic_hourly.cost_usd + excluded.cost_usd,
           unpriced_input_tokens = traffic_hourly.unpriced_input_tokens + excluded.unpriced_input_tokens,
           unpriced_output_tokens = traffic_hourly.unpriced_output_tokens + excluded.unpriced_output_tokens";
}

impl Store {
    /// Stored traffic per source and model received in the hours from the one holding `since`
    /// to the one holding `until` (whole hours: read from the hourly rollup, not row by row).
    pub async fn traffic_by_source_and_model(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<TrafficRow>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                // PostgreSQL sums BIGINT as NUMERIC: cast back.
                "SELECT source, model, CAST(SUM(requests) AS BIGINT) AS requests,
                        CAST(SUM(priced) AS BIGINT) AS priced, SUM(cost_usd) AS cost_usd,
                        CAST(SUM(unpriced_input_tokens) AS BIGINT) AS unpriced_input,
                        CAST(SUM(unpriced_output_tokens) AS BIGINT) AS unpriced_output
                 FROM traffic_hourly WHERE hour >= $1 AND hour <= $2
                 GROUP BY source, model ORDER BY source, model",
            )
            .bind(hour_of(since))
            .bind(hour_of(until))
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    let model: String = r.get("model")?;
                    Ok(TrafficRow {
                        source: r.get("source")?,
                        model: (!model.is_empty()).then_some(model),
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

    /// Stored exchanges per source and hour, from the hour holding `since` to the one holding
    /// `until`, oldest first.
    pub async fn hourly_traffic(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<HourlyCount>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT source, hour, CAST(SUM(requests) AS BIGINT) AS requests FROM traffic_hourly
                 WHERE hour >= $1 AND hour <= $2 GROUP BY hour, source ORDER BY hour, source",
            )
            .bind(hour_of(since))
            .bind(hour_of(until))
            .fetch_all(p)
            .await?;
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
