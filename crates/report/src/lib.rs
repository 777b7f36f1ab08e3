//! The experiment report: per candidate, cost and latency against the baseline, and per rubric
//! the paired quality comparison (fixed-n and sequential statistics, Holm-adjusted verdict).
//!
//! The JSON field names are a contract (`evaltap report --json`, the API, CI gates): fields may
//! be added, never renamed.

pub mod chart;
pub mod examples;
pub mod savings;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use evaltap_core::Usage;
use evaltap_stats::{Basis, CompareOptions, Comparison, compare_paired, decide_family, mean, percentile};
use evaltap_store::{
    BASELINE, BaselineSpec, Calibration, DatasetItemRow, DatasetRef, Experiment, JudgmentRecord, Progress,
    ReplayRecord, Spend, Store, StoreError, StoredExchange,
};
use serde::{Deserialize, Serialize};

/// Significance level of the report's tests and intervals.
pub const ALPHA: f64 = 0.05;

/// Tags that tie exchanges into clusters (one conversation, session or user), in order of
/// preference; clustered exchanges are not independent, and their standard errors say so.
pub const CLUSTER_TAGS: [&str; 6] =
    ["conversation_id", "session_id", "thread_id", "user_id", "user", "session"];

/// The report of one experiment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// Experiment name.
    pub experiment: String,
    /// `running` while work is pending, `done` once every replay and judgment is stored.
    pub status: String,
    /// Non-inferiority margin on the [0, 1] scale.
    pub margin: f64,
    /// Which statistics decide the verdicts: `sequential` (always-valid, while running) or
    /// `fixed-n` (once done).
    pub basis: Basis,
    /// Work done and expected.
    pub progress: Progress,
    /// Spend on candidate replays.
    pub spend: Spend,
    /// Whether replays were skipped because the spend cap was reached.
    pub spend_cap_reached: bool,
    /// The baseline: production responses, a replayed model, or the references.
    pub baseline: BaselineSummary,
    /// Sampled items whose stored row does not read back (skipped, counted).
    pub unreadable_items: usize,
    /// Units of work claimed more than once: a worker stopped mid-call (killed, or its lease
    /// ran out) and another took the work over. Each may have been paid twice.
    #[serde(default)]
    pub takeovers: u64,
    /// For a golden run: the dataset.
    pub dataset: Option<String>,
    /// For a golden run: the dataset version (content hash) it used.
    pub dataset_version: Option<String>,
    /// The rubrics as the experiment froze them (empty for experiments created before rubrics
    /// were frozen).
    pub frozen_rubrics: Vec<FrozenRubricSummary>,
    /// The judge model the experiment froze.
    pub judge_model: Option<String>,
    /// The frozen judge's sampling parameters.
    pub judge: Option<JudgeSummary>,
    /// One entry per candidate, in the experiment's order.
    pub candidates: Vec<CandidateReport>,
}

/// A frozen rubric, as the report names it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrozenRubricSummary {
    /// Rubric name.
    pub name: String,
    /// Hex SHA-256 of the rubric's full text.
    pub sha256: String,
    /// `pointwise` or `pairwise`.
    pub mode: String,
    /// Score range.
    #[schema(value_type = Vec<f64>)]
    pub scale: (f64, f64),
    /// The rubric's own judge model, if it names one.
    pub judge_model: Option<String>,
}

/// The frozen judge.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JudgeSummary {
    /// Model.
    pub model: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// Calls averaged per item and rubric.
    pub samples: usize,
    /// USD per million prompt tokens.
    pub input_per_mtok: f64,
    /// USD per million completion tokens.
    pub output_per_mtok: f64,
}

/// The baseline (production) side.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BaselineSummary {
    /// The production model of the sampled exchanges, or `mixed` when they came from several
    /// (then `models` has the split).
    pub model: String,
    /// Each production model among the sampled exchanges with its count, most frequent first.
    #[serde(default)]
    pub models: Vec<ModelCount>,
    /// The baseline is the golden set's reference answers: text, not a model with a price.
    #[serde(default)]
    pub is_reference: bool,
    /// Where the baseline's cost came from, in sampled exchanges.
    #[serde(default)]
    pub cost_sources: CostSources,
    /// Exchanges sampled.
    pub n: usize,
    /// Mean cost per request in USD (reported by the gateway, else from configured prices);
    /// 0 when no cost is known.
    pub cost_per_request_usd: f64,
}

/// A production model and how many sampled exchanges it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelCount {
    /// Model name as the gateway reported it.
    pub model: String,
    /// Sampled exchanges.
    pub n: usize,
}

/// Where the costs of the baseline's calls came from, counted in calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostSources {
    /// Priced by the gateway (its logged cost).
    pub gateway: usize,
    /// Priced by evaltap: the call's token usage at the `[prices]` of `evaltap.toml`.
    pub config: usize,
    /// Priced by evaltap at the default price table shipped with it (dated list prices).
    #[serde(default)]
    pub table: usize,
    /// Not priced: no logged cost, and no usage or no price for the model.
    pub unknown: usize,
}

