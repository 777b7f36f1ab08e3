//! The HTTP server: the mirror endpoint gateways send traffic to, the JSON API, and the
//! dashboard. [`router`] builds the whole app from [`AppState`]; `main` and the tests share it.

mod api;
pub mod auth;
mod dashboard;
mod error;
mod golden_api;
mod golden_pages;
mod keeper;
mod mirror;
mod proxy;
mod recommend_api;
mod recommend_pages;
pub mod sources;
mod views;
mod writer;

pub use writer::PROXY_SHED_COUNTER;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use evaltap_core::{AuthConfig, Config};
use evaltap_judge::Rubrics;
use evaltap_store::Store;

pub use api::ApiDoc;
pub use dashboard::path_segment;
pub use error::{ApiError, ErrorBody};

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) rubrics: Rubrics,
    pub(crate) sources: sources::Sources,
    pub(crate) ingest_slots: Arc<tokio::sync::Semaphore>,
    /// Each source's own share of the ingest slots, so one cannot starve the others.
    pub(crate) source_slots: Arc<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
    pub(crate) proxy: proxy::ProxyState,
    pub(crate) writer: writer::Writer,
    pub(crate) templates: Arc<minijinja::Environment<'static>>,
    pub(crate) auth: auth::Auth,
    pub(crate) example_rows: Arc<views::ExampleRowCache>,
}

impl AppState {
    /// State for an opened application: its configuration, store and rubrics.
    pub fn for_app(app: &evaltap_app::App) -> AppState {
        AppState::new(app.config.clone(), app.store.clone(), app.rubrics.clone())
    }

    /// State for `config`; sources without a resolvable key cannot send traffic (and are
    /// logged).
    pub fn new(config: Config, store: Store, rubrics: Rubrics) -> AppState {
        let sources = sources::Sources::new(&config.sources);
        let total = config.max_concurrent_ingest.max(1);
        let ingest_slots = Arc::new(tokio::sync::Semaphore::new(total));
        let per_source = if config.sources.len() > 1 { (total / 2).max(1) } else { total };
        let source_slots = Arc::new(
            config
                .sources
                .iter()
                .map(|s| (s.name.clone(), Arc::new(tokio::sync::Semaphore::new(per_source))))
                .collect(),
        );
        let writer = writer::Writer::start(store.clone());
        let proxy = proxy::ProxyState::start(writer.clone());
        AppState {
            config: Arc::new(config),
            store,
            rubrics,
            sources,
            ingest_slots,
            source_slots,
            proxy,
            writer,
            templates: Arc::new(dashboard::templates()),
            auth: auth::Auth::new(&AuthConfig::default(), false),
            example_rows: Arc::default(),
        }
    }

    /// The same state with access decided for a server bound to `addr`: tokens from the
    /// configuration, open only if allowed and loopback.
    pub fn bound_to(mut self, addr: std::net::SocketAddr) -> AppState {
        self.auth = auth::Auth::new(&self.config.auth, addr.ip().is_loopback());
        self
    }
}

/// The app's routes.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let ingest = Router::new()
        .route("/v1/mirror", post(mirror::native))
        .route("/v1/mirror/{format}", post(mirror::with_format))
        .route("/v1/traces", post(mirror::otlp_traces))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), mirror::admit));
    // Everything that reads or changes what evaltap holds needs a token (admin to change).
    let pages = Router::new()
        .route("/", get(dashboard::index))
        .route("/experiments/{name}", get(dashboard::experiment))
        .route("/experiments/{name}/examples", get(dashboard::examples))
        .route("/experiments/{name}/recommendations", get(recommend_pages::recommendations))
        .route("/experiments/{name}/examples/{item_id}", get(dashboard::example))
        .route("/spend", get(dashboard::spend))
        .route("/sources", get(dashboard::sources))
        .route("/datasets", get(golden_pages::datasets))
        .route("/datasets/{name}", get(golden_pages::dataset))
        .route("/drift", get(golden_pages::schedules))
        .route("/drift/{name}", get(golden_pages::schedule))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), dashboard::error_pages))
        .route_layer(axum::middleware::from_fn(dashboard::security_headers));
    let mut guarded = Router::new().merge(pages);
    for (path, _, handler) in api_routes() {
        guarded = guarded.route(path, handler);
    }
    let guarded = guarded
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_admin_for_writes));
    Router::new()
        .merge(ingest)
        .merge(guarded)
        .route(
            "/login",
            get(auth::login_form)
                .post(auth::login)
                .layer(axum::middleware::from_fn(dashboard::security_headers)),
        )
        .route("/logout", post(auth::logout))
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(api::openapi))
        // Authenticated by the source key in `X-Evaltap-Key`; the caller's own `Authorization`
        // goes to the upstream untouched.
        .route("/proxy/{source}/v1/chat/completions", post(proxy::chat_completions))
        .route("/proxy/{source}/v1/messages", post(proxy::anthropic_messages))
        .route("/proxy/{source}/v1/responses", post(proxy::responses))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The JSON API's routes with their methods: every one is documented in `/openapi.json`.
