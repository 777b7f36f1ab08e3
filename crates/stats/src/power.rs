//! Sample size and minimum detectable effect, so an `inconclusive` verdict can say how many
//! more samples would settle it.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::function::gamma::ln_gamma;

use crate::descriptive::{normal_cdf, t_quantile, z_quantile};

/// Pairs needed for a two-sided paired test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleSize {
    /// Normal-approximation n, (z_{1−α/2}+z_{1−β})²σ²/Δ² (fractional).
    pub n_normal: f64,
    /// Exact n from the noncentral t power of the paired t-test (fractional).
    pub n_exact: f64,
    /// Pairs to collect: ⌈n_exact⌉.
    pub n: u64,
}

/// Pairs needed to detect a mean difference `delta` with paired-difference sd `sigma_d` by a
/// two-sided test at `alpha` with `power`. `None` when `delta` or `sigma_d` is zero or not finite.
pub fn sample_size_paired(sigma_d: f64, delta: f64, alpha: f64, power: f64) -> Option<SampleSize> {
    if !(sigma_d.is_finite() && delta.is_finite()) || sigma_d <= 0.0 || delta == 0.0 {
        return None;
    }
    let z = z_quantile(1.0 - alpha / 2.0) + z_quantile(power);
    let n_normal = (z * sigma_d / delta).powi(2);
    // Beyond a few hundred pairs the t and normal quantiles agree closely, and Guenther's
    // correction n + z²_{1−α/2}/2 is within a fraction of a pair of the exact answer; the
    // exact search (a numerical integral per step) is kept for the sizes where it matters.
    if n_normal > 300.0 {
        let n_exact = n_normal + z_quantile(1.0 - alpha / 2.0).powi(2) / 2.0;
        return Some(SampleSize { n_normal, n_exact, n: n_exact.ceil() as u64 });
    }
    let effect = (delta / sigma_d).abs();
    let power_at = |n: f64| paired_t_power(effect, n, alpha);
    // Power grows with n, and the exact n lies just above the normal approximation: bracket
    // tightly, then bisect to 1e-4 of a pair (each power evaluation integrates numerically).
    let (mut lo, mut hi) = (n_normal.max(2.0) * 0.9, n_normal.max(2.0) + 4.0);
    lo = lo.max(2.0);
    while power_at(hi) < power {
        lo = hi;
        hi = hi * 1.5 + 4.0;
        if hi > 1e12 {
            return None;
        }
    }
    if power_at(lo) >= power {
        if lo <= 2.0 {
            hi = lo;
        } else {
            lo = 2.0;
        }
    }
    while hi - lo > 1e-4 {
        let mid = 0.5 * (lo + hi);
        if power_at(mid) < power { lo = mid } else { hi = mid }
    }
    Some(SampleSize { n_normal, n_exact: hi, n: hi.ceil() as u64 })
}

/// Minimum detectable mean difference at `n` pairs (normal approximation).
pub fn mde_paired(sigma_d: f64, n: f64, alpha: f64, power: f64) -> f64 {
    (z_quantile(1.0 - alpha / 2.0) + z_quantile(power)) * sigma_d / n.sqrt()
}

/// Pairs needed to show non-inferiority at `margin` when the true difference is `true_delta`:
/// (z_{1−α}+z_{1−β})²σ²/(Δ+δ)². `None` when Δ + δ ≤ 0 (non-inferiority is then not true).
pub fn sample_size_noninferiority(
    sigma_d: f64,
    true_delta: f64,
    margin: f64,
    alpha: f64,
    power: f64,
) -> Option<f64> {
    let gap = true_delta + margin;
    if !(gap > 0.0 && sigma_d.is_finite() && sigma_d >= 0.0) {
        return None;
    }
    Some(((z_quantile(1.0 - alpha) + z_quantile(power)) * sigma_d / gap).powi(2))
}

/// Pairs needed by McNemar's test (Connor 1987) with discordant probabilities `p10`
/// (baseline-only) and `p01` (candidate-only).
pub fn sample_size_mcnemar(p10: f64, p01: f64, alpha: f64, power: f64) -> Option<f64> {
    let psi = p10 + p01;
    let delta = p01 - p10;
    if delta == 0.0 || psi <= delta * delta {
        return None;
    }
    let a = z_quantile(1.0 - alpha / 2.0) * psi.sqrt() + z_quantile(power) * (psi - delta * delta).sqrt();
    Some(a * a / (delta * delta))
}

