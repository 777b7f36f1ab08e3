//! Bootstrap intervals for a mean (of paired differences), seeded so results are reproducible.

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde::Serialize;

use crate::descriptive::{mean, normal_cdf, percentile, z_quantile};

/// Distinct values at most this many are resampled as multinomial counts (see
/// [`bootstrap_means`]).
const MULTINOMIAL_MAX_DISTINCT: usize = 4096;

/// Means of `resamples` bootstrap resamples of `data`. With `clusters` (one label per value),
/// whole clusters are resampled, as clustered data require.
///
/// A resample of n values drawn with replacement is, for its mean, only the count of each
/// distinct value — a multinomial draw over the distinct values with their observed
/// frequencies. When the data hold few distinct values (judge scores and their differences
/// do) and many more values than that, each resample is drawn that way: the same distribution
/// as drawing n indices, exactly, at a cost independent of n.
pub fn bootstrap_means(data: &[f64], clusters: Option<&[usize]>, resamples: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if data.is_empty() {
        return Vec::new();
    }
    match clusters {
        None => match distinct_counts(data) {
            Some(distinct) => multinomial_means(&distinct, data.len() as u64, resamples, &mut rng),
            None => (0..bounded_resamples(resamples, data.len()))
                .map(|_| {
                    (0..data.len()).map(|_| data[rng.random_range(0..data.len())]).sum::<f64>()
                        / data.len() as f64
                })
                .collect(),
        },
        Some(labels) => {
            let mut groups: std::collections::BTreeMap<usize, (f64, usize)> = Default::default();
            for (x, label) in data.iter().zip(labels) {
                let entry = groups.entry(*label).or_default();
                entry.0 += x;
                entry.1 += 1;
            }
            let groups: Vec<(f64, usize)> = groups.into_values().collect();
            // Clusters of the same (sum, size) are interchangeable for the mean: resample their
            // kinds as multinomial counts when there are few kinds, as for plain values.
            if let Some(kinds) = distinct_groups(&groups) {
                let weights: Vec<u64> = kinds.iter().map(|(_, n)| *n).collect();
                return (0..bounded_multinomial_resamples(resamples, kinds.len()))
                    .map(|_| {
                        let (mut sum, mut count) = (0.0, 0.0);
                        for (((gs, gc), _), drawn) in
                            kinds.iter().zip(multinomial(&weights, groups.len() as u64, &mut rng))
                        {
                            sum += gs * drawn as f64;
                            count += (*gc as f64) * drawn as f64;
                        }
                        sum / count
                    })
                    .collect();
            }
            (0..bounded_resamples(resamples, groups.len()))
                .map(|_| {
                    let (sum, count) = (0..groups.len()).fold((0.0, 0usize), |(s, c), _| {
                        let (gs, gc) = groups[rng.random_range(0..groups.len())];
                        (s + gs, c + gc)
                    });
                    sum / count as f64
                })
                .collect()
        }
    }
}

/// Draws one bootstrap computation may make in all; past it, fewer resamples are drawn (never
/// fewer than [`MIN_RESAMPLES`]) and the Monte Carlo error says what that costs.
const DRAW_BUDGET: usize = 50_000_000;

/// Resamples never go below this many.
pub const MIN_RESAMPLES: usize = 2_000;

/// The resamples to draw of `per_resample` draws each within [`DRAW_BUDGET`].
fn bounded_resamples(resamples: usize, per_resample: usize) -> usize {
    resamples.min((DRAW_BUDGET / per_resample.max(1)).max(MIN_RESAMPLES))
}

/// Binomial draws (each several uniform draws' work) one multinomial bootstrap may make in all.
const MULTINOMIAL_DRAW_BUDGET: usize = 2_000_000;

/// The resamples to draw of `categories` binomial draws each, within the multinomial budget.
fn bounded_multinomial_resamples(resamples: usize, categories: usize) -> usize {
    resamples.min((MULTINOMIAL_DRAW_BUDGET / categories.max(1)).max(MIN_RESAMPLES))
}

