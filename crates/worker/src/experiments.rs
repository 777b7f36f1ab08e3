//! Defining an experiment: validate against the configuration, freeze the spec, enqueue work.

use evaltap_core::Config;
use evaltap_judge::Rubrics;
use evaltap_store::{Experiment, ExperimentSpec, Filter, FrozenRubric, Store};
use serde::{Deserialize, Serialize};

use crate::{Queue, WorkerError, enqueue_missing};

/// Default non-inferiority margin on the [0, 1] score scale.
pub const DEFAULT_MARGIN: f64 = 0.02;

/// What a user asks for (CLI flags or `POST /api/experiments`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentRequest {
    /// Unique name.
    pub name: String,
    /// Candidate names from `evaltap.toml`.
    pub candidates: Vec<String>,
    /// Rubric names (all loaded rubrics when empty).
    #[serde(default)]
    pub rubrics: Vec<String>,
    /// Exchanges to sample (all matching when absent).
    pub sample_size: Option<usize>,
    /// Which exchanges to draw from.
    #[serde(default)]
    pub filter: Filter,
    /// Non-inferiority margin (default 0.02).
    pub margin: Option<f64>,
    /// Most to spend on candidate replays and judge calls together, in USD.
    #[serde(default)]
    pub spend_cap_usd: Option<f64>,
    /// Judge calls averaged per item and rubric (default: `[judge].samples`, else 1).
    #[serde(default)]
    pub judge_samples: Option<usize>,
}

/// Why an experiment could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The request is inconsistent with the configuration.
    #[error("{0}")]
    Invalid(String),
    /// Storing or enqueueing failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

impl From<evaltap_store::StoreError> for CreateError {
    fn from(err: evaltap_store::StoreError) -> Self {
        match err {
            evaltap_store::StoreError::Conflict(msg) | evaltap_store::StoreError::NotFound(msg) => {
                CreateError::Invalid(msg)
            }
            other => CreateError::Worker(other.into()),
        }
    }
}

/// Validates `request`, stores the experiment with its frozen sample, and enqueues its jobs.
pub async fn create_experiment(
    config: &Config,
    rubrics: &Rubrics,
    store: &Store,
    queue: &Queue,
    request: ExperimentRequest,
) -> Result<Experiment, CreateError> {
    let invalid = |msg: String| Err(CreateError::Invalid(msg));
    if request.name.trim().is_empty() {
        return invalid("the experiment needs a name".into());
    }
    if request.candidates.is_empty() {
        return invalid("name at least one candidate".into());
    }
    let Some(judge) = config.judge.clone() else {
        return invalid("no [judge] is configured in evaltap.toml".into());
    };
    let judge_samples = request.judge_samples.unwrap_or(judge.samples);
    if !(1..=20).contains(&judge_samples) {
        return invalid(format!("judge_samples must be within 1..=20, got {judge_samples}"));
    }
    if request.sample_size == Some(0) {
        return invalid("sample_size must be at least 1".into());
    }
    if request.spend_cap_usd.is_some_and(|cap| !(cap.is_finite() && cap >= 0.0)) {
        return invalid("spend_cap_usd must be a non-negative amount".into());
    }
    let margin = request.margin.unwrap_or(DEFAULT_MARGIN);
    if !(0.0..1.0).contains(&margin) {
        return invalid(format!("margin must be within [0, 1), got {margin}"));
    }
    let mut candidates = Vec::new();
    for name in &request.candidates {
        match config.candidate(name) {
            Some(c) if !candidates.iter().any(|x: &evaltap_core::CandidateConfig| x.name == *name) => {
                candidates.push(c.clone())
            }
            Some(_) => return invalid(format!("candidate `{name}` is listed twice")),
            None => {
                let known: Vec<&str> = config.candidates.iter().map(|c| c.name.as_str()).collect();
                return invalid(format!("unknown candidate `{name}` (configured: {})", known.join(", ")));
            }
        }
    }
    let rubric_names = if request.rubrics.is_empty() { rubrics.names() } else { request.rubrics.clone() };
    for name in &rubric_names {
        if rubrics.get(name).is_err() {
            return invalid(format!("unknown rubric `{name}` (available: {})", rubrics.names().join(", ")));
        }
    }
    let mut prices = config.prices.clone();
    for c in &config.candidates {
        prices.entry(c.model.clone()).or_insert(c.price);
    }
    let pairwise_rubrics: Vec<String> = rubric_names
        .iter()
        .filter(|name| rubrics.get(name).is_ok_and(|r| r.mode == evaltap_judge::Mode::Pairwise))
        .cloned()
        .collect();
    let rubric_definitions = rubric_names
        .iter()
        .filter_map(|name| rubrics.get(name).ok())
        .map(|r| FrozenRubric {
            name: r.name.clone(),
            mode: match r.mode {
                evaltap_judge::Mode::Pointwise => "pointwise".into(),
                evaltap_judge::Mode::Pairwise => "pairwise".into(),
            },
            scale_min: r.scale.min,
            scale_max: r.scale.max,
            judge_model: r.judge_model.clone(),
            sha256: r.sha256.clone(),
            source: r.source.clone(),
        })
        .collect();
    let spec = ExperimentSpec {
        name: request.name.trim().to_string(),
        filter: request.filter,
        candidates,
        rubrics: rubric_names,
        pairwise_rubrics,
        sample_size: request.sample_size,
        margin,
        spend_cap_usd: request.spend_cap_usd,
        prices,
        rubric_definitions,
        judge: Some(judge),
        judge_samples,
    };
    let experiment = store.create_experiment(spec).await?;
    enqueue_missing(store, queue, &experiment).await?;
    Ok(experiment)
}
