//! The experiment report: per candidate, cost and latency against the baseline, and per rubric
//! the paired quality delta with its interval, p-value and verdict.
//!
//! The JSON field names are a contract (`evaltap report --json`, the API, CI gates): fields may
//! be added, never renamed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use evaltap_core::Usage;
use evaltap_stats::{Verdict, mean, paired_t, percentile, verdict};
use evaltap_store::{BASELINE, Experiment, Progress, Store, StoreError};
use serde::Serialize;

/// Confidence level of the report's intervals.
pub const ALPHA: f64 = 0.05;

/// The report of one experiment.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Experiment name.
    pub experiment: String,
    /// `running` while work is pending, `done` once every replay and judgment is stored.
    pub status: String,
    /// Non-inferiority margin on the [0, 1] scale.
    pub margin: f64,
    /// Work done and expected.
    pub progress: Progress,
    /// The production responses.
    pub baseline: BaselineSummary,
    /// One entry per candidate, in the experiment's order.
    pub candidates: Vec<CandidateReport>,
}

/// The baseline (production) side.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineSummary {
    /// Most frequent production model among the sampled exchanges.
    pub model: String,
    /// Exchanges sampled.
    pub n: usize,
    /// Mean cost per request in USD (reported by the gateway, else from configured prices);
    /// 0 when no cost is known.
    pub cost_per_request_usd: f64,
}

/// One candidate's results.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    /// Candidate name.
    pub name: String,
    /// Model called.
    pub model: String,
    /// Successful replays.
    pub n: usize,
    /// Failed replays (after retries).
    pub errors: usize,
    /// Mean cost per successful replay in USD.
    pub cost_per_request_usd: f64,
    /// Cost per request relative to the baseline, in percent (negative is cheaper).
    pub cost_delta_pct: f64,
    /// Median replay latency in milliseconds.
    pub latency_p50_ms: f64,
    /// Quality per rubric.
    pub rubrics: Vec<RubricResult>,
}

/// The paired comparison on one rubric.
#[derive(Debug, Clone, Serialize)]
pub struct RubricResult {
    /// Rubric name.
    pub rubric: String,
    /// Exchanges where both baseline and candidate were scored.
    pub n: usize,
    /// Mean baseline score in [0, 1].
    pub baseline_mean: f64,
    /// Mean candidate score in [0, 1].
    pub candidate_mean: f64,
    /// Mean paired difference, candidate − baseline.
    pub delta: f64,
    /// Lower end of the 95% t-interval of the delta.
    pub ci_low: f64,
    /// Upper end of the 95% t-interval of the delta.
    pub ci_high: f64,
    /// Two-sided paired t-test p-value.
    pub p_value: f64,
    /// `better`, `worse`, `non-inferior` or `inconclusive`.
    pub verdict: Verdict,
    /// Why the statistics are degenerate or missing, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn cost_of(
    experiment: &Experiment,
    cost: Option<f64>,
    model: Option<&str>,
    usage: Option<Usage>,
) -> Option<f64> {
    cost.or_else(|| Some(experiment.spec.prices.get(model?)?.cost(usage?)))
}

fn mean_or_zero(xs: &[f64]) -> f64 {
    if xs.is_empty() { 0.0 } else { mean(xs) }
}

/// Compares paired scores (baseline, candidate) on one rubric.
pub fn compare(rubric: &str, pairs: &[(f64, f64)], margin: f64) -> RubricResult {
    let (baseline, candidate): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    match paired_t(&baseline, &candidate, ALPHA) {
        Ok(t) => RubricResult {
            rubric: rubric.into(),
            n: t.n,
            baseline_mean: t.baseline_mean,
            candidate_mean: t.candidate_mean,
            delta: t.mean_delta,
            ci_low: t.ci_low,
            ci_high: t.ci_high,
            p_value: t.p_value,
            verdict: verdict(t.ci_low, t.ci_high, margin),
            note: t.note,
        },
        Err(err) => RubricResult {
            rubric: rubric.into(),
            n: pairs.len(),
            baseline_mean: mean_or_zero(&baseline),
            candidate_mean: mean_or_zero(&candidate),
            delta: mean_or_zero(&candidate) - mean_or_zero(&baseline),
            // Nothing is known: the interval is the whole range a [0, 1] difference can take.
            ci_low: -1.0,
            ci_high: 1.0,
            p_value: 1.0,
            verdict: Verdict::Inconclusive,
            note: Some(err.to_string()),
        },
    }
}

