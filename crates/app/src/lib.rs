//! The use cases behind every edge: the CLI parses and prints around them, the HTTP API maps
//! them to routes, the drift scheduler starts golden runs through them. See the README.

pub mod calibrate;
pub mod gate;
pub mod golden;
pub mod guards;
pub mod recommend;
pub mod schedules;
pub mod stats_csv;

use std::future::Future;
use std::time::Duration;

use evaltap_core::Config;
use evaltap_judge::Rubrics;
use evaltap_store::{Experiment, Progress, Store, StoreError};
use evaltap_worker::{Queue, Services};

/// Why a use case failed. The edges read the kind: `Invalid` is the caller's to fix (HTTP
/// 400), `NotFound` (a usage error at the command line, HTTP 404), `Conflict` (409); the rest
/// are failures below (HTTP 500).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The request cannot be carried out as given.
    #[error("{0}")]
    Invalid(String),
    /// Something it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It would clash with what exists.
    #[error("{0}")]
    Conflict(String),
    /// An experiment stopped making progress.
    #[error("{0}")]
    Stalled(String),
    /// A dataset file failed.
    #[error(transparent)]
    Golden(evaltap_golden::GoldenError),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
    /// The queue or a job's data failed.
    #[error(transparent)]
    Worker(#[from] evaltap_worker::WorkerError),
    /// The drift scheduler failed.
    #[error(transparent)]
    Drift(evaltap_drift::DriftError),
    /// Opening the application failed.
    #[error("{context}")]
    Open {
        /// What was being opened.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(msg) => AppError::NotFound(msg),
            StoreError::Conflict(msg) => AppError::Conflict(msg),
            other => AppError::Store(other),
        }
    }
}

impl From<evaltap_worker::CreateError> for AppError {
    fn from(err: evaltap_worker::CreateError) -> Self {
        match err {
            evaltap_worker::CreateError::Invalid(msg) => AppError::Invalid(msg),
            evaltap_worker::CreateError::Worker(err) => AppError::Worker(err),
            other => AppError::Invalid(other.to_string()),
        }
    }
}

impl From<evaltap_drift::DriftError> for AppError {
    fn from(err: evaltap_drift::DriftError) -> Self {
        match err {
            evaltap_drift::DriftError::Invalid(msg) => AppError::Invalid(msg),
            evaltap_drift::DriftError::Store(err) => err.into(),
            other => AppError::Drift(other),
        }
    }
}

impl From<evaltap_golden::GoldenError> for AppError {
    fn from(err: evaltap_golden::GoldenError) -> Self {
        match err {
            evaltap_golden::GoldenError::Missing(msg) => AppError::NotFound(msg),
            other => AppError::Golden(other),
        }
    }
}

impl From<evaltap_golden::CheckError> for AppError {
    fn from(err: evaltap_golden::CheckError) -> Self {
        AppError::Invalid(err.to_string())
    }
}

/// What a use case reads and writes: the configuration, the database and the rubrics. Cheap to
/// clone (the store is a pool).
#[derive(Clone)]
pub struct Context {
    /// The configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Loaded rubrics.
    pub rubrics: Rubrics,
}

impl Context {
    /// The drift scheduler's context for adding schedules and guards: adding delivers nothing,
    /// so it has no HTTP client of its own (the scheduler's passes use theirs).
    pub(crate) fn drift_for_changes(&self) -> evaltap_drift::DriftContext {
        evaltap_drift::DriftContext {
            config: self.config.clone(),
            config_path: None,
            store: self.store.clone(),
            rubrics: self.rubrics.clone(),
            http: Default::default(),
        }
    }
}

/// The opened application: store, queue, rubrics and job services for one configuration.
#[derive(Clone)]
pub struct App {
    /// The configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The job queue (same database).
    pub queue: Queue,
    /// Loaded rubrics.
    pub rubrics: Rubrics,
    /// What jobs use.
    pub services: Services,
}

fn opening<E: std::error::Error + Send + Sync + 'static>(context: String) -> impl FnOnce(E) -> AppError {
    move |source| AppError::Open { context, source: Box::new(source) }
}

