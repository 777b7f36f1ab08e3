//! Means, variances, percentiles and the normal and t quantiles everything else uses.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample variance (ddof = 1); NaN below two values.
pub fn variance(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() as f64 - 1.0)
}

/// The q-th percentile (0–100) with linear interpolation between order statistics (numpy's
/// default); `None` for an empty slice.
pub fn percentile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

pub(crate) fn std_normal() -> Normal {
    // Mean 0 and sd 1 are valid parameters.
    Normal::new(0.0, 1.0).expect("standard normal")
}

/// Φ⁻¹(q), the standard normal quantile.
pub fn z_quantile(q: f64) -> f64 {
    std_normal().inverse_cdf(q)
}

/// Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    std_normal().cdf(x)
}

/// 1 − Φ(x), accurate in the far tail.
pub fn normal_sf(x: f64) -> f64 {
    std_normal().sf(x)
}

/// Student t with `df` degrees of freedom; callers guarantee df > 0 (n ≥ 2 pairs or C ≥ 2
/// clusters).
pub(crate) fn students_t(df: f64) -> StudentsT {
    StudentsT::new(0.0, 1.0, df).expect("df > 0")
}

/// The t quantile t_q(df); NaN unless df > 0.
pub fn t_quantile(q: f64, df: f64) -> f64 {
    if df > 0.0 { students_t(df).inverse_cdf(q) } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_close;

    #[test]
    fn spec_vector_1_quantiles() {
        assert_close(z_quantile(0.975), 1.9599639845, 1e-9);
        assert_close(z_quantile(0.95), 1.6448536270, 1e-9);
        assert_close(z_quantile(0.8), 0.8416212336, 1e-9);
        assert_close(t_quantile(0.975, 11.0), 2.2009851601, 1e-9);
        let chi2 = statrs::distribution::ChiSquared::new(1.0).expect("chi2");
        assert_close(chi2.inverse_cdf(0.95), 3.8414588207, 1e-9);
    }

    #[test]
    fn percentile_interpolates() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 50.0), Some(2.5));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
