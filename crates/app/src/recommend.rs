//! Per-route recommendations (`evaltap recommend`, `GET /api/experiments/{name}/recommendations`):
//! an experiment's results per segment, the cheapest candidate shown good enough on each, and
//! the gateway configuration that applies it.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

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

/// A database and an experiment in it.
type CacheKey = (String, String);

/// Segmented reports computed in this process, by database and experiment, with the state of
/// the results and the options they were computed for: a page or API call on unchanged results
/// reads them instead of loading every exchange again.
static COMPUTED_SEGMENTS: LazyLock<Mutex<HashMap<CacheKey, (String, SegmentedReport)>>> =
    LazyLock::new(Mutex::default);

/// Entries kept at most (a process serves a handful of experiments at a time).
const CACHED_SEGMENTS: usize = 64;

/// The experiment's results split by `[recommend] segment_by`.
pub async fn segmented(ctx: &Context, name: &str) -> Result<(Experiment, SegmentedReport), AppError> {
    let experiment = ctx.store.require_experiment(name).await?;
    let options = SegmentOptions::from(&ctx.config.recommend);
    let key = (ctx.config.database_url.clone(), experiment.id.clone());
    let state = format!(
        "{}|{:?}|{}",
        ctx.store.results_fingerprint(&experiment.id).await?,
        options.segment_by,
        options.min_n
    );
    if let Ok(cache) = COMPUTED_SEGMENTS.lock()
        && let Some((kept, segmented)) = cache.get(&key)
        && kept == &state
    {
        return Ok((experiment, segmented.clone()));
    }
    let inputs = evaltap_report::load(&ctx.store, &experiment).await?;
    // The statistics run off the async runtime.
    let segmented = tokio::task::spawn_blocking(move || segments(&inputs, &options))
        .await
        .map_err(|err| AppError::Invalid(format!("computing segments failed: {err}")))?;
    if let Ok(mut cache) = COMPUTED_SEGMENTS.lock() {
        if cache.len() >= CACHED_SEGMENTS {
            cache.clear();
        }
        cache.insert(key, (state, segmented.clone()));
    }
    Ok((experiment, segmented))
}

/// Everything the recommendations of one experiment rest on, computed once.
pub struct Computed {
    /// The experiment.
    pub experiment: Experiment,
    /// Its report (the segments' baseline for the charts, the projection's volume).
    pub report: evaltap_report::Report,
    /// Its results per segment.
    pub segmented: SegmentedReport,
    /// What to do per segment.
    pub recommendations: Recommendations,
}

/// Segments, recommendations and the report of `name`.
pub async fn compute(ctx: &Context, name: &str) -> Result<Computed, AppError> {
    let (experiment, segmented) = segmented(ctx, name).await?;
    let report = evaltap_report::stored(&ctx.store, &experiment).await?;
    let volume = traffic_volume(ctx, &experiment, &report.baseline).await?;
    let projection = evaltap_report::savings::monthly_projection(&report, &volume);
    let volume = Volume { monthly_requests: projection.monthly_requests, scaling: projection.scaling };
    let recommendations = recommend(&segmented, &Limits::from(&ctx.config.recommend), &volume);
    Ok(Computed { experiment, report, segmented, recommendations })
}

/// Per segment, the cheapest candidate shown good enough, or production kept with the reason.
pub async fn recommendations(ctx: &Context, name: &str) -> Result<Recommendations, AppError> {
    Ok(compute(ctx, name).await?.recommendations)
}

/// `computed`'s recommendations as `format` (`json`, `litellm`, `portkey`, `kong`,
/// `openrouter`). The candidates' gateway names come from `evaltap.toml`, else from what the
/// experiment froze.
pub fn export_computed(
    ctx: &Context,
    computed: &Computed,
    format: &str,
    options: &ExportOptions,
) -> Result<Export, AppError> {
    let mut candidates = ctx.config.candidates.clone();
    candidates.extend(
        computed
            .experiment
            .spec
            .candidates
            .iter()
            .filter(|c| !ctx.config.candidates.iter().any(|k| k.name == c.name))
            .cloned(),
    );
    export(format, &computed.recommendations, &candidates, options)
        .map_err(|err| AppError::Invalid(err.to_string()))
}

/// The recommendations of `name` and their export as `format`.
pub async fn export_recommendations(
    ctx: &Context,
    name: &str,
    format: &str,
    options: &ExportOptions,
) -> Result<(Recommendations, Export), AppError> {
    let computed = compute(ctx, name).await?;
    let export = export_computed(ctx, &computed, format, options)?;
    Ok((computed.recommendations, export))
}