fn api_routes() -> Vec<(&'static str, &'static [&'static str], axum::routing::MethodRouter<AppState>)> {
    vec![
        ("/api/sources", &["get"], get(api::list_sources)),
        ("/api/exchanges", &["get"], get(api::list_exchanges)),
        ("/api/experiments", &["get", "post"], get(api::list_experiments).post(api::create_experiment)),
        ("/api/experiments/{name}", &["get"], get(api::experiment_report)),
        ("/api/experiments/{name}/chart", &["get"], get(api::experiment_chart)),
        ("/api/experiments/{name}/projection", &["get"], get(api::experiment_projection)),
        ("/api/experiments/{name}/examples", &["get"], get(api::experiment_examples)),
        ("/api/experiments/{name}/examples/{item_id}", &["get"], get(api::experiment_example)),
        ("/api/spend", &["get"], get(api::spend)),
        ("/api/spend.csv", &["get"], get(api::spend_csv)),
        ("/api/alerts", &["get"], get(api::list_alerts)),
        ("/api/experiments/{name}/gate", &["get"], get(golden_api::gate)),
        ("/api/experiments/{name}/segments", &["get"], get(recommend_api::segments)),
        ("/api/experiments/{name}/recommendations", &["get"], get(recommend_api::recommendations)),
        ("/api/datasets", &["get"], get(golden_api::list_datasets)),
        ("/api/datasets/{name}", &["get"], get(golden_api::show_dataset)),
        ("/api/datasets/{name}/items", &["post"], post(golden_api::import_items)),
        ("/api/datasets/{name}/runs", &["post"], post(golden_api::start_run)),
        ("/api/schedules", &["get", "post"], get(golden_api::list_schedules).post(golden_api::add_schedule)),
        (
            "/api/schedules/{name}",
            &["get", "delete"],
            get(golden_api::show_schedule).delete(golden_api::remove_schedule),
        ),
        ("/api/schedules/{name}/pause", &["post"], post(golden_api::pause_schedule)),
        ("/api/schedules/{name}/resume", &["post"], post(golden_api::resume_schedule)),
    ]
}

/// The JSON API's paths and methods as the router serves them (for checking the OpenAPI
/// description against).
pub fn api_paths() -> Vec<(&'static str, &'static [&'static str])> {
    api_routes().into_iter().map(|(path, methods, _)| (path, methods)).collect()
}

/// Serves the app on `listener` until `shutdown` completes, then lets in-flight requests
/// finish (up to 30 s). Connections past `max_connections` get a 503 and are closed; a client
/// that does not finish its headers within `header_read_timeout_secs` (a slowloris, or an idle
/// kept-alive connection) is disconnected. While it serves, each experiment's report is computed
/// and stored in the background once the experiment is done.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tokio::io::AsyncWriteExt as _;

    let state = state.bound_to(listener.local_addr()?);
    let proxy = state.proxy.clone();
    let keeper = tokio::spawn(keeper::keep_reports(state.store.clone()));
    let connections = Arc::new(tokio::sync::Semaphore::new(state.config.max_connections.max(1)));
    let state_header_timeout = state.config.header_read_timeout_secs;
    let service = hyper_util::service::TowerToHyperService::new(router(state));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let header_timeout = std::time::Duration::from_secs(state_header_timeout.max(1));
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Replies go out as headers then body; with Nagle on, the second write waits for the
        // peer's delayed ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
            continue;
        };
        let (builder, service, watcher) = (builder.clone(), service.clone(), graceful.watcher());
        tokio::spawn(async move {
            // A connection that sends nothing is closed at the header timeout too: hyper's
            // timer starts with the first byte of a request.
            let mut first = [0u8; 1];
            let spoke = tokio::time::timeout(header_timeout, stream.peek(&mut first)).await;
            if matches!(spoke, Ok(Ok(n)) if n > 0) {
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(err) = watcher.watch(connection).await {
                    tracing::debug!(%err, "connection ended with an error");
                }
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open 30 s after shutdown began");
    }
    keeper.abort();
    // Exchanges the proxy mirrored up to the last connection are stored before returning.
    proxy.flush().await;
    Ok(())
}
