//! Bootstrap intervals for a mean (of paired differences), seeded so results are reproducible.

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde::Serialize;

use crate::descriptive::{mean, normal_cdf, percentile, z_quantile};

/// Means of `resamples` bootstrap resamples of `data`. With `clusters` (one label per value),
/// whole clusters are resampled, as clustered data require.
pub fn bootstrap_means(data: &[f64], clusters: Option<&[usize]>, resamples: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if data.is_empty() {
        return Vec::new();
    }
    match clusters {
        None => (0..resamples)
            .map(|_| {
                (0..data.len()).map(|_| data[rng.random_range(0..data.len())]).sum::<f64>()
                    / data.len() as f64
            })
            .collect(),
        Some(labels) => {
            let mut groups: std::collections::BTreeMap<usize, (f64, usize)> = Default::default();
            for (x, label) in data.iter().zip(labels) {
                let entry = groups.entry(*label).or_default();
                entry.0 += x;
                entry.1 += 1;
            }
            let groups: Vec<(f64, usize)> = groups.into_values().collect();
            (0..resamples)
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
    fn reproducible_and_degenerate() {
        assert_eq!(bootstrap_means(&D, None, 100, 9), bootstrap_means(&D, None, 100, 9));
        let flat = bca_interval(&[0.5; 10], 1000, 0.05, 1).expect("n >= 2");
        assert_eq!((flat.low, flat.high), (0.5, 0.5));
        assert!(bca_interval(&[1.0], 1000, 0.05, 1).is_none());
        let clustered = bootstrap_means(&D, Some(&[0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]), 50, 3);
        assert_eq!(clustered.len(), 50);
    }
}
