//! An experiment's results split into segments of traffic (by route, source, production model
//! or any tag), with no extra model call: per segment × candidate × rubric the same paired
//! comparison as the report, one multiple-comparison family across all of them.

use std::collections::{BTreeMap, HashSet};

use evaltap_stats::{Basis, CompareOptions, Comparison, Verdict, decide_family, holm, percentile};
use evaltap_store::{BaselineSpec, StoredExchange};
use serde::{Deserialize, Serialize};

use crate::compute::compare_options;
use crate::*;

/// The value a segment key takes for an exchange without it.
pub const NO_VALUE: &str = "(none)";

/// The level of each always-valid confidence sequence in a family of `tests` sharing α
/// (Bonferroni; `None` for a test alone, which runs at α).
pub fn family_sequence_alpha(tests: usize) -> Option<f64> {
    (tests > 1).then(|| crate::ALPHA / tests as f64)
}

/// How to split an experiment into segments.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentOptions {
    /// `source`, `model` (the production model) or tag keys (`tag:KEY` for a tag named like a
    /// reserved word), combined.
    pub segment_by: Vec<String>,
    /// Fewest pairs a segment needs before its verdicts count.
    pub min_n: usize,
}

impl From<&evaltap_core::RecommendConfig> for SegmentOptions {
    fn from(config: &evaltap_core::RecommendConfig) -> Self {
        SegmentOptions { segment_by: config.segment_by.clone(), min_n: config.min_segment_n }
    }
}

/// An experiment's results per segment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentedReport {
    /// Experiment name.
    pub experiment: String,
    /// `running` or `done`.
    pub status: String,
    /// Which statistics decide the verdicts.
    pub basis: Basis,
    /// Non-inferiority margin.
    pub margin: f64,
    /// What the segments are split by.
    pub segment_by: Vec<String>,
    /// Fewest pairs a segment needs before its verdicts count.
    pub min_segment_n: usize,
    /// Tests in the multiple-comparison family (segments with enough data × candidates ×
    /// rubrics).
    pub family_size: usize,
    /// The segments, largest first.
    pub segments: Vec<Segment>,
}

/// One segment of the experiment's traffic.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    /// The segment's value of each `segment_by` key.
    pub key: BTreeMap<String, String>,
    /// `route=support` (keys joined with `, `).
    pub label: String,
    /// Sampled items in the segment.
    pub items: usize,
    /// The segment's share of the experiment's sampled items.
    pub traffic_share: f64,
    /// Whether every candidate has `min_segment_n` pairs on every rubric.
    pub enough_data: bool,
    /// The segment's baseline (production model split, cost per request).
    pub baseline: BaselineSummary,
    /// 95th percentile latency of the baseline's calls in the segment, in milliseconds.
    pub baseline_latency_p95_ms: Option<f64>,
    /// Per candidate, as in the report but on this segment's items.
    pub candidates: Vec<SegmentCandidate>,
}

/// A candidate's results on one segment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentCandidate {
    /// Cost, latency, errors and the per-rubric comparisons on the segment.
    #[serde(flatten)]
    pub results: CandidateReport,
    /// p95 latency relative to the baseline's in the segment, in percent.
    pub latency_p95_delta_pct: Option<f64>,
}

/// The segment an exchange belongs to: each key's value, missing ones as `(none)`.
pub fn segment_key(segment_by: &[String], stored: &StoredExchange) -> BTreeMap<String, String> {
    segment_by
        .iter()
        .map(|key| {
            let value = match key.as_str() {
                "source" => Some(stored.source.clone()),
                "model" => stored.exchange.model.clone(),
                tag => {
                    let tag = tag.strip_prefix("tag:").unwrap_or(tag);
                    stored
                        .exchange
                        .tags
                        .get(tag)
                        .and_then(evaltap_core::exchange::tag_text)
                        .filter(|text| !text.is_empty())
                }
            };
            (key.clone(), value.unwrap_or_else(|| NO_VALUE.to_string()))
        })
        .collect()
}

