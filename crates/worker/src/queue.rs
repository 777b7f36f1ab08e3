//! The apalis queue on the same SQLite database as the store.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use apalis::prelude::*;
use apalis_sqlite::{Config as QueueConfig, SqliteStorage};
use evaltap_store::{BASELINE, Experiment, Store};

use crate::jobs::{self, EvalJob};
use crate::{Services, WorkerError};

/// The job queue.
pub type Queue = SqliteStorage<EvalJob>;

/// A stable queue name: apalis defaults to the Rust type path, which a refactor would change,
/// orphaning queued jobs.
pub const QUEUE_NAME: &str = "evaltap.eval";

/// Creates apalis's tables (idempotent) and returns the queue.
pub async fn open(store: &Store) -> Result<Queue, WorkerError> {
    // apalis' own `setup` also runs `PRAGMA synchronous = OFF` on whichever pooled connection
    // it gets, which would let a power loss take back acknowledged writes: run only its
    // migrations (the store's connections are already WAL with synchronous = FULL).
    SqliteStorage::<()>::migrations()
        .run(store.pool())
        .await
        .map_err(|e| WorkerError::Queue(format!("creating the queue's tables: {e}")))?;
    Ok(SqliteStorage::new(store.pool()).with_config(
        QueueConfig::default().queue(QUEUE_NAME).batch_size(64).heartbeat_interval(Duration::from_secs(10)),
    ))
}

async fn push_all(queue: &Queue, jobs: Vec<EvalJob>) -> Result<(), WorkerError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut queue = queue.clone();
    queue.push_bulk(jobs).await.map_err(|e| WorkerError::Queue(e.to_string()))
}

/// Enqueues every job whose result is not stored yet: all of them for a new experiment, the
/// remainder after a crash or for a re-run. Returns how many were enqueued.
pub async fn enqueue_missing(
    store: &Store,
    queue: &Queue,
    experiment: &Experiment,
) -> Result<usize, WorkerError> {
    let id = experiment.id.as_str();
    let exchanges = store.experiment_item_ids(id).await?;
    let replays = store.replays(id).await?;
    let judged: HashSet<(String, String, String, String)> = store
        .judgments(id)
        .await?
        .into_iter()
        .map(|j| (j.item_id, j.subject, j.rubric, j.position))
        .collect();
    let replayed: HashSet<(&str, &str)> =
        replays.iter().map(|r| (r.item_id.as_str(), r.candidate.as_str())).collect();
    let is_missing = |job: &EvalJob| match job {
        EvalJob::Judge { item_id, subject, rubric, position, .. } => {
            !judged.contains(&(item_id.clone(), subject.clone(), rubric.clone(), position.clone()))
        }
        EvalJob::Replay { .. } => true,
    };
    let mut jobs = Vec::new();
    for item_id in &exchanges {
        jobs.extend(jobs::judge_jobs(id, item_id, BASELINE, &experiment.spec).into_iter().filter(is_missing));
        for candidate in &experiment.spec.candidates {
            if !replayed.contains(&(item_id.as_str(), candidate.name.as_str())) {
                jobs.push(EvalJob::Replay {
                    experiment_id: id.into(),
                    item_id: item_id.clone(),
                    candidate: candidate.name.clone(),
                });
            }
        }
    }
    for replay in replays.iter().filter(|r| r.error.is_none()) {
        let follow_up = jobs::judge_jobs(id, &replay.item_id, &replay.candidate, &experiment.spec);
        jobs.extend(follow_up.into_iter().filter(is_missing));
    }
    let count = jobs.len();
    push_all(queue, jobs).await?;
    Ok(count)
}

#[derive(Clone)]
struct WorkerState {
    services: Services,
    queue: Queue,
}

async fn handle(job: EvalJob, state: Data<WorkerState>) -> Result<(), BoxDynError> {
    let svc = &state.services;
    let outcome = match &job {
        EvalJob::Replay { experiment_id, item_id, candidate } => {
            jobs::replay(svc, experiment_id, item_id, candidate).await?
        }
        EvalJob::Judge { experiment_id, item_id, subject, rubric, position } => {
            jobs::judge(svc, experiment_id, item_id, subject, rubric, position).await?
        }
    };
    push_all(&state.queue, outcome.follow_up().to_vec()).await?;
    Ok(())
}

/// Runs a worker with `concurrency` jobs in flight until `shutdown` completes.
pub async fn run_worker(
    services: Services,
    queue: Queue,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let name = format!("evaltap-worker-{}", uuid::Uuid::now_v7());
    let services_pool = services.store.pool().clone();
    let backend = queue.clone().poll_with_interval(Duration::from_millis(10));
    let worker = WorkerBuilder::new(name)
        .backend(backend)
        .data(WorkerState { services, queue })
        .concurrency(concurrency.max(1))
        // Model and judge failures are results, not errors; what errs is storage (e.g. a lock
        // held too long), worth a few more tries. A job that still fails is re-created by
        // `enqueue_missing` when a worker next starts.
        .retry(apalis::layers::retry::RetryPolicy::retries(3))
        .build(handle);
    // apalis-sqlite acknowledges jobs with a statement whose cost grows with the size of its job
    // table; finished jobs are history (results live in evaltap's own tables), so they are
    // removed as the worker goes.
    let (stop_purge, mut purge_stopped) = tokio::sync::oneshot::channel::<()>();
    let pool = services_pool;
    let purge = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut purge_stopped => return,
                () = tokio::time::sleep(PURGE_EVERY) => {}
            }
            if let Err(err) =
                sqlx::query("DELETE FROM Jobs WHERE status IN ('Done', 'Killed')").execute(&pool).await
            {
                tracing::debug!(%err, "purging finished jobs failed; will retry");
            }
        }
    });
    let ran = worker
        .run_until(async move {
            shutdown.await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(|e| WorkerError::Queue(e.to_string()));
    let _ = stop_purge.send(());
    let _ = purge.await;
    ran
}

/// How often a worker removes finished jobs from the queue's table.
const PURGE_EVERY: Duration = Duration::from_millis(250);
