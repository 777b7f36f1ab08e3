//! The recommendations page of an experiment: per segment of traffic its share, verdicts,
//! recommendation, monthly saving and evidence, a cost-vs-quality chart per segment, and the
//! export for each gateway ready to copy.

use axum::extract::State;
use axum::response::Html;
use evaltap_recommend::export::{ExportOptions, GATEWAYS};
use serde_json::{Value, json};

use crate::dashboard::render;
use crate::error::{ApiPath, ApiQuery};
use crate::golden_api::context;
use crate::views::{RubricQuery, chosen_rubric};
use crate::{ApiError, AppState};

pub(crate) async fn recommendations(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<RubricQuery>,
) -> Result<Html<String>, ApiError> {
    let ctx = context(&state);
    let computed = evaltap_app::recommend::compute(&ctx, &name).await?;
    let rubric = chosen_rubric(&computed.report, query.rubric.as_deref())?;
    let rubrics: Vec<String> = computed.experiment.spec.rubrics.clone();
    // Each segment charted as the experiment page charts the whole: its own baseline and
    // candidates, its own verdicts.
    let charts: Vec<Value> = computed
        .segmented
        .segments
        .iter()
        .map(|segment| {
            let mut report = computed.report.clone();
            report.baseline = segment.baseline.clone();
            report.candidates = segment.candidates.iter().map(|c| c.results.clone()).collect();
            let chart = evaltap_report::chart::chart(&report, &rubric);
            json!({"segment": segment.label, "svg": evaltap_report::chart::render_svg(&chart), "empty": chart.empty})
        })
        .collect();
    let exports: Vec<Value> = std::iter::once("json")
        .chain(GATEWAYS.iter().map(|g| g.name()))
        .map(|format| {
            match evaltap_app::recommend::export_computed(&ctx, &computed, format, &ExportOptions::default())
            {
                Ok(export) => json!({"format": format, "body": export.body, "notes": export.notes}),
                Err(err) => json!({"format": format, "error": err.to_string()}),
            }
        })
        .collect();
    render(
        &state,
        "recommendations.html",
        json!({"experiment": computed.experiment.spec.name, "recommendations": computed.recommendations,
               "segmented": computed.segmented, "charts": charts, "exports": exports,
               "rubric": rubric, "rubrics": rubrics}),
    )
}
