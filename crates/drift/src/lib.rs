//! Drift: a golden dataset run against a model on a schedule. The first few finished runs are
//! the reference; every later run is tested against them item by item ([`policy`]); a
//! significant drop on a rubric or check opens an alert, the first run back within the margin
//! closes it with a recovery notice.
//!
//! [`tick`] does one pass at a given time (start due slots, evaluate finished runs) and is what
//! tests drive; [`run_scheduler`] calls it periodically inside `serve` and `worker`.

pub mod guard;
pub mod policy;

pub use guard::{GuardAssessment, NewGuard, add_guard, assess_guard};
pub use policy::{DriftPolicy, RubricDrift, RunScores, assess_run};

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use evaltap_core::Config;
use evaltap_judge::Rubrics;
use evaltap_store::{Alert, BaselineSpec, DatasetRef, Experiment, Schedule, ScheduleRun, Store, StoreError};
use evaltap_worker::ExperimentRequest;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

/// Why a drift step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriftError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
}

/// The alert "rubric" of a schedule whose runs cannot start (an unknown candidate, a rubric
/// that no longer exists…): open while it fails, closed by the first run that starts.
pub const CANNOT_RUN: &str = "(schedule cannot run)";

/// What the scheduler works with.
#[derive(Clone)]
pub struct DriftContext {
    /// Configuration (candidates, judge, alert sinks).
    pub config: Config,
    /// The file `config` came from: [`run_scheduler`] reads it again before each pass, so a
    /// candidate added after `serve` started is known to the next scheduled run.
    pub config_path: Option<std::path::PathBuf>,
    /// The database.
    pub store: Store,
    /// Loaded rubrics.
    pub rubrics: Rubrics,
    /// HTTP client for alert deliveries.
    pub http: reqwest::Client,
}

/// A new schedule.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Schedule name (default `dataset:candidate`).
    pub name: Option<String>,
    /// Dataset and the version to pin.
    pub dataset: DatasetRef,
    /// Candidate from evaltap.toml.
    pub candidate: String,
    /// Period.
    pub every: Duration,
    /// Rubrics, checks, margin.
    pub spec: evaltap_store::ScheduleSpec,
}

