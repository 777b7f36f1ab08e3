//! The tee proxy: what the client receives is byte-identical to calling the upstream directly,
//! streams pass through chunk by chunk, and the mirrored exchange is the assembled response.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use evaltap_core::{Config, SourceConfig};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::common::TestServer;

async fn proxy_server(upstream: &str) -> TestServer {
    let source = SourceConfig { upstream: Some(upstream.into()), ..SourceConfig::with_key("app", "k") };
    TestServer::start(Config { sources: vec![source], ..Config::default() }).await
}

/// The simulated upstream, answering at once.
async fn instant_sim() -> evaltap_sim::SimServer {
    let config = evaltap_sim::SimConfig { latency_scale: 0.0, ..Default::default() };
    evaltap_sim::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.expect("sim")
}

async fn call(http: &reqwest::Client, url: &str, body: &Value) -> (u16, String, Option<String>, Vec<u8>) {
    let reply = http
        .post(url)
        .bearer_auth("sk-client-provider-key-123456")
        .header("x-evaltap-key", "k")
        .json(body)
        .send()
        .await
        .expect("send");
    let status = reply.status().as_u16();
    let header = |name: &str| reply.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (content_type, length) = (header("content-type").unwrap_or_default(), header("content-length"));
    (status, content_type, length, reply.bytes().await.expect("body").to_vec())
}

crate::on_both_engines! {
    async fn byte_identical_responses_and_mirrored_exchanges() {
        let sim = instant_sim().await;
        let server = proxy_server(&sim.base_url()).await;
        let proxied = format!("{}/proxy/app/v1/chat/completions", server.url);
        let direct = format!("{}/chat/completions", sim.base_url());
        let plain = json!({"model": "sim-large", "messages": [{"role": "user", "content": "What is 12 + 30? Reply with the number."}]});
        let streamed = json!({"model": "sim-large", "stream": true, "stream_options": {"include_usage": true},
                              "messages": [{"role": "user", "content": "Convert 3 km to m. Reply with the number."}]});
        for body in [&plain, &streamed] {
            let a = call(&server.http, &direct, body).await;
            let b = call(&server.http, &proxied, body).await;
            assert_eq!(
                a, b,
                "proxied response (status, type, Content-Length, bytes) differs from the upstream's"
            );
        }
        let framed = call(&server.http, &proxied, &plain).await;
        assert!(framed.2.is_some(), "a non-streamed response keeps its Content-Length");
        let errors = call(
            &server.http,
            &proxied,
            &json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(errors.0, 404, "the upstream's status passes through");

        let stored = server.wait_for_exchanges("app", 3).await;
        let find = |prompt: &str| {
            stored
                .iter()
                .find(|s| {
                    s["exchange"]["request"]["messages"][0]["content"]
                        .as_str()
                        .is_some_and(|c| c.contains(prompt))
                })
                .cloned()
                .expect("mirrored")
        };
        let (_, _, _, plain_bytes) = call(&server.http, &direct, &plain).await;
        let plain_response: Value = serde_json::from_slice(&plain_bytes).expect("json");
        assert_eq!(find("12 + 30")["exchange"]["response"], plain_response);
        let streamed_exchange = find("3 km")["exchange"].clone();
        let direct_plain: Value = serde_json::from_slice(
            &call(
                &server.http,
                &direct,
                &json!({"model": "sim-large",
            "messages": [{"role": "user", "content": "Convert 3 km to m. Reply with the number."}]}),
            )
            .await
            .3,
        )
        .expect("json");
        assert_eq!(
            streamed_exchange["response"]["choices"][0]["message"]["content"],
            direct_plain["choices"][0]["message"]["content"]
        );
        assert_eq!(streamed_exchange["response"]["usage"], direct_plain["usage"]);
        assert_eq!(streamed_exchange["request"], streamed);
        let everything = serde_json::to_string(&stored).expect("json");
        assert!(!everything.contains("sk-client"), "the caller's provider key must not be stored");
    }
}

crate::on_both_engines! {
    async fn streams_pass_through_before_the_upstream_finishes() {
        // An upstream that sends one chunk, then waits until the test has seen it through the proxy.
        let release = Arc::new(tokio::sync::Notify::new());
        let seen_auth = Arc::new(Mutex::new(None::<String>));
        let (release_up, auth_up) = (release.clone(), seen_auth.clone());
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |headers: HeaderMap| {
                let release = release_up.clone();
                *auth_up.lock().expect("lock") = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                async move {
                    let first = "data: {\"id\":\"s1\",\"model\":\"slow\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
                    let rest = "data: {\"id\":\"s1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
                    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first.to_string()) }).chain(
                        futures_util::stream::once(async move {
                            release.notified().await;
                            Ok(rest.to_string())
                        }),
                    );
                    axum::response::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::from_stream(stream))
                        .expect("response")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = format!("http://{}/v1", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let server = proxy_server(&upstream).await;
        let reply = server
            .http
            .post(format!("{}/proxy/app/v1/chat/completions", server.url))
            .bearer_auth("sk-client-provider-key-123456")
            .header("x-evaltap-key", "k")
            .json(&json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("send");
        let mut body = reply.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("the first chunk arrives while the upstream is still open")
            .expect("chunk")
            .expect("bytes");
        assert!(String::from_utf8_lossy(&first).contains("Hel"));
        release.notify_one();
        let mut rest = Vec::new();
        while let Some(chunk) = body.next().await {
            rest.extend_from_slice(&chunk.expect("bytes"));
        }
        assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));
        assert_eq!(seen_auth.lock().expect("lock").as_deref(), Some("Bearer sk-client-provider-key-123456"));
        let stored = server.wait_for_exchanges("app", 1).await;
        assert_eq!(stored[0]["exchange"]["response"]["choices"][0]["message"]["content"], "Hello");
    }
}

