//! Seeded simulations of whole schedules through the product's decision function
//! ([`evaltap_drift::assess_run`] with the shipped policy): how often an unchanged model raises
//! a false alert over 30 runs, and how many runs after a real drop the alert comes.
//!
//! The world: a golden set of `items` questions; a model answers each correctly or not, either
//! the same way every run (as the simulated upstream's models do) or afresh each run (a model
//! sampled at temperature > 0); a judge scores a correct answer 10 and a wrong one 2 on 1–10,
//! except that 5% of its scores, drawn afresh per call, are random.

use std::collections::BTreeMap;

use evaltap_drift::{DriftPolicy, RunScores, assess_run};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const JUDGE_NOISE: f64 = 0.05;
const RUNS: usize = 30;

#[derive(Clone, Copy, Debug)]
enum Model {
    /// Right or wrong on an item the same way every run.
    Fixed,
    /// Right with probability `accuracy` on every item, afresh each run.
    Sampled,
}

struct World {
    model: Model,
    difficulty: Vec<f64>,
    rng: ChaCha8Rng,
}

impl World {
    fn new(model: Model, items: usize, seed: u64) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let difficulty = (0..items).map(|_| rng.random::<f64>()).collect();
        World { model, difficulty, rng }
    }

    /// One run's normalized `correctness` scores at `accuracy`.
    fn run(&mut self, accuracy: f64) -> RunScores {
        let mut scores = BTreeMap::new();
        for (i, difficulty) in self.difficulty.iter().enumerate() {
            let correct = match self.model {
                Model::Fixed => *difficulty < accuracy,
                Model::Sampled => self.rng.random::<f64>() < accuracy,
            };
            let raw = if self.rng.random::<f64>() < JUDGE_NOISE {
                f64::from(self.rng.random_range(1..=10u8))
            } else if correct {
                10.0
            } else {
                2.0
            };
            scores.insert(format!("q{i}"), (raw - 1.0) / 9.0);
        }
        BTreeMap::from([("correctness".to_string(), scores)])
    }
}

/// Runs a schedule: the reference runs at 0.92, then up to `RUNS` runs at `accuracy(k)`;
/// returns the first run (counted from 0 after the reference) from `from` on that opens an
/// alert, and stops there.
fn first_alert_from(
    world: &mut World,
    accuracy: impl Fn(usize) -> f64,
    from: usize,
    seed: u64,
) -> Option<usize> {
    let policy = DriftPolicy::with_margin(0.02);
    let reference: Vec<RunScores> = (0..policy.reference_runs).map(|_| world.run(0.92)).collect();
    let mut previous: Option<RunScores> = None;
    (0..RUNS).find(|&k| {
        let run = world.run(accuracy(k));
        let assessed = assess_run(&policy, &reference, previous.as_ref(), &run, seed * 1000 + k as u64);
        previous = Some(run);
        k >= from && assessed.iter().any(|r| r.dropped)
    })
}

#[test]
fn an_unchanged_model_raises_a_false_alert_in_at_most_5_percent_of_30_run_schedules() {
    for model in [Model::Fixed, Model::Sampled] {
        for items in [24, 200] {
            let schedules = 600;
            let alerted = (0..schedules)
                .filter(|&s| {
                    let mut world = World::new(model, items, s);
                    first_alert_from(&mut world, |_| 0.92, 0, s).is_some()
                })
                .count();
            let rate = alerted as f64 / schedules as f64;
            println!(
                "{model:?} model, {items} items: false alert in {:.1}% of {RUNS}-run schedules",
                rate * 100.0
            );
            assert!(rate <= 0.05, "{model:?}, {items} items: {rate}");
        }
    }
}

#[test]
fn a_drop_from_0_92_to_0_60_alerts_within_the_stated_delay() {
    // The drop starts at run 10; the delay is how many runs after it the first alert comes
    // (0: the first run after the drop alerts). Per world: the delay stated in the README and
    // the share of schedules that must alert within it.
    let drop_at = 10;
    let settings = [
        (Model::Fixed, 200, 0, 0.99),
        (Model::Sampled, 200, 0, 0.99),
        (Model::Fixed, 24, 1, 0.90),
        (Model::Sampled, 24, 3, 0.85),
    ];
    for (model, items, within, at_least) in settings {
        let schedules = if items > 100 { 100 } else { 200 };
        let delays: Vec<Option<usize>> = (0..schedules)
            .map(|s| {
                let mut world = World::new(model, items, 10_000 + s);
                let accuracy = |k| if k >= drop_at { 0.60 } else { 0.92 };
                first_alert_from(&mut world, accuracy, drop_at, 10_000 + s).map(|k| k - drop_at)
            })
            .collect();
        let share = |k: usize| delays.iter().filter(|d| **d == Some(k)).count() as f64 / schedules as f64;
        let on_time = (0..=within).map(share).sum::<f64>();
        println!(
            "{model:?} model, {items} items: the first alert comes 0 / 1 / 2 / 3 runs after the drop in \
             {:.0}% / {:.0}% / {:.0}% / {:.0}% of {schedules} schedules",
            share(0) * 100.0,
            share(1) * 100.0,
            share(2) * 100.0,
            share(3) * 100.0
        );
        assert!(on_time >= at_least, "{model:?}, {items} items: {on_time} within {within}: {delays:?}");
    }
}
