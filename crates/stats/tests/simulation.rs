//! Seeded simulations of what evaltap's users do: watch an experiment as pairs land and act on
//! the first verdict, plan a sample size and collect it, swap to a model slightly worse than the
//! margin allows. They go through `compare_paired` — the function the report and `evaltap stats
//! compare` call — and check the error rates the methods promise, not just formulas.

use evaltap_stats::{
    Basis, CompareOptions, Comparison, Verdict, clusters_needed, compare_paired, paired_t, samples_to_settle,
    sequential_samples_needed,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const ALPHA: f64 = 0.05;
const LOOK_EVERY: usize = 10;

/// The advice targets exactly 80% power; a simulation of `runs` experiments measures it with
/// Monte Carlo error, so "at least 80%" is checked to within 2.5 standard errors of that error.
fn at_least_80_percent(power: f64, runs: usize) -> bool {
    power >= 0.8 - 2.5 * (0.8 * 0.2 / runs as f64).sqrt()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// How a judge's score lands on [0, 1].
#[derive(Debug, Clone, Copy)]
enum Scale {
    /// Any value in [0, 1].
    Continuous,
    /// A 1–10 judge score, normalized.
    OneToTen,
    /// Quarters: pairwise (win, tie, loss) averaged over both orders.
    Quarters,
}

impl Scale {
    fn score(self, latent: f64) -> f64 {
        let x = latent.clamp(0.0, 1.0);
        match self {
            Scale::Continuous => x,
            Scale::OneToTen => (x * 9.0).round() / 9.0,
            Scale::Quarters => (x * 4.0).round() / 4.0,
        }
    }
}

/// Paired scores: each item has a difficulty both models share, each answer its own noise, and
/// the candidate's latent quality is shifted by `shift`.
fn scores(rng: &mut ChaCha8Rng, n: usize, scale: Scale, shift: f64) -> (Vec<f64>, Vec<f64>) {
    (0..n)
        .map(|_| {
            let item = 0.3 + 0.5 * rng.random::<f64>();
            (scale.score(item + 0.2 * normal(rng)), scale.score(item + shift + 0.2 * normal(rng)))
        })
        .unzip()
}

fn sequential(planned_n: usize) -> CompareOptions {
    CompareOptions {
        alpha: ALPHA,
        margin: 0.02,
        basis: Basis::Sequential,
        planned_n: Some(planned_n),
        bootstrap_resamples: 0,
        ..CompareOptions::default()
    }
}

fn fixed_n(margin: f64) -> CompareOptions {
    CompareOptions {
        alpha: ALPHA,
        margin,
        basis: Basis::FixedN,
        bootstrap_resamples: 0,
        ..CompareOptions::default()
    }
}

fn is_call(c: &Comparison) -> bool {
    matches!(c.verdict, Verdict::Better | Verdict::Worse)
}

/// A/A experiments (true Δ = 0) watched every 10 pairs up to the planned n, on every score
/// scale: the first `better`/`worse` at any look counts as a false call. The confidence
/// sequence must hold 0 at every look.
#[test]
fn watching_a_and_a_experiments_at_every_look_keeps_false_calls_at_alpha() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261129);
    for scale in [Scale::Continuous, Scale::OneToTen, Scale::Quarters] {
        for (planned_n, runs) in [(100, 600), (200, 600), (1000, 300)] {
            let options = sequential(planned_n);
            let (mut false_calls, mut covered, mut naive_false) = (0, 0, 0);
            for _ in 0..runs {
                let (b, c) = scores(&mut rng, planned_n, scale, 0.0);
                let mut called = false;
                let mut always_covered = true;
                for n in (LOOK_EVERY..=planned_n).step_by(LOOK_EVERY) {
                    let look = compare_paired(&b[..n], &c[..n], None, &options);
                    assert!(look.cs_low <= look.cs_high, "empty confidence sequence: {look:?}");
                    called |= is_call(&look);
                    always_covered &= look.cs_low <= 0.0 && 0.0 <= look.cs_high;
                }
                false_calls += usize::from(called);
                covered += usize::from(always_covered);
                let naive = (LOOK_EVERY..=planned_n)
                    .step_by(LOOK_EVERY)
                    .any(|n| paired_t(&b[..n], &c[..n], ALPHA).is_ok_and(|t| t.p_value < ALPHA));
                naive_false += usize::from(naive);
            }
            let rate = |k: usize| k as f64 / runs as f64;
            eprintln!(
                "A/A {scale:?} planned n {planned_n}: sequential false calls {:.3}, coverage {:.3}; \
                 naive repeated t-tests {:.3}",
                rate(false_calls),
                rate(covered),
                rate(naive_false)
            );
            assert!(rate(false_calls) <= ALPHA, "{scale:?} n {planned_n}: false calls {}", rate(false_calls));
            assert!(rate(covered) >= 1.0 - ALPHA, "{scale:?} n {planned_n}: coverage {}", rate(covered));
            // The simulation can tell a broken procedure: peeking with fixed-n tests inflates.
            assert!(rate(naive_false) > 2.0 * ALPHA, "{scale:?} n {planned_n}: naive {}", rate(naive_false));
        }
    }
}

