//! Each gateway's export against its documented shape: routes, fallbacks, canary weights that
//! sum to 100, mapped model names, and API keys only as references to environment variables.

use std::collections::BTreeMap;

use evaltap_core::CandidateConfig;
use evaltap_recommend::export::{ExportError, ExportOptions, export};
use evaltap_recommend::{Action, Recommendations, SegmentRecommendation, Volume};
use serde_json::Value;

fn segment(route: &str, action: Action) -> SegmentRecommendation {
    let switch = action == Action::Switch;
    SegmentRecommendation {
        key: [("route".to_string(), route.to_string())].into(),
        segment: format!("route={route}"),
        items: 100,
        traffic_share: 0.5,
        production_model: "gpt-large".into(),
        action,
        candidate: switch.then(|| "small".into()),
        model: switch.then(|| "gpt-small".into()),
        reason: String::new(),
        monthly_requests: 1000.0,
        monthly_saving_usd: switch.then_some(12.0),
        cost_delta_pct: None,
        latency_p95_delta_pct: None,
        error_rate: None,
        evidence: Vec::new(),
        considered: Vec::new(),
    }
}

fn recommendations() -> Recommendations {
    Recommendations {
        experiment: "routes".into(),
        status: "done".into(),
        margin: 0.05,
        segment_by: vec!["route".into()],
        family_size: 4,
        guarantee: evaltap_recommend::GUARANTEE.into(),
        volume: Volume { monthly_requests: 2000.0, scaling: "test".into() },
        monthly_saving_usd: 12.0,
        segments: vec![segment("support", Action::Switch), segment("math", Action::Keep)],
    }
}

fn candidates() -> Vec<CandidateConfig> {
    let small: CandidateConfig = toml::from_str(
        r#"name = "small"
           base_url = "https://api.example.com/v1"
           model = "gpt-small"
           api_key_env = "SMALL_API_KEY"
           input_per_mtok = 0.1
           output_per_mtok = 0.4
           gateway_model = { portkey = "gpt-small-pk", kong = "azure/gpt-small-deploy" }"#,
    )
    .expect("candidate");
    let mut large = small.clone();
    large.name = "large".into();
    large.model = "gpt-large".into();
    large.gateway_model = BTreeMap::new();
    vec![small, large]
}

fn body(format: &str, canary: Option<u8>) -> (String, Vec<String>) {
    let export = export(format, &recommendations(), &candidates(), &ExportOptions { canary_pct: canary })
        .unwrap_or_else(|err| panic!("{format}: {err}"));
    // Keys are referred to by their environment variable, never written.
    assert!(!export.body.contains("api_key: sk-") && !export.body.contains("Bearer"), "{}", export.body);
    (export.body, export.notes)
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).expect("valid YAML")
}

#[test]
fn litellm_tags_the_switched_route_and_keeps_production_as_the_default() {
    let (text, notes) = body("litellm", None);
    let config = yaml(&text);
    assert_eq!(config["router_settings"]["enable_tag_filtering"], true);
    let list = config["model_list"].as_array().expect("model_list");
    assert!(list.iter().all(|d| d["model_name"] == "gpt-large"), "{text}");
    let small = &list[0]["litellm_params"];
    assert_eq!(small["model"], "openai/gpt-small");
    assert_eq!(small["tags"], serde_json::json!(["support"]));
    assert_eq!(small["api_base"], "https://api.example.com/v1");
    assert_eq!(small["api_key"], "os.environ/SMALL_API_KEY");
    let production = &list.last().expect("production")["litellm_params"];
    assert_eq!(production["model"], "openai/gpt-large");
    assert_eq!(production["tags"], serde_json::json!(["default", "math"]));
    assert!(notes.iter().any(|n| n.contains("gateway_model.litellm")), "{notes:?}");

    let config = yaml(&body("litellm", Some(10)).0);
    let support: Vec<&Value> = config["model_list"]
        .as_array()
        .expect("model_list")
        .iter()
        .filter(|d| d["litellm_params"]["tags"] == serde_json::json!(["support"]))
        .collect();
    let weights: Vec<u64> =
        support.iter().map(|d| d["litellm_params"]["weight"].as_u64().expect("weight")).collect();
    assert_eq!(weights, [10, 90]);
    assert_eq!(support[1]["litellm_params"]["model"], "openai/gpt-large");
}

