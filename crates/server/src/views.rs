//! What each page shows, as typed structs: the JSON API returns them, the HTML pages render
//! them. Built from stored statistics and grouped queries, never one query per row.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use evaltap_report::Report;
use evaltap_report::chart::Chart;
use evaltap_report::examples::{ExampleFilter, ExamplePage, ExampleRow};
use evaltap_report::savings::{MonthlyProjection, SpendRow, WhatIf};
use evaltap_store::{BaselineSpec, Experiment, HourlyCount, RejectionReason, SourceStats};
use serde::{Deserialize, Serialize};

use crate::{ApiError, AppState};

/// An experiment in the list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExperimentSummary {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// When it was created.
    pub created_at: chrono::DateTime<Utc>,
    /// Candidate names.
    pub candidates: Vec<String>,
    /// Rubric names.
    pub rubrics: Vec<String>,
}

/// `GET /api/experiments`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExperimentList {
    /// Newest first.
    pub experiments: Vec<ExperimentSummary>,
}

pub(crate) async fn experiment_list(state: &AppState) -> Result<ExperimentList, ApiError> {
    let experiments = state.store.experiments().await?;
    Ok(ExperimentList {
        experiments: experiments
            .iter()
            .map(|e| ExperimentSummary {
                id: e.id.clone(),
                name: e.spec.name.clone(),
                created_at: e.created_at,
                candidates: e.spec.candidates.iter().map(|c| c.name.clone()).collect(),
                rubrics: e.spec.rubrics.clone(),
            })
            .collect(),
    })
}

/// The stored report of an experiment (computed only when its results changed).
pub(crate) async fn report(state: &AppState, experiment: &Experiment) -> Result<Report, ApiError> {
    Ok(evaltap_report::stored(&state.store, experiment).await?)
}

/// Query selecting a rubric.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RubricQuery {
    /// Rubric to chart (default: the experiment's first).
    pub rubric: Option<String>,
}

/// The rubric `requested`, which must be one of the report's, else its first.
pub(crate) fn chosen_rubric(report: &Report, requested: Option<&str>) -> Result<String, ApiError> {
    let rubrics: Vec<&String> =
        report.candidates.first().map(|c| c.rubrics.iter().map(|r| &r.rubric).collect()).unwrap_or_default();
    match requested {
        Some(r) if rubrics.iter().any(|x| *x == r) => Ok(r.to_string()),
        Some(r) => Err(ApiError::bad_request(format!(
            "unknown rubric `{r}` (this experiment has: {})",
            rubrics.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))),
        None => Ok(rubrics.first().map(|s| s.to_string()).unwrap_or_default()),
    }
}

pub(crate) fn chart(report: &Report, rubric: &str) -> Chart {
    evaltap_report::chart::chart(report, rubric)
}

fn sample_rates(state: &AppState) -> BTreeMap<String, f64> {
    state.config.sources.iter().map(|s| (s.name.clone(), s.sample_rate)).collect()
}

/// Monthly cost of baseline and candidates at the last 30 days' traffic of the baseline's
/// model (within the experiment's source, if it has one), scaled by each source's sample rate.
pub(crate) async fn projection(
    state: &AppState,
    experiment: &Experiment,
    report: &Report,
) -> Result<MonthlyProjection, ApiError> {
    let volume = evaltap_app::recommend::traffic_volume(
        &crate::golden_api::context(state),
        experiment,
        &report.baseline,
    )
    .await?;
    Ok(evaltap_report::savings::monthly_projection(report, &volume))
}

/// Query of the examples listing.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExampleQuery {
    /// Only this candidate.
    pub candidate: Option<String>,
    /// Only this rubric.
    pub rubric: Option<String>,
    /// `regressions` (largest drop first), `improvements`, or `all` (default).
    pub direction: Option<String>,
    /// `key=value`: only exchanges with this tag.
    pub tag: Option<String>,
    /// Only exchanges from this source.
    pub source: Option<String>,
    /// Page, from 1.
    pub page: Option<usize>,
    /// Rows per page (default 50, at most 500).
    pub per_page: Option<usize>,
}

