//! Fixed-horizon paired tests of candidate − baseline: the t-test and interval, the
//! non-inferiority t-test, and clustered standard errors.

use serde::Serialize;
use statrs::distribution::ContinuousCDF;

use crate::descriptive::{mean, students_t, variance};

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
    /// The scores are so large that their differences or variance overflow.
    Overflow,
    /// Clustered data with too few clusters for a clustered standard error to mean anything.
    TooFewClusters {
        /// Distinct clusters given.
        clusters: usize,
        /// Clusters needed.
        needed: usize,
    },
    /// The clustered standard error is 0 although the differences vary: the cluster sums
    /// cancel exactly, which says nothing about the true uncertainty.
    DegenerateClusters,
}

/// Fewer distinct clusters than this give no clustered standard error (`TooFewClusters`).
pub const MIN_CLUSTERS: usize = 5;

impl std::fmt::Display for StatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatsError::Insufficient { n, needed } => {
                write!(f, "not enough data: {n} pairs, at least {needed} needed")
            }
            StatsError::Unpaired { baseline, candidate } => {
                write!(f, "samples are not paired: {baseline} baseline vs {candidate} candidate scores")
            }
            StatsError::NotFinite => write!(f, "a score is NaN or infinite"),
            StatsError::Overflow => {
                write!(f, "scores too large: their differences or variance overflow a 64-bit float")
            }
            StatsError::TooFewClusters { clusters, needed } => write!(
                f,
                "too few clusters for a clustered standard error: {clusters}, at least {needed} needed"
            ),
            StatsError::DegenerateClusters => write!(
                f,
                "the clustered standard error is 0 although the differences vary (cluster sums cancel)"
            ),
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
    /// Standard error of the mean difference (clustered when clusters were given).
    pub se: f64,
    /// t statistic (±∞ when every difference is the same non-zero value).
    pub t: f64,
    /// Degrees of freedom: n − 1, or C − 1 with C clusters.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Lower end of the two-sided (1 − α) interval of the mean difference.
    pub ci_low: f64,
    /// Upper end of the two-sided (1 − α) interval of the mean difference.
    pub ci_high: f64,
    /// Clusters, when the standard error is clustered.
    pub clusters: Option<usize>,
    /// Set when the result is degenerate (zero variance) and how it was resolved.
    pub note: Option<String>,
}

/// Checks that two samples are paired, finite and at least `needed` long; returns the
/// differences candidate − baseline.
pub fn paired_differences(
    baseline: &[f64],
    candidate: &[f64],
    needed: usize,
) -> Result<Vec<f64>, StatsError> {
    if baseline.len() != candidate.len() {
        return Err(StatsError::Unpaired { baseline: baseline.len(), candidate: candidate.len() });
    }
    if baseline.iter().chain(candidate).any(|x| !x.is_finite()) {
        return Err(StatsError::NotFinite);
    }
    if baseline.len() < needed {
        return Err(StatsError::Insufficient { n: baseline.len(), needed });
    }
    let diffs: Vec<f64> = candidate.iter().zip(baseline).map(|(c, b)| c - b).collect();
    let sums_finite = [mean(baseline), mean(candidate), mean(&diffs)].iter().all(|m| m.is_finite());
    if !sums_finite
        || diffs.iter().any(|d| !d.is_finite())
        || !variance(&diffs).is_finite() && diffs.len() > 1
    {
        return Err(StatsError::Overflow);
    }
    Ok(diffs)
}

/// Clustered standard error of a mean (Miller 2024, with inspect_ai's C/(C−1) correction):
/// sqrt(C/(C−1) · Σ_c (Σ_{i∈c}(sᵢ − s̄))²) / n. Returns (SE, C); `None` with fewer than 2
/// clusters.
pub fn clustered_se<K: Ord>(values: &[f64], clusters: &[K]) -> Option<(f64, usize)> {
    let m = mean(values);
    let mut sums: std::collections::BTreeMap<&K, f64> = Default::default();
    for (v, c) in values.iter().zip(clusters) {
        *sums.entry(c).or_default() += v - m;
    }
    let c = sums.len();
    if c < 2 {
        return None;
    }
    let total: f64 = sums.values().map(|s| s * s).sum();
    let cf = c as f64;
    Some((((cf / (cf - 1.0)) * total).sqrt() / values.len() as f64, c))
}

