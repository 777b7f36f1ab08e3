//! The client against a real HTTP server that fails before it answers.

use std::time::Duration;

use evaltap_providers::{ChatClient, RetryPolicy, http_client};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        attempt_timeout: Duration::from_millis(300),
        deadline: Duration::from_secs(2),
        retry_when_maybe_billed: true,
    }
}

/// A client for the mock server, with at most 2 calls in flight and fast retries.
fn client_for(server: &MockServer) -> ChatClient {
    let http = http_client(Duration::from_secs(5)).expect("client");
    ChatClient::new(http, &format!("{}/v1", server.uri()), None, 2).with_retry(fast_retry())
}

#[tokio::test]
async fn retries_429_then_succeeds_and_reports_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}
        })))
        .mount(&server)
        .await;
    let client = client_for(&server);
    let done = client.chat(&json!({"model": "m", "messages": []})).await.expect("second attempt succeeds");
    assert_eq!(done.text, "ok");
    assert_eq!(done.usage.map(|u| u.input_tokens), Some(3));
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(2));
}

#[tokio::test]
async fn gives_up_on_client_errors_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("bad model"))
        .mount(&server)
        .await;
    let client = client_for(&server);
    let err = client.chat(&json!({"model": "m"})).await.expect_err("400 is final");
    assert!(err.to_string().contains("400") && err.to_string().contains("bad model"), "{err}");
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(1));
}

#[tokio::test]
async fn stops_after_max_attempts_on_server_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let client = client_for(&server);
    let err = client.chat(&json!({"model": "m"})).await.expect_err("always 503");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(3));
}

#[tokio::test]
async fn a_hung_upstream_is_a_timeout_within_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let client = client_for(&server);
    let started = std::time::Instant::now();
    let err = client.chat(&json!({"model": "m"})).await.expect_err("hangs");
    let waited = started.elapsed();
    assert!(matches!(err, evaltap_providers::ProviderError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out: 3 attempt(s) over"), "{err}");
    // The whole call, not the last attempt's budget.
    if let evaltap_providers::ProviderError::Timeout { total_seconds, attempt_seconds, .. } = &err {
        assert!(*total_seconds >= 0.9 && total_seconds > attempt_seconds, "{err}");
    }
    // Three attempts of 300 ms plus short waits: well under the 2 s deadline, far from 30 s.
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(3));
}

#[tokio::test]
async fn a_call_paying_once_does_not_repeat_an_attempt_that_may_have_been_billed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let client = client_for(&server);
    let err = client.paying_once().chat(&json!({"model": "m"})).await.expect_err("hung");
    assert!(err.may_have_been_billed(), "{err}");
    assert_eq!(
        server.received_requests().await.map(|r| r.len()),
        Some(1),
        "a timed-out attempt was repeated"
    );
    // Errors the provider does not bill are still retried.
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let err = client_for(&server).paying_once().chat(&json!({"model": "m"})).await.expect_err("503");
    assert!(!err.may_have_been_billed(), "{err}");
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(3));
}
