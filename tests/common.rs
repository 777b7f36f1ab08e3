//! Helpers shared by the whole-app tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use evaltap::app::App;
use evaltap::demo::{demo_config, tee_production_traffic};
use evaltap_report::Report;
use evaltap_sim::{JudgeBehavior, SimConfig, SimServer};
use evaltap_store::Experiment;
use evaltap_worker::ExperimentRequest;
use indicatif::ProgressBar;

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
    pub dir: TempDir,
}

impl TestServer {
    /// Opens `config` (its database replaced by a fresh file) and serves it.
    pub async fn start(mut config: evaltap_core::Config) -> TestServer {
        let dir = TempDir::new("server");
        config.database_url = format!("sqlite://{}", dir.database().display());
        // Tests of the door and the proxy read the API without tokens (loopback only); tests of
        // access control configure tokens.
        if config.auth.tokens.is_empty() {
            config.auth.allow_unauthenticated = true;
        }
        let app = evaltap::app::App::open(config).await.expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(evaltap_server::serve(listener, app.server_state(), async move {
            let _ = stopped.await;
        }));
        let http = evaltap_providers::http_client(std::time::Duration::from_secs(30)).expect("client");
        TestServer { app, url, http, _stop: stop, dir }
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
        dataset: None,
        baseline: None,
        checks: Vec::new(),
    }
}

/// evaltap on a fresh database, with production traffic teed from a simulated upstream whose
/// judge behaves as `judge`.
pub struct Bench {
    pub app: App,
    pub sim: SimServer,
    pub dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Bench {
    pub async fn start(
        label: &str,
        judge: JudgeBehavior,
        rubrics_dir: Option<&Path>,
        exchanges: usize,
    ) -> Bench {
        Bench::start_with(label, judge, rubrics_dir, exchanges, |_| {}).await
    }

    /// [`Bench::start`] with a last word on the configuration.
    pub async fn start_with(
        label: &str,
        judge: JudgeBehavior,
        rubrics_dir: Option<&Path>,
        exchanges: usize,
        configure: impl FnOnce(&mut evaltap_core::Config),
    ) -> Bench {
        let dir = TempDir::new(label);
        let sim = evaltap_sim::spawn(([127, 0, 0, 1], 0).into(), SimConfig { latency_scale: 0.0, judge })
            .await
            .expect("sim");
        let mut config = demo_config(&sim.base_url(), format!("sqlite://{}", dir.database().display()));
        config.rubrics_dir = rubrics_dir.map_or_else(repo_rubrics, Path::to_path_buf);
        // Golden runs compare with the production model itself; each bench has its own datasets.
        let mut large = config.candidates[0].clone();
        large.name = "large".into();
        large.model = "sim-large".into();
        config.candidates.push(large);
        config.datasets_dir = dir.0.join("datasets");
        configure(&mut config);
        let app = App::open(config).await.expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mirror = format!("http://{}/v1/mirror", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(evaltap_server::serve(listener, app.server_state(), async move {
            let _ = stopped.await;
        }));
        let accepted = tee_production_traffic(&sim.base_url(), &mirror, exchanges, 5, &ProgressBar::hidden())
            .await
            .expect("traffic");
        assert_eq!(accepted, exchanges);
        Bench { app, sim, dir, stop: Some(stop) }
    }

    /// Traffic of `exchanges`, one experiment of `candidate` on `rubric` over all of it, run to
    /// the end.
    pub async fn run_one(
        label: &str,
        judge: JudgeBehavior,
        candidate: &str,
        rubric: &str,
        exchanges: usize,
    ) -> (Bench, Experiment, Report) {
        let bench = Bench::start(label, judge, None, exchanges).await;
        let experiment = bench.create(experiment_request(label, candidate, rubric, exchanges)).await;
        let report = run(&bench.app, &experiment).await;
        (bench, experiment, report)
    }

    pub async fn create(&self, request: ExperimentRequest) -> Experiment {
        evaltap_worker::create_experiment(
            &self.app.config,
            &self.app.rubrics,
            &self.app.store,
            &self.app.queue,
            request,
        )
        .await
        .expect("create")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn repo_rubrics() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rubrics")
}

/// A worker of an app running in the background until stopped.
pub struct BackgroundWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl BackgroundWorker {
    /// Starts a worker with 16 jobs in flight.
    pub fn start(app: &App) -> BackgroundWorker {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = app.clone();
        let task = tokio::spawn(async move {
            runner
                .run_worker(16, async move {
                    let _ = stopped.await;
                })
                .await
        });
        BackgroundWorker { stop, task }
    }

    /// Stops it and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("join").expect("worker");
    }
}

/// Runs a worker of `app` until `experiment` is done; returns its report.
pub async fn run(app: &App, experiment: &Experiment) -> Report {
    let worker = BackgroundWorker::start(app);
    app.wait_done(experiment, Duration::from_secs(60), |_| {}).await.expect("finishes");
    worker.stop().await;
    evaltap_report::build(&app.store, experiment).await.expect("report")
}
