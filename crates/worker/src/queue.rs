//! Two ways work reaches a worker, both over the same database as the store:
//!
//! - **Claimed from evaltap's own table** (the normal path): registering a unit of work in
//!   `work_claims` is enqueueing it; each worker claims ready rows in batches (one `UPDATE …
//!   RETURNING` for as many units as it has free slots), with a lease it renews while it works.
//!   A worker that dies leaves its leases to run out, and the next claim takes the work over.
//! - **The apalis queue** (apalis-sqlite / apalis-postgres): work that failed in a way worth
//!   retrying (storage trouble) is handed to it, and it retries it three more times, then gives
//!   up; `experiment run --requeue` pushes unfinished work to it again.
//!
//! Either way, claims in the store decide who calls a model. Claiming from the table replaced
//! one apalis job per unit of work: fetching and acknowledging each job was a chain of database
//! round trips per unit (BENCHMARKS.md has the figures).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use evaltap_store::{Experiment, Lease, Store};

mod engines;
pub use engines::{QUEUE_NAME, Queue, open};

use crate::claims::HeldWork;
use crate::jobs::{self, EvalJob, JobOutcome};
use crate::{Services, WorkerError};

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

/// Pushes jobs to the apalis queue as they are, registered or not: work handed back after a
/// failure, and `--requeue` (duplicates call nothing, as claims decide).
pub async fn push_jobs(queue: &Queue, jobs: Vec<EvalJob>) -> Result<(), WorkerError> {
    if jobs.is_empty() {
        return Ok(());
    }
    // Each job is tried at most this often in all (apalis's default is 25).
    let tasks = || {
        futures::stream::iter(
            jobs.iter().cloned().map(|job| TaskBuilder::new(job).max_attempts(QUEUE_ATTEMPTS).build()),
        )
    };
    queue.push_all(tasks()).await
}

/// Enqueues those of `jobs` not enqueued before: each unit of work is registered in the store
/// once — registering is enqueueing (workers claim registered work) — so re-running an
/// experiment, restarting a process or repeating a follow-up never queues work twice. Nothing
/// is enqueued for an experiment that reached its spend cap. Returns how many were enqueued.
pub async fn enqueue(store: &Store, jobs: Vec<EvalJob>) -> Result<usize, WorkerError> {
    let mut by_experiment: Vec<(String, Vec<EvalJob>)> = Vec::new();
    for job in jobs {
        let experiment = job.experiment_id().to_string();
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
        let keys: Vec<String> = jobs.iter().map(EvalJob::work_key).collect();
        enqueued += store.register_work(&experiment_id, &keys).await?.into_iter().filter(|new| *new).count();
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
    // What follows each successful replay; the baseline's judgments once per item.
    let mut listed = HashSet::new();
    for replay in replays.iter().filter(|r| r.error.is_none()) {
        let follow_up = jobs::replay_follow_ups(id, &replay.item_id, &replay.candidate, &experiment.spec);
        jobs.extend(follow_up.into_iter().filter(is_missing).filter(|job| listed.insert(job.work_key())));
    }
    Ok(jobs)
}

/// Enqueues every job of an experiment whose result is not stored and that was never enqueued:
/// all of them for a new experiment, none on a re-run or restart. Returns how many.
pub async fn enqueue_missing(store: &Store, experiment: &Experiment) -> Result<usize, WorkerError> {
    let jobs = missing_jobs(store, experiment).await?;
    enqueue(store, jobs).await
}

/// What `experiment run --requeue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requeued {
    /// Jobs pushed to the queue again.
    pub pushed: usize,
    /// Unfinished units whose call is out in a batch: left to it (a job would only wait).
    pub in_batches: usize,
}

/// Pushes every unfinished job of an experiment again, registered or not — for work whose job
/// the queue gave up on (repeated storage errors) — except work whose call is out in a batch,
/// which its batch makes ready when it ends. Duplicates call nothing: the claim decides.
pub async fn requeue_unfinished(
    store: &Store,
    queue: &Queue,
    experiment: &Experiment,
) -> Result<Requeued, WorkerError> {
    let parked: std::collections::HashSet<String> =
        store.parked_work_keys(&experiment.id).await?.into_iter().collect();
    let (in_batches, jobs): (Vec<EvalJob>, Vec<EvalJob>) =
        missing_jobs(store, experiment).await?.into_iter().partition(|job| parked.contains(&job.work_key()));
    let keys: Vec<String> = jobs.iter().map(EvalJob::work_key).collect();
    store.register_work(&experiment.id, &keys).await?;
    let pushed = jobs.len();
    push_jobs(queue, jobs).await?;
    Ok(Requeued { pushed, in_batches: in_batches.len() })
}

#[derive(Clone)]
struct WorkerState {
    services: Services,
    queue: Queue,
}

/// A job delivered by the apalis queue: it claims its work first (another worker may hold it).
async fn handle(job: EvalJob, state: Data<WorkerState>) -> Result<(), BoxDynError> {
    let outcome = jobs::run(&state.services, &job).await?;
    judge_follow_ups(&state.services, &state.queue, outcome).await?;
    Ok(())
}

