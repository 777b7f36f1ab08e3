//! The mirror endpoint over real HTTP: auth, batches with bad items, sampling, idempotency,
//! limits — on SQLite and on PostgreSQL.

use std::time::Duration;

use evaltap_app::App;
use evaltap_core::{Config, SourceConfig};
use serde_json::{Value, json};

use crate::common::TempDir;

struct Mirror {
    _dir: TempDir,
    app: App,
    url: String,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(sample_rate: f64, max_body_bytes: usize) -> Mirror {
    let mut dir = TempDir::new("mirror");
    let config = Config {
        database_url: dir.database_url(),
        max_body_bytes,
        sources: vec![SourceConfig { sample_rate, ..SourceConfig::with_key("prod", "k-prod") }],
        ..Config::default()
    };
    let app = App::open(config).await.expect("open");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1/mirror", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(evaltap_server::serve(listener, evaltap_server::AppState::for_app(&app), async move {
        let _ = stopped.await;
    }));
    let http = evaltap_providers::http_client(Duration::from_secs(30)).expect("client");
    Mirror { _dir: dir, app, url, http, _stop: stop }
}

fn item(i: usize) -> Value {
    json!({"id": format!("req-{i}"),
           "request": {"model": "m", "messages": [{"role": "user", "content": format!("question {i}")}]},
           "response": {"model": "m", "choices": [{"message": {"role": "assistant", "content": "answer"}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}})
}

impl Mirror {
    async fn send(&self, key: Option<&str>, body: String) -> (u16, Value) {
        let mut request = self.http.post(&self.url).body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let reply = request.send().await.expect("send");
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    async fn stored(&self) -> i64 {
        self.app.store.count_exchanges().await.expect("count")
    }
}

crate::on_both_engines! {
    async fn bad_input_gets_a_4xx_with_a_message_and_spares_the_rest_of_the_batch() {
        let mirror = start(1.0, 1024 * 1024).await;

        let (status, body) = mirror.send(Some("k-prod"), "{not json".into()).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().is_some_and(|e| e.contains("invalid JSON")), "{body}");

        let (status, body) = mirror.send(Some("k-prod"), json!({"response": {}}).to_string()).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "`request` is missing");

        let (status, body) = mirror.send(Some("wrong"), item(0).to_string()).await;
        assert_eq!(status, 401);
        assert!(body["error"].as_str().is_some_and(|e| e.contains("key")), "{body}");
        let (status, _) = mirror.send(None, item(0).to_string()).await;
        assert_eq!(status, 401);
        assert_eq!(mirror.stored().await, 0);

        // NDJSON with a broken line and an item without `request`: the others are stored.
        let batch = format!("{}\n{{broken\n{}\n{}\n", item(1), json!({"response": {}}), item(2));
        let (status, body) = mirror.send(Some("k-prod"), batch.clone()).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!((body["accepted"].as_u64(), body["duplicates"].as_u64()), (Some(2), Some(0)));
        let rejected = body["rejected"].as_array().expect("rejected");
        assert_eq!(rejected.iter().map(|r| r["index"].as_u64()).collect::<Vec<_>>(), [Some(1), Some(2)]);
        assert!(rejected[0]["reason"].as_str().is_some_and(|r| r.contains("invalid JSON")));
        assert_eq!(rejected[1]["reason"], "`request` is missing");
        assert_eq!(mirror.stored().await, 2);

        // Re-delivery is idempotent.
        let (status, body) = mirror.send(Some("k-prod"), batch).await;
        assert_eq!(status, 202);
        assert_eq!((body["accepted"].as_u64(), body["duplicates"].as_u64()), (Some(0), Some(2)));
        assert_eq!(mirror.stored().await, 2);

        // A JSON array works the same way.
        let (status, body) = mirror.send(Some("k-prod"), json!([item(3), item(4)]).to_string()).await;
        assert_eq!((status, body["accepted"].as_u64()), (202, Some(2)));
    }
}

crate::on_both_engines! {
    async fn oversized_bodies_get_413_naming_the_limit() {
        let mirror = start(1.0, 2048).await;
        let batch: String = (0..100).map(|i| format!("{}\n", item(i))).collect();
        let (status, body) = mirror.send(Some("k-prod"), batch).await;
        assert_eq!(status, 413);
        assert!(body["error"].as_str().is_some_and(|e| e.contains("2048")), "{body}");
        assert_eq!(mirror.stored().await, 0);
    }
}

crate::on_both_engines! {
    async fn sampling_is_deterministic_per_exchange() {
        let mirror = start(0.25, 16 * 1024 * 1024).await;
        let batch: String = (0..10_000).map(|i| format!("{}\n", item(i))).collect();
        let (status, first) = mirror.send(Some("k-prod"), batch.clone()).await;
        assert_eq!(status, 202);
        let accepted = first["accepted"].as_u64().expect("accepted");
        // 3σ of binomial(10000, 0.25) is ≈ 130.
        assert!((2370..=2630).contains(&accepted), "kept {accepted} of 10000 at rate 0.25");
        assert_eq!(first["sampled_out"].as_u64(), Some(10_000 - accepted));
        let (_, second) = mirror.send(Some("k-prod"), batch).await;
        assert_eq!((second["accepted"].as_u64(), second["duplicates"].as_u64()), (Some(0), Some(accepted)));
        assert_eq!(mirror.stored().await, accepted as i64);
    }
}

crate::on_both_engines! {
/// `redact = false` stores what the source sent as it came; the default replaces what the
/// built-in detectors find.
async fn redact_false_keeps_the_text_and_the_default_redacts_it() {
    let mut dir = TempDir::new("redact-off");
    let config = Config {
        database_url: dir.database_url(),
        sources: vec![
            SourceConfig { redact: false, ..SourceConfig::with_key("plain", "k-plain") },
            SourceConfig::with_key("prod", "k-prod"),
        ],
        ..Config::default()
    };
    let app = App::open(config).await.expect("open");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1/mirror", listener.local_addr().expect("addr"));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(evaltap_server::serve(listener, evaltap_server::AppState::for_app(&app), async move {
        let _ = stopped.await;
    }));
    let http = evaltap_providers::http_client(Duration::from_secs(30)).expect("client");
    let body = json!({"id": "pii-1", "request": {"model": "m", "messages": [
            {"role": "user", "content": "Mail jane.doe@example.com the answer to 6 * 7."}]},
        "response": {"model": "m", "choices": [{"message": {"role": "assistant", "content": "42"}}]}});
    for key in ["k-plain", "k-prod"] {
        let reply = http.post(&url).bearer_auth(key).json(&body).send().await.expect("send");
        assert_eq!(reply.status().as_u16(), 202, "{}", reply.text().await.unwrap_or_default());
    }
    let stored = |source: &str| {
        let app = app.clone();
        let filter = evaltap_store::Filter { source: Some(source.into()), ..Default::default() };
        async move { app.store.matching_exchanges(&filter).await.expect("read")[0].exchange.request.to_string() }
    };
    let (plain, redacted) = (stored("plain").await, stored("prod").await);
    assert!(plain.contains("jane.doe@example.com"), "{plain}");
    assert!(!redacted.contains("jane.doe@example.com") && redacted.contains("[REDACTED:email]"), "{redacted}");
}
}

