//! Seeded simulations of what evaltap's users do: watch an experiment as pairs land and act on
//! the first verdict. They check the error rates the methods promise, not just formulas.

use evaltap_stats::{normal_mixture, paired_t, sample_size_paired, variance};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const RUNS: usize = 1000;
const MAX_N: usize = 1000;
const LOOK_EVERY: usize = 25;
const ALPHA: f64 = 0.05;

/// Paired pass/fail scores with pass rates `pb` (baseline) and `pc` (candidate).
fn pairs(rng: &mut ChaCha8Rng, n: usize, pb: f64, pc: f64) -> (Vec<f64>, Vec<f64>) {
    (0..n)
        .map(|_| {
            (f64::from(u8::from(rng.random::<f64>() < pb)), f64::from(u8::from(rng.random::<f64>() < pc)))
        })
        .unzip()
}

#[test]
fn monitoring_a_and_a_experiments_keeps_false_verdicts_at_alpha_only_with_the_sequential_method() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261128);
    let (mut sequential_false, mut naive_false, mut t_covers, mut cs_covers) = (0, 0, 0, 0);
    for _ in 0..RUNS {
        let (b, c) = pairs(&mut rng, MAX_N, 0.7, 0.7);
        let d: Vec<f64> = c.iter().zip(&b).map(|(c, b)| c - b).collect();
        let monitored = normal_mixture(&d, 0.0, ALPHA, MAX_N as f64);
        // A look every 25 pairs; the sequential method decides from 30 pairs on.
        let looks = (LOOK_EVERY..=MAX_N).step_by(LOOK_EVERY);
        if looks.clone().any(|n| n >= 30 && monitored[n - 2].p_value < ALPHA) {
            sequential_false += 1;
        }
        if looks.into_iter().any(|n| paired_t(&b[..n], &c[..n], ALPHA).is_ok_and(|t| t.p_value < ALPHA)) {
            naive_false += 1;
        }
        let end = paired_t(&b, &c, ALPHA).expect("n = 1000");
        if end.ci_low <= 0.0 && 0.0 <= end.ci_high {
            t_covers += 1;
        }
        let last = monitored.last().expect("points");
        if last.cs_intersection.0 <= 0.0 && 0.0 <= last.cs_intersection.1 {
            cs_covers += 1;
        }
    }
    let rate = |k: usize| k as f64 / RUNS as f64;
    eprintln!(
        "A/A: sequential false {}, naive false {}, t coverage {}, CS coverage {}",
        rate(sequential_false),
        rate(naive_false),
        rate(t_covers),
        rate(cs_covers)
    );
    assert!(rate(sequential_false) <= 0.05, "sequential false verdicts: {}", rate(sequential_false));
    assert!(rate(naive_false) > 0.05, "naive repeated t-tests should inflate errors: {}", rate(naive_false));
    assert!(rate(t_covers) >= 0.94, "t-interval coverage {}", rate(t_covers));
    assert!(rate(cs_covers) >= 0.94, "confidence-sequence coverage over all looks {}", rate(cs_covers));
}

#[test]
fn the_sample_size_the_power_function_asks_for_detects_the_drop() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // A pilot estimates the variance of the differences, as a user would.
    let (pb, pc) = (0.80, 0.75);
    let (b, c) = pairs(&mut rng, 2000, pb, pc);
    let pilot: Vec<f64> = c.iter().zip(&b).map(|(c, b)| c - b).collect();
    let sigma = variance(&pilot).sqrt();
    let n = sample_size_paired(sigma, -0.05, ALPHA, 0.8).expect("defined").n as usize;
    assert!((900..1300).contains(&n), "n = {n}");
    let detected = (0..RUNS)
        .filter(|_| {
            let (b, c) = pairs(&mut rng, n, pb, pc);
            paired_t(&b, &c, ALPHA).is_ok_and(|t| t.p_value < ALPHA && t.mean_delta < 0.0)
        })
        .count();
    eprintln!("power: detected {detected} of {RUNS} at n = {n}");
    assert!(detected as f64 / RUNS as f64 >= 0.78, "detected {detected} of {RUNS} at n = {n}");
}