impl CostSources {
    /// `200 priced by the gateway`, `150 by the gateway, 50 from [prices]`, `12 unpriced`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.gateway > 0 {
            parts.push(format!("{} by the gateway", self.gateway));
        }
        if self.config > 0 {
            parts.push(format!("{} from [prices] in evaltap.toml", self.config));
        }
        if self.table > 0 {
            parts.push(format!(
                "{} from the default price table (list prices as of {})",
                self.table,
                evaltap_core::pricing::PriceTable::shipped().as_of
            ));
        }
        if self.unknown > 0 {
            parts.push(format!("{} unpriced", self.unknown));
        }
        if parts.is_empty() { "no calls".into() } else { format!("priced: {}", parts.join(", ")) }
    }
}

/// What `BaselineSummary::model` says when the sample holds several production models.
pub const MIXED_BASELINE: &str = "mixed";

impl BaselineSummary {
    /// Whether `model` is (one of) the baseline's production models.
    pub fn includes(&self, model: &str) -> bool {
        if self.models.is_empty() {
            self.model == model
        } else {
            self.models.iter().any(|m| m.model == model)
        }
    }

    /// The model, or `mixed` with the split: `mixed (sim-large 75%, sim-medium 25%)`.
    pub fn describe(&self) -> String {
        if self.models.len() <= 1 {
            return self.model.clone();
        }
        let total: usize = self.models.iter().map(|m| m.n).sum::<usize>().max(1);
        let split: Vec<String> = self
            .models
            .iter()
            .map(|m| format!("{} {:.0}%", m.model, 100.0 * m.n as f64 / total as f64))
            .collect();
        format!("{MIXED_BASELINE} ({})", split.join(", "))
    }
}

/// One candidate's results.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CandidateReport {
    /// Candidate name.
    pub name: String,
    /// Model called.
    pub model: String,
    /// Successful replays.
    pub n: usize,
    /// Failed replays (after retries).
    pub errors: usize,
    /// Replays not attempted because the spend cap was reached.
    pub skipped: usize,
    /// Replays not attempted because the candidate's API cannot carry the request, by reason
    /// (`audio input`, `a \`web_search\` tool`…).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unsupported: std::collections::BTreeMap<String, usize>,
    /// Successful replays whose answer stopped at its output-token limit (`finish_reason` =
    /// `length`): a cut answer may score lower for being cut.
    #[serde(default)]
    pub truncated: usize,
    /// Mean cost per successful replay in USD; null when no successful replay was priced.
    pub cost_per_request_usd: Option<f64>,
    /// Cost per request relative to the baseline, in percent (negative is cheaper); null when
    /// either side's cost is unknown.
    pub cost_delta_pct: Option<f64>,
    /// Median replay latency in milliseconds.
    pub latency_p50_ms: f64,
    /// 95th percentile of replay latency in milliseconds.
    #[serde(default)]
    pub latency_p95_ms: f64,
    /// Failed replays over attempted ones (skipped ones not counted).
    #[serde(default)]
    pub error_rate: f64,
    /// Quality per rubric.
    pub rubrics: Vec<RubricResult>,
}

/// The paired comparison on one rubric. Besides the contract fields (`n`, `baseline_mean`,
/// `candidate_mean`, `delta`, `ci_low`, `ci_high`, `p_value`, `verdict`) it carries the
/// sequential p-value and confidence sequence, Holm and BH adjustments, and for inconclusive
/// verdicts the sample size that would settle them.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RubricResult {
    /// Rubric name.
    pub rubric: String,
    /// The statistics.
    #[serde(flatten)]
    pub stats: Comparison,
    /// Additional pairs needed beyond those scored (inconclusive verdicts only).
    pub more_samples_needed: Option<u64>,
    /// For pairwise rubrics: wins, ties and losses of the candidate against the baseline. The
    /// statistics above then compare the candidate's tie-as-half win rate with ½ (`delta` is
    /// win rate − ½), so `non-inferior` means a win rate above ½ − margin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairwise: Option<PairwiseSummary>,
    /// Exchanges whose pair is missing because a judgment failed (unreadable answer or judge
    /// error, after retries): they are not in `n`. If failures depend on the answer the delta is
    /// biased, so more than 2% of pairs raises a warning.
    pub judge_errors: u64,
    /// Judgments not made because the spend cap was reached.
    pub judge_skipped: u64,
    /// What the candidate-side judge calls of this rubric cost, in USD (the baseline's are in
    /// the experiment's `spend.judge_spent_usd`).
    pub judge_cost_usd: f64,
    /// Pearson correlation of the score difference with the answer-length difference
    /// (characters, candidate − baseline): a judge that rewards length shows up here.
    pub length_correlation: Option<f64>,
    /// Pairwise: share of exchanges where both orders gave the same outcome.
    pub consistency: Option<f64>,
    /// Pairwise: share of verdicts that named the first-shown response.
    pub first_position_rate: Option<f64>,
    /// Pairwise: length-controlled win rate (win rate at equal length, Dubois et al. 2024),
    /// beside the raw tie-as-half rate.
    pub lc_win_rate: Option<f64>,
    /// With several judge samples per item: the pooled within-item standard deviation of the
    /// normalized scores (averaging K samples divides its variance by K; what is left is in the
    /// interval through the per-item means).
    pub judge_within_item_sd: Option<f64>,
    /// The rubric's latest calibration against human labels, if any.
    pub calibration: Option<CalibrationSummary>,
    /// What the reader should know before trusting the verdict.
    pub warnings: Vec<String>,
    /// For pass/fail rubrics and deterministic checks: each side's pass rate with its Wilson
    /// 95% interval (the comparison itself is McNemar's exact test, in `mcnemar`).
    pub pass_rates: Option<PassRates>,
}

