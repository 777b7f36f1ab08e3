//! What happens at the door, over real HTTP: redaction and credential scrubbing, signatures,
//! sampling rules and caps, gzip, gateway formats end to end, and the tee proxy.

use std::time::Duration;

use evaltap_core::{Config, SampleRule, SourceConfig};
use serde_json::{Value, json};

use crate::common::TestServer;

pub(crate) fn item(i: usize, content: &str) -> Value {
    json!({"id": format!("req-{i}"),
           "request": {"model": "m", "messages": [{"role": "user", "content": content}], "api_key": "sk-live-abcdefghijklmnop1234"},
           "response": {"model": "m", "choices": [{"message": {"role": "assistant", "content": "ok"}}]},
           "tags": {"headers": {"authorization": "Bearer sk-proj-abcdefghijklmnopqrst", "x-app": "trivia"}}})
}

pub(crate) async fn post(
    server: &TestServer,
    path: &str,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let reply = server
        .http
        .post(format!("{}{path}", server.url))
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .expect("send");
    (reply.status().as_u16(), reply.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn redaction_and_credentials_never_reach_storage() {
    let mut source = SourceConfig::with_key("prod", "k");
    source.redact_patterns = vec!["ACC-\\d{6}".into()];
    let server = TestServer::start(Config { sources: vec![source], ..Config::default() }).await;
    let (status, body) = post(
        &server,
        "/v1/mirror",
        "k",
        item(1, "I'm jane@example.com, +1 415-555-0100, card 4111-1111-1111-1111, account ACC-123456")
            .to_string(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["redactions"], 6, "{body}");
    let stored = server.wait_for_exchanges("prod", 1).await;
    let text = stored[0].to_string();
    for secret in
        ["jane@example.com", "555-0100", "4111", "ACC-123456", "sk-live", "sk-proj", "authorization"]
    {
        assert!(!text.contains(secret), "{secret} stored: {text}");
    }
    assert!(text.contains("[REDACTED:email]") && text.contains("trivia"));
    let sources: Value = server
        .http
        .get(format!("{}/api/sources", server.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(sources["sources"][0]["redactions"], 6);
    assert_eq!(sources["sources"][0]["accepted"], 1);
    let page = server.http.get(format!("{}/sources", server.url)).send().await.expect("page");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("<td>prod</td>") && html.contains(">6</td>"), "{html}");
}

/// Every credential shape the door audit found surviving, planted in a native delivery and a
/// LiteLLM one (whose tags copy client headers): none is in the database files afterwards.
#[tokio::test]
async fn planted_credentials_never_reach_the_database_files() {
    let server =
        TestServer::start(Config { sources: vec![SourceConfig::with_key("prod", "k")], ..Config::default() })
            .await;
    let markers: Vec<String> = (1..=19).map(|i| format!("planted{i}marker")).collect();
    let native = json!({"id": "secrets-1",
        "request": {"model": "m", "messages": [{"role": "user", "content": format!("Basic {}", "cGxhbnRlZDE2bWFya2VyOnB3")}],
                    "metadata": {"authorization": markers[0], "api_key": markers[1], "openai_api_key": markers[2]}},
        "response": {"model": "m", "choices": [{"message": {"role": "assistant", "content": "ok"}}]},
        "tags": {"cf-aig-api-key": markers[3], "Ocp-Apim-Subscription-Key": markers[4], "X-Auth-Token": markers[5],
                 "access_token": markers[6], "client_secret": markers[7], "password": markers[8], "token": markers[9],
                 "aws_secret_access_key": markers[10], "x-custom-token": markers[11], "route": "support"}});
    let (status, body) = post(&server, "/v1/mirror", "k", native.to_string()).await;
    assert_eq!(status, 202, "{body}");
    let litellm = json!([{"id": "chatcmpl-secrets-2", "call_type": "acompletion", "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "response": {"id": "chatcmpl-secrets-2", "model": "m", "choices": [{"message": {"role": "assistant", "content": "hey"}}]},
        "metadata": {"user_api_key": markers[12], "headers": {"x-api-token": markers[13], "x-custom-token": markers[14]},
                     "api_token": markers[15]},
        "request_tags": [], "status": "success"}]);
    let (status, body) = post(&server, "/v1/mirror/litellm", "k", litellm.to_string()).await;
    assert_eq!(status, 202, "{body}");
    // OTLP: credentials under prefixed attribute names (`metadata.authorization`…).
    let attr = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
    let otlp = json!({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
    "traceId": "0af7651916cd43dd8448eb211c80319d", "spanId": "b7ad6b7169203332", "name": "chat m",
    "startTimeUnixNano": "1795824818000000000", "endTimeUnixNano": "1795824818500000000",
    "attributes": [
        attr("gen_ai.request.model", "m"),
        attr("gen_ai.input.messages", "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"hi\"}]}]"),
        attr("gen_ai.output.messages", "[{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"content\":\"yo\"}]}]"),
        attr("metadata.authorization", &markers[16]),
        attr("metadata.api_key", &markers[17]),
        attr("http.request.header.x-auth-token", &markers[18])
    ]}]}]}]});
    let (status, body) = post(&server, "/v1/traces", "k", otlp.to_string()).await;
    assert!(status == 200 || status == 202, "{status} {body}");
    server.wait_for_exchanges("prod", 3).await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&server.dir.0).expect("dir") {
        bytes.extend(std::fs::read(entry.expect("entry").path()).expect("read"));
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("support"), "the delivery is stored");
    for marker in &markers {
        assert!(!text.contains(marker.as_str()), "{marker} found in the database files");
    }
    assert!(!text.contains("cGxhbnRlZDE2bWFya2VyOnB3"), "Basic credentials found in the database files");
}

