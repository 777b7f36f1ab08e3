//! Defining an experiment: validate against the configuration, freeze the spec, enqueue work.

use evaltap_core::Config;
use evaltap_judge::Rubrics;
use evaltap_store::{
    BaselineSpec, DatasetRef, Experiment, ExperimentSpec, Filter, FrozenRubric, StopOn, Store,
};
use serde::{Deserialize, Serialize};

use crate::{WorkerError, enqueue_missing};

/// Default non-inferiority margin on the [0, 1] score scale.
pub const DEFAULT_MARGIN: f64 = 0.02;

/// What a user asks for (CLI flags or `POST /api/experiments`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// A golden run over this dataset version (registered in the store) instead of traffic.
    #[serde(default)]
    pub dataset: Option<DatasetRef>,
    /// What the candidates are compared with (production responses unless given).
    #[serde(default)]
    pub baseline: Option<BaselineSpec>,
    /// Deterministic checks for every item (JSON definitions, see `evaltap-golden`).
    #[serde(default)]
    pub checks: Vec<serde_json::Value>,
    /// On production traffic, add the checks the sampled requests call for: `tool_call` and
    /// `tool_arguments_valid` when production answers call tools, `response_format` when
    /// requests set one (default on).
    #[serde(default = "yes")]
    pub auto_checks: bool,
    /// Stop each candidate once every rubric and check has a settled always-valid verdict
    /// (`better`, `worse` or `non-inferior`): its remaining replays are skipped as settled,
    /// never paid; `sample_size` is then the most the experiment spends (default on).
    #[serde(default = "yes")]
    pub early_stop: bool,
    /// What early stopping waits for: `segments` (default) also every segment's verdicts, which
    /// a per-segment recommendation needs; `verdicts` the whole sample's alone.
    #[serde(default)]
    pub early_stop_on: StopOn,
    /// Reuse replays and judgments already paid for (same request to the same endpoint and
    /// model; same prompt to the same judge), younger than `cache_max_age_hours` (default on).
    #[serde(default = "yes")]
    pub cache: bool,
}

fn yes() -> bool {
    true
}

impl ExperimentRequest {
    /// A run of one version of a golden dataset: every item, its own checks plus `checks`, no
    /// sample or filter. Golden runs from the CLI and the API and drift's scheduled runs are
    /// all built here.
    pub fn golden(
        name: String,
        dataset: DatasetRef,
        baseline: BaselineSpec,
        candidates: Vec<String>,
        rubrics: Vec<String>,
        checks: Vec<serde_json::Value>,
        margin: f64,
    ) -> ExperimentRequest {
        ExperimentRequest {
            name,
            candidates,
            rubrics,
            sample_size: None,
            filter: Filter::default(),
            margin: Some(margin),
            spend_cap_usd: None,
            judge_samples: None,
            dataset: Some(dataset),
            baseline: Some(baseline),
            checks,
            // Automatic checks come from production traffic; golden items carry their own.
            auto_checks: false,
            // A golden set is small and read item by item (regressions, drift): every item runs.
            early_stop: false,
            cache: true,
            early_stop_on: evaltap_store::StopOn::Segments,
        }
    }
}

