//! Portkey: a config with `strategy.mode = "conditional"` on `metadata.<tag>`, one target per
//! switched route and `default` production; a canary makes a route's target a `loadbalance`
//! of the two models.

use serde_json::{Value, json};

use super::{ExportError, Gateway, Plan, json, weights};

pub(crate) struct Portkey;

const PRODUCTION: &str = "production";

impl Gateway for Portkey {
    fn name(&self) -> &'static str {
        "portkey"
    }

    fn supports_weights(&self) -> bool {
        true
    }

    fn render(&self, plan: &Plan) -> Result<String, ExportError> {
        let (new, old) = weights(plan);
        let model = |model: &str| json!({"override_params": {"model": model}});
        let mut conditions = Vec::new();
        let mut targets: Vec<Value> = Vec::new();
        for route in &plan.routes {
            let Some(candidate) = &route.switch_to else { continue };
            let name = format!("route-{}", route.name);
            conditions.push(
                json!({"query": {format!("metadata.{}", plan.tag): {"$eq": route.name}}, "then": name}),
            );
            let target = if plan.canary_pct.is_some() {
                let mut to_new = model(&candidate.model);
                to_new["weight"] = json!(new);
                let mut to_old = model(&route.production.model);
                to_old["weight"] = json!(old);
                json!({"name": name, "strategy": {"mode": "loadbalance"}, "targets": [to_new, to_old]})
            } else {
                let mut target = model(&candidate.model);
                target["name"] = json!(name);
                target
            };
            targets.push(target);
        }
        let mut production = model(&plan.production.model);
        production["name"] = json!(PRODUCTION);
        targets.push(production);
        json(&json!({
            "strategy": {"mode": "conditional", "conditions": conditions, "default": PRODUCTION},
            "targets": targets,
        }))
    }

    fn notes(&self, plan: &Plan) -> Vec<String> {
        vec![
            "add each target's `provider` and its `virtual_key` (or `api_key`) as your Portkey workspace has them: evaltap writes no credential".into(),
            format!("requests name their route in Portkey metadata: x-portkey-metadata: {{\"{}\": \"…\"}}", plan.tag),
        ]
    }
}
