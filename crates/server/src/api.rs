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
    request: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = request.map_err(|e| ApiError::Client(e.status(), e.body_text()))?;
    // An experiment calls paid models: the API makes its size and its budget explicit. A cap of
    // `null` is an explicit "no cap" (only admins get here).
    if body.get("sample_size").is_none_or(Value::is_null) {
        return Err(ApiError::bad_request("`sample_size` is required: how many exchanges to replay"));
    }
    if body.get("spend_cap_usd").is_none() {
        return Err(ApiError::bad_request(
            "`spend_cap_usd` is required: a budget in USD, or an explicit null for no cap",
        ));
    }
    let request: ExperimentRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid experiment: {e}")))?;
    let experiment =
        evaltap_worker::create_experiment(&state.config, &state.rubrics, &state.store, &state.queue, request)
            .await
            .map_err(|err| match err {
                CreateError::Invalid(msg) => ApiError::bad_request(msg),
                other => ApiError::Internal(other.to_string()),
            })?;
    Ok((StatusCode::CREATED, Json(json!({"id": experiment.id, "name": experiment.spec.name}))))
}

/// `GET /api/sources`: configured sources with their counters.
pub(crate) async fn list_sources(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(sources_overview(&state).await?))
}

/// Configured sources with their counters, and what the proxy shed.
pub(crate) async fn sources_overview(state: &AppState) -> Result<Value, ApiError> {
    let stats = state.store.source_stats().await?;
    let items: Vec<Value> = state
        .config
        .sources
        .iter()
        .map(|source| {
            let s = stats.iter().find(|s| s.source == source.name).cloned().unwrap_or_default();
            json!({"name": source.name, "format": source.format, "sample_rate": source.sample_rate,
                   "received": s.received, "accepted": s.accepted, "sampled_out": s.sampled_out,
                   "duplicates": s.duplicates, "rejected": s.rejected, "redactions": s.redactions,
                   "last_seen_at": s.last_seen_at, "proxy": source.upstream.is_some()})
        })
        .collect();
    // Every serve process adds what it shed to the store's counter; this process's count may
    // be ahead of what it has recorded there yet.
    let recorded = state.store.counter(crate::writer::PROXY_SHED_COUNTER).await?;
    Ok(json!({"sources": items, "proxy_shed": recorded.max(state.proxy.shed()),
              "proxy_shed_this_process": state.proxy.shed()}))
}

/// Query of `GET /api/exchanges`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ExchangeQuery {
    source: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/exchanges?source=&limit=`: the most recent stored exchanges, as stored (redacted).
pub(crate) async fn list_exchanges(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<ExchangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let (exchanges, unreadable) = state.store.readable_exchanges(query.source.as_deref(), limit).await?;
    Ok(Json(json!({"exchanges": exchanges, "unreadable": unreadable})))
}

pub(crate) async fn experiment_report(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Report>, ApiError> {
    let experiment = state.store.require_experiment(&name).await?;
    Ok(Json(evaltap_report::build(&state.store, &experiment).await?))
}

/// `GET /api/alerts`: drift alerts, newest first, with their deliveries.
pub(crate) async fn list_alerts(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut alerts = Vec::new();
    for alert in state.store.alerts().await? {
        let deliveries: Vec<Value> = state
            .store
            .alert_deliveries(&alert.id)
            .await?
            .into_iter()
            .map(|(event, sink, attempts, delivered)| {
                serde_json::json!({"event": event, "sink": sink, "attempts": attempts, "delivered": delivered})
            })
            .collect();
        let mut value = serde_json::to_value(&alert).map_err(|e| ApiError::Internal(e.to_string()))?;
        value["deliveries"] = Value::Array(deliveries);
        alerts.push(value);
    }
    Ok(Json(serde_json::json!({"alerts": alerts})))
}