impl App {
    /// Opens the database (migrating it), the queue and the rubrics of `config`.
    pub async fn open(config: Config) -> Result<App, AppError> {
        let store = Store::connect(&config.database_url)
            .await
            .map_err(opening(format!("opening database {}", config.database_url)))?;
        let queue = evaltap_worker::queue::open(&store, &config.worker)
            .await
            .map_err(opening("setting up the job queue".into()))?;
        let rubrics = Rubrics::load(&config.rubrics_dir)
            .map_err(opening(format!("loading rubrics from {}", config.rubrics_dir.display())))?;
        // A template that parses but cannot render would fail every judge job: say so now.
        let problems = rubrics.check();
        if !problems.is_empty() {
            return Err(AppError::Invalid(format!(
                "broken rubric(s) in {} (run `evaltap rubric check`):\n{}",
                config.rubrics_dir.display(),
                problems.join("\n")
            )));
        }
        let services = Services::new(&config, store.clone(), rubrics.clone())
            .map_err(opening("building model clients".into()))?;
        Ok(App { config, store, queue, rubrics, services })
    }

    /// What use cases work with.
    pub fn context(&self) -> Context {
        Context { config: self.config.clone(), store: self.store.clone(), rubrics: self.rubrics.clone() }
    }

    /// Re-enqueues the missing work of every unfinished experiment (after a crash or restart);
    /// returns how many jobs were enqueued.
    pub async fn resume_unfinished(&self) -> Result<usize, AppError> {
        let mut enqueued = 0;
        for experiment in self.store.experiments().await? {
            if !self.progress(&experiment).await?.is_done() {
                enqueued += evaltap_worker::enqueue_missing(&self.store, &experiment).await?;
            }
        }
        Ok(enqueued)
    }

    /// How far an experiment has got.
    pub async fn progress(&self, experiment: &Experiment) -> Result<Progress, AppError> {
        Ok(self.store.experiment_progress(experiment).await?)
    }

    /// What the drift scheduler works with.
    pub fn drift_context(&self) -> Result<evaltap_drift::DriftContext, AppError> {
        Ok(evaltap_drift::DriftContext {
            config: self.config.clone(),
            config_path: None,
            store: self.store.clone(),
            rubrics: self.rubrics.clone(),
            http: evaltap_providers::http_client(Duration::from_secs(30))
                .map_err(opening("building the alert client".into()))?,
        })
    }

    /// Runs a worker with `concurrency` jobs in flight until `shutdown`.
    pub async fn run_worker(
        &self,
        concurrency: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        evaltap_worker::run_worker(self.services.clone(), self.queue.clone(), concurrency, shutdown).await?;
        Ok(())
    }

    /// Runs a worker in this process until `experiment` is done, calling `on_progress` as work
    /// lands, then stops it.
    pub async fn run_to_done(
        &self,
        experiment: &Experiment,
        concurrency: usize,
        on_progress: impl FnMut(&Progress),
    ) -> Result<Progress, AppError> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker_app = self.clone();
        let worker = tokio::spawn(async move {
            worker_app
                .run_worker(concurrency, async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        let waited = self.wait_done(experiment, Duration::from_secs(300), on_progress).await;
        let _ = stop_tx.send(());
        worker.await.map_err(opening("the worker task".into()))??;
        waited
    }

    /// Waits until `experiment` is done, calling `on_progress` as work lands. Fails if nothing
    /// moves for `stall`.
    pub async fn wait_done(
        &self,
        experiment: &Experiment,
        stall: Duration,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<Progress, AppError> {
        let mut last = (0, tokio::time::Instant::now());
        loop {
            let progress = self.progress(experiment).await?;
            on_progress(&progress);
            if progress.is_done() {
                return Ok(progress);
            }
            // Calls out in a provider's batch wait for it, not for a stalled endpoint.
            if progress.completed() != last.0 || self.store.calls_out(&experiment.id, None).await? > 0 {
                last = (progress.completed(), tokio::time::Instant::now());
            } else if last.1.elapsed() > stall {
                return Err(AppError::Stalled(format!(
                    "experiment `{}` made no progress for {}s ({}/{} units done); are the model endpoints up?",
                    experiment.spec.name,
                    stall.as_secs(),
                    progress.completed(),
                    progress.total()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads `path`, or the defaults when `path` is the default name and does not exist.
pub fn load_config(path: &std::path::Path, explicit: bool) -> Result<Config, evaltap_core::ConfigError> {
    if !explicit && !path.exists() {
        return Ok(Config::default());
    }
    Config::load(path)
}
