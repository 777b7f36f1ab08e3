//! Safe to expose: every non-ingest route needs a token over real HTTP, read-only tokens cannot
//! spend money, the dashboard signs in with a cookie, the tee proxy needs the source key, and
//! unauthenticated use is honoured only on loopback when the configuration asks for it.

use evaltap_core::{AuthConfig, Config, Role, SourceConfig};
use serde_json::json;

use crate::common::{TestServer, token};

const ADMIN: &str = "etk_admin_token_for_tests";
const READER: &str = "etk_read_token_for_tests";

/// `POST /login` with a form body.
async fn sign_in(http: &reqwest::Client, url: &str, form: &str) -> reqwest::Response {
    http.post(format!("{url}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .expect("send")
}

fn config() -> Config {
    Config {
        sources: vec![SourceConfig {
            upstream: Some("http://127.0.0.1:9/v1".into()),
            ..SourceConfig::with_key("app", "src-key")
        }],
        auth: AuthConfig {
            allow_unauthenticated: false,
            tokens: vec![token("ops", Role::Admin, ADMIN), token("ci", Role::Read, READER)],
        },
        ..Config::default()
    }
}

const READ_ROUTES: [&str; 26] = [
    "/",
    "/sources",
    "/spend",
    "/datasets",
    "/datasets/none",
    "/drift",
    "/drift/none",
    "/experiments/none",
    "/experiments/none/examples",
    "/experiments/none/examples/x",
    "/api/spend",
    "/api/spend.csv",
    "/api/experiments/none/chart",
    "/api/experiments/none/projection",
    "/api/experiments/none/examples",
    "/api/experiments/none/examples/x",
    "/api/sources",
    "/api/exchanges",
    "/api/experiments",
    "/api/experiments/none",
    "/api/alerts",
    "/api/experiments/none/gate",
    "/api/datasets",
    "/api/datasets/none",
    "/api/schedules",
    "/api/schedules/none",
];

#[tokio::test]
async fn every_non_ingest_route_needs_a_token_and_read_tokens_cannot_spend() {
    let server = TestServer::start(config()).await;
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    // The API's description holds no data: open, like /healthz.
    for open in ["/openapi.json", "/healthz"] {
        let reply = http.get(format!("{}{open}", server.url)).send().await.expect("send");
        assert_eq!(reply.status().as_u16(), 200, "{open} without a token");
    }
    for route in READ_ROUTES {
        let url = format!("{}{route}", server.url);
        let anonymous = http.get(&url).send().await.expect("send");
        let status = anonymous.status().as_u16();
        if route.starts_with("/api/") {
            assert_eq!(status, 401, "{route} without a token");
        } else {
            // Pages send a person to the login form.
            assert_eq!(status, 303, "{route} without a token");
            let to = anonymous.headers()["location"].to_str().expect("location").to_string();
            assert!(to.starts_with("/login?next=/"), "{to}");
        }
        let wrong = http.get(&url).bearer_auth("not-a-token").send().await.expect("send");
        assert!(matches!(wrong.status().as_u16(), 401 | 303), "{route} with a wrong token");
        let read = http.get(&url).bearer_auth(READER).send().await.expect("send");
        assert!(matches!(read.status().as_u16(), 200 | 404), "{route} with a read token: {}", read.status());
    }
    assert_eq!(
        http.get(format!("{}/healthz", server.url)).send().await.expect("send").status().as_u16(),
        200
    );

    // Creating an experiment calls paid models: admins only, with a size and a budget.
    let create = |token: Option<&'static str>, body: serde_json::Value| {
        let mut request = http.post(format!("{}/api/experiments", server.url)).json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send()
    };
    let body = json!({"name": "x", "candidates": ["none"], "sample_size": 10, "spend_cap_usd": 1.0});
    assert_eq!(create(None, body.clone()).await.expect("send").status().as_u16(), 401);
    assert_eq!(create(Some(READER), body.clone()).await.expect("send").status().as_u16(), 403);
    let no_budget = create(Some(ADMIN), json!({"name": "x", "candidates": ["none"], "sample_size": 10}))
        .await
        .expect("send");
    assert_eq!(no_budget.status().as_u16(), 400);
    assert!(no_budget.text().await.expect("text").contains("spend_cap_usd"));
    let no_size = create(Some(ADMIN), json!({"name": "x", "candidates": ["none"], "spend_cap_usd": null}))
        .await
        .expect("send");
    assert_eq!(no_size.status().as_u16(), 400);
    // An admin with both gets past the door (and meets the configuration's own checks).
    let admitted = create(Some(ADMIN), body).await.expect("send");
    assert_eq!(admitted.status().as_u16(), 400);
    assert!(admitted.text().await.expect("text").contains("no [judge]"));
}

#[tokio::test]
async fn the_dashboard_signs_in_with_a_session_and_signs_out() {
    let server = TestServer::start(config()).await;
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let form = http.get(format!("{}/login?next=/sources", server.url)).send().await.expect("send");
    assert!(form.text().await.expect("html").contains("name=\"token\""));
    let bad = sign_in(&http, &server.url, "token=nope&next=%2Fsources").await;
    assert_eq!(bad.status().as_u16(), 401);
    let good = sign_in(&http, &server.url, &format!("token={READER}&next=%2F%2Fevil.example%2F")).await;
    assert_eq!(good.status().as_u16(), 303);
    assert_eq!(good.headers()["location"], "/", "an off-site next is not followed");
    // Every form of an off-site `next` lands on `/`: a tab or a backslash a browser reads as
    // `//`, a protocol-relative path, an absolute URL. Encoded forms stay encoded (a path here).
    for (next, location) in [
        ("%2F%09%2Fevil.example%2F", "/"),
        ("%2F%5C%2Fevil.example%2F", "/"),
        ("%2F%5Cevil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
        ("%2F%20%2Fevil.example", "/"),
        ("%2F%252F%2Fevil.example", "/%2F/evil.example"),
        ("%2Fsources%3Fpage%3D2", "/sources?page=2"),
    ] {
        let reply = sign_in(&http, &server.url, &format!("token={READER}&next={next}")).await;
        assert_eq!(reply.status().as_u16(), 303, "{next}");
        assert_eq!(reply.headers()["location"], location, "{next}");
    }
    // A line break in `next` is a header injection: a 400 with the API's error shape, never a 500.
    for next in ["%2F%0D%0ASet-Cookie%3A%20x%3Dy", "%2F%0Aevil"] {
        let reply = sign_in(&http, &server.url, &format!("token={READER}&next={next}")).await;
        assert_eq!(reply.status().as_u16(), 400, "{next}");
        let body: serde_json::Value = reply.json().await.expect("json error");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("line break")), "{body}");
        let form = http.get(format!("{}/login?next={next}", server.url)).send().await.expect("send");
        assert_eq!(form.status().as_u16(), 400, "GET {next}");
    }
    let cookie = good.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    // The cookie holds a session id, never the token, and lasts hours, not a month.
    assert!(!cookie.contains(READER), "the token itself is in the cookie: {cookie}");
    assert!(cookie.contains("Max-Age=43200"), "{cookie}");
    let pair = cookie.split(';').next().expect("pair").to_string();
    let page =
        http.get(format!("{}/sources", server.url)).header("cookie", &pair).send().await.expect("send");
    assert_eq!(page.status().as_u16(), 200);
    // Pages carry the security headers: no script at all, no sniffing, no framing.
    let csp = page.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    assert!(page.text().await.expect("html").contains(r#"action="/logout""#), "a way to sign out");
    // A made-up session, or the old token-as-cookie, is nobody.
    for forged in ["evaltap_session=0123456789abcdef".to_string(), format!("evaltap_token={READER}")] {
        let page =
            http.get(format!("{}/sources", server.url)).header("cookie", forged).send().await.expect("send");
        assert_eq!(page.status().as_u16(), 303, "a forged cookie let a person in");
    }
    // Signing out ends the session on the server: the same cookie no longer opens a page.
    let out = http.post(format!("{}/logout", server.url)).header("cookie", &pair).send().await.expect("send");
    assert_eq!(out.status().as_u16(), 303);
    assert!(out.headers()["set-cookie"].to_str().expect("cookie").contains("Max-Age=0"));
    let after =
        http.get(format!("{}/sources", server.url)).header("cookie", &pair).send().await.expect("send");
    assert_eq!(after.status().as_u16(), 303, "the session outlived its sign-out");
}

#[tokio::test]
async fn the_tee_proxy_refuses_calls_without_the_source_key() {
    let server = TestServer::start(config()).await;
    let url = format!("{}/proxy/app/v1/chat/completions", server.url);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let anonymous = server.http.post(&url).bearer_auth("sk-caller").json(&body).send().await.expect("send");
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong =
        server.http.post(&url).header("x-evaltap-key", "other").json(&body).send().await.expect("send");
    assert_eq!(wrong.status().as_u16(), 401);
    // With the key, the call goes on to the (unreachable) upstream: 502 from the proxy.
    let keyed =
        server.http.post(&url).header("x-evaltap-key", "src-key").json(&body).send().await.expect("send");
    assert_eq!(keyed.status().as_u16(), 502);
    assert_eq!(
        server.app.store.count_exchanges().await.expect("count"),
        0,
        "nothing stored from refused calls"
    );
}

#[tokio::test]
async fn unauthenticated_use_is_honoured_on_loopback_only_when_allowed() {
    let open =
        Config { auth: AuthConfig { allow_unauthenticated: true, tokens: vec![] }, ..Config::default() };
    let server = TestServer::start(open.clone()).await;
    let reply = server.http.get(format!("{}/api/experiments", server.url)).send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 200, "loopback and allowed");
    // Bound beyond loopback, the same setting is ignored.
    let store = server.app.store.clone();
    let state = evaltap_server::AppState::new(open, store, server.app.rubrics.clone())
        .bound_to("0.0.0.0:7077".parse().expect("addr"));
    let app = evaltap_server::router(state);
    let response = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::builder()
            .uri("/api/experiments")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn over_https_the_session_cookie_is_secure() {
    let server =
        TestServer::start(Config { public_url: Some("https://evaltap.example.com".into()), ..config() })
            .await;
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let reply = sign_in(&http, &server.url, &format!("token={READER}&next=%2F")).await;
    assert_eq!(reply.status().as_u16(), 303);
    let cookie = reply.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    // The login form carries the security headers too.
    let form = http.get(format!("{}/login", server.url)).send().await.expect("send");
    assert_eq!(form.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn removing_a_token_from_the_configuration_ends_its_sessions() {
    let server = TestServer::start(config()).await;
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let reply = sign_in(&http, &server.url, &format!("token={READER}&next=%2F")).await;
    let cookie = reply.headers()["set-cookie"].to_str().expect("cookie").to_string();
    let pair = cookie.split(';').next().expect("pair").to_string();
    // The same database served by a process whose evaltap.toml no longer has that token.
    let mut without = config();
    without.auth.tokens.retain(|t| t.name != "ci");
    without.database_url = server.app.config.database_url.clone();
    let app = evaltap_app::App::open(without).await.expect("open");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(evaltap_server::serve(listener, evaltap_server::AppState::for_app(&app), async move {
        let _ = stopped.await;
    }));
    let before =
        http.get(format!("{}/sources", server.url)).header("cookie", &pair).send().await.expect("send");
    assert_eq!(before.status().as_u16(), 200, "the session works where the token is configured");
    let after = http.get(format!("{url}/sources")).header("cookie", &pair).send().await.expect("send");
    assert_eq!(after.status().as_u16(), 303, "a session outlived the removal of its token");
}
