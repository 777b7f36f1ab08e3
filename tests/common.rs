//! Helpers shared by the whole-app tests.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evaltap_app::App;
use evaltap_demo::{demo_config, tee_production_traffic};
use evaltap_report::Report;
use evaltap_sim::{JudgeBehavior, SimConfig, SimServer};
use evaltap_store::{Engine, Experiment};
use evaltap_worker::ExperimentRequest;
use indicatif::ProgressBar;

tokio::task_local! {
    /// The engine the shared suite runs the current test on (SQLite unless a test is one of
    /// the pair [`on_both_engines!`] makes).
    pub static ENGINE: Engine;
}

/// The engine of the running test.
pub fn engine() -> Engine {
    ENGINE.try_with(|e| *e).unwrap_or(Engine::Sqlite)
}

/// Where the shared suite finds PostgreSQL (see `evaltap-testenv`): each test creates its own
/// database there. Only called by tests that checked [`postgres_or_skip`] first.
pub fn postgres_admin_url() -> String {
    match evaltap_testenv::postgres() {
        Ok(postgres) => postgres.admin_url.clone(),
        Err(reason) => panic!("no PostgreSQL for this test: {reason}"),
    }
}

/// Whether the running test may use PostgreSQL: finds (or starts) it once per run; when there is
/// none, records the skip for the end-of-run summary (a failure under `EVALTAP_TEST_REQUIRE`).
pub fn postgres_or_skip() -> bool {
    // Finding it may start a cluster (seconds): not on a runtime thread's time.
    tokio::task::block_in_place(|| evaltap_testenv::postgres_or_skip().is_some())
}

/// Runs `body` on PostgreSQL, or skips it when there is none.
pub async fn on_postgres(body: impl std::future::Future<Output = ()>) {
    if postgres_or_skip() {
        ENGINE.scope(Engine::Postgres, body).await
    }
}

/// Runs an async test body once on SQLite and once on PostgreSQL: `mod NAME { sqlite, postgres }`.
#[macro_export]
macro_rules! on_both_engines {
    ($(#[doc = $doc:literal])* async fn $name:ident() $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body() $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::common::ENGINE.scope(evaltap_store::Engine::Sqlite, body()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::common::on_postgres(body()).await
            }
        }
    };
}

/// A fresh folder (and, on PostgreSQL, a fresh database) for one test, removed when dropped.
pub struct TempDir(pub PathBuf, Option<String>);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("evaltap-test-{label}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir, None)
    }

    pub fn database(&self) -> PathBuf {
        self.0.join("evaltap.db")
    }

    /// A database URL of the running test's engine: the SQLite file in this folder, or a new
    /// PostgreSQL database (dropped with the folder).
    pub fn database_url(&mut self) -> String {
        match engine() {
            Engine::Sqlite => {
                evaltap_testenv::ran_on("SQLite");
                format!("sqlite://{}", self.database().display())
            }
            Engine::Postgres => {
                evaltap_testenv::ran_on("PostgreSQL");
                let (url, name) = admin(|admin_url| async move {
                    evaltap_store::create_scratch_database(&admin_url, "evaltap_test").await
                })
                .unwrap_or_else(|err| {
                    panic!("PostgreSQL at {} did not give a scratch database: {err}", postgres_admin_url())
                });
                self.1 = Some(name);
                url
            }
        }
    }
}

/// Runs an administrative call on PostgreSQL from a thread and runtime of its own (callable
/// from sync code and from `Drop`).
fn admin<T: Send + 'static, F: std::future::Future<Output = evaltap_store::Result<T>>>(
    call: impl FnOnce(String) -> F + Send + 'static,
) -> evaltap_store::Result<T> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(call(postgres_admin_url()))
    })
    .join()
    .expect("admin thread")
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        if let Some(name) = self.1.take() {
            let _ = admin(move |admin_url| async move {
                evaltap_store::drop_scratch_database(&admin_url, &name).await
            });
        }
    }
}

/// Writes `config` as `evaltap.toml` in `dir`, for processes to read.
pub fn write_config(dir: &TempDir, config: &evaltap_core::Config) -> PathBuf {
    let path = dir.0.join("evaltap.toml");
    std::fs::write(&path, toml::to_string(config).expect("config as TOML")).expect("write config");
    path
}

/// The SQLite pool of a store (for the tests that look at SQLite itself).
pub fn sqlite_pool(store: &evaltap_store::Store) -> &sqlx::SqlitePool {
    match store.pool() {
        evaltap_store::Pool::Sqlite(pool) => pool,
        evaltap_store::Pool::Postgres(_) => panic!("this test runs on SQLite only"),
    }
}

/// evaltap serving a configuration on a free port, stopped when dropped.
pub struct TestServer {
    pub app: evaltap_app::App,
    pub url: String,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    pub dir: TempDir,
}