crate::on_both_engines! {
/// A failed call (sent with `"error"` instead of `"response"`) is stored, and never sampled as a
/// baseline.
async fn a_failed_call_is_stored_but_never_a_baseline() {
    let quiet = evaltap_sim::JudgeBehavior { noise: 0.0, position_bias: 0.0, unreadable_long: 0.0 };
    let bench = crate::common::Bench::start("failed-call", quiet, None, 10).await;
    let before = bench.app.store.count_exchanges().await.expect("count");
    crate::first_hour::mirror(
        &bench,
        [json!({"id": "failed-1", "request": {"model": "sim-large", "messages": [
                    {"role": "user", "content": "What is 2 + 2? Reply with the number."}]},
                "error": {"message": "upstream answered 500", "type": "server_error"}})],
    )
    .await;
    assert_eq!(bench.app.store.count_exchanges().await.expect("count"), before + 1, "the failed call is stored");
    let experiment = bench
        .create(evaltap_worker::ExperimentRequest {
            sample_size: None,
            ..crate::common::experiment_request("no-failed-baseline", "small", "correctness", 0)
        })
        .await;
    let items = bench.app.store.experiment_item_ids(&experiment.id).await.expect("items");
    assert_eq!(items.len() as i64, before, "every successful exchange and nothing else");
    for id in &items {
        let stored = bench.app.store.exchange(id).await.expect("read").expect("stored");
        assert!(stored.exchange.succeeded && stored.exchange.external_id.as_deref() != Some("failed-1"));
    }
}
}
