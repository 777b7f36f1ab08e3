//! Drift: a golden dataset run against a model on a schedule, each run compared item by item
//! with the schedule's pinned reference run (its first); a significant drop on a rubric or check
//! opens an alert, the first run back within the margin closes it with a recovery notice.
//!
//! [`tick`] does one pass at a given time (start due slots, evaluate finished runs) and is what
//! tests drive; [`run_scheduler`] calls it periodically inside `serve` and `worker`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use evaltap_core::Config;
use evaltap_judge::Rubrics;
use evaltap_stats::{Basis, CompareOptions, Comparison, Verdict, compare_paired, decide_family};
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
        let request = ExperimentRequest {
            name: format!("{}#{slot}", schedule.name),
            candidates: vec![schedule.candidate.clone()],
            rubrics: schedule.spec.rubrics.clone(),
            sample_size: None,
            filter: Default::default(),
            margin: Some(schedule.spec.margin),
            spend_cap_usd: None,
            judge_samples: None,
            dataset: Some(DatasetRef { name: schedule.dataset.clone(), version: schedule.version.clone() }),
            baseline: Some(BaselineSpec::None),
            checks: schedule.spec.checks.clone(),
            auto_checks: true,
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
    for run in ctx.store.unevaluated_runs().await? {
        let (Some(schedule), Some(experiment_id)) =
            (by_id.get(run.schedule_id.as_str()), run.experiment_id.as_deref())
        else {
            continue;
        };
        let Some(experiment) = ctx.store.experiment(experiment_id).await? else { continue };
        if !ctx.store.experiment_progress(&experiment).await?.is_done() {
            continue;
        }
        evaluate(ctx, schedule, &run, &experiment, &mut report).await?;
    }
    Ok(report)
}

/// Compares a finished run with the reference run, opens and closes alerts.
async fn evaluate(
    ctx: &DriftContext,
    schedule: &Schedule,
    run: &ScheduleRun,
    experiment: &Experiment,
    report: &mut TickReport,
) -> Result<(), DriftError> {
    // The first finished run becomes the reference (re-read: another process may have pinned).
    let reference_id = match ctx.store.schedule(&schedule.id).await?.reference_experiment {
        Some(id) => id,
        None => {
            ctx.store.pin_reference_run(&schedule.id, &experiment.id).await?;
            ctx.store.schedule(&schedule.id).await?.reference_experiment.unwrap_or_default()
        }
    };
    if reference_id == experiment.id {
        if ctx.store.finish_run_evaluation(&schedule.id, run.slot, &json!({"reference": true})).await? {
            report.evaluated.push((schedule.name.clone(), run.slot));
        }
        return Ok(());
    }
    let comparisons = compare_with_reference(ctx, schedule, &reference_id, &experiment.id).await?;
    let outcome = json!({
        "reference_run": reference_id,
        "rubrics": comparisons.iter().map(|(rubric, c)| json!({
            "rubric": rubric, "n": c.n, "delta": c.delta, "ci_low": c.ci_low, "ci_high": c.ci_high,
            "p_holm": c.p_holm, "verdict": c.verdict})).collect::<Vec<_>>(),
    });
    if !ctx.store.finish_run_evaluation(&schedule.id, run.slot, &outcome).await? {
        return Ok(()); // another process evaluated it
    }
    report.evaluated.push((schedule.name.clone(), run.slot));
    let margin = schedule.spec.margin;
    for (rubric, c) in &comparisons {
        let details = json!({"schedule": schedule.name, "dataset": schedule.dataset, "version": schedule.version,
            "model": schedule.candidate, "rubric": rubric, "run": experiment.spec.name, "reference_run": reference_id,
            "n": c.n, "delta": c.delta, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_holm": c.p_holm,
            "verdict": c.verdict, "margin": margin});
        let open = ctx.store.open_alert_for(&schedule.id, rubric).await?;
        if c.verdict == Verdict::Worse && open.is_none() {
            if let Some(alert) = ctx.store.open_alert(&schedule.id, rubric, &experiment.id, &details).await? {
                tracing::warn!(schedule = %schedule.name, %rubric, delta = c.delta, "drift alert opened");
                deliver(ctx, &alert, "opened", &details).await?;
                report.opened.push(alert);
            }
        } else if let Some(open) = open
            && c.verdict != Verdict::Worse
            && c.delta > -margin
            && let Some(closed) = ctx.store.close_alert(&open.id, &experiment.id).await?
        {
            tracing::info!(schedule = %schedule.name, %rubric, delta = c.delta, "drift alert recovered");
            deliver(ctx, &closed, "recovered", &details).await?;
            report.closed.push(closed);
        }
    }
    Ok(())
}

/// Per rubric (and check), the run's scores against the reference run's, paired by item, with
/// Holm across the family.
async fn compare_with_reference(
    ctx: &DriftContext,
    schedule: &Schedule,
    reference: &str,
    run: &str,
) -> Result<Vec<(String, Comparison)>, DriftError> {
    let scores = |judgments: Vec<evaltap_store::JudgmentRecord>| {
        let mut by_rubric: BTreeMap<String, HashMap<String, f64>> = BTreeMap::new();
        for j in judgments.into_iter().filter(|j| j.subject == schedule.candidate && j.position.is_empty()) {
            if let Some(score) = j.score.filter(|s| s.is_finite()) {
                by_rubric.entry(j.rubric).or_default().insert(j.item_id, score);
            }
        }
        by_rubric
    };
    let (before, after) =
        (scores(ctx.store.judgments(reference).await?), scores(ctx.store.judgments(run).await?));
    let options = CompareOptions {
        margin: schedule.spec.margin,
        basis: Basis::FixedN,
        bootstrap_resamples: 0,
        ..CompareOptions::default()
    };
    let mut rubrics = Vec::new();
    let mut family = Vec::new();
    for (rubric, old) in &before {
        let Some(new) = after.get(rubric) else { continue };
        let mut items: Vec<&String> = old.keys().filter(|k| new.contains_key(*k)).collect();
        items.sort();
        let b: Vec<f64> = items.iter().map(|k| old[*k]).collect();
        let c: Vec<f64> = items.iter().map(|k| new[*k]).collect();
        rubrics.push(rubric.clone());
        family.push(compare_paired(&b, &c, None, &options));
    }
    decide_family(&mut family, &options);
    Ok(rubrics.into_iter().zip(family).collect())
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
    let text = if alert.rubric == CANNOT_RUN {
        match details["error"].as_str() {
            Some(error) => format!("evaltap drift: schedule {schedule} cannot run: {error}"),
            None => format!("evaltap drift: schedule {schedule} runs again"),
        }
    } else {
        format!(
            "evaltap drift {event}: {schedule} on `{}` — Δ {:+.3} [{:+.3}, {:+.3}] vs the reference run ({})",
            alert.rubric,
            details["delta"].as_f64().unwrap_or(f64::NAN),
            details["ci_low"].as_f64().unwrap_or(f64::NAN),
            details["ci_high"].as_f64().unwrap_or(f64::NAN),
            details["verdict"].as_str().unwrap_or_default(),
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