crate::on_both_engines! {
    /// Anthropic Messages and OpenAI Responses calls through the tee proxy: the client gets the
    /// upstream's bytes, and the exchange is kept as it was made, with the chat view judges read.
    async fn messages_and_responses_calls_are_teed_and_kept_as_made() {
        let sim = instant_sim().await;
        let server = proxy_server(&sim.base_url()).await;
        let messages = json!({"model": "sim-large", "max_tokens": 100, "system": "You are a travel assistant.",
            "tools": [{"name": "get_weather", "description": "Weather for a city.",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "messages": [{"role": "user", "content": "What is the weather in Paris today?"}]});
        let responses = json!({"model": "sim-large", "instructions": "Be brief.", "max_output_tokens": 50,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "What is 12 + 30? Reply with the number."}]}]});
        for (path, body) in [("messages", &messages), ("responses", &responses)] {
            let direct = call(&server.http, &format!("{}/{path}", sim.base_url()), body).await;
            let proxied = call(&server.http, &format!("{}/proxy/app/v1/{path}", server.url), body).await;
            assert_eq!(direct.0, 200, "{}", String::from_utf8_lossy(&direct.3));
            assert_eq!(direct, proxied, "/v1/{path} through the proxy differs from the upstream");
        }
        let stored = server.wait_for_exchanges("app", 2).await;
        let made_with = |api: &str| {
            stored
                .iter()
                .find(|s| s["exchange"]["response"]["evaltap_original"]["api"] == api)
                .map(|s| s["exchange"].clone())
                .unwrap_or_else(|| panic!("a {api} exchange in {stored:?}"))
        };
        let anthropic = made_with("anthropic-messages");
        assert_eq!(anthropic["response"]["evaltap_original"]["request"], messages, "kept as sent");
        assert_eq!(anthropic["request"]["messages"][0], json!({"role": "system", "content": "You are a travel assistant."}));
        assert_eq!(anthropic["request"]["tools"][0]["function"]["name"], "get_weather");
        let call = &anthropic["response"]["choices"][0]["message"]["tool_calls"][0]["function"];
        assert_eq!(call["name"], "get_weather");
        assert!(anthropic["succeeded"].as_bool().unwrap_or(false) && anthropic["usage"]["input_tokens"].as_u64() > Some(0));
        let openai = made_with("openai-responses");
        assert_eq!(openai["request"]["messages"][0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(openai["request"]["messages"][1]["content"], "What is 12 + 30? Reply with the number.");
        assert_eq!(openai["request"]["max_tokens"], 50);
        assert_eq!(evaltap_core::chat::answer_text(&openai["response"]), "The answer is 42.");
    }
}

/// What the upstream receives: the caller's own `Authorization` untouched, the source key in
/// `X-Evaltap-Key` removed (it is evaltap's, not the provider's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_callers_authorization_and_never_the_source_key() {
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let recorder = seen.clone();
    let upstream = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: HeaderMap| {
            let recorder = recorder.clone();
            async move {
                recorder.lock().expect("lock").push(headers);
                axum::Json(json!({"id": "c", "object": "chat.completion", "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, upstream).await;
    });
    let server = proxy_server(&base).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "What is 6 × 7?"}]});
    let (status, ..) =
        call(&server.http, &format!("{}/proxy/app/v1/chat/completions", server.url), &body).await;
    assert_eq!(status, 200);
    let seen = seen.lock().expect("lock");
    let [headers] = &seen[..] else { panic!("one upstream call: {seen:?}") };
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer sk-client-provider-key-123456")
    );
    assert!(headers.get("x-evaltap-key").is_none(), "the source key reached the upstream: {headers:?}");
}
