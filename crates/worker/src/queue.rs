//! The apalis queue, in the same database as the store: apalis-sqlite on a SQLite file,
//! apalis-postgres on PostgreSQL. The queue delivers jobs (and hands a dead worker's jobs to
//! another after its missed heartbeats); claims in the store decide who calls a model.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use evaltap_core::WorkerConfig;
use evaltap_store::{BASELINE, Experiment, Pool, Store};

use crate::jobs::{self, EvalJob};
use crate::{Services, WorkerError};

/// The job queue, on whichever engine the store runs.
#[derive(Clone)]
pub enum Queue {
    /// apalis-sqlite.
    Sqlite(SqliteStorage<EvalJob>),
    /// apalis-postgres.
    Postgres(PostgresStorage<EvalJob>),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queue::Sqlite(_) => "Queue::Sqlite",
            Queue::Postgres(_) => "Queue::Postgres",
        })
    }
}

/// A stable queue name: apalis defaults to the Rust type path, which a refactor would change,
/// orphaning queued jobs.
pub const QUEUE_NAME: &str = "evaltap.eval";

/// Jobs fetched per poll.
const BATCH_SIZE: usize = 64;

/// The same settings for either engine's queue (two configuration types of the same shape).
macro_rules! queue_config {
    ($config:ty, $settings:expr) => {
        <$config>::default()
            .queue(QUEUE_NAME)
            .batch_size(BATCH_SIZE)
            .heartbeat_interval($settings.heartbeat())
            .missed_heartbeats($settings.missed_heartbeats.max(1))
    };
}

/// Creates apalis's tables (idempotent) and returns the queue.
pub async fn open(store: &Store, settings: &WorkerConfig) -> Result<Queue, WorkerError> {
    let failed =
        |e: sqlx::migrate::MigrateError| WorkerError::Queue(format!("creating the queue's tables: {e}"));
    Ok(match store.pool() {
        Pool::Sqlite(pool) => {
            // apalis' own `setup` also runs `PRAGMA synchronous = OFF` on whichever pooled
            // connection it gets, which would let a power loss take back acknowledged writes:
            // run only its migrations (the store's connections are WAL with synchronous = FULL).
            SqliteStorage::<()>::migrations().run(pool).await.map_err(failed)?;
            Queue::Sqlite(
                SqliteStorage::new(pool).with_config(queue_config!(apalis_sqlite::Config, settings)),
            )
        }
        Pool::Postgres(pool) => {
            PostgresStorage::<()>::migrations().run(pool).await.map_err(failed)?;
            Queue::Postgres(
                PostgresStorage::new(pool).with_config(queue_config!(apalis_postgres::Config, settings)),
            )
        }
    })
}

/// The experiment a job belongs to.
fn experiment_of(job: &EvalJob) -> &str {
    match job {
        EvalJob::Replay { experiment_id, .. } | EvalJob::Judge { experiment_id, .. } => experiment_id,
    }
}

/// The work key of a job (see [`evaltap_store::Store::claim_work`]).
fn work_key(job: &EvalJob) -> String {
    match job {
        EvalJob::Replay { item_id, candidate, .. } => evaltap_store::replay_work_key(item_id, candidate),
        EvalJob::Judge { item_id, subject, rubric, position, .. } => {
            evaltap_store::judgment_work_key(item_id, subject, rubric, position)
        }
    }
}

/// The job that does the unit of work `work_key` of an experiment.
fn job_for_key(experiment_id: &str, work_key: &str) -> Option<EvalJob> {
    let parts: Vec<String> = serde_json::from_str(work_key).ok()?;
    let experiment_id = experiment_id.to_string();
    match parts.as_slice() {
        [kind, item_id, candidate] if kind == "replay" => {
            Some(EvalJob::Replay { experiment_id, item_id: item_id.clone(), candidate: candidate.clone() })
        }
        [kind, item_id, subject, rubric, position] if kind == "judge" => Some(EvalJob::Judge {
            experiment_id,
            item_id: item_id.clone(),
            subject: subject.clone(),
            rubric: rubric.clone(),
            position: position.clone(),
        }),
        _ => None,
    }
}

/// Queues again the work whose claimant stopped and that nobody took over within a lease.
async fn requeue_stranded(store: &Store, queue: &Queue, lease: Duration) -> Result<usize, WorkerError> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let stranded = store.stranded_work(evaltap_store::now_ms().saturating_sub(lease_ms), 1_000).await?;
    let jobs: Vec<EvalJob> = stranded.iter().filter_map(|(id, key)| job_for_key(id, key)).collect();
    let count = jobs.len();
    push_jobs(queue, jobs).await?;
    Ok(count)
}

