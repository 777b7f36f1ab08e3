//! One place that opens everything a command needs.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use evaltap_core::Config;
use evaltap_judge::Rubrics;
use evaltap_server::AppState;
use evaltap_store::{Experiment, Progress, Store};
use evaltap_worker::{Queue, Services};

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

impl App {
    /// Opens the database (migrating it), the queue and the rubrics of `config`.
    pub async fn open(config: Config) -> anyhow::Result<App> {
        let store = Store::connect(&config.database_url)
            .await
            .with_context(|| format!("opening database {}", config.database_url))?;
        let queue =
            evaltap_worker::queue::open(&store, &config.worker).await.context("setting up the job queue")?;
        let rubrics = Rubrics::load(&config.rubrics_dir)
            .with_context(|| format!("loading rubrics from {}", config.rubrics_dir.display()))?;
        // A template that parses but cannot render would fail every judge job: say so now.
        let problems = rubrics.check();
        if !problems.is_empty() {
            anyhow::bail!(
                "broken rubric(s) in {} (run `evaltap rubric check`):\n{}",
                config.rubrics_dir.display(),
                problems.join("\n")
            );
        }
        let services =
            Services::new(&config, store.clone(), rubrics.clone()).context("building model clients")?;
        Ok(App { config, store, queue, rubrics, services })
    }

    /// Re-enqueues the missing work of every unfinished experiment (after a crash or restart);
    /// returns how many jobs were enqueued.
    pub async fn resume_unfinished(&self) -> anyhow::Result<usize> {
        let mut enqueued = 0;
        for experiment in self.store.experiments().await? {
            if !self.progress(&experiment).await?.is_done() {
                enqueued += evaltap_worker::enqueue_missing(&self.store, &experiment).await?;
            }
        }
        Ok(enqueued)
    }

    /// How far an experiment has got.
    pub async fn progress(&self, experiment: &Experiment) -> anyhow::Result<Progress> {
        Ok(self.store.experiment_progress(experiment).await?)
    }

    /// What the drift scheduler works with.
    pub fn drift_context(&self) -> anyhow::Result<evaltap_drift::DriftContext> {
        Ok(evaltap_drift::DriftContext {
            config: self.config.clone(),
            config_path: None,
            store: self.store.clone(),
            rubrics: self.rubrics.clone(),
            http: evaltap_providers::http_client(Duration::from_secs(30))?,
        })
    }

    /// HTTP server state.
    pub fn server_state(&self) -> AppState {
        AppState::new(self.config.clone(), self.store.clone(), self.rubrics.clone())
    }

    /// Runs a worker with `concurrency` jobs in flight until `shutdown`.
    pub async fn run_worker(
        &self,
        concurrency: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        evaltap_worker::run_worker(self.services.clone(), self.queue.clone(), concurrency, shutdown).await?;
        Ok(())
    }

    /// Runs a worker in this process until `experiment` is done (a progress bar on stderr unless
    /// `quiet`), then stops it.
    pub async fn run_to_done(
        &self,
        experiment: &Experiment,
        concurrency: usize,
        quiet: bool,
    ) -> anyhow::Result<Progress> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker_app = self.clone();
        let worker = tokio::spawn(async move {
            worker_app
                .run_worker(concurrency, async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        let bar = crate::demo::progress_bar(quiet);
        let waited = self
            .wait_done(experiment, Duration::from_secs(300), |p| {
                bar.set_length(p.total());
                bar.set_position(p.completed());
            })
            .await;
        bar.finish_and_clear();
        let _ = stop_tx.send(());
        worker.await.context("worker task")??;
        waited
    }

    /// Waits until `experiment` is done, calling `on_progress` as work lands. Fails if nothing
    /// moves for `stall`.
    pub async fn wait_done(
        &self,
        experiment: &Experiment,
        stall: Duration,
        mut on_progress: impl FnMut(&Progress),
    ) -> anyhow::Result<Progress> {
        let mut last = (0, tokio::time::Instant::now());
        loop {
            let progress = self.progress(experiment).await?;
            on_progress(&progress);
            if progress.is_done() {
                return Ok(progress);
            }
            if progress.completed() != last.0 {
                last = (progress.completed(), tokio::time::Instant::now());
            } else if last.1.elapsed() > stall {
                anyhow::bail!(
                    "experiment `{}` made no progress for {}s ({}/{} units done); are the model endpoints up?",
                    experiment.spec.name,
                    stall.as_secs(),
                    progress.completed(),
                    progress.total()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads `path`, or the defaults when `path` is the default name and does not exist.
pub fn load_config(path: &std::path::Path, explicit: bool) -> anyhow::Result<Config> {
    if !explicit && !path.exists() {
        return Ok(Config::default());
    }
    Ok(Config::load(path)?)
}