/// Clustered SE without the C/(C−1) correction, as in the paper.
pub fn clustered_se_uncorrected<K: Ord>(values: &[f64], clusters: &[K]) -> Option<f64> {
    let (se, c) = clustered_se(values, clusters)?;
    let cf = c as f64;
    Some(se / (cf / (cf - 1.0)).sqrt())
}

/// Paired t-test of `candidate − baseline` against 0 with a two-sided (1 − `alpha`) interval.
///
/// With `clusters` (one key per pair; pairs sharing a conversation, session or user), the
/// standard error is clustered and the t distribution has C − 1 degrees of freedom. Zero
/// variance follows the spec: all differences 0 gives p = 1; all equal and non-zero gives the
/// exact sign-test p = 2·0.5ⁿ and a zero-width interval.
pub fn paired_t_clustered<K: Ord>(
    baseline: &[f64],
    candidate: &[f64],
    clusters: Option<&[K]>,
    alpha: f64,
) -> Result<PairedT, StatsError> {
    let diffs = paired_differences(baseline, candidate, 2)?;
    let n = diffs.len();
    let mean_delta = mean(&diffs);
    let sd_delta = variance(&diffs).sqrt();
    let clustered = match clusters {
        Some(keys) => {
            let distinct = keys.iter().collect::<std::collections::BTreeSet<_>>().len();
            // A single pair per cluster is the unclustered case; keep its exact t.
            if distinct >= n {
                None
            } else if distinct < MIN_CLUSTERS {
                return Err(StatsError::TooFewClusters { clusters: distinct, needed: MIN_CLUSTERS });
            } else {
                clustered_se(&diffs, keys)
            }
        }
        None => None,
    };
    let (se, df, cluster_count) = match clustered {
        Some((se, _)) if se == 0.0 && sd_delta > 0.0 => return Err(StatsError::DegenerateClusters),
        Some((se, c)) => (se, (c - 1) as f64, Some(c)),
        None => (sd_delta / (n as f64).sqrt(), (n - 1) as f64, None),
    };
    let (t, p_value, half_width, note) = if se == 0.0 {
        if mean_delta == 0.0 {
            (0.0, 1.0, 0.0, Some("every difference is 0".to_string()))
        } else {
            let sign_p = (2.0 * 0.5f64.powi(n as i32)).min(1.0);
            (
                mean_delta.signum() * f64::INFINITY,
                sign_p,
                0.0,
                Some("every difference is the same non-zero value; p from the exact sign test".into()),
            )
        }
    } else {
        let dist = students_t(df);
        let t = mean_delta / se;
        (t, (2.0 * dist.sf(t.abs())).min(1.0), dist.inverse_cdf(1.0 - alpha / 2.0) * se, None)
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
        clusters: cluster_count,
        note,
    })
}

/// Paired t-test without clusters; see [`paired_t_clustered`].
pub fn paired_t(baseline: &[f64], candidate: &[f64], alpha: f64) -> Result<PairedT, StatsError> {
    paired_t_clustered::<u8>(baseline, candidate, None, alpha)
}

/// A non-inferiority test: H0 Δ ≤ −δ against H1 Δ > −δ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NonInferiority {
    /// t = (d̄ + δ)/SE.
    pub t: f64,
    /// One-sided p-value.
    pub p_value: f64,
    /// One-sided (1 − α) lower confidence bound of Δ.
    pub lower_bound: f64,
    /// Whether the lower bound clears −δ.
    pub non_inferior: bool,
}

