//! Per-route recommendations on the simulator, whose small model is as good as production on
//! lookups (the `support` route) and far worse on arithmetic (the `math` route): through the
//! use case, the binary and the HTTP API, on both engines.

use evaltap_recommend::Action;
use evaltap_worker::ExperimentRequest;

use crate::common::{Bench, experiment_request, run};

fn recommend_cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .arg("--config")
        .arg(config)
        .arg("recommend")
        .args(args)
        .output()
        .expect("run evaltap recommend")
}

crate::on_both_engines! {
/// The small model is recommended for the support route only, with a saving; the math route
/// keeps production and says why; the exports route `support` to it.
async fn recommend_switches_only_the_route_where_the_cheap_model_is_as_good() {
    // At the simulator's zero latency, replay and production latencies are both scheduling
    // noise: latency is not what this test is about.
    let bench = Bench::start_with("recommend", evaltap_sim::JudgeBehavior::default(), None, 800, |config| {
        config.recommend.max_latency_p95_increase_pct = 10_000.0;
    })
    .await;
    let experiment = bench
        .create(ExperimentRequest {
            margin: Some(0.05),
            ..experiment_request("routes", "small", "correctness", 800)
        })
        .await;
    run(&bench.app, &experiment).await;

    let recommendations =
        evaltap_app::recommend::recommendations(&bench.app.context(), "routes").await.expect("recommendations");
    let route = |name: &str| {
        recommendations.segments.iter().find(|s| s.key["route"] == name).unwrap_or_else(|| panic!("{name}: {recommendations:#?}"))
    };
    let (support, math) = (route("support"), route("math"));
    assert_eq!(support.action, Action::Switch, "{support:#?}");
    assert_eq!(support.candidate.as_deref(), Some("small"));
    assert!(support.monthly_saving_usd.is_some_and(|s| s > 0.0), "{support:#?}");
    assert!(support.evidence.iter().all(|e| e.p_noninferiority_holm.is_some_and(|p| p < 0.05)), "{support:#?}");
    assert_eq!(math.action, Action::Keep, "{math:#?}");
    assert!(math.reason.contains("small — worse on correctness"), "{}", math.reason);
    assert!(math.monthly_saving_usd.is_none());
    assert!((support.traffic_share + math.traffic_share - 1.0).abs() < 1e-9);
    assert!(
        (recommendations.monthly_saving_usd - support.monthly_saving_usd.unwrap_or(0.0)).abs() < 1e-12,
        "{recommendations:#?}"
    );

    // The binary prints the same decision, and writes the gateway's configuration.
    let config = crate::common::write_config(&bench.dir, &bench.app.config);
    let out = recommend_cli(&config, &["routes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("route=support") && text.contains("SWITCH sim-large → small (sim-small)"), "{text}");
    assert!(text.contains("KEEP sim-large"), "{text}");

    let export = bench.dir.0.join("litellm.yaml");
    let out = recommend_cli(
        &config,
        &["routes", "--format", "litellm", "--canary", "10", "--out", export.to_str().expect("utf-8 path")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = std::fs::read_to_string(&export).expect("export written");
    assert!(yaml.contains("model: openai/sim-small") && yaml.contains("- support"), "{yaml}");
    assert!(yaml.contains("weight: 10") && yaml.contains("weight: 90"), "{yaml}");
    assert!(yaml.contains("enable_tag_filtering: true"), "{yaml}");

    // The HTTP API answers the same, with the export ready for `jq -r .export.body`.
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let reply = http.get(path).send().await.expect("GET");
            let status = reply.status().as_u16();
            (status, reply.json::<serde_json::Value>().await.expect("JSON"))
        }
    };
    let api = format!("{}/api/experiments/routes", bench.url);
    let (status, view) = get(format!("{api}/recommendations?format=openrouter")).await;
    assert_eq!(status, 200, "{view}");
    let body: serde_json::Value =
        serde_json::from_str(view["export"]["body"].as_str().expect("body")).expect("OpenRouter JSON");
    assert_eq!(body["routes"]["support"]["models"], serde_json::json!(["sim-small", "sim-large"]), "{body}");
    assert_eq!(body["routes"]["math"]["models"], serde_json::json!(["sim-large"]), "{body}");
    let (status, view) = get(format!("{api}/recommendations")).await;
    assert_eq!((status, view["export"].is_null()), (200, true), "{view}");
    assert_eq!(view["recommendations"]["segments"].as_array().map(Vec::len), Some(2), "{view}");
    let (status, segmented) = get(format!("{api}/segments")).await;
    assert_eq!(status, 200, "{segmented}");
    assert_eq!(segmented["family_size"], 2, "{segmented}");
    let (status, error) = get(format!("{api}/recommendations?format=nginx")).await;
    assert_eq!(status, 400, "{error}");
    let (status, _) = get(format!("{}/api/experiments/nope/recommendations", bench.url)).await;
    assert_eq!(status, 404);

    // One route's traffic alone: `experiment create --tag route=support`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["--config", config.to_str().expect("utf-8"), "experiment", "create", "--name", "support-only"])
        .args(["--candidate", "small", "--rubric", "correctness", "--tag", "route=support"])
        .output()
        .expect("experiment create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let only = bench.app.store.require_experiment("support-only").await.expect("created");
    let items = bench.app.store.experiment_item_ids(&only.id).await.expect("items");
    assert_eq!(items.len(), support.items, "every support exchange and nothing else");
    for id in &items {
        let stored = bench.app.store.exchange(id).await.expect("read").expect("stored");
        assert_eq!(stored.exchange.tags["route"], "support");
    }

    // Watching the switch: a guard on the support route, against the production model
    // replayed (the bench's `large` candidate); none on the route that kept production.
    let ctx = bench.app.context();
    let request = |route: &str| evaltap_app::guards::GuardRequest {
        experiment: "routes".into(),
        route: route.into(),
        every: "1h".into(),
        sample: 200,
        model: None,
        name: None,
    };
    let guard = evaltap_app::guards::add(&ctx, &request("support")).await.expect("guard");
    let spec = guard.spec.guard.clone().expect("a guard");
    assert_eq!((spec.model.as_str(), spec.former.as_str(), spec.route.as_str()), ("sim-small", "large", "support"));
    assert_eq!((guard.spec.rubrics.clone(), guard.spec.margin), (vec!["correctness".to_string()], 0.05));
    let refused = evaltap_app::guards::add(&ctx, &request("math")).await.expect_err("math kept production");
    assert!(refused.to_string().contains("not recommended for a switch"), "{refused}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["--config", config.to_str().expect("utf-8"), "guard", "list"])
        .output()
        .expect("guard list");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("guard `guard:routes:support`: sim-small on route=support, replayed against large"), "{listed}");

    // Bad input is the user's to fix: exit 64 with the reason.
    let out = recommend_cli(&config, &["routes", "--format", "nginx"]);
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("litellm, portkey, kong, openrouter"));
    let out = recommend_cli(&config, &["no-such-experiment"]);
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
}
}
