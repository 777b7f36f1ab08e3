//! A permutation test for a drop in the latest of several replicate runs over fixed items
//! (docs/statistics.md §6): with no change an item's runs are exchangeable, so which of them
//! are the latest is a uniform draw. Exact under that exchangeability, whatever the scores'
//! distribution (sparse judge noise, pass/fail, ties).

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// Draws stop early once this many permutations are at least as low as the observed drop
/// (Besag and Clifford's sequential p-value, valid at any stopping point): a run like its
/// reference costs a few dozen draws, a real drop up to the most allowed.
pub const PERMUTATION_EXCEEDANCES: usize = 20;

/// The outcome of [`latest_runs_drop`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropTest {
    /// Items compared.
    pub n: usize,
    /// Mean over items of the earlier runs' mean score.
    pub reference_mean: f64,
    /// Mean over items of the latest runs' mean score.
    pub latest_mean: f64,
    /// One-sided p-value of "the latest runs are lower".
    pub p_value: f64,
    /// Permutations drawn.
    pub draws: usize,
}

impl DropTest {
    /// `latest_mean − reference_mean`.
    pub fn delta(&self) -> f64 {
        self.latest_mean - self.reference_mean
    }
}

/// Tests whether the last `latest` values of each row (an item's scores over runs, oldest
/// first) are lower than its earlier ones, against every choice of `latest` of the row's runs,
/// drawing at most `max_draws` choices from `seed`. Rows with a missing or non-finite value are
/// left out; with none left (or no earlier run), p = 1.
pub fn latest_runs_drop(rows: &[Vec<f64>], latest: usize, max_draws: usize, seed: u64) -> DropTest {
    drop_test(rows, latest, max_draws, PERMUTATION_EXCEEDANCES, seed)
}