impl ExampleQuery {
    fn filter(&self) -> ExampleFilter {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        ExampleFilter {
            candidate: nonempty(&self.candidate),
            rubric: nonempty(&self.rubric),
            direction: nonempty(&self.direction),
            tag: nonempty(&self.tag),
            source: nonempty(&self.source),
        }
    }
}

pub(crate) async fn examples(
    state: &AppState,
    experiment: &Experiment,
    query: &ExampleQuery,
) -> Result<ExamplePage, ApiError> {
    if let Some(direction) = query.direction.as_deref().filter(|d| !d.is_empty())
        && !["regressions", "improvements", "all"].contains(&direction)
    {
        return Err(ApiError::bad_request(format!(
            "unknown direction `{direction}` (regressions, improvements or all)"
        )));
    }
    let rows = state.example_rows.rows(&state.store, experiment).await?;
    let filter = query.filter();
    let (page, per_page) = (query.page.unwrap_or(1), query.per_page.unwrap_or(50));
    let page = evaltap_report::examples::page(&rows, &filter, page, per_page);
    Ok(evaltap_report::examples::with_answers(&state.store, experiment, page).await?)
}

/// Experiments whose example rows are kept in memory at once.
const CACHED_EXPERIMENTS: usize = 8;

/// An experiment's example rows at a results fingerprint: (experiment id, fingerprint, rows).
type CachedRows = (String, String, std::sync::Arc<Vec<ExampleRow>>);

/// Each recently listed experiment's example rows with the results fingerprint they were built
/// at: paging and filtering then need one fingerprint query, not every score again.
#[derive(Default)]
pub(crate) struct ExampleRowCache {
    /// (experiment id, fingerprint, rows), most recently used last.
    entries: std::sync::Mutex<Vec<CachedRows>>,
}

impl ExampleRowCache {
    async fn rows(
        &self,
        store: &evaltap_store::Store,
        experiment: &Experiment,
    ) -> Result<std::sync::Arc<Vec<ExampleRow>>, ApiError> {
        let fingerprint = store.results_fingerprint(&experiment.id).await?;
        {
            let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(at) = entries.iter().position(|(id, f, _)| *id == experiment.id && *f == fingerprint)
            {
                let entry = entries.remove(at);
                let rows = entry.2.clone();
                entries.push(entry);
                return Ok(rows);
            }
        }
        let inputs = evaltap_report::examples::load(store, experiment).await?;
        let rows = tokio::task::spawn_blocking(move || evaltap_report::examples::example_rows(&inputs))
            .await
            .map_err(|e| ApiError::Internal(format!("building the example rows: {e}")))?;
        let rows = std::sync::Arc::new(rows);
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|(id, _, _)| *id != experiment.id);
        if entries.len() >= CACHED_EXPERIMENTS {
            entries.remove(0);
        }
        entries.push((experiment.id.clone(), fingerprint, rows.clone()));
        Ok(rows)
    }
}

/// Query of the spend page.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SpendQuery {
    /// The window: the last this many days (default 30, 1 to 366).
    pub days: Option<i64>,
}

/// `GET /api/spend`: spend per source and model over a window, and what finished experiments
/// say it would have cost on each candidate.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SpendView {
    /// Window length in days.
    pub days: i64,
    /// Start of the window.
    pub since: chrono::DateTime<Utc>,
    /// End of the window (now).
    pub until: chrono::DateTime<Utc>,
    /// Per source and model.
    pub rows: Vec<SpendRow>,
    /// Estimated spend per model over all sources.
    pub by_model: BTreeMap<String, f64>,
    /// Estimated spend in all.
    pub total_usd: f64,
    /// "You spent $X on M; C would have cost $Y…", one per finished experiment and candidate.
    pub what_if: Vec<WhatIf>,
}

