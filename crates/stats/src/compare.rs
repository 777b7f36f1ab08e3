//! A full paired comparison of one candidate on one rubric, and the family step (Holm, BH,
//! verdicts) across every candidate × rubric of an experiment.

use serde::{Deserialize, Serialize};

use crate::{
    Evidence, Verdict, WilcoxonMethod, ZeroMethod, benjamini_hochberg, bootstrap_means, holm, mcnemar,
    no_disagreement_lower_bound, no_disagreement_p_value, no_disagreement_samples_needed, noninferiority,
    normal_mixture_clustered, normal_mixture_from, paired_differences, paired_t_clustered,
    percentile_interval, sample_size_noninferiority, sample_size_paired, verdict, wilcoxon,
};

/// Which statistics the verdict was decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The always-valid p-value and confidence sequence: results are being watched as they
    /// land (an experiment still running).
    Sequential,
    /// The fixed-n t-test and interval at the planned sample size.
    FixedN,
}

/// Settings of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareOptions {
    /// Significance level (two-sided).
    pub alpha: f64,
    /// Non-inferiority margin on the score scale.
    pub margin: f64,
    /// Power for sample-size advice.
    pub power: f64,
    /// Which statistics decide the verdict.
    pub basis: Basis,
    /// Planned sample size; tunes the confidence sequence (N*).
    pub planned_n: Option<usize>,
    /// The confidence sequence's level when not `alpha`: one of m tests sharing α runs at α/m
    /// (Bonferroni), so any false call among them, whichever is stopped on, stays within α.
    pub sequence_alpha: Option<f64>,
    /// Bootstrap resamples (0 skips the bootstrap).
    pub bootstrap_resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl CompareOptions {
    fn default_alpha() -> f64 {
        CompareOptions::default().alpha
    }
    /// The level the confidence sequence and the always-valid p-value are computed at.
    pub fn sequence_level(&self) -> f64 {
        self.sequence_alpha.unwrap_or(self.alpha)
    }
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: 0.05,
            margin: 0.02,
            power: 0.8,
            basis: Basis::FixedN,
            planned_n: None,
            sequence_alpha: None,
            bootstrap_resamples: 10_000,
            seed: 0x5eed,
        }
    }
}

/// Sequential monitoring needs this many pairs (and σ̂ > 0) before it decides anything; its
/// always-valid p-value and confidence sequence accumulate only from here (the burn-in).
pub const SEQUENTIAL_MIN_N: usize = 30;

/// With clustered pairs, sequential monitoring also waits for this many clusters: the
/// clustered error of fewer is too uncertain to lean on (docs/statistics.md §3).
pub const SEQUENTIAL_MIN_CLUSTERS: usize = 10;

/// A fixed-n verdict needs at least this many pairs: below it a t-interval rests on a variance
/// estimate too rough to decide a model swap on.
pub const FIXED_N_MIN_N: usize = 10;

/// Whether every score of both samples is 0 or 1 (pass/fail rubrics and checks).
pub fn is_binary(baseline: &[f64], candidate: &[f64]) -> bool {
    !baseline.is_empty() && baseline.iter().chain(candidate).all(|&x| x == 0.0 || x == 1.0)
}

/// Discordant pairs of pass/fail scores and McNemar's exact test on them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McNemarCounts {
    /// Pairs that pass on the baseline only.
    pub baseline_only: u64,
    /// Pairs that pass on the candidate only.
    pub candidate_only: u64,
    /// Exact two-sided McNemar p-value.
    pub p_exact: f64,
}

