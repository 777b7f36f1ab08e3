//! Exact bounds for samples where every pair agrees: no variance to estimate, yet a bound.

/// When every pair agrees exactly (no difference at all), the exact one-sided (1 − α) lower
/// bound of the mean difference on [0, 1] scores: the rate of pairs where the candidate scores
/// lower is at most 1 − α^(1/n) (Clopper–Pearson with no such pair in n; "the rule of three",
/// ≈ 3/n at α = 0.05), and each such pair costs at most 1. It stays valid under continuous
/// monitoring: "no disagreement so far" only shrinks as n grows, so the first n at which the
/// bound clears the margin is a fixed n.
pub fn no_disagreement_lower_bound(n: usize, alpha: f64) -> f64 {
    if n == 0 {
        return -1.0;
    }
    -(1.0 - alpha.powf(1.0 / n as f64))
}

/// The exact one-sided p-value of "the candidate is lower on at least a `margin` share of pairs"
/// after `n` pairs with no disagreement: (1 − margin)^n.
pub fn no_disagreement_p_value(n: usize, margin: f64) -> f64 {
    (1.0 - margin).clamp(0.0, 1.0).powi(n.min(i32::MAX as usize) as i32)
}

/// Pairs with no disagreement needed before [`no_disagreement_lower_bound`] clears −margin.
pub fn no_disagreement_samples_needed(margin: f64, alpha: f64) -> Option<u64> {
    if !(margin > 0.0 && margin < 1.0) {
        return None;
    }
    let n = (alpha.ln() / (1.0 - margin).ln()).floor() + 1.0;
    (n.is_finite() && n < 1e15).then_some(n as u64)
}
