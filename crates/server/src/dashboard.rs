//! Server-rendered dashboard pages (minijinja, no external assets: machines may be offline).

use axum::extract::{Path, State};
use axum::response::Html;
use minijinja::Environment;
use minijinja::value::Serde;
use serde_json::{Value, json};

use crate::{ApiError, AppState};

pub(crate) fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    for (name, source) in [
        ("layout.html", include_str!("../templates/layout.html")),
        ("index.html", include_str!("../templates/index.html")),
        ("experiment.html", include_str!("../templates/experiment.html")),
        ("sources.html", include_str!("../templates/sources.html")),
    ] {
        // The templates are compiled into the binary and covered by tests.
        env.add_template(name, source).expect("dashboard templates are valid");
    }
    env
}

fn render(state: &AppState, name: &str, ctx: Value) -> Result<Html<String>, ApiError> {
    let template = state.templates.get_template(name).map_err(|e| ApiError::Internal(e.to_string()))?;
    template.render(Serde(ctx)).map(Html).map_err(|e| ApiError::Internal(format!("rendering {name}: {e}")))
}

pub(crate) async fn index(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let experiments: Vec<Value> = state
        .store
        .experiments()
        .await?
        .iter()
        .map(|e| {
            json!({"name": e.spec.name, "created_at": e.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        "candidates": e.spec.candidates.iter().map(|c| &c.name).collect::<Vec<_>>(),
                        "rubrics": e.spec.rubrics})
        })
        .collect();
    render(&state, "index.html", json!({"experiments": experiments}))
}

/// x position in a 220-px strip showing deltas from −0.5 to +0.5.
fn strip_x(delta: f64) -> f64 {
    (110.0 + delta.clamp(-0.5, 0.5) * 220.0).round()
}

pub(crate) async fn experiment(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    let experiment = state.store.require_experiment(&name).await?;
    let report = evaltap_report::build(&state.store, &experiment).await?;
    let candidates: Vec<Value> = report
        .candidates
        .iter()
        .map(|c| {
            let rows: Vec<Value> = c
                .rubrics
                .iter()
                .map(|rubric| {
                    let r = &rubric.stats;
                    json!({"rubric": rubric.rubric, "n": r.n,
                           "baseline_mean": r.baseline_mean, "candidate_mean": r.candidate_mean,
                           "delta": r.delta, "ci_low": r.ci_low, "ci_high": r.ci_high, "p_value": r.p_value,
                           "p_sequential": r.p_value_sequential, "p_holm": r.p_holm, "q_value": r.q_value,
                           "verdict": r.verdict.as_str(), "more_samples": rubric.more_samples_needed,
                           "pairwise": rubric.pairwise,
                           "judge_errors": rubric.judge_errors, "judge_skipped": rubric.judge_skipped,
                           "judge_cost": rubric.judge_cost_usd, "warnings": rubric.warnings,
                           "significantly_lower": r.significantly_lower,
                           "length_correlation": rubric.length_correlation,
                           "calibration": rubric.calibration.as_ref().map(|c| json!({
                               "date": c.created_at.format("%Y-%m-%d").to_string(),
                               "weighted_kappa": c.result.get("weighted_kappa"),
                               "same_rubric_text": c.same_rubric_text})),
                           "x_low": strip_x(r.ci_low), "x_high": strip_x(r.ci_high), "x_delta": strip_x(r.delta)})
                })
                .collect();
            json!({"name": c.name, "model": c.model, "n": c.n, "errors": c.errors,
                   "cost": c.cost_per_request_usd, "cost_delta_pct": c.cost_delta_pct,
                   "latency": c.latency_p50_ms, "rows": rows})
        })
        .collect();
    render(&state, "experiment.html", json!({"report": report, "candidates": candidates}))
}

pub(crate) async fn sources(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let overview = crate::api::sources_overview(&state).await?;
    render(&state, "sources.html", overview)
}
