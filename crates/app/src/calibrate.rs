//! Calibrating the judge: its scores on human-labelled items, and how well they agree.

use std::path::Path;

use evaltap_judge::calibration::{self, CalibrationResult};
use evaltap_judge::{JudgeError, Mode, Subject};
use evaltap_store::Calibration;
use futures_util::StreamExt as _;

use crate::{App, AppError};

/// A rubric the folder does not hold is not found; any other judge error is the request's.
fn judge_error(err: JudgeError) -> AppError {
    match err {
        JudgeError::Unknown { .. } => AppError::NotFound(err.to_string()),
        err => {
            // The causes too: "cannot read labels.jsonl: No such file or directory".
            let mut message = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(inner) = cause {
                message.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            AppError::Invalid(message)
        }
    }
}

/// Runs the configured judge over a labels file with `rubric`, stores the result and returns it.
pub async fn calibrate(app: &App, rubric: &str, labels: &Path) -> Result<CalibrationResult, AppError> {
    let definition = app.rubrics.get(rubric).map_err(judge_error)?.clone();
    if definition.mode != Mode::Pointwise {
        return Err(AppError::Invalid(format!("calibration compares scores: rubric `{rubric}` is pairwise")));
    }
    let items = calibration::read_labels(labels, &definition).map_err(judge_error)?;
    let config = app
        .config
        .judge
        .as_ref()
        .ok_or_else(|| AppError::Invalid("no [judge] is configured in evaltap.toml".into()))?;
    let judge = app.services.judge_with(config);
    let rubrics = &app.rubrics;
    let concurrency = config.max_concurrency.max(1);
    let scores: Vec<Option<f64>> = futures_util::stream::iter(items.iter())
        .map(|item| {
            let judge = judge.clone();
            async move {
                let subject = Subject { request: &item.request, response: &item.response, reference: None };
                let seed = evaltap_judge::judgment_seed(&["calibrate", rubric, &item.id]);
                match judge.grade(rubrics, rubric, subject, 1, seed).await {
                    Ok(graded) => Some(graded.mean().raw),
                    Err(failure) => {
                        tracing::warn!(item = %item.id, error = %failure.error, "judge failed on a labelled item");
                        None
                    }
                }
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    let result = calibration::agreement(&definition, &items, &scores);
    app.store
        .insert_calibration(&Calibration {
            rubric: rubric.into(),
            rubric_sha256: definition.sha256.clone(),
            judge_model: judge.model_for(&definition),
            labels_file: labels.display().to_string(),
            created_at: chrono::Utc::now(),
            result: serde_json::to_value(&result)
                .map_err(|err| AppError::Invalid(format!("the calibration does not serialize: {err}")))?,
        })
        .await?;
    Ok(result)
}