/// One candidate × rubric comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comparison {
    /// Pairs.
    pub n: usize,
    /// Mean baseline score.
    pub baseline_mean: f64,
    /// Mean candidate score.
    pub candidate_mean: f64,
    /// Mean paired difference.
    pub delta: f64,
    /// Standard deviation of the differences.
    pub sd_delta: f64,
    /// Fixed-n two-sided (1 − α) t-interval (clustered when clusters were given).
    pub ci_low: f64,
    /// See `ci_low`.
    pub ci_high: f64,
    /// Fixed-n two-sided paired t-test p-value.
    pub p_value: f64,
    /// Clusters used for the standard error, if any.
    pub clusters: Option<usize>,
    /// One-sided non-inferiority t-test p-value at the margin.
    pub p_noninferiority: f64,
    /// One-sided (1 − α) lower bound of the difference.
    pub ni_lower_bound: f64,
    /// Always-valid p-value (normal-mixture mSPRT), valid under continuous monitoring.
    pub p_value_sequential: f64,
    /// Confidence sequence (running intersection) at level 1 − α.
    pub cs_low: f64,
    /// See `cs_low`.
    pub cs_high: f64,
    /// Wilcoxon signed-rank p-value (Pratt), a robustness check.
    pub p_value_wilcoxon: f64,
    /// Bootstrap percentile interval of the difference (resampling clusters when given).
    #[schema(value_type = Option<Vec<f64>>)]
    pub bootstrap_ci: Option<(f64, f64)>,
    /// Bootstrap resamples drawn (fewer than asked when the data are large: see
    /// `bootstrap_mc_error`).
    pub bootstrap_resamples: usize,
    /// Monte Carlo standard error of the bootstrap interval's endpoints.
    pub bootstrap_mc_error: Option<f64>,
    /// Which statistics the verdict used.
    pub basis: Basis,
    /// Holm-adjusted p-value of the basis's test across the family.
    pub p_holm: f64,
    /// Benjamini–Hochberg q-value across the family.
    pub q_value: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// For an inconclusive verdict: pairs needed in all to settle it at the observed variance.
    pub samples_needed: Option<u64>,
    /// For an inconclusive clustered comparison: clusters needed in all (the t on C − 1 df),
    /// of the observed mean size; `samples_needed` is that many clusters' pairs.
    #[serde(default)]
    pub clusters_needed: Option<u64>,
    /// For an inconclusive verdict: pairs the running (always-valid) report needs to settle it,
    /// when acting before the experiment is done — more than `samples_needed`.
    #[serde(default)]
    pub samples_needed_sequential: Option<u64>,
    /// Why statistics are degenerate or missing, when they are.
    pub note: Option<String>,
    /// The candidate is significantly lower (adjusted p < α, Δ < 0). Beside a `non-inferior`
    /// verdict it says the drop is real but shown to be within the margin.
    pub significantly_lower: bool,
    /// For pass/fail scores: McNemar's exact test, which then decides fixed-n verdicts (the
    /// paired t stays beside it in `p_value`).
    pub mcnemar: Option<McNemarCounts>,
    /// Variance inflation from clustering, (clustered SE / unclustered SE)²; sample-size advice
    /// is multiplied by it.
    pub design_effect: Option<f64>,
    /// The planned sample size the confidence sequence is tuned to (N*).
    pub planned_n: Option<usize>,
    /// The α the confidence sequence was computed at (α itself, or its share in a family).
    #[serde(default = "CompareOptions::default_alpha")]
    pub sequence_alpha: f64,
    /// Set when the statistics could not be computed (the note says why): never decided.
    #[serde(skip)]
    undecidable: bool,
    /// Every pair agrees exactly on scores within [0, 1]: the exact bound of
    /// [`no_disagreement_lower_bound`] stands in for the degenerate t-interval.
    #[serde(skip)]
    no_disagreement: bool,
}

impl Comparison {
    /// The p-value the verdict is based on, before adjustment.
    pub fn basis_p_value(&self) -> f64 {
        match (self.basis, &self.mcnemar) {
            (Basis::Sequential, _) => self.p_value_sequential,
            (Basis::FixedN, Some(m)) => m.p_exact,
            (Basis::FixedN, None) => self.p_value,
        }
    }

    fn evidence(&self) -> Evidence {
        match self.basis {
            Basis::Sequential => Evidence {
                delta: self.delta,
                p_adjusted: self.p_holm,
                ni_lower_bound: self.cs_low,
                // With every pair agreeing, the exact bound (valid under monitoring) decides.
                enough_data: !self.undecidable
                    && self.n >= SEQUENTIAL_MIN_N
                    && (self.sd_delta > 0.0 || self.no_disagreement),
            },
            Basis::FixedN => Evidence {
                delta: self.delta,
                p_adjusted: self.p_holm,
                ni_lower_bound: self.ni_lower_bound,
                // Zero variance with no difference: the exact bound on the rate of disagreeing
                // pairs decides; with a constant non-zero difference the exact sign test speaks.
                enough_data: !self.undecidable
                    && self.n >= FIXED_N_MIN_N
                    && (self.sd_delta > 0.0 || self.delta != 0.0 || self.no_disagreement),
            },
        }
    }
}

