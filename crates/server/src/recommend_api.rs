//! Segments and per-route recommendations over HTTP: the use cases of `evaltap recommend`
//! (`evaltap_app::recommend`), with the same rules. Read tokens read them.

use axum::Json;
use axum::extract::State;
use evaltap_recommend::Recommendations;
use evaltap_recommend::export::{Export, ExportOptions};
use evaltap_report::segments::SegmentedReport;
use serde::{Deserialize, Serialize};

use crate::error::{ApiPath, ApiQuery, ErrorBody};
use crate::golden_api::context;
use crate::{ApiError, AppState};

/// An experiment's results per segment of traffic (`[recommend] segment_by`, `route` by
/// default): per segment × candidate × rubric the paired comparison, Holm across all of them.
#[utoipa::path(get, path = "/api/experiments/{name}/segments", tag = "experiments",
    params(("name" = String, Path, description = "experiment name")),
    responses((status = 200, body = SegmentedReport), (status = 404, body = ErrorBody)))]
pub(crate) async fn segments(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SegmentedReport>, ApiError> {
    let (_, segmented) = evaltap_app::recommend::segmented(&context(&state), &name).await?;
    Ok(Json(segmented))
}

/// Which export to write.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationQuery {
    /// `json`, `litellm`, `portkey`, `kong` or `openrouter`; without it, the recommendations
    /// themselves.
    pub format: Option<String>,
    /// Percentage of a switched route sent to the new model (1–99), where the gateway can
    /// weight targets.
    pub canary: Option<u8>,
}

/// The recommendations, and the export when a format was asked for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecommendationView {
    /// Per segment: switch (with the saving and the evidence) or keep (with the reason).
    pub recommendations: Recommendations,
    /// The gateway configuration (`body`) and what to do with it (`notes`).
    pub export: Option<Export>,
}

/// Per segment of traffic, the cheapest candidate shown non-inferior on every rubric within the
/// error and latency limits, or production kept with the reason; with `format`, the gateway
/// configuration that applies it (`export.body`: `curl … | jq -r .export.body`).
#[utoipa::path(get, path = "/api/experiments/{name}/recommendations", tag = "experiments",
    params(("name" = String, Path, description = "experiment name"), RecommendationQuery),
    responses((status = 200, body = RecommendationView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn recommendations(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<RecommendationQuery>,
) -> Result<Json<RecommendationView>, ApiError> {
    let ctx = context(&state);
    let view = match &query.format {
        Some(format) => {
            let options = ExportOptions { canary_pct: query.canary };
            let (recommendations, export) =
                evaltap_app::recommend::export_recommendations(&ctx, &name, format, &options).await?;
            RecommendationView { recommendations, export: Some(export) }
        }
        None if query.canary.is_some() => {
            return Err(ApiError::bad_request("`canary` applies to an export: add `format`"));
        }
        None => RecommendationView {
            recommendations: evaltap_app::recommend::recommendations(&ctx, &name).await?,
            export: None,
        },
    };
    Ok(Json(view))
}
