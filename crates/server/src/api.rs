//! The JSON API.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use evaltap_report::Report;
use evaltap_worker::{CreateError, ExperimentRequest};
use serde_json::{Value, json};

use crate::{ApiError, AppState};

pub(crate) async fn list_experiments(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let experiments = state.store.experiments().await?;
    let items: Vec<Value> = experiments
        .iter()
        .map(|e| {
            json!({"id": e.id, "name": e.spec.name, "created_at": e.created_at,
                        "candidates": e.spec.candidates.iter().map(|c| &c.name).collect::<Vec<_>>(),
                        "rubrics": e.spec.rubrics})
        })
        .collect();
    Ok(Json(json!({"experiments": items})))
}

pub(crate) async fn create_experiment(
    State(state): State<AppState>,
    request: Result<Json<ExperimentRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(request) = request.map_err(|e| ApiError::Client(e.status(), e.body_text()))?;
    let experiment =
        evaltap_worker::create_experiment(&state.config, &state.rubrics, &state.store, &state.queue, request)
            .await
            .map_err(|err| match err {
                CreateError::Invalid(msg) => ApiError::bad_request(msg),
                other => ApiError::Internal(other.to_string()),
            })?;
    Ok((StatusCode::CREATED, Json(json!({"id": experiment.id, "name": experiment.spec.name}))))
}

pub(crate) async fn experiment_report(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Report>, ApiError> {
    let experiment = state.store.require_experiment(&name).await?;
    Ok(Json(evaltap_report::build(&state.store, &experiment).await?))
}