/// Pushes jobs as they are, registered or not: for repair, and for the judgments a replay's job
/// could not do itself (`enqueue` is the way in otherwise; duplicates call nothing, as claims
/// decide).
pub async fn push_jobs(queue: &Queue, jobs: Vec<EvalJob>) -> Result<(), WorkerError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let pushed = match queue.clone() {
        Queue::Sqlite(mut storage) => storage.push_bulk(jobs).await.map_err(|e| e.to_string()),
        Queue::Postgres(mut storage) => storage.push_bulk(jobs).await.map_err(|e| e.to_string()),
    };
    pushed.map_err(WorkerError::Queue)
}

/// Enqueues those of `jobs` not enqueued before: each unit of work is registered in the store
/// once, and only newly registered work is pushed, so re-running an experiment, restarting a
/// process or repeating a follow-up never queues work twice. Nothing is enqueued for an
/// experiment that reached its spend cap. Returns how many were enqueued.
pub async fn enqueue(store: &Store, queue: &Queue, jobs: Vec<EvalJob>) -> Result<usize, WorkerError> {
    let mut by_experiment: Vec<(String, Vec<EvalJob>)> = Vec::new();
    for job in jobs {
        let experiment = experiment_of(&job).to_string();
        match by_experiment.iter_mut().find(|(id, _)| *id == experiment) {
            Some((_, list)) => list.push(job),
            None => by_experiment.push((experiment, vec![job])),
        }
    }
    let mut enqueued = 0;
    for (experiment_id, jobs) in by_experiment {
        if store.spend(&experiment_id).await?.capped {
            // Past the cap nothing is enqueued: the work is recorded as skipped at once.
            let experiment = store.require_experiment(&experiment_id).await?;
            for job in jobs {
                jobs::store_skipped(store, &experiment, &job, jobs::SPEND_CAP_REACHED).await?;
            }
            continue;
        }
        // Pushed first, registered after: a crash in between leaves a job queued but not
        // registered (enqueued again later, and a duplicate job calls nothing), never work
        // registered but not queued.
        let keyed: Vec<(String, EvalJob)> = jobs.into_iter().map(|job| (work_key(&job), job)).collect();
        let all_keys: Vec<String> = keyed.iter().map(|(key, _)| key.clone()).collect();
        let registered = store.registered_among(&experiment_id, &all_keys).await?;
        let mut seen = std::collections::HashSet::new();
        let (keys, fresh): (Vec<String>, Vec<EvalJob>) = keyed
            .into_iter()
            .filter(|(key, _)| !registered.contains(key) && seen.insert(key.clone()))
            .unzip();
        enqueued += fresh.len();
        push_jobs(queue, fresh).await?;
        store.register_work(&experiment_id, &keys).await?;
    }
    Ok(enqueued)
}

