//! Dashboard pages for golden sets and drift: the datasets (items, drafts, versions and the
//! runs that used each) and a page per schedule (each run's score against the reference, the
//! margin band, alert and recovery markers, links to each run's experiment).

use axum::extract::State;
use axum::response::Html;
use serde_json::{Value, json};

use crate::dashboard::render;
use crate::error::ApiPath;
use crate::golden_api::context;
use crate::{ApiError, AppState};

pub(crate) async fn datasets(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let rows = evaltap_app::golden::list_rows(&context(&state)).await?;
    render(&state, "datasets.html", json!({"datasets": rows}))
}

pub(crate) async fn dataset(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Html<String>, ApiError> {
    let axum::Json(view) = crate::golden_api::show_dataset(State(state.clone()), ApiPath(name)).await?;
    let items: Vec<Value> = view
        .items
        .iter()
        .map(|item| {
            json!({"id": item.id, "input": item.input_text().chars().take(120).collect::<String>(),
                   "reference": item.reference, "draft": item.draft,
                   "checks": item.checks.iter().map(evaltap_golden::Check::name).collect::<Vec<_>>()})
        })
        .collect();
    render(&state, "dataset.html", json!({"view": view, "items": items}))
}

pub(crate) async fn schedules(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let rows = evaltap_app::schedules::list(&context(&state)).await?;
    render(&state, "schedules.html", json!({"schedules": rows}))
}

/// Chart geometry: scores on [0, 1] over the compared runs.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 40.0;
const TOP: f64 = 10.0;
const PLOT_HEIGHT: f64 = 160.0;

fn y_of(score: f64) -> f64 {
    TOP + (1.0 - score.clamp(0.0, 1.0)) * PLOT_HEIGHT
}

pub(crate) async fn schedule(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Html<String>, ApiError> {
    let (schedule, runs, alerts) = evaltap_app::schedules::show(&context(&state), &name).await?;
    let experiments = state.store.experiments().await?;
    let experiment_name = |id: &str| experiments.iter().find(|e| e.id == id).map(|e| e.spec.name.clone());
    let when = |slot: i64| {
        chrono::DateTime::from_timestamp(slot * schedule.every_seconds.max(1), 0)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    // One row per run, and per rubric the points of the compared runs.
    let mut rows = Vec::new();
    let mut by_rubric: std::collections::BTreeMap<String, Vec<(usize, &Value)>> = Default::default();
    for run in &runs {
        let outcome = run.outcome.clone().unwrap_or(Value::Null);
        let experiment = run.experiment_id.as_deref().and_then(experiment_name);
        let opened: Vec<&str> = alerts
            .iter()
            .filter(|a| Some(&a.opened_run) == run.experiment_id.as_ref())
            .map(|a| a.rubric.as_str())
            .collect();
        let closed: Vec<&str> = alerts
            .iter()
            .filter(|a| a.closed_run.is_some() && a.closed_run == run.experiment_id)
            .map(|a| a.rubric.as_str())
            .collect();
        rows.push(
            json!({"slot": run.slot, "when": when(run.slot), "experiment": experiment, "outcome": outcome,
                         "reference": outcome["reference"] == json!(true), "error": outcome["error"],
                         "opened": opened, "closed": closed}),
        );
    }
    let compared: Vec<&Value> = rows.iter().filter(|r| r["outcome"]["rubrics"].is_array()).collect();
    for (index, row) in compared.iter().enumerate() {
        for rubric in row["outcome"]["rubrics"].as_array().into_iter().flatten() {
            if let Some(name) = rubric["rubric"].as_str() {
                by_rubric.entry(name.to_string()).or_default().push((index, row));
            }
        }
    }
    let step = (WIDTH - LEFT - 20.0) / compared.len().max(2).saturating_sub(1).max(1) as f64;
    let charts: Vec<Value> = by_rubric
        .iter()
        .map(|(rubric, points)| {
            let of = |row: &Value, key: &str| {
                row["outcome"]["rubrics"]
                    .as_array()
                    .and_then(|all| all.iter().find(|r| r["rubric"] == json!(rubric)))
                    .and_then(|r| r[key].as_f64())
            };
            let reference = points.iter().find_map(|(_, row)| of(row, "reference_mean")).unwrap_or(0.0);
            let dots: Vec<Value> = points
                .iter()
                .filter_map(|(index, row)| {
                    let score = of(row, "run_mean")?;
                    let rubric_outcome = |flag: &str| {
                        row[flag].as_array().is_some_and(|names| names.iter().any(|n| n == &json!(rubric)))
                    };
                    Some(json!({
                        "x": LEFT + 10.0 + *index as f64 * step, "y": y_of(score), "score": score,
                        "delta": of(row, "delta").unwrap_or(0.0), "p": of(row, "p_holm").unwrap_or(1.0), "when": row["when"],
                        "experiment": row["experiment"], "opened": rubric_outcome("opened"),
                        "closed": rubric_outcome("closed"),
                    }))
                })
                .collect();
            let path: Vec<String> = dots
                .iter()
                .map(|d| format!("{:.1},{:.1}", d["x"].as_f64().unwrap_or(0.0), d["y"].as_f64().unwrap_or(0.0)))
                .collect();
            json!({
                "rubric": rubric, "reference": reference, "reference_y": y_of(reference),
                "band_top": y_of(reference), "band_height": y_of(reference - schedule.spec.margin) - y_of(reference),
                "dots": dots, "path": path.join(" "), "width": WIDTH, "height": HEIGHT,
                "axis_x": LEFT, "axis_bottom": TOP + PLOT_HEIGHT, "right": WIDTH - 10.0,
                "y_one": y_of(1.0), "y_half": y_of(0.5), "y_zero": y_of(0.0),
            })
        })
        .collect();
    render(
        &state,
        "schedule.html",
        json!({"schedule": schedule, "runs": rows, "charts": charts, "alerts": alerts,
               "reference_needed": evaltap_app::schedules::REFERENCE_RUNS,
               "reference_runs": rows.iter().filter(|r| r["reference"] == json!(true)).count()}),
    )
}
