use super::*;

#[test]
fn degenerate_inputs_never_give_nan() {
    let opts = CompareOptions { bootstrap_resamples: 100, ..CompareOptions::default() };
    for (b, c) in [
        (vec![], vec![]),
        (vec![0.5], vec![0.7]),
        (vec![0.5; 40], vec![0.5; 40]),
        (vec![0.2, f64::NAN], vec![0.3, 0.4]),
    ] {
        let r = compare_paired(&b, &c, None, &opts);
        assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
        let numbers = [
            r.delta,
            r.ci_low,
            r.ci_high,
            r.p_value,
            r.p_value_sequential,
            r.cs_low,
            r.cs_high,
            r.p_holm,
            r.q_value,
        ];
        assert!(numbers.iter().all(|x| x.is_finite()), "{r:?}");
        assert!(r.note.is_some() || r.sd_delta == 0.0, "{r:?}");
    }
}

#[test]
fn inconclusive_advice_counts_clusters_and_the_running_report_s_pairs() {
    let opts = CompareOptions { bootstrap_resamples: 0, ..CompareOptions::default() };
    // 8 conversations of 10 pairs, a small noisy drop: not enough to decide.
    let base: Vec<f64> = (0..80).map(|i| 0.5 + 0.3 * ((i * 37 % 11) as f64 / 11.0 - 0.5)).collect();
    let cand: Vec<f64> = base
        .iter()
        .enumerate()
        .map(|(i, b)| b - 0.005 + 0.1 * (((i / 10) * 7 % 5) as f64 / 5.0 - 0.4))
        .collect();
    let keys: Vec<String> = (0..80).map(|i| format!("c{}", i / 10)).collect();
    let r = compare_paired(&base, &cand, Some(&keys), &opts);
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    let clusters = r.clusters_needed.expect("clusters advised");
    assert!(clusters >= 8, "{r:?}");
    assert_eq!(r.samples_needed, Some(clusters * 10), "that many clusters of the observed size: {r:?}");
    let running = r.samples_needed_sequential.expect("running advice");
    assert!(running > r.samples_needed.unwrap_or(0), "{r:?}");
}

#[test]
fn identical_pairs_are_non_inferior_once_the_exact_bound_clears_the_margin() {
    let opts = CompareOptions { bootstrap_resamples: 0, ..CompareOptions::default() };
    // The rule of three: at α = 0.05 the bound is 1 − 0.05^(1/n) ≈ 3/n.
    assert!((no_disagreement_lower_bound(150, 0.05) + 0.019_77).abs() < 1e-4);
    assert!((no_disagreement_lower_bound(2_000, 0.05) + 0.001_497).abs() < 1e-5);
    assert_eq!(no_disagreement_samples_needed(0.02, 0.05), Some(149));
    assert_eq!(no_disagreement_samples_needed(0.15, 0.05), Some(19));
    for scores in [vec![1.0; 2_000], (0..2_000).map(|i| f64::from(i % 2)).collect(), vec![0.75; 2_000]] {
        for basis in [Basis::FixedN, Basis::Sequential] {
            let r = compare_paired(&scores, &scores, None, &CompareOptions { basis, ..opts.clone() });
            assert_eq!(r.verdict, Verdict::NonInferior, "{r:?}");
            assert!(!r.significantly_lower && r.samples_needed.is_none(), "{r:?}");
            assert!(r.p_noninferiority < 1e-10, "{r:?}");
            // The intervals are the exact bound on both sides, never a zero-width [0, 0].
            let width = 2.0 * (1.0 - 0.05_f64.powf(1.0 / 2_000.0));
            assert!(
                (r.ci_high - r.ci_low - width).abs() < 1e-12 && r.ci_low < 0.0 && r.ci_high > 0.0,
                "{r:?}"
            );
            assert!((r.cs_high - r.cs_low - width).abs() < 1e-12, "{r:?}");
        }
    }
    // 24 identical items cannot show a 0.02 margin; they say how many would.
    let small = compare_paired(&[1.0; 24], &[1.0; 24], None, &opts);
    assert_eq!(small.verdict, Verdict::Inconclusive);
    assert_eq!(small.samples_needed, Some(149));
    assert!(small.note.as_deref().is_some_and(|n| n.contains("every pair agrees")), "{small:?}");
    // …but do show a 0.15 one.
    let wide = compare_paired(&[1.0; 24], &[1.0; 24], None, &CompareOptions { margin: 0.15, ..opts.clone() });
    assert_eq!(wide.verdict, Verdict::NonInferior);
    // Off the [0, 1] scale the range is unknown: no bound, no verdict.
    let sevens = compare_paired(&[7.0; 2_000], &[7.0; 2_000], None, &opts);
    assert_eq!(sevens.verdict, Verdict::Inconclusive);
    // One disagreement and the exact bound no longer applies.
    let mut one_off = vec![1.0; 2_000];
    one_off[7] = 0.0;
    let r = compare_paired(&[1.0; 2_000], &one_off, None, &opts);
    assert_eq!(r.verdict, Verdict::NonInferior, "{r:?}");
}

#[test]
fn significantly_lower_is_said_only_beside_non_inferior() {
    let opts = CompareOptions { bootstrap_resamples: 0, ..CompareOptions::default() };
    // A drop of about a third: worse, and not "within the margin".
    let base: Vec<f64> = (0..400).map(|i| if i % 10 < 9 { 1.0 } else { 0.0 }).collect();
    let cand: Vec<f64> = (0..400).map(|i| if i % 10 < 6 { 1.0 } else { 0.0 }).collect();
    let worse = compare_paired(&base, &cand, None, &opts);
    assert_eq!(worse.verdict, Verdict::Worse);
    assert!(!worse.significantly_lower, "{worse:?}");
    // A small real drop shown within a wide margin: non-inferior and significantly lower.
    let wide = CompareOptions { margin: 0.2, ..opts.clone() };
    let slight: Vec<f64> = (0..400).map(|i| if i % 10 < 9 && i % 20 != 1 { 1.0 } else { 0.0 }).collect();
    let within = compare_paired(&base, &slight, None, &wide);
    assert_eq!(within.verdict, Verdict::NonInferior, "{within:?}");
    assert!(within.significantly_lower, "{within:?}");
}

