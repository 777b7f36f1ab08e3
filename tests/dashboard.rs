//! The dashboard and its JSON API, from outside: pages, chart, examples, spend numbers computed
//! by hand from fixture exchanges, stored statistics, the OpenAPI description, one error shape.

use std::collections::BTreeMap;

use evaltap_sim::JudgeBehavior;
use serde_json::{Value, json};

use crate::common::{Bench, experiment_request, run};

/// Dollars as the spend sentence writes them: cents from $1, four decimals below.
fn dollars(usd: f64) -> String {
    if usd >= 1.0 { format!("${usd:.2}") } else { format!("${usd:.4}") }
}

async fn get(url: &str) -> (u16, String) {
    let http = evaltap_providers::http_client(std::time::Duration::from_secs(30)).expect("client");
    let reply = http.get(url).send().await.expect("send");
    (reply.status().as_u16(), reply.text().await.expect("body"))
}

async fn get_json(url: &str) -> (u16, Value) {
    let (status, body) = get(url).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}")))
}

/// The fixture source: a gateway sampled at 25%.
const FIXTURE_SOURCE: &str = "fixture";
const FIXTURE_KEY: &str = "k-fixture";
const FIXTURE_RATE: f64 = 0.25;

fn fixture_item(i: usize) -> Value {
    json!({"id": format!("fx-{i}"), "cost_usd": 0.004,
           "request": {"model": "gw-model", "messages": [{"role": "user", "content": format!("fixture question {i}")}]},
           "response": {"model": "gw-model", "choices": [{"message": {"role": "assistant", "content": "fixture answer"}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5}}})
}

crate::on_both_engines! {
async fn pages_chart_examples_spend_and_sources_show_what_is_stored() {
    let bench = Bench::start_with("dashboard", JudgeBehavior::default(), None, 60, |config| {
        config.sources.push(evaltap_core::SourceConfig {
            sample_rate: FIXTURE_RATE,
            ..evaltap_core::SourceConfig::with_key(FIXTURE_SOURCE, FIXTURE_KEY)
        });
    })
    .await;
    let mut request = experiment_request("dash", "small", "correctness", 60);
    request.candidates.push("medium".into());
    request.rubrics.push("helpfulness".into());
    let experiment = bench.create(request).await;
    let report = run(&bench.app, &experiment).await;
    let url = &bench.url;

    // The server stores a finished experiment's report without anyone asking for it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while bench.app.store.report_snapshot(&experiment.id).await.expect("read").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no report stored 20 s after the experiment finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Fixture traffic of another gateway: 200 items at $0.004, sampled at 25%, one malformed.
    let http = evaltap_providers::http_client(std::time::Duration::from_secs(30)).expect("client");
    let mut body: Vec<Value> = (0..200).map(fixture_item).collect();
    body.push(json!({"response": {}}));
    let reply: Value = http
        .post(format!("{url}/v1/mirror"))
        .bearer_auth(FIXTURE_KEY)
        .body(Value::Array(body).to_string())
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("reply");
    let kept = reply["accepted"].as_u64().expect("accepted");
    assert!(kept > 20 && kept < 100, "{reply}");

    // The experiment page: a point per candidate and the baseline, an error bar per candidate,
    // a frontier, and the table.
    let (status, html) = get(&format!("{url}/experiments/dash")).await;
    assert_eq!(status, 200);
    assert_eq!(html.matches("<circle class=\"point").count(), 3, "{html}");
    assert_eq!(html.matches("class=\"error-bar\"").count(), 2);
    assert!(html.contains("class=\"frontier\"") && html.contains("Pareto frontier"));
    assert!(html.contains("p95 ms") && html.contains("monthly cost") && html.contains(">worse<"));
    let (status, other) = get(&format!("{url}/experiments/dash?rubric=helpfulness")).await;
    assert_eq!(status, 200);
    assert!(other.contains("quality: helpfulness"));

    // The chart's API agrees with the report, and its frontier is the undominated points.
    let (_, chart) = get_json(&format!("{url}/api/experiments/dash/chart?rubric=correctness")).await;
    let points = chart["points"].as_array().expect("points");
    assert_eq!(points.len(), 3);
    for point in points {
        let (cost, quality) =
            (point["cost_per_1k_usd"].as_f64().expect("x"), point["quality"].as_f64().expect("y"));
        let dominated = points.iter().any(|other| {
            let (c, q) =
                (other["cost_per_1k_usd"].as_f64().expect("x"), other["quality"].as_f64().expect("y"));
            c <= cost && q >= quality && (c < cost || q > quality)
        });
        assert_eq!(point["on_frontier"].as_bool(), Some(!dominated), "{point}");
    }
    let small = &report.candidates.iter().find(|c| c.name == "small").expect("small").rubrics[0].stats;
    let small_point = points.iter().find(|p| p["name"] == "small").expect("small point");
    assert!((small_point["quality"].as_f64().expect("q") - small.candidate_mean).abs() < 1e-12);
    assert!(
        (small_point["quality_low"].as_f64().expect("low") - (small.baseline_mean + small.ci_low)).abs()
            < 1e-12
    );

    // Examples: regressions largest first, a stable URL per example, a word diff.
    let (status, page) = get_json(&format!(
        "{url}/api/experiments/dash/examples?candidate=small&direction=regressions&per_page=5"
    ))
    .await;
    assert_eq!(status, 200, "{page}");
    let rows = page["rows"].as_array().expect("rows");
    assert!(!rows.is_empty() && rows.len() <= 5);
    let deltas: Vec<f64> = rows.iter().map(|r| r["delta"].as_f64().expect("delta")).collect();
    assert!(deltas.windows(2).all(|w| w[0] <= w[1]) && deltas.iter().all(|d| *d < 0.0), "{deltas:?}");
    let item = rows[0]["item_id"].as_str().expect("id").to_string();
    let (status, list_html) =
        get(&format!("{url}/experiments/dash/examples?candidate=small&direction=regressions")).await;
    assert_eq!(status, 200);
    assert!(list_html.contains(&format!("/experiments/dash/examples/{item}")));
    let (status, detail) = get_json(&format!("{url}/api/experiments/dash/examples/{item}")).await;
    assert_eq!(status, 200);
    let small_side =
        detail["candidates"].as_array().expect("sides").iter().find(|c| c["name"] == "small").expect("small");
    let rebuilt: String = small_side["diff"]
        .as_array()
        .expect("diff")
        .iter()
        .filter(|d| d["kind"] != "removed")
        .map(|d| d["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        rebuilt,
        small_side["text"].as_str().expect("text"),
        "the diff rebuilds the candidate's answer"
    );
    assert!(small_side["judgments"].as_array().is_some_and(|j| j.len() == 2), "{small_side}");
    let (status, detail_html) = get(&format!("{url}/experiments/dash/examples/{item}")).await;
    assert_eq!(status, 200);
    assert!(detail_html.contains("class=\"answer diff\"") && detail_html.contains("<strong>user</strong>"));
    let (status, _) = get_json(&format!("{url}/api/experiments/dash/examples/no-such-item")).await;
    assert_eq!(status, 404);

    // Spend, by hand from the fixture: every kept item cost $0.004 and stands for 4 requests.
    let (status, spend) = get_json(&format!("{url}/api/spend?days=7")).await;
    assert_eq!(status, 200, "{spend}");
    let fixture_row = spend["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["source"] == FIXTURE_SOURCE)
        .expect("fixture row");
    assert_eq!(fixture_row["stored_requests"].as_u64(), Some(kept));
    assert!((fixture_row["estimated_requests"].as_f64().expect("n") - kept as f64 * 4.0).abs() < 1e-9);
    assert!(
        (fixture_row["estimated_spend_usd"].as_f64().expect("usd") - kept as f64 * 0.004 * 4.0).abs() < 1e-9
    );

    // The what-if sentence, by hand: the demo source's spend on the production model, scaled by
    // the mean candidate cost over the mean production cost of the sampled exchanges.
    let exchanges = bench.app.store.recent_exchanges(Some("demo"), 1000).await.expect("exchanges");
    let production_model = exchanges[0].exchange.model.clone().expect("model");
    let spent: f64 = exchanges.iter().map(|e| e.exchange.cost_usd.expect("cost")).sum();
    let sampled: std::collections::HashSet<String> =
        bench.app.store.experiment_item_ids(&experiment.id).await.expect("ids").into_iter().collect();
    let baseline_costs: Vec<f64> = exchanges
        .iter()
        .filter(|e| sampled.contains(&e.id))
        .map(|e| e.exchange.cost_usd.expect("cost"))
        .collect();
    let baseline_mean = baseline_costs.iter().sum::<f64>() / baseline_costs.len() as f64;
    let replays = bench.app.store.replays(&experiment.id).await.expect("replays");
    let mut candidate_costs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in replays.iter().filter(|r| r.error.is_none()) {
        candidate_costs.entry(r.candidate.clone()).or_default().extend(r.cost_usd);
    }
    let what_if = spend["what_if"].as_array().expect("what_if");
    assert_eq!(what_if.len(), 2, "{spend}");
    for sentence in what_if {
        let candidate = sentence["candidate"].as_str().expect("candidate");
        let costs = &candidate_costs[candidate];
        let ratio = costs.iter().sum::<f64>() / costs.len() as f64 / baseline_mean;
        assert_eq!(sentence["model"].as_str(), Some(production_model.as_str()));
        assert!((sentence["spent_usd"].as_f64().expect("spent") - spent).abs() < 1e-9, "{sentence}");
        assert!((sentence["would_cost_usd"].as_f64().expect("y") - spent * ratio).abs() < 1e-9, "{sentence}");
        assert!((sentence["change_pct"].as_f64().expect("pct") - (ratio - 1.0) * 100.0).abs() < 1e-6);
        let text = sentence["sentence"].as_str().expect("text");
        assert!(
            text.starts_with(&format!("You spent {} on {production_model}; {candidate} (", dollars(spent))),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "would have cost {} (−{:.1}%)",
                dollars(spent * ratio),
                (1.0 - ratio) * 100.0
            )),
            "{text}"
        );
    }
    let (status, spend_html) = get(&format!("{url}/spend?days=7")).await;
    assert_eq!(status, 200);
    assert!(spend_html.contains("You spent") && spend_html.contains(FIXTURE_SOURCE));
    let csv = http.get(format!("{url}/api/spend.csv?days=7")).send().await.expect("csv");
    assert!(csv.headers()["content-type"].to_str().expect("type").starts_with("text/csv"));
    let csv = csv.text().await.expect("csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("valid CSV");
    assert_eq!(records.len(), spend["rows"].as_array().expect("rows").len());
    let fixture_csv = records.iter().find(|r| &r[0] == FIXTURE_SOURCE).expect("fixture line");
    assert_eq!(fixture_csv[7].parse::<f64>().expect("usd"), (kept as f64 * 0.016 * 1e6).round() / 1e6);

    // Sources: traffic this hour, the malformed item's reason.
    let (_, sources) = get_json(&format!("{url}/api/sources")).await;
    let fixture = sources["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["name"] == FIXTURE_SOURCE)
        .expect("fixture");
    assert_eq!(fixture["last_24h"].as_array().expect("hours").len(), 24);
    // All of it in the last hour or two (an hour may turn while the test runs).
    let hours: Vec<u64> =
        fixture["last_24h"].as_array().expect("hours").iter().map(|h| h.as_u64().expect("n")).collect();
    assert_eq!(hours[22] + hours[23], kept, "{fixture}");
    assert_eq!(fixture["accepted"].as_u64(), Some(kept));
    let reasons = sources["rejection_reasons"].as_array().expect("reasons");
    assert!(
        reasons.iter().any(|r| r["source"] == FIXTURE_SOURCE
            && r["reason"] == "`request` is missing"
            && r["count"] == 1),
        "{reasons:?}"
    );
    let (status, sources_html) = get(&format!("{url}/sources")).await;
    assert_eq!(status, 200);
    assert!(sources_html.contains("`request` is missing") && sources_html.contains("class=\"traffic\""));
}
}

crate::on_both_engines! {
async fn statistics_are_stored_once_and_recomputed_only_when_results_change() {
    let (bench, experiment, _) =
        Bench::run_one("snapshots", JudgeBehavior::default(), "small", "correctness", 40).await;
    let store = &bench.app.store;
    let first = evaltap_report::stored(store, &experiment).await.expect("report");
    let (fingerprint, json) = store.report_snapshot(&experiment.id).await.expect("read").expect("stored");
    // Served from the store: a doctored snapshot at the current fingerprint is what comes back.
    let mut doctored: Value = serde_json::from_str(&json).expect("json");
    doctored["margin"] = json!(0.5);
    store.save_report_snapshot(&experiment.id, &fingerprint, &doctored.to_string()).await.expect("save");
    assert_eq!(evaltap_report::stored(store, &experiment).await.expect("report").margin, 0.5);
    // `evaltap report` reads the stored report too.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["report", "snapshots", "--json"])
        .env("EVALTAP_DATABASE_URL", &bench.app.config.database_url)
        .current_dir(&bench.dir.0)
        .output()
        .expect("run evaltap report");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("report JSON");
    assert_eq!(printed["margin"], json!(0.5), "evaltap report recomputed instead of reading the stored report");
    // A result landing changes the fingerprint: the report is computed again.
    let mut judgment =
        evaltap_store::JudgmentRecord::new(&experiment.id, "not-sampled", "small", "correctness", "");
    judgment.error = Some("judge failed".into());
    store.insert_judgment(&judgment).await.expect("insert");
    let again = evaltap_report::stored(store, &experiment).await.expect("report");
    assert_eq!(again.margin, first.margin);
    let (refreshed, _) = store.report_snapshot(&experiment.id).await.expect("read").expect("stored");
    assert_ne!(refreshed, fingerprint);
    // The stored report is the computed one.
    let fresh = evaltap_report::build(store, &experiment).await.expect("build");
    assert_eq!(serde_json::to_value(&again).expect("json"), serde_json::to_value(&fresh).expect("json"));
}
}

#[tokio::test]
async fn openapi_is_3_1_and_documents_every_api_route_and_errors_have_one_shape() {
    let bench = Bench::start("openapi", JudgeBehavior::default(), None, 5).await;
    let url = &bench.url;

    // A running experiment (no worker yet): progress at zero, sequential statistics, the page
    // refreshes itself.
    bench.create(experiment_request("pending", "small", "correctness", 5)).await;
    let (status, html) = get(&format!("{url}/experiments/pending")).await;
    assert_eq!(status, 200);
    assert!(html.contains("<meta http-equiv=\"refresh\"") && html.contains(">running<"), "{html}");
    assert!(html.contains("0 / 5") && html.contains("always-valid sequential statistics"), "{html}");
    // The spend page speaks only for finished experiments: it computes no running one's report.
    let running = bench.create(experiment_request("pending-too", "small", "correctness", 5)).await;
    let (status, spend) = get_json(&format!("{url}/api/spend")).await;
    assert_eq!(status, 200);
    assert_eq!(spend["what_if"].as_array().map(Vec::len), Some(0), "{spend}");
    assert!(bench.app.store.report_snapshot(&running.id).await.expect("read").is_none());
    let (status, body) = get(&format!("{url}/openapi.json")).await;
    assert_eq!(status, 200);
    let spec = oas3::from_json(&body).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    let raw: Value = serde_json::from_str(&body).expect("json");
    let paths = spec.paths.as_ref().expect("paths");
    for (path, methods) in evaltap_server::api_paths() {
        let item = paths.get(path).unwrap_or_else(|| panic!("{path} is not documented"));
        for method in methods {
            let operation = match *method {
                "get" => item.get.as_ref(),
                "post" => item.post.as_ref(),
                "delete" => item.delete.as_ref(),
                other => panic!("unexpected method {other}"),
            };
            let operation = operation.unwrap_or_else(|| panic!("{method} {path} is not documented"));
            assert!(
                !operation.responses.as_ref().is_none_or(|r| r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }
    assert_eq!(paths.len(), evaltap_server::api_paths().len(), "documented paths the router does not serve");
    // Path parameters are the path's own; everything else is a query parameter.
    for (path, item) in raw["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().expect("name");
                let in_path = path.contains(&format!("{{{name}}}"));
                assert_eq!(
                    parameter["in"],
                    if in_path { "path" } else { "query" },
                    "{method} {path}: {parameter}"
                );
            }
        }
    }
    // Schemas referenced are present: the report's, the chart's, the error's.
    for schema in [
        "Report",
        "Comparison",
        "Chart",
        "ExamplePage",
        "SpendView",
        "ErrorBody",
        "ExperimentRequest",
        "ExchangeList",
        "AlertList",
    ] {
        assert!(raw["components"]["schemas"].get(schema).is_some(), "schema {schema} missing");
    }

    // One error shape in the API: unknown route, wrong method, bad query, bad path, unknown
    // experiment (pages answer with an HTML page instead: `first_hour`).
    for (method, path, status) in [
        ("GET", "/api/nope", 404),
        ("DELETE", "/api/experiments", 405),
        ("GET", "/api/spend?days=abc", 400),
        ("GET", "/api/spend?days=0", 400),
        ("GET", "/api/exchanges?limit=many", 400),
        ("GET", "/api/experiments/none", 404),
        ("GET", "/api/experiments/none/examples?page=-1", 400),
    ] {
        let http = evaltap_providers::http_client(std::time::Duration::from_secs(30)).expect("client");
        let reply =
            http.request(method.parse().expect("method"), format!("{url}{path}")).send().await.expect("send");
        assert_eq!(reply.status().as_u16(), status, "{method} {path}");
        let body: Value = reply.json().await.unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"));
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {body}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{method} {path}: {body}");
    }
}
