//! The HTTP server: the mirror endpoint gateways send traffic to, the JSON API, and the
//! dashboard. [`router`] builds the whole app from [`AppState`]; `main` and the tests share it.

mod api;
mod dashboard;
mod error;
mod mirror;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use evaltap_core::Config;
use evaltap_judge::Rubrics;
use evaltap_store::Store;
use evaltap_worker::Queue;

pub use error::ApiError;

/// A source as the mirror endpoint sees it.
#[derive(Debug, Clone)]
pub(crate) struct SourceAuth {
    pub name: String,
    pub sample_rate: f64,
}

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) queue: Queue,
    pub(crate) rubrics: Rubrics,
    pub(crate) sources_by_key: Arc<HashMap<String, SourceAuth>>,
    pub(crate) templates: Arc<minijinja::Environment<'static>>,
}

impl AppState {
    /// State for `config`; sources without a resolvable key cannot send traffic (and are
    /// logged).
    pub fn new(config: Config, store: Store, queue: Queue, rubrics: Rubrics) -> AppState {
        let mut sources_by_key = HashMap::new();
        for source in &config.sources {
            match source.resolve_key() {
                Some(key) => {
                    sources_by_key.insert(
                        key,
                        SourceAuth { name: source.name.clone(), sample_rate: source.sample_rate },
                    );
                }
                None => {
                    tracing::warn!(source = %source.name, "source has no key set; it cannot send traffic")
                }
            }
        }
        AppState {
            config: Arc::new(config),
            store,
            queue,
            rubrics,
            sources_by_key: Arc::new(sources_by_key),
            templates: Arc::new(dashboard::templates()),
        }
    }
}

/// The app's routes.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(dashboard::index))
        .route("/experiments/{name}", get(dashboard::experiment))
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/mirror", post(mirror::native))
        .route("/v1/mirror/{format}", post(mirror::with_format))
        .route("/api/experiments", get(api::list_experiments).post(api::create_experiment))
        .route("/api/experiments/{name}", get(api::experiment_report))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves the app on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Replies go out as headers then body; with Nagle on, the second write waits for the
    // peer's delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