#[test]
fn holm_across_the_family_can_withhold_a_verdict() {
    let opts = CompareOptions { bootstrap_resamples: 0, ..CompareOptions::default() };
    // p ≈ 0.03 alone is `worse`; in a family of four with nothing else, Holm withholds it.
    // (Scores 0.2/1: not pass/fail, so the paired t decides, not McNemar.)
    let base: Vec<f64> = (0..200).map(|i| if i % 5 == 0 { 0.2 } else { 1.0 }).collect();
    let cand: Vec<f64> = (0..200).map(|i| if i % 5 == 0 || i % 29 == 1 { 0.2 } else { 1.0 }).collect();
    let alone = compare_paired(&base, &cand, None, &opts);
    assert!(alone.p_value < 0.05 && alone.p_value > 0.0125, "{}", alone.p_value);
    assert_eq!(alone.verdict, Verdict::Worse);
    let null = compare_paired(&base, &base, None, &opts);
    let mut family = vec![alone.clone(), null.clone(), null.clone(), null];
    decide_family(&mut family, &opts);
    assert_eq!(family[0].verdict, Verdict::Inconclusive);
    assert!(family[0].samples_needed.is_some_and(|n| n > 200));
}

fn keys(labels: &[usize]) -> Vec<String> {
    labels.iter().map(|k| format!("c{k}")).collect()
}

#[test]
fn too_few_or_cancelling_clusters_stay_inconclusive_with_a_note() {
    let opts = CompareOptions { bootstrap_resamples: 0, ..CompareOptions::default() };
    let base: Vec<f64> = (0..40).map(|i| (i % 7) as f64 / 7.0).collect();
    let cand: Vec<f64> = base.iter().enumerate().map(|(i, b)| b + 0.3 + 0.05 * (i % 3) as f64).collect();
    // One cluster: never a silent fallback to the unclustered SE.
    let one = compare_paired(&base, &cand, Some(&keys(&[0; 40])), &opts);
    assert_eq!(one.verdict, Verdict::Inconclusive, "{one:?}");
    assert!(one.note.as_deref().is_some_and(|n| n.contains("too few clusters")), "{one:?}");
    assert_eq!(one.clusters, Some(1), "the count is given beside the note");
    // Two clusters with equal means: the clustered SE is exactly 0.
    let two_keys: Vec<usize> = (0..40).map(|i| i % 2).collect();
    let d: Vec<f64> = (0..40).map(|i| if (i / 2) % 2 == 0 { 0.25 } else { -0.25 }).collect();
    let zeros = vec![0.0; 40];
    let two = compare_paired(&zeros, &d, Some(&keys(&two_keys)), &opts);
    assert_eq!(two.verdict, Verdict::Inconclusive, "{two:?}");
    assert!(two.note.is_some() && two.p_holm == 1.0, "{two:?}");
    // Five clusters are enough.
    let five: Vec<usize> = (0..40).map(|i| i % 5).collect();
    let ok = compare_paired(&base, &cand, Some(&keys(&five)), &opts);
    assert_eq!((ok.clusters, ok.verdict), (Some(5), Verdict::Better), "{ok:?}");
    assert!(ok.design_effect.is_some());
}

#[test]
fn tiny_extreme_or_invalid_inputs_are_inconclusive_never_a_panic() {
    let opts = CompareOptions { bootstrap_resamples: 50, ..CompareOptions::default() };
    // Two pairs with the same non-zero difference: a zero-width interval proves nothing.
    let r = compare_paired(&[0.5, 0.6], &[0.49, 0.59], None, &opts);
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    let r = compare_paired(&[1e308, -1e308, 1e308], &[-1e308, 1e308, -1e308], None, &opts);
    assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    assert!(r.note.as_deref().is_some_and(|n| n.contains("too large")), "{r:?}");
    for margin in [f64::NAN, -0.1, f64::INFINITY] {
        let r = compare_paired(&[0.5; 20], &[0.6; 20], None, &CompareOptions { margin, ..opts.clone() });
        assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
        assert!(r.note.as_deref().is_some_and(|n| n.contains("margin")), "{r:?}");
    }
}

#[test]
fn pass_fail_scores_are_decided_by_exact_mcnemar() {
    let opts = CompareOptions { bootstrap_resamples: 0, ..CompareOptions::default() };
    // 12 discordant pairs, 10 to the candidate: exact p = 2·P(X ≤ 2 | 12, ½) = 0.0386.
    let mut base = vec![1.0; 50];
    let mut cand = vec![1.0; 50];
    base[..10].fill(0.0);
    cand[20] = 0.0;
    cand[21] = 0.0;
    let r = compare_paired(&base, &cand, None, &opts);
    let m = r.mcnemar.expect("binary scores");
    assert_eq!((m.baseline_only, m.candidate_only), (2, 10));
    assert!((m.p_exact - 0.038574).abs() < 1e-5, "{}", m.p_exact);
    assert_eq!(r.basis_p_value(), m.p_exact);
    assert!(r.p_value != m.p_exact, "the paired t stays beside it");
    assert_eq!(r.verdict, Verdict::Better);
}
