//! The recommendation set's guarantee, simulated through the product's own functions
//! (`compare_paired`, `decide_segments`, `recommend`): across all segments, the chance that
//! any recommended switch is in truth worse than the margin stays at most 5% — for candidates
//! that ran to the end (fixed n, Holm) and for candidates that stopped early (each confidence
//! sequence at α over the family).

use evaltap_recommend::{Action, Limits, Volume, recommend};
use evaltap_report::early_stop::settled_in_segments;
use evaltap_report::segments::{
    Segment, SegmentCandidate, SegmentedReport, decide_segments, family_sequence_alpha,
};
use evaltap_report::{BaselineSummary, CandidateReport, RubricResult};
use evaltap_stats::{Basis, CompareOptions, compare_paired};
use rand::{RngExt as _, SeedableRng as _};

const MARGIN: f64 = 0.05;
const PAIRS: usize = 400;
const BASELINE_ACCURACY: f64 = 0.85;
/// Just beyond the margin: the hardest truly-worse candidate to tell from a good one.
const BAD_DELTA: f64 = -0.051;

/// Paired pass/fail scores: the candidate shares the baseline's draw 70% of the time, as models
/// share which prompts are hard.
fn scores(rng: &mut rand::rngs::ChaCha8Rng, delta: f64) -> (Vec<f64>, Vec<f64>) {
    let (mut baseline, mut candidate) = (Vec::with_capacity(PAIRS), Vec::with_capacity(PAIRS));
    for _ in 0..PAIRS {
        let shared: f64 = rng.random();
        let own: f64 = if rng.random::<f64>() < 0.7 { shared } else { rng.random() };
        baseline.push(f64::from(u8::from(shared < BASELINE_ACCURACY)));
        candidate.push(f64::from(u8::from(own < BASELINE_ACCURACY + delta)));
    }
    (baseline, candidate)
}

fn rubric(name: &str, baseline: &[f64], candidate: &[f64], options: &CompareOptions) -> RubricResult {
    RubricResult::of_stats(name, compare_paired(baseline, candidate, None, options))
}

fn candidate(name: &str, cost: f64, rubrics: Vec<RubricResult>) -> SegmentCandidate {
    SegmentCandidate {
        results: CandidateReport {
            name: name.into(),
            model: format!("{name}-model"),
            n: PAIRS,
            errors: 0,
            skipped: 0,
            unsupported: Default::default(),
            truncated: 0,
            settled: 0,
            stopped_early: None,
            cached: Default::default(),
            spent_usd: 0.0,
            cost_per_request_usd: Some(cost),
            cost_delta_pct: Some((cost - 0.01) / 0.01 * 100.0),
            latency_p50_ms: 100.0,
            latency_p95_ms: 150.0,
            error_rate: 0.0,
            rubrics,
        },
        latency_p95_delta_pct: Some(0.0),
    }
}

fn segment(route: &str, traffic_share: f64, candidates: Vec<SegmentCandidate>) -> Segment {
    Segment {
        key: [("route".to_string(), route.to_string())].into(),
        label: format!("route={route}"),
        items: PAIRS,
        traffic_share,
        enough_data: true,
        baseline: BaselineSummary {
            model: "prod".into(),
            models: Vec::new(),
            is_reference: false,
            cost_sources: Default::default(),
            n: PAIRS,
            cost_per_request_usd: 0.01,
            judgments: Default::default(),
        },
        baseline_latency_p95_ms: Some(150.0),
        candidates,
    }
}

fn segmented(status: &str, basis: Basis, family_size: usize, segments: Vec<Segment>) -> SegmentedReport {
    SegmentedReport {
        experiment: "sim".into(),
        status: status.into(),
        basis,
        margin: MARGIN,
        segment_by: vec!["route".into()],
        min_segment_n: 30,
        family_size,
        segments,
    }
}

/// Three routes: on `a` both candidates are truly worse than the margin on correctness, on `b`
/// the cheaper one is, on `c` neither.
const THREE_ROUTES: &[[bool; 2]] = &[[true, true], [true, false], [false, false]];