/// Differences with cluster structure: `m` pairs per cluster share a cluster effect.
fn clustered(rng: &mut ChaCha8Rng, n: usize, m: usize, shift: f64) -> (Vec<f64>, Vec<f64>, Vec<String>) {
    let mut b = Vec::with_capacity(n);
    let mut c = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut effect = 0.0;
    for i in 0..n {
        if i % m == 0 {
            effect = 0.15 * normal(rng);
        }
        let base = 0.6 + 0.2 * normal(rng);
        b.push(base);
        c.push(base + shift + effect + 0.2 * normal(rng));
        keys.push(format!("conversation-{}", i / m));
    }
    (b, c, keys)
}

/// A large pilot measures the drop, its variance and (with conversations) the design effect;
/// the comparison's sample-size advice for that drop is collected and gives the verdict at least
/// 80% of the time — with and without clustered pairs.
#[test]
fn the_advised_sample_size_settles_the_comparison_with_80_percent_power() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let options = fixed_n(0.02);
    let runs = 1000;

    // Unclustered. (Clamping and rounding make the realised drop a little under the latent 0.04:
    // the pilot measures it.)
    let (b, c) = scores(&mut rng, 200_000, Scale::OneToTen, -0.04);
    let pilot = compare_paired(&b, &c, None, &options);
    let n = samples_to_settle(pilot.sd_delta, pilot.delta, pilot.design_effect, &options).expect("advice")
        as usize;
    let detected = (0..runs)
        .filter(|_| {
            let (b, c) = scores(&mut rng, n, Scale::OneToTen, -0.04);
            compare_paired(&b, &c, None, &options).verdict == Verdict::Worse
        })
        .count();
    let power = detected as f64 / runs as f64;
    eprintln!("unclustered: advised n {n}, power {power:.3}");
    assert!(at_least_80_percent(power, runs), "power {power} at the advised n = {n}");

    // Clustered: 10 pairs per conversation, which share an effect.
    let m = 10;
    let (b, c, keys) = clustered(&mut rng, 200_000, m, -0.04);
    let pilot = compare_paired(&b, &c, Some(&keys), &options);
    let deff = pilot.design_effect.expect("clustered pilot has a design effect");
    assert!(deff > 2.0, "design effect {deff}");
    let naive = samples_to_settle(pilot.sd_delta, pilot.delta, None, &options).expect("advice") as usize;
    let n = samples_to_settle(pilot.sd_delta, pilot.delta, Some(deff), &options).expect("advice") as usize;
    let power_at = |rng: &mut ChaCha8Rng, n: usize| {
        let detected = (0..runs)
            .filter(|_| {
                let (b, c, keys) = clustered(rng, n, m, -0.04);
                compare_paired(&b, &c, Some(&keys), &options).verdict == Verdict::Worse
            })
            .count();
        detected as f64 / runs as f64
    };
    let (power, naive_power) = (power_at(&mut rng, n), power_at(&mut rng, naive));
    eprintln!(
        "clustered: deff {deff:.2}, advised n {n} (power {power:.3}); unclustered advice {naive} ({naive_power:.3})"
    );
    assert!(at_least_80_percent(power, runs), "clustered power {power} at the advised n = {n}");
    assert!(naive_power < 0.7, "ignoring clusters should under-power: {naive_power} at {naive}");

    // Few clusters: the advice counts clusters, on the t with C − 1 degrees of freedom. With 40
    // pairs per conversation and a larger drop, 8–30 clusters settle it, where the normal
    // approximation (pairs × design effect) falls short.
    let m = 40;
    let (b, c, keys) = clustered(&mut rng, 200_000, m, -0.12);
    let pilot = compare_paired(&b, &c, Some(&keys), &options);
    let deff = pilot.design_effect.expect("design effect");
    let clusters =
        clusters_needed(pilot.sd_delta, pilot.delta, deff, m as f64, ALPHA, 0.8, false).expect("advice");
    let normal_pairs = samples_to_settle(pilot.sd_delta, pilot.delta, Some(deff), &options).expect("advice");
    let power_few = |rng: &mut ChaCha8Rng, n: usize| {
        let detected = (0..runs)
            .filter(|_| {
                let (b, c, keys) = clustered(rng, n, m, -0.12);
                compare_paired(&b, &c, Some(&keys), &options).verdict == Verdict::Worse
            })
            .count();
        detected as f64 / runs as f64
    };
    let power = power_few(&mut rng, clusters as usize * m);
    let by_normal = power_few(&mut rng, (normal_pairs as usize).div_ceil(m) * m);
    eprintln!(
        "few clusters: deff {deff:.2}, advised {clusters} clusters (power {power:.3}); pairs × deff {normal_pairs} ({by_normal:.3})"
    );
    assert!((4..=40).contains(&clusters), "{clusters} clusters");
    assert!(at_least_80_percent(power, runs), "power {power} at the advised {clusters} clusters");
}