#[tokio::test]
async fn signed_deliveries_are_checked() {
    use hmac::{KeyInit, Mac};
    // SAFETY of the test: the variable name is unique to this test.
    unsafe { std::env::set_var("EVALTAP_TEST_HELICONE_SECRET", "whsec-test") };
    let source = SourceConfig {
        hmac_secret_env: Some("EVALTAP_TEST_HELICONE_SECRET".into()),
        format: "helicone".into(),
        key: None,
        ..SourceConfig::with_key("helicone", "unused")
    };
    let server = TestServer::start(Config { sources: vec![source], ..Config::default() }).await;
    let body = std::fs::read("crates/ingest/tests/fixtures/helicone/request.json").expect("fixture");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"whsec-test").expect("key");
    mac.update(&body);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let url = format!("{}/v1/mirror/helicone?source=helicone", server.url);
    let bad = server
        .http
        .post(&url)
        .header("Helicone-Signature", "00ff")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status().as_u16(), 401);
    let unsigned = server.http.post(&url).body(body.clone()).send().await.expect("send");
    assert_eq!(unsigned.status().as_u16(), 401);
    let good =
        server.http.post(&url).header("Helicone-Signature", signature).body(body).send().await.expect("send");
    assert_eq!(good.status().as_u16(), 202);
    assert_eq!(server.wait_for_exchanges("helicone", 1).await.len(), 1);
}

#[tokio::test]
async fn rules_caps_gzip_and_formats() {
    use std::io::Write as _;
    let source = SourceConfig {
        max_per_minute: Some(5),
        rules: vec![SampleRule { model: Some("never".into()), route: None, sample_rate: 0.0 }],
        ..SourceConfig::with_key("prod", "k")
    };
    let server = TestServer::start(Config { sources: vec![source], ..Config::default() }).await;
    // The rule drops model `never`; the cap keeps 5 of the rest this minute.
    let mut items: Vec<Value> = (0..20).map(|i| item(i, "hi")).collect();
    items[0]["request"]["model"] = json!("never");
    items[0]["response"]["model"] = json!("never");
    let ndjson: String = items.iter().map(|v| format!("{v}\n")).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(ndjson.as_bytes()).expect("gzip");
    let reply = server
        .http
        .post(format!("{}/v1/mirror", server.url))
        .bearer_auth("k")
        .header("content-encoding", "gzip")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("send");
    assert_eq!(reply.status().as_u16(), 202);
    let body: Value = reply.json().await.expect("json");
    assert_eq!((body["accepted"].as_u64(), body["sampled_out"].as_u64()), (Some(5), Some(15)), "{body}");

    // A gateway format end to end, and OTLP at /v1/traces.
    let litellm = std::fs::read("crates/ingest/tests/fixtures/litellm/batch.json").expect("fixture");
    let (status, body) = post(&server, "/v1/mirror/litellm", "k", litellm).await;
    assert_eq!((status, body["sampled_out"].as_u64()), (202, Some(3)), "cap reached: {body}");
    let otlp = std::fs::read("crates/ingest/tests/fixtures/otlp/semconv.json").expect("fixture");
    let reply = server
        .http
        .post(format!("{}/v1/traces", server.url))
        .bearer_auth("k")
        .header("content-type", "application/json")
        .body(otlp)
        .send()
        .await
        .expect("send");
    assert_eq!(reply.status().as_u16(), 200);
    let (status, body) = post(&server, "/v1/mirror/nope", "k", "{}").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("litellm")), "{body}");
    let (status, body) = post(&server, "/v1/mirror/kong", "k", r#"{"request": {"id": "x"}}"#).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("`ai.proxy`")), "{body}");
}

