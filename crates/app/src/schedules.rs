//! Drift schedules: a golden dataset run against a model on a period, inside whatever `serve`
//! and `worker` processes are up (`evaltap-drift` decides the runs and alerts).

use evaltap_golden::Check;
use evaltap_store::{Alert, DatasetRef, Schedule, ScheduleRun, ScheduleSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AppError, Context};

/// Finished runs a schedule's reference pools before any alert can open.
pub use evaltap_drift::policy::REFERENCE_RUNS;

/// What a new schedule runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// The dataset (its current version is pinned).
    pub dataset: String,
    /// The candidate from evaltap.toml run each time.
    pub candidate: String,
    /// The period, as `6h`, `30m`, `1d`…
    pub every: String,
    /// Judge rubrics (`correctness` when neither rubrics nor checks are given).
    #[serde(default)]
    pub rubrics: Vec<String>,
    /// Checks (`--check` syntax).
    #[serde(default)]
    pub checks: Vec<String>,
    /// A drop beyond this (and significant) alerts.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Schedule name (default `dataset:candidate`).
    #[serde(default)]
    pub name: Option<String>,
}

fn default_margin() -> f64 {
    evaltap_worker::DEFAULT_MARGIN
}

/// Creates a schedule over the dataset's current version (synced first).
pub async fn add(ctx: &Context, new: &NewSchedule) -> Result<Schedule, AppError> {
    let every = humantime::parse_duration(&new.every)
        .map_err(|e| AppError::Invalid(format!("every `{}`: {e} (try 6h, 30m, 1d)", new.every)))?;
    let (version, _, count) = crate::golden::sync(ctx, &new.dataset).await?;
    if count == 0 {
        return Err(AppError::Invalid(format!("dataset `{}` has no items", new.dataset)));
    }
    let checks = new
        .checks
        .iter()
        .map(|c| Check::parse_arg(c).map(|c| serde_json::to_value(c).unwrap_or(Value::Null)))
        .collect::<Result<Vec<_>, _>>()?;
    let rubrics = if new.rubrics.is_empty() && checks.is_empty() {
        vec!["correctness".to_string()]
    } else {
        new.rubrics.clone()
    };
    let schedule = evaltap_drift::NewSchedule {
        name: new.name.clone(),
        dataset: DatasetRef { name: new.dataset.clone(), version },
        candidate: new.candidate.clone(),
        every,
        spec: ScheduleSpec { rubrics, checks, margin: new.margin, guard: None },
    };
    Ok(evaltap_drift::add_schedule(&ctx.drift_for_changes(), schedule).await?)
}

/// A schedule with what its runs and alerts say.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    /// The schedule.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// Runs started (or attempted).
    pub runs: usize,
    /// Runs that could not start.
    pub failed_to_start: usize,
    /// Finished reference runs, and how many the reference needs.
    pub reference_runs: usize,
    /// See `reference_runs`.
    pub reference_needed: usize,
    /// Open alerts.
    pub open_alerts: usize,
    /// `failing` (its latest run could not start), `paused` or `ok`.
    pub status: &'static str,
    /// Why the latest run could not start.
    pub error: Option<String>,
}

/// Why a scheduled run could not start, if it could not.
fn start_error(run: &ScheduleRun) -> Option<&str> {
    run.outcome.as_ref()?.get("error")?.as_str()
}

fn is_reference(run: &ScheduleRun) -> bool {
    run.outcome.as_ref().is_some_and(|o| o["reference"] == Value::Bool(true))
}

/// Every schedule with its status, by name.
pub async fn list(ctx: &Context) -> Result<Vec<ScheduleStatus>, AppError> {
    let alerts = ctx.store.alerts().await?;
    let mut rows = Vec::new();
    for schedule in ctx.store.schedules().await? {
        let runs = ctx.store.schedule_runs(&schedule.id).await?;
        let error = runs.iter().max_by_key(|r| r.slot).and_then(start_error).map(str::to_string);
        rows.push(ScheduleStatus {
            runs: runs.len(),
            failed_to_start: runs.iter().filter(|r| start_error(r).is_some()).count(),
            reference_runs: runs.iter().filter(|r| is_reference(r)).count(),
            // A guard compares two models on fresh traffic: it has no reference runs.
            reference_needed: if schedule.spec.guard.is_some() { 0 } else { REFERENCE_RUNS },
            open_alerts: alerts.iter().filter(|a| a.schedule_id == schedule.id && a.status == "open").count(),
            status: if error.is_some() {
                "failing"
            } else if schedule.paused {
                "paused"
            } else {
                "ok"
            },
            error,
            schedule,
        });
    }
    Ok(rows)
}

/// One schedule (by name or id) with its runs, oldest first, and its alerts.
pub async fn show(ctx: &Context, name: &str) -> Result<(Schedule, Vec<ScheduleRun>, Vec<Alert>), AppError> {
    let schedule = ctx.store.schedule(name).await?;
    let runs = ctx.store.schedule_runs(&schedule.id).await?;
    let alerts = ctx.store.alerts().await?.into_iter().filter(|a| a.schedule_id == schedule.id).collect();
    Ok((schedule, runs, alerts))
}

/// Pauses or resumes a schedule; returns it.
pub async fn set_paused(ctx: &Context, name: &str, paused: bool) -> Result<Schedule, AppError> {
    let schedule = ctx.store.schedule(name).await?;
    ctx.store.set_schedule_paused(&schedule.id, paused).await?;
    Ok(Schedule { paused, ..schedule })
}

/// Deletes a schedule with its runs' records and alerts (the runs' experiments stay).
pub async fn remove(ctx: &Context, name: &str) -> Result<Schedule, AppError> {
    let schedule = ctx.store.schedule(name).await?;
    ctx.store.delete_schedule(&schedule.id).await?;
    Ok(schedule)
}