/// The running report reads the always-valid confidence sequence, which pays for being valid at
/// every look: its own advice (collect that many pairs, planned n set to it) reaches the verdict
/// in at least 80% of runs, where the fixed-n advice falls well short.
#[test]
fn the_sequential_advice_settles_a_running_comparison_with_80_percent_power() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let runs = 1000;
    let (b, c) = scores(&mut rng, 200_000, Scale::OneToTen, -0.04);
    let pilot = compare_paired(&b, &c, None, &fixed_n(0.02));
    let fixed =
        samples_to_settle(pilot.sd_delta, pilot.delta, None, &fixed_n(0.02)).expect("advice") as usize;
    let running =
        sequential_samples_needed(pilot.sd_delta, pilot.delta, ALPHA, 0.8).expect("advice") as usize;
    let power_at = |rng: &mut ChaCha8Rng, n: usize| {
        let detected = (0..runs)
            .filter(|_| {
                let (b, c) = scores(rng, n, Scale::OneToTen, -0.04);
                compare_paired(&b, &c, None, &sequential(n)).verdict == Verdict::Worse
            })
            .count();
        detected as f64 / runs as f64
    };
    let (power, at_fixed) = (power_at(&mut rng, running), power_at(&mut rng, fixed));
    eprintln!("sequential advice {running} pairs (power {power:.3}); fixed-n advice {fixed} ({at_fixed:.3})");
    assert!(at_least_80_percent(power, runs), "running power {power} at {running} pairs");
    assert!(at_fixed < 0.7, "the fixed-n advice is not enough for the running report: {at_fixed}");
    let ratio = running as f64 / fixed as f64;
    assert!((1.2..=3.0).contains(&ratio), "sequential / fixed-n advice {ratio:.2}");
}

/// A candidate truly 0.01 worse, margin 0.02: more data must make `non-inferior` more likely
/// (it is within the margin), never less. One truly 0.03 worse must not pass as non-inferior.
#[test]
fn non_inferiority_holds_at_large_n_for_a_slightly_worse_candidate() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let options = fixed_n(0.02);
    let runs = 200;
    let rate = |rng: &mut ChaCha8Rng, n: usize, shift: f64, want: Verdict| {
        (0..runs)
            .filter(|_| {
                let (b, c) = scores(rng, n, Scale::Continuous, shift);
                compare_paired(&b, &c, None, &options).verdict == want
            })
            .count() as f64
            / runs as f64
    };
    let at_20k = rate(&mut rng, 20_000, -0.01, Verdict::NonInferior);
    let at_2k = rate(&mut rng, 2_000, -0.01, Verdict::NonInferior);
    eprintln!("Δ = −0.01: non-inferior {at_2k:.3} at n = 2,000, {at_20k:.3} at n = 20,000");
    assert!(at_20k >= 0.95 && at_20k >= at_2k, "non-inferior {at_2k} → {at_20k}");
    let worse = rate(&mut rng, 20_000, -0.03, Verdict::NonInferior);
    assert_eq!(worse, 0.0, "a candidate 0.03 worse passed as non-inferior");

    // Both sides of the boundary, and the flag beside the verdict.
    let (b, c) = scores(&mut rng, 20_000, Scale::Continuous, -0.01);
    let r = compare_paired(&b, &c, None, &options);
    assert_eq!(r.verdict, Verdict::NonInferior, "{r:?}");
    assert!(r.significantly_lower && r.ci_high < 0.0 && r.ni_lower_bound > -0.02, "{r:?}");
}