/// Work claimed from the table, with what follows from it.
async fn run_claimed(svc: &Services, queue: &Queue, lease: Lease) {
    let result = match run_lease(svc, queue, lease).await {
        Ok(Some(outcome)) => judge_follow_ups(svc, queue, outcome).await,
        Ok(None) => Ok(()),
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        // What was not stored is still registered and unfinished: it is claimed again when
        // its lease runs out.
        tracing::warn!(%err, "handing work on failed; its lease will run out");
    }
}

/// Does the work `lease` holds; if it fails in a way worth retrying, hands it to the apalis
/// queue (its claim was given back to the queue) and returns `None`.
async fn run_lease(svc: &Services, queue: &Queue, lease: Lease) -> Result<Option<JobOutcome>, WorkerError> {
    let Some(job) = job_for_key(&lease.experiment_id, &lease.work_key) else {
        tracing::error!(work = %lease.work_key, "claimed work whose key does not read; left to its lease");
        return Ok(None);
    };
    match jobs::run_claimed(svc, HeldWork::hold(svc, lease), &job).await {
        Ok(outcome) => Ok(Some(outcome)),
        Err(err) => {
            tracing::warn!(%err, work = ?job, "work failed; handed to the queue's retries");
            push_jobs(queue, vec![job]).await?;
            Ok(None)
        }
    }
}

/// Judges a replay's answer in the replay's own task, as a client would judge an answer it has
/// just got: the replay's judgments were registered with it, the first claimed by this worker,
/// which makes it at once; the rest are ready for any worker's claim. (A replay found already
/// stored registers its missing judgments the same way, if they are not registered yet.) An
/// item's first judgment so costs no claim round trip of its own; one that fails is handed to
/// the apalis queue.
async fn judge_follow_ups(svc: &Services, queue: &Queue, outcome: JobOutcome) -> Result<(), WorkerError> {
    let lease = match outcome {
        JobOutcome::Stored { first_claimed, .. } => first_claimed,
        JobOutcome::AlreadyDone { follow_up } => match follow_up.first() {
            None => None,
            Some(first) => {
                let keys: Vec<String> = follow_up.iter().map(EvalJob::work_key).collect();
                svc.store.register_follow_ups(first.experiment_id(), &keys, &svc.owner, svc.lease).await?
            }
        },
        JobOutcome::Failed { .. }
        | JobOutcome::Deferred
        | JobOutcome::WaitsForBatch
        | JobOutcome::Parked { .. } => None,
    };
    if let Some(lease) = lease {
        run_lease(svc, queue, lease).await?;
    }
    Ok(())
}

