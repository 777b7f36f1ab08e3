//! Calls parked for a provider's batch interface, and the batches they go out in.
//!
//! A unit of work whose call goes through a batch parks it: the request is stored, the work's
//! claim is handed to the batch (no worker takes it over meanwhile) and its spend reservation
//! is held as long. Parked calls are grouped into batches per experiment and endpoint; one
//! worker at a time drives a batch (submit, poll) under a lease, so a batch whose worker died
//! is taken over — and looked for at the provider before it is submitted again. When a batch
//! ends, its answers are stored and its work made ready: the job runs again and reads its
//! answer instead of calling.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::work::{Lease, now_ms};
use crate::{Result, Store, with_pool};

/// The owner a parked unit of work's claim is handed to.
pub const PARKED: &str = "batch";

/// A batch as a worker drives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    /// evaltap's id (also the tag the provider's batch carries).
    pub id: String,
    /// Experiment.
    pub experiment_id: String,
    /// The candidate's name, or '' for the judge.
    pub endpoint: String,
    /// `new`, `submitting`, `submitted` or `ended`.
    pub status: String,
    /// The provider's batch id, once submitted.
    pub provider_id: Option<String>,
    /// Times a worker started submitting it.
    pub submissions: i64,
    /// Requests in it.
    pub requests: i64,
    /// When a worker last started submitting it (ms since the epoch).
    pub submitting_ms: Option<i64>,
}