/// Builds the report of an experiment from what is stored.
pub async fn build(store: &Store, experiment: &Experiment) -> Result<Report, StoreError> {
    let spec = &experiment.spec;
    let progress = store
        .progress(
            &experiment.id,
            spec.candidates.len() as u64,
            spec.rubrics.len() as u64,
        )
        .await?;
    let exchange_ids = store.experiment_exchange_ids(&experiment.id).await?;

    let mut models: BTreeMap<String, usize> = BTreeMap::new();
    let mut baseline_costs = Vec::new();
    for id in &exchange_ids {
        if let Some(stored) = store.exchange(id).await? {
            let ex = &stored.exchange;
            *models
                .entry(ex.model.clone().unwrap_or_else(|| "unknown".into()))
                .or_default() += 1;
            baseline_costs.extend(cost_of(
                experiment,
                ex.cost_usd,
                ex.model.as_deref(),
                ex.usage,
            ));
        }
    }
    let baseline_model = models
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(m, _)| m.clone())
        .unwrap_or_default();
    let baseline_cost = mean_or_zero(&baseline_costs);

    // scores[(subject, rubric)][exchange] = normalized score
    let mut scores: HashMap<(String, String), HashMap<String, f64>> = HashMap::new();
    for j in store.judgments(&experiment.id).await? {
        if let Some(score) = j.score.filter(|s| s.is_finite()) {
            scores
                .entry((j.subject, j.rubric))
                .or_default()
                .insert(j.exchange_id, score);
        }
    }
    let replays = store.replays(&experiment.id).await?;
    let empty = HashMap::new();
    let candidates = spec
        .candidates
        .iter()
        .map(|candidate| {
            let mine: Vec<_> = replays
                .iter()
                .filter(|r| r.candidate == candidate.name)
                .collect();
            let ok: Vec<_> = mine.iter().filter(|r| r.error.is_none()).collect();
            let costs: Vec<f64> = ok.iter().filter_map(|r| r.cost_usd).collect();
            let latencies: Vec<f64> = ok.iter().filter_map(|r| r.latency_ms).collect();
            let cost = mean_or_zero(&costs);
            let rubrics = spec
                .rubrics
                .iter()
                .map(|rubric| {
                    let base = scores
                        .get(&(BASELINE.to_string(), rubric.clone()))
                        .unwrap_or(&empty);
                    let cand = scores
                        .get(&(candidate.name.clone(), rubric.clone()))
                        .unwrap_or(&empty);
                    let mut pairs: Vec<(&String, (f64, f64))> = cand
                        .iter()
                        .filter_map(|(ex, c)| base.get(ex).map(|b| (ex, (*b, *c))))
                        .collect();
                    // A stable order keeps floating-point sums identical from run to run.
                    pairs.sort_by(|a, b| a.0.cmp(b.0));
                    let pairs: Vec<(f64, f64)> = pairs.into_iter().map(|(_, p)| p).collect();
                    compare(rubric, &pairs, spec.margin)
                })
                .collect();
            CandidateReport {
                name: candidate.name.clone(),
                model: candidate.model.clone(),
                n: ok.len(),
                errors: mine.len() - ok.len(),
                cost_per_request_usd: cost,
                cost_delta_pct: if baseline_cost > 0.0 {
                    (cost - baseline_cost) / baseline_cost * 100.0
                } else {
                    0.0
                },
                latency_p50_ms: percentile(&latencies, 50.0).unwrap_or(0.0),
                rubrics,
            }
        })
        .collect();
    Ok(Report {
        experiment: spec.name.clone(),
        status: if progress.is_done() {
            "done"
        } else {
            "running"
        }
        .into(),
        margin: spec.margin,
        progress,
        baseline: BaselineSummary {
            model: baseline_model,
            n: exchange_ids.len(),
            cost_per_request_usd: baseline_cost,
        },
        candidates,
    })
}

/// The report as a plain-text table.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "experiment {} ({}), baseline {} on {} exchanges, ${:.6}/request, margin {}",
        report.experiment,
        report.status,
        report.baseline.model,
        report.baseline.n,
        report.baseline.cost_per_request_usd,
        report.margin
    );
    let _ = writeln!(
        out,
        "{:<14} {:<14} {:>5} {:>6} {:>12} {:>8} {:>9}  {:<13} {:>8} {:>8} {:>8} {:>18} {:>8}  verdict",
        "candidate",
        "model",
        "n",
        "errors",
        "$/request",
        "cost Δ",
        "p50 ms",
        "rubric",
        "base",
        "cand",
        "Δ",
        "95% CI",
        "p"
    );
    for c in &report.candidates {
        for (i, r) in c.rubrics.iter().enumerate() {
            let head = if i == 0 {
                format!(
                    "{:<14} {:<14} {:>5} {:>6} {:>12.6} {:>7.1}% {:>9.1}",
                    c.name,
                    c.model,
                    c.n,
                    c.errors,
                    c.cost_per_request_usd,
                    c.cost_delta_pct,
                    c.latency_p50_ms
                )
            } else {
                format!(
                    "{:<14} {:<14} {:>5} {:>6} {:>12} {:>8} {:>9}",
                    "", "", "", "", "", "", ""
                )
            };
            let _ = writeln!(
                out,
                "{head}  {:<13} {:>8.3} {:>8.3} {:>+8.3} {:>18} {:>8.4}  {}",
                r.rubric,
                r.baseline_mean,
                r.candidate_mean,
                r.delta,
                format!("[{:+.3}, {:+.3}]", r.ci_low, r.ci_high),
                r.p_value,
                r.verdict
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_pairs_is_inconclusive_with_a_reason_and_no_nan() {
        let r = compare("x", &[(0.5, 0.6)], 0.02);
        assert_eq!(r.verdict, Verdict::Inconclusive);
        assert!(
            r.note
                .as_deref()
                .is_some_and(|n| n.contains("not enough data"))
        );
        assert!(
            [r.delta, r.ci_low, r.ci_high, r.p_value]
                .iter()
                .all(|x| x.is_finite())
        );
        let none = compare("x", &[], 0.02);
        assert!([none.baseline_mean, none.delta].iter().all(|x| *x == 0.0));
    }

    #[test]
    fn a_clear_drop_is_worse() {
        let pairs: Vec<(f64, f64)> = (0..50)
            .map(|i| (1.0, if i % 2 == 0 { 0.0 } else { 1.0 }))
            .collect();
        let r = compare("x", &pairs, 0.02);
        assert_eq!(r.verdict, Verdict::Worse);
        assert!(r.ci_high < 0.0);
    }
}
