//! The JSON API: one endpoint behind every page, typed, documented at `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use evaltap_report::Report;
use evaltap_report::chart::Chart;
use evaltap_report::examples::{ExampleDetail, ExamplePage};
use evaltap_report::savings::MonthlyProjection;
use evaltap_store::{Alert, StoredExchange};
use evaltap_worker::{CreateError, ExperimentRequest};
use serde_json::Value;

use crate::error::{ApiPath, ApiQuery, ErrorBody};
use crate::views::{self, ExampleQuery, ExperimentList, RubricQuery, SourcesView, SpendQuery, SpendView};
use crate::{ApiError, AppState};

/// List experiments, newest first.
#[utoipa::path(get, path = "/api/experiments", tag = "experiments",
    responses((status = 200, body = ExperimentList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_experiments(
    State(state): State<AppState>,
) -> Result<Json<ExperimentList>, ApiError> {
    Ok(Json(views::experiment_list(&state).await?))
}

/// Create an experiment (admin). The body names candidates, rubrics, `sample_size` and
/// `spend_cap_usd` (null for no cap).
#[utoipa::path(post, path = "/api/experiments", tag = "experiments", request_body = ExperimentRequest,
    responses((status = 201, body = CreatedExperiment), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn create_experiment(
    State(state): State<AppState>,
    request: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedExperiment>), ApiError> {
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
    let experiment = evaltap_worker::create_experiment(&state.config, &state.rubrics, &state.store, request)
        .await
        .map_err(|err| match err {
            CreateError::Invalid(msg) => ApiError::bad_request(msg),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok((StatusCode::CREATED, Json(CreatedExperiment { id: experiment.id, name: experiment.spec.name })))
}

/// A created experiment.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedExperiment {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// An experiment's report: per candidate and rubric the paired comparison, verdicts, cost.
/// Computed once per state of the results and stored.
#[utoipa::path(get, path = "/api/experiments/{name}", tag = "experiments",
    params(("name" = String, Path, description = "experiment name")),
    responses((status = 200, body = Report), (status = 404, body = ErrorBody)))]
pub(crate) async fn experiment_report(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Report>, ApiError> {
    let experiment = state.store.require_experiment(&name).await?;
    Ok(Json(views::report(&state, &experiment).await?))
}

/// The cost-vs-quality chart of one rubric: a point per candidate and the baseline, 95%
/// intervals, the Pareto frontier.
#[utoipa::path(get, path = "/api/experiments/{name}/chart", tag = "experiments",
    params(("name" = String, Path, description = "experiment name"), RubricQuery),
    responses((status = 200, body = Chart), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn experiment_chart(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<RubricQuery>,
) -> Result<Json<Chart>, ApiError> {
    let experiment = state.store.require_experiment(&name).await?;
    let report = views::report(&state, &experiment).await?;
    let rubric = views::chosen_rubric(&report, query.rubric.as_deref())?;
    Ok(Json(views::chart(&report, &rubric)))
}

/// Monthly cost of the baseline and each candidate at the last 30 days' traffic.
#[utoipa::path(get, path = "/api/experiments/{name}/projection", tag = "experiments",
    params(("name" = String, Path, description = "experiment name")),
    responses((status = 200, body = MonthlyProjection), (status = 404, body = ErrorBody)))]
pub(crate) async fn experiment_projection(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<MonthlyProjection>, ApiError> {
    let experiment = state.store.require_experiment(&name).await?;
    let report = views::report(&state, &experiment).await?;
    Ok(Json(views::projection(&state, &experiment, &report).await?))
}

/// Per-example scores, filtered, largest regressions first, paginated.
#[utoipa::path(get, path = "/api/experiments/{name}/examples", tag = "examples",
    params(("name" = String, Path, description = "experiment name"), ExampleQuery),
    responses((status = 200, body = ExamplePage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn experiment_examples(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ExampleQuery>,
) -> Result<Json<ExamplePage>, ApiError> {
    let experiment = state.store.require_experiment(&name).await?;
    Ok(Json(views::examples(&state, &experiment, &query).await?))
}

/// One example: the request, every answer with a word diff against the baseline, every
/// judgment with its reason, tokens, cost and latency.
#[utoipa::path(get, path = "/api/experiments/{name}/examples/{item_id}", tag = "examples",
    params(("name" = String, Path, description = "experiment name"), ("item_id" = String, Path, description = "exchange id or dataset item key")),
    responses((status = 200, body = ExampleDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn experiment_example(
    State(state): State<AppState>,
    ApiPath((name, item_id)): ApiPath<(String, String)>,
) -> Result<Json<ExampleDetail>, ApiError> {
    Ok(Json(example_detail(&state, &name, &item_id).await?))
}

pub(crate) async fn example_detail(
    state: &AppState,
    name: &str,
    item_id: &str,
) -> Result<ExampleDetail, ApiError> {
    let experiment = state.store.require_experiment(name).await?;
    evaltap_report::examples::example(&state.store, &experiment, item_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("experiment `{name}` has no example `{item_id}`")))
}

/// Spend per source and model over a window (scaled by each source's sample rate), and what
/// each finished experiment's candidates would have cost.
#[utoipa::path(get, path = "/api/spend", tag = "spend", params(SpendQuery),
    responses((status = 200, body = SpendView), (status = 400, body = ErrorBody)))]
pub(crate) async fn spend(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SpendQuery>,
) -> Result<Json<SpendView>, ApiError> {
    Ok(Json(views::spend(&state, &query).await?))
}

/// The spend rows as CSV.
#[utoipa::path(get, path = "/api/spend.csv", tag = "spend", params(SpendQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = ErrorBody)))]
pub(crate) async fn spend_csv(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SpendQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let view = views::spend(&state, &query).await?;
    let filename = format!("attachment; filename=\"evaltap-spend-{}d.csv\"", view.days);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        views::spend_csv(&view)?,
    ))
}

/// Configured sources: counters, the last 24 hours of traffic, refusal reasons, proxy sheds.
#[utoipa::path(get, path = "/api/sources", tag = "sources",
    responses((status = 200, body = SourcesView)))]
pub(crate) async fn list_sources(State(state): State<AppState>) -> Result<Json<SourcesView>, ApiError> {
    Ok(Json(views::sources(&state).await?))
}

/// Query of `GET /api/exchanges`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExchangeQuery {
    /// Only this source.
    source: Option<String>,
    /// At most this many (default 100, 1 to 1000).
    limit: Option<i64>,
}

