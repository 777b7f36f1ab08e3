//! The stop rule reads every segment, the only one included: a candidate whose pooled verdict
//! is settled but whose verdict in the recommendations' family is not keeps running.

use evaltap_report::early_stop::settled_in_segments;
use evaltap_report::segments::{Segment, SegmentCandidate, SegmentedReport};
use evaltap_report::{BaselineSummary, CandidateReport, RubricResult};
use evaltap_stats::{Basis, CompareOptions, Verdict, compare_paired};

fn candidate(name: &str, verdict: Verdict) -> SegmentCandidate {
    let options =
        CompareOptions { basis: Basis::Sequential, bootstrap_resamples: 0, ..CompareOptions::default() };
    let scores: Vec<f64> = (0..60).map(|i| f64::from(i % 2)).collect();
    let mut rubric = RubricResult::of_stats("correctness", compare_paired(&scores, &scores, None, &options));
    rubric.stats.verdict = verdict;
    SegmentCandidate {
        results: CandidateReport {
            name: name.into(),
            model: format!("{name}-model"),
            n: 60,
            errors: 0,
            skipped: 0,
            unsupported: Default::default(),
            truncated: 0,
            settled: 0,
            stopped_early: None,
            cached: Default::default(),
            spent_usd: 0.0,
            cost_per_request_usd: Some(0.001),
            cost_delta_pct: Some(-90.0),
            latency_p50_ms: 100.0,
            latency_p95_ms: 150.0,
            error_rate: 0.0,
            rubrics: vec![rubric],
        },
        latency_p95_delta_pct: Some(0.0),
    }
}

fn segmented(segments: Vec<Vec<SegmentCandidate>>) -> SegmentedReport {
    let count = segments.len();
    SegmentedReport {
        experiment: "sim".into(),
        status: "running".into(),
        basis: Basis::Sequential,
        margin: 0.05,
        segment_by: vec!["route".into()],
        min_segment_n: 30,
        family_size: count * 2,
        segments: segments
            .into_iter()
            .enumerate()
            .map(|(index, candidates)| Segment {
                key: [("route".to_string(), format!("r{index}"))].into(),
                label: format!("route=r{index}"),
                items: 60,
                traffic_share: 1.0 / count as f64,
                enough_data: true,
                baseline: BaselineSummary {
                    model: "prod".into(),
                    models: Vec::new(),
                    is_reference: false,
                    cost_sources: Default::default(),
                    n: 60,
                    cost_per_request_usd: 0.01,
                    judgments: Default::default(),
                },
                baseline_latency_p95_ms: Some(150.0),
                candidates,
            })
            .collect(),
    }
}

#[test]
fn one_segment_is_read_like_several() {
    let unsettled_alone = segmented(vec![vec![
        candidate("small", Verdict::Inconclusive),
        candidate("medium", Verdict::NonInferior),
    ]]);
    assert!(!settled_in_segments("small", &unsettled_alone), "one unsettled segment keeps it running");
    assert!(settled_in_segments("medium", &unsettled_alone));
    let two = segmented(vec![
        vec![candidate("small", Verdict::Worse)],
        vec![candidate("small", Verdict::Inconclusive)],
    ]);
    assert!(!settled_in_segments("small", &two));
    let settled = segmented(vec![
        vec![candidate("small", Verdict::Worse)],
        vec![candidate("small", Verdict::NonInferior)],
    ]);
    assert!(settled_in_segments("small", &settled));
    // A golden run, or no traffic split computed: nothing beyond the pooled verdicts.
    assert!(settled_in_segments("small", &segmented(Vec::new())));
}
