//! OpenRouter: per route, the request's `models` list (the recommended model first,
//! production as the fallback). OpenRouter has no weighted split.

use serde_json::{Map, json};

use super::{ExportError, Gateway, Plan, json};

pub(crate) struct OpenRouter;

impl Gateway for OpenRouter {
    fn name(&self) -> &'static str {
        "openrouter"
    }

    fn supports_weights(&self) -> bool {
        false
    }

    fn render(&self, plan: &Plan) -> Result<String, ExportError> {
        let mut routes = Map::new();
        for route in &plan.routes {
            let models = match &route.switch_to {
                Some(candidate) => vec![candidate.model.clone(), route.production.model.clone()],
                None => vec![route.production.model.clone()],
            };
            routes.insert(route.name.clone(), json!({"models": models}));
        }
        json(&json!({"experiment": plan.experiment, "tag": plan.tag, "routes": routes,
                     "default": {"models": [plan.production.model]}}))
    }

    fn notes(&self, _plan: &Plan) -> Vec<String> {
        vec!["send each route's `models` list in its requests' body: OpenRouter tries them in order".into()]
    }
}
