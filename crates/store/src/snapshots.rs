//! Stored reports: an experiment's statistics are computed once and kept with a fingerprint of
//! the results they came from, so a page that shows them does not recompute them.

use chrono::Utc;

use crate::{Columns as _, Result, Store, with_pool};

impl Store {
    /// A fingerprint of everything an experiment's report is computed from that can change:
    /// replays and judgments (stored once, never updated, so their counts say when one lands),
    /// calibrations, and the spend ledger. Equal fingerprints mean an equal report.
    pub async fn results_fingerprint(&self, experiment_id: &str) -> Result<String> {
        with_pool!(&self.pool, p => {
            let row = sqlx::query(
                "SELECT
                   (SELECT COUNT(*) FROM replays WHERE experiment_id = $1) AS replays,
                   (SELECT COUNT(*) FROM judgments WHERE experiment_id = $1) AS judgments,
                   (SELECT COUNT(*) FROM calibrations) AS calibrations,
                   (SELECT COUNT(*) FROM experiment_items WHERE experiment_id = $1) AS items,
                   (SELECT COUNT(*) FROM settled_candidates WHERE experiment_id = $1) AS settled,
                   COALESCE((SELECT spent_usd FROM experiment_spend WHERE experiment_id = $1), 0.0) AS spent,
                   COALESCE((SELECT judge_spent_usd FROM experiment_spend WHERE experiment_id = $1), 0.0) AS judge,
                   COALESCE((SELECT reserved_usd FROM experiment_spend WHERE experiment_id = $1), 0.0) AS reserved,
                   COALESCE((SELECT capped FROM experiment_spend WHERE experiment_id = $1), FALSE) AS capped",
            )
            .bind(experiment_id)
            .fetch_one(p)
            .await?;
            Ok(format!(
                "r{}:j{}:c{}:i{}:st{}:s{}:js{}:rs{}:cap{}",
                row.get::<i64>("replays")?,
                row.get::<i64>("judgments")?,
                row.get::<i64>("calibrations")?,
                row.get::<i64>("items")?,
                row.get::<i64>("settled")?,
                row.get::<f64>("spent")?,
                row.get::<f64>("judge")?,
                row.get::<f64>("reserved")?,
                row.get::<bool>("capped")?,
            ))
        })
    }

    /// The stored report of an experiment and the fingerprint it was computed at.
    pub async fn report_snapshot(&self, experiment_id: &str) -> Result<Option<(String, String)>> {
        with_pool!(&self.pool, p => {
            let row = sqlx::query("SELECT fingerprint, report FROM report_snapshots WHERE experiment_id = $1")
                .bind(experiment_id)
                .fetch_optional(p)
                .await?;
            row.map(|r| Ok((r.get("fingerprint")?, r.get("report")?))).transpose()
        })
    }

    /// Keeps `report` (JSON) as the experiment's report at `fingerprint`.
    pub async fn save_report_snapshot(
        &self,
        experiment_id: &str,
        fingerprint: &str,
        report: &str,
    ) -> Result<()> {
        with_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO report_snapshots (experiment_id, fingerprint, report, computed_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (experiment_id) DO UPDATE
             SET fingerprint = excluded.fingerprint, report = excluded.report, computed_at = excluded.computed_at",
        )
        .bind(experiment_id)
        .bind(fingerprint)
        .bind(report)
        .bind(Utc::now())
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}
