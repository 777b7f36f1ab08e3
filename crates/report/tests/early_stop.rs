//! Early stopping, simulated through the product's own functions (`compare_paired`,
//! `decide_family`, `early_stop::settles`) as the worker applies them: after every wave of 50
//! pairs the running (always-valid) verdicts are read, and a candidate whose verdict is settled
//! stops; one never settled runs to the planned n and gets the fixed-n verdict.

use evaltap_report::early_stop::settles;
use evaltap_stats::{Basis, CompareOptions, Verdict, compare_paired, decide_family};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const PLANNED: usize = 1000;
const WAVE: usize = 50;
const EXPERIMENTS: u64 = 1000;
const MARGIN: f64 = 0.02;

/// Paired pass/fail scores: baseline right 85% of the time, the candidate `delta` more, the two
/// sharing which prompts are hard 70% of the time.
fn scores(seed: u64, delta: f64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..PLANNED)
        .map(|_| {
            let shared: f64 = rng.random();
            let own: f64 = if rng.random::<f64>() < 0.7 { shared } else { rng.random() };
            (f64::from(u8::from(shared < 0.85)), f64::from(u8::from(own < 0.85 + delta)))
        })
        .unzip()
}

/// The verdict an experiment ends with and the pairs it paid for.
fn run(seed: u64, delta: f64, early_stop: bool) -> (Verdict, usize) {
    let (baseline, candidate) = scores(seed, delta);
    let options = |basis| CompareOptions {
        margin: MARGIN,
        basis,
        planned_n: Some(PLANNED),
        bootstrap_resamples: 0,
        ..CompareOptions::default()
    };
    if early_stop {
        for n in (WAVE..PLANNED).step_by(WAVE) {
            let running = options(Basis::Sequential);
            let mut family = [compare_paired(&baseline[..n], &candidate[..n], None, &running)];
            decide_family(&mut family, &running);
            if settles(&[family[0].verdict]) {
                return (family[0].verdict, n);
            }
        }
    }
    let fixed = options(Basis::FixedN);
    let mut family = [compare_paired(&baseline, &candidate, None, &fixed)];
    decide_family(&mut family, &fixed);
    (family[0].verdict, PLANNED)
}

struct Outcome {
    rate: f64,
    mean_pairs: f64,
}

fn simulate(delta: f64, early_stop: bool, counts: impl Fn(Verdict) -> bool) -> Outcome {
    let (mut hits, mut pairs) = (0u64, 0usize);
    for seed in 0..EXPERIMENTS {
        let (verdict, n) = run(seed.wrapping_mul(7919).wrapping_add((delta * 1e4) as u64), delta, early_stop);
        hits += u64::from(counts(verdict));
        pairs += n;
    }
    Outcome { rate: hits as f64 / EXPERIMENTS as f64, mean_pairs: pairs as f64 / EXPERIMENTS as f64 }
}

#[test]
fn stopping_early_keeps_the_error_rates_and_spends_fewer_pairs() {
    let se = (0.05 * 0.95 / EXPERIMENTS as f64).sqrt();
    let called = |v: Verdict| matches!(v, Verdict::Better | Verdict::Worse);
    let aa = simulate(0.0, true, called);
    assert!(aa.rate <= 0.05 + 2.0 * se, "A/A false better/worse {}", aa.rate);
    let ni = |v: Verdict| v == Verdict::NonInferior;
    let slightly_worse = simulate(-0.03, true, ni);
    assert!(slightly_worse.rate <= 0.05 + 2.0 * se, "0.03 worse called non-inferior {}", slightly_worse.rate);

    println!(
        "early stopping, {EXPERIMENTS} seeded experiments each, planned n {PLANNED}, a look every {WAVE} pairs, margin {MARGIN}:"
    );
    println!(
        "  A/A: false better/worse {:.1}%; a candidate 0.03 worse called non-inferior {:.1}%",
        100.0 * aa.rate,
        100.0 * slightly_worse.rate
    );
    let mut fractions = Vec::new();
    for (label, delta, right) in [
        ("clearly worse (Δ −0.20)", -0.20, Verdict::Worse),
        ("clearly non-inferior (Δ +0.03)", 0.03, Verdict::NonInferior),
        ("equal (Δ 0)", 0.0, Verdict::NonInferior),
    ] {
        let early =
            simulate(delta, true, |v| v == right || (right == Verdict::NonInferior && v == Verdict::Better));
        let fixed =
            simulate(delta, false, |v| v == right || (right == Verdict::NonInferior && v == Verdict::Better));
        println!(
            "  {label}: {:.0} pairs on average with early stopping, {:.0} at fixed n ({:.0}%); verdict reached {:.0}% / {:.0}%",
            early.mean_pairs,
            fixed.mean_pairs,
            100.0 * early.mean_pairs / fixed.mean_pairs,
            100.0 * early.rate,
            100.0 * fixed.rate
        );
        fractions.push(early.mean_pairs / fixed.mean_pairs);
    }
    // A clearly worse candidate stops long before the planned n.
    assert!(fractions[0] < 0.3, "{fractions:?}");
}