/// A 202 means committed durably: every pooled connection syncs at each commit.
#[tokio::test]
async fn acknowledged_writes_are_synced_at_commit() {
    let server = TestServer::start(Config::default()).await;
    assert_eq!(server.app.store.synchronous_level().await.expect("pragma"), Some(2));
    // Every connection of the pool, held at once so each is a different one.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(crate::common::sqlite_pool(&server.app.store).acquire().await.expect("connection"));
    }
    for connection in &mut held {
        let level: i64 =
            sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut **connection).await.expect("pragma");
        assert_eq!(level, 2, "synchronous = FULL on every connection");
    }
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// The poison shapes found in the door audit (a LiteLLM failure whose `error_information` nests
/// ~126 levels, deep values in a native item) are refused with a reason, and every read keeps
/// working; a garbage batch gets a bounded reply.
#[tokio::test]
async fn poison_records_are_refused_and_replies_stay_bounded() {
    let server =
        TestServer::start(Config { sources: vec![SourceConfig::with_key("prod", "k")], ..Config::default() })
            .await;
    let deep_native = format!(
        r#"{{"id": "deep", "request": {{"model": "m", "messages": [{{"role": "user", "content": "hi"}}], "extra": {}}},
            "response": {{"model": "m", "choices": [{{"message": {{"role": "assistant", "content": "ok"}}}}]}}}}"#,
        nested(120)
    );
    let (status, body) = post(&server, "/v1/mirror", "k", deep_native).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["rejected"][0]["reason"].as_str().is_some_and(|r| r.contains("levels deep")), "{body}");
    let deep_litellm = format!(
        r#"[{{"id": "fail-1", "call_type": "acompletion", "model": "m", "status": "failure",
             "messages": [{{"role": "user", "content": "hi"}}], "error_information": {{"error_message": "x", "traceback": {}}}}}]"#,
        nested(122)
    );
    let (status, body) = post(&server, "/v1/mirror/litellm", "k", deep_litellm).await;
    assert!(status == 400 || (status == 202 && body["accepted"] == 0), "{status} {body}");
    // Reads keep working.
    let list = server.http.get(format!("{}/api/exchanges", server.url)).send().await.expect("list");
    assert_eq!(list.status().as_u16(), 200);

    // 250 garbage items: the reply lists the first 100 and counts them all.
    let garbage: String = (0..250).map(|_| "0\n").collect();
    let (status, body) = post(&server, "/v1/mirror", "k", garbage).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(100), "{body}");
    assert_eq!(body["rejected_total"], 250);
}

/// A row that does not read back (inserted behind evaltap's back) is skipped and counted by
/// lists, reports and experiments, which still complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_row_is_skipped_and_counted_everywhere() {
    let bench = crate::common::Bench::start("poison", evaltap_sim::JudgeBehavior::default(), None, 20).await;
    let app = &bench.app;
    sqlx::query(
        "INSERT INTO exchanges (id, source, dedup_key, received_at, model, request, response, tags, succeeded)
         VALUES ('poison-row', 'demo', 'poison', '2026-11-29T00:00:00Z', 'sim-large', '{not json', '{}', '{}', 1)",
    )
    .execute(crate::common::sqlite_pool(&app.store))
    .await
    .expect("insert");
    let (readable, unreadable) = app.store.readable_exchanges(None, 1000).await.expect("list");
    assert_eq!((readable.len(), unreadable), (20, 1));
    let experiment =
        bench.create(crate::common::experiment_request("poison", "small", "correctness", 21)).await;
    let report = crate::common::run(app, &experiment).await;
    assert_eq!(report.status, "done");
    assert_eq!(report.unreadable_items, 1);
    assert_eq!((report.candidates[0].n, report.candidates[0].errors), (20, 1), "{:?}", report.candidates[0]);
}

