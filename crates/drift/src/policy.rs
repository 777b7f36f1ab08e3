//! The drift decision as a pure function of scores (docs/statistics.md §6): how a run is
//! compared with the reference runs, and when that opens or closes an alert.
//!
//! A schedule runs a fixed golden set, so what varies from run to run is the model's sampling
//! and the judge's, not the items: a run is tested against the reference runs item by item with
//! [`evaltap_stats::latest_runs_drop`], exact when nothing changed — the latest run alone, and
//! (from the second compared run on) the latest two pooled, which catches a drop confined to a
//! few items one run later. Each run spends α / H (Bonferroni over a horizon of H runs, split
//! between its two tests, Holm across its rubrics), so any H consecutive runs of an unchanged
//! model raise a false alert with probability at most α, whatever the dependence between runs
//! (they share the reference). Pooling the first runs as the reference keeps one lucky run from
//! setting every later comparison.

use std::collections::BTreeMap;

use serde::Serialize;

/// Scores of one run: rubric (or check) → item → normalized score.
pub type RunScores = BTreeMap<String, BTreeMap<String, f64>>;

/// How a schedule's runs are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftPolicy {
    /// The first this many finished runs form the reference.
    pub reference_runs: usize,
    /// Runs over which the false-alert rate is controlled.
    pub horizon: usize,
    /// The most probability of a false alert over `horizon` runs of an unchanged model.
    pub alpha: f64,
    /// A drop must also be larger than this to alert; back within it closes the alert.
    pub margin: f64,
    /// Most permutations drawn per test.
    pub max_draws: usize,
}

/// Reference runs pooled by the shipped policy.
pub const REFERENCE_RUNS: usize = 3;
/// The horizon the shipped policy controls false alerts over (a week of 6-hourly runs).
pub const HORIZON: usize = 30;
/// A run whose own drop has p above this shows none worth holding an alert open for: it closes
/// one (see [`RubricDrift::recovered`]). A run still down keeps a p far below it.
pub const RECOVERY_ALPHA: f64 = 0.01;

impl DriftPolicy {
    /// The shipped policy with a schedule's margin: the first 3 runs are the reference, and an
    /// unchanged model raises a false alert in at most 5% of any 30 runs.
    pub fn with_margin(margin: f64) -> DriftPolicy {
        DriftPolicy {
            reference_runs: REFERENCE_RUNS,
            horizon: HORIZON,
            alpha: 0.05,
            margin,
            max_draws: 10_000,
        }
    }

    /// The level each run is tested at: α / H.
    pub fn run_alpha(&self) -> f64 {
        self.alpha / self.horizon.max(1) as f64
    }
}

/// One rubric (or check) of a run against the reference runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RubricDrift {
    /// Rubric or `check:<name>`.
    pub rubric: String,
    /// Items scored in every reference run and in this run.
    pub n: usize,
    /// Mean over those items of the reference runs' mean score.
    pub reference_mean: f64,
    /// Mean over those items of this run's score.
    pub run_mean: f64,
    /// `run_mean − reference_mean`.
    pub delta: f64,
    /// One-sided permutation p-value of a drop in this run.
    pub p_drop: f64,
    /// The same for this run and the one before pooled (their mean against the reference),
    /// from the second compared run on.
    pub p_drop_last_two: Option<f64>,
    /// Δ of this run and the one before pooled.
    pub delta_last_two: Option<f64>,
    /// The run's p-value: the smaller of the two, doubled when there are two (Bonferroni),
    /// then adjusted across the run's rubrics (Holm).
    pub p_holm: f64,
    /// The level `p_holm` is compared with: α / H.
    pub threshold: f64,
    /// This run is below the reference by more than the margin, and the drop is significant
    /// (alone or with the run before): opens an alert.
    pub dropped: bool,
    /// This run alone is back within the margin (Δ > −margin) or shows no drop at a lenient
    /// level (p > [`RECOVERY_ALPHA`]): closes an open alert. Either is enough, since a judge's
    /// noise alone puts a recovered run's Δ below −margin now and then. (The pooled test only
    /// opens alerts: pooled with a run from before the recovery it would hold one open.)
    pub recovered: bool,
}

/// Compares `run` with the `reference` runs, rubric by rubric, on the items scored in all of
/// them; `previous` is the compared run before it, if any (never a reference run). `seed`
/// draws the permutations: derive it from the schedule and slot, so an evaluation repeats
/// exactly.
pub fn assess_run(
    policy: &DriftPolicy,
    reference: &[RunScores],
    previous: Option<&RunScores>,
    run: &RunScores,
    seed: u64,
) -> Vec<RubricDrift> {
    let mut assessed: Vec<RubricDrift> = Vec::new();
    let threshold = policy.run_alpha();
    for (index, (rubric, scores)) in run.iter().enumerate() {
        let Some(references) = reference.iter().map(|r| r.get(rubric)).collect::<Option<Vec<_>>>() else {
            continue;
        };
        let rows_with = |earlier: &[&BTreeMap<String, f64>]| -> Vec<Vec<f64>> {
            scores
                .iter()
                .filter_map(|(item, &score)| {
                    let mut row: Vec<f64> =
                        earlier.iter().map(|r| r.get(item).copied()).collect::<Option<_>>()?;
                    row.push(score);
                    Some(row)
                })
                .collect()
        };
        let seed = seed.wrapping_add(2 * index as u64);
        let alone = evaltap_stats::latest_runs_drop(&rows_with(&references), 1, policy.max_draws, seed);
        if alone.n == 0 {
            continue;
        }
        let pooled = previous.and_then(|p| p.get(rubric)).map(|previous| {
            let mut earlier = references.clone();
            earlier.push(previous);
            evaltap_stats::latest_runs_drop(&rows_with(&earlier), 2, policy.max_draws, seed + 1)
        });
        let pooled = pooled.filter(|t| t.n > 0);
        let p_run = match &pooled {
            Some(pooled) => (2.0 * alone.p_value.min(pooled.p_value)).min(1.0),
            None => alone.p_value,
        };
        assessed.push(RubricDrift {
            rubric: rubric.clone(),
            n: alone.n,
            reference_mean: alone.reference_mean,
            run_mean: alone.latest_mean,
            delta: alone.delta(),
            p_drop: alone.p_value,
            p_drop_last_two: pooled.map(|t| t.p_value),
            delta_last_two: pooled.map(|t| t.delta()),
            p_holm: p_run,
            threshold,
            dropped: false,
            recovered: alone.delta() > -policy.margin || alone.p_value > RECOVERY_ALPHA,
        });
    }
    let adjusted = evaltap_stats::holm(&assessed.iter().map(|r| r.p_holm).collect::<Vec<_>>());
    for (rubric, p_holm) in assessed.iter_mut().zip(adjusted) {
        rubric.p_holm = p_holm;
        rubric.dropped = p_holm <= threshold && rubric.delta < -policy.margin;
    }
    assessed
}
