//! Recommendations written as each gateway's own configuration. One file per gateway behind
//! [`Gateway`], listed in [`GATEWAYS`]. Only model names, endpoints and references to
//! environment variables are written: never a credential.

mod kong;
mod litellm;
mod openrouter;
mod portkey;

use evaltap_core::CandidateConfig;

use crate::{Action, Recommendations};

/// What an export failed on: the caller's to fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExportError {
    /// The format is not one evaltap writes.
    #[error("unknown export format `{0}`; the formats are json, litellm, portkey, kong, openrouter")]
    UnknownFormat(String),
    /// The recommendations cannot be expressed in a gateway's routing.
    #[error("{0}")]
    Unsupported(String),
}

/// How to write the export.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExportOptions {
    /// Send this percentage of a switched route to the new model and the rest to production,
    /// where the gateway can weight targets.
    pub canary_pct: Option<u8>,
}

/// A model as one gateway names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// The name in the gateway's configuration (`gateway_model.<format>`, else the API's).
    pub model: String,
    /// Whether the user mapped it (`gateway_model.<format>` is set).
    pub mapped: bool,
    /// The endpoint evaltap calls it at, when known.
    pub base_url: Option<String>,
    /// The environment variable holding its API key, when configured (a reference only).
    pub api_key_env: Option<String>,
}

/// One route of the export.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The route's tag value.
    pub name: String,
    /// The model clients ask for on it (production).
    pub production: Deployment,
    /// The candidate to switch to, when recommended.
    pub switch_to: Option<Deployment>,
}

/// What every gateway's export is written from.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Experiment name.
    pub experiment: String,
    /// The tag routes are told apart by.
    pub tag: String,
    /// The production model clients ask for (`model` in their requests).
    pub production_model: String,
    /// The production deployment (for fallbacks and routes kept).
    pub production: Deployment,
    /// Routes, in the recommendations' order.
    pub routes: Vec<Route>,
    /// Canary share.
    pub canary_pct: Option<u8>,
}

/// One gateway's configuration format.
pub trait Gateway: Sync {
    /// The format's name (`--format`).
    fn name(&self) -> &'static str;
    /// Whether it can split a route's traffic by weight (canary).
    fn supports_weights(&self) -> bool;
    /// The configuration text.
    fn render(&self, plan: &Plan) -> Result<String, ExportError>;
    /// What the user must still do by hand.
    fn notes(&self, plan: &Plan) -> Vec<String>;
}

/// Every gateway evaltap exports to.
pub static GATEWAYS: [&dyn Gateway; 4] =
    [&litellm::LiteLlm, &portkey::Portkey, &kong::Kong, &openrouter::OpenRouter];

/// An export: the configuration text and what to do with it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Export {
    /// Format.
    pub format: String,
    /// The configuration (YAML for LiteLLM and Kong, JSON otherwise).
    pub body: String,
    /// What the user must still do, or what the gateway cannot express.
    pub notes: Vec<String>,
}

/// How `format` names a candidate's model: its `gateway_model` entry, else its API model name.
fn deployment(format: &str, candidate: Option<&CandidateConfig>, model: &str) -> Deployment {
    let mapped = candidate.and_then(|c| c.gateway_model.get(format));
    Deployment {
        model: mapped.cloned().unwrap_or_else(|| model.to_string()),
        mapped: mapped.is_some(),
        base_url: candidate.map(|c| c.base_url.clone()),
        api_key_env: candidate.and_then(|c| c.api_key_env.clone()),
    }
}