fn label(key: &BTreeMap<String, String>) -> String {
    key.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// Splits the experiment's results into segments and compares each candidate with the baseline
/// on each (pure: no I/O). Holm runs across every segment with enough data × candidate ×
/// rubric; on a finished experiment `non-inferior` also needs the Holm-adjusted
/// non-inferiority p-value of that family below α, and on the always-valid statistics (a
/// running experiment, a candidate that stopped early) each confidence sequence runs at α
/// divided by every segment × candidate × rubric, so that the chance of any false
/// `non-inferior` across all segments stays below α.
pub fn segments(inputs: &ReportInputs, options: &SegmentOptions) -> SegmentedReport {
    let spec = &inputs.experiment.spec;
    // A golden run's items are not traffic: one segment holds them all.
    let mut groups: BTreeMap<BTreeMap<String, String>, HashSet<String>> = BTreeMap::new();
    if spec.dataset.is_some() {
        let all: BTreeMap<String, String> = [("dataset".to_string(), "all".to_string())].into();
        groups.insert(all, inputs.item_ids.iter().cloned().collect());
    } else {
        for stored in &inputs.exchanges {
            groups.entry(segment_key(&options.segment_by, stored)).or_default().insert(stored.id.clone());
        }
    }
    let total: usize = groups.values().map(HashSet::len).sum::<usize>().max(1);
    // Every segment × candidate × rubric shares α: the fixed-n verdicts through Holm (below),
    // the always-valid ones — a running experiment's, a candidate's that stopped early — through
    // confidence sequences at α over that many (Bonferroni), since a candidate may stop on any
    // of them.
    let sequence_alpha =
        family_sequence_alpha(groups.len() * spec.compared_candidates().count() * spec.rubrics.len());
    let compare = CompareOptions {
        sequence_alpha,
        ..compare_options(spec.margin, &inputs.progress, inputs.item_ids.len())
    };
    let mut segments: Vec<Segment> = groups
        .into_iter()
        .map(|(key, items)| {
            let report = compute(inputs.restricted_to(&items, sequence_alpha));
            let baseline_latency_p95_ms = baseline_latencies(inputs, &items);
            let candidates: Vec<SegmentCandidate> = report
                .candidates
                .into_iter()
                .map(|results| SegmentCandidate {
                    latency_p95_delta_pct: baseline_latency_p95_ms
                        .filter(|base| *base > 0.0 && results.n > 0)
                        .map(|base| (results.latency_p95_ms - base) / base * 100.0),
                    results,
                })
                .collect();
            let enough_data = !candidates.is_empty()
                && candidates.iter().all(|c| c.results.rubrics.iter().all(|r| r.stats.n >= options.min_n));
            Segment {
                label: label(&key),
                key,
                items: items.len(),
                traffic_share: items.len() as f64 / total as f64,
                enough_data,
                baseline: report.baseline,
                baseline_latency_p95_ms,
                candidates,
            }
        })
        .collect();
    segments.sort_by(|a, b| b.items.cmp(&a.items).then_with(|| a.label.cmp(&b.label)));

    let family_size = decide_segments(&mut segments, &compare, options.min_n);
    SegmentedReport {
        experiment: spec.name.clone(),
        status: if inputs.progress.is_done() { "done" } else { "running" }.into(),
        basis: compare.basis,
        margin: spec.margin,
        segment_by: options.segment_by.clone(),
        min_segment_n: options.min_n,
        family_size,
        segments,
    }
}

/// Decides every segment's verdicts as one family: Holm across every segment with enough data
/// × candidate × rubric, and on a finished experiment (`FixedN`) `non-inferior` only where the
/// Holm-adjusted non-inferiority p-value of that family is below α; segments short of `min_n`
/// pairs are `inconclusive` with the pairs they still need. Returns the family's size.
pub fn decide_segments(segments: &mut [Segment], compare: &CompareOptions, min_n: usize) -> usize {
    let mut family: Vec<Comparison> = segments
        .iter()
        .filter(|s| s.enough_data)
        .flat_map(|s| s.candidates.iter().flat_map(|c| c.results.rubrics.iter().map(|r| r.stats.clone())))
        .collect();
    decide_family(&mut family, compare);
    let ni_adjusted = holm(&family.iter().map(|c| c.p_noninferiority).collect::<Vec<_>>());
    let family_size = family.len();
    let mut decided = family.into_iter().zip(ni_adjusted);
    for segment in segments.iter_mut() {
        let enough = segment.enough_data;
        for rubric in segment.candidates.iter_mut().flat_map(|c| c.results.rubrics.iter_mut()) {
            if !enough {
                not_enough_data(rubric, min_n);
                continue;
            }
            let Some((mut stats, p_ni)) = decided.next() else { continue };
            if compare.basis == Basis::FixedN
                && stats.verdict == Verdict::NonInferior
                && p_ni >= compare.alpha
            {
                // Within the margin by its own test, not once the family is accounted for.
                stats.verdict = if stats.p_holm < compare.alpha && stats.delta < 0.0 {
                    Verdict::Worse
                } else {
                    Verdict::Inconclusive
                };
                stats.note = Some(format!(
                    "within the margin on its own (p = {:.3}), not across the {family_size} tests of all \
                     segments (Holm p = {p_ni:.3})",
                    stats.p_noninferiority
                ));
            }
            rubric.more_samples_needed = stats.samples_needed.map(|n| n.saturating_sub(stats.n as u64));
            rubric.p_noninferiority_holm = Some(p_ni);
            rubric.stats = stats;
        }
    }
    family_size
}

/// A segment too small to test: `inconclusive`, with the pairs it still needs.
fn not_enough_data(rubric: &mut RubricResult, min_n: usize) {
    let stats = &mut rubric.stats;
    stats.verdict = Verdict::Inconclusive;
    stats.note = Some(format!("not enough data: {} pairs, a segment needs {min_n}", stats.n));
    rubric.more_samples_needed = Some(min_n.saturating_sub(stats.n) as u64);
}

/// The baseline's latencies on `items`: the production calls' own, or the baseline
/// candidate's replays.
fn baseline_latencies(inputs: &ReportInputs, items: &HashSet<String>) -> Option<f64> {
    let spec = &inputs.experiment.spec;
    let latencies: Vec<f64> = match &spec.baseline {
        BaselineSpec::Production => inputs
            .exchanges
            .iter()
            .filter(|s| items.contains(&s.id))
            .filter_map(|s| s.exchange.latency_ms)
            .collect(),
        BaselineSpec::Candidate { name } => inputs
            .replays
            .iter()
            .filter(|r| &r.candidate == name && r.error.is_none() && items.contains(&r.item_id))
            .filter_map(|r| r.latency_ms)
            .collect(),
        _ => Vec::new(),
    };
    percentile(&latencies, 95.0)
}

impl ReportInputs {
    /// The same inputs on `items` only, without the bootstrap (verdicts do not use it), their
    /// confidence sequences at `sequence_alpha` (their share of the family's α).
    fn restricted_to(&self, items: &HashSet<String>, sequence_alpha: Option<f64>) -> ReportInputs {
        let mut inputs = self.clone();
        inputs.bootstrap_resamples = 0;
        inputs.sequence_alpha = sequence_alpha;
        inputs.item_ids.retain(|id| items.contains(id));
        inputs.replays.retain(|r| items.contains(&r.item_id));
        inputs.references.retain(|r| items.contains(&r.key));
        inputs.exchanges.retain(|e| items.contains(&e.id));
        inputs.judgments.retain(|j| items.contains(&j.item_id));
        inputs
    }
}