/// Pass rates of a pass/fail comparison.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PassRates {
    /// Baseline pass rate.
    pub baseline: f64,
    /// Its Wilson 95% interval.
    #[schema(value_type = Vec<f64>)]
    pub baseline_ci: (f64, f64),
    /// Candidate pass rate.
    pub candidate: f64,
    /// Its Wilson 95% interval.
    #[schema(value_type = Vec<f64>)]
    pub candidate_ci: (f64, f64),
}

fn pass_rates(baseline: &[f64], candidate: &[f64]) -> Option<PassRates> {
    if !evaltap_stats::is_binary(baseline, candidate) {
        return None;
    }
    let passes = |xs: &[f64]| xs.iter().filter(|x| **x == 1.0).count() as u64;
    let n = baseline.len() as u64;
    Some(PassRates {
        baseline: passes(baseline) as f64 / n as f64,
        baseline_ci: evaltap_stats::wilson(passes(baseline), n, ALPHA),
        candidate: passes(candidate) as f64 / n as f64,
        candidate_ci: evaltap_stats::wilson(passes(candidate), n, ALPHA),
    })
}

/// The latest calibration of a rubric's judge against human labels.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CalibrationSummary {
    /// When it ran.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Judge model calibrated.
    pub judge_model: String,
    /// Whether the calibrated rubric text is the one this experiment froze.
    pub same_rubric_text: bool,
    /// The stored statistics (κ, weighted κ, α, confusion table, bias).
    pub result: serde_json::Value,
}

/// Consistency below this makes pairwise results suspect (position bias).
pub const MIN_PAIRWISE_CONSISTENCY: f64 = 0.8;

/// Judge failures above this share of pairs raise a warning.
pub const MAX_JUDGE_ERROR_SHARE: f64 = 0.02;

/// Pairwise outcomes, both orders asked; a win or loss counts only when both orders agree.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PairwiseSummary {
    /// Exchanges the candidate won in both orders.
    pub wins: u64,
    /// Exchanges the candidate lost in both orders.
    pub losses: u64,
    /// Everything else (ties, or the orders disagree).
    pub ties: u64,
    /// Two-sided exact sign test on wins vs losses (ties excluded).
    pub p_sign: f64,
    /// Wilson 95% interval of wins / (wins + losses).
    #[schema(value_type = Vec<f64>)]
    pub win_rate_ci: (f64, f64),
    /// Tie-as-half win rate (wins + ties/2) / n.
    pub win_rate: f64,
    /// Share of exchanges where both orders gave the same outcome; below 0.8 the judge's
    /// position bias makes pairwise results suspect.
    pub position_consistency: f64,
    /// Share of verdicts naming the first-shown response (A), over both orders.
    pub first_position_rate: f64,
    /// P(A) − P(B) over both orders: each exchange is shown both ways, so an unbiased judge
    /// gives 0; a judge that answers "A" regardless with probability b gives b.
    pub position_bias: f64,
}

/// The exchange's pairwise score from the candidate's score in each order (1 win, ½ tie, 0
/// loss): a win or loss only when both orders agree, anything else a tie.
pub fn pairwise_outcome(ab: f64, ba: f64) -> f64 {
    if ab == 1.0 && ba == 1.0 {
        1.0
    } else if ab == 0.0 && ba == 0.0 {
        0.0
    } else {
        0.5
    }
}

/// Summarizes (score with baseline first, score with candidate first) pairs.
fn pairwise_summary(orders: impl Iterator<Item = (f64, f64)>) -> PairwiseSummary {
    let (mut wins, mut losses, mut ties, mut consistent, mut n) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first, mut second) = (0u64, 0u64);
    for (ab, ba) in orders {
        n += 1;
        if ab == ba {
            consistent += 1;
        }
        let outcome = pairwise_outcome(ab, ba);
        if outcome == 1.0 {
            wins += 1;
        } else if outcome == 0.0 {
            losses += 1;
        } else {
            ties += 1;
        }
        // Baseline first (ab): the candidate's win means B was named. Candidate first (ba): A.
        // A tie (½) names neither.
        let (a_named_ab, a_named_ba) = (ab == 0.0, ba == 1.0);
        let (b_named_ab, b_named_ba) = (ab == 1.0, ba == 0.0);
        first += u64::from(a_named_ab) + u64::from(a_named_ba);
        second += u64::from(b_named_ab) + u64::from(b_named_ba);
    }
    let sign = evaltap_stats::sign_test(wins, losses, ties, ALPHA);
    let verdicts = (2 * n).max(1) as f64;
    PairwiseSummary {
        wins,
        losses,
        ties,
        p_sign: sign.p_two_sided,
        win_rate_ci: sign.win_rate_ci,
        win_rate: sign.win_rate_tie_half,
        position_consistency: if n == 0 { 1.0 } else { consistent as f64 / n as f64 },
        first_position_rate: first as f64 / verdicts,
        position_bias: (first as f64 - second as f64) / verdicts,
    }
}