/// Sessions of 20 exchanges whose differences share a session effect (design effect ≈ 2 with
/// `effect_sd` 0.047, ≈ 4 with 0.08), equal quality: a stream of `sessions` sessions, either one session after another (as production
/// traffic arrives) or in random order.
fn session_stream(
    rng: &mut ChaCha8Rng,
    sessions: usize,
    effect_sd: f64,
    in_order: bool,
) -> (Vec<f64>, Vec<f64>, Vec<String>) {
    let m = 20;
    let mut pairs: Vec<(f64, f64, String)> = Vec::with_capacity(sessions * m);
    for s in 0..sessions {
        let effect = effect_sd * normal(rng);
        for _ in 0..m {
            let base = 0.6 + 0.2 * normal(rng);
            pairs.push((base, base + effect + 0.2 * normal(rng), format!("session-{s}")));
        }
    }
    if !in_order {
        // Fisher–Yates with the seeded generator.
        for i in (1..pairs.len()).rev() {
            pairs.swap(i, rng.random_range(0..=i));
        }
    }
    let mut b = Vec::new();
    let mut c = Vec::new();
    let mut keys = Vec::new();
    for (x, y, k) in pairs {
        b.push(x);
        c.push(y);
        keys.push(k);
    }
    (b, c, keys)
}

/// A/A streams of clustered pairs watched every 30 arrivals (the running p-value and sequence
/// accumulate over every arrival in between): the running report, given the clusters as the
/// report passes them, calls `better`/`worse` in at most α of them, whether sessions arrive one
/// after another or interleaved. Without the clusters it would call them far more often.
#[test]
fn watching_clustered_a_and_a_streams_keeps_false_calls_at_alpha() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261206);
    let runs = 400;
    for (in_order, effect_sd) in [(true, 0.047), (false, 0.047), (true, 0.08)] {
        let (mut false_calls, mut ignoring_clusters) = (0, 0);
        let mut deff = Vec::new();
        for _ in 0..runs {
            let (b, c, keys) = session_stream(&mut rng, 30, effect_sd, in_order);
            let n = b.len();
            let options = sequential(n);
            let (mut called, mut called_unclustered) = (false, false);
            for look in (30..=n).step_by(30) {
                let r = compare_paired(&b[..look], &c[..look], Some(&keys[..look]), &options);
                called |= is_call(&r);
                called_unclustered |= is_call(&compare_paired(&b[..look], &c[..look], None, &options));
                if look == n {
                    deff.extend(r.design_effect);
                }
            }
            false_calls += usize::from(called);
            ignoring_clusters += usize::from(called_unclustered);
        }
        let rate = |k: usize| k as f64 / runs as f64;
        let mean_deff = deff.iter().sum::<f64>() / deff.len().max(1) as f64;
        eprintln!(
            "clustered A/A, sessions in order: {in_order}: design effect {mean_deff:.2}, false calls {:.3} \
             ({:.3} ignoring the clusters)",
            rate(false_calls),
            rate(ignoring_clusters)
        );
        assert!(
            rate(false_calls) <= ALPHA,
            "sessions in order {in_order}: false calls {}",
            rate(false_calls)
        );
        if in_order {
            assert!(rate(ignoring_clusters) > 2.0 * ALPHA, "the simulation must be able to fail");
        }
    }
}

/// The advice is neither short nor padded, on both of its branches: collecting the advised
/// pairs reaches the verdict in 80% of runs (within simulation error) but not in 95% — advice
/// that asked for far too many pairs would — for a clear drop (`worse`, the two-sided test) and
/// for a candidate slightly worse but within the margin (`non-inferior`, the one-sided bound).
#[test]
fn the_advised_sample_size_is_enough_and_not_far_too_many_on_both_branches() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let options = fixed_n(0.02);
    let runs = 1000;
    for (shift, want) in [(-0.04, Verdict::Worse), (-0.005, Verdict::NonInferior)] {
        let (b, c) = scores(&mut rng, 200_000, Scale::OneToTen, shift);
        let pilot = compare_paired(&b, &c, None, &options);
        let n = samples_to_settle(pilot.sd_delta, pilot.delta, None, &options).expect("advice") as usize;
        let reached = (0..runs)
            .filter(|_| {
                let (b, c) = scores(&mut rng, n, Scale::OneToTen, shift);
                compare_paired(&b, &c, None, &options).verdict == want
            })
            .count() as f64
            / runs as f64;
        eprintln!("{want:?} at Δ {:.4}: advised n {n}, reached in {reached:.3}", pilot.delta);
        assert!(at_least_80_percent(reached, runs), "{want:?}: {reached} at the advised n = {n}");
        assert!(reached < 0.95, "{want:?}: {reached} at n = {n}: the advice asks for far too many pairs");
    }
}