/// How the candidates' comparisons are made: to the end on the fixed-n statistics, or stopped
/// early — on the always-valid statistics, whose confidence sequence is a running
/// intersection, so its bound at the last pair says whether it settled at any look before.
#[derive(Clone, Copy, PartialEq)]
enum Run {
    ToTheEnd,
    StoppedEarly,
}

/// One simulated experiment over `routes` (per route, whether `small` and `medium` are truly
/// worse than the margin). Returns (false switches, true switches, per-test false
/// non-inferior verdicts without the family adjustment).
fn experiment(seed: u64, routes: &[[bool; 2]], run: Run) -> (usize, usize, usize) {
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
    let finished = CompareOptions {
        margin: MARGIN,
        basis: Basis::FixedN,
        bootstrap_resamples: 0,
        ..CompareOptions::default()
    };
    let tests = routes.len() * 2 * 2;
    // As the report computes a segment of an experiment whose candidate stopped early.
    let stopped = CompareOptions { basis: Basis::Sequential, planned_n: Some(PAIRS), ..finished.clone() };
    let (options, unadjusted) = match run {
        Run::ToTheEnd => (finished.clone(), finished.clone()),
        Run::StoppedEarly => {
            (CompareOptions { sequence_alpha: family_sequence_alpha(tests), ..stopped.clone() }, stopped)
        }
    };
    let lower = |stats: &evaltap_stats::Comparison| match run {
        Run::ToTheEnd => stats.ni_lower_bound,
        Run::StoppedEarly => stats.cs_low,
    };
    let mut unadjusted_false = 0;
    let mut segments: Vec<Segment> = routes
        .iter()
        .enumerate()
        .map(|(index, bad)| {
            let route = format!("r{index}");
            let candidates = [("small", 0.001), ("medium", 0.004)]
                .iter()
                .zip(bad)
                .map(|((name, cost), bad)| {
                    let (b, c) = scores(&mut rng, if *bad { BAD_DELTA } else { 0.0 });
                    let correctness = rubric("correctness", &b, &c, &options);
                    let correctness_alone = compare_paired(&b, &c, None, &unadjusted);
                    let (b, c) = scores(&mut rng, 0.0);
                    let helpfulness = rubric("helpfulness", &b, &c, &options);
                    let helpfulness_alone = compare_paired(&b, &c, None, &unadjusted);
                    if *bad && lower(&correctness_alone) > -MARGIN && lower(&helpfulness_alone) > -MARGIN {
                        unadjusted_false += 1;
                    }
                    candidate(name, *cost, vec![correctness, helpfulness])
                })
                .collect();
            segment(&route, 1.0 / routes.len() as f64, candidates)
        })
        .collect();
    // The experiment is done either way: stopped candidates keep their always-valid basis.
    let family_size = decide_segments(&mut segments, &finished, 30);
    assert_eq!(family_size, tests);
    let segmented = segmented("done", Basis::FixedN, family_size, segments);
    let limits = Limits { max_error_rate: 0.02, max_latency_p95_increase_pct: 50.0 };
    let volume = Volume { monthly_requests: 30_000.0, scaling: "simulated".into() };
    let recommendations = recommend(&segmented, &limits, &volume);
    let (mut false_switches, mut true_switches) = (0, 0);
    for (segment, bad) in recommendations.segments.iter().zip(routes) {
        assert_eq!(segment.key["route"], segment.segment.trim_start_matches("route="));
        if segment.action == Action::Switch {
            let index = usize::from(segment.candidate.as_deref() == Some("medium"));
            if bad[index] {
                false_switches += 1
            } else {
                true_switches += 1
            }
            assert!(segment.monthly_saving_usd.is_some_and(|s| s > 0.0), "{segment:?}");
            // The reason names the bound the switch rests on, at its level in the family.
            let bound = match run {
                Run::ToTheEnd => "lowest 95% bound on".to_string(),
                Run::StoppedEarly => format!(
                    "bound of its {}% confidence sequence on",
                    if tests == 12 { "99.583" } else { "99.792" }
                ),
            };
            assert!(segment.reason.contains(&bound), "{bound}: {}", segment.reason);
        }
    }
    (false_switches, true_switches, unadjusted_false)
}

