//! Per segment of traffic, the cheapest candidate shown good enough — or production kept, with
//! the reason — and the monthly saving each switch brings. See the README.

pub mod export;

use std::collections::BTreeMap;

use evaltap_report::segments::{Segment, SegmentCandidate, SegmentedReport};
use evaltap_report::{ALPHA, RubricResult};
use evaltap_stats::Verdict;
use serde::{Deserialize, Serialize};

/// What a recommended candidate must meet besides quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Highest replay error rate.
    pub max_error_rate: f64,
    /// Largest p95 latency increase over the baseline, in percent.
    pub max_latency_p95_increase_pct: f64,
}

impl From<&evaltap_core::RecommendConfig> for Limits {
    fn from(config: &evaltap_core::RecommendConfig) -> Self {
        Limits {
            max_error_rate: config.max_error_rate,
            max_latency_p95_increase_pct: config.max_latency_p95_increase_pct,
        }
    }
}

/// The traffic the experiment's sample stands for, per month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Volume {
    /// Requests per month (stored exchanges of the last 30 days over each source's sample rate).
    pub monthly_requests: f64,
    /// How that was scaled, for the reader.
    pub scaling: String,
}

/// The guarantee every recommendation set carries, as the simulation in `cargo test` checks it.
pub const GUARANTEE: &str = "the chance that any recommended switch is in truth worse than the margin on any rubric is at most 5% (Holm across every segment × candidate × rubric; for a candidate that stopped early, each confidence sequence at 5% divided by their number)";

/// Switch the segment to a candidate, or keep production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Route the segment to the recommended candidate.
    Switch,
    /// Keep the segment on production.
    Keep,
}

/// The recommendations of one experiment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recommendations {
    /// Experiment name.
    pub experiment: String,
    /// `running` or `done`.
    pub status: String,
    /// Non-inferiority margin.
    pub margin: f64,
    /// What the segments are split by.
    pub segment_by: Vec<String>,
    /// Tests in the multiple-comparison family.
    pub family_size: usize,
    /// What the set as a whole guarantees.
    pub guarantee: String,
    /// The traffic the savings are projected on.
    pub volume: Volume,
    /// Sum of the monthly savings of every switch.
    pub monthly_saving_usd: f64,
    /// One per segment, largest first.
    pub segments: Vec<SegmentRecommendation>,
}

impl Recommendations {
    /// The one tag the segments are told apart by, when they are split by exactly one (what a
    /// gateway routes on and a guard watches).
    pub fn route_tag(&self) -> Option<&str> {
        match self.segment_by.as_slice() {
            [tag] => Some(tag.as_str()),
            _ => None,
        }
    }
}

/// What to do with one segment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentRecommendation {
    /// The segment's value of each `segment_by` key.
    pub key: BTreeMap<String, String>,
    /// `route=support`.
    pub segment: String,
    /// Sampled items in the segment.
    pub items: usize,
    /// Share of the experiment's sample.
    pub traffic_share: f64,
    /// The production model the segment's traffic asked for (`mixed` for several).
    pub production_model: String,
    /// Switch or keep.
    pub action: Action,
    /// The recommended candidate (switch only).
    pub candidate: Option<String>,
    /// Its model (switch only).
    pub model: Option<String>,
    /// Why: the evidence in a sentence, or what stands in the way.
    pub reason: String,
    /// Requests per month in the segment.
    pub monthly_requests: f64,
    /// Saving per month if switched (switch only).
    pub monthly_saving_usd: Option<f64>,
    /// Cost per request relative to production, in percent (switch only).
    pub cost_delta_pct: Option<f64>,
    /// p95 latency relative to production, in percent (switch only).
    pub latency_p95_delta_pct: Option<f64>,
    /// Replay error rate (switch only).
    pub error_rate: Option<f64>,
    /// The comparisons the decision rests on: the recommended candidate's, else those of the
    /// cheapest candidate considered.
    pub evidence: Vec<Evidence>,
    /// Every candidate considered, cheapest first, with what kept it out.
    pub considered: Vec<Considered>,
}