/// Monte Carlo standard error of a percentile interval's endpoints from `thetas`: for the
/// q-quantile of B draws, √(q(1−q)/B) / f(θ_q), with the density f taken as normal with the
/// draws' spread.
pub fn percentile_mc_error(thetas: &[f64], alpha: f64) -> f64 {
    if thetas.len() < 2 {
        return f64::NAN;
    }
    let q = alpha / 2.0;
    let sd = crate::variance(thetas).sqrt();
    let density = (-z_quantile(q).powi(2) / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    sd * (q * (1.0 - q) / thetas.len() as f64).sqrt() / density
}

/// The distinct values of `data` with their counts, when there are few enough of them (and
/// many more values) for multinomial resampling to pay.
fn distinct_counts(data: &[f64]) -> Option<Vec<(f64, u64)>> {
    if data.len() < 64 {
        return None;
    }
    let mut counts: std::collections::BTreeMap<u64, (f64, u64)> = Default::default();
    for x in data {
        // Keyed by bit pattern (with -0.0 folded into 0.0): values are only ever compared equal.
        let x = if *x == 0.0 { 0.0 } else { *x };
        counts.entry(x.to_bits()).or_insert((x, 0)).1 += 1;
        if counts.len() > MULTINOMIAL_MAX_DISTINCT || counts.len() * 8 > data.len() {
            return None;
        }
    }
    Some(counts.into_values().collect())
}

/// The kinds of clusters — (sum, size) — with how many clusters are of each, when there are few
/// kinds and many more clusters.
fn distinct_groups(groups: &[(f64, usize)]) -> Option<Vec<((f64, usize), u64)>> {
    if groups.len() < 64 {
        return None;
    }
    let mut kinds: std::collections::BTreeMap<(u64, usize), ((f64, usize), u64)> = Default::default();
    for (sum, size) in groups {
        let sum = if *sum == 0.0 { 0.0 } else { *sum };
        kinds.entry((sum.to_bits(), *size)).or_insert(((sum, *size), 0)).1 += 1;
        if kinds.len() > MULTINOMIAL_MAX_DISTINCT || kinds.len() * 8 > groups.len() {
            return None;
        }
    }
    Some(kinds.into_values().collect())
}

/// One multinomial draw of `n` over categories weighted `weights` (counts summing to `n`): each
/// count binomial given those before it.
fn multinomial(weights: &[u64], n: u64, rng: &mut ChaCha8Rng) -> Vec<u64> {
    use rand_distr::{Binomial, Distribution as _};
    let total: u64 = weights.iter().sum();
    let (mut left, mut mass_left) = (n, total);
    weights
        .iter()
        .enumerate()
        .map(|(i, weight)| {
            let drawn = if left == 0 {
                0
            } else if i + 1 == weights.len() {
                left
            } else {
                let p = (*weight as f64 / mass_left as f64).clamp(0.0, 1.0);
                Binomial::new(left, p).map_or(0, |b| b.sample(rng))
            };
            left -= drawn;
            mass_left -= weight;
            drawn
        })
        .collect()
}

/// Bootstrap means drawn as multinomial counts over distinct values.
fn multinomial_means(distinct: &[(f64, u64)], n: u64, resamples: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let weights: Vec<u64> = distinct.iter().map(|(_, count)| *count).collect();
    (0..bounded_multinomial_resamples(resamples, distinct.len()))
        .map(|_| {
            let counts = multinomial(&weights, n, rng);
            distinct.iter().zip(counts).map(|((value, _), drawn)| value * drawn as f64).sum::<f64>()
                / n as f64
        })
        .collect()
}

/// Percentile interval [θ*_(α/2), θ*_(1−α/2)].
pub fn percentile_interval(thetas: &[f64], alpha: f64) -> Option<(f64, f64)> {
    Some((percentile(thetas, 100.0 * alpha / 2.0)?, percentile(thetas, 100.0 * (1.0 - alpha / 2.0))?))
}

/// Jackknife acceleration of the mean: Σ(θ̄−θᵢ)³ / (6[Σ(θ̄−θᵢ)²]^{3/2}); 0 when the
/// denominator is 0.
pub fn jackknife_acceleration(data: &[f64]) -> f64 {
    let n = data.len() as f64;
    let total: f64 = data.iter().sum();
    let leave_one_out: Vec<f64> = data.iter().map(|x| (total - x) / (n - 1.0)).collect();
    let center = mean(&leave_one_out);
    let sq: f64 = leave_one_out.iter().map(|t| (center - t).powi(2)).sum();
    let cube: f64 = leave_one_out.iter().map(|t| (center - t).powi(3)).sum();
    if sq == 0.0 || !sq.is_finite() { 0.0 } else { cube / (6.0 * sq.powf(1.5)) }
}

/// The BCa quantile levels (α₁, α₂) for bias `z0` and acceleration `a`.
pub fn bca_levels(z0: f64, a: f64, alpha: f64) -> (f64, f64) {
    let level = |z: f64| normal_cdf(z0 + (z0 + z) / (1.0 - a * (z0 + z)));
    (level(z_quantile(alpha / 2.0)), level(z_quantile(1.0 - alpha / 2.0)))
}

/// A bootstrap interval with the pieces that produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BcaInterval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Bias correction z0 (mid-rank form).
    pub z0: f64,
    /// Jackknife acceleration.
    pub a: f64,
    /// Whether it fell back to the percentile interval (z0 infinite).
    pub percentile_fallback: bool,
}