/// Over 1,000 seeded experiments: the share with any false switch, the share where the tests
/// without the family adjustment would have made one, and good switches per experiment.
fn simulate(routes: &[[bool; 2]], run: Run) -> (f64, f64, f64) {
    const EXPERIMENTS: u64 = 1000;
    let (mut any_false, mut switches, mut unadjusted_any) = (0u64, 0usize, 0u64);
    for seed in 0..EXPERIMENTS {
        let (false_switches, true_switches, unadjusted) = experiment(seed, routes, run);
        any_false += u64::from(false_switches > 0);
        unadjusted_any += u64::from(unadjusted > 0);
        switches += true_switches;
    }
    let n = EXPERIMENTS as f64;
    (any_false as f64 / n, unadjusted_any as f64 / n, switches as f64 / n)
}

/// 5% up to two standard errors of simulation error over 1,000 experiments.
fn within_five_percent(rate: f64) -> bool {
    rate <= 0.05 + 2.0 * (0.05 * 0.95 / 1000.0f64).sqrt()
}

#[test]
fn any_false_switch_across_all_routes_stays_within_five_percent() {
    let (rate, unadjusted_rate, switches) = simulate(THREE_ROUTES, Run::ToTheEnd);
    println!(
        "recommendation guarantee: {:.1}% of 1000 simulated experiments recommend a switch truly worse than \
         the margin (unadjusted per-test non-inferiority: {:.1}%); {switches:.2} good switches made per \
         experiment of 2 possible",
        100.0 * rate,
        100.0 * unadjusted_rate,
    );
    assert!(within_five_percent(rate), "false switches in {:.1}% of experiments", 100.0 * rate);
    // The simulation can fail: without the family adjustment the same data make false switches
    // far more often.
    assert!(unadjusted_rate > 0.08, "unadjusted {unadjusted_rate}");
    // And the rule is not merely timid: good candidates do get recommended.
    assert!(switches > 0.5, "{switches}");
}

/// Candidates that stopped early are recommended on their always-valid statistics: with each
/// confidence sequence at α over the family the guarantee holds; at α each, on six routes where
/// five have truly worse candidates, it would not.
#[test]
fn candidates_that_stopped_early_keep_the_guarantee() {
    let three = simulate(THREE_ROUTES, Run::StoppedEarly);
    let six: &[[bool; 2]] =
        &[[true, true], [true, true], [true, true], [true, true], [true, false], [false, false]];
    let (rate, unadjusted_rate, switches) = simulate(six, Run::StoppedEarly);
    println!(
        "recommendation guarantee, candidates stopped early: three routes {:.1}% (unadjusted {:.1}%, {:.2} good \
         switches of 2); six routes {:.1}% (unadjusted {:.1}%, {switches:.2} good switches of 2)",
        100.0 * three.0,
        100.0 * three.1,
        three.2,
        100.0 * rate,
        100.0 * unadjusted_rate,
    );
    assert!(within_five_percent(three.0) && within_five_percent(rate), "{three:?} {rate}");
    assert!(!within_five_percent(unadjusted_rate), "unadjusted {unadjusted_rate}");
    assert!(three.2 > 0.5 && switches > 0.5, "{three:?} {switches}");
}

