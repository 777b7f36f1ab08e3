//! Server-rendered dashboard pages (minijinja, no external assets: machines may be offline).
//! Each page renders the same typed view its JSON endpoint returns.

use axum::extract::State;
use axum::response::Html;
use minijinja::Environment;
use minijinja::value::Serde;
use serde_json::{Value, json};

use crate::error::{ApiPath, ApiQuery};
use crate::views::{self, ExampleQuery, RubricQuery, SpendQuery};
use crate::{ApiError, AppState};

/// `value` escaped as one URL path segment.
pub fn path_segment(value: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

pub(crate) fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    // Dollars with cents, or four significant decimals below a dollar (simulated and cheap
    // models cost fractions of a cent).
    env.add_filter(
        "usd",
        |value: f64| {
            if value.abs() >= 1.0 { format!("${value:.2}") } else { format!("${value:.4}") }
        },
    );
    // A value placed in a URL path as one segment: everything but unreserved characters is
    // escaped, `/` included (minijinja's `urlencode` keeps `/`, which split golden item ids
    // like `arithmetic/3` into two segments and every link 404ed).
    env.add_filter("segment", |value: String| path_segment(&value));
    // "1 item", "2 items"; times to the second.
    env.add_filter("count", |n: u64, noun: String| evaltap_core::words::count(n, &noun));
    env.add_filter("when", |time: String| evaltap_core::words::when(&time));
    for (name, source) in [
        ("layout.html", include_str!("../templates/layout.html")),
        ("index.html", include_str!("../templates/index.html")),
        ("experiment.html", include_str!("../templates/experiment.html")),
        ("examples.html", include_str!("../templates/examples.html")),
        ("example.html", include_str!("../templates/example.html")),
        ("spend.html", include_str!("../templates/spend.html")),
        ("sources.html", include_str!("../templates/sources.html")),
        ("error.html", include_str!("../templates/error.html")),
        ("datasets.html", include_str!("../templates/datasets.html")),
        ("dataset.html", include_str!("../templates/dataset.html")),
        ("schedules.html", include_str!("../templates/schedules.html")),
        ("schedule.html", include_str!("../templates/schedule.html")),
        ("recommendations.html", include_str!("../templates/recommendations.html")),
    ] {
        // The templates are compiled into the binary and covered by tests.
        env.add_template(name, source).expect("dashboard templates are valid");
    }
    env
}

pub(crate) fn render(state: &AppState, name: &str, mut ctx: Value) -> Result<Html<String>, ApiError> {
    let template = state.templates.get_template(name).map_err(|e| ApiError::Internal(e.to_string()))?;
    // The layout offers "Sign out" only where there is signing in.
    ctx["signs_in"] = Value::Bool(!state.auth.is_open());
    template.render(Serde(ctx)).map(Html).map_err(|e| ApiError::Internal(format!("rendering {name}: {e}")))
}

pub(crate) async fn index(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let list = views::experiment_list(&state).await?;
    let experiments: Vec<Value> = list
        .experiments
        .iter()
        .map(|e| {
            json!({"name": e.name, "created_at": e.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                   "candidates": e.candidates, "rubrics": e.rubrics})
        })
        .collect();
    // Open drift alerts first: they are what needs someone.
    let schedules = state.store.schedules().await?;
    let alerts: Vec<Value> = state
        .store
        .alerts()
        .await?
        .into_iter()
        .filter(|a| a.status == "open")
        .map(|a| {
            let schedule = schedules.iter().find(|s| s.id == a.schedule_id).map(|s| s.name.clone());
            json!({"schedule": schedule, "rubric": a.rubric, "opened_at": a.opened_at.to_rfc3339(),
                   "delta": a.details["delta"], "error": a.details["error"]})
        })
        .collect();
    render(&state, "index.html", json!({"experiments": experiments, "alerts": alerts}))
}

pub(crate) async fn experiment(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<RubricQuery>,
) -> Result<Html<String>, ApiError> {
    let experiment = state.store.require_experiment(&name).await?;
    let report = views::report(&state, &experiment).await?;
    let rubric = views::chosen_rubric(&report, query.rubric.as_deref())?;
    let chart = views::chart(&report, &rubric);
    let svg = evaltap_report::chart::render_svg(&chart);
    let projection = views::projection(&state, &experiment, &report).await?;
    let progress = &report.progress;
    let percent =
        |done: u64, of: u64| if of == 0 { 100.0 } else { (done as f64 / of as f64 * 100.0).min(100.0) };
    let cap_percent = report
        .spend
        .cap_usd
        .map(|cap| if cap > 0.0 { (report.spend.total_spent_usd / cap * 100.0).min(100.0) } else { 100.0 });
    render(
        &state,
        "experiment.html",
        json!({
            "baseline_label": report.baseline.describe(),
            "verdicts_rest_on": report.verdicts_rest_on(),
            "report": report,
            "rubric": rubric,
            "rubrics": experiment.spec.rubrics,
            "chart": chart,
            "chart_svg": svg,
            "projection": projection,
            "replays_percent": percent(progress.replays_done, progress.replays_expected),
            "judgments_percent": percent(progress.judgments_done, progress.judgments_expected),
            "cap_percent": cap_percent,
        }),
    )
}

