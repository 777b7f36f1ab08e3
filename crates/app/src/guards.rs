//! Guards after a switch (`evaltap guard add`, `evaltap recommend --watch`): once a route's
//! traffic comes from the recommended model, keep replaying a sample of it against the former
//! production model and alert through the drift alert sinks when the new model turns out worse
//! than the margin.

use evaltap_recommend::{Action, Recommendations};
use evaltap_store::{Experiment, GuardSpec, Schedule};

use crate::{AppError, Context};

/// What to guard.
#[derive(Debug, Clone)]
pub struct GuardRequest {
    /// The experiment whose recommendation was applied.
    pub experiment: String,
    /// The switched route (a value of the experiment's segment tag).
    pub route: String,
    /// Period between runs (`1h`, `6h`…).
    pub every: String,
    /// Most exchanges replayed per run.
    pub sample: usize,
    /// The new model's name as the gateway reports it, when it differs from the candidate's.
    pub model: Option<String>,
    /// Guard name (default `guard:<experiment>:<route>`).
    pub name: Option<String>,
}

/// Adds a guard on a route the experiment's recommendations switched: the former production
/// model is the configured candidate calling it; the rubrics and margin are the experiment's.
pub async fn add(ctx: &Context, request: &GuardRequest) -> Result<Schedule, AppError> {
    let experiment = ctx.store.require_experiment(&request.experiment).await?;
    let recommendations = crate::recommend::recommendations(ctx, &request.experiment).await?;
    add_on(ctx, &experiment, &recommendations, request).await
}

/// [`add`] on recommendations already computed.
async fn add_on(
    ctx: &Context,
    experiment: &Experiment,
    recommendations: &Recommendations,
    request: &GuardRequest,
) -> Result<Schedule, AppError> {
    let every = humantime::parse_duration(&request.every)
        .map_err(|e| AppError::Invalid(format!("every `{}`: {e} (try 1h, 6h, 1d)", request.every)))?;
    let tag = route_tag(recommendations)?;
    let segment =
        recommendations.segments.iter().find(|s| s.key.get(tag) == Some(&request.route)).ok_or_else(
            || {
                AppError::NotFound(format!(
                    "experiment `{}` has no route `{tag}={}`",
                    request.experiment, request.route
                ))
            },
        )?;
    let (Action::Switch, Some(model)) = (segment.action, &segment.model) else {
        return Err(AppError::Invalid(format!(
            "route `{}` is not recommended for a switch ({}): there is nothing to guard",
            request.route, segment.reason
        )));
    };
    let former = ctx
        .config
        .candidates
        .iter()
        .find(|c| c.model == segment.production_model)
        .ok_or_else(|| {
            AppError::Invalid(format!(
                "the former production model `{}` is replayed as a candidate: add a [[candidates]] entry with model = \"{}\"",
                segment.production_model, segment.production_model
            ))
        })?;
    let rubrics: Vec<String> = experiment
        .spec
        .rubrics
        .iter()
        .filter(|r| !r.starts_with("check:") && !experiment.spec.is_pairwise(r))
        .cloned()
        .collect();
    let guard = GuardSpec {
        tag: tag.strip_prefix("tag:").unwrap_or(tag).to_string(),
        route: request.route.clone(),
        model: request.model.clone().unwrap_or_else(|| model.clone()),
        former: former.name.clone(),
        source: experiment.spec.filter.source.clone(),
        sample: request.sample,
        experiment: Some(request.experiment.clone()),
    };
    let new = evaltap_drift::NewGuard {
        name: Some(
            request.name.clone().unwrap_or_else(|| format!("guard:{}:{}", request.experiment, request.route)),
        ),
        guard,
        every,
        rubrics,
        margin: experiment.spec.margin,
    };
    Ok(evaltap_drift::add_guard(&ctx.drift_for_changes(), new).await?)
}

/// Adds a guard on every route the experiment's recommendations switch.
pub async fn add_for_switches(
    ctx: &Context,
    experiment: &str,
    every: &str,
    sample: usize,
) -> Result<Vec<Schedule>, AppError> {
    let recommendations = crate::recommend::recommendations(ctx, experiment).await?;
    let tag = route_tag(&recommendations)?;
    let stored = ctx.store.require_experiment(experiment).await?;
    let mut guards = Vec::new();
    for segment in recommendations.segments.iter().filter(|s| s.action == Action::Switch) {
        let Some(route) = segment.key.get(tag) else { continue };
        let request = GuardRequest {
            experiment: experiment.to_string(),
            route: route.clone(),
            every: every.to_string(),
            sample,
            model: None,
            name: None,
        };
        guards.push(add_on(ctx, &stored, &recommendations, &request).await?);
    }
    Ok(guards)
}

/// The tag a guard watches: the recommendations must be split by exactly one.
fn route_tag(recommendations: &Recommendations) -> Result<&str, AppError> {
    recommendations.route_tag().ok_or_else(|| {
        AppError::Invalid(format!(
            "a guard watches one route tag; the recommendations are split by {}",
            recommendations.segment_by.join(" × ")
        ))
    })
}

/// Default period between a guard's runs.
pub const DEFAULT_EVERY: &str = "1h";

/// Default most exchanges replayed per run.
pub const DEFAULT_SAMPLE: usize = 200;
