//! Loading what a report is computed from, computing it off the async runtime, and keeping it
//! (the report of a state of the results is computed once).

use std::collections::HashMap;

use evaltap_stats::CompareOptions;
use evaltap_store::{
    BaselineSpec, Calibration, DatasetItemRow, Experiment, JudgmentRecord, Progress, ReplayRecord, Spend,
    Store, StoreError, StoredExchange,
};

use crate::{Report, compute};

/// Everything a report is computed from, loaded in a handful of queries (never one per row).
#[derive(Debug, Clone)]
pub struct ReportInputs {
    pub(crate) experiment: Experiment,
    pub(crate) progress: Progress,
    pub(crate) item_ids: Vec<String>,
    pub(crate) replays: Vec<ReplayRecord>,
    /// A golden run against its references: the dataset's items.
    pub(crate) references: Vec<DatasetItemRow>,
    pub(crate) exchanges: Vec<StoredExchange>,
    pub(crate) unreadable_items: usize,
    pub(crate) takeovers: u64,
    pub(crate) batches: Vec<evaltap_store::BatchSummary>,
    pub(crate) judgments: Vec<JudgmentRecord>,
    pub(crate) calibrations: HashMap<String, Calibration>,
    pub(crate) spend: Spend,
    /// Bootstrap resamples per comparison (none for segments: their verdicts do not use it).
    pub(crate) bootstrap_resamples: usize,
    /// Candidates that stopped early.
    pub(crate) settled: Vec<evaltap_store::SettledCandidate>,
    /// The level of the confidence sequences when not α: a segment's, one test of every
    /// segment × candidate × rubric ([`crate::segments::family_sequence_alpha`]).
    pub(crate) sequence_alpha: Option<f64>,
}

/// Loads what the report of `experiment` is computed from.
pub async fn load(store: &Store, experiment: &Experiment) -> Result<ReportInputs, StoreError> {
    let spec = &experiment.spec;
    let references = match (&spec.baseline, &spec.dataset) {
        (BaselineSpec::Reference, Some(dataset)) => store.dataset_items(&dataset.version).await?,
        _ => Vec::new(),
    };
    // The sampled exchanges in one query (a golden run's items are not exchanges).
    let (exchanges, unreadable_items) = if spec.dataset.is_none() {
        // Whole rows: a sampled exchange whose stored JSON does not read back is counted.
        store.experiment_exchanges(&experiment.id).await?
    } else {
        (Vec::new(), 0)
    };
    let mut calibrations = HashMap::new();
    for rubric in &spec.rubrics {
        if let Some(c) = store.latest_calibration(rubric).await? {
            calibrations.insert(rubric.clone(), c);
        }
    }
    Ok(ReportInputs {
        experiment: experiment.clone(),
        progress: store.experiment_progress(experiment).await?,
        item_ids: store.experiment_item_ids(&experiment.id).await?,
        replays: store.replays_without_bodies(&experiment.id).await?,
        references,
        exchanges,
        unreadable_items,
        takeovers: store.work_takeovers(&experiment.id).await?.max(0) as u64,
        batches: store.batches(&experiment.id).await?,
        judgments: store.judgments_without_texts(&experiment.id).await?,
        calibrations,
        spend: store.spend(&experiment.id).await?,
        bootstrap_resamples: CompareOptions::default().bootstrap_resamples,
        settled: store.settled_candidates(&experiment.id).await?,
        sequence_alpha: None,
    })
}

/// Builds the report of an experiment from what is stored: the queries on the async runtime,
/// the statistics (bootstrap included) on a blocking thread.
pub async fn build(store: &Store, experiment: &Experiment) -> Result<Report, StoreError> {
    let started = std::time::Instant::now();
    let inputs = load(store, experiment).await?;
    let loaded = started.elapsed();
    let report = compute_off_runtime(inputs).await;
    tracing::debug!(
        experiment = %experiment.spec.name,
        load_ms = loaded.as_secs_f64() * 1e3,
        compute_ms = (started.elapsed() - loaded).as_secs_f64() * 1e3,
        "report built"
    );
    Ok(report)
}

async fn compute_off_runtime(inputs: ReportInputs) -> Report {
    match tokio::task::spawn_blocking(move || compute(inputs)).await {
        Ok(report) => report,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => unreachable!("a blocking task is never cancelled: {err}"),
    }
}

/// The report of an experiment, computed once per state of its results: it is kept in the
/// store with a fingerprint of the results, and recomputed only when they have changed.
pub async fn stored(store: &Store, experiment: &Experiment) -> Result<Report, StoreError> {
    let fingerprint = format!("v{}:{}", REPORT_FORMAT, store.results_fingerprint(&experiment.id).await?);
    if let Some((kept, json)) = store.report_snapshot(&experiment.id).await?
        && kept == fingerprint
    {
        // A snapshot that no longer reads (a field changed shape) is simply recomputed.
        if let Ok(report) = serde_json::from_str::<Report>(&json) {
            return Ok(report);
        }
    }
    let report = build(store, experiment).await?;
    // Results landing while the report was computed make the fingerprint stale, which only
    // means the next request recomputes.
    if let Ok(json) = serde_json::to_string(&report) {
        store.save_report_snapshot(&experiment.id, &fingerprint, &json).await?;
    }
    Ok(report)
}

/// Bumped when the report's computation changes, so stored reports are recomputed.
const REPORT_FORMAT: u32 = 3;