/// Claims ready work from the table in batches, as many units as there are free slots, and runs
/// each in its own task; polls (a read) while there is none. On `stop` it claims no more and
/// waits for the work in flight.
async fn claim_loop(
    svc: Services,
    queue: Queue,
    concurrency: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    // Whether the last claim found work: if not, wait for the poll to see some first.
    let mut found = true;
    // An idle worker polls less and less often (up to IDLE_POLL_MAX): polling every 10 ms
    // cost an idle `evaltap worker` 9% of a core.
    let mut idle_wait = POLL_EVERY;
    loop {
        while tasks.try_join_next().is_some() {}
        if *stop.borrow() {
            break;
        }
        if !found {
            let ready = svc.store.has_ready_work().await.unwrap_or_else(|err| {
                tracing::debug!(%err, "polling for work failed; will retry");
                false
            });
            if !ready {
                tokio::select! {
                    _ = stop.changed() => {}
                    () = tokio::time::sleep(idle_wait) => {}
                }
                idle_wait = (idle_wait * 2).min(IDLE_POLL_MAX);
                continue;
            }
            idle_wait = POLL_EVERY;
        }
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => continue,
        };
        let mut permits = vec![first];
        while permits.len() < CLAIM_BATCH {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        match svc.store.claim_ready_work(&svc.owner, svc.lease, permits.len()).await {
            Ok(leases) => {
                found = !leases.is_empty();
                for (lease, permit) in leases.into_iter().zip(permits) {
                    let (svc, queue) = (svc.clone(), queue.clone());
                    tasks.spawn(async move {
                        run_claimed(&svc, &queue, lease).await;
                        drop(permit);
                    });
                }
            }
            Err(err) => {
                tracing::warn!(%err, "claiming work failed; will retry");
                found = false;
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// How often a worker that just ran out of ready work looks for more.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// How often a worker idle for a while looks for ready work (its polls double up to this).
const IDLE_POLL_MAX: Duration = Duration::from_millis(80);

/// Most units claimed in one statement.
const CLAIM_BATCH: usize = 64;

/// Runs a worker with up to `concurrency` units of claimed work in flight (and as many of the
/// apalis queue's retries) until `shutdown` completes; then it stops taking work and lets what
/// is in flight finish.
pub async fn run_worker(
    services: Services,
    queue: Queue,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let name = format!("evaltap-worker-{}", uuid::Uuid::now_v7());
    let store = services.store.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let claiming = tokio::spawn(claim_loop(services.clone(), queue.clone(), concurrency, stopped.clone()));
    let batching = tokio::spawn(crate::batches::keep(services.clone(), stopped.clone()));
    let state = WorkerState { services, queue: queue.clone() };
    // Housekeeping beside the work: finished jobs leave the queue's table (apalis-sqlite's
    // acknowledgement costs grow with it; results live in evaltap's own tables), and spend
    // reservations of dead callers are released once their lease has run out. (Work whose
    // claimant stopped is claimed again by `claim_loop` once its lease runs out.)
    // The housekeeping asks for a new round of apalis's worker when ready jobs sit untaken.
    let (restart, restarts) = tokio::sync::watch::channel(0_u64);
    let mut housekeeping_stopped = stopped.clone();
    let housekeeping = tokio::spawn(async move {
        let mut rounds: u64 = 0;
        loop {
            tokio::select! {
                _ = housekeeping_stopped.wait_for(|stop| *stop) => return,
                () = tokio::time::sleep(PURGE_EVERY) => {}
            }
            rounds += 1;
            if let Err(err) = store.purge_finished_queue_jobs().await {
                tracing::debug!(%err, "purging finished jobs failed; will retry");
            }
            if rounds.is_multiple_of(STALL_CHECK_EVERY_ROUNDS) {
                match store.stalled_queue_jobs(QUEUE_STALL.as_secs() as i64).await {
                    Ok(0) => {}
                    Ok(stalled) => {
                        tracing::warn!(
                            stalled,
                            "the job queue's worker stopped fetching ready jobs; starting it again"
                        );
                        restart.send_modify(|round| *round += 1);
                    }
                    Err(err) => tracing::debug!(%err, "looking for stalled queue jobs failed; will retry"),
                }
            }
            if rounds.is_multiple_of(PRESUME_EVERY_ROUNDS) {
                match store.presume_expired_reservations().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        presumed = n,
                        "spend reservations of stopped calls settled as presumed paid"
                    ),
                    Err(err) => tracing::debug!(%err, "settling expired reservations failed; will retry"),
                }
            }
        }
    });
    // Model and judge failures are results, not errors; what errs is storage (e.g. a lock held
    // too long), worth a few more tries.
    let retry = apalis::layers::retry::RetryPolicy::retries(3);
    // apalis's worker returns on the first error of its stream (a fetch or heartbeat that
    // failed under load), and its retries would then wait for the next process: start it again
    // until stopped.
    let mut round = 0_u32;
    let ran = loop {
        let mut queue_stopped = stopped.clone();
        let mut round_restarts = restarts.clone();
        round_restarts.mark_unchanged();
        let until = async move {
            tokio::select! {
                _ = queue_stopped.wait_for(|stop| *stop) => {}
                _ = round_restarts.changed() => {}
            }
            Ok::<(), std::io::Error>(())
        };
        let attempt = format!("{name}-{round}");
        let result = queue.run_worker(attempt, state.clone(), concurrency.max(1), retry.clone(), until).await;
        if *stopped.borrow() {
            break result;
        }
        round += 1;
        match &result {
            Err(err) => {
                tracing::warn!(%err, round, "the job queue's worker stopped on an error; starting it again")
            }
            Ok(()) => tracing::warn!(round, "the job queue's worker ended; starting it again"),
        }
        tokio::time::sleep(QUEUE_RESTART_AFTER).await;
    };
    let claimed = claiming.await.map_err(|e| WorkerError::Queue(format!("the claiming task failed: {e}")));
    let _ = housekeeping.await;
    let _ = batching.await;
    ran.and(claimed)
}

/// How many times the apalis queue tries a job handed to it before giving up on it (`experiment
/// run --requeue` pushes it again).
const QUEUE_ATTEMPTS: usize = 4;

/// How often a worker asks the apalis queue for jobs (retries and `--requeue`: the rare path;
/// a duplicated batch of 1,500 jobs did not always drain within two minutes under load at 100 ms).
const QUEUE_POLL_EVERY: Duration = Duration::from_millis(10);

/// Ready jobs untaken this long mean the queue's worker stopped fetching (apalis's poll can
/// stall without an error): it is started again.
const QUEUE_STALL: Duration = Duration::from_secs(5);

/// Stalled jobs are looked for every this many purge rounds.
const STALL_CHECK_EVERY_ROUNDS: u64 = 8;

/// How long a worker waits before starting its job-queue worker again after it stopped.
const QUEUE_RESTART_AFTER: Duration = Duration::from_millis(200);

/// How often a worker removes finished jobs from the queue's table.
const PURGE_EVERY: Duration = Duration::from_millis(250);

/// Expired reservations are looked for every this many purge rounds.
const PRESUME_EVERY_ROUNDS: u64 = 8;