/// One comparison behind a recommendation.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// Candidate.
    pub candidate: String,
    /// Rubric or check.
    pub rubric: String,
    /// Pairs.
    pub n: usize,
    /// Mean difference candidate − production.
    pub delta: f64,
    /// 95% interval of the difference.
    pub ci_low: f64,
    /// 95% interval of the difference.
    pub ci_high: f64,
    /// Verdict on the segment.
    pub verdict: Verdict,
    /// Non-inferiority p-value adjusted across the family.
    pub p_noninferiority_holm: Option<f64>,
}

/// A candidate considered for a segment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Considered {
    /// Candidate.
    pub candidate: String,
    /// Mean cost per request in USD.
    pub cost_per_request_usd: Option<f64>,
    /// Whether it meets every condition.
    pub eligible: bool,
    /// What kept it out (empty when eligible).
    pub reason: String,
}

/// Recommends, per segment, the cheapest candidate that is cheaper than production, `better`
/// or `non-inferior` with a Holm-adjusted non-inferiority p below α on every rubric, and
/// within `limits`; otherwise keeps production with the reason. Pure: the statistics are the
/// segmented report's.
pub fn recommend(segmented: &SegmentedReport, limits: &Limits, volume: &Volume) -> Recommendations {
    let segments: Vec<SegmentRecommendation> =
        segmented.segments.iter().map(|segment| decide(segmented, segment, limits, volume)).collect();
    let monthly_saving_usd = segments.iter().filter_map(|s| s.monthly_saving_usd).fold(0.0, |a, b| a + b);
    Recommendations {
        experiment: segmented.experiment.clone(),
        status: segmented.status.clone(),
        margin: segmented.margin,
        segment_by: segmented.segment_by.clone(),
        family_size: segmented.family_size,
        guarantee: GUARANTEE.into(),
        volume: volume.clone(),
        monthly_saving_usd,
        segments,
    }
}

fn evidence(candidate: &SegmentCandidate) -> Vec<Evidence> {
    candidate
        .results
        .rubrics
        .iter()
        .map(|r| Evidence {
            candidate: candidate.results.name.clone(),
            rubric: r.rubric.clone(),
            n: r.stats.n,
            delta: r.stats.delta,
            ci_low: r.stats.ci_low,
            ci_high: r.stats.ci_high,
            verdict: r.stats.verdict,
            p_noninferiority_holm: r.p_noninferiority_holm,
        })
        .collect()
}

/// Why a rubric does not carry a switch, if it does not.
fn rubric_objection(rubric: &RubricResult) -> Option<String> {
    let stats = &rubric.stats;
    let shown = matches!(stats.verdict, Verdict::Better | Verdict::NonInferior)
        && rubric.p_noninferiority_holm.is_some_and(|p| p < ALPHA);
    if shown {
        return None;
    }
    let interval =
        format!("Δ {:+.3} [{:+.3}, {:+.3}], n {}", stats.delta, stats.ci_low, stats.ci_high, stats.n);
    Some(match (stats.verdict, rubric.more_samples_needed) {
        (Verdict::Worse, _) => format!("worse on {} ({interval})", rubric.rubric),
        (_, Some(more)) if more > 0 => {
            format!("{more} more pairs needed on {} ({interval})", rubric.rubric)
        }
        _ => format!("not shown within the margin on {} ({interval})", rubric.rubric),
    })
}

