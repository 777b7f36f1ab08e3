//! How far an experiment has got: stored work against expected work.

use serde::Serialize;

use crate::{Columns, Result, Store, with_pool};

/// How far an experiment has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// Exchanges sampled.
    pub exchanges: u64,
    /// Replays the experiment needs (exchanges × candidates).
    pub replays_expected: u64,
    /// Replays stored (including failed ones).
    pub replays_done: u64,
    /// Replays that failed (a model or network error; the report's `errors`).
    pub replays_failed: u64,
    /// Replays never attempted (the spend cap was reached; the report's `skipped`).
    #[serde(default)]
    pub replays_skipped: u64,
    /// Judgments needed, counting pending replays as if they will succeed.
    pub judgments_expected: u64,
    /// Judgments stored (including failed ones).
    pub judgments_done: u64,
}

impl Progress {
    /// Whether every replay and judgment is stored.
    pub fn is_done(&self) -> bool {
        self.replays_done >= self.replays_expected && self.judgments_done >= self.judgments_expected
    }

    /// Units of work stored, for progress bars.
    pub fn completed(&self) -> u64 {
        self.replays_done + self.judgments_done
    }

    /// Units of work expected, for progress bars.
    pub fn total(&self) -> u64 {
        self.replays_expected + self.judgments_expected
    }
}

impl Store {
    /// How far an experiment has got.
    pub async fn experiment_progress(&self, experiment: &crate::Experiment) -> Result<Progress> {
        let (pointwise, pairwise) = experiment.spec.rubric_counts();
        let baseline_judged = experiment.spec.baseline.is_judged_on_items();
        self.progress(
            &experiment.id,
            experiment.spec.candidates.len() as u64,
            pointwise,
            pairwise,
            baseline_judged,
        )
        .await
    }

    /// Counts of stored and expected work for an experiment with `candidates`, `pointwise`
    /// rubrics (judged on each candidate, and on the baseline when `baseline_judged`: its text
    /// is on the item, not a replay) and `pairwise` rubrics (judged per candidate in both
    /// orders).
    pub async fn progress(
        &self,
        experiment_id: &str,
        candidates: u64,
        pointwise: u64,
        pairwise: u64,
        baseline_judged: bool,
    ) -> Result<Progress> {
        with_pool!(&self.pool, p => {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM experiment_items WHERE experiment_id = $1) AS exchanges,
               (SELECT COUNT(*) FROM replays WHERE experiment_id = $1) AS replays,
               (SELECT COUNT(*) FROM replays WHERE experiment_id = $1 AND error IS NOT NULL AND skipped IS NULL) AS failed,
               (SELECT COUNT(*) FROM replays WHERE experiment_id = $1 AND skipped IS NOT NULL) AS skipped,
               (SELECT COUNT(*) FROM judgments WHERE experiment_id = $1) AS judgments,
               (SELECT COUNT(*) FROM (SELECT item_id FROM replays WHERE experiment_id = $1 AND error IS NOT NULL
                                      GROUP BY item_id HAVING COUNT(*) >= $2) unanswered) AS unanswered",
        )
        .bind(experiment_id)
        .bind(candidates.max(1) as i64)
        .fetch_one(p)
        .await?;
        let count = |name: &str| -> Result<u64> { Ok(row.get::<i64>(name)?.max(0) as u64) };
        let exchanges = count("exchanges")?;
        let replays_done = count("replays")?;
        let replays_failed = count("failed")?;
        let replays_skipped = count("skipped")?;
        let replays_expected = exchanges * candidates;
        // One set per replay that succeeded or is still pending, and the baseline's on every
        // item some candidate answered or may still answer (none on an item every candidate
        // failed on or skipped: that score would pair with nothing).
        let replays_judged = replays_expected.saturating_sub(replays_failed + replays_skipped);
        let baseline_items = if candidates == 0 { exchanges } else { exchanges.saturating_sub(count("unanswered")?) };
        Ok(Progress {
            exchanges,
            replays_expected,
            replays_done,
            replays_failed,
            replays_skipped,
            judgments_expected: (if baseline_judged { baseline_items } else { 0 } + replays_judged) * pointwise
                + replays_judged * pairwise * 2,
            judgments_done: count("judgments")?,
        })
        })
    }
}