/// The most recent stored exchanges, as stored (redacted).
#[utoipa::path(get, path = "/api/exchanges", tag = "exchanges", params(ExchangeQuery),
    responses((status = 200, body = ExchangeList), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_exchanges(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ExchangeQuery>,
) -> Result<Json<ExchangeList>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let (exchanges, unreadable) = state.store.readable_exchanges(query.source.as_deref(), limit).await?;
    Ok(Json(ExchangeList { exchanges, unreadable }))
}

/// `GET /api/exchanges`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ExchangeList {
    /// Newest first.
    pub exchanges: Vec<StoredExchange>,
    /// Rows that did not read back (skipped, counted).
    pub unreadable: usize,
}

/// A drift alert with its deliveries.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// The alert.
    #[serde(flatten)]
    pub alert: Alert,
    /// Where it was sent.
    pub deliveries: Vec<AlertDelivery>,
}

/// One delivery of an alert event to a sink.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AlertDelivery {
    /// `opened` or `closed`.
    pub event: String,
    /// The sink.
    pub sink: String,
    /// Attempts made.
    pub attempts: i64,
    /// Whether it arrived.
    pub delivered: bool,
}

/// `GET /api/alerts`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AlertList {
    /// Newest first.
    pub alerts: Vec<AlertView>,
}

/// Drift alerts, newest first, with their deliveries.
#[utoipa::path(get, path = "/api/alerts", tag = "drift", responses((status = 200, body = AlertList)))]
pub(crate) async fn list_alerts(State(state): State<AppState>) -> Result<Json<AlertList>, ApiError> {
    let mut alerts = Vec::new();
    for alert in state.store.alerts().await? {
        let deliveries = state
            .store
            .alert_deliveries(&alert.id)
            .await?
            .into_iter()
            .map(|(event, sink, attempts, delivered)| AlertDelivery { event, sink, attempts, delivered })
            .collect();
        alerts.push(AlertView { alert, deliveries });
    }
    Ok(Json(AlertList { alerts }))
}

/// The API's description.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "evaltap", description = "Continuous evaluation of LLMs on production traffic: the JSON API behind the dashboard. Every error is `{\"error\": \"…\"}`."),
    paths(list_experiments, create_experiment, experiment_report, experiment_chart, experiment_projection,
          experiment_examples, experiment_example, spend, spend_csv, list_sources, list_exchanges, list_alerts,
          crate::golden_api::gate, crate::golden_api::list_datasets, crate::golden_api::show_dataset,
          crate::golden_api::import_items, crate::golden_api::start_run, crate::golden_api::list_schedules,
          crate::golden_api::add_schedule, crate::golden_api::show_schedule, crate::golden_api::pause_schedule,
          crate::golden_api::resume_schedule, crate::golden_api::remove_schedule,
          crate::recommend_api::segments, crate::recommend_api::recommendations),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`: the OpenAPI 3.1 description, generated from the handlers and types.
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}