impl TestServer {
    /// Opens `config` (its database replaced by a fresh file) and serves it.
    pub async fn start(mut config: evaltap_core::Config) -> TestServer {
        let mut dir = TempDir::new("server");
        config.database_url = dir.database_url();
        // Tests of the door and the proxy read the API without tokens (loopback only); tests of
        // access control configure tokens.
        if config.auth.tokens.is_empty() {
            config.auth.allow_unauthenticated = true;
        }
        let app = evaltap_app::App::open(config).await.expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(evaltap_server::serve(listener, evaltap_server::AppState::for_app(&app), async move {
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
        auto_checks: true,
        // Most tests count every replay and call; early stopping and the cache have their own
        // (tests/early_stop.rs, tests/cache.rs).
        early_stop: false,
        cache: false,
        early_stop_on: evaltap_store::StopOn::Segments,
    }
}

/// evaltap on a fresh database, with production traffic teed from a simulated upstream whose
/// judge behaves as `judge`.
pub struct Bench {
    pub app: App,
    /// Where the server listens, `http://127.0.0.1:port`.
    pub url: String,
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
        // `EVALTAP_TEST_LOG=evaltap_worker=debug cargo test …` shows what the product logs.
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("EVALTAP_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        Bench::start_on(label, SimConfig { latency_scale: 0.0, judge }, rubrics_dir, exchanges, configure)
            .await
    }

    /// [`Bench::start_with`] with the simulated upstream configured in full.
    pub async fn start_on(
        label: &str,
        sim_config: SimConfig,
        rubrics_dir: Option<&Path>,
        exchanges: usize,
        configure: impl FnOnce(&mut evaltap_core::Config),
    ) -> Bench {
        let mut dir = TempDir::new(label);
        let sim = evaltap_sim::spawn(([127, 0, 0, 1], 0).into(), sim_config).await.expect("sim");
        let mut config = demo_config(&sim.base_url(), dir.database_url());
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
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let mirror = format!("{url}/v1/mirror");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(evaltap_server::serve(listener, evaltap_server::AppState::for_app(&app), async move {
            let _ = stopped.await;
        }));
        let accepted = tee_production_traffic(&sim.base_url(), &mirror, exchanges, 5, &ProgressBar::hidden())
            .await
            .expect("traffic");
        assert_eq!(accepted, exchanges);
        Bench { app, url, sim, dir, stop: Some(stop) }
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

    /// What the simulated upstream answers `request` on `/v1/chat/completions`, as production
    /// would have been answered.
    pub async fn production_call(&self, request: &serde_json::Value) -> serde_json::Value {
        reqwest::Client::new()
            .post(format!("{}/chat/completions", self.sim.base_url()))
            .json(request)
            .send()
            .await
            .expect("production call")
            .json()
            .await
            .expect("json")
    }

    pub async fn create(&self, request: ExperimentRequest) -> Experiment {
        evaltap_worker::create_experiment(&self.app.config, &self.app.rubrics, &self.app.store, request)
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
    task: tokio::task::JoinHandle<Result<(), evaltap_app::AppError>>,
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

/// A golden run of `dataset` through the application's use case, run by a worker in this
/// process to the end; returns its report.
pub async fn golden_run(
    app: &App,
    dataset: &str,
    options: &evaltap_app::golden::GoldenRun,
) -> Result<Report, evaltap_app::AppError> {
    let (experiment, _) = evaltap_app::golden::start_run(&app.context(), dataset, options).await?;
    app.run_to_done(&experiment, 16, |_| {}).await?;
    Ok(evaltap_report::build(&app.store, &experiment).await?)
}

/// Runs a worker of `app` until `experiment` is done; returns its report.
pub async fn run(app: &App, experiment: &Experiment) -> Report {
    let worker = BackgroundWorker::start(app);
    app.wait_done(experiment, Duration::from_secs(60), |_| {}).await.expect("finishes");
    worker.stop().await;
    evaltap_report::build(&app.store, experiment).await.expect("report")
}

/// An `evaltap` process, SIGKILLed when dropped.
pub struct Process {
    pub child: Child,
    address: Option<String>,
}

impl Process {
    /// Starts `evaltap --config CONFIG ARGS…`; for `serve`, waits until it listens.
    pub fn start(config: &Path, args: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_evaltap"))
            .arg("--config")
            .arg(config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start evaltap");
        let stderr = child.stderr.take().expect("stderr");
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("evaltap listening on ") {
                    let _ = address_tx.send(address.trim().to_string());
                }
                if std::env::var_os("EVALTAP_TEST_VERBOSE").is_some() {
                    eprintln!("[evaltap] {line}");
                }
            }
        });
        let address = (args.first() == Some(&"serve"))
            .then(|| address_rx.recv_timeout(Duration::from_secs(60)).expect("serve listens"));
        Process { child, address }
    }

    pub fn url(&self) -> &str {
        self.address.as_deref().expect("a serve process")
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Sends `signal` and waits for a clean exit.
    pub fn stop_with(mut self, signal: &str) {
        self.signal(signal);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "evaltap exited with {status} after SIG{signal}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "evaltap did not stop after SIG{signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// The most memory the process has held resident so far (`VmHWM`), in bytes.
    pub fn peak_resident_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb * 1024
    }
}

/// An API token of `role` admitting `secret` (held, as in evaltap.toml, by its hash).
pub fn token(name: &str, role: evaltap_core::Role, secret: &str) -> evaltap_core::TokenConfig {
    evaltap_core::TokenConfig {
        name: name.into(),
        role,
        sha256: Some(evaltap_server::sources::key_hash(secret)),
        token_env: None,
    }
}