/// The plan for `format` from recommendations and the configured candidates (looked up by
/// name for switches; production by its model name).
pub fn plan(
    format: &str,
    recommendations: &Recommendations,
    candidates: &[CandidateConfig],
    options: &ExportOptions,
) -> Result<Plan, ExportError> {
    let Some(tag) = recommendations.route_tag() else {
        return Err(ExportError::Unsupported(format!(
            "a gateway routes on one request tag; these recommendations are split by {} (set [recommend] segment_by = [\"route\"])",
            recommendations.segment_by.join(" × ")
        )));
    };
    if tag == "source" || tag == "model" || tag == "dataset" {
        return Err(ExportError::Unsupported(format!(
            "a gateway routes on a request tag, not on `{tag}`: segment by a tag such as `route`"
        )));
    }
    if let Some(pct) = options.canary_pct
        && !(1..=99).contains(&pct)
    {
        return Err(ExportError::Unsupported(format!("--canary takes a percentage from 1 to 99, got {pct}")));
    }
    let productions: std::collections::BTreeSet<&str> = recommendations
        .segments
        .iter()
        .map(|s| s.production_model.as_str())
        .filter(|m| *m != evaltap_report::MIXED_BASELINE && !m.is_empty())
        .collect();
    let production_model = match productions.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => one.to_string(),
        [] => return Err(ExportError::Unsupported("no production model is known for these segments".into())),
        several => {
            return Err(ExportError::Unsupported(format!(
                "the routes are served by several production models ({}); export one experiment per model",
                several.join(", ")
            )));
        }
    };
    let production_config = candidates.iter().find(|c| c.model == production_model);
    let production = deployment(format, production_config, &production_model);
    let routes = recommendations
        .segments
        .iter()
        .filter_map(|segment| {
            let name = segment.key.get(tag)?.clone();
            if name == evaltap_report::segments::NO_VALUE {
                return None;
            }
            let switch_to = match (segment.action, &segment.candidate, &segment.model) {
                (Action::Switch, Some(candidate), Some(model)) => {
                    Some(deployment(format, candidates.iter().find(|c| &c.name == candidate), model))
                }
                _ => None,
            };
            Some(Route { name, production: production.clone(), switch_to })
        })
        .collect();
    Ok(Plan {
        experiment: recommendations.experiment.clone(),
        tag: tag.strip_prefix("tag:").unwrap_or(tag).to_string(),
        production_model,
        production,
        routes,
        canary_pct: options.canary_pct,
    })
}

/// The recommendations in `format` (`json`, or a gateway's name).
pub fn export(
    format: &str,
    recommendations: &Recommendations,
    candidates: &[CandidateConfig],
    options: &ExportOptions,
) -> Result<Export, ExportError> {
    if format == "json" {
        let body = serde_json::to_string_pretty(recommendations)
            .map_err(|err| ExportError::Unsupported(format!("writing JSON: {err}")))?;
        return Ok(Export { format: "json".into(), body, notes: Vec::new() });
    }
    let gateway = GATEWAYS
        .iter()
        .find(|g| g.name() == format)
        .ok_or_else(|| ExportError::UnknownFormat(format.into()))?;
    let plan = plan(format, recommendations, candidates, options)?;
    let mut notes = gateway.notes(&plan);
    if plan.canary_pct.is_some() && !gateway.supports_weights() {
        notes.push(format!(
            "{} cannot split a route by weight: the export switches each route whole; send the canary share from your application",
            gateway.name()
        ));
    }
    for deployment in plan.routes.iter().filter_map(|r| r.switch_to.as_ref()).chain([&plan.production]) {
        if !deployment.mapped {
            notes.push(format!(
                "`{}` is written as evaltap calls it; set gateway_model.{format} on its [[candidates]] entry if {} names it otherwise",
                deployment.model,
                gateway.name()
            ));
        }
    }
    notes.dedup();
    if plan.routes.iter().all(|r| r.switch_to.is_none()) {
        notes.push("no route is switched: every route stays on production".into());
    }
    Ok(Export { format: format.into(), body: gateway.render(&plan)?, notes })
}

/// The split of a switched route: (new model's weight, production's), summing to 100.
pub(crate) fn weights(plan: &Plan) -> (u8, u8) {
    match plan.canary_pct {
        Some(pct) => (pct, 100 - pct),
        None => (100, 0),
    }
}

pub(crate) fn yaml(value: &serde_json::Value) -> Result<String, ExportError> {
    serde_norway::to_string(value).map_err(|err| ExportError::Unsupported(format!("writing YAML: {err}")))
}

pub(crate) fn json(value: &serde_json::Value) -> Result<String, ExportError> {
    serde_json::to_string_pretty(value)
        .map_err(|err| ExportError::Unsupported(format!("writing JSON: {err}")))
}