/// Power of a t-test whose statistic is noncentral t(`df`, `ncp`): two-sided at `alpha`, or
/// one-sided (upper) when `one_sided`.
pub fn t_power(ncp: f64, df: f64, alpha: f64, one_sided: bool) -> f64 {
    if one_sided {
        noncentral_t_sf(t_quantile(1.0 - alpha, df), df, ncp)
    } else {
        let crit = t_quantile(1.0 - alpha / 2.0, df);
        noncentral_t_sf(crit, df, ncp) + noncentral_t_sf(crit, df, -ncp)
    }
}

/// Clusters needed for a clustered paired test to reach `power`: at C clusters of
/// `cluster_size` pairs the clustered standard error is σ_d·√(D/(C·m)) (D the design effect) and
/// the t has C − 1 degrees of freedom, so the noncentral t on C − 1 df decides — not the normal
/// approximation, which falls short when clusters are few. `effect` is the distance to cover
/// (|Δ| for a two-sided test; Δ + margin, one-sided, for non-inferiority). `None` when no finite
/// number of clusters reaches it.
pub fn clusters_needed(
    sigma_d: f64,
    effect: f64,
    design_effect: f64,
    cluster_size: f64,
    alpha: f64,
    power: f64,
    one_sided: bool,
) -> Option<u64> {
    if !(sigma_d > 0.0 && effect.is_finite() && effect != 0.0 && cluster_size >= 1.0 && design_effect > 0.0) {
        return None;
    }
    let power_at = |clusters: u64| {
        let se = sigma_d * (design_effect / (clusters as f64 * cluster_size)).sqrt();
        t_power(effect.abs() / se, clusters as f64 - 1.0, alpha, one_sided)
    };
    // The normal approximation first: beyond a few hundred clusters the t on C − 1 df is the
    // normal, and Guenther's + z²/2 covers the rest (as for pairs).
    let z_alpha = if one_sided { z_quantile(1.0 - alpha) } else { z_quantile(1.0 - alpha / 2.0) };
    let normal = ((z_alpha + z_quantile(power)) * sigma_d / effect).powi(2) * design_effect / cluster_size;
    if !normal.is_finite() || normal > 1e12 {
        return None;
    }
    if normal > 300.0 {
        return Some((normal + z_alpha.powi(2) / 2.0).ceil() as u64);
    }
    // Few clusters: the exact power, on whole clusters, from just below the approximation.
    let (mut lo, mut hi) = (((normal * 0.9) as u64).max(2), (normal as u64).max(2) + 4);
    while power_at(hi) < power {
        lo = hi;
        hi = hi * 2 + 4;
        if hi > 5_000 {
            return Some((normal + z_alpha.powi(2) / 2.0).ceil() as u64);
        }
    }
    if power_at(lo) >= power {
        lo = 2;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if power_at(mid) < power { lo = mid } else { hi = mid }
    }
    Some(hi)
}

/// Pairs the always-valid (sequential) test needs to settle with `power` when the planned n is
/// that same number: the smallest n at which the normal-mixture confidence sequence, tuned to n,
/// excludes the boundary (0, or −margin for non-inferiority) with that probability —
/// `effect − z_power·σ/√n ≥ half-width(n)`. Larger than the fixed-n advice: the sequence pays
/// for being valid at every look. `effect` as in [`clusters_needed`].
pub fn sequential_samples_needed(sigma_d: f64, effect: f64, alpha: f64, power: f64) -> Option<u64> {
    if !(sigma_d > 0.0 && effect.is_finite() && effect != 0.0) {
        return None;
    }
    let effect = effect.abs();
    let settles = |n: f64| {
        let rho2 = crate::sequential::mixture_rho(alpha, n).powi(2);
        let half = sigma_d
            * (2.0 * (n * rho2 + 1.0) / (n * n * rho2) * ((n * rho2 + 1.0).sqrt() / alpha).ln()).sqrt();
        effect - z_quantile(power) * sigma_d / n.sqrt() >= half
    };
    let (mut lo, mut hi) = (2.0_f64, 4.0_f64);
    while !settles(hi) {
        lo = hi;
        hi *= 2.0;
        if hi > 1e13 {
            return None;
        }
    }
    while hi - lo > 0.5 {
        let mid = 0.5 * (lo + hi);
        if settles(mid) { hi = mid } else { lo = mid }
    }
    Some(hi.ceil() as u64)
}

