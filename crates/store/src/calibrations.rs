//! Judge calibrations against human labels.

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use crate::{Columns, Result, Store, from_json, to_json, with_pool};

/// A judge calibration against human labels, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Rubric calibrated.
    pub rubric: String,
    /// Hash of the rubric's text at the time.
    pub rubric_sha256: String,
    /// Judge model calibrated.
    pub judge_model: String,
    /// The labels file.
    pub labels_file: String,
    /// When.
    pub created_at: chrono::DateTime<Utc>,
    /// The agreement statistics (JSON).
    pub result: Value,
}

impl Store {
    /// Stores a calibration result.
    pub async fn insert_calibration(&self, calibration: &Calibration) -> Result<()> {
        with_pool!(&self.pool, p => sqlx::query(
            "INSERT INTO calibrations (id, rubric, rubric_sha256, judge_model, labels_file, created_at, result)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&calibration.rubric)
        .bind(&calibration.rubric_sha256)
        .bind(&calibration.judge_model)
        .bind(&calibration.labels_file)
        .bind(calibration.created_at)
        .bind(to_json(&calibration.result))
        .execute(p).await.map(|d| d.rows_affected()))?;
        Ok(())
    }

    /// The latest calibration of `rubric` (any version of its text), newest first.
    pub async fn latest_calibration(&self, rubric: &str) -> Result<Option<Calibration>> {
        with_pool!(&self.pool, p => {
        let row = sqlx::query(
            "SELECT rubric, rubric_sha256, judge_model, labels_file, created_at, result FROM calibrations
             WHERE rubric = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(rubric)
        .fetch_optional(p)
        .await?;
        row.map(|r| -> Result<Calibration> {
            let result: String = r.get("result")?;
            Ok(Calibration {
                rubric: r.get("rubric")?,
                rubric_sha256: r.get("rubric_sha256")?,
                judge_model: r.get("judge_model")?,
                labels_file: r.get("labels_file")?,
                created_at: r.get("created_at")?,
                result: from_json("calibrations.result", &result)?,
            })
        })
        .transpose()
        })
    }
}
