//! A guard looks after every run. Seeded simulation through `assess_guard`: with the new model
//! as good as the former production model, the chance that a guard ever alerts over 20 runs
//! stays at most 5%; a fixed-n test read after every run would alert far more often.

use std::collections::BTreeMap;

use evaltap_drift::assess_guard;
use evaltap_stats::{Basis, CompareOptions, compare_paired};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const GUARDS: u64 = 400;
const RUNS: usize = 20;
const PER_RUN: usize = 100;

#[test]
fn an_unchanged_model_rarely_alerts_however_often_the_guard_looks() {
    let (mut alerted, mut naive) = (0u64, 0u64);
    for seed in 0..GUARDS {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        let (mut guard_fired, mut naive_fired) = (false, false);
        for _ in 0..RUNS {
            for _ in 0..PER_RUN {
                // Both right 90% of the time; they share which prompts are hard 60% of the time.
                let shared: f64 = rng.random();
                let own: f64 = if rng.random::<f64>() < 0.6 { shared } else { rng.random() };
                pairs.push((f64::from(u8::from(shared < 0.9)), f64::from(u8::from(own < 0.9))));
            }
            let window: BTreeMap<String, Vec<(f64, f64)>> =
                [("correctness".to_string(), pairs.clone())].into();
            // Margin 0: every significant drop alerts, so this measures the test itself.
            guard_fired |= assess_guard(0.0, PER_RUN, &window)[0].dropped;
            let former: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let new: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            let options =
                CompareOptions { basis: Basis::FixedN, bootstrap_resamples: 0, ..CompareOptions::default() };
            let fixed = compare_paired(&former, &new, None, &options);
            naive_fired |= fixed.p_value < 0.05 && fixed.delta < 0.0;
        }
        alerted += u64::from(guard_fired);
        naive += u64::from(naive_fired);
    }
    let rate = alerted as f64 / GUARDS as f64;
    let naive_rate = naive as f64 / GUARDS as f64;
    let se = (0.05 * 0.95 / GUARDS as f64).sqrt();
    println!(
        "guards: {:.1}% of {GUARDS} guards of an unchanged model alerted over {RUNS} runs (a fixed-n test read after every run: {:.1}%)",
        100.0 * rate,
        100.0 * naive_rate
    );
    assert!(rate <= 0.05 + 2.0 * se, "{rate}");
    assert!(naive_rate > 0.08, "the simulation can fail: {naive_rate}");
}