/// [`latest_runs_drop`] stopping after `exceedances` draws as low as observed.
fn drop_test(rows: &[Vec<f64>], latest: usize, max_draws: usize, exceedances: usize, seed: u64) -> DropTest {
    let runs = rows.iter().map(Vec::len).max().unwrap_or(0);
    let rows: Vec<&Vec<f64>> =
        rows.iter().filter(|r| r.len() == runs && r.iter().all(|x| x.is_finite())).collect();
    if rows.is_empty() || latest == 0 || latest >= runs {
        return DropTest { n: 0, reference_mean: 0.0, latest_mean: 0.0, p_value: 1.0, draws: 0 };
    }
    let (n, m, k) = (rows.len() as f64, latest as f64, (runs - latest) as f64);
    let reference_mean = rows.iter().map(|r| r[..runs - latest].iter().sum::<f64>() / k).sum::<f64>() / n;
    let latest_mean = rows.iter().map(|r| r[runs - latest..].iter().sum::<f64>() / m).sum::<f64>() / n;
    // An item's difference when the runs in L are the latest: ΣL/m − (Σ − ΣL)/k. Items whose
    // runs all agree give 0 under every choice and are left out of the draws.
    let varying: Vec<(&Vec<f64>, f64)> = rows
        .iter()
        .filter(|r| r.iter().any(|x| (x - r[0]).abs() > 1e-12))
        .map(|r| (*r, r.iter().sum::<f64>()))
        .collect();
    let difference = |total: f64, chosen: f64| chosen / m - (total - chosen) / k;
    let observed: f64 =
        varying.iter().map(|(r, total)| difference(*total, r[runs - latest..].iter().sum())).sum();
    // Ties count as "at least as low", which keeps the p-value valid for discrete scores.
    let tolerance = 1e-9 * (1.0 + observed.abs());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..runs).collect();
    let (mut draws, mut as_low) = (0usize, 0usize);
    while draws < max_draws && as_low < exceedances {
        draws += 1;
        let mut permuted = 0.0;
        for (row, total) in &varying {
            // A uniform choice of `latest` runs: the first steps of a Fisher–Yates shuffle.
            let mut chosen = 0.0;
            for j in 0..latest {
                order.swap(j, rng.random_range(j..runs));
                chosen += row[order[j]];
            }
            permuted += difference(*total, chosen);
        }
        if permuted <= observed + tolerance {
            as_low += 1;
        }
    }
    let p_value = if as_low >= exceedances {
        as_low as f64 / draws as f64
    } else {
        (as_low + 1) as f64 / (draws + 1) as f64
    };
    DropTest { n: rows.len(), reference_mean, latest_mean, p_value, draws }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact p-value with one latest run, by enumerating every assignment (tiny inputs).
    fn exact(rows: &[Vec<f64>]) -> f64 {
        let runs = rows[0].len();
        let delta = |pick: &[usize]| -> f64 {
            rows.iter()
                .zip(pick)
                .map(|(r, &j)| r[j] - (r.iter().sum::<f64>() - r[j]) / (runs - 1) as f64)
                .sum()
        };
        let observed = delta(&vec![runs - 1; rows.len()]);
        let total = runs.pow(rows.len() as u32);
        let as_low = (0..total)
            .filter(|code| {
                let pick: Vec<usize> = (0..rows.len()).map(|i| code / runs.pow(i as u32) % runs).collect();
                delta(&pick) <= observed + 1e-9
            })
            .count();
        as_low as f64 / total as f64
    }

    #[test]
    fn agrees_with_exact_enumeration() {
        let rows = vec![
            vec![1.0, 1.0, 0.9, 0.2],
            vec![0.8, 0.7, 0.9, 0.6],
            vec![1.0, 1.0, 1.0, 1.0],
            vec![0.5, 0.6, 0.4, 0.3],
            vec![0.9, 1.0, 1.0, 0.95],
        ];
        let enumerated = exact(&rows);
        // Every draw taken: the Monte Carlo p within 4 of its standard errors of the exact one.
        let test = drop_test(&rows, 1, 200_000, usize::MAX, 1);
        let error = (enumerated * (1.0 - enumerated) / 200_000.0).sqrt();
        assert!((test.p_value - enumerated).abs() < 4.0 * error, "{test:?} vs exact {enumerated}");
        assert!((test.delta() - (0.61 - 0.8466666666666667)).abs() < 1e-12, "{test:?}");
        // Stopping at 20 draws as low: an unremarkable run costs a few dozen draws.
        let flat = vec![vec![0.5, 0.6, 0.55, 0.6], vec![0.7, 0.6, 0.65, 0.6], vec![0.2, 0.3, 0.25, 0.3]];
        let quick = latest_runs_drop(&flat, 1, 200_000, 2);
        assert!(quick.draws < 200 && exact(&flat) > 0.2 && quick.p_value > 0.1, "{quick:?}");
    }

    #[test]
    fn with_nothing_changed_the_p_value_is_valid_at_every_level() {
        // 2,000 schedules' runs of 24 items, judged with sparse noise (5% of scores random):
        // P(p ≤ a) ≤ a up to simulation error, with early stopping as shipped.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut p_values = Vec::new();
        for trial in 0..2000 {
            let rows: Vec<Vec<f64>> = (0..24)
                .map(|_| {
                    let correct = rng.random::<f64>() < 0.9;
                    (0..4)
                        .map(|_| match rng.random::<f64>() < 0.05 {
                            true => f64::from(rng.random_range(0..10u8)) / 9.0,
                            false if correct => 1.0,
                            false => 1.0 / 9.0,
                        })
                        .collect()
                })
                .collect();
            p_values.push(latest_runs_drop(&rows, 1 + trial as usize % 2, 20_000, trial).p_value);
        }
        for level in [0.01, 0.05, 0.2, 0.5] {
            let share = p_values.iter().filter(|p| **p <= level).count() as f64 / 2000.0;
            let error = (level * (1.0 - level) / 2000.0).sqrt();
            assert!(share <= level + 3.0 * error, "P(p ≤ {level}) = {share}");
        }
    }

    #[test]
    fn identical_runs_and_missing_values_never_look_like_a_drop() {
        let same = vec![vec![1.0, 1.0, 1.0, 1.0]; 50];
        assert_eq!(latest_runs_drop(&same, 1, 1000, 3).p_value, 1.0);
        let ragged = vec![vec![1.0, f64::NAN, 1.0, 0.0], vec![1.0]];
        let test = latest_runs_drop(&ragged, 1, 1000, 3);
        assert_eq!((test.n, test.p_value), (0, 1.0));
        assert_eq!(latest_runs_drop(&[], 1, 1000, 3).p_value, 1.0);
        assert_eq!(latest_runs_drop(&same, 4, 1000, 3).p_value, 1.0, "no earlier run");
    }

    #[test]
    fn a_drop_on_several_items_is_as_unlikely_as_its_permutations_say() {
        // Eight of 24 items fall from 1 to 0.11 in the latest run: the exact p is 4⁻⁸.
        let rows: Vec<Vec<f64>> =
            (0..24).map(|i| if i < 8 { vec![1.0, 1.0, 1.0, 0.11] } else { vec![1.0; 4] }).collect();
        let test = latest_runs_drop(&rows, 1, 20_000, 4);
        // 20,000 draws see the observed choice (chance 4⁻⁸ each) about 0.3 times.
        assert!(test.p_value <= 3.0 / 20_001.0, "{test:?}");
        assert_eq!(test.draws, 20_000);
        // Four items low in both of the two latest runs: the exact p is C(5, 2)⁻⁴ = 1e-4.
        let rows: Vec<Vec<f64>> =
            (0..24).map(|i| if i < 4 { vec![1.0, 1.0, 1.0, 0.11, 0.11] } else { vec![1.0; 5] }).collect();
        let test = drop_test(&rows, 2, 400_000, usize::MAX, 5);
        assert!((test.p_value - 1e-4).abs() < 4.0 * (1e-4 / 400_000.0f64).sqrt(), "{test:?}");
        assert!((test.delta() - (0.11 - 1.0) / 6.0).abs() < 1e-12, "{test:?}");
    }
}