/// The stop rule reads every segment, the only one included: a candidate settled on its own
/// verdicts but not in the recommendations' family keeps running, or a recommendation would be
/// left needing pairs it can no longer get.
#[test]
fn the_stop_rule_reads_every_segment_even_the_only_one() {
    let options =
        CompareOptions { basis: Basis::Sequential, bootstrap_resamples: 0, ..CompareOptions::default() };
    let (b, c) = scores(&mut rand::rngs::ChaCha8Rng::seed_from_u64(7), 0.0);
    let with = |name: &str, cost: f64, verdict: evaltap_stats::Verdict| {
        let mut result = rubric("correctness", &b, &c, &options);
        result.stats.verdict = verdict;
        candidate(name, cost, vec![result])
    };
    use evaltap_stats::Verdict::{Inconclusive, NonInferior, Worse};
    let running = |segments| segmented("running", Basis::Sequential, 2, segments);
    let one = running(vec![segment(
        "r0",
        1.0,
        vec![with("small", 0.001, Inconclusive), with("medium", 0.004, NonInferior)],
    )]);
    assert!(!settled_in_segments("small", &one), "one unsettled segment keeps it running");
    assert!(settled_in_segments("medium", &one));
    let two = running(vec![
        segment("r0", 0.5, vec![with("small", 0.001, Worse)]),
        segment("r1", 0.5, vec![with("small", 0.001, Inconclusive)]),
    ]);
    assert!(!settled_in_segments("small", &two));
    let settled = running(vec![
        segment("r0", 0.5, vec![with("small", 0.001, Worse)]),
        segment("r1", 0.5, vec![with("small", 0.001, NonInferior)]),
    ]);
    assert!(settled_in_segments("small", &settled));
    // No split computed (a golden run): nothing beyond the pooled verdicts.
    assert!(settled_in_segments("small", &running(Vec::new())));
}

/// A candidate stopped on its whole-sample verdicts (`--early-stop-on verdicts`) gets no more
/// pairs: a segment it left short, or unsettled, names the stop instead of asking for pairs.
#[test]
fn a_segment_a_candidate_left_by_stopping_early_names_the_stop() {
    use evaltap_stats::Verdict::{Inconclusive, Worse};
    let options =
        CompareOptions { basis: Basis::Sequential, bootstrap_resamples: 0, ..CompareOptions::default() };
    let (b, c) = scores(&mut rand::rngs::ChaCha8Rng::seed_from_u64(11), 0.0);
    let stopped = |pairs: usize, verdict: evaltap_stats::Verdict, stopped: bool| {
        let mut result = rubric("correctness", &b[..pairs], &c[..pairs], &options);
        result.stats.verdict = verdict;
        result.more_samples_needed = Some(120);
        let mut candidate = candidate("small", 0.001, vec![result]);
        candidate.results.stopped_early = stopped.then(|| evaltap_report::StoppedEarly {
            at: Default::default(),
            pairs: 60,
            saved_usd: None,
        });
        candidate
    };
    let limits = Limits { max_error_rate: 0.02, max_latency_p95_increase_pct: 50.0 };
    let volume = Volume { monthly_requests: 30_000.0, scaling: "simulated".into() };
    let reason = |candidate: SegmentCandidate, enough_data: bool| {
        let mut segment = segment("support", 1.0, vec![candidate]);
        segment.enough_data = enough_data;
        let recommendations =
            recommend(&segmented("done", Basis::FixedN, 1, vec![segment]), &limits, &volume);
        assert_eq!(recommendations.segments[0].action, Action::Keep);
        recommendations.segments[0].reason.clone()
    };
    // Short of the pairs a segment needs.
    let short = reason(stopped(20, Inconclusive, true), false);
    assert!(short.contains("small stopped early on its whole-sample verdicts with 20 pairs here"), "{short}");
    assert!(!short.contains("more pairs needed"), "{short}");
    // Enough pairs to count, too few to settle.
    let unsettled = reason(stopped(40, Inconclusive, true), true);
    assert!(
        unsettled
            .contains("small — stopped early on its whole-sample verdicts (60 pairs) with 40 pairs here"),
        "{unsettled}"
    );
    assert!(!unsettled.contains("more pairs needed"), "{unsettled}");
    // Worse where it stopped: that is the reason.
    let worse = reason(stopped(40, Worse, true), true);
    assert!(worse.contains("small — worse on correctness"), "{worse}");
    // A candidate still running is told what it needs.
    assert!(reason(stopped(40, Inconclusive, false), true).contains("120 more pairs needed"));
    assert!(reason(stopped(20, Inconclusive, false), false).contains("more pairs needed"));
}
