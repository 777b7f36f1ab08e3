//! Guards: after a route is switched to a cheaper model, each run replays a sample of the
//! route's new traffic (served by the new model) against the former production model. The pairs
//! of every run since the last alert change are compared with the always-valid statistics, so
//! looking after every run keeps the false-alarm rate at α: an alert opens when the new model is
//! significantly worse and its estimated drop is beyond the margin, and closes once the runs
//! since the alert put it back within the margin.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use evaltap_stats::{
    Basis, CompareOptions, Comparison, SEQUENTIAL_MIN_N, Verdict, compare_paired, decide_family,
};
use evaltap_store::{BASELINE, Experiment, Filter, GuardSpec, Schedule, ScheduleRun, ScheduleSpec};
use evaltap_worker::ExperimentRequest;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{DriftContext, DriftError, TickReport, deliver};

/// Significance level of a guard's alerts, across its rubrics (Holm).
pub const GUARD_ALPHA: f64 = 0.05;

/// A guard's open alert closes only when a drop is no longer significant at this level.
pub const RECOVERY_P: f64 = 0.01;

/// The always-valid statistics are tuned to this many runs' worth of pairs (any fixed choice
/// keeps them valid; it sets where they are most sensitive).
const TUNED_RUNS: usize = 5;

/// A new guard.
#[derive(Debug, Clone)]
pub struct NewGuard {
    /// Name (default `guard:<route>`).
    pub name: Option<String>,
    /// What it watches.
    pub guard: GuardSpec,
    /// Period between runs.
    pub every: Duration,
    /// Rubrics the two models are judged on.
    pub rubrics: Vec<String>,
    /// How far worse than the former production model the new one may be.
    pub margin: f64,
}

/// Creates a guard (a schedule whose runs are guard runs) after checking what it will run.
pub async fn add_guard(ctx: &DriftContext, new: NewGuard) -> Result<Schedule, DriftError> {
    if new.every < Duration::from_secs(60) {
        return Err(DriftError::Invalid("a guard runs at most once a minute".into()));
    }
    if ctx.config.candidate(&new.guard.former).is_none() {
        return Err(DriftError::Invalid(format!(
            "unknown candidate `{}`: the former production model is replayed as a candidate of evaltap.toml",
            new.guard.former
        )));
    }
    if !(0.0..1.0).contains(&new.margin) {
        return Err(DriftError::Invalid(format!("margin must be within [0, 1), got {}", new.margin)));
    }
    if new.guard.sample < SEQUENTIAL_MIN_N {
        return Err(DriftError::Invalid(format!(
            "a guard replays at least {SEQUENTIAL_MIN_N} exchanges a run"
        )));
    }
    if new.rubrics.is_empty() {
        return Err(DriftError::Invalid("a guard needs at least one rubric".into()));
    }
    for rubric in &new.rubrics {
        match ctx.rubrics.get(rubric) {
            Ok(r) if r.mode == evaltap_judge::Mode::Pairwise => {
                return Err(DriftError::Invalid(format!("a guard judges pointwise; `{rubric}` is pairwise")));
            }
            Ok(_) => {}
            Err(e) => return Err(DriftError::Invalid(e.to_string())),
        }
    }
    let guard = new.guard;
    let schedule = Schedule {
        id: uuid::Uuid::now_v7().to_string(),
        name: new.name.unwrap_or_else(|| format!("guard:{}", guard.route)),
        dataset: format!("{}={} traffic", guard.tag, guard.route),
        version: String::new(),
        candidate: guard.former.clone(),
        every_seconds: new.every.as_secs() as i64,
        spec: ScheduleSpec {
            rubrics: new.rubrics,
            checks: Vec::new(),
            margin: new.margin,
            guard: Some(guard),
        },
        paused: false,
        reference_experiment: None,
        created_at: Utc::now(),
    };
    ctx.store.create_schedule(&schedule).await?;
    Ok(schedule)
}