/// Non-inferiority at margin `margin` from a paired t-test result (same SE and df).
pub fn noninferiority(t: &PairedT, margin: f64, alpha: f64) -> NonInferiority {
    let shifted = t.mean_delta + margin;
    if t.se == 0.0 {
        let p = if shifted > 0.0 { 0.0 } else { 1.0 };
        return NonInferiority {
            t: shifted.signum() * f64::INFINITY,
            p_value: p,
            lower_bound: t.mean_delta,
            non_inferior: shifted > 0.0,
        };
    }
    let dist = students_t(t.df);
    let stat = shifted / t.se;
    let lower_bound = t.mean_delta - dist.inverse_cdf(1.0 - alpha) * t.se;
    NonInferiority { t: stat, p_value: dist.sf(stat), lower_bound, non_inferior: lower_bound > -margin }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_close;

    const B: [f64; 12] = [7., 6., 8., 5., 9., 7., 6., 8., 7., 6., 5., 8.];
    const C: [f64; 12] = [8., 6., 7., 6., 9., 8., 7., 8., 8., 5., 6., 9.];

    #[test]
    fn spec_vector_2_paired_t() {
        let r = paired_t(&B, &C, 0.05).expect("valid");
        assert_close(r.mean_delta, 0.4166666667, 1e-9);
        assert_close(r.sd_delta, 0.7929614611, 1e-9);
        assert_close(r.se, 0.2289082565, 1e-9);
        assert_close(r.t, 1.8202343289, 1e-9);
        assert_eq!(r.df, 11.0);
        assert_close(r.p_value, 0.0960136657, 1e-9);
        assert_close(r.ci_low, -0.0871570089, 1e-9);
        assert_close(r.ci_high, 0.9204903423, 1e-9);
    }

    #[test]
    fn spec_vector_3_noninferiority() {
        let r = paired_t(&B, &C, 0.05).expect("valid");
        let ni = noninferiority(&r, 0.5, 0.05);
        assert_close(ni.t, 4.0045155235, 1e-9);
        assert_close(ni.p_value, 0.0010350764, 1e-9);
        assert_close(ni.lower_bound, 0.0055738039, 1e-9);
        assert!(ni.non_inferior);
    }

    #[test]
    fn spec_vector_32_clustered_se() {
        let s = [1., 1., 1., 0., 0., 1., 1., 1., 1., 1., 0., 0., 1., 0., 1., 1.];
        let clusters = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4, 4];
        assert_close((variance(&s) / s.len() as f64).sqrt(), 0.1196783885, 1e-9);
        assert_close(clustered_se_uncorrected(&s, &clusters).expect("5 clusters"), 0.1468874662, 1e-9);
        let (se, c) = clustered_se(&s, &clusters).expect("5 clusters");
        assert_eq!(c, 5);
        assert_close(se, 0.1642251798, 1e-9);
        let paired = paired_t_clustered(&[0.0; 16], &s, Some(&clusters[..]), 0.05).expect("valid");
        assert_eq!((paired.df, paired.clusters), (4.0, Some(5)));
        assert_close(paired.se, 0.1642251798, 1e-9);
    }

    #[test]
    fn degenerate_inputs_have_defined_results() {
        assert_eq!(paired_t(&[1.0], &[2.0], 0.05), Err(StatsError::Insufficient { n: 1, needed: 2 }));
        assert_eq!(paired_t(&[1.0, f64::NAN], &[2.0, 1.0], 0.05), Err(StatsError::NotFinite));
        assert!(matches!(paired_t(&[1.0], &[2.0, 3.0], 0.05), Err(StatsError::Unpaired { .. })));
        let same = paired_t(&[0.5, 0.5, 0.5], &[0.5, 0.5, 0.5], 0.05).expect("valid");
        assert_eq!((same.p_value, same.ci_low, same.ci_high), (1.0, 0.0, 0.0));
        let shifted = paired_t(&[0.0; 5], &[1.0; 5], 0.05).expect("valid");
        assert_close(shifted.p_value, 2.0 * 0.5f64.powi(5), 1e-12);
        assert_eq!((shifted.ci_low, shifted.ci_high), (1.0, 1.0));
        assert!(shifted.note.is_some());
    }
}