/// The checks production traffic calls for, by what the sampled exchanges hold: the production
/// answer calls a tool → `tool_call` (the candidate's call against production's) and
/// `tool_arguments_valid`; the request sets `response_format` → `response_format`.
async fn checks_traffic_calls_for(
    store: &Store,
    spec: &ExperimentSpec,
) -> Result<Vec<serde_json::Value>, CreateError> {
    let (mut tools, mut formats) = (false, false);
    for id in store.sample_item_ids(spec).await? {
        if tools && formats {
            break;
        }
        // A row that does not read back is skipped here as everywhere (counted by the report).
        let stored = match store.exchange(&id).await {
            Ok(Some(stored)) => stored,
            Ok(None) | Err(evaltap_store::StoreError::Json { .. }) => continue,
            Err(err) => return Err(err.into()),
        };
        let ex = &stored.exchange;
        tools |= ex.response.pointer("/choices/0/message/tool_calls/0").is_some();
        formats |= matches!(
            ex.request.pointer("/response_format/type").and_then(serde_json::Value::as_str),
            Some("json_schema" | "json_object")
        );
    }
    let mut checks = Vec::new();
    if tools {
        checks.push(serde_json::json!({"type": "tool_call"}));
        checks.push(serde_json::json!({"type": "tool_arguments_valid"}));
    }
    if formats {
        checks.push(serde_json::json!({"type": "response_format"}));
    }
    Ok(checks)
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
    request: ExperimentRequest,
) -> Result<Experiment, CreateError> {
    let spec = plan_experiment(config, rubrics, store, request).await?;
    let experiment = store.create_experiment(spec).await?;
    enqueue_missing(store, &experiment).await?;
    Ok(experiment)
}

