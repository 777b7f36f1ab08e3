//! Golden sets, their runs, the CI gate and drift schedules over HTTP: the use cases of
//! `evaltap golden …` and `evaltap gate` (`evaltap-app`), with the same rules. Reads need a
//! read token, changes an admin token (as every route of the API).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use evaltap_app::{AppError, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiPath, ApiQuery, ErrorBody};
use crate::{ApiError, AppState};

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        use evaltap_golden::GoldenError;
        match err {
            AppError::Invalid(msg) => ApiError::bad_request(msg),
            AppError::NotFound(msg) => ApiError::not_found(msg),
            AppError::Conflict(msg) => ApiError::Client(StatusCode::CONFLICT, msg),
            AppError::Golden(err @ (GoldenError::Invalid { .. } | GoldenError::Refused(_))) => {
                ApiError::bad_request(err.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

pub(crate) fn context(state: &AppState) -> Context {
    Context { config: (*state.config).clone(), store: state.store.clone(), rubrics: state.rubrics.clone() }
}

/// A JSON body whose rejection is an [`ApiError`].
fn body<T: serde::de::DeserializeOwned>(request: Result<Json<Value>, JsonRejection>) -> Result<T, ApiError> {
    let Json(value) = request.map_err(|e| ApiError::Client(e.status(), e.body_text()))?;
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// The datasets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DatasetList {
    /// Per dataset: `name`, `items`, `drafts`, `version` (of the file), `synced`,
    /// `stored_versions`, `error` (when the file does not read).
    #[schema(value_type = Vec<Object>)]
    pub datasets: Vec<evaltap_app::golden::DatasetRow>,
}

/// The datasets with their item counts, drafts and versions (as `evaltap golden list --json`).
#[utoipa::path(get, path = "/api/datasets", tag = "golden", responses((status = 200, body = DatasetList)))]
pub(crate) async fn list_datasets(State(state): State<AppState>) -> Result<Json<DatasetList>, ApiError> {
    Ok(Json(DatasetList { datasets: evaltap_app::golden::list_rows(&context(&state)).await? }))
}

/// One dataset.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DatasetView {
    /// Name.
    pub name: String,
    /// The file's content version.
    pub version: String,
    /// Its items.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<evaltap_golden::Item>,
    /// Items whose reference is still a draft.
    pub drafts: usize,
    /// Versions stored in the database, newest first, each with the runs that used it.
    pub versions: Vec<VersionView>,
}

/// A stored version of a dataset.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    /// Content hash.
    pub version: String,
    /// Items.
    pub items: i64,
    /// When it was first registered.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Experiments (golden runs and scheduled runs) over this version.
    pub runs: Vec<String>,
}

/// A dataset's items, drafts, and stored versions with the runs that used each.
#[utoipa::path(get, path = "/api/datasets/{name}", tag = "golden",
    params(("name" = String, Path, description = "dataset name")),
    responses((status = 200, body = DatasetView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show_dataset(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<DatasetView>, ApiError> {
    let ctx = context(&state);
    let items = evaltap_app::golden::datasets(&ctx).read(&name).map_err(AppError::from)?;
    let experiments = state.store.experiments().await?;
    let versions = state
        .store
        .dataset_versions(&name)
        .await?
        .into_iter()
        .map(|v| VersionView {
            runs: experiments
                .iter()
                .filter(|e| e.spec.dataset.as_ref().is_some_and(|d| d.name == name && d.version == v.version))
                .map(|e| e.spec.name.clone())
                .collect(),
            version: v.version,
            items: v.items,
            created_at: v.created_at,
        })
        .collect();
    Ok(Json(DatasetView {
        version: evaltap_golden::version_of(&items),
        drafts: items.iter().filter(|i| i.draft).count(),
        name,
        items,
        versions,
    }))
}

/// Items to import into a dataset.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The file's content.
    pub content: String,
    /// Its format (`native`, `langfuse`, `promptfoo`, `braintrust`, `inspect`, …); detected
    /// when absent.
    #[serde(default)]
    pub format: Option<String>,
    /// A name for the content in messages (default `upload`); its extension helps detection.
    #[serde(default)]
    pub filename: Option<String>,
    /// Field mappings, `item_field=source_field`.
    #[serde(default)]
    pub map: Vec<String>,
}

/// What an import did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Imported {
    /// Items imported.
    pub imported: usize,
    /// Items in the dataset now.
    pub items: usize,
    /// Its version now (registered).
    pub version: String,
    /// What became of the source's fields.
    pub notes: Vec<String>,
}

/// Imports items into a dataset (creating it), all or nothing: one bad record and nothing is
/// added. Admin.
#[utoipa::path(post, path = "/api/datasets/{name}/items", tag = "golden", request_body = ImportRequest,
    params(("name" = String, Path, description = "dataset name")),
    responses((status = 201, body = Imported), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn import_items(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    request: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Imported>), ApiError> {
    let import: ImportRequest = body(request)?;
    let ctx = context(&state);
    let label = import.filename.as_deref().unwrap_or("upload");
    let (imported, notes) = evaltap_app::golden::import_text(
        &ctx,
        &name,
        label,
        &import.content,
        import.format.as_deref(),
        &import.map,
    )?;
    let (version, _, items) = evaltap_app::golden::sync(&ctx, &name).await?;
    Ok((StatusCode::CREATED, Json(Imported { imported, items, version, notes })))
}

/// A started golden run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StartedRun {
    /// Experiment id.
    pub id: String,
    /// Experiment name: read its report at `/api/experiments/{name}` and gate it at
    /// `/api/experiments/{name}/gate`.
    pub name: String,
    /// Expected cost in USD.
    pub estimated_usd: f64,
    /// The expected cost in words.
    pub estimate: String,
    /// Set when the dataset is too small for the margin.
    pub note: Option<String>,
}

/// Starts a run of the dataset's current version (admin): the body is `evaltap golden run`'s
/// options — `candidates`, `baseline` or `against_reference`, `rubrics`, `checks`, `name`,
/// `margin` — and `spend_cap_usd`, required (a budget in USD, or an explicit null for no cap).
/// The jobs run in whatever `serve` or `worker` processes are up.
#[utoipa::path(post, path = "/api/datasets/{name}/runs", tag = "golden", request_body = Object,
    params(("name" = String, Path, description = "dataset name")),
    responses((status = 201, body = StartedRun), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn start_run(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    request: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<StartedRun>), ApiError> {
    if let Ok(Json(value)) = &request
        && value.get("spend_cap_usd").is_none()
    {
        return Err(ApiError::bad_request(
            "`spend_cap_usd` is required: a budget in USD, or an explicit null for no cap",
        ));
    }
    let options: evaltap_app::golden::GoldenRun = body(request)?;
    let (experiment, plan) = evaltap_app::golden::start_run(&context(&state), &name, &options).await?;
    Ok((
        StatusCode::CREATED,
        Json(StartedRun {
            id: experiment.id,
            name: experiment.spec.name,
            estimated_usd: plan.estimate.total_usd(),
            estimate: plan.estimate.line(),
            note: plan.note,
        }),
    ))
}

/// Which candidate to gate.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GateQuery {
    /// Gate only this candidate (default: every candidate).
    pub candidate: Option<String>,
}

/// The gate's decision, as `evaltap gate` exits.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GateView {
    /// Experiment name.
    pub experiment: String,
    /// `pass`, `regression` or `undecided`.
    pub result: String,
    /// The exit code `evaltap gate` gives: 0 pass, 1 regression, 2 undecided.
    pub exit_code: u8,
    /// Why it is not a pass.
    pub reasons: Vec<String>,
    /// Per candidate × rubric.
    pub rows: Vec<GateRowView>,
}

/// One gated candidate × rubric.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GateRowView {
    /// Candidate.
    pub candidate: String,
    /// Rubric or check.
    pub rubric: String,
    /// Its verdict.
    pub verdict: String,
    /// Pairs.
    pub n: usize,
    /// Candidate − baseline.
    pub delta: f64,
    /// Interval of Δ.
    pub ci_low: f64,
    /// See `ci_low`.
    pub ci_high: f64,
    /// Holm-adjusted p.
    pub p_holm: f64,
}

