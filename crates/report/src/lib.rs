//! The experiment report: per candidate, cost and latency against the baseline, and per rubric
//! the paired quality comparison (fixed-n and sequential statistics, Holm-adjusted verdict).
//!
//! The JSON field names are a contract (`evaltap report --json`, the API, CI gates): fields may
//! be added, never renamed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use evaltap_core::Usage;
use evaltap_stats::{Basis, CompareOptions, Comparison, compare_paired, decide_family, mean, percentile};
use evaltap_store::{BASELINE, Experiment, Progress, Spend, Store, StoreError};
use serde::Serialize;

/// Significance level of the report's tests and intervals.
pub const ALPHA: f64 = 0.05;

/// Tags that tie exchanges into clusters (one conversation, session or user), in order of
/// preference; clustered exchanges are not independent, and their standard errors say so.
pub const CLUSTER_TAGS: [&str; 6] =
    ["conversation_id", "session_id", "thread_id", "user_id", "user", "session"];

/// The report of one experiment.
#[derive(Debug, Clone, Serialize)]
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
    /// Replays not attempted because the spend cap was reached.
    pub skipped: usize,
    /// Mean cost per successful replay in USD.
    pub cost_per_request_usd: f64,
    /// Cost per request relative to the baseline, in percent (negative is cheaper).
    pub cost_delta_pct: f64,
    /// Median replay latency in milliseconds.
    pub latency_p50_ms: f64,
    /// Quality per rubric.
    pub rubrics: Vec<RubricResult>,
}

/// The paired comparison on one rubric. Besides the contract fields (`n`, `baseline_mean`,
/// `candidate_mean`, `delta`, `ci_low`, `ci_high`, `p_value`, `verdict`) it carries the
/// sequential p-value and confidence sequence, Holm and BH adjustments, and for inconclusive
/// verdicts the sample size that would settle them.
#[derive(Debug, Clone, Serialize)]
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
}

/// Pairwise outcomes, both orders asked; a win or loss counts only when both orders agree.
#[derive(Debug, Clone, Serialize)]
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
    pub win_rate_ci: (f64, f64),
    /// Tie-as-half win rate (wins + ties/2) / n.
    pub win_rate: f64,
    /// Share of exchanges where both orders gave the same outcome; below 0.7 the judge's
    /// position bias makes pairwise results suspect.
    pub position_consistency: f64,
}

/// Summarizes (score with baseline first, score with candidate first) pairs.
fn pairwise_summary(orders: impl Iterator<Item = (f64, f64)>) -> PairwiseSummary {
    let (mut wins, mut losses, mut ties, mut consistent, mut n) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for (ab, ba) in orders {
        n += 1;
        if ab == ba {
            consistent += 1;
        }
        match (ab, ba) {
            (x, y) if x == 1.0 && y == 1.0 => wins += 1,
            (x, y) if x == 0.0 && y == 0.0 => losses += 1,
            _ => ties += 1,
        }
    }
    let sign = evaltap_stats::sign_test(wins, losses, ties, ALPHA);
    PairwiseSummary {
        wins,
        losses,
        ties,
        p_sign: sign.p_two_sided,
        win_rate_ci: sign.win_rate_ci,
        win_rate: sign.win_rate_tie_half,
        position_consistency: if n == 0 { 1.0 } else { consistent as f64 / n as f64 },
    }
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

fn cluster_key(tags: &serde_json::Value) -> Option<String> {
    CLUSTER_TAGS.iter().find_map(|tag| match tags.get(tag)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(format!("{tag}:{s}")),
        serde_json::Value::Number(n) => Some(format!("{tag}:{n}")),
        _ => None,
    })
}

/// exchange id → (normalized score, arrival sequence), for one (subject, rubric, position).
type ScoresByExchange = HashMap<String, (f64, usize)>;

