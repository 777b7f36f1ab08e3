//! The door under load, over real HTTP: nesting refused just past its limit, a full
//! server's 503 with `Retry-After`, each source's share of the ingest slots, slow and stalled
//! clients, and the connection cap.

use std::time::Duration;

use evaltap_core::{Config, SourceConfig};
use serde_json::json;

use crate::common::TestServer;
use crate::door::{item, post};

/// Delivers with `key` until a delivery is turned away (503), which must come at once; a probe
/// that gets in before the slots are taken is simply accepted.
async fn turned_away(server: &TestServer, key: &str) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let started = std::time::Instant::now();
        let probe = tokio::time::timeout(
            Duration::from_secs(5),
            server
                .http
                .post(format!("{}/v1/mirror", server.url))
                .bearer_auth(key)
                .body(item(1, "hi").to_string())
                .send(),
        )
        .await
        .expect("answered, not hung")
        .expect("send");
        if probe.status().as_u16() == 503 {
            assert!(started.elapsed() < Duration::from_secs(2), "a full server answers at once");
            return probe;
        }
        assert_eq!(probe.status().as_u16(), 202);
        assert!(tokio::time::Instant::now() < deadline, "the slots were never all taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Values nest at most 64 levels: a request exactly that deep is stored and reads back; one
/// level more is refused with the reason.
#[tokio::test]
async fn nesting_is_refused_just_past_64_levels() {
    let server =
        TestServer::start(Config { sources: vec![SourceConfig::with_key("prod", "k")], ..Config::default() })
            .await;
    // The request object is one level; its `extra` field holds the rest.
    let exchange = |id: &str, depth: usize| {
        let mut extra = json!(1);
        for _ in 0..depth - 1 {
            extra = json!([extra]);
        }
        json!({"id": id, "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "extra": extra},
               "response": {"model": "m", "choices": [{"message": {"role": "assistant", "content": "ok"}}]}})
    };
    let (status, body) = post(&server, "/v1/mirror", "k", exchange("at-64", 64).to_string()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    let (status, body) = post(&server, "/v1/mirror", "k", exchange("at-65", 65).to_string()).await;
    assert_eq!(status, 400, "{body}");
    let reason = body["rejected"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("65 levels deep") && reason.contains("at most 64"), "{body}");
    let listed: serde_json::Value = server
        .http
        .get(format!("{}/api/exchanges", server.url))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["unreadable"], 0, "{listed}");
    assert_eq!(listed["exchanges"].as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn over_capacity_answers_503_with_retry_after_at_once() {
    let server = TestServer::start(Config {
        max_concurrent_ingest: 1,
        sources: vec![SourceConfig::with_key("prod", "k")],
        ..Config::default()
    })
    .await;
    // A delivery whose body trickles in holds the only slot.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let slow = server
        .http
        .post(format!("{}/v1/mirror", server.url))
        .bearer_auth("k")
        .body(reqwest::Body::wrap_stream(rx))
        .send();
    let slow = tokio::spawn(slow);
    tx.unbounded_send(Ok(b"[".to_vec())).expect("send");
    // Once the trickling delivery holds the slot, the next one is turned away at once.
    let busy = turned_away(&server, "k").await;
    assert_eq!(busy.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    tx.unbounded_send(Ok(format!("{}]", item(2, "hi")).into_bytes())).expect("send");
    drop(tx);
    let done = slow.await.expect("join").expect("send");
    assert_eq!(done.status().as_u16(), 202);
}

/// With several sources, one source holds at most half the ingest slots: its deliveries past
/// that share get 503 with `Retry-After` at once while another source's still get 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_take_the_other_s_share() {
    let config = Config {
        sources: vec![SourceConfig::with_key("busy", "k-busy"), SourceConfig::with_key("quiet", "k-quiet")],
        max_concurrent_ingest: 4,
        ..Config::default()
    };
    let server = TestServer::start(config).await;
    // Two bodies that never finish hold the busy source's two places.
    let _held = [
        start_slow_body(&server.url, "/v1/mirror", Some("k-busy")).await,
        start_slow_body(&server.url, "/v1/mirror", Some("k-busy")).await,
    ];
    let busy = turned_away(&server, "k-busy").await;
    assert_eq!(busy.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    for i in 0..3 {
        let (status, body) = post(&server, "/v1/mirror", "k-quiet", item(10 + i, "hello").to_string()).await;
        assert_eq!(status, 202, "the quiet source's delivery {i}: {body}");
    }
}

/// Sends a request's head and the first bytes of a body that never completes.
async fn start_slow_body(url: &str, path: &str, auth: Option<&str>) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = auth.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: 100000\r\n\r\n{{\"id\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

async fn status_line(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
}

/// 64 clients without a key trickling bodies take no slot: they are refused from their headers,
/// and a real gateway's deliveries keep getting 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_unauthenticated_bodies_cannot_jam_the_door() {
    let config = Config {
        sources: vec![SourceConfig::with_key("prod", "k")],
        max_concurrent_ingest: 4,
        ..Config::default()
    };
    let server = TestServer::start(config).await;
    let mut jammers = Vec::new();
    for _ in 0..64 {
        jammers.push(start_slow_body(&server.url, "/v1/mirror", None).await);
    }
    for i in 0..10 {
        let (status, body) = post(&server, "/v1/mirror", "k", item(100 + i, "hello").to_string()).await;
        assert_eq!(status, 202, "delivery {i} while 64 jammers are connected: {body}");
    }
    let line = status_line(&mut jammers[0]).await;
    assert!(line.contains("401"), "{line}");
}

/// A key holder whose body stalls gets 408 at the deadline, and frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_at_the_deadline() {
    let config = Config {
        sources: vec![SourceConfig::with_key("prod", "k")],
        max_concurrent_ingest: 1,
        ingest_body_timeout_secs: 1,
        ..Config::default()
    };
    let server = TestServer::start(config).await;
    let started = std::time::Instant::now();
    let mut slow = start_slow_body(&server.url, "/v1/mirror", Some("k")).await;
    let line = status_line(&mut slow).await;
    assert!(line.contains("408"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Its slot is free again: the only slot serves the next delivery.
    let (status, body) = post(&server, "/v1/mirror", "k", item(1, "after").to_string()).await;
    assert_eq!(status, 202, "{body}");
}

/// A slowloris (headers never finished) is disconnected at the header timeout; connections
/// past the cap get 503 at once and `/healthz` answers again as soon as one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_and_connections_are_capped() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let config = Config { header_read_timeout_secs: 1, max_connections: 4, ..Config::default() };
    let server = TestServer::start(config).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    let started = std::time::Instant::now();
    let mut loris = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    loris.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("write");
    let mut buf = [0u8; 256];
    let read =
        tokio::time::timeout(Duration::from_secs(5), loris.read(&mut buf)).await.expect("closed in time");
    // Closed (0 bytes, a reset, or hyper's 408) well before 5 s.
    let closed =
        read.as_ref().map_or(true, |n| *n == 0 || String::from_utf8_lossy(&buf[..*n]).contains("408"));
    assert!(closed, "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());

    // Four idle connections take the four places; the fifth is told 503 and closed.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("Retry-After: 1"),
        "the connection cap's 503 says when to come back: {}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Idle connections are cut at the header timeout too, freeing their places.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let health = server.http.get(format!("{}/healthz", server.url)).send().await.expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
}

/// Every ingest route, whatever its format, holds a 16 MB body in bounded memory: a body of
/// tiny items (more values than `max_body_values`) gets 413 before anything is decoded, and a
/// 16 MB body of many items within the limit is decoded item by item. After all of them — each
/// route in turn, then six at once — the serve process's peak resident memory is under the
/// bounds the README states (before the value limit, one such body took 470–600 MB on the OTLP
/// and Kong routes, six about 1 GB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ingest_route_holds_a_16_mb_many_item_body_in_bounded_memory() {
    const BODY: usize = 16 * 1024 * 1024 - 1024;
    // The README's bounds: one body at a time, and six at once.
    const ONE_AT_A_TIME_MB: u64 = 200;
    const SIX_AT_ONCE_MB: u64 = 350;
    let mut dir = crate::common::TempDir::new("memory");
    let config = Config {
        database_url: dir.database_url(),
        sources: vec![SourceConfig::with_key("prod", "k")],
        ..Config::default()
    };
    let path = crate::common::write_config(&dir, &config);
    let serve = crate::common::Process::start(&path, &["serve", "--bind", "127.0.0.1:0", "--no-workers"]);
    let url = serve.url().to_string();
    let http = evaltap_providers::http_client(Duration::from_secs(120)).expect("client");

    // JSON: a list of ~500-byte items (5 values each), and a list of empty objects.
    let filler = "x".repeat(480);
    let many = |open: &str, item: &str, close: &str| {
        let mut body = String::with_capacity(BODY);
        body.push_str(open);
        while body.len() + item.len() + close.len() + 1 < BODY {
            body.push_str(item);
            body.push(',');
        }
        body.push_str(item);
        body.push_str(close);
        body
    };
    let items = many("[", &format!(r#"{{"id":"r","note":"{filler}"}}"#), "]");
    let tiny = many("[", "{}", "]");
    // OTLP: spans of ~900 bytes (fewer than the 20,000 spans a body may carry).
    let span_filler = "x".repeat(900);
    let spans = many(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":["#,
        &format!(r#"{{"name":"{span_filler}"}}"#),
        "]}]}]}",
    );
    let tiny_spans = many(r#"{"resourceSpans":[{"scopeSpans":[{"spans":["#, "{}", "]}]}]}");
    // As many empty spans as the value limit allows: refused for their number.
    let dense_spans = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}{{}}]}}]}}]}}"#,
        "{},".repeat(config.max_body_values / 2 - 10)
    );
    // OTLP protobuf: the same spans, and empty ones (2 bytes each).
    let field = |number: u64, bytes: &[u8]| {
        let mut out = Vec::new();
        let mut varint = |mut n: u64| loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        };
        varint(number << 3 | 2);
        varint(bytes.len() as u64);
        out.extend_from_slice(bytes);
        out
    };
    let wrap = |span: &[u8]| {
        let mut spans = Vec::with_capacity(BODY);
        let one = field(2, span);
        while spans.len() + one.len() + 16 < BODY {
            spans.extend_from_slice(&one);
        }
        field(1, &field(2, &spans))
    };
    let proto_spans = wrap(&field(5, span_filler.as_bytes()));
    let proto_tiny = wrap(&[]);

    let post = |path: String, body: Vec<u8>, protobuf: bool| {
        let request = http.post(format!("{url}{path}")).bearer_auth("k").body(body);
        let request =
            if protobuf { request.header("content-type", "application/x-protobuf") } else { request };
        async move {
            let reply = request.send().await.expect("send");
            (reply.status().as_u16(), reply.text().await.unwrap_or_default())
        }
    };
    let mut routes: Vec<(String, &String, &String)> = Vec::new();
    for format in ["", "/litellm", "/portkey", "/helicone", "/kong", "/cloudflare"] {
        routes.push((format!("/v1/mirror{format}"), &items, &tiny));
    }
    for path in ["/v1/mirror/openrouter", "/v1/mirror/otlp", "/v1/traces"] {
        routes.push((path.to_string(), &spans, &tiny_spans));
    }
    for (path, within, over) in routes {
        let (status, reply) = post(path.clone(), over.clone().into_bytes(), false).await;
        assert_eq!(status, 413, "{path}: {reply}");
        assert!(reply.contains("values"), "{path}: {reply}");
        let (status, reply) = post(path.clone(), within.clone().into_bytes(), false).await;
        assert!(status < 500 && status != 413, "{path}: {status} {}", &reply[..reply.len().min(300)]);
    }
    let (status, reply) = post("/v1/mirror/otlp".into(), dense_spans.into_bytes(), false).await;
    assert_eq!(status, 413, "dense spans: {reply}");
    assert!(reply.contains("more than 20000 spans"), "{reply}");
    let (status, reply) = post("/v1/traces".into(), proto_tiny, true).await;
    assert_eq!(status, 413, "protobuf: {reply}");
    let (status, reply) = post("/v1/traces".into(), proto_spans.clone(), true).await;
    assert!(status < 500 && status != 413, "protobuf: {status} {reply}");
    let one_at_a_time_mb = serve.peak_resident_bytes() / (1024 * 1024);
    eprintln!("serve peak resident memory, one body at a time: {one_at_a_time_mb} MB");
    assert!(one_at_a_time_mb < ONE_AT_A_TIME_MB, "peak resident memory of serve {one_at_a_time_mb} MB");
    // Six at once, the heaviest format.
    let at_once: Vec<_> = (0..6)
        .map(|i| {
            let (path, body, protobuf) = if i % 2 == 0 {
                ("/v1/mirror/otlp".to_string(), spans.clone().into_bytes(), false)
            } else {
                ("/v1/traces".to_string(), proto_spans.clone(), true)
            };
            tokio::spawn(post(path, body, protobuf))
        })
        .collect();
    for reply in at_once {
        let (status, reply) = reply.await.expect("client");
        assert!(status < 500 || status == 503, "{status} {reply}");
    }
    let peak_mb = serve.peak_resident_bytes() / (1024 * 1024);
    eprintln!("serve peak resident memory: {peak_mb} MB");
    assert!(peak_mb < SIX_AT_ONCE_MB, "peak resident memory of serve {peak_mb} MB");
}