/// The CI gate on an experiment: `pass` when every rubric of every gated candidate is `better`
/// or `non-inferior`, `regression` on any `worse`, `undecided` otherwise (still running, too few
/// pairs). A CI job reads `exit_code`.
#[utoipa::path(get, path = "/api/experiments/{name}/gate", tag = "experiments",
    params(("name" = String, Path, description = "experiment name"), GateQuery),
    responses((status = 200, body = GateView), (status = 404, body = ErrorBody)))]
pub(crate) async fn gate(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<GateQuery>,
) -> Result<Json<GateView>, ApiError> {
    use evaltap_app::gate::GateCode;
    let experiment = state.store.require_experiment(&name).await?;
    let report = crate::views::report(&state, &experiment).await?;
    if let Some(candidate) = &query.candidate
        && !report.candidates.iter().any(|c| &c.name == candidate)
    {
        return Err(ApiError::not_found(format!("experiment `{name}` has no candidate `{candidate}`")));
    }
    let outcome = evaltap_app::gate::evaluate(&report, query.candidate.as_deref());
    let (result, exit_code) = match outcome.code {
        GateCode::Pass => ("pass", 0),
        GateCode::Regression => ("regression", 1),
        GateCode::Undecided => ("undecided", 2),
    };
    Ok(Json(GateView {
        experiment: report.experiment.clone(),
        result: result.into(),
        exit_code,
        reasons: outcome.reasons.clone(),
        rows: outcome
            .rows
            .iter()
            .map(|r| GateRowView {
                candidate: r.candidate.clone(),
                rubric: r.rubric.clone(),
                verdict: r.verdict.to_string(),
                n: r.n,
                delta: r.delta,
                ci_low: r.ci.0,
                ci_high: r.ci.1,
                p_holm: r.p_holm,
            })
            .collect(),
    }))
}