pub(crate) async fn spend(state: &AppState, query: &SpendQuery) -> Result<SpendView, ApiError> {
    let days = query.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_request(format!("`days` must be between 1 and 366, not {days}")));
    }
    let until = Utc::now();
    let since = until - Duration::days(days);
    let traffic = state.store.traffic_by_source_and_model(since, until).await?;
    let rows = evaltap_report::savings::spend_rows(&traffic, &sample_rates(state), &state.config.prices);
    let mut by_model: BTreeMap<String, f64> = BTreeMap::new();
    for row in &rows {
        *by_model.entry(row.model.clone()).or_default() += row.estimated_spend_usd;
    }
    let mut reports = Vec::new();
    // Only finished experiments speak for a swap; a running one is not computed for this page.
    for experiment in state.store.experiments().await? {
        if experiment.spec.dataset.is_none()
            && experiment.spec.baseline == BaselineSpec::Production
            && state.store.experiment_progress(&experiment).await?.is_done()
        {
            reports.push(report(state, &experiment).await?);
        }
    }
    Ok(SpendView {
        days,
        since,
        until,
        total_usd: rows.iter().map(|r| r.estimated_spend_usd).sum(),
        what_if: evaltap_report::savings::what_if(&by_model, &reports),
        by_model,
        rows,
    })
}

/// The spend rows as CSV.
pub(crate) fn spend_csv(view: &SpendView) -> Result<String, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ApiError::Internal(format!("writing CSV: {e}"));
    writer
        .write_record([
            "source",
            "model",
            "stored_requests",
            "sample_rate",
            "estimated_requests",
            "stored_cost_usd",
            "unpriced_requests",
            "estimated_spend_usd",
        ])
        .map_err(fail)?;
    for r in &view.rows {
        writer
            .write_record([
                r.source.clone(),
                r.model.clone(),
                r.stored_requests.to_string(),
                r.sample_rate.to_string(),
                format!("{:.2}", r.estimated_requests),
                format!("{:.6}", r.stored_cost_usd),
                r.unpriced_requests.to_string(),
                format!("{:.6}", r.estimated_spend_usd),
            ])
            .map_err(fail)?;
    }
    let bytes = writer.into_inner().map_err(|e| ApiError::Internal(format!("writing CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| ApiError::Internal(e.to_string()))
}

/// A configured source with its counters.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    /// Name.
    pub name: String,
    /// Ingest format.
    pub format: String,
    /// Share of traffic kept.
    pub sample_rate: f64,
    /// Whether it has a tee proxy.
    pub proxy: bool,
    /// Lifetime counters.
    #[serde(flatten)]
    pub stats: SourceStats,
    /// Stored exchanges per hour over the last 24 hours, oldest first (24 entries).
    pub last_24h: Vec<u64>,
}

/// `GET /api/sources`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourcesView {
    /// Configured sources.
    pub sources: Vec<SourceView>,
    /// The hours of `last_24h`, `YYYY-MM-DDTHH` (UTC).
    pub hours: Vec<String>,
    /// The commonest refusal reasons per source.
    pub rejection_reasons: Vec<RejectionReason>,
    /// Exchanges the tee proxies shed (all serve processes).
    pub proxy_shed: u64,
    /// Of which this process has shed.
    pub proxy_shed_this_process: u64,
}

pub(crate) async fn sources(state: &AppState) -> Result<SourcesView, ApiError> {
    let stats = state.store.source_stats().await?;
    let now = Utc::now();
    let first_hour = now - Duration::hours(23);
    let hours: Vec<String> =
        (0..24).map(|h| (first_hour + Duration::hours(h)).format("%Y-%m-%dT%H").to_string()).collect();
    // The rollup is by whole hours: the hour holding `first_hour` is the first of the 24.
    let hourly: Vec<HourlyCount> = state.store.hourly_traffic(first_hour, now).await?;
    let sources = state
        .config
        .sources
        .iter()
        .map(|source| SourceView {
            name: source.name.clone(),
            format: source.format.clone(),
            sample_rate: source.sample_rate,
            proxy: source.upstream.is_some(),
            stats: stats.iter().find(|s| s.source == source.name).cloned().unwrap_or_default(),
            last_24h: hours
                .iter()
                .map(|h| {
                    hourly.iter().find(|c| c.source == source.name && &c.hour == h).map_or(0, |c| c.requests)
                })
                .collect(),
        })
        .collect();
    // Every serve process adds what it shed to the store's counter; this process's count may
    // be ahead of what it has recorded there yet.
    let recorded = state.store.counter(crate::writer::PROXY_SHED_COUNTER).await?;
    Ok(SourcesView {
        sources,
        hours,
        rejection_reasons: state.store.top_rejection_reasons(5).await?,
        proxy_shed: recorded.max(state.proxy.shed()),
        proxy_shed_this_process: state.proxy.shed(),
    })
}