/// A batch of an experiment, as shown in its report and checked by tests.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BatchSummary {
    /// evaltap's id.
    pub id: String,
    /// The candidate's name, or '' for the judge.
    pub endpoint: String,
    /// `new`, `submitting`, `submitted` or `ended`.
    pub status: String,
    /// How the provider said it ended (`completed`, `expired`, `cancelled`…).
    pub provider_status: Option<String>,
    /// The provider's batch id.
    pub provider_id: Option<String>,
    /// Requests in it.
    pub requests: i64,
    /// Times a worker started submitting it (more than 1: a worker died while submitting, and
    /// the next found it at the provider or submitted it).
    pub submissions: i64,
    /// Of its requests, those answered with an error or never run.
    pub failed: i64,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Parks a call of the work `lease` holds until a batch answers it: stores the request
    /// (once; a call parked before stays as it is), hands the claim to the batch until
    /// `until_ms` and holds the work's spend reservation as long. False if the lease was lost.
    pub async fn park_call(
        &self,
        lease: &Lease,
        endpoint: &str,
        request_key: &str,
        custom_id: &str,
        body: &Value,
        until_ms: i64,
    ) -> Result<bool> {
        let now = now_ms();
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let held = sqlx::query(
                "UPDATE work_claims SET owner = $4, expires_ms = $5, claims = claims - 1
                 WHERE experiment_id = $1 AND work_key = $2 AND owner = $3 AND finished = FALSE",
            )
            .bind(&lease.experiment_id)
            .bind(&lease.work_key)
            .bind(&lease.owner)
            .bind(PARKED)
            .bind(until_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !held {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO batch_calls (experiment_id, work_key, request_key, endpoint, custom_id, body, parked_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&lease.experiment_id)
            .bind(&lease.work_key)
            .bind(request_key)
            .bind(endpoint)
            .bind(custom_id)
            .bind(body.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE spend_reservations SET expires_ms = $3
                 WHERE experiment_id = $1 AND work_key = $2 AND status = 'reserved'",
            )
            .bind(&lease.experiment_id)
            .bind(&lease.work_key)
            .bind(until_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The answers batches gave the calls of a unit of work: (request key, response or error).
    pub async fn batch_answers(
        &self,
        experiment_id: &str,
        work_key: &str,
    ) -> Result<Vec<(String, std::result::Result<Value, String>)>> {
        let rows: Vec<(String, Option<String>, Option<String>)> = with_pool!(&self.pool, p => sqlx::query_as(
            "SELECT request_key, response, error FROM batch_calls
             WHERE experiment_id = $1 AND work_key = $2 AND answered = TRUE",
        )
        .bind(experiment_id)
        .bind(work_key)
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(key, response, error)| {
                let answer = match (response, error) {
                    (Some(body), None) => serde_json::from_str(&body)
                        .map_err(|e| format!("the stored answer does not read: {e}")),
                    (_, error) => Err(error.unwrap_or_else(|| "no answer".into())),
                };
                (key, answer)
            })
            .collect())
    }

    /// The spend reservation a unit of work in batch mode still holds: one made before its
    /// call was parked — or before its worker died, in which case it may have been presumed
    /// paid when its lease ran out. In batch mode a call is billed only through its batch, so
    /// the job that settles the work settles that reservation (a presumed one with what the
    /// call really cost, 0 if it never went out) instead of reserving again.
    pub async fn held_reservation(
        &self,
        experiment_id: &str,
        work_key: &str,
    ) -> Result<Option<crate::Reservation>> {
        let row: Option<(String, f64)> = with_pool!(&self.pool, p => sqlx::query_as(
            "SELECT id, estimate_usd FROM spend_reservations
             WHERE experiment_id = $1 AND work_key = $2 AND status IN ('reserved', 'presumed')
             ORDER BY created_ms DESC LIMIT 1",
        )
        .bind(experiment_id)
        .bind(work_key)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(|(id, estimate_usd)| crate::Reservation {
            id,
            experiment_id: experiment_id.into(),
            estimate_usd,
        }))
    }

    /// Groups parked calls into new batches, per experiment and endpoint: at most
    /// `max_requests` each, formed once that many wait or the oldest has waited `wait`.
    /// Returns how many batches were formed.
    pub async fn group_parked_calls(&self, max_requests: usize, wait: Duration) -> Result<usize> {
        let now = now_ms();
        let max = i64::try_from(max_requests.max(1)).unwrap_or(i64::MAX);
        let waiting: Vec<(String, String, i64, i64)> = with_pool!(&self.pool, p => sqlx::query_as(
            "SELECT experiment_id, endpoint, COUNT(*), MIN(parked_ms) FROM batch_calls
             WHERE batch_id IS NULL GROUP BY experiment_id, endpoint",
        )
        .fetch_all(p)
        .await)?;
        let mut formed = 0;
        for (experiment_id, endpoint, count, oldest) in waiting {
            let mut left = count;
            while left >= max || (left > 0 && oldest <= now - millis(wait)) {
                let id = uuid::Uuid::now_v7().to_string();
                let grouped = with_pool!(&self.pool, p => {
                    let mut tx = p.begin().await?;
                    let grouped = sqlx::query(
                        "UPDATE batch_calls SET batch_id = $1
                         WHERE experiment_id = $2 AND batch_id IS NULL AND (work_key, request_key) IN (
                             SELECT work_key, request_key FROM batch_calls
                             WHERE experiment_id = $2 AND endpoint = $3 AND batch_id IS NULL
                             ORDER BY parked_ms LIMIT $4)",
                    )
                    .bind(&id)
                    .bind(&experiment_id)
                    .bind(&endpoint)
                    .bind(max)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if grouped > 0 {
                        sqlx::query(
                            "INSERT INTO batches (id, experiment_id, endpoint, status, requests, created_ms)
                             VALUES ($1, $2, $3, 'new', $4, $5)",
                        )
                        .bind(&id)
                        .bind(&experiment_id)
                        .bind(&endpoint)
                        .bind(i64::try_from(grouped).unwrap_or(i64::MAX))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok::<_, crate::StoreError>(grouped)
                })?;
                if grouped == 0 {
                    break;
                }
                formed += 1;
                left -= i64::try_from(grouped).unwrap_or(left);
            }
        }
        Ok(formed)
    }

    /// Whether any batch waits for a driver (a read: idle workers poll with it, so that having
    /// no batches costs no write).
    pub async fn has_undriven_batches(&self) -> Result<bool> {
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM batches WHERE status <> 'ended' AND expires_ms < $1)",
        )
        .bind(now_ms())
        .fetch_one(p)
        .await)?)
    }

    /// Takes the batches not ended whose driver's lease ran out (or that were never driven)
    /// for `owner`, for `lease`.
    pub async fn claim_batches(&self, owner: &str, lease: Duration) -> Result<Vec<BatchRow>> {
        let now = now_ms();
        type Row = (String, String, String, String, Option<String>, i64, i64, Option<i64>);
        let rows: Vec<Row> = with_pool!(&self.pool, p => sqlx::query_as(
            "UPDATE batches SET owner = $1, expires_ms = $2
             WHERE status <> 'ended' AND expires_ms < $3
             RETURNING id, experiment_id, endpoint, status, provider_id, submissions, requests, submitting_ms",
        )
        .bind(owner)
        .bind(now.saturating_add(millis(lease)))
        .bind(now)
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, experiment_id, endpoint, status, provider_id, submissions, requests, submitting_ms)| {
                    BatchRow {
                        id,
                        experiment_id,
                        endpoint,
                        status,
                        provider_id,
                        submissions,
                        requests,
                        submitting_ms,
                    }
                },
            )
            .collect())
    }

    /// Extends `owner`'s lease on a batch; false if it was lost (or the batch ended).
    pub async fn renew_batch(&self, id: &str, owner: &str, lease: Duration) -> Result<bool> {
        let expires = now_ms().saturating_add(millis(lease));
        Ok(with_pool!(&self.pool, p => sqlx::query(
            "UPDATE batches SET expires_ms = $3 WHERE id = $1 AND owner = $2 AND status <> 'ended'",
        )
        .bind(id)
        .bind(owner)
        .bind(expires)
        .execute(p)
        .await
        .map(|done| done.rows_affected()))?
            == 1)
    }

    /// Gives a batch up (a worker stopping): any worker takes it at once.
    pub async fn release_batch(&self, id: &str, owner: &str) -> Result<()> {
        with_pool!(&self.pool, p => sqlx::query("UPDATE batches SET expires_ms = 0 WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The requests of a batch: (custom id, body).
    pub async fn batch_requests(&self, id: &str) -> Result<Vec<(String, Value)>> {
        let rows: Vec<(String, String)> = with_pool!(&self.pool, p => sqlx::query_as(
            "SELECT custom_id, body FROM batch_calls WHERE batch_id = $1 ORDER BY custom_id",
        )
        .bind(id)
        .fetch_all(p)
        .await)?;
        rows.into_iter()
            .map(|(custom_id, body)| {
                serde_json::from_str(&body)
                    .map(|body| (custom_id, body))
                    .map_err(|source| crate::StoreError::Json { what: "a parked request", source })
            })
            .collect()
    }

    /// Records that `owner` starts submitting a batch (before the provider is asked, so a
    /// worker taking over knows to look for it there). False if the lease was lost.
    pub async fn batch_submitting(&self, id: &str, owner: &str) -> Result<bool> {
        Ok(with_pool!(&self.pool, p => sqlx::query(
            "UPDATE batches SET status = 'submitting', submissions = submissions + 1, submitting_ms = $3
             WHERE id = $1 AND owner = $2 AND status IN ('new', 'submitting')",
        )
        .bind(id)
        .bind(owner)
        .bind(now_ms())
        .execute(p)
        .await
        .map(|done| done.rows_affected()))?
            == 1)
    }

    /// Records the provider's id of a submitted batch.
    pub async fn batch_submitted(&self, id: &str, owner: &str, provider_id: &str) -> Result<bool> {
        Ok(with_pool!(&self.pool, p => sqlx::query(
            "UPDATE batches SET status = 'submitted', provider_id = $3, submitted_ms = $4
             WHERE id = $1 AND owner = $2 AND status IN ('new', 'submitting')",
        )
        .bind(id)
        .bind(owner)
        .bind(provider_id)
        .bind(now_ms())
        .execute(p)
        .await
        .map(|done| done.rows_affected()))?
            == 1)
    }

    /// The provider ids evaltap recorded for batches formed since `since_ms`: a batch found at
    /// the provider by its size and time is one of these if another evaltap batch owns it.
    pub async fn recorded_provider_ids(&self, since_ms: i64) -> Result<Vec<String>> {
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT provider_id FROM batches WHERE provider_id IS NOT NULL AND created_ms >= $1",
        )
        .bind(since_ms)
        .fetch_all(p)
        .await)?)
    }

    /// Forgets the provider's batch a batch was matched with (its results are not this batch's
    /// requests): it is submitted again. False if `owner` no longer drives it.
    pub async fn batch_mismatched(&self, id: &str, owner: &str) -> Result<bool> {
        Ok(with_pool!(&self.pool, p => sqlx::query(
            "UPDATE batches SET status = 'new', provider_id = NULL, submitted_ms = NULL
             WHERE id = $1 AND owner = $2 AND status = 'submitted'",
        )
        .bind(id)
        .bind(owner)
        .execute(p)
        .await
        .map(|done| done.rows_affected()))?
            == 1)
    }

    /// Ends a batch with its answers, by custom id, in one transaction: each call answered
    /// once (a call without an answer gets `unanswered` as its error — it never ran, so it was
    /// not billed), and their work made ready again. False if `owner` no longer drives it.
    pub async fn end_batch(
        &self,
        id: &str,
        owner: &str,
        provider_status: &str,
        answers: &[(String, std::result::Result<Value, String>)],
        unanswered: &str,
    ) -> Result<bool> {
        let now = now_ms();
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let held = sqlx::query(
                "UPDATE batches SET status = 'ended', provider_status = $3, ended_ms = $4
                 WHERE id = $1 AND owner = $2 AND status <> 'ended'",
            )
            .bind(id)
            .bind(owner)
            .bind(provider_status)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !held {
                return Ok(false);
            }
            for (custom_id, answer) in answers {
                let (response, error) = match answer {
                    Ok(body) => (Some(body.to_string()), None),
                    Err(reason) => (None, Some(reason.clone())),
                };
                sqlx::query(
                    "UPDATE batch_calls SET answered = TRUE, response = $3, error = $4
                     WHERE batch_id = $1 AND custom_id = $2 AND answered = FALSE",
                )
                .bind(id)
                .bind(custom_id)
                .bind(response)
                .bind(error)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE batch_calls SET answered = TRUE, error = $2 WHERE batch_id = $1 AND answered = FALSE")
                .bind(id)
                .bind(unanswered)
                .execute(&mut *tx)
                .await?;
            // Ready at once, for any worker; the claims it was parked with are not counted.
            sqlx::query(
                "UPDATE work_claims SET owner = '', expires_ms = 0
                 WHERE owner = $2 AND finished = FALSE AND (experiment_id, work_key) IN (
                     SELECT experiment_id, work_key FROM batch_calls WHERE batch_id = $1)",
            )
            .bind(id)
            .bind(PARKED)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Units of an experiment whose call is out in a batch, unanswered (the batch readies them).
    pub async fn parked_work_keys(&self, experiment_id: &str) -> Result<Vec<String>> {
        let sql = "SELECT DISTINCT work_key FROM batch_calls WHERE experiment_id = $1 AND answered = FALSE";
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar(sql).bind(experiment_id).fetch_all(p).await)?)
    }

    /// Calls of an experiment (of one `endpoint`, or of all) parked or out in a batch, not
    /// answered yet.
    pub async fn calls_out(&self, experiment_id: &str, endpoint: Option<&str>) -> Result<i64> {
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM batch_calls
             WHERE experiment_id = $1 AND ($2 IS NULL OR endpoint = $2) AND answered = FALSE",
        )
        .bind(experiment_id)
        .bind(endpoint)
        .fetch_one(p)
        .await)?)
    }

    /// The batches of an experiment, oldest first.
    pub async fn batches(&self, experiment_id: &str) -> Result<Vec<BatchSummary>> {
        type Row = (String, String, String, Option<String>, Option<String>, i64, i64, i64);
        let rows: Vec<Row> = with_pool!(&self.pool, p => sqlx::query_as(
            "SELECT b.id, b.endpoint, b.status, b.provider_status, b.provider_id, b.requests, b.submissions,
                    (SELECT COUNT(*) FROM batch_calls c WHERE c.batch_id = b.id AND c.error IS NOT NULL)
             FROM batches b WHERE b.experiment_id = $1 ORDER BY b.created_ms, b.id",
        )
        .bind(experiment_id)
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, endpoint, status, provider_status, provider_id, requests, submissions, failed)| {
                BatchSummary {
                    id,
                    endpoint,
                    status,
                    provider_status,
                    provider_id,
                    requests,
                    submissions,
                    failed,
                }
            })
            .collect())
    }
}