/// Power of the two-sided one-sample (paired) t-test with standardized effect `effect` at `n`
/// pairs: P(T > c) + P(T < −c) for T noncentral t(n − 1, effect·√n).
pub fn paired_t_power(effect: f64, n: f64, alpha: f64) -> f64 {
    let df = n - 1.0;
    let crit = t_quantile(1.0 - alpha / 2.0, df);
    let ncp = effect * n.sqrt();
    noncentral_t_sf(crit, df, ncp) + noncentral_t_sf(crit, df, -ncp)
}

/// P(T > t) for T noncentral t(df, ncp), by integrating over s = √(V/df), V ~ χ²(df):
/// P(T > t) = E[Φ(ncp − t·s)]. Composite Simpson over the bulk of s's density.
pub fn noncentral_t_sf(t: f64, df: f64, ncp: f64) -> f64 {
    let Ok(chi) = ChiSquared::new(df) else { return f64::NAN };
    let s_max = (chi.inverse_cdf(1.0 - 1e-15) / df).sqrt();
    let s_min = (chi.inverse_cdf(1e-15) / df).sqrt();
    // log density of s: log f_V(df s²) + log(2 df s)
    let half = df / 2.0;
    let log_norm = -half * std::f64::consts::LN_2 - ln_gamma(half);
    let density = |s: f64| {
        if s <= 0.0 {
            return 0.0;
        }
        let v = df * s * s;
        (log_norm + (half - 1.0) * v.ln() - v / 2.0 + (2.0 * df * s).ln()).exp()
    };
    let integrand = |s: f64| density(s) * normal_cdf(ncp - t * s);
    let intervals = 4000;
    let h = (s_max - s_min) / intervals as f64;
    let mut sum = integrand(s_min) + integrand(s_max);
    for i in 1..intervals {
        let weight = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += weight * integrand(s_min + i as f64 * h);
    }
    (sum * h / 3.0).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_close;

    #[test]
    fn spec_vector_27_paired_sample_size() {
        let n = sample_size_paired(1.2, 0.3, 0.05, 0.8).expect("defined");
        assert_close(n.n_normal, 125.58, 1e-4);
        assert_eq!(n.n_normal.ceil(), 126.0);
        assert!((n.n_exact - 127.52).abs() < 0.005, "{}", n.n_exact);
        assert_eq!(n.n, 128);
        assert_close(mde_paired(1.2, 100.0, 0.05, 0.8), 0.3361902262, 1e-9);
    }

    #[test]
    fn spec_vector_28_mcnemar_sample_size() {
        let n = sample_size_mcnemar(0.10, 0.05, 0.05, 0.8).expect("defined");
        assert!((n - 468.57).abs() < 0.005, "{n}");
        assert_eq!(n.ceil(), 469.0);
    }

    #[test]
    fn large_sizes_use_guenther_within_a_pair_of_the_exact_search() {
        // σ = 1, Δ = 0.15: n_normal ≈ 348.8; the exact noncentral-t answer is 350.8 (statsmodels
        // TTestPower gives 350.77).
        let n = sample_size_paired(1.0, 0.15, 0.05, 0.8).expect("defined");
        let exact_power = paired_t_power(0.15, n.n_exact, 0.05);
        assert!((exact_power - 0.8).abs() < 0.001, "power at Guenther's n: {exact_power}");
    }

    #[test]
    fn noncentral_t_reduces_to_central_t() {
        let central = crate::descriptive::students_t(9.0);
        assert_close(noncentral_t_sf(1.5, 9.0, 0.0), central.sf(1.5), 1e-9);
    }

    #[test]
    fn degenerate_sizes_are_none() {
        assert!(sample_size_paired(0.0, 0.1, 0.05, 0.8).is_none());
        assert!(sample_size_paired(1.0, 0.0, 0.05, 0.8).is_none());
        assert!(sample_size_noninferiority(1.0, -0.05, 0.02, 0.05, 0.8).is_none());
        assert!(sample_size_noninferiority(1.0, 0.0, 0.02, 0.05, 0.8).is_some());
    }
}
