//! Per-route recommendations (`evaltap recommend`, `GET /api/experiments/{name}/recommendations`):
//! an experiment's results per segment, the cheapest candidate shown good enough on each, and
//! the gateway configuration that applies it.

use chrono::{Duration, Utc};
use evaltap_recommend::export::{Export, ExportOptions, export};
use evaltap_recommend::{Limits, Recommendations, Volume, recommend};
use evaltap_report::BaselineSummary;
use evaltap_report::segments::{SegmentOptions, SegmentedReport, segments};
use evaltap_store::{BaselineSpec, Experiment};

use crate::{AppError, Context};

/// The last 30 days of the experiment's production traffic as `(source, stored exchanges,
/// sample rate)`: the baseline's models, within the experiment's source if it names one.
/// Empty for golden runs and replayed baselines, whose traffic is not production's.
pub async fn traffic_volume(
    ctx: &Context,
    experiment: &Experiment,
    baseline: &BaselineSummary,
) -> Result<Vec<(String, u64, f64)>, AppError> {
    let now = Utc::now();
    let traffic = ctx.store.traffic_by_source_and_model(now - Duration::days(30), now).await?;
    let production =
        experiment.spec.baseline == BaselineSpec::Production && experiment.spec.dataset.is_none();
    Ok(traffic
        .iter()
        .filter(|t| production && t.model.as_deref().is_some_and(|model| baseline.includes(model)))
        .filter(|t| experiment.spec.filter.source.as_ref().is_none_or(|s| s == &t.source))
        .map(|t| {
            let rate = ctx.config.sources.iter().find(|s| s.name == t.source).map_or(1.0, |s| s.sample_rate);
            (t.source.clone(), t.requests, rate)
        })
        .collect())
}

/// The experiment's results split by `[recommend] segment_by`.
pub async fn segmented(ctx: &Context, name: &str) -> Result<(Experiment, SegmentedReport), AppError> {
    let experiment = ctx.store.require_experiment(name).await?;
    let inputs = evaltap_report::load(&ctx.store, &experiment).await?;
    let options = SegmentOptions::from(&ctx.config.recommend);
    // The statistics (bootstrap included) run off the async runtime.
    let segmented = tokio::task::spawn_blocking(move || segments(&inputs, &options))
        .await
        .map_err(|err| AppError::Invalid(format!("computing segments failed: {err}")))?;
    Ok((experiment, segmented))
}

/// Per segment, the cheapest candidate shown good enough, or production kept with the reason.
pub async fn recommendations(ctx: &Context, name: &str) -> Result<Recommendations, AppError> {
    let (experiment, segmented) = segmented(ctx, name).await?;
    let report = evaltap_report::stored(&ctx.store, &experiment).await?;
    let volume = traffic_volume(ctx, &experiment, &report.baseline).await?;
    let projection = evaltap_report::savings::monthly_projection(&report, &volume);
    let volume = Volume { monthly_requests: projection.monthly_requests, scaling: projection.scaling };
    Ok(recommend(&segmented, &Limits::from(&ctx.config.recommend), &volume))
}

/// The recommendations as `format` (`json`, `litellm`, `portkey`, `kong`, `openrouter`). The
/// candidates' gateway names come from `evaltap.toml`, else from what the experiment froze.
pub async fn export_recommendations(
    ctx: &Context,
    name: &str,
    format: &str,
    options: &ExportOptions,
) -> Result<(Recommendations, Export), AppError> {
    let recommendations = recommendations(ctx, name).await?;
    let experiment = ctx.store.require_experiment(name).await?;
    let mut candidates = ctx.config.candidates.clone();
    candidates.extend(
        experiment
            .spec
            .candidates
            .iter()
            .filter(|c| !ctx.config.candidates.iter().any(|k| k.name == c.name))
            .cloned(),
    );
    let export = export(format, &recommendations, &candidates, options)
        .map_err(|err| AppError::Invalid(err.to_string()))?;
    Ok((recommendations, export))
}