/// What keeps `candidate` from being recommended on `segment`, if anything.
fn objection(segment: &Segment, candidate: &SegmentCandidate, limits: &Limits) -> Option<String> {
    let results = &candidate.results;
    let Some(cost) = results.cost_per_request_usd else {
        return Some("no priced replay: its cost is unknown".into());
    };
    if segment.baseline.cost_per_request_usd <= 0.0 {
        return Some("production's cost is unknown on this segment".into());
    }
    if cost >= segment.baseline.cost_per_request_usd {
        return Some(format!(
            "not cheaper than production (${cost:.6} vs ${:.6} per request)",
            segment.baseline.cost_per_request_usd
        ));
    }
    if results.rubrics.is_empty() {
        return Some("no rubric compared".into());
    }
    // Stopped on its whole-sample verdicts (`--early-stop-on verdicts`): no more pairs will
    // come, so "more pairs needed" would promise what the experiment will not do.
    let unsettled: Vec<&str> = results
        .rubrics
        .iter()
        .filter(|r| r.stats.verdict == Verdict::Inconclusive)
        .map(|r| r.rubric.as_str())
        .collect();
    let worse = results.rubrics.iter().any(|r| r.stats.verdict == Verdict::Worse);
    if let (Some(stop), false, false) = (&results.stopped_early, unsettled.is_empty(), worse) {
        return Some(format!(
            "stopped early on its whole-sample verdicts ({} pairs) with {} pairs here, before its verdict here was settled on {} (an experiment with `--early-stop-on segments` gathers each segment's evidence)",
            stop.pairs,
            results.rubrics.iter().map(|r| r.stats.n).min().unwrap_or(0),
            unsettled.join(", ")
        ));
    }
    let rubric_objections: Vec<String> = results.rubrics.iter().filter_map(rubric_objection).collect();
    if !rubric_objections.is_empty() {
        return Some(rubric_objections.join("; "));
    }
    if results.error_rate > limits.max_error_rate {
        return Some(format!(
            "error rate {:.1}% above the {:.1}% allowed",
            100.0 * results.error_rate,
            100.0 * limits.max_error_rate
        ));
    }
    if let Some(slower) = candidate.latency_p95_delta_pct.filter(|d| *d > limits.max_latency_p95_increase_pct)
    {
        return Some(format!(
            "too slow: p95 latency {slower:+.0}% against production, {:.0}% allowed",
            limits.max_latency_p95_increase_pct
        ));
    }
    None
}

/// The candidates short of `min_n` pairs on `segment` because they stopped early on their
/// whole-sample verdicts, in words (`small stopped early on its whole-sample verdicts with 20
/// pairs here`); none when every short candidate is short for want of traffic.
fn stopped_short(segment: &Segment, min_n: usize) -> Option<String> {
    let stopped: Vec<String> = segment
        .candidates
        .iter()
        .filter(|c| c.results.stopped_early.is_some())
        .filter_map(|c| {
            let pairs = c.results.rubrics.iter().map(|r| r.stats.n).min()?;
            (pairs < min_n).then(|| {
                format!(
                    "{} stopped early on its whole-sample verdicts with {pairs} pairs here",
                    c.results.name
                )
            })
        })
        .collect();
    (!stopped.is_empty()).then(|| stopped.join("; "))
}