/// The query string of an examples listing at `page`, keeping its filters.
fn examples_query(query: &ExampleQuery, page: usize) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("candidate", &query.candidate),
        ("rubric", &query.rubric),
        ("direction", &query.direction),
        ("tag", &query.tag),
        ("source", &query.source),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            pairs.append_pair(key, v);
        }
    }
    if let Some(per_page) = query.per_page {
        pairs.append_pair("per_page", &per_page.to_string());
    }
    pairs.append_pair("page", &page.to_string());
    pairs.finish()
}

pub(crate) async fn examples(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ExampleQuery>,
) -> Result<Html<String>, ApiError> {
    let experiment = state.store.require_experiment(&name).await?;
    let page = views::examples(&state, &experiment, &query).await?;
    let candidates: Vec<&String> = experiment.spec.compared_candidates().map(|c| &c.name).collect();
    let sources: Vec<&String> = state.config.sources.iter().map(|s| &s.name).collect();
    render(
        &state,
        "examples.html",
        json!({
            "experiment": experiment.spec.name,
            "page": page,
            "query": {"candidate": query.candidate, "rubric": query.rubric, "direction": query.direction,
                      "tag": query.tag, "source": query.source},
            "candidates": candidates,
            "rubrics": experiment.spec.rubrics,
            "sources": sources,
            "previous": (page.page > 1).then(|| examples_query(&query, page.page - 1)),
            "next": (page.page < page.pages).then(|| examples_query(&query, page.page + 1)),
        }),
    )
}

pub(crate) async fn example(
    State(state): State<AppState>,
    ApiPath((name, item_id)): ApiPath<(String, String)>,
) -> Result<Html<String>, ApiError> {
    let detail = crate::api::example_detail(&state, &name, &item_id).await?;
    // Chat content may be a string or a list of parts: show the text either way.
    let messages: Vec<Value> = detail
        .messages
        .as_array()
        .map(|m| {
            m.iter()
                .map(|message| {
                    let content = message.get("content").map(evaltap_core::chat::content_text).unwrap_or_default();
                    json!({"role": message.get("role").and_then(Value::as_str).unwrap_or("?"), "content": content})
                })
                .collect()
        })
        .unwrap_or_default();
    render(&state, "example.html", json!({"detail": detail, "messages": messages}))
}

pub(crate) async fn spend(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SpendQuery>,
) -> Result<Html<String>, ApiError> {
    let view = views::spend(&state, &query).await?;
    render(&state, "spend.html", json!({"view": view}))
}

pub(crate) async fn sources(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let view = views::sources(&state).await?;
    // Bars of the last 24 hours, scaled to the busiest hour of each source.
    let bars: Vec<Value> = view
        .sources
        .iter()
        .map(|s| {
            let peak = s.last_24h.iter().copied().max().unwrap_or(0).max(1) as f64;
            let bars: Vec<Value> = s
                .last_24h
                .iter()
                .zip(&view.hours)
                .enumerate()
                .map(|(i, (n, hour))| {
                    let h = (*n as f64 / peak * 36.0).round();
                    json!({"x": i * 10, "y": 38.0 - h, "h": h, "n": n, "hour": hour.replace('T', " ")})
                })
                .collect();
            json!({"name": s.name, "bars": bars, "total": s.last_24h.iter().sum::<u64>(), "peak": peak as u64,
                   "first_hour": view.hours.first().map(|h| hour_of_day(h)), "last_hour": view.hours.last().map(|h| hour_of_day(h))})
        })
        .collect();
    render(&state, "sources.html", json!({"view": view, "bars": bars}))
}

/// `HH` of a `YYYY-MM-DDTHH` hour.
fn hour_of_day(hour: &str) -> &str {
    hour.rsplit('T').next().unwrap_or(hour)
}

/// Dashboard pages answer errors as a page, not as the API's JSON: a failed page's JSON error
/// body (from a handler or an extractor) becomes `error.html` with the same status and message.
pub(crate) async fn error_pages(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Error bodies are a line of JSON; anything larger is not one of ours.
    let message = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
        Err(_) => "the error could not be read".to_string(),
    };
    let title = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let html = match render(&state, "error.html", json!({"status": title.trim(), "message": message})) {
        Ok(html) => html.0,
        Err(_) => format!("<!doctype html><title>{0}</title><h1>{0}</h1>", title.trim()),
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    (parts, html).into_response()
}

/// What a dashboard page may load and who may frame it: its own styles inline, no script at
/// all, images from itself, forms posting to itself, never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every page (and the login form): a content security policy without
/// inline script, no MIME sniffing, no framing, the referrer kept to this origin.
pub(crate) async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderName, HeaderValue, header};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert::<HeaderName>(name, HeaderValue::from_static(value));
    }
    response
}
