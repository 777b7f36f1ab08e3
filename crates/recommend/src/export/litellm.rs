//! LiteLLM proxy: deployments of the production model name tagged per route, with
//! `router_settings.enable_tag_filtering`; production carries the `default` tag, so untagged
//! requests and kept routes stay on it. A canary weights two deployments of one route.

use serde_json::{Map, Value, json};

use super::{Deployment, ExportError, Gateway, Plan, weights, yaml};

pub(crate) struct LiteLlm;

/// LiteLLM calls a model by `provider/name`; an OpenAI-compatible endpoint is `openai/…`.
fn litellm_model(deployment: &Deployment) -> String {
    if deployment.mapped || deployment.model.contains('/') {
        deployment.model.clone()
    } else {
        format!("openai/{}", deployment.model)
    }
}

fn entry(plan: &Plan, deployment: &Deployment, tags: Vec<String>, weight: Option<u8>) -> Value {
    let mut params = Map::new();
    params.insert("model".into(), json!(litellm_model(deployment)));
    if let Some(base_url) = &deployment.base_url {
        params.insert("api_base".into(), json!(base_url));
    }
    if let Some(env) = &deployment.api_key_env {
        params.insert("api_key".into(), json!(format!("os.environ/{env}")));
    }
    params.insert("tags".into(), json!(tags));
    if let Some(weight) = weight {
        params.insert("weight".into(), json!(weight));
    }
    json!({"model_name": plan.production_model, "litellm_params": params})
}

impl Gateway for LiteLlm {
    fn name(&self) -> &'static str {
        "litellm"
    }

    fn supports_weights(&self) -> bool {
        true
    }

    fn render(&self, plan: &Plan) -> Result<String, ExportError> {
        let (new, old) = weights(plan);
        let mut model_list = Vec::new();
        let mut production_tags = vec!["default".to_string()];
        for route in &plan.routes {
            match &route.switch_to {
                Some(candidate) if plan.canary_pct.is_some() => {
                    model_list.push(entry(plan, candidate, vec![route.name.clone()], Some(new)));
                    model_list.push(entry(plan, &route.production, vec![route.name.clone()], Some(old)));
                }
                Some(candidate) => model_list.push(entry(plan, candidate, vec![route.name.clone()], None)),
                None => production_tags.push(route.name.clone()),
            }
        }
        model_list.push(entry(plan, &plan.production, production_tags, None));
        let config = json!({
            "model_list": model_list,
            "router_settings": {"enable_tag_filtering": true},
        });
        Ok(format!(
            "# evaltap recommend {} — LiteLLM proxy config: merge model_list and router_settings into yours.\n\
             # Requests carry their route as a tag: {{\"tags\": [\"<{}>\"]}} in the body.\n{}",
            plan.experiment,
            plan.tag,
            yaml(&config)?
        ))
    }

    fn notes(&self, plan: &Plan) -> Vec<String> {
        vec![format!(
            "clients keep asking for `{}`; each request names its route in `tags` (untagged requests go to the `default` deployment, production)",
            plan.production_model
        )]
    }
}