/// BCa interval of the mean of `data` from `resamples` seeded resamples.
pub fn bca_interval(data: &[f64], resamples: usize, alpha: f64, seed: u64) -> Option<BcaInterval> {
    if data.len() < 2 {
        return None;
    }
    let estimate = mean(data);
    let thetas = bootstrap_means(data, None, resamples, seed);
    let a = jackknife_acceleration(data);
    if thetas.iter().all(|t| *t == thetas[0]) {
        return Some(BcaInterval { low: estimate, high: estimate, z0: 0.0, a, percentile_fallback: false });
    }
    let below = thetas.iter().filter(|t| **t < estimate).count() as f64;
    let at_or_below = thetas.iter().filter(|t| **t <= estimate).count() as f64;
    let z0 = z_quantile((below + at_or_below) / (2.0 * thetas.len() as f64));
    if !z0.is_finite() {
        let (low, high) = percentile_interval(&thetas, alpha)?;
        return Some(BcaInterval { low, high, z0, a, percentile_fallback: true });
    }
    let (a1, a2) = bca_levels(z0, a, alpha);
    Some(BcaInterval {
        low: percentile(&thetas, 100.0 * a1)?,
        high: percentile(&thetas, 100.0 * a2)?,
        z0,
        a,
        percentile_fallback: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{D, assert_close};

    #[test]
    fn spec_vector_22_bca_pieces() {
        assert_close(jackknife_acceleration(&D), -0.0413575063, 1e-9);
        let a = jackknife_acceleration(&D);
        let (a1, a2) = bca_levels(0.0, a, 0.05);
        assert_close(a1, 0.0164684653, 1e-9);
        assert_close(a2, 0.9650843471, 1e-9);
        let (a1, a2) = bca_levels(0.1, a, 0.05);
        assert_close(a1, 0.0277486848, 1e-9);
        assert_close(a2, 0.9771548502, 1e-9);
        // scipy's RNG-dependent interval is ≈ [−0.083, 0.750] (±0.02).
        let ci = bca_interval(&D, 10_000, 0.05, 1).expect("n >= 2");
        assert!((ci.low - -0.083).abs() < 0.03 && (ci.high - 0.750).abs() < 0.03, "{ci:?}");
    }

    #[test]
    fn multinomial_resampling_matches_drawing_indices() {
        // Judge-like differences: few distinct values, many pairs.
        let data: Vec<f64> = (0..5_000).map(|i| f64::from(i * 7 % 11 - 5) / 9.0).collect();
        assert!(distinct_counts(&data).is_some());
        let fast = bootstrap_means(&data, None, 4_000, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let slow: Vec<f64> = (0..4_000)
            .map(|_| {
                (0..data.len()).map(|_| data[rng.random_range(0..data.len())]).sum::<f64>()
                    / data.len() as f64
            })
            .collect();
        let (mf, ms) = (mean(&fast), mean(&slow));
        let (sf, ss) = (crate::variance(&fast).sqrt(), crate::variance(&slow).sqrt());
        // Same centre (the data mean) and spread (sd/√n) within Monte Carlo error.
        assert!((mf - mean(&data)).abs() < 4.0 * sf / 4_000f64.sqrt(), "{mf}");
        assert!((mf - ms).abs() < 5.0 * ss / 4_000f64.sqrt(), "{mf} vs {ms}");
        let expected_sd = crate::variance(&data).sqrt() / (data.len() as f64).sqrt();
        assert!(
            (sf / expected_sd - 1.0).abs() < 0.06 && (ss / expected_sd - 1.0).abs() < 0.06,
            "{sf} {ss} {expected_sd}"
        );
        let (pf, ps) =
            (percentile_interval(&fast, 0.05).expect("ci"), percentile_interval(&slow, 0.05).expect("ci"));
        assert!(
            (pf.0 - ps.0).abs() < 0.3 * expected_sd && (pf.1 - ps.1).abs() < 0.3 * expected_sd,
            "{pf:?} {ps:?}"
        );
    }

    #[test]
    fn clustered_multinomial_resampling_has_the_cluster_bootstrap_spread() {
        // 2,000 clusters of 5 judge-like differences: few kinds of cluster.
        let data: Vec<f64> = (0..10_000).map(|i| f64::from(i * 7 % 3 - 1) / 9.0).collect();
        let labels: Vec<usize> = (0..10_000).map(|i| i / 5).collect();
        let fast = bootstrap_means(&data, Some(&labels), 3_000, 4);
        // The naive cluster bootstrap: draw 2,000 clusters with replacement.
        let sums: Vec<f64> =
            labels.chunks(5).enumerate().map(|(c, _)| data[c * 5..c * 5 + 5].iter().sum()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let slow: Vec<f64> = (0..3_000)
            .map(|_| {
                (0..sums.len()).map(|_| sums[rng.random_range(0..sums.len())]).sum::<f64>()
                    / data.len() as f64
            })
            .collect();
        let (sf, ss) = (crate::variance(&fast).sqrt(), crate::variance(&slow).sqrt());
        assert!((sf / ss - 1.0).abs() < 0.08, "{sf} vs {ss}");
        assert!((mean(&fast) - mean(&data)).abs() < 4.0 * sf / 3_000f64.sqrt());
    }

    #[test]
    fn reproducible_and_degenerate() {
        assert_eq!(bootstrap_means(&D, None, 100, 9), bootstrap_means(&D, None, 100, 9));
        let flat = bca_interval(&[0.5; 10], 1000, 0.05, 1).expect("n >= 2");
        assert_eq!((flat.low, flat.high), (0.5, 0.5));
        assert!(bca_interval(&[1.0], 1000, 0.05, 1).is_none());
        let clustered = bootstrap_means(&D, Some(&[0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]), 50, 3);
        assert_eq!(clustered.len(), 50);
    }
}
