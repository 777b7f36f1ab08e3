//! Early stopping: which candidates of an experiment have settled verdicts. Once one is
//! recorded, that candidate's replays not yet made are skipped as [`crate::SETTLED`].

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Columns as _, Result, Store, with_pool};

/// A candidate that stopped early.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettledCandidate {
    /// Candidate name.
    pub candidate: String,
    /// When its verdict was settled.
    pub settled_at: DateTime<Utc>,
    /// Pairs scored on each of its rubrics by then (the fewest).
    pub pairs: u64,
}

impl Store {
    /// Records that `candidate` settled with `pairs` pairs; returns whether this call did (a
    /// second process deciding the same finds it recorded).
    pub async fn settle_candidate(&self, experiment_id: &str, candidate: &str, pairs: u64) -> Result<bool> {
        let pairs = i64::try_from(pairs).unwrap_or(i64::MAX);
        let done = with_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO settled_candidates (experiment_id, candidate, settled_ms, pairs) VALUES ($1, $2, $3, $4)
             ON CONFLICT (experiment_id, candidate) DO NOTHING",
        )
        .bind(experiment_id)
        .bind(candidate)
        .bind(Utc::now().timestamp_millis())
        .bind(pairs)
        .execute(p).await.map(|d| d.rows_affected()))?;
        Ok(done == 1)
    }

    /// The candidates of an experiment that stopped early, by name.
    pub async fn settled_candidates(&self, experiment_id: &str) -> Result<Vec<SettledCandidate>> {
        with_pool!(&self.pool, p => {
            let rows = sqlx::query(
                "SELECT candidate, settled_ms, pairs FROM settled_candidates WHERE experiment_id = $1 ORDER BY candidate",
            )
            .bind(experiment_id)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(SettledCandidate {
                        candidate: row.get("candidate")?,
                        settled_at: DateTime::from_timestamp_millis(row.get::<i64>("settled_ms")?).unwrap_or_default(),
                        pairs: row.get::<i64>("pairs")?.max(0) as u64,
                    })
                })
                .collect()
        })
    }
}