/// Drift schedules.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    /// Per schedule: its fields, `runs`, `failed_to_start`, `reference_runs` of
    /// `reference_needed`, `open_alerts`, `status` (`ok`, `paused`, `failing`) and `error`.
    #[schema(value_type = Vec<Object>)]
    pub schedules: Vec<evaltap_app::schedules::ScheduleStatus>,
}

/// The drift schedules with their runs, reference and open alerts.
#[utoipa::path(get, path = "/api/schedules", tag = "drift", responses((status = 200, body = ScheduleList)))]
pub(crate) async fn list_schedules(State(state): State<AppState>) -> Result<Json<ScheduleList>, ApiError> {
    Ok(Json(ScheduleList { schedules: evaltap_app::schedules::list(&context(&state)).await? }))
}

/// A schedule, as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// The schedule.
    #[schema(value_type = Object)]
    pub schedule: evaltap_store::Schedule,
}

/// Adds a drift schedule (admin): `dataset` (its current version is pinned), `candidate`,
/// `every` (`6h`, `30m`, `1d`…), `rubrics`, `checks`, `margin`, `name`.
#[utoipa::path(post, path = "/api/schedules", tag = "drift", request_body = Object,
    responses((status = 201, body = ScheduleView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn add_schedule(
    State(state): State<AppState>,
    request: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let new: evaltap_app::schedules::NewSchedule = body(request)?;
    let schedule = evaltap_app::schedules::add(&context(&state), &new).await?;
    Ok((StatusCode::CREATED, Json(ScheduleView { schedule })))
}

/// A schedule with its runs and alerts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleDetail {
    /// The schedule.
    #[schema(value_type = Object)]
    pub schedule: evaltap_store::Schedule,
    /// Its runs, oldest first: each with its experiment and what its evaluation found
    /// (`reference`, or per rubric Δ against the reference runs and the permutation p-values).
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<evaltap_store::ScheduleRun>,
    /// Its alerts.
    pub alerts: Vec<evaltap_store::Alert>,
}

/// One schedule with its runs and alerts.
#[utoipa::path(get, path = "/api/schedules/{name}", tag = "drift",
    params(("name" = String, Path, description = "schedule name")),
    responses((status = 200, body = ScheduleDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn show_schedule(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleDetail>, ApiError> {
    let (schedule, runs, alerts) = evaltap_app::schedules::show(&context(&state), &name).await?;
    Ok(Json(ScheduleDetail { schedule, runs, alerts }))
}

/// Pauses a schedule (admin).
#[utoipa::path(post, path = "/api/schedules/{name}/pause", tag = "drift",
    params(("name" = String, Path, description = "schedule name")),
    responses((status = 200, body = ScheduleView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn pause_schedule(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(ScheduleView {
        schedule: evaltap_app::schedules::set_paused(&context(&state), &name, true).await?,
    }))
}

/// Resumes a paused schedule (admin).
#[utoipa::path(post, path = "/api/schedules/{name}/resume", tag = "drift",
    params(("name" = String, Path, description = "schedule name")),
    responses((status = 200, body = ScheduleView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn resume_schedule(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(ScheduleView {
        schedule: evaltap_app::schedules::set_paused(&context(&state), &name, false).await?,
    }))
}

/// Deletes a schedule with its runs' records and alerts; the runs' experiments stay (admin).
#[utoipa::path(delete, path = "/api/schedules/{name}", tag = "drift",
    params(("name" = String, Path, description = "schedule name")),
    responses((status = 200, body = ScheduleView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove_schedule(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(ScheduleView { schedule: evaltap_app::schedules::remove(&context(&state), &name).await? }))
}