/// Every job of an experiment whose result is not stored yet.
pub async fn missing_jobs(store: &Store, experiment: &Experiment) -> Result<Vec<EvalJob>, WorkerError> {
    let id = experiment.id.as_str();
    let items = store.experiment_item_ids(id).await?;
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
    for item_id in &items {
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
    Ok(jobs)
}

/// Enqueues every job of an experiment whose result is not stored and that was never enqueued:
/// all of them for a new experiment, none on a re-run or restart. Returns how many.
pub async fn enqueue_missing(
    store: &Store,
    queue: &Queue,
    experiment: &Experiment,
) -> Result<usize, WorkerError> {
    let jobs = missing_jobs(store, experiment).await?;
    enqueue(store, queue, jobs).await
}

/// Pushes every unfinished job of an experiment again, registered or not — for work whose job
/// the queue gave up on (repeated storage errors). Duplicates call nothing: the claim decides.
pub async fn requeue_unfinished(
    store: &Store,
    queue: &Queue,
    experiment: &Experiment,
) -> Result<usize, WorkerError> {
    let jobs = missing_jobs(store, experiment).await?;
    let keys: Vec<String> = jobs.iter().map(work_key).collect();
    store.register_work(&experiment.id, &keys).await?;
    let count = jobs.len();
    push_jobs(queue, jobs).await?;
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
    let follow_up = outcome.follow_up();
    let judged = judge_inline(svc, follow_up).await;
    queue_rest(svc, &state.queue, &job, &follow_up[judged..]).await?;
    Ok(())
}

/// Judges a replay's answer in the replay's own job, one judgment after another — as a client
/// would judge an answer it has just got — instead of one queued job each: the queue's round
/// trips per item fall from three to one. Each judgment still takes its own claim, so it is
/// made once whoever runs it, and a worker that stops half-way leaves the replay job unacked:
/// delivered again, it finds the judgments still missing. Returns how many of `follow_up` were
/// done; the first that fails (or is not a judgment) and the rest are queued instead.
async fn judge_inline(svc: &Services, follow_up: &[EvalJob]) -> usize {
    for (done, next) in follow_up.iter().enumerate() {
        let EvalJob::Judge { experiment_id, item_id, subject, rubric, position } = next else { return done };
        if let Err(err) = jobs::judge(svc, experiment_id, item_id, subject, rubric, position).await {
            tracing::debug!(%err, item_id, rubric, "judging in the replay's job failed; the rest is queued");
            return done;
        }
    }
    follow_up.len()
}

/// Queues follow-ups that were not done in the job, registered so that they are queued once.
/// (Judgments stop themselves at a spend cap, so no cap check is needed here.)
async fn queue_rest(
    svc: &Services,
    queue: &Queue,
    job: &EvalJob,
    rest: &[EvalJob],
) -> Result<(), WorkerError> {
    if rest.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = rest.iter().map(work_key).collect();
    push_jobs(queue, rest.to_vec()).await?;
    svc.store.register_work(experiment_of(job), &keys).await?;
    Ok(())
}

/// Runs a worker with `concurrency` jobs in flight until `shutdown` completes; then it stops
/// taking jobs and lets those in flight finish.
pub async fn run_worker(
    services: Services,
    queue: Queue,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let name = format!("evaltap-worker-{}", uuid::Uuid::now_v7());
    let store = services.store.clone();
    let lease = services.lease;
    let housekeeping_queue = queue.clone();
    let state = WorkerState { services, queue: queue.clone() };
    // Housekeeping beside the jobs: finished jobs leave the queue's table (apalis-sqlite's
    // acknowledgement costs grow with it; results live in evaltap's own tables), work whose
    // claimant stopped is queued again, and spend reservations of dead callers are released
    // once their lease has run out.
    let (stop_housekeeping, mut housekeeping_stopped) = tokio::sync::oneshot::channel::<()>();
    let housekeeping = tokio::spawn(async move {
        let mut rounds: u64 = 0;
        loop {
            tokio::select! {
                _ = &mut housekeeping_stopped => return,
                () = tokio::time::sleep(PURGE_EVERY) => {}
            }
            rounds += 1;
            if let Err(err) = store.purge_finished_queue_jobs().await {
                tracing::debug!(%err, "purging finished jobs failed; will retry");
            }
            if rounds.is_multiple_of(RELEASE_EVERY_ROUNDS) {
                match requeue_stranded(&store, &housekeeping_queue, lease).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(requeued = n, "queued again work whose claimant stopped"),
                    Err(err) => tracing::debug!(%err, "looking for stranded work failed; will retry"),
                }
                match store.release_expired_reservations().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(released = n, "released spend reservations of stopped calls"),
                    Err(err) => tracing::debug!(%err, "releasing expired reservations failed; will retry"),
                }
            }
        }
    });
    let until = async move {
        shutdown.await;
        Ok::<(), std::io::Error>(())
    };
    // Model and judge failures are results, not errors; what errs is storage (e.g. a lock held
    // too long), worth a few more tries.
    let retry = apalis::layers::retry::RetryPolicy::retries(3);
    // The same worker over either engine's storage (two backend types).
    macro_rules! run_on {
        ($storage:expr) => {
            WorkerBuilder::new(name)
                .backend($storage.poll_with_interval(Duration::from_millis(10)))
                .data(state)
                .concurrency(concurrency.max(1))
                .retry(retry)
                .build(handle)
                .run_until(until)
                .await
        };
    }
    let ran = match queue {
        Queue::Sqlite(storage) => run_on!(storage),
        Queue::Postgres(storage) => run_on!(storage),
    }
    .map_err(|e| WorkerError::Queue(e.to_string()));
    let _ = stop_housekeeping.send(());
    let _ = housekeeping.await;
    ran
}

/// How often a worker removes finished jobs from the queue's table.
const PURGE_EVERY: Duration = Duration::from_millis(250);

/// Expired reservations are looked for every this many purge rounds.
const RELEASE_EVERY_ROUNDS: u64 = 8;