fn decide(
    segmented: &SegmentedReport,
    segment: &Segment,
    limits: &Limits,
    volume: &Volume,
) -> SegmentRecommendation {
    let monthly_requests = volume.monthly_requests * segment.traffic_share;
    let mut by_cost: Vec<&SegmentCandidate> = segment.candidates.iter().collect();
    by_cost.sort_by(|a, b| {
        let cost = |c: &SegmentCandidate| c.results.cost_per_request_usd.unwrap_or(f64::INFINITY);
        cost(a).total_cmp(&cost(b)).then_with(|| a.results.name.cmp(&b.results.name))
    });
    let blocker = if segmented.status != "done" {
        Some("the experiment is still running: recommendations are made once it is done".to_string())
    } else if !segment.enough_data
        && let Some(stopped) = stopped_short(segment, segmented.min_segment_n)
    {
        Some(format!(
            "not enough data: {stopped} before this segment had {} pairs per rubric (an experiment with `--early-stop-on segments` gathers each segment's evidence)",
            segmented.min_segment_n
        ))
    } else if !segment.enough_data {
        let needed = segment
            .candidates
            .iter()
            .flat_map(|c| c.results.rubrics.iter().filter_map(|r| r.more_samples_needed))
            .max()
            .unwrap_or(segmented.min_segment_n as u64);
        Some(format!(
            "not enough data: {needed} more pairs needed (a segment needs {} pairs per rubric)",
            segmented.min_segment_n
        ))
    } else if segment.baseline.model == evaltap_report::MIXED_BASELINE {
        Some(format!(
            "several production models in this segment ({}): add `model` to segment_by",
            segment.baseline.describe()
        ))
    } else {
        None
    };
    let considered: Vec<Considered> = by_cost
        .iter()
        .map(|c| {
            let reason = blocker.clone().or_else(|| objection(segment, c, limits));
            Considered {
                candidate: c.results.name.clone(),
                cost_per_request_usd: c.results.cost_per_request_usd,
                eligible: reason.is_none(),
                reason: reason.unwrap_or_default(),
            }
        })
        .collect();
    let chosen = by_cost.iter().zip(&considered).find(|(_, c)| c.eligible).map(|(c, _)| *c);
    let base = SegmentRecommendation {
        key: segment.key.clone(),
        segment: segment.label.clone(),
        items: segment.items,
        traffic_share: segment.traffic_share,
        production_model: segment.baseline.model.clone(),
        action: Action::Keep,
        candidate: None,
        model: None,
        reason: String::new(),
        monthly_requests,
        monthly_saving_usd: None,
        cost_delta_pct: None,
        latency_p95_delta_pct: None,
        error_rate: None,
        evidence: Vec::new(),
        considered: Vec::new(),
    };
    match chosen {
        Some(candidate) => {
            let results = &candidate.results;
            let cost = results.cost_per_request_usd.unwrap_or(0.0);
            let saving = (segment.baseline.cost_per_request_usd - cost) * monthly_requests;
            let weakest = results
                .rubrics
                .iter()
                .map(|r| (r, decisive_bound(&r.stats)))
                .min_by(|(_, a), (_, b)| a.0.total_cmp(&b.0))
                .map(|(r, (bound, what))| {
                    format!("; lowest {what} on {}: {bound:+.3} > −{}", r.rubric, segmented.margin)
                })
                .unwrap_or_default();
            SegmentRecommendation {
                action: Action::Switch,
                candidate: Some(results.name.clone()),
                model: Some(results.model.clone()),
                reason: format!(
                    "{} is non-inferior on every rubric ({} pairs){weakest}, {:+.0}% cost per request",
                    results.name,
                    results.rubrics.iter().map(|r| r.stats.n).min().unwrap_or(0),
                    results.cost_delta_pct.unwrap_or(0.0)
                ),
                monthly_saving_usd: Some(saving.max(0.0)),
                cost_delta_pct: results.cost_delta_pct,
                latency_p95_delta_pct: candidate.latency_p95_delta_pct,
                error_rate: Some(results.error_rate),
                evidence: evidence(candidate),
                considered,
                ..base
            }
        }
        None => SegmentRecommendation {
            reason: match (&blocker, considered.as_slice()) {
                (Some(blocker), _) => format!("keep production: {blocker}"),
                (None, []) => "keep production: no candidate was compared".into(),
                (None, all) => format!(
                    "keep production: {}",
                    all.iter()
                        .map(|c| format!("{} — {}", c.candidate, c.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            },
            evidence: by_cost.first().map(|c| evidence(c)).unwrap_or_default(),
            considered,
            ..base
        },
    }
}

/// The lower bound a non-inferior verdict rests on, and what it is: the 95% interval's for a
/// candidate that ran to the end, its confidence sequence's (at its level in the family) for
/// one that stopped early.
fn decisive_bound(stats: &evaltap_stats::Comparison) -> (f64, String) {
    match stats.basis {
        evaltap_stats::Basis::FixedN => (stats.ci_low, "95% bound".into()),
        evaltap_stats::Basis::Sequential => (
            stats.cs_low,
            format!("bound of its {}% confidence sequence", trim_level(100.0 * (1.0 - stats.sequence_alpha))),
        ),
    }
}

/// A confidence level for reading: `95`, `99.375`.
fn trim_level(percent: f64) -> String {
    let text = format!("{percent:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
