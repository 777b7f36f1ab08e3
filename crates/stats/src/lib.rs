//! Pure statistics for comparing a candidate model with a baseline on paired scores.
//!
//! No I/O and no async: numbers in, numbers (or a reason why not) out. The formulas and their
//! test vectors are in `docs/statistics.md` (§8); every vector there is a unit test here.
//!
//! - Fixed-n: [`paired_t`] / [`paired_t_clustered`] (with [`clustered_se`]),
//!   [`noninferiority`], [`wilcoxon`], bootstrap ([`bca_interval`]), [`mcnemar`],
//!   [`sign_test`] and [`wilson`].
//! - Continuous monitoring: [`normal_mixture`] (always-valid p-value and confidence
//!   sequence) and [`prpl_eb_cs`].
//! - Drift over replicate runs of fixed items: [`latest_runs_drop`] (a permutation test).
//! - Families: [`holm`], [`benjamini_hochberg`], [`benjamini_yekutieli`].
//! - Planning: [`sample_size_paired`], [`sample_size_noninferiority`],
//!   [`sample_size_mcnemar`], [`mde_paired`].
//! - Judges: [`cohen_kappa`], [`quadratic_weighted_kappa`], [`krippendorff_alpha`],
//!   [`rogan_gladen`], [`length_controlled_win_rate`].
//! - Decisions: [`compare_paired`] and [`decide_family`] run the above for a report;
//!   [`verdict`] is the one place statistics become a verdict.
//!
//! ```
//! let baseline = [0.7, 0.6, 0.8, 0.5, 0.9];
//! let candidate = [0.8, 0.6, 0.7, 0.6, 0.9];
//! let t = evaltap_stats::paired_t(&baseline, &candidate, 0.05).expect("n >= 2");
//! assert!(t.ci_low < t.mean_delta && t.mean_delta < t.ci_high);
//! ```
#![deny(missing_docs)]

mod agreement;
mod binary;
mod bootstrap;
mod compare;
mod descriptive;
mod multiple;
mod no_disagreement;
mod paired;
mod permutation;
mod power;
mod sequential;
mod verdict;
mod wilcoxon;

#[cfg(test)]
mod test_support;

pub use agreement::{
    LengthControlled, Level, cohen_kappa, krippendorff_alpha, krippendorff_alpha_multi,
    length_controlled_win_rate, quadratic_weighted_kappa, rogan_gladen,
};
pub use binary::{
    McNemar, PairedBinaryNi, SignTest, mcnemar, paired_binary_noninferiority, sign_test, wilson,
};
pub use bootstrap::{
    BcaInterval, MIN_RESAMPLES, bca_interval, bca_levels, bootstrap_means, jackknife_acceleration,
    percentile_interval, percentile_mc_error,
};
pub use compare::{
    Basis, CompareOptions, Comparison, FIXED_N_MIN_N, McNemarCounts, SEQUENTIAL_MIN_CLUSTERS,
    SEQUENTIAL_MIN_N, compare_paired, decide_family, is_binary, samples_to_settle,
};
pub use descriptive::{mean, normal_cdf, normal_sf, percentile, t_quantile, variance, z_quantile};
pub use multiple::{benjamini_hochberg, benjamini_yekutieli, holm};
pub use no_disagreement::{
    no_disagreement_lower_bound, no_disagreement_p_value, no_disagreement_samples_needed,
};
pub use paired::{
    MIN_CLUSTERS, NonInferiority, PairedT, StatsError, clustered_se, clustered_se_uncorrected,
    noninferiority, paired_differences, paired_t, paired_t_clustered,
};
pub use permutation::{DropTest, PERMUTATION_EXCEEDANCES, latest_runs_drop};
pub use power::{
    SampleSize, clusters_needed, mde_paired, noncentral_t_sf, paired_t_power, sample_size_mcnemar,
    sample_size_noninferiority, sample_size_paired, sequential_samples_needed, t_power,
};
pub use sequential::{
    MixturePoint, mixture_rho, normal_mixture, normal_mixture_clustered, normal_mixture_from, prpl_eb_cs,
    prpl_eb_lower,
};
pub use verdict::{Evidence, Verdict, verdict};
pub use wilcoxon::{Wilcoxon, WilcoxonMethod, ZeroMethod, wilcoxon};
