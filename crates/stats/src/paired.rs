use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum StatsError {
    /// Fewer observations than the method needs.
    Insufficient {
        /// Observations given.
        n: usize,
        /// Observations needed.
        needed: usize,
    },
    /// The two samples are not paired (different lengths).
    Unpaired {
        /// Baseline length.
        baseline: usize,
        /// Candidate length.
        candidate: usize,
    },
    /// An input was NaN or infinite.
    NotFinite,
}

impl std::fmt::Display for StatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatsError::Insufficient { n, needed } => {
                write!(f, "not enough data: {n} pairs, at least {needed} needed")
            }
            StatsError::Unpaired {
                baseline,
                candidate,
            } => {
                write!(
                    f,
                    "samples are not paired: {baseline} baseline vs {candidate} candidate scores"
                )
            }
            StatsError::NotFinite => write!(f, "a score is NaN or infinite"),
        }
    }
}

impl std::error::Error for StatsError {}

/// A paired t-test of candidate − baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedT {
    /// Number of pairs.
    pub n: usize,
    /// Mean baseline score.
    pub baseline_mean: f64,
    /// Mean candidate score.
    pub candidate_mean: f64,
    /// Mean of the differences candidate − baseline.
    pub mean_delta: f64,
    /// Standard deviation of the differences (ddof = 1).
    pub sd_delta: f64,
    /// Standard error of the mean difference.
    pub se: f64,
    /// t statistic (±∞ when every difference is the same non-zero value).
    pub t: f64,
    /// Degrees of freedom, n − 1.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Lower end of the two-sided (1 − α) interval of the mean difference.
    pub ci_low: f64,
    /// Upper end of the two-sided (1 − α) interval of the mean difference.
    pub ci_high: f64,
    /// Set when the result is degenerate (zero variance) and how it was resolved.
    pub note: Option<String>,
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
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

fn check_pairs(baseline: &[f64], candidate: &[f64], needed: usize) -> Result<(), StatsError> {
    if baseline.len() != candidate.len() {
        return Err(StatsError::Unpaired {
            baseline: baseline.len(),
            candidate: candidate.len(),
        });
    }
    if baseline.iter().chain(candidate).any(|x| !x.is_finite()) {
        return Err(StatsError::NotFinite);
    }
    if baseline.len() < needed {
        return Err(StatsError::Insufficient {
            n: baseline.len(),
            needed,
        });
    }
    Ok(())
}

/// Paired t-test of `candidate − baseline` against 0, with a two-sided (1 − `alpha`) interval.
///
/// Zero variance is resolved as the spec says: all differences 0 gives p = 1; all equal and
/// non-zero gives the exact sign-test p = 2·0.5ⁿ and a zero-width interval.
pub fn paired_t(baseline: &[f64], candidate: &[f64], alpha: f64) -> Result<PairedT, StatsError> {
    check_pairs(baseline, candidate, 2)?;
    let n = baseline.len();
    let diffs: Vec<f64> = candidate.iter().zip(baseline).map(|(c, b)| c - b).collect();
    let mean_delta = mean(&diffs);
    let var = diffs.iter().map(|d| (d - mean_delta).powi(2)).sum::<f64>() / (n - 1) as f64;
    let sd_delta = var.sqrt();
    let se = sd_delta / (n as f64).sqrt();
    let df = (n - 1) as f64;
    let (t, p_value, half_width, note) = if se == 0.0 {
        if mean_delta == 0.0 {
            (0.0, 1.0, 0.0, Some("every difference is 0".to_string()))
        } else {
            let sign_p = (2.0 * 0.5f64.powi(n as i32)).min(1.0);
            (
                mean_delta.signum() * f64::INFINITY,
                sign_p,
                0.0,
                Some(
                    "every difference is the same non-zero value; p from the exact sign test"
                        .into(),
                ),
            )
        }
    } else {
        // df >= 1 and scale 1 are always valid parameters.
        let dist = StudentsT::new(0.0, 1.0, df).expect("valid t distribution");
        let t = mean_delta / se;
        let p = (2.0 * dist.sf(t.abs())).min(1.0);
        (t, p, dist.inverse_cdf(1.0 - alpha / 2.0) * se, None)
    };
    Ok(PairedT {
        n,
        baseline_mean: mean(baseline),
        candidate_mean: mean(candidate),
        mean_delta,
        sd_delta,
        se,
        t,
        df,
        p_value,
        ci_low: mean_delta - half_width,
        ci_high: mean_delta + half_width,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: [f64; 12] = [7., 6., 8., 5., 9., 7., 6., 8., 7., 6., 5., 8.];
    const C: [f64; 12] = [8., 6., 7., 6., 9., 8., 7., 8., 8., 5., 6., 9.];

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn spec_vector_2_paired_t() {
        let r = paired_t(&B, &C, 0.05).expect("valid");
        assert!(close(r.mean_delta, 0.4166666667, 1e-9));
        assert!(close(r.sd_delta, 0.7929614611, 1e-9));
        assert!(close(r.se, 0.2289082565, 1e-9));
        assert!(close(r.t, 1.8202343289, 1e-9));
        assert_eq!(r.df, 11.0);
        assert!(close(r.p_value, 0.0960136657, 1e-8), "{}", r.p_value);
        assert!(close(r.ci_low, -0.0871570089, 1e-8), "{}", r.ci_low);
        assert!(close(r.ci_high, 0.9204903423, 1e-8), "{}", r.ci_high);
    }

    #[test]
    fn degenerate_inputs_have_defined_results() {
        assert_eq!(
            paired_t(&[1.0], &[2.0], 0.05),
            Err(StatsError::Insufficient { n: 1, needed: 2 })
        );
        assert_eq!(
            paired_t(&[1.0, f64::NAN], &[2.0, 1.0], 0.05),
            Err(StatsError::NotFinite)
        );
        let same = paired_t(&[0.5, 0.5, 0.5], &[0.5, 0.5, 0.5], 0.05).expect("valid");
        assert_eq!((same.p_value, same.ci_low, same.ci_high), (1.0, 0.0, 0.0));
        let shifted = paired_t(&[0.0; 5], &[1.0; 5], 0.05).expect("valid");
        assert!(close(shifted.p_value, 2.0 * 0.5f64.powi(5), 1e-12));
        assert_eq!((shifted.ci_low, shifted.ci_high), (1.0, 1.0));
    }

    #[test]
    fn percentile_interpolates() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 50.0), Some(2.5));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