/// The experiment of a guard's run: the route's traffic from the new model received since the
/// previous run started (since the guard was made, for the first), replayed against the former
/// production model. `None` when no new traffic arrived: nothing to run, and nothing wrong.
pub(crate) async fn run_request(
    ctx: &DriftContext,
    schedule: &Schedule,
    guard: &GuardSpec,
    slot: i64,
) -> Result<Option<ExperimentRequest>, DriftError> {
    let mut since: DateTime<Utc> = schedule.created_at;
    for run in ctx.store.schedule_runs(&schedule.id).await?.iter().rev() {
        if let Some(id) = &run.experiment_id
            && let Some(previous) = ctx.store.experiment(id).await?
        {
            since = previous.created_at;
            break;
        }
    }
    let filter = Filter {
        source: guard.source.clone(),
        model: Some(guard.model.clone()),
        since: Some(since),
        tags: [(guard.tag.clone(), guard.route.clone())].into(),
        ..Filter::default()
    };
    if ctx.store.matching_exchange_ids(&filter).await?.is_empty() {
        return Ok(None);
    }
    Ok(Some(ExperimentRequest {
        name: format!("{}#{slot}", schedule.name),
        candidates: vec![guard.former.clone()],
        rubrics: schedule.spec.rubrics.clone(),
        sample_size: Some(guard.sample),
        filter,
        margin: Some(schedule.spec.margin),
        spend_cap_usd: None,
        judge_samples: None,
        dataset: None,
        // The route's production answers are the new model's: they are the baseline.
        baseline: None,
        checks: Vec::new(),
        auto_checks: false,
        // A guard's window pools its runs: each run replays its whole sample.
        early_stop: false,
        // It exists to see the model as it answers now.
        cache: false,
        early_stop_on: evaltap_store::StopOn::Segments,
    }))
}

/// One rubric of a guard's evaluation. `reference_mean` and `run_mean` are named as a drift
/// run's, so the drift page charts a guard as it charts a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardAssessment {
    /// Rubric.
    pub rubric: String,
    /// Pairs since the window started.
    pub n: usize,
    /// The former production model's mean score.
    pub reference_mean: f64,
    /// The new model's mean score.
    pub run_mean: f64,
    /// New − former.
    pub delta: f64,
    /// Always-valid confidence sequence of the difference.
    pub cs_low: f64,
    /// See `cs_low`.
    pub cs_high: f64,
    /// Always-valid two-sided p-value of "no difference".
    pub p_sequential: f64,
    /// Holm-adjusted across the guard's rubrics.
    pub p_holm: f64,
    /// Significantly worse, and by more than the margin.
    pub dropped: bool,
    /// Back within the margin and no longer significantly worse at [`RECOVERY_P`].
    pub recovered: bool,
}