/// Creates a schedule after checking what it will run.
pub async fn add_schedule(ctx: &DriftContext, new: NewSchedule) -> Result<Schedule, DriftError> {
    if new.every < Duration::from_secs(60) {
        return Err(DriftError::Invalid("a schedule runs at most once a minute".into()));
    }
    if ctx.config.candidate(&new.candidate).is_none() {
        return Err(DriftError::Invalid(format!("unknown candidate `{}`", new.candidate)));
    }
    if !(0.0..1.0).contains(&new.spec.margin) {
        return Err(DriftError::Invalid(format!("margin must be within [0, 1), got {}", new.spec.margin)));
    }
    for rubric in &new.spec.rubrics {
        match ctx.rubrics.get(rubric) {
            Ok(r) if r.mode == evaltap_judge::Mode::Pairwise => {
                return Err(DriftError::Invalid(format!(
                    "pairwise rubric `{rubric}` needs a baseline answer"
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(DriftError::Invalid(e.to_string())),
        }
    }
    if ctx.store.dataset_items(&new.dataset.version).await?.is_empty() {
        return Err(DriftError::Invalid(format!(
            "dataset `{}` has no stored version {}",
            new.dataset.name, new.dataset.version
        )));
    }
    let schedule = Schedule {
        id: uuid::Uuid::now_v7().to_string(),
        name: new.name.unwrap_or_else(|| format!("{}:{}", new.dataset.name, new.candidate)),
        dataset: new.dataset.name,
        version: new.dataset.version,
        candidate: new.candidate,
        every_seconds: new.every.as_secs() as i64,
        spec: new.spec,
        paused: false,
        reference_experiment: None,
        created_at: Utc::now(),
    };
    ctx.store.create_schedule(&schedule).await?;
    Ok(schedule)
}

/// What one [`tick`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// (schedule, slot) runs started.
    pub started: Vec<(String, i64)>,
    /// (schedule, slot) runs evaluated.
    pub evaluated: Vec<(String, i64)>,
    /// Alerts opened.
    pub opened: Vec<Alert>,
    /// Alerts closed (recoveries).
    pub closed: Vec<Alert>,
}

/// Runs the one slot due at `now` to its end (a worker must be running): ticks once, starting
/// its run, then again every `poll` until that run is evaluated, gathering what each tick did.
/// Fails if not exactly one slot was due, if a later tick starts another, or if the run is not
/// evaluated within `limit` (for benchmarks and tests that step a schedule through time).
pub async fn run_slot_to_end(
    ctx: &DriftContext,
    now: DateTime<Utc>,
    poll: Duration,
    limit: Duration,
) -> Result<TickReport, DriftError> {
    let mut all = tick(ctx, now).await?;
    let [started] = all.started.as_slice() else {
        return Err(DriftError::Invalid(format!("{} slots were due, not one", all.started.len())));
    };
    let started = started.clone();
    let deadline = tokio::time::Instant::now() + limit;
    while !all.evaluated.contains(&started) {
        if tokio::time::Instant::now() >= deadline {
            return Err(DriftError::Invalid(format!(
                "the run of slot {} was not evaluated within {} s",
                started.1,
                limit.as_secs()
            )));
        }
        tokio::time::sleep(poll).await;
        let next = tick(ctx, now).await?;
        if !next.started.is_empty() {
            return Err(DriftError::Invalid(format!("a later tick started {:?} as well", next.started)));
        }
        all.evaluated.extend(next.evaluated);
        all.opened.extend(next.opened);
        all.closed.extend(next.closed);
    }
    Ok(all)
}

/// One pass at time `now`: start the current slot of every due schedule (only the current one:
/// slots missed while nothing ran are not caught up one by one), then evaluate every finished
/// run against its schedule's reference run.
pub async fn tick(ctx: &DriftContext, now: DateTime<Utc>) -> Result<TickReport, DriftError> {
    let mut report = TickReport::default();
    let schedules = ctx.store.schedules().await?;
    for schedule in schedules.iter().filter(|s| !s.paused) {
        let slot = now.timestamp().div_euclid(schedule.every_seconds.max(1));
        if ctx.store.last_slot(&schedule.id).await?.is_some_and(|last| last >= slot) {
            continue;
        }
        if !ctx.store.claim_slot(&schedule.id, slot).await? {
            continue; // another process started it
        }
        let request = match &schedule.spec.guard {
            Some(guard) => match guard::run_request(ctx, schedule, guard, slot).await? {
                Some(request) => request,
                None => {
                    // No new traffic on the route: nothing to replay, and nothing wrong.
                    let outcome = json!({"skipped": "no new traffic on the route since the last run"});
                    ctx.store.set_run_experiment(&schedule.id, slot, None, Some(&outcome)).await?;
                    continue;
                }
            },
            None => ExperimentRequest {
                // Drift exists to catch a provider changing under the same name: fresh calls.
                cache: false,
                ..ExperimentRequest::golden(
                    format!("{}#{slot}", schedule.name),
                    DatasetRef { name: schedule.dataset.clone(), version: schedule.version.clone() },
                    // Scored alone: each run is compared with the reference runs, not a baseline.
                    BaselineSpec::None,
                    vec![schedule.candidate.clone()],
                    schedule.spec.rubrics.clone(),
                    schedule.spec.checks.clone(),
                    schedule.spec.margin,
                )
            },
        };
        let failing = ctx.store.open_alert_for(&schedule.id, CANNOT_RUN).await?;
        match evaltap_worker::create_experiment(&ctx.config, &ctx.rubrics, &ctx.store, request).await {
            Ok(experiment) => {
                ctx.store.set_run_experiment(&schedule.id, slot, Some(&experiment.id), None).await?;
                report.started.push((schedule.name.clone(), slot));
                if let Some(open) = failing
                    && let Some(closed) = ctx.store.close_alert(&open.id, &experiment.id).await?
                {
                    let details =
                        json!({"schedule": schedule.name, "rubric": CANNOT_RUN, "run": experiment.spec.name});
                    tracing::info!(schedule = %schedule.name, "scheduled runs start again");
                    deliver(ctx, &closed, "recovered", &details).await?;
                    report.closed.push(closed);
                }
            }
            Err(err) => {
                tracing::error!(schedule = %schedule.name, slot, %err, "scheduled run could not start");
                let outcome = json!({"error": err.to_string()});
                ctx.store.set_run_experiment(&schedule.id, slot, None, Some(&outcome)).await?;
                // Failing is an alert of its own, raised once (not once per slot).
                let run = format!("{}#{slot}", schedule.name);
                let details = json!({"schedule": schedule.name, "dataset": schedule.dataset,
                    "model": schedule.candidate, "rubric": CANNOT_RUN, "run": run, "error": err.to_string()});
                if failing.is_none()
                    && let Some(alert) =
                        ctx.store.open_alert(&schedule.id, CANNOT_RUN, &run, &details).await?
                {
                    deliver(ctx, &alert, "opened", &details).await?;
                    report.opened.push(alert);
                }
            }
        }
    }
    let by_id: HashMap<&str, &Schedule> = schedules.iter().map(|s| (s.id.as_str(), s)).collect();
    // A schedule's runs are evaluated in slot order: which runs are the reference depends on
    // the ones before. A run still going holds back the later ones of its schedule.
    let mut waiting: std::collections::HashSet<String> = Default::default();
    for run in ctx.store.unevaluated_runs().await? {
        if waiting.contains(&run.schedule_id) {
            continue;
        }
        let (Some(schedule), Some(experiment_id)) =
            (by_id.get(run.schedule_id.as_str()), run.experiment_id.as_deref())
        else {
            continue;
        };
        let Some(experiment) = ctx.store.experiment(experiment_id).await? else {
            // Its experiment was deleted: nothing to compare, and later runs must not wait.
            let outcome = json!({"skipped": format!("experiment {experiment_id} no longer exists")});
            ctx.store.finish_run_evaluation(&schedule.id, run.slot, &outcome).await?;
            continue;
        };
        if !ctx.store.experiment_progress(&experiment).await?.is_done() {
            waiting.insert(run.schedule_id.clone());
            continue;
        }
        match &schedule.spec.guard {
            Some(guard) => guard::evaluate(ctx, schedule, guard, &run, &experiment, &mut report).await?,
            None => evaluate(ctx, schedule, &run, &experiment, &mut report).await?,
        }
    }
    Ok(report)
}

/// The seed of a run's permutation draws: from the schedule's name and the slot, so evaluating
/// the same run again draws the same.
fn run_seed(schedule: &Schedule, slot: i64) -> u64 {
    evaltap_judge::judgment_seed(&[&schedule.name, &slot.to_string()])
}

/// Makes a finished run part of the reference, or tests it against the reference runs and
/// opens and closes alerts.
async fn evaluate(
    ctx: &DriftContext,
    schedule: &Schedule,
    run: &ScheduleRun,
    experiment: &Experiment,
    report: &mut TickReport,
) -> Result<(), DriftError> {
    let policy = DriftPolicy::with_margin(schedule.spec.margin);
    // Every earlier run is evaluated (runs go in slot order), so the reference is settled.
    let earlier: Vec<ScheduleRun> =
        ctx.store.schedule_runs(&schedule.id).await?.into_iter().filter(|r| r.slot < run.slot).collect();
    let is_reference = |r: &ScheduleRun| r.outcome.as_ref().is_some_and(|o| o["reference"] == json!(true));
    let reference: Vec<String> =
        earlier.iter().filter(|r| is_reference(r)).filter_map(|r| r.experiment_id.clone()).collect();
    // The compared run before this one, pooled with it in the second test.
    let previous = earlier
        .iter()
        .rev()
        .find(|r| r.outcome.as_ref().is_some_and(|o| o.get("rubrics").is_some()))
        .and_then(|r| r.experiment_id.clone());
    if reference.len() < policy.reference_runs {
        let outcome =
            json!({"reference": true, "reference_run": reference.len() + 1, "of": policy.reference_runs});
        if ctx.store.finish_run_evaluation(&schedule.id, run.slot, &outcome).await? {
            // The schedule's row names its first reference run.
            ctx.store.pin_reference_run(&schedule.id, &experiment.id).await?;
            report.evaluated.push((schedule.name.clone(), run.slot));
        }
        return Ok(());
    }
    let mut reference_scores = Vec::with_capacity(reference.len());
    for id in &reference {
        reference_scores.push(run_scores(ctx, schedule, id).await?);
    }
    let previous_scores = match &previous {
        Some(id) => Some(run_scores(ctx, schedule, id).await?),
        None => None,
    };
    let scores = run_scores(ctx, schedule, &experiment.id).await?;
    let assessed = assess_run(
        &policy,
        &reference_scores,
        previous_scores.as_ref(),
        &scores,
        run_seed(schedule, run.slot),
    );
    let outcome = json!({"reference_runs": reference, "previous_run": previous, "rubrics": assessed});
    if !ctx.store.finish_run_evaluation(&schedule.id, run.slot, &outcome).await? {
        return Ok(()); // another process evaluated it
    }
    report.evaluated.push((schedule.name.clone(), run.slot));
    for drift in &assessed {
        let rubric = &drift.rubric;
        let details = json!({"schedule": schedule.name, "dataset": schedule.dataset, "version": schedule.version,
            "model": schedule.candidate, "rubric": rubric, "run": experiment.spec.name,
            "reference_runs": reference, "n": drift.n, "reference_mean": drift.reference_mean,
            "run_mean": drift.run_mean, "delta": drift.delta, "p_drop": drift.p_drop,
            "p_drop_last_two": drift.p_drop_last_two, "delta_last_two": drift.delta_last_two, "p_holm": drift.p_holm,
            "threshold": drift.threshold, "margin": policy.margin});
        let open = ctx.store.open_alert_for(&schedule.id, rubric).await?;
        if drift.dropped && open.is_none() {
            if let Some(alert) = ctx.store.open_alert(&schedule.id, rubric, &experiment.id, &details).await? {
                tracing::warn!(schedule = %schedule.name, %rubric, delta = drift.delta, "drift alert opened");
                deliver(ctx, &alert, "opened", &details).await?;
                report.opened.push(alert);
            }
        } else if let Some(open) = open
            && drift.recovered
            && let Some(closed) = ctx.store.close_alert(&open.id, &experiment.id).await?
        {
            tracing::info!(schedule = %schedule.name, %rubric, delta = drift.delta, "drift alert recovered");
            deliver(ctx, &closed, "recovered", &details).await?;
            report.closed.push(closed);
        }
    }
    Ok(())
}

/// One run's normalized scores of the schedule's model, by rubric (and check) and item.
async fn run_scores(
    ctx: &DriftContext,
    schedule: &Schedule,
    experiment: &str,
) -> Result<RunScores, DriftError> {
    let mut scores = RunScores::new();
    for j in ctx.store.judgments(experiment).await? {
        if j.subject == schedule.candidate
            && j.position.is_empty()
            && let Some(score) = j.score.filter(|s| s.is_finite())
        {
            scores.entry(j.rubric).or_default().insert(j.item_id, score);
        }
    }
    Ok(scores)
}

/// Hex HMAC-SHA256 of `body` with `secret`, as sent in `X-Evaltap-Signature: sha256=<hex>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends one alert event to every configured sink, retrying with backoff, and records each
/// delivery.
async fn deliver(ctx: &DriftContext, alert: &Alert, event: &str, details: &Value) -> Result<(), DriftError> {
    let sinks = &ctx.config.alerts;
    let body = json!({"event": event, "alert_id": alert.id, "status": alert.status, "rubric": alert.rubric,
        "opened_at": alert.opened_at, "closed_at": alert.closed_at, "details": details});
    let schedule = details["schedule"].as_str().unwrap_or_default();
    let text = if details["guard"] == json!(true) {
        format!(
            "evaltap guard {event}: {schedule}: {} on {} — Δ {:+.3} against the former production model {} \
             (always-valid interval [{:+.3}, {:+.3}], n {}, margin {})",
            details["model"].as_str().unwrap_or_default(),
            details["route"].as_str().unwrap_or_default(),
            details["delta"].as_f64().unwrap_or(f64::NAN),
            details["former"].as_str().unwrap_or_default(),
            details["cs_low"].as_f64().unwrap_or(f64::NAN),
            details["cs_high"].as_f64().unwrap_or(f64::NAN),
            details["n"].as_u64().unwrap_or(0),
            details["margin"].as_f64().unwrap_or(f64::NAN),
        )
    } else if alert.rubric == CANNOT_RUN {
        match details["error"].as_str() {
            Some(error) => format!("evaltap drift: schedule {schedule} cannot run: {error}"),
            None => format!("evaltap drift: schedule {schedule} runs again"),
        }
    } else {
        format!(
            "evaltap drift {event}: {schedule} on `{}` — Δ {:+.3} vs the {} reference runs \
             (p {:.2e}; a drop alerts below {:.2e} and beyond −{})",
            alert.rubric,
            details["delta"].as_f64().unwrap_or(f64::NAN),
            details["reference_runs"].as_array().map_or(0, Vec::len),
            details["p_holm"].as_f64().unwrap_or(f64::NAN),
            details["threshold"].as_f64().unwrap_or(f64::NAN),
            details["margin"].as_f64().unwrap_or(f64::NAN),
        )
    };
    let mut posts: Vec<(String, Vec<u8>, Option<String>)> = Vec::new();
    for hook in &sinks.webhooks {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let signature = hook.resolve_secret().map(|secret| format!("sha256={}", signature(&secret, &bytes)));
        posts.push((hook.url.clone(), bytes, signature));
    }
    for slack in &sinks.slack {
        posts.push((slack.url.clone(), serde_json::to_vec(&json!({"text": text})).unwrap_or_default(), None));
    }
    for (url, bytes, signature) in posts {
        let mut attempts = 0;
        let mut last_error = None;
        let delivered = loop {
            attempts += 1;
            let mut request =
                ctx.http.post(&url).header("content-type", "application/json").body(bytes.clone());
            if let Some(sig) = &signature {
                request = request.header("X-Evaltap-Signature", sig);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => break true,
                Ok(response) => last_error = Some(format!("{url} answered {}", response.status())),
                Err(err) => last_error = Some(format!("{url}: {err}")),
            }
            if attempts >= sinks.max_attempts.max(1) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(sinks.backoff_ms) * 2u32.saturating_pow(attempts - 1))
                .await;
        };
        if !delivered {
            tracing::error!(%url, attempts, error = ?last_error, "alert delivery failed");
        }
        ctx.store
            .record_delivery_attempt(&alert.id, event, &url, attempts, delivered, last_error.as_deref())
            .await?;
    }
    Ok(())
}

/// Reads the configuration file again (when the context has one), so the next pass knows
/// candidates and alert sinks added since the process started. A file that no longer reads
/// leaves the configuration as it was; the error is returned to be logged.
pub fn reload_config(ctx: &mut DriftContext) -> Result<(), evaltap_core::ConfigError> {
    let Some(path) = &ctx.config_path else { return Ok(()) };
    let mut fresh = Config::load(path)?;
    // The process keeps its database; the rest follows the file.
    fresh.database_url = ctx.config.database_url.clone();
    ctx.config = fresh;
    Ok(())
}

/// Calls [`tick`] every `period` until `shutdown`, reading the configuration file again before
/// each pass; errors are logged, never fatal.
pub async fn run_scheduler(mut ctx: DriftContext, period: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        if let Err(err) = reload_config(&mut ctx) {
            let cause = std::error::Error::source(&err).map(|c| format!(": {c}")).unwrap_or_default();
            tracing::error!("configuration not reloaded, the scheduler keeps the one it has: {err}{cause}");
        }
        if let Err(err) = tick(&ctx, Utc::now()).await {
            tracing::error!(%err, "drift scheduler tick failed");
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_as_rfc_4231_gives_it() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
