//! Who may use the API and the dashboard: bearer tokens with a role, held only as SHA-256. The
//! dashboard's login form opens a server-side session instead of handing the token back: the
//! HttpOnly cookie holds a random session id (its hash is stored, with the token's hash and an
//! expiry), and signing out ends it. Without tokens the server refuses every non-ingest route,
//! unless it is bound to loopback and the configuration explicitly allows unauthenticated use.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use evaltap_core::{AuthConfig, Role};
use serde::Deserialize;

use crate::AppState;
use crate::sources::key_hash;

/// The cookie the login form sets: a session id, never the token.
pub const COOKIE: &str = "evaltap_session";

/// How long a dashboard session lasts.
pub const SESSION_SECS: i64 = 12 * 60 * 60;

/// Tokens by hash, and whether the server is open.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Arc<HashMap<String, (Role, String)>>,
    open: bool,
}

impl Auth {
    /// Tokens from `config`; `open` only if allowed and `loopback`.
    pub fn new(config: &AuthConfig, loopback: bool) -> Auth {
        let mut tokens = HashMap::new();
        for t in &config.tokens {
            let hash = match (&t.sha256, &t.token_env) {
                (Some(h), _) => Some(h.trim().to_ascii_lowercase()),
                (None, Some(var)) => std::env::var(var).ok().filter(|v| !v.is_empty()).map(|v| key_hash(&v)),
                (None, None) => None,
            };
            match hash {
                Some(h) => {
                    tokens.insert(h, (t.role, t.name.clone()));
                }
                None => {
                    tracing::warn!(token = %t.name, "token has no sha256 and its token_env is not set: ignored")
                }
            }
        }
        if config.allow_unauthenticated && !loopback {
            tracing::warn!("allow_unauthenticated is ignored: the server is not bound to loopback");
        }
        Auth { tokens: Arc::new(tokens), open: config.allow_unauthenticated && loopback }
    }

    /// Whether anyone may use the server without a token (loopback, by configuration): then
    /// there is no signing in or out.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The role of a presented token.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        self.role_of_hash(&key_hash(token))
    }

    fn role_of_hash(&self, token_sha256: &str) -> Option<Role> {
        self.tokens.get(token_sha256).map(|(role, _)| *role)
    }

    /// The role of a request: its bearer token, else its session cookie's token (while the
    /// session lasts and the token is still configured).
    async fn role_of_request(&self, store: &evaltap_store::Store, headers: &HeaderMap) -> Option<Role> {
        if self.open {
            return Some(Role::Admin);
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        if let Some(token) = bearer {
            return self.role_of(token);
        }
        let session = session_cookie(headers)?;
        match store.session_token(&key_hash(session), now_ms()).await {
            Ok(Some(token_sha256)) => self.role_of_hash(&token_sha256),
            Ok(None) => None,
            Err(err) => {
                tracing::error!(%err, "reading a dashboard session");
                None
            }
        }
    }
}

/// The session id in the request's cookies.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v.trim())
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn refuse(api: bool, status: StatusCode, message: &str, path: &str) -> Response {
    if api || status == StatusCode::FORBIDDEN {
        return (status, axum::Json(serde_json::json!({"error": message}))).into_response();
    }
    let next: String = url_escape(path);
    Redirect::to(&format!("/login?next={next}")).into_response()
}

fn url_escape(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn require(state: &AppState, needed: Role, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let api = path.starts_with("/api/");
    match state.auth.role_of_request(&state.store, request.headers()).await {
        Some(role) if role >= needed => next.run(request).await,
        Some(_) => refuse(api, StatusCode::FORBIDDEN, "this token is read-only", &path),
        None => refuse(
            api,
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer <token>`",
            &path,
        ),
    }
}

/// Middleware: an admin token for writes (POST, PUT, DELETE), any token for reads.
pub(crate) async fn require_admin_for_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let needed = if request.method() == axum::http::Method::GET { Role::Read } else { Role::Admin };
    require(&state, needed, request, next).await
}

#[derive(Deserialize)]
pub(crate) struct NextPage {
    next: Option<String>,
}

/// A `next` that stays on this server: a path starting with one `/`, with no backslash, no
/// whitespace and no control character anywhere (browsers drop tabs and newlines from a
/// `Location`, so `/\t/evil.example/` would read as `//evil.example/`); anything else is `/`.
fn local(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.chars().any(|c| c == '\\' || c.is_control() || c.is_whitespace()) =>
        {
            n
        }
        _ => "/",
    }
}

/// A `next` with a line break is an attempt at a header injection: refused as a bad request.
fn refuse_line_breaks(next: Option<&str>) -> Option<Response> {
    next.filter(|n| n.contains(['\r', '\n'])).map(|_| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "`next` must not contain a line break"})),
        )
            .into_response()
    })
}

fn login_page(next: &str, error: Option<&str>) -> Html<String> {
    let escape =
        |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in · evaltap</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto}}input{{width:100%;padding:.5rem;margin:.5rem 0}}</style>\
         </head><body><h1>evaltap</h1>{}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>API token<input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>\
         <p>Create one with <code>evaltap tokens add --name you --role read</code>.</p></body></html>",
        error.map(|e| format!("<p style=\"color:#9b1c1c\">{}</p>", escape(e))).unwrap_or_default(),
        escape(next)
    ))
}

/// `GET /login`.
pub(crate) async fn login_form(Query(q): Query<NextPage>) -> Response {
    if let Some(refused) = refuse_line_breaks(q.next.as_deref()) {
        return refused;
    }
    login_page(local(q.next.as_deref()), None).into_response()
}

#[derive(Deserialize)]
pub(crate) struct Login {
    token: String,
    next: Option<String>,
}

/// `POST /login`: a valid token opens a session; the browser gets its random id as an
/// HttpOnly, SameSite=Strict cookie that lasts as long as the session.
pub(crate) async fn login(State(state): State<AppState>, Form(form): Form<Login>) -> Response {
    if let Some(refused) = refuse_line_breaks(form.next.as_deref()) {
        return refused;
    }
    let next = local(form.next.as_deref()).to_string();
    let token = form.token.trim();
    if state.auth.role_of(token).is_none() {
        return (StatusCode::UNAUTHORIZED, login_page(&next, Some("That token is not valid.")))
            .into_response();
    }
    let session = new_session_id();
    let now = now_ms();
    if let Err(err) =
        state.store.open_session(&key_hash(&session), &key_hash(token), now, now + SESSION_SECS * 1000).await
    {
        tracing::error!(%err, "opening a dashboard session");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            login_page(&next, Some("Signing in failed; see the server log.")),
        )
            .into_response();
    }
    // Over HTTPS (as `public_url` says people reach it) the cookie never travels in clear.
    let secure = if state.config.public_url.as_deref().is_some_and(|u| u.starts_with("https://")) {
        "; Secure"
    } else {
        ""
    };
    let cookie =
        format!("{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_SECS}{secure}");
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

/// `POST /logout`: ends the session (on the server, not only in this browser) and clears the
/// cookie.
pub(crate) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(session) = session_cookie(&headers)
        && let Err(err) = state.store.close_session(&key_hash(session)).await
    {
        tracing::error!(%err, "ending a dashboard session");
        return (StatusCode::INTERNAL_SERVER_ERROR, "signing out failed; see the server log").into_response();
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

/// 32 random bytes, hex: from the thread's generator, a CSPRNG seeded by the operating system.
fn new_session_id() -> String {
    use rand::RngExt as _;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