/// Compares paired scores given in arrival order (the order matters only to the sequential
/// statistics). `clusters` gives one key per pair when pairs share a conversation, session or
/// user. The verdict is provisional until [`decide_family`] adjusts across the family.
pub fn compare_paired(
    baseline: &[f64],
    candidate: &[f64],
    clusters: Option<&[String]>,
    options: &CompareOptions,
) -> Comparison {
    let empty = |note: String| Comparison {
        n: baseline.len().min(candidate.len()),
        baseline_mean: 0.0,
        candidate_mean: 0.0,
        delta: 0.0,
        sd_delta: 0.0,
        // Nothing is known: the whole range a difference of [0, 1] scores can take.
        ci_low: -1.0,
        ci_high: 1.0,
        p_value: 1.0,
        clusters: None,
        p_noninferiority: 1.0,
        ni_lower_bound: -1.0,
        p_value_sequential: 1.0,
        cs_low: -1.0,
        cs_high: 1.0,
        p_value_wilcoxon: 1.0,
        bootstrap_ci: None,
        bootstrap_resamples: 0,
        bootstrap_mc_error: None,
        basis: options.basis,
        p_holm: 1.0,
        q_value: 1.0,
        verdict: Verdict::Inconclusive,
        samples_needed: None,
        clusters_needed: None,
        samples_needed_sequential: None,
        note: Some(note),
        significantly_lower: false,
        mcnemar: None,
        design_effect: None,
        planned_n: options.planned_n,
        sequence_alpha: options.sequence_level(),
        undecidable: true,
        no_disagreement: false,
    };
    if !(options.margin.is_finite() && options.margin >= 0.0) {
        return empty(format!("the non-inferiority margin must be a number ≥ 0, got {}", options.margin));
    }
    if !(options.alpha > 0.0 && options.alpha < 1.0) {
        return empty(format!("alpha must be within (0, 1), got {}", options.alpha));
    }
    let diffs = match paired_differences(baseline, candidate, 1) {
        Ok(d) => d,
        Err(err) => return empty(err.to_string()),
    };
    let t = match paired_t_clustered(baseline, candidate, clusters, options.alpha) {
        Ok(t) => t,
        Err(err) => {
            let mut c = empty(err.to_string());
            // Too few (or cancelling) clusters: how many there are, beside the note.
            if let Some(keys) = clusters {
                c.clusters = Some(keys.iter().collect::<std::collections::BTreeSet<_>>().len());
            }
            c.baseline_mean = crate::mean(baseline);
            c.candidate_mean = crate::mean(candidate);
            c.delta = c.candidate_mean - c.baseline_mean;
            c.sd_delta = if diffs.len() > 1 { crate::variance(&diffs).sqrt() } else { 0.0 };
            return c;
        }
    };
    let ni = noninferiority(&t, options.margin, options.alpha);
    let n_star = options.planned_n.unwrap_or(diffs.len()).max(2) as f64;
    let labels: Option<Vec<usize>> = clusters.map(|keys| {
        let mut ids = std::collections::HashMap::new();
        keys.iter()
            .map(|k| {
                let next = ids.len();
                *ids.entry(k).or_insert(next)
            })
            .collect()
    });
    // Clustered pairs (fewer clusters than pairs) are monitored with the clustered variance.
    let monitored = match labels.as_deref().filter(|_| t.clusters.is_some()) {
        Some(labels) => normal_mixture_clustered(
            &diffs,
            labels,
            0.0,
            options.sequence_level(),
            n_star,
            (SEQUENTIAL_MIN_N, SEQUENTIAL_MIN_CLUSTERS),
        ),
        None => normal_mixture_from(&diffs, 0.0, options.sequence_level(), n_star, SEQUENTIAL_MIN_N),
    };
    let (p_seq, cs) = match monitored.last() {
        Some(point) if point.n >= SEQUENTIAL_MIN_N => (point.p_value, point.cs_intersection),
        _ => (1.0, (-1.0, 1.0)),
    };
    let cs = if cs.0.is_finite() && cs.1.is_finite() { cs } else { (-1.0, 1.0) };
    let bootstrap_ci = (options.bootstrap_resamples > 0)
        .then(|| {
            let thetas =
                bootstrap_means(&diffs, labels.as_deref(), options.bootstrap_resamples, options.seed);
            let interval = percentile_interval(&thetas, options.alpha)?;
            Some((interval, thetas.len(), crate::percentile_mc_error(&thetas, options.alpha)))
        })
        .flatten();
    let (bootstrap_ci, bootstrap_resamples, bootstrap_mc_error) = match bootstrap_ci {
        Some((ci, used, error)) => (Some(ci), used, Some(error).filter(|e| e.is_finite())),
        None => (None, 0, None),
    };
    let mcnemar = is_binary(baseline, candidate).then(|| {
        let baseline_only = baseline.iter().zip(candidate).filter(|(b, c)| **b > **c).count() as u64;
        let candidate_only = baseline.iter().zip(candidate).filter(|(b, c)| **c > **b).count() as u64;
        McNemarCounts {
            baseline_only,
            candidate_only,
            p_exact: mcnemar(baseline_only, candidate_only).p_exact,
        }
    });
    let design_effect = t.clusters.filter(|_| t.sd_delta > 0.0).map(|_| {
        let unclustered_se = t.sd_delta / (t.n as f64).sqrt();
        (t.se / unclustered_se).powi(2)
    });
    let mut note = t.note.clone();
    if diffs.len() < FIXED_N_MIN_N {
        note.get_or_insert_with(|| format!("a verdict needs at least {FIXED_N_MIN_N} pairs"));
    }
    if options.basis == Basis::Sequential && (diffs.len() < SEQUENTIAL_MIN_N || t.sd_delta == 0.0) {
        note.get_or_insert_with(|| {
            format!("sequential monitoring decides from {SEQUENTIAL_MIN_N} pairs with non-zero variance")
        });
    }
    if options.basis == Basis::Sequential && t.clusters.is_some_and(|c| c < SEQUENTIAL_MIN_CLUSTERS) {
        note.get_or_insert_with(|| {
            format!(
                "sequential monitoring of clustered pairs decides from {SEQUENTIAL_MIN_CLUSTERS} clusters"
            )
        });
    }
    let mut comparison = Comparison {
        n: t.n,
        baseline_mean: t.baseline_mean,
        candidate_mean: t.candidate_mean,
        delta: t.mean_delta,
        sd_delta: t.sd_delta,
        ci_low: t.ci_low,
        ci_high: t.ci_high,
        p_value: t.p_value,
        clusters: t.clusters,
        p_noninferiority: ni.p_value,
        ni_lower_bound: ni.lower_bound,
        p_value_sequential: p_seq,
        cs_low: cs.0,
        cs_high: cs.1,
        p_value_wilcoxon: wilcoxon(&diffs, ZeroMethod::Pratt, false, WilcoxonMethod::Auto).p_value,
        bootstrap_ci,
        bootstrap_resamples,
        bootstrap_mc_error,
        basis: options.basis,
        p_holm: 1.0,
        q_value: 1.0,
        verdict: Verdict::Inconclusive,
        samples_needed: None,
        clusters_needed: None,
        samples_needed_sequential: None,
        note,
        significantly_lower: false,
        mcnemar,
        design_effect,
        planned_n: options.planned_n,
        sequence_alpha: options.sequence_level(),
        undecidable: false,
        // The bound needs the scores' range: [0, 1], as rubric scores and checks are.
        no_disagreement: t.sd_delta == 0.0
            && t.mean_delta == 0.0
            && baseline.iter().chain(candidate).all(|x| (0.0..=1.0).contains(x)),
    };
    if comparison.no_disagreement {
        // The t-interval degenerates to a point; what n identical pairs show is the exact bound.
        let bound = no_disagreement_lower_bound(comparison.n, options.alpha);
        comparison.ni_lower_bound = bound;
        comparison.p_noninferiority = no_disagreement_p_value(comparison.n, options.margin);
        // Not a zero-width interval: no disagreement in n pairs bounds the share of items on
        // either side, each worth at most 1.
        (comparison.ci_low, comparison.ci_high) = (bound, -bound);
        if comparison.n >= SEQUENTIAL_MIN_N {
            (comparison.cs_low, comparison.cs_high) = (bound, -bound);
        }
        if comparison.n >= FIXED_N_MIN_N {
            comparison.note = Some(format!(
                "every pair agrees: with {} pairs the candidate is lower on at most {:.1}% of items (exact bound)",
                comparison.n,
                -bound * 100.0
            ));
        }
    }
    decide_family(std::slice::from_mut(&mut comparison), options);
    comparison
}

