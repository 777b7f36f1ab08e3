//! Golden sets and drift over HTTP only, with tokens, as a CI job with `curl` would use them:
//! import a dataset, start a golden run, wait for its report, gate it; add, list, pause and
//! remove a schedule. A read token reads and is refused every change.

use std::time::Duration;

use evaltap_core::Role;
use serde_json::{Value, json};

use crate::common::{BackgroundWorker, Bench, token};

const ADMIN: &str = "etk_golden_admin";
const READER: &str = "etk_golden_reader";

/// `METHOD url` with a bearer token and an optional JSON body: (status, JSON body).
async fn call(method: reqwest::Method, url: &str, secret: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth(secret);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

crate::on_both_engines! {
    async fn a_golden_set_is_imported_run_and_gated_over_http_with_tokens() {
        let bench = Bench::start_with("golden-http", evaltap_sim::JudgeBehavior::default(), None, 1, |config| {
            config.auth.allow_unauthenticated = false;
            config.auth.tokens = vec![token("ops", Role::Admin, ADMIN), token("ci", Role::Read, READER)];
        })
        .await;
        let worker = BackgroundWorker::start(&bench.app);
        let api = format!("{}/api", bench.url);
        let post = reqwest::Method::POST;
        let get = reqwest::Method::GET;

        // Import, all or nothing: a bad line adds nothing.
        let good: String = (0..30)
            .map(|i| {
                let (a, b) = (3 * i + 2, i + 7);
                format!("{}\n", json!({"id": format!("q{i}"), "input": format!("What is {a} + {b}? Reply with the number."), "reference": (a + b).to_string()}))
            })
            .collect();
        let bad = format!("{good}{{\"id\": \"broken\"\n");
        let (status, body) = call(post.clone(), &format!("{api}/datasets/sums/items"), ADMIN, Some(json!({"content": bad, "filename": "sums.jsonl"}))).await;
        assert_eq!(status, 400, "{body}");
        let (status, _) = call(get.clone(), &format!("{api}/datasets/sums"), READER, None).await;
        assert_eq!(status, 404, "nothing was added");
        let (status, body) = call(post.clone(), &format!("{api}/datasets/sums/items"), READER, Some(json!({"content": good}))).await;
        assert_eq!(status, 403, "a read token cannot import: {body}");
        let (status, body) = call(post.clone(), &format!("{api}/datasets/sums/items"), ADMIN, Some(json!({"content": good, "filename": "sums.jsonl"}))).await;
        assert_eq!((status, body["imported"].as_u64(), body["items"].as_u64()), (201, Some(30), Some(30)), "{body}");
        let (status, listed) = call(get.clone(), &format!("{api}/datasets"), READER, None).await;
        assert_eq!((status, listed["datasets"][0]["name"].as_str()), (200, Some("sums")), "{listed}");

        // A run needs its budget said; a read token cannot start one.
        let run = json!({"candidates": ["small"], "against_reference": true, "name": "sums-ci"});
        let (status, body) = call(post.clone(), &format!("{api}/datasets/sums/runs"), ADMIN, Some(run.clone())).await;
        assert_eq!(status, 400, "{body}");
        let mut run = run;
        run["spend_cap_usd"] = Value::Null;
        let (status, _) = call(post.clone(), &format!("{api}/datasets/sums/runs"), READER, Some(run.clone())).await;
        assert_eq!(status, 403);
        let (status, started) = call(post.clone(), &format!("{api}/datasets/sums/runs"), ADMIN, Some(run)).await;
        assert_eq!((status, started["name"].as_str()), (201, Some("sums-ci")), "{started}");

        // Poll the gate until it decides, as CI would.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let gate = loop {
            // The report first: a gate read before the run finished would say it is running.
            let (_, report) = call(get.clone(), &format!("{api}/experiments/sums-ci"), READER, None).await;
            if report["status"] == "done" {
                let (status, gate) = call(get.clone(), &format!("{api}/experiments/sums-ci/gate"), READER, None).await;
                assert_eq!(status, 200, "{gate}");
                break gate;
            }
            assert!(tokio::time::Instant::now() < deadline, "the run never finished: {report}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // `small` answers about 60% of these right, the references 100%: a regression, exit 1.
        assert_eq!((gate["result"].as_str(), gate["exit_code"].as_u64()), (Some("regression"), Some(1)), "{gate}");
        assert!(gate["rows"].as_array().is_some_and(|rows| rows.iter().any(|r| r["verdict"] == "worse")), "{gate}");
        let (status, _) = call(get.clone(), &format!("{api}/experiments/sums-ci/gate?candidate=nobody"), READER, None).await;
        assert_eq!(status, 404);
        // The dataset's version names the run that used it.
        let (_, dataset) = call(get.clone(), &format!("{api}/datasets/sums"), READER, None).await;
        assert_eq!(dataset["versions"][0]["runs"], json!(["sums-ci"]), "{dataset}");

        // The datasets pages.
        let page = |path: &str| {
            let url = format!("{}{path}", bench.url);
            async move {
                let response = reqwest::Client::new().get(url).bearer_auth(READER).send().await.expect("page");
                (response.status().as_u16(), response.text().await.expect("html"))
            }
        };
        let (status, html) = page("/datasets").await;
        assert!(status == 200 && html.contains("href=\"/datasets/sums\""), "{html}");
        let (status, html) = page("/datasets/sums").await;
        assert!(status == 200 && html.contains("href=\"/experiments/sums-ci\"") && html.contains("q29"), "{html}");
        assert_eq!(page("/datasets/nothing").await.0, 404);

        // Schedules: add, see, pause, refuse a duplicate, remove.
        let schedule = json!({"dataset": "sums", "candidate": "medium", "every": "6h", "name": "nightly"});
        let (status, _) = call(post.clone(), &format!("{api}/schedules"), READER, Some(schedule.clone())).await;
        assert_eq!(status, 403);
        let (status, body) = call(post.clone(), &format!("{api}/schedules"), ADMIN, Some(json!({"dataset": "sums", "candidate": "medium", "every": "soon"}))).await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = call(post.clone(), &format!("{api}/schedules"), ADMIN, Some(schedule.clone())).await;
        assert_eq!((status, body["schedule"]["name"].as_str()), (201, Some("nightly")), "{body}");
        let (status, body) = call(post.clone(), &format!("{api}/schedules"), ADMIN, Some(schedule)).await;
        assert_eq!(status, 409, "{body}");
        let (_, listed) = call(get.clone(), &format!("{api}/schedules"), READER, None).await;
        assert_eq!(
            (listed["schedules"][0]["name"].as_str(), listed["schedules"][0]["status"].as_str(), listed["schedules"][0]["reference_needed"].as_u64()),
            (Some("nightly"), Some("ok"), Some(3)),
            "{listed}"
        );
        let (status, html) = page("/drift").await;
        assert!(status == 200 && html.contains("href=\"/drift/nightly\"") && html.contains("0 of 3"), "{html}");
        let (status, html) = page("/drift/nightly").await;
        assert!(status == 200 && html.contains("No compared run yet"), "{html}");
        let (status, body) = call(post.clone(), &format!("{api}/schedules/nightly/pause"), ADMIN, None).await;
        assert_eq!((status, body["schedule"]["paused"].as_bool()), (200, Some(true)), "{body}");
        let (_, shown) = call(get.clone(), &format!("{api}/schedules/nightly"), READER, None).await;
        assert_eq!((shown["schedule"]["paused"].as_bool(), shown["runs"].as_array().map(Vec::len)), (Some(true), Some(0)), "{shown}");
        let (status, _) = call(reqwest::Method::DELETE, &format!("{api}/schedules/nightly"), READER, None).await;
        assert_eq!(status, 403);
        let (status, _) = call(reqwest::Method::DELETE, &format!("{api}/schedules/nightly"), ADMIN, None).await;
        assert_eq!(status, 200);
        let (status, _) = call(get, &format!("{api}/schedules/nightly"), READER, None).await;
        assert_eq!(status, 404);
        worker.stop().await;
    }
}