/// Bounded, seeded fuzzing of the gzip path over HTTP: random and truncated gzip bodies get a
/// 4xx, never a 5xx or a hang.
#[tokio::test]
async fn garbage_gzip_bodies_get_a_4xx() {
    use std::io::Write as _;

    use rand::{RngExt, SeedableRng};
    let server =
        TestServer::start(Config { sources: vec![SourceConfig::with_key("prod", "k")], ..Config::default() })
            .await;
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(99);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(item(1, "hello").to_string().as_bytes()).expect("gzip");
    let valid = encoder.finish().expect("gzip");
    for case in 0..60 {
        let body: Vec<u8> = match case % 3 {
            0 => (0..rng.random_range(0..400)).map(|_| rng.random::<u8>()).collect(),
            1 => valid[..rng.random_range(0..valid.len())].to_vec(),
            _ => {
                let mut b = valid.clone();
                let at = rng.random_range(10..b.len());
                b[at] ^= 0xff;
                b
            }
        };
        let reply = server
            .http
            .post(format!("{}/v1/mirror", server.url))
            .bearer_auth("k")
            .header("content-encoding", "gzip")
            .body(body)
            .send()
            .await
            .expect("answered");
        let status = reply.status().as_u16();
        assert!((200..500).contains(&status), "case {case}: {status}");
    }
}

/// Deliveries that arrive while a commit is running are committed together in the next one
/// (rows of one commit share its `received_at`), and none is answered before it is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_are_committed_together() {
    let server =
        TestServer::start(Config { sources: vec![SourceConfig::with_key("prod", "k")], ..Config::default() })
            .await;
    // Hold SQLite's write lock so that the writer's next commit has to wait.
    let mut blocker = crate::common::sqlite_pool(&server.app.store).acquire().await.expect("connection");
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *blocker).await.expect("lock");
    let posts: Vec<_> = (0..20)
        .map(|i| {
            let (http, url) = (server.http.clone(), format!("{}/v1/mirror", server.url));
            tokio::spawn(async move {
                let reply = http
                    .post(url)
                    .bearer_auth("k")
                    .body(item(i, "grouped").to_string())
                    .send()
                    .await
                    .expect("send");
                reply.status().as_u16()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(posts.iter().all(|p| !p.is_finished()), "a 202 came before its commit could run");
    sqlx::query("COMMIT").execute(&mut *blocker).await.expect("unlock");
    drop(blocker);
    for post in posts {
        assert_eq!(post.await.expect("post"), 202);
    }
    let stored = server.app.store.recent_exchanges(Some("prod"), 100).await.expect("stored");
    assert_eq!(stored.len(), 20);
    let commits: std::collections::BTreeSet<_> = stored.iter().map(|e| e.received_at).collect();
    // The first delivery may have started a commit of its own before the others arrived.
    assert!(commits.len() <= 2, "20 concurrent deliveries took {} commits", commits.len());
}

#[tokio::test]
async fn a_route_rule_samples_by_the_route_tag() {
    // The source keeps nothing by default; its rule keeps every exchange of route `support`.
    let source = SourceConfig {
        sample_rate: 0.0,
        rules: vec![SampleRule { model: None, route: Some("support".into()), sample_rate: 1.0 }],
        ..SourceConfig::with_key("prod", "k")
    };
    let server = TestServer::start(Config { sources: vec![source], ..Config::default() }).await;
    let items: Vec<Value> = (0..10)
        .map(|i| {
            let mut exchange = item(i, "hi");
            exchange["tags"] =
                if i % 2 == 0 { json!({"route": "support"}) } else { json!({"route": "math"}) };
            exchange
        })
        .collect();
    let ndjson: String = items.iter().map(|v| format!("{v}\n")).collect();
    let reply = server
        .http
        .post(format!("{}/v1/mirror", server.url))
        .bearer_auth("k")
        .body(ndjson)
        .send()
        .await
        .expect("send");
    assert_eq!(reply.status().as_u16(), 202);
    let body: Value = reply.json().await.expect("json");
    assert_eq!((body["accepted"].as_u64(), body["sampled_out"].as_u64()), (Some(5), Some(5)), "{body}");
    let stored = server.wait_for_exchanges("prod", 5).await;
    assert!(stored.iter().all(|e| e["exchange"]["tags"]["route"] == "support"), "{stored:?}");
}