/// Builds the report of an experiment from what is stored.
pub async fn build(store: &Store, experiment: &Experiment) -> Result<Report, StoreError> {
    let spec = &experiment.spec;
    let progress = store.experiment_progress(experiment).await?;
    let exchange_ids = store.experiment_exchange_ids(&experiment.id).await?;

    let mut models: BTreeMap<String, usize> = BTreeMap::new();
    let mut baseline_costs = Vec::new();
    let mut clusters: HashMap<String, String> = HashMap::new();
    for id in &exchange_ids {
        if let Some(stored) = store.exchange(id).await? {
            let ex = &stored.exchange;
            *models.entry(ex.model.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1;
            baseline_costs.extend(cost_of(experiment, ex.cost_usd, ex.model.as_deref(), ex.usage));
            if let Some(key) = cluster_key(&ex.tags) {
                clusters.insert(id.clone(), key);
            }
        }
    }
    let baseline_model = models.iter().max_by_key(|(_, n)| **n).map(|(m, _)| m.clone()).unwrap_or_default();
    let baseline_cost = mean_or_zero(&baseline_costs);

    let mut scores: HashMap<(String, String, String), ScoresByExchange> = HashMap::new();
    for (seq, j) in store.judgments(&experiment.id).await?.into_iter().enumerate() {
        if let Some(score) = j.score.filter(|s| s.is_finite()) {
            scores.entry((j.subject, j.rubric, j.position)).or_default().insert(j.exchange_id, (score, seq));
        }
    }
    let basis = if progress.is_done() { Basis::FixedN } else { Basis::Sequential };
    let options = CompareOptions {
        alpha: ALPHA,
        margin: spec.margin,
        basis,
        planned_n: Some(exchange_ids.len()),
        ..CompareOptions::default()
    };
    let replays = store.replays(&experiment.id).await?;
    let empty = HashMap::new();
    let mut candidates: Vec<CandidateReport> = spec
        .candidates
        .iter()
        .map(|candidate| {
            let mine: Vec<_> = replays.iter().filter(|r| r.candidate == candidate.name).collect();
            let ok: Vec<_> = mine.iter().filter(|r| r.error.is_none()).collect();
            let costs: Vec<f64> = ok.iter().filter_map(|r| r.cost_usd).collect();
            let latencies: Vec<f64> = ok.iter().filter_map(|r| r.latency_ms).collect();
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
                    // A pair arrives when its later judgment is stored; sequential statistics
                    // see pairs in that order.
                    let (mut pairs, pairwise): (Vec<(usize, &String, f64, f64)>, _) = if spec
                        .is_pairwise(rubric)
                    {
                        // Both orders judged: the candidate's score is their mean, against ½.
                        let (ab, ba) = (get(&candidate.name, "ab"), get(&candidate.name, "ba"));
                        let both: Vec<(usize, &String, f64, f64)> = ab
                            .iter()
                            .filter_map(|(ex, (x, xs))| {
                                ba.get(ex).map(|(y, ys)| ((*xs).max(*ys), ex, *x, *y))
                            })
                            .collect();
                        let summary = pairwise_summary(both.iter().map(|p| (p.2, p.3)));
                        (
                            both.into_iter().map(|(seq, ex, x, y)| (seq, ex, 0.5, (x + y) / 2.0)).collect(),
                            Some(summary),
                        )
                    } else {
                        let (base, cand) = (get(BASELINE, ""), get(&candidate.name, ""));
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
                    RubricResult {
                        rubric: rubric.clone(),
                        stats: compare_paired(&b, &c, clustered.then_some(&keys[..]), &options),
                        more_samples_needed: None,
                        pairwise,
                    }
                })
                .collect();
            CandidateReport {
                name: candidate.name.clone(),
                model: candidate.model.clone(),
                n: ok.len(),
                errors: mine.iter().filter(|r| r.error.is_some() && r.skipped.is_none()).count(),
                skipped: mine.iter().filter(|r| r.skipped.is_some()).count(),
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
    let spend = store.spend(&experiment.id).await?;
    let spend_cap_reached = candidates.iter().any(|c| c.skipped > 0);
    Ok(Report {
        spend,
        spend_cap_reached,
        experiment: spec.name.clone(),
        status: if progress.is_done() { "done" } else { "running" }.into(),
        margin: spec.margin,
        basis,
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
    let basis = match report.basis {
        Basis::Sequential => "sequential (always-valid, results still landing)",
        Basis::FixedN => "fixed-n",
    };
    let _ = writeln!(
        out,
        "experiment {} ({}), baseline {} on {} exchanges, ${:.6}/request, margin {}, verdicts {}",
        report.experiment,
        report.status,
        report.baseline.model,
        report.baseline.n,
        report.baseline.cost_per_request_usd,
        report.margin,
        basis
    );
    if let Some(cap) = report.spend.cap_usd {
        let _ = writeln!(
            out,
            "spend on replays ${:.6} of a ${cap:.6} cap{}",
            report.spend.spent_usd,
            if report.spend_cap_reached { " — cap reached, remaining replays skipped" } else { "" }
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
                    "{:<12} {:<12} {:>5} {:>4} {:>10.6} {:>7.1}% {:>7.1}",
                    c.name,
                    c.model,
                    c.n,
                    c.errors,
                    c.cost_per_request_usd,
                    c.cost_delta_pct,
                    c.latency_p50_ms
                )
            } else {
                format!("{:<12} {:<12} {:>5} {:>4} {:>10} {:>8} {:>7}", "", "", "", "", "", "", "")
            };
            let s = &r.stats;
            let more =
                r.more_samples_needed.map(|m| format!(" (~{m} more pairs to settle)")).unwrap_or_default();
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
        }
    }
    out
}
