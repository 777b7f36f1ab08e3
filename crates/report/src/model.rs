//! The report's types: what `evaltap report --json`, the API and the pages read.

use evaltap_core::Usage;
use evaltap_stats::{Basis, Comparison, mean};
use evaltap_store::{Experiment, Progress, Spend};
use serde::{Deserialize, Serialize};

use crate::*;

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
    /// Calls that went through the providers' batch interfaces, per endpoint (candidates and
    /// the judge with `batch = true`); empty when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<BatchUse>,
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
    /// What the baseline's scores rest on (the baseline's own judgments).
    #[serde(default)]
    pub judgments: BaselineJudgments,
}

/// What the baseline's scores rest on: its judgments, by how each was obtained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BaselineJudgments {
    /// Judgments the judge was asked for in this experiment.
    pub asked: usize,
    /// Judgments read back from the result cache: the same prompt to the same judge with the
    /// same rubric text, paid for earlier — by an earlier experiment or golden run, or in this
    /// one for a candidate whose answer was word for word the baseline's.
    pub reused: usize,
    /// A golden reference graded against itself by a rubric that grades against the
    /// reference: full marks by definition, the judge not asked.
    pub by_definition: usize,
}

impl BaselineJudgments {
    /// One line for the text report, or `None` when the baseline was not judged.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.asked > 0 {
            parts.push(format!("{} asked of the judge", self.asked));
        }
        if self.reused > 0 {
            parts.push(format!(
                "{} read back from the result cache (the same prompt, rubric text and judge, paid for before)",
                self.reused
            ));
        }
        if self.by_definition > 0 {
            parts.push(format!(
                "{} full marks by definition (the reference graded against itself)",
                self.by_definition
            ));
        }
        (!parts.is_empty()).then(|| format!("baseline scores: {}", parts.join(", ")))
    }
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
    /// Replays not made because the candidate's verdict was settled first (early stopping):
    /// counted, never paid.
    #[serde(default)]
    pub settled: usize,
    /// When the candidate stopped early, and at how many pairs; its verdicts then rest on the
    /// always-valid statistics (`basis` of each rubric is `sequential`), since the fixed-n
    /// test is not valid after an optional stop.
    #[serde(default)]
    pub stopped_early: Option<StoppedEarly>,
    /// Results read back from the result cache instead of paid again.
    #[serde(default)]
    pub cached: CacheUse,
    /// What reaching this candidate's verdicts cost, in USD: its replays and its own
    /// judgments, as paid (cached ones cost nothing, batched ones their discounted price). The
    /// baseline's judgments, shared by every candidate, are in the experiment's spend.
    #[serde(default)]
    pub spent_usd: f64,
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
    /// In a segmented report: the non-inferiority p-value adjusted (Holm) across every
    /// segment × candidate × rubric; a finished experiment's `non-inferior` needs it below α.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_noninferiority_holm: Option<f64>,
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

impl RubricResult {
    /// A result of `stats` alone: no judge bookkeeping, warnings, pairwise or calibration
    /// details (what a comparison made outside an experiment's results carries).
    pub fn of_stats(rubric: &str, stats: Comparison) -> RubricResult {
        RubricResult {
            rubric: rubric.into(),
            stats,
            more_samples_needed: None,
            p_noninferiority_holm: None,
            pairwise: None,
            judge_errors: 0,
            judge_skipped: 0,
            judge_cost_usd: 0.0,
            length_correlation: None,
            consistency: None,
            first_position_rate: None,
            lc_win_rate: None,
            judge_within_item_sd: None,
            calibration: None,
            warnings: Vec::new(),
            pass_rates: None,
        }
    }
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

pub(crate) fn pass_rates(baseline: &[f64], candidate: &[f64]) -> Option<PassRates> {
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

/// Pearson correlation; `None` when either side does not vary or there are fewer than 3 points.
pub(crate) fn correlation(x: &[f64], y: &[f64]) -> Option<f64> {
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
pub(crate) enum CostSource {
    Gateway,
    Config,
    Table,
}

/// A production call's cost and where it came from: the gateway's, else its usage at the
/// experiment's frozen `[prices]`, else at the shipped default price table.
pub(crate) fn cost_of(
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

pub(crate) fn mean_or_zero(xs: &[f64]) -> f64 {
    if xs.is_empty() { 0.0 } else { mean(xs) }
}

pub(crate) fn cluster_key(tags: &serde_json::Value) -> Option<String> {
    CLUSTER_TAGS.iter().find_map(|tag| match tags.get(tag)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(format!("{tag}:{s}")),
        serde_json::Value::Number(n) => Some(format!("{tag}:{n}")),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_is_pearsons() {
        assert!(
            (correlation(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]).expect("varies") - 0.9979487157886733).abs()
                < 1e-12
        );
        assert!(correlation(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
    }
}