/// Assesses a guard's window: per rubric the pairs (former production's score, new model's
/// score) in arrival order.
pub fn assess_guard(
    margin: f64,
    sample: usize,
    pairs: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Vec<GuardAssessment> {
    let options = CompareOptions {
        alpha: GUARD_ALPHA,
        margin,
        basis: Basis::Sequential,
        planned_n: Some(sample.max(1) * TUNED_RUNS),
        bootstrap_resamples: 0,
        ..CompareOptions::default()
    };
    let mut family: Vec<Comparison> = pairs
        .values()
        .map(|pairs| {
            let former: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let new: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            compare_paired(&former, &new, None, &options)
        })
        .collect();
    decide_family(&mut family, &options);
    pairs
        .keys()
        .zip(family)
        .map(|(rubric, c)| GuardAssessment {
            rubric: rubric.clone(),
            n: c.n,
            reference_mean: c.baseline_mean,
            run_mean: c.candidate_mean,
            delta: c.delta,
            cs_low: c.cs_low,
            cs_high: c.cs_high,
            p_sequential: c.p_value_sequential,
            p_holm: c.p_holm,
            dropped: c.verdict == Verdict::Worse && c.delta < -margin,
            recovered: c.n >= SEQUENTIAL_MIN_N && c.delta >= -margin && c.p_value_sequential >= RECOVERY_P,
        })
        .collect()
}

/// Where the window of `run` starts: at the run after the last one that opened or closed an
/// alert, else at the guard's first run.
/// An item's scores on one rubric: former production's, the new model's, and the order the
/// later of them landed in.
type ScorePair = (Option<f64>, Option<f64>, usize);

fn window_start(earlier: &[ScheduleRun], run: &ScheduleRun) -> i64 {
    let Some(last) = earlier
        .iter()
        .rev()
        .find_map(|r| r.outcome.as_ref().filter(|o| o["guard"] == json!(true)).map(|o| (r.slot, o)))
    else {
        return run.slot;
    };
    let (slot, outcome) = last;
    if outcome["changed"] == json!(true) {
        slot + 1
    } else {
        outcome["window_start"].as_i64().unwrap_or(slot)
    }
}

/// Evaluates a finished guard run: the pairs of every run of the window, assessed together;
/// opens and closes alerts.
pub(crate) async fn evaluate(
    ctx: &DriftContext,
    schedule: &Schedule,
    guard: &GuardSpec,
    run: &ScheduleRun,
    experiment: &Experiment,
    report: &mut TickReport,
) -> Result<(), DriftError> {
    let earlier: Vec<ScheduleRun> =
        ctx.store.schedule_runs(&schedule.id).await?.into_iter().filter(|r| r.slot < run.slot).collect();
    let start = window_start(&earlier, run);
    let mut experiments: Vec<String> =
        earlier.iter().filter(|r| r.slot >= start).filter_map(|r| r.experiment_id.clone()).collect();
    experiments.push(experiment.id.clone());
    let mut pairs: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for id in &experiments {
        // Per rubric and item: (former production, new model), in the order judgments landed.
        let mut by_item: BTreeMap<(String, String), ScorePair> = BTreeMap::new();
        for (seq, j) in ctx.store.judgments(id).await?.into_iter().enumerate() {
            let Some(score) = j.score.filter(|s| s.is_finite() && j.position.is_empty()) else { continue };
            let entry = by_item.entry((j.rubric, j.item_id)).or_insert((None, None, 0));
            if j.subject == BASELINE {
                entry.1 = Some(score);
            } else if j.subject == guard.former {
                entry.0 = Some(score);
            }
            entry.2 = entry.2.max(seq);
        }
        let mut complete: Vec<(usize, String, f64, f64)> = by_item
            .into_iter()
            .filter_map(|((rubric, _), (former, new, seq))| Some((seq, rubric, former?, new?)))
            .collect();
        complete.sort_by_key(|p| p.0);
        for (_, rubric, former, new) in complete {
            pairs.entry(rubric).or_default().push((former, new));
        }
    }
    let assessed = assess_guard(schedule.spec.margin, guard.sample, &pairs);
    let mut open = BTreeSet::new();
    for a in &assessed {
        if ctx.store.open_alert_for(&schedule.id, &a.rubric).await?.is_some() {
            open.insert(a.rubric.clone());
        }
    }
    let changed = assessed
        .iter()
        .any(|a| (a.dropped && !open.contains(&a.rubric)) || (a.recovered && open.contains(&a.rubric)));
    let outcome = json!({"guard": true, "window_start": start, "window_runs": experiments, "changed": changed,
                         "rubrics": assessed});
    if !ctx.store.finish_run_evaluation(&schedule.id, run.slot, &outcome).await? {
        return Ok(()); // another process evaluated it
    }
    report.evaluated.push((schedule.name.clone(), run.slot));
    for a in &assessed {
        let details = json!({"schedule": schedule.name, "guard": true, "route": format!("{}={}", guard.tag, guard.route),
            "model": guard.model, "former": guard.former, "rubric": a.rubric, "run": experiment.spec.name,
            "n": a.n, "reference_mean": a.reference_mean, "run_mean": a.run_mean, "delta": a.delta,
            "cs_low": a.cs_low, "cs_high": a.cs_high, "p_holm": a.p_holm, "margin": schedule.spec.margin,
            "experiment": guard.experiment});
        let existing = ctx.store.open_alert_for(&schedule.id, &a.rubric).await?;
        if a.dropped && existing.is_none() {
            if let Some(alert) =
                ctx.store.open_alert(&schedule.id, &a.rubric, &experiment.id, &details).await?
            {
                tracing::warn!(guard = %schedule.name, rubric = %a.rubric, delta = a.delta, "guard alert opened");
                deliver(ctx, &alert, "opened", &details).await?;
                report.opened.push(alert);
            }
        } else if let Some(existing) = existing
            && a.recovered
            && let Some(closed) = ctx.store.close_alert(&existing.id, &experiment.id).await?
        {
            tracing::info!(guard = %schedule.name, rubric = %a.rubric, delta = a.delta, "guard alert recovered");
            deliver(ctx, &closed, "recovered", &details).await?;
            report.closed.push(closed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(former: &[f64], new: &[f64]) -> BTreeMap<String, Vec<(f64, f64)>> {
        [("correctness".to_string(), former.iter().copied().zip(new.iter().copied()).collect())].into()
    }

    #[test]
    fn a_clear_drop_alerts_and_equal_models_recover() {
        let former: Vec<f64> = (0..150).map(|i| f64::from(u8::from(i % 10 != 0))).collect();
        let worse: Vec<f64> = (0..150).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let drop = &assess_guard(0.05, 150, &pairs(&former, &worse))[0];
        assert!(drop.dropped && !drop.recovered, "{drop:?}");
        assert!((drop.delta - (0.5 - 0.9)).abs() < 0.01, "{drop:?}");
        let same = &assess_guard(0.05, 150, &pairs(&former, &former))[0];
        assert!(!same.dropped && same.recovered, "{same:?}");
        // Too few pairs to say it recovered.
        let few = &assess_guard(0.05, 150, &pairs(&former[..10], &former[..10]))[0];
        assert!(!few.dropped && !few.recovered, "{few:?}");
    }
}