#[test]
fn portkey_routes_on_metadata_with_production_as_default() {
    let config: Value = serde_json::from_str(&body("portkey", None).0).expect("JSON");
    assert_eq!(config["strategy"]["mode"], "conditional");
    assert_eq!(config["strategy"]["default"], "production");
    let condition = &config["strategy"]["conditions"][0];
    assert_eq!(condition["query"]["metadata.route"]["$eq"], "support");
    let targets = config["targets"].as_array().expect("targets");
    let target = targets.iter().find(|t| t["name"] == condition["then"]).expect("the condition's target");
    assert_eq!(target["override_params"]["model"], "gpt-small-pk", "the mapped name");
    assert!(
        targets.iter().any(|t| t["name"] == "production" && t["override_params"]["model"] == "gpt-large")
    );
    assert_eq!(
        config["strategy"]["conditions"].as_array().map(Vec::len),
        Some(1),
        "kept routes fall to default"
    );

    let config: Value = serde_json::from_str(&body("portkey", Some(25)).0).expect("JSON");
    let split = &config["targets"][0];
    assert_eq!(split["strategy"]["mode"], "loadbalance");
    let weights: u64 =
        split["targets"].as_array().expect("targets").iter().map(|t| t["weight"].as_u64().expect("w")).sum();
    assert_eq!(weights, 100);
}

#[test]
fn kong_writes_an_ai_proxy_advanced_plugin_per_route() {
    let config = yaml(&body("kong", Some(10)).0);
    assert_eq!(config["_format_version"], "3.0");
    let plugins = config["plugins"].as_array().expect("plugins");
    assert_eq!(plugins.len(), 2);
    for plugin in plugins {
        assert_eq!(plugin["name"], "ai-proxy-advanced");
        let targets = plugin["config"]["targets"].as_array().expect("targets");
        let total: u64 = targets.iter().map(|t| t["weight"].as_u64().expect("weight")).sum();
        assert_eq!(total, 100, "{plugin:?}");
    }
    let support = plugins.iter().find(|p| p["route"] == "support").expect("support");
    let first = &support["config"]["targets"][0];
    assert_eq!(
        (first["model"]["provider"].as_str(), first["model"]["name"].as_str()),
        (Some("azure"), Some("gpt-small-deploy"))
    );
    assert_eq!(first["route_type"], "llm/v1/chat");
    let math = plugins.iter().find(|p| p["route"] == "math").expect("math");
    assert_eq!(math["config"]["targets"][0]["model"]["name"], "gpt-large");
}

#[test]
fn openrouter_lists_the_candidate_first_and_production_as_fallback_and_says_it_cannot_weight() {
    let (text, notes) = body("openrouter", Some(10));
    let config: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(config["routes"]["support"]["models"], serde_json::json!(["gpt-small", "gpt-large"]));
    assert_eq!(config["routes"]["math"]["models"], serde_json::json!(["gpt-large"]));
    assert!(notes.iter().any(|n| n.contains("cannot split a route by weight")), "{notes:?}");
}

#[test]
fn what_cannot_be_exported_is_refused_with_the_reason() {
    let mut split_by_source = recommendations();
    split_by_source.segment_by = vec!["source".into()];
    let err =
        export("litellm", &split_by_source, &candidates(), &ExportOptions::default()).expect_err("source");
    assert!(err.to_string().contains("not on `source`"), "{err}");
    let err =
        export("nginx", &recommendations(), &candidates(), &ExportOptions::default()).expect_err("format");
    assert_eq!(err, ExportError::UnknownFormat("nginx".into()));
    let err = export("kong", &recommendations(), &candidates(), &ExportOptions { canary_pct: Some(100) })
        .expect_err("canary");
    assert!(err.to_string().contains("1 to 99"), "{err}");
    // JSON is the set itself.
    let json: Value = serde_json::from_str(
        &export("json", &recommendations(), &[], &ExportOptions::default()).expect("json").body,
    )
    .expect("JSON");
    assert_eq!(json["segments"][0]["action"], "switch");
}
