//! A judge that takes images is sent the conversation's images with the prompt; one that does
//! not gets the prompt alone (with the placeholders it shows).

use std::path::Path;
use std::time::Duration;

use evaltap_judge::{Judge, Rubrics, Subject};
use evaltap_providers::{ChatClient, http_client};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn rubrics() -> Rubrics {
    Rubrics::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../rubrics"))).expect("shipped rubrics")
}

async fn judged_content(images: bool) -> Value {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"role": "assistant", "content": "{\"score\": 5, \"reason\": \"right\"}"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5}})))
        .mount(&server)
        .await;
    let client = ChatClient::new(
        http_client(Duration::from_secs(5)).expect("http"),
        &format!("{}/v1", server.uri()),
        None,
        1,
    );
    let judge = Judge::new(client, "judge", 0.0).with_images(images);
    let request = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What animal is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let subject = Subject { request: &request, response: "A cat.", reference: None };
    judge.grade(&rubrics(), "correctness", subject, 1, 0).await.expect("graded");
    let received = server.received_requests().await.expect("requests");
    let body: Value = serde_json::from_slice(&received[0].body).expect("json");
    body["messages"][0]["content"].clone()
}

#[tokio::test]
async fn a_judge_that_takes_images_is_shown_them() {
    let content = judged_content(true).await;
    let parts = content.as_array().expect("content parts");
    assert_eq!(parts[0]["type"], "text");
    assert!(parts[0]["text"].as_str().is_some_and(|t| t.contains("[image: image/png")), "{content}");
    assert_eq!(
        parts[1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
    );
    assert_eq!(parts[2], json!({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}));

    let text_only = judged_content(false).await;
    assert!(
        text_only.as_str().is_some_and(|t| t.contains("[image: https://example.com/cat.png]")),
        "{text_only}"
    );
}