/// Pairs needed in all to settle a comparison whose differences have sd `sd_delta` and mean
/// `delta`: the non-inferiority sample size when Δ > −margin, else the two-sided test's (exact
/// noncentral t), multiplied by the design effect when pairs are clustered (each clustered
/// pair carries less information). `None` when no finite n would settle it.
pub fn samples_to_settle(
    sd_delta: f64,
    delta: f64,
    design_effect: Option<f64>,
    options: &CompareOptions,
) -> Option<u64> {
    if !(sd_delta > 0.0 && sd_delta.is_finite() && delta.is_finite()) {
        return None;
    }
    let needed = if delta > -options.margin {
        sample_size_noninferiority(sd_delta, delta, options.margin, options.alpha, options.power)
    } else {
        sample_size_paired(sd_delta, delta, options.alpha, options.power).map(|s| s.n_exact)
    };
    let inflation = design_effect.unwrap_or(1.0).max(1.0);
    needed.map(|n| n * inflation).filter(|n| n.is_finite() && *n < 1e15).map(|n| n.ceil() as u64)
}

/// Adjusts the family's p-values (Holm for verdicts, BH q-values beside them), then decides
/// each verdict and, for inconclusive ones, the sample size that would settle them.
pub fn decide_family(family: &mut [Comparison], options: &CompareOptions) {
    let p: Vec<f64> = family.iter().map(Comparison::basis_p_value).collect();
    let adjusted = holm(&p);
    let q = benjamini_hochberg(&p);
    for ((c, p_holm), q_value) in family.iter_mut().zip(adjusted).zip(q) {
        c.p_holm = p_holm;
        c.q_value = q_value;
        c.verdict = verdict(&c.evidence(), options.alpha, options.margin);
        // Only beside `non-inferior` does "significantly lower" add anything: a `worse` row is
        // lower by definition, and is not within the margin.
        c.significantly_lower =
            c.verdict == Verdict::NonInferior && c.p_holm < options.alpha && c.delta < 0.0;
        let advise = c.verdict == Verdict::Inconclusive && !c.undecidable;
        // The distance to show: to −margin (one-sided) when Δ is above it, else to 0.
        let (effect, one_sided) =
            if c.delta > -options.margin { (c.delta + options.margin, true) } else { (c.delta, false) };
        c.clusters_needed = match (advise && !c.no_disagreement, c.clusters, c.design_effect) {
            (true, Some(clusters), Some(deff)) if clusters > 0 => crate::power::clusters_needed(
                c.sd_delta,
                effect,
                deff,
                c.n as f64 / clusters as f64,
                options.alpha,
                options.power,
                one_sided,
            )
            .map(|needed| needed.max(clusters as u64)),
            _ => None,
        };
        c.samples_needed = if advise {
            let needed = match (c.no_disagreement, c.clusters_needed, c.clusters) {
                (true, ..) => no_disagreement_samples_needed(options.margin, options.alpha),
                (false, Some(needed), Some(clusters)) => {
                    Some((needed as f64 * c.n as f64 / clusters as f64).ceil() as u64)
                }
                _ => samples_to_settle(c.sd_delta, c.delta, c.design_effect, options),
            };
            needed.map(|n| n.max(c.n as u64))
        } else {
            None
        };
        c.samples_needed_sequential = if advise && !c.no_disagreement {
            // The running verdict reads the two-sided sequence at α, for either boundary.
            crate::power::sequential_samples_needed(
                c.sd_delta,
                effect,
                options.sequence_level(),
                options.power,
            )
            .map(|n| (n as f64 * c.design_effect.unwrap_or(1.0).max(1.0)).ceil() as u64)
            .map(|n| n.max(c.samples_needed.unwrap_or(0)).max(c.n as u64))
        } else {
            None
        };
    }
}

#[cfg(test)]
mod tests;