/// Validates `request` against the configuration and freezes what the experiment would run,
/// without storing anything (what `--dry-run` estimates).
pub async fn plan_experiment(
    config: &Config,
    rubrics: &Rubrics,
    store: &Store,
    request: ExperimentRequest,
) -> Result<ExperimentSpec, CreateError> {
    let invalid = |msg: String| Err(CreateError::Invalid(msg));
    if request.name.trim().is_empty() {
        return invalid("the experiment needs a name".into());
    }
    if request.candidates.is_empty() {
        return invalid("name at least one candidate".into());
    }
    let baseline = request.baseline.clone().unwrap_or_default();
    let dataset_items = match &request.dataset {
        Some(d) => {
            let rows = store.dataset_items(&d.version).await?;
            if rows.is_empty() {
                return invalid(format!("dataset `{}` has no registered version {}", d.name, d.version));
            }
            rows.into_iter()
                .map(|row| {
                    serde_json::from_value::<evaltap_golden::Item>(row.body)
                        .map_err(|e| CreateError::Invalid(format!("dataset item {}: {e}", row.key)))
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    match (&baseline, request.dataset.is_some()) {
        (BaselineSpec::Production, true) => {
            return invalid("a golden run compares with a model (baseline) or with the references".into());
        }
        (BaselineSpec::Reference, false) => {
            return invalid("only golden runs have reference answers to compare with".into());
        }
        _ => {}
    }
    let mut check_names = std::collections::BTreeSet::new();
    for (i, value) in request.checks.iter().enumerate() {
        let check = evaltap_golden::Check::parse(value)
            .map_err(|e| CreateError::Invalid(format!("check {}: {e}", i + 1)))?;
        check_names.insert(check.name());
    }
    for item in &dataset_items {
        check_names.extend(item.checks.iter().map(evaltap_golden::Check::name));
    }
    let has_references = !dataset_items.is_empty() && dataset_items.iter().all(|i| i.reference.is_some());
    let rubric_names: Vec<String> = if request.rubrics.is_empty() && check_names.is_empty() {
        // Every loaded rubric that applies: less those needing references the items do not
        // have, and pairwise ones when the baseline is a replayed model (no baseline answer).
        rubrics
            .names()
            .into_iter()
            .filter(|n| {
                rubrics.get(n).is_ok_and(|r| match r.mode {
                    evaltap_judge::Mode::Reference => has_references,
                    evaltap_judge::Mode::Pairwise => !matches!(baseline, BaselineSpec::Candidate { .. }),
                    evaltap_judge::Mode::Pointwise => true,
                })
            })
            .collect()
    } else {
        request.rubrics.clone()
    };
    let judge = match (config.judge.clone(), rubric_names.is_empty()) {
        (Some(judge), _) => Some(judge),
        (None, true) => None,
        (None, false) => return invalid("no [judge] is configured in evaltap.toml".into()),
    };
    let judge_samples = request.judge_samples.unwrap_or(judge.as_ref().map_or(1, |j| j.samples));
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
    let mut names = request.candidates.clone();
    if let BaselineSpec::Candidate { name } = &baseline {
        if names.contains(name) {
            return invalid(format!("`{name}` is the baseline; it cannot also be a candidate"));
        }
        names.push(name.clone());
    }
    for name in &names {
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
    for name in &rubric_names {
        let Ok(rubric) = rubrics.get(name) else {
            return invalid(format!("unknown rubric `{name}` (available: {})", rubrics.names().join(", ")));
        };
        if rubric.mode == evaltap_judge::Mode::Pairwise && matches!(baseline, BaselineSpec::Candidate { .. })
        {
            return invalid(format!(
                "pairwise rubric `{name}` needs a baseline answer on each item (production traffic or references), not a replayed model"
            ));
        }
        if rubric.mode == evaltap_judge::Mode::Reference && !has_references {
            return invalid(format!(
                "rubric `{name}` grades against references: only golden runs whose items all have one"
            ));
        }
    }
    let needs_references = matches!(baseline, BaselineSpec::Reference)
        || rubric_names
            .iter()
            .any(|n| rubrics.get(n).is_ok_and(|r| r.mode == evaltap_judge::Mode::Reference));
    if needs_references {
        let missing: Vec<&str> =
            dataset_items.iter().filter(|i| i.reference.is_none()).map(|i| i.id.as_str()).take(5).collect();
        if !missing.is_empty() {
            return invalid(format!("items without a reference answer: {}", missing.join(", ")));
        }
        let drafts: Vec<&str> =
            dataset_items.iter().filter(|i| i.draft).map(|i| i.id.as_str()).take(5).collect();
        if !drafts.is_empty() {
            return invalid(format!(
                "items whose reference is still a draft (accept them with `evaltap golden accept`): {}",
                drafts.join(", ")
            ));
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
    let mut all_rubrics = rubric_names.clone();
    all_rubrics.extend(check_names.iter().map(|c| format!("{}{c}", crate::jobs::CHECK_PREFIX)));
    let rubric_definitions = rubric_names
        .iter()
        .filter_map(|name| rubrics.get(name).ok())
        .map(|r| FrozenRubric {
            name: r.name.clone(),
            mode: match r.mode {
                evaltap_judge::Mode::Pointwise => "pointwise".into(),
                evaltap_judge::Mode::Pairwise => "pairwise".into(),
                evaltap_judge::Mode::Reference => "reference".into(),
            },
            scale_min: r.scale.min,
            scale_max: r.scale.max,
            judge_model: r.judge_model.clone(),
            sha256: r.sha256.clone(),
            source: r.source.clone(),
        })
        .collect();
    let mut spec = ExperimentSpec {
        name: request.name.trim().to_string(),
        filter: request.filter,
        candidates,
        rubrics: all_rubrics,
        pairwise_rubrics,
        sample_size: request.sample_size,
        margin,
        spend_cap_usd: request.spend_cap_usd,
        prices,
        rubric_definitions,
        judge,
        judge_samples,
        dataset: request.dataset,
        baseline,
        checks: request.checks,
        early_stop: request.early_stop,
        early_stop_on: request.early_stop_on,
        use_cache: request.cache,
    };
    // Only a comparison with a baseline has verdicts to settle on.
    spec.early_stop &= spec.baseline != BaselineSpec::None;
    if request.auto_checks && spec.dataset.is_none() && spec.baseline == BaselineSpec::Production {
        for check in checks_traffic_calls_for(store, &spec).await? {
            let name = format!("{}{}", crate::jobs::CHECK_PREFIX, check["type"].as_str().unwrap_or_default());
            if !spec.rubrics.contains(&name) {
                spec.rubrics.push(name);
                spec.checks.push(check);
            }
        }
    }
    Ok(spec)
}
