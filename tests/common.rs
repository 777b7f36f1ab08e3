//! Helpers shared by the whole-app tests.

use std::path::PathBuf;

/// A fresh folder for one test's database, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("evaltap-test-{label}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn database(&self) -> PathBuf {
        self.0.join("evaltap.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// evaltap serving a configuration on a free port, stopped when dropped.
pub struct TestServer {
    pub app: evaltap::app::App,
    pub url: String,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: TempDir,
}

impl TestServer {
    /// Opens `config` (its database replaced by a fresh file) and serves it.
    pub async fn start(mut config: evaltap_core::Config) -> TestServer {
        let dir = TempDir::new("server");
        config.database_url = format!("sqlite://{}", dir.database().display());
        let app = evaltap::app::App::open(config).await.expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(evaltap_server::serve(listener, app.server_state(), async move {
            let _ = stopped.await;
        }));
        let http = evaltap_providers::http_client(std::time::Duration::from_secs(30)).expect("client");
        TestServer { app, url, http, _stop: stop, _dir: dir }
    }

    /// Stored exchanges of a source (newest first), polling until `count` are there.
    pub async fn wait_for_exchanges(&self, source: &str, count: usize) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let stored = self.app.store.recent_exchanges(Some(source), 1000).await.expect("query");
            if stored.len() >= count {
                return stored.iter().map(|s| serde_json::to_value(s).expect("json")).collect();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {count} exchanges arrived",
                stored.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A one-candidate, one-rubric experiment request over `sample` exchanges.
pub fn experiment_request(
    name: &str,
    candidate: &str,
    rubric: &str,
    sample: usize,
) -> evaltap_worker::ExperimentRequest {
    evaltap_worker::ExperimentRequest {
        name: name.into(),
        candidates: vec![candidate.into()],
        rubrics: vec![rubric.into()],
        sample_size: Some(sample),
        filter: Default::default(),
        margin: None,
        spend_cap_usd: None,
        judge_samples: None,
    }
}
