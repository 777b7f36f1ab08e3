//! Kong Gateway (decK): one `ai-proxy-advanced` plugin per route (the Kong route of that
//! name), its `balancer` targets weighted; kept routes get production alone.

use serde_json::{Map, Value, json};

use super::{Deployment, ExportError, Gateway, Plan, weights, yaml};

pub(crate) struct Kong;

/// A target: `provider/name` when mapped so, else an OpenAI-compatible model.
fn target(deployment: &Deployment, weight: u8) -> Value {
    let (provider, name) = match deployment.model.split_once('/') {
        Some((provider, name)) if deployment.mapped => (provider.to_string(), name.to_string()),
        _ => ("openai".to_string(), deployment.model.clone()),
    };
    let mut model = Map::new();
    model.insert("provider".into(), json!(provider));
    model.insert("name".into(), json!(name));
    if let Some(base_url) = &deployment.base_url {
        let upstream = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        model.insert("options".into(), json!({"upstream_url": upstream}));
    }
    json!({"route_type": "llm/v1/chat", "model": model, "weight": weight})
}

impl Gateway for Kong {
    fn name(&self) -> &'static str {
        "kong"
    }

    fn supports_weights(&self) -> bool {
        true
    }

    fn render(&self, plan: &Plan) -> Result<String, ExportError> {
        let (new, old) = weights(plan);
        let plugins: Vec<Value> = plan
            .routes
            .iter()
            .map(|route| {
                let targets = match &route.switch_to {
                    Some(candidate) if plan.canary_pct.is_some() => {
                        vec![target(candidate, new), target(&route.production, old)]
                    }
                    Some(candidate) => vec![target(candidate, 100)],
                    None => vec![target(&route.production, 100)],
                };
                json!({
                    "name": "ai-proxy-advanced",
                    "route": route.name,
                    "config": {"balancer": {"algorithm": "round-robin"}, "targets": targets},
                })
            })
            .collect();
        Ok(format!(
            "# evaltap recommend {} — Kong decK: one ai-proxy-advanced plugin per route.\n{}",
            plan.experiment,
            yaml(&json!({"_format_version": "3.0", "plugins": plugins}))?
        ))
    }

    fn notes(&self, _plan: &Plan) -> Vec<String> {
        vec![
            "each plugin names the Kong route of the same name: create the routes, or rename them here".into(),
            "add each target's `auth` (header_name / header_value from your vault): evaltap writes no credential".into(),
        ]
    }
}