/// Pearson correlation; `None` when either side does not vary or there are fewer than 3 points.
fn correlation(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 3 || x.len() != y.len() {
        return None;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Where a cost came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CostSource {
    Gateway,
    Config,
    Table,
}

/// A production call's cost and where it came from: the gateway's, else its usage at the
/// experiment's frozen `[prices]`, else at the shipped default price table.
fn cost_of(
    experiment: &Experiment,
    cost: Option<f64>,
    model: Option<&str>,
    usage: Option<Usage>,
) -> Option<(f64, CostSource)> {
    if let Some(cost) = cost {
        return Some((cost, CostSource::Gateway));
    }
    let (model, usage) = (model?, usage?);
    if let Some(price) = experiment.spec.prices.get(model) {
        return Some((price.cost(usage), CostSource::Config));
    }
    let price = evaltap_core::pricing::PriceTable::shipped().price_of(model)?;
    Some((price.cost(usage), CostSource::Table))
}

fn mean_or_zero(xs: &[f64]) -> f64 {
    if xs.is_empty() { 0.0 } else { mean(xs) }
}

fn cluster_key(tags: &serde_json::Value) -> Option<String> {
    CLUSTER_TAGS.iter().find_map(|tag| match tags.get(tag)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(format!("{tag}:{s}")),
        serde_json::Value::Number(n) => Some(format!("{tag}:{n}")),
        _ => None,
    })
}

/// exchange id → (normalized score, arrival sequence), for one (subject, rubric, position).
type ScoresByExchange = HashMap<String, (f64, usize)>;

/// What the judgments of one (subject, rubric, position) say besides scores.
#[derive(Default)]
struct JudgeBook {
    /// Exchanges whose judgment failed (not skipped).
    failed: std::collections::HashSet<String>,
    /// Exchanges whose judgment was skipped at the spend cap.
    skipped: std::collections::HashSet<String>,
    /// Cost of the calls.
    cost: f64,
    /// (Σ within-item variance, items) over judgments with several samples.
    within: (f64, u64),
}

/// Everything a report is computed from, loaded in a handful of queries (never one per row).
#[derive(Debug, Clone)]
pub struct ReportInputs {
    experiment: Experiment,
    progress: Progress,
    item_ids: Vec<String>,
    replays: Vec<ReplayRecord>,
    /// A golden run against its references: the dataset's items.
    references: Vec<DatasetItemRow>,
    exchanges: Vec<StoredExchange>,
    unreadable_items: usize,
    takeovers: u64,
    judgments: Vec<JudgmentRecord>,
    calibrations: HashMap<String, Calibration>,
    spend: Spend,
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
        judgments: store.judgments_without_texts(&experiment.id).await?,
        calibrations,
        spend: store.spend(&experiment.id).await?,
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
const REPORT_FORMAT: u32 = 1;

/// Computes the report from its inputs (pure: no I/O).
pub fn compute(inputs: ReportInputs) -> Report {
    let ReportInputs {
        experiment,
        progress,
        item_ids,
        replays,
        references,
        exchanges,
        unreadable_items,
        takeovers,
        judgments,
        calibrations,
        spend,
    } = inputs;
    let experiment = &experiment;
    let spec = &experiment.spec;

    let mut models: BTreeMap<String, usize> = BTreeMap::new();
    let mut baseline_costs = Vec::new();
    let mut clusters: HashMap<String, String> = HashMap::new();
    let mut baseline_lengths: HashMap<String, f64> = HashMap::new();
    // The baseline side: production answers, a replayed model, or the items' references.
    let baseline_subject = spec.baseline_candidate().unwrap_or(BASELINE).to_string();
    match (&spec.baseline, &spec.dataset) {
        (BaselineSpec::Candidate { name }, _) => {
            let model =
                spec.candidates.iter().find(|c| &c.name == name).map_or(name.clone(), |c| c.model.clone());
            models.insert(model, item_ids.len());
            for r in replays.iter().filter(|r| &r.candidate == name && r.error.is_none()) {
                baseline_costs.extend(r.cost_usd);
                baseline_lengths
                    .insert(r.item_id.clone(), r.output_text.as_deref().unwrap_or("").chars().count() as f64);
            }
        }
        (BaselineSpec::Reference, Some(_)) => {
            models.insert("reference".into(), item_ids.len());
            for row in references {
                let reference = row.body.get("reference").and_then(serde_json::Value::as_str).unwrap_or("");
                baseline_lengths.insert(row.key, reference.chars().count() as f64);
            }
        }
        _ => {}
    }
    let mut cost_sources = CostSources::default();
    for stored in &exchanges {
        let (id, ex) = (&stored.id, &stored.exchange);
        if let Some(key) = cluster_key(&ex.tags) {
            clusters.insert(id.clone(), key);
        }
        if spec.baseline == BaselineSpec::Production {
            *models.entry(ex.model.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1;
            // The stored response's own usage keeps cached and reasoning tokens, which the token
            // columns do not.
            let usage = Usage::from_openai(&ex.response).or(ex.usage);
            let cost = cost_of(experiment, ex.cost_usd, ex.model.as_deref(), usage);
            match cost.map(|(_, source)| source) {
                Some(CostSource::Gateway) => cost_sources.gateway += 1,
                Some(CostSource::Config) => cost_sources.config += 1,
                Some(CostSource::Table) => cost_sources.table += 1,
                None => cost_sources.unknown += 1,
            }
            baseline_costs.extend(cost.map(|(usd, _)| usd));
            let text = evaltap_core::chat::response_text(&ex.response);
            baseline_lengths.insert(id.clone(), text.chars().count() as f64);
        }
    }
    let mut baseline_models: Vec<ModelCount> =
        models.iter().map(|(model, n)| ModelCount { model: model.clone(), n: *n }).collect();
    baseline_models.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.model.cmp(&b.model)));
    let baseline_model = match baseline_models.as_slice() {
        [] => String::new(),
        [only] => only.model.clone(),
        _ => MIXED_BASELINE.to_string(),
    };
    let baseline_cost = mean_or_zero(&baseline_costs);

    let mut scores: HashMap<(String, String, String), ScoresByExchange> = HashMap::new();
    let mut books: HashMap<(String, String), JudgeBook> = HashMap::new();
    for (seq, j) in judgments.into_iter().enumerate() {
        let book = books.entry((j.subject.clone(), j.rubric.clone())).or_default();
        book.cost += j.cost_usd.unwrap_or(0.0);
        if let Some(samples) = j.score_samples.as_deref().filter(|s| s.len() > 1) {
            book.within.0 += evaltap_stats::variance(samples);
            book.within.1 += 1;
        }
        match j.score.filter(|s| s.is_finite()) {
            Some(score) => {
                scores.entry((j.subject, j.rubric, j.position)).or_default().insert(j.item_id, (score, seq));
            }
            // A check the item does not carry is no judgment at all.
            None if j.skipped.as_deref().is_some_and(|s| s.starts_with("not applicable")) => {}
            None if j.skipped.is_some() => {
                book.skipped.insert(j.item_id);
            }
            None => {
                book.failed.insert(j.item_id);
            }
        }
    }
    let basis = if progress.is_done() { Basis::FixedN } else { Basis::Sequential };
    let options = CompareOptions {
        alpha: ALPHA,
        margin: spec.margin,
        basis,
        planned_n: Some(item_ids.len()),
        ..CompareOptions::default()
    };
    let empty = HashMap::new();
    let no_book = JudgeBook::default();
    let mut candidates: Vec<CandidateReport> = spec
        .compared_candidates()
        .map(|candidate| {
            let mine: Vec<_> = replays.iter().filter(|r| r.candidate == candidate.name).collect();
            let ok: Vec<_> = mine.iter().filter(|r| r.error.is_none()).collect();
            let costs: Vec<f64> = ok.iter().filter_map(|r| r.cost_usd).collect();
            let latencies: Vec<f64> = ok.iter().filter_map(|r| r.latency_ms).collect();
            let candidate_lengths: HashMap<&str, f64> = ok
                .iter()
                .map(|r| (r.item_id.as_str(), r.output_text.as_deref().unwrap_or("").chars().count() as f64))
                .collect();
            let cost = mean_or_zero(&costs);
            let rubrics = spec
                .rubrics
                .iter()
                .map(|rubric| {
                    let get = |subject: &str, position: &str| {
                        scores
                            .get(&(subject.to_string(), rubric.clone(), position.to_string()))
                            .unwrap_or(&empty)
                    };
                    let book = |subject: &str| books.get(&(subject.to_string(), rubric.clone())).unwrap_or(&no_book);
                    let (mine_book, base_book) = (book(&candidate.name), book(&baseline_subject));
                    // A pair arrives when its later judgment is stored; sequential statistics
                    // see pairs in that order.
                    let pairwise_rubric = spec.is_pairwise(rubric);
                    let (mut pairs, pairwise): (Vec<(usize, &String, f64, f64)>, _) = if pairwise_rubric {
                        // Both orders judged: the exchange scores 1, ½ or 0 against ½.
                        let (ab, ba) = (get(&candidate.name, "ab"), get(&candidate.name, "ba"));
                        let both: Vec<(usize, &String, f64, f64)> = ab
                            .iter()
                            .filter_map(|(ex, (x, xs))| {
                                ba.get(ex).map(|(y, ys)| ((*xs).max(*ys), ex, *x, *y))
                            })
                            .collect();
                        let summary = pairwise_summary(both.iter().map(|p| (p.2, p.3)));
                        (
                            both.into_iter()
                                .map(|(seq, ex, x, y)| (seq, ex, 0.5, pairwise_outcome(x, y)))
                                .collect(),
                            Some(summary),
                        )
                    } else {
                        let (base, cand) = (get(&baseline_subject, ""), get(&candidate.name, ""));
                        let pairs = cand
                            .iter()
                            .filter_map(|(ex, (c, cs))| {
                                base.get(ex).map(|(b, bs)| ((*cs).max(*bs), ex, *b, *c))
                            })
                            .collect();
                        (pairs, None)
                    };
                    pairs.sort_by_key(|p| p.0);
                    let b: Vec<f64> = pairs.iter().map(|p| p.2).collect();
                    let c: Vec<f64> = pairs.iter().map(|p| p.3).collect();
                    let keys: Vec<String> = pairs
                        .iter()
                        .map(|p| clusters.get(p.1).cloned().unwrap_or_else(|| format!("exchange:{}", p.1)))
                        .collect();
                    let clustered = !clusters.is_empty();
                    let length_diff: Vec<f64> = pairs
                        .iter()
                        .map(|p| {
                            candidate_lengths.get(p.1.as_str()).copied().unwrap_or(0.0)
                                - baseline_lengths.get(p.1.as_str()).copied().unwrap_or(0.0)
                        })
                        .collect();
                    let score_diff: Vec<f64> = c.iter().zip(&b).map(|(c, b)| c - b).collect();
                    // Judge failures that cost this candidate a pair: its own judgments, and the
                    // baseline's on exchanges it replayed.
                    let lost = |own: &std::collections::HashSet<String>, base: &std::collections::HashSet<String>| {
                        ok.iter()
                            .filter(|r| {
                                own.contains(&r.item_id) || (!pairwise_rubric && base.contains(&r.item_id))
                            })
                            .count() as u64
                    };
                    let judge_errors = lost(&mine_book.failed, &base_book.failed);
                    let judge_skipped = lost(&mine_book.skipped, &base_book.skipped);
                    let within = [mine_book.within, base_book.within];
                    let within_items: u64 = within.iter().map(|w| w.1).sum();
                    let mut warnings = Vec::new();
                    let attempted = pairs.len() as u64 + judge_errors;
                    if attempted > 0 && judge_errors as f64 / attempted as f64 > MAX_JUDGE_ERROR_SHARE {
                        warnings.push(format!(
                            "{judge_errors} of {attempted} pairs ({:.1}%) lost to judge failures: if failures \
                             depend on the answer, the delta is biased",
                            100.0 * judge_errors as f64 / attempted as f64
                        ));
                    }
                    if let Some(p) = &pairwise
                        && p.position_consistency < MIN_PAIRWISE_CONSISTENCY
                        && !pairs.is_empty()
                    {
                        warnings.push(format!(
                            "the judge agreed with itself across the two orders on only {:.0}% of \
                             exchanges (first position named {:.0}% of the time): position bias",
                            100.0 * p.position_consistency,
                            100.0 * p.first_position_rate
                        ));
                    }
                    let calibration = calibrations.get(rubric).map(|cal| CalibrationSummary {
                        created_at: cal.created_at,
                        judge_model: cal.judge_model.clone(),
                        same_rubric_text: spec.frozen_rubric(rubric).is_none_or(|f| f.sha256 == cal.rubric_sha256),
                        result: cal.result.clone(),
                    });
                    if calibration.as_ref().is_some_and(|c| !c.same_rubric_text) {
                        warnings.push("the latest calibration was of another version of this rubric's text".into());
                    }
                    RubricResult {
                        rubric: rubric.clone(),
                        stats: compare_paired(&b, &c, clustered.then_some(&keys[..]), &options),
                        more_samples_needed: None,
                        judge_errors,
                        judge_skipped,
                        judge_cost_usd: mine_book.cost,
                        length_correlation: correlation(&score_diff, &length_diff),
                        consistency: pairwise.as_ref().map(|p| p.position_consistency),
                        first_position_rate: pairwise.as_ref().map(|p| p.first_position_rate),
                        lc_win_rate: pairwise
                            .as_ref()
                            .and_then(|_| evaltap_stats::length_controlled_win_rate(&c, &length_diff))
                            .map(|lc| lc.lc),
                        judge_within_item_sd: (within_items > 0)
                            .then(|| (within.iter().map(|w| w.0).sum::<f64>() / within_items as f64).sqrt()),
                        calibration,
                        warnings,
                        pass_rates: if pairwise.is_none() { pass_rates(&b, &c) } else { None },
                        pairwise,
                    }
                })
                .collect();
            CandidateReport {
                name: candidate.name.clone(),
                model: candidate.model.clone(),
                n: ok.len(),
                errors: mine.iter().filter(|r| r.error.is_some() && r.skipped.is_none()).count(),
                skipped: mine.iter().filter(|r| r.skipped.is_some() && r.unsupported().is_none()).count(),
                unsupported: mine.iter().filter_map(|r| r.unsupported()).fold(
                    std::collections::BTreeMap::new(),
                    |mut reasons, reason| {
                        *reasons.entry(reason.to_string()).or_default() += 1;
                        reasons
                    },
                ),
                truncated: mine.iter().filter(|r| r.error.is_none() && r.truncated()).count(),
                // No priced successful call: the cost is unknown, not zero (never "−100%").
                cost_per_request_usd: (!costs.is_empty()).then_some(cost),
                cost_delta_pct: (!costs.is_empty() && baseline_cost > 0.0)
                    .then(|| (cost - baseline_cost) / baseline_cost * 100.0),
                latency_p50_ms: percentile(&latencies, 50.0).unwrap_or(0.0),
                latency_p95_ms: percentile(&latencies, 95.0).unwrap_or(0.0),
                error_rate: {
                    let failed = mine.iter().filter(|r| r.error.is_some() && r.skipped.is_none()).count();
                    if ok.len() + failed == 0 { 0.0 } else { failed as f64 / (ok.len() + failed) as f64 }
                },
                rubrics,
            }
        })
        .collect();

    // Every candidate × rubric test feeds one decision: adjust across all of them.
    let mut family: Vec<Comparison> =
        candidates.iter().flat_map(|c| c.rubrics.iter().map(|r| r.stats.clone())).collect();
    decide_family(&mut family, &options);
    let mut decided = family.into_iter();
    for rubric in candidates.iter_mut().flat_map(|c| c.rubrics.iter_mut()) {
        if let Some(stats) = decided.next() {
            rubric.more_samples_needed = stats.samples_needed.map(|n| n.saturating_sub(stats.n as u64));
            rubric.stats = stats;
        }
    }
    let spend_cap_reached = spend.capped
        || candidates.iter().any(|c| c.skipped > 0 || c.rubrics.iter().any(|r| r.judge_skipped > 0));
    Report {
        spend,
        spend_cap_reached,
        experiment: spec.name.clone(),
        status: if progress.is_done() { "done" } else { "running" }.into(),
        margin: spec.margin,
        basis,
        progress,
        baseline: BaselineSummary {
            model: baseline_model,
            models: baseline_models,
            is_reference: matches!(spec.baseline, BaselineSpec::Reference),
            cost_sources,
            n: item_ids.len(),
            cost_per_request_usd: baseline_cost,
        },
        unreadable_items,
        takeovers,
        dataset: spec.dataset.as_ref().map(|d: &DatasetRef| d.name.clone()),
        dataset_version: spec.dataset.as_ref().map(|d| d.version.clone()),
        frozen_rubrics: spec
            .rubric_definitions
            .iter()
            .map(|r| FrozenRubricSummary {
                name: r.name.clone(),
                sha256: r.sha256.clone(),
                mode: r.mode.clone(),
                scale: (r.scale_min, r.scale_max),
                judge_model: r.judge_model.clone(),
            })
            .collect(),
        judge_model: spec.judge.as_ref().map(|j| j.model.clone()),
        judge: spec.judge.as_ref().map(|j| JudgeSummary {
            model: j.model.clone(),
            temperature: j.temperature,
            samples: spec.judge_samples,
            input_per_mtok: j.input_per_mtok,
            output_per_mtok: j.output_per_mtok,
        }),
        candidates,
    }
}

/// `includes $0.004200 presumed paid for 3 calls …` when calls are counted at their bound.
pub fn presumed_note(spend: &Spend) -> Option<String> {
    (spend.presumed_calls > 0).then(|| {
        format!(
            "includes ${:.6} presumed paid for {} whose answer was lost (a worker stopped mid-call, or a timeout), counted at the most each could cost",
            spend.presumed_usd,
            evaltap_core::words::count(spend.presumed_calls.max(0) as u64, "call")
        )
    })
}

/// `12 answers cut at the output limit …` for a candidate with truncated answers.
pub fn truncated_note(truncated: usize) -> String {
    format!(
        "{} cut at the output limit (finish_reason length); a cut answer may score lower — raise the limit with the candidate's params.max_tokens",
        evaltap_core::words::count(truncated as u64, "answer")
    )
}

/// `3 requests skipped: anthropic-messages cannot carry this request: audio input`.
pub fn unsupported_note(reason: &str, count: usize) -> String {
    format!("{} skipped: {reason}", evaltap_core::words::count(count as u64, "request"))
}

/// ` (~120 more pairs, 15 clusters in all, to settle; ~300 more for the running report)`.
fn settle_note(more: u64, stats: &Comparison) -> String {
    let clusters = stats
        .clusters_needed
        .map(|c| format!(", {} in all,", evaltap_core::words::count(c, "cluster")))
        .unwrap_or_default();
    let running = stats
        .samples_needed_sequential
        .map(|n| format!("; ~{} more for the running report", n.saturating_sub(stats.n as u64)))
        .unwrap_or_default();
    format!(" (~{}{clusters} to settle{running})", evaltap_core::words::count(more, "more pair"))
}

/// The report as a plain-text table.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let basis = match report.basis {
        Basis::Sequential => "sequential (always-valid, results still landing)",
        Basis::FixedN => "fixed-n",
    };
    let items = evaltap_core::words::count(
        report.baseline.n as u64,
        if report.dataset.is_some() { "item" } else { "exchange" },
    );
    // Production calls say where their cost came from; a replayed or reference baseline has
    // no production calls to price.
    let cost = if report.dataset.is_none() && !report.baseline.is_reference {
        format!(
            ", ${:.6}/request ({})",
            report.baseline.cost_per_request_usd,
            report.baseline.cost_sources.describe()
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "experiment {} ({}), baseline {} on {items}{cost}, margin {}, verdicts {}",
        report.experiment,
        report.status,
        report.baseline.describe(),
        report.margin,
        basis
    );
    if report.takeovers > 0 {
        let _ = writeln!(
            out,
            "takeovers: {} (a worker stopped mid-call and another took the work over; each may have been paid twice)",
            evaltap_core::words::count(report.takeovers, "unit")
        );
    }
    if report.spend.cap_usd.is_some() || report.spend.presumed_calls > 0 {
        let _ = writeln!(
            out,
            "spend ${:.6} (replays ${:.6}, judge ${:.6}){}{}{}",
            report.spend.total_spent_usd,
            report.spend.spent_usd,
            report.spend.judge_spent_usd,
            report.spend.cap_usd.map(|cap| format!(" of a ${cap:.6} cap")).unwrap_or_default(),
            if report.spend_cap_reached { " — cap reached, remaining work skipped" } else { "" },
            presumed_note(&report.spend).map(|note| format!("; {note}")).unwrap_or_default(),
        );
    }
    let _ = writeln!(
        out,
        "{:<12} {:<12} {:>5} {:>4} {:>10} {:>8} {:>7}  {:<12} {:>6} {:>6} {:>7} {:>17} {:>8} {:>8} {:>8}  verdict",
        "candidate",
        "model",
        "n",
        "err",
        "$/request",
        "cost Δ",
        "p50 ms",
        "rubric",
        "base",
        "cand",
        "Δ",
        "95% CI",
        "p",
        "p(seq)",
        "p(Holm)"
    );
    for c in &report.candidates {
        for (i, r) in c.rubrics.iter().enumerate() {
            let head = if i == 0 {
                format!(
                    "{:<12} {:<12} {:>5} {:>4} {:>10} {:>8} {:>7.1}",
                    c.name,
                    c.model,
                    c.n,
                    c.errors,
                    c.cost_per_request_usd.map_or("unknown".to_string(), |v| format!("{v:.6}")),
                    c.cost_delta_pct.map_or("—".to_string(), |v| format!("{v:.1}%")),
                    c.latency_p50_ms
                )
            } else {
                format!("{:<12} {:<12} {:>5} {:>4} {:>10} {:>8} {:>7}", "", "", "", "", "", "", "")
            };
            let s = &r.stats;
            let more = r.more_samples_needed.map(|m| settle_note(m, s)).unwrap_or_default();
            let _ = writeln!(
                out,
                "{head}  {:<12} {:>6.3} {:>6.3} {:>+7.3} {:>17} {:>8.4} {:>8.4} {:>8.4}  {}{more}",
                r.rubric,
                s.baseline_mean,
                s.candidate_mean,
                s.delta,
                format!("[{:+.3}, {:+.3}]", s.ci_low, s.ci_high),
                s.p_value,
                s.p_value_sequential,
                s.p_holm,
                s.verdict
            );
            let mut notes = Vec::new();
            if s.significantly_lower {
                notes.push("significantly lower, but shown within the margin".to_string());
            }
            if r.judge_errors > 0 || r.judge_skipped > 0 {
                notes
                    .push(format!("judge errors {}, skipped at the cap {}", r.judge_errors, r.judge_skipped));
            }
            if let Some(p) = &r.pairwise {
                notes.push(format!(
                    "W/T/L {}/{}/{}, consistency {:.0}%, first position {:.0}%, LC win rate {}",
                    p.wins,
                    p.ties,
                    p.losses,
                    100.0 * p.position_consistency,
                    100.0 * p.first_position_rate,
                    r.lc_win_rate.map_or("—".into(), |lc| format!("{lc:.3}"))
                ));
            }
            if let Some(note) = &s.note {
                notes.push(note.clone());
            }
            if i == 0 && c.truncated > 0 {
                notes.push(truncated_note(c.truncated));
            }
            if i == 0 {
                notes.extend(c.unsupported.iter().map(|(reason, n)| unsupported_note(reason, *n)));
            }
            for note in notes {
                let _ = writeln!(out, "{:>70}  note: {note}", "");
            }
            for warning in &r.warnings {
                let _ = writeln!(out, "{:>70}  warning: {warning}", "");
            }
        }
    }
    let mut named = std::collections::BTreeSet::new();
    for r in report.candidates.iter().flat_map(|c| &c.rubrics) {
        if let Some(cal) = &r.calibration
            && named.insert(r.rubric.clone())
        {
            let _ = writeln!(
                out,
                "rubric {}: calibrated {} against human labels ({}): weighted κ {}, mean bias {}",
                r.rubric,
                cal.created_at.format("%Y-%m-%d %H:%M"),
                cal.judge_model,
                cal.result
                    .get("weighted_kappa")
                    .and_then(serde_json::Value::as_f64)
                    .map_or("—".into(), |k| format!("{k:.3}")),
                cal.result
                    .get("mean_bias")
                    .and_then(serde_json::Value::as_f64)
                    .map_or("—".into(), |b| format!("{b:+.3}")),
            );
        }
    }
    if let Some(judge) = &report.judge {
        let _ = writeln!(
            out,
            "judge {} (temperature {}, {} sample(s) per item); judge spend ${:.6}; rubrics frozen: {}",
            judge.model,
            judge.temperature,
            judge.samples,
            report.spend.judge_spent_usd,
            report
                .frozen_rubrics
                .iter()
                .map(|r| format!("{} {}", r.name, &r.sha256[..12.min(r.sha256.len())]))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_win_and_a_tie_is_a_tie() {
        assert_eq!(pairwise_outcome(1.0, 0.5), 0.5);
        assert_eq!(pairwise_outcome(0.5, 1.0), 0.5);
        assert_eq!(pairwise_outcome(1.0, 1.0), 1.0);
        assert_eq!(pairwise_outcome(0.0, 0.0), 0.0);
        assert_eq!(pairwise_outcome(1.0, 0.0), 0.5);
        let s = pairwise_summary([(1.0, 0.5), (1.0, 1.0), (0.0, 0.0)].into_iter());
        assert_eq!((s.wins, s.ties, s.losses), (1, 1, 1));
        // Verdicts naming A: (ab=0: A), (ba=1: A) ×2 → in (1,1): ba=1 A; (0,0): ab=0 A; (1,0.5): none.
        assert!((s.first_position_rate - 2.0 / 6.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn correlation_is_pearsons() {
        assert!(
            (correlation(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]).expect("varies") - 0.9979487157886733).abs()
                < 1e-12
        );
        assert!(correlation(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
    }
}
