//! The jobs, callable without a queue.

use evaltap_golden::Check;
use evaltap_store::{
    BASELINE, ExperimentSpec, ITEM_DATASET, ITEM_EXCHANGE, JudgmentRecord, ReplayRecord, Reserve, SpendKind,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::claims::{self, Acquired, HeldWork};
use crate::{Services, WorkerError};

/// A unit of work in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvalJob {
    /// Replay one exchange against one candidate.
    Replay {
        /// Experiment id.
        experiment_id: String,
        /// Item id (an exchange id, or a dataset item key).
        #[serde(alias = "exchange_id")]
        item_id: String,
        /// Candidate name.
        candidate: String,
    },
    /// Score one subject's response to one exchange with one rubric.
    Judge {
        /// Experiment id.
        experiment_id: String,
        /// Item id (an exchange id, or a dataset item key).
        #[serde(alias = "exchange_id")]
        item_id: String,
        /// `baseline` or a candidate name.
        subject: String,
        /// Rubric name.
        rubric: String,
        /// '' for pointwise rubrics; `ab` (baseline first) or `ba` (candidate first) for
        /// pairwise ones, which are asked in both orders.
        #[serde(default)]
        position: String,
    },
}

impl EvalJob {
    /// The experiment the job belongs to.
    pub fn experiment_id(&self) -> &str {
        match self {
            EvalJob::Replay { experiment_id, .. } | EvalJob::Judge { experiment_id, .. } => experiment_id,
        }
    }

    /// The key of its unit of work (see [`evaltap_store::Store::claim_work`]).
    pub fn work_key(&self) -> String {
        match self {
            EvalJob::Replay { item_id, candidate, .. } => evaltap_store::replay_work_key(item_id, candidate),
            EvalJob::Judge { item_id, subject, rubric, position, .. } => {
                evaltap_store::judgment_work_key(item_id, subject, rubric, position)
            }
        }
    }
}

/// The orders a pairwise rubric is asked in.
pub const PAIRWISE_POSITIONS: [&str; 2] = ["ab", "ba"];

/// What a job did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum JobOutcome {
    /// The result was stored; these jobs follow from it.
    Stored {
        /// Follow-up jobs (judge jobs after a successful replay).
        follow_up: Vec<EvalJob>,
        /// The first follow-up, registered with the result and claimed by this worker (it
        /// makes it next).
        #[serde(skip)]
        first_claimed: Option<evaltap_store::Lease>,
    },
    /// The call failed after retries; the failure was stored as the result.
    Failed {
        /// Why.
        error: String,
    },
    /// The result was already stored (a retried or duplicated job); follow-ups whose result is
    /// missing are repeated in case the first run died before enqueueing them.
    AlreadyDone {
        /// Follow-up jobs.
        follow_up: Vec<EvalJob>,
    },
    /// Nothing was called or stored: the call waits for room under the spend cap that calls in
    /// flight hold; the work is handed back, to be claimed again shortly.
    Deferred,
    /// Nothing was called or stored: a batch's worth of the endpoint's calls is out already,
    /// and this one waits for it (so early stopping can look at each batch's results before
    /// the next goes out); the work is handed back for a while.
    WaitsForBatch,
    /// The call goes through a provider's batch interface: it is parked (with the work's claim
    /// and spend reservation) until its batch answers, and the job runs again then.
    Parked {
        /// The candidate's name, or '' for the judge.
        endpoint: String,
        /// The request, as it goes into the batch.
        body: Box<Value>,
    },
}

impl JobOutcome {
    /// Jobs to enqueue after this one.
    pub fn follow_up(&self) -> &[EvalJob] {
        match self {
            JobOutcome::Stored { follow_up, .. } | JobOutcome::AlreadyDone { follow_up } => follow_up,
            JobOutcome::Failed { .. }
            | JobOutcome::Deferred
            | JobOutcome::WaitsForBatch
            | JobOutcome::Parked { .. } => &[],
        }
    }
}

/// The judge jobs for `subject`'s response: one per pointwise rubric (and deterministic
/// check), two (both orders) per pairwise one — of which the baseline has none. A baseline
/// that is a replayed model is judged under its candidate name, never as `baseline`.
pub fn judge_jobs(experiment_id: &str, item_id: &str, subject: &str, spec: &ExperimentSpec) -> Vec<EvalJob> {
    if subject == BASELINE && !spec.baseline.is_judged_on_items() {
        return Vec::new();
    }
    let is_baseline = subject == BASELINE || spec.baseline_candidate() == Some(subject);
    let mut jobs = Vec::new();
    for rubric in &spec.rubrics {
        let positions: &[&str] = match (spec.is_pairwise(rubric), is_baseline) {
            (false, _) => &[""],
            (true, false) => &PAIRWISE_POSITIONS,
            (true, true) => &[],
        };
        for position in positions {
            jobs.push(EvalJob::Judge {
                experiment_id: experiment_id.into(),
                item_id: item_id.into(),
                subject: subject.into(),
                rubric: rubric.clone(),
                position: (*position).into(),
            });
        }
    }
    jobs
}

/// What follows a successful replay of `candidate` on an item: its judgments, then the
/// baseline's judgments of the item (registered by the item's first successful replay, found
/// registered by the rest). An item no candidate answers is never judged on the baseline: that
/// score could pair with nothing, and with early stopping most items of a settled candidate are
/// never replayed.
pub fn replay_follow_ups(
    experiment_id: &str,
    item_id: &str,
    candidate: &str,
    spec: &ExperimentSpec,
) -> Vec<EvalJob> {
    let mut jobs = judge_jobs(experiment_id, item_id, candidate, spec);
    jobs.extend(judge_jobs(experiment_id, item_id, BASELINE, spec));
    jobs
}

/// Rubric names of deterministic checks start with this.
pub const CHECK_PREFIX: &str = "check:";

/// What a job needs of the item it works on, whatever its kind.
#[derive(Debug, Clone)]
pub struct JobItem {
    /// `exchange` or `dataset_item`.
    pub kind: &'static str,
    /// Its id.
    pub id: String,
    /// The request to replay and to show the judge.
    pub request: Value,
    /// The production response (exchanges).
    pub production: Option<Value>,
    /// The production call's token usage (exchanges).
    pub usage: Option<evaltap_core::Usage>,
    /// The reference answer (dataset items).
    pub reference: Option<String>,
    /// The item's own checks (dataset items).
    pub checks: Vec<Check>,
}

/// Loads item `item_id` of the experiment's kind.
pub async fn load_item(svc: &Services, spec: &ExperimentSpec, item_id: &str) -> Result<JobItem, WorkerError> {
    if spec.dataset.is_none() {
        let exchange = svc
            .store
            .exchange(item_id)
            .await?
            .ok_or_else(|| WorkerError::Missing(format!("exchange {item_id} is not stored")))?;
        return Ok(JobItem {
            kind: ITEM_EXCHANGE,
            id: exchange.id,
            request: exchange.exchange.request,
            usage: exchange.exchange.usage,
            production: Some(exchange.exchange.response),
            reference: None,
            checks: Vec::new(),
        });
    }
    let row = svc
        .store
        .dataset_item(item_id)
        .await?
        .ok_or_else(|| WorkerError::Missing(format!("dataset item {item_id} is not stored")))?;
    let item: evaltap_golden::Item = serde_json::from_value(row.body)
        .map_err(|e| WorkerError::Missing(format!("dataset item {item_id} does not read back: {e}")))?;
    Ok(JobItem {
        kind: ITEM_DATASET,
        id: row.key,
        request: item.request(),
        production: None,
        usage: None,
        reference: item.reference,
        checks: item.checks,
    })
}

/// Whether a job failed because its item's stored row does not read back (it never will).
fn unreadable(err: &WorkerError) -> bool {
    matches!(err, WorkerError::Store(evaltap_store::StoreError::Json { .. }))
}

/// How long a call waits in line for room under the spend cap, holding its claim, before it
/// hands its work back (to be claimed again) instead.
const WAIT_IN_LINE: std::time::Duration = std::time::Duration::from_secs(20);

/// How often a waiting call asks again.
const ASK_AGAIN: std::time::Duration = std::time::Duration::from_millis(50);

/// Reserves a call's cost under the cap, waiting in line while calls in flight (or an earlier
/// item's call) stand in the way: `Wait` only once [`WAIT_IN_LINE`] has passed.
async fn reserve_in_line(
    svc: &Services,
    experiment_id: &str,
    kind: SpendKind,
    key: &str,
    estimate: f64,
) -> Result<Reserve, WorkerError> {
    let deadline = tokio::time::Instant::now() + WAIT_IN_LINE;
    loop {
        match svc.store.reserve_spend(experiment_id, kind, key, estimate, svc.lease).await? {
            Reserve::Wait if tokio::time::Instant::now() < deadline => tokio::time::sleep(ASK_AGAIN).await,
            decided => return Ok(decided),
        }
    }
}

/// What the batch interface answered the calls of a unit of work, for a client in batch mode:
/// `None` when none was answered and a batch's worth of `endpoint`'s calls is out already (the
/// work waits: see [`JobOutcome::WaitsForBatch`]).
async fn batch_answers(
    svc: &Services,
    experiment_id: &str,
    work_key: &str,
    endpoint: &str,
) -> Result<Option<std::collections::HashMap<String, evaltap_providers::BatchAnswer>>, WorkerError> {
    let answers: std::collections::HashMap<_, _> =
        svc.store.batch_answers(experiment_id, work_key).await?.into_iter().collect();
    let full = answers.is_empty()
        && svc.store.calls_out(experiment_id, Some(endpoint)).await?
            >= i64::try_from(svc.batching.max_requests).unwrap_or(i64::MAX);
    Ok((!full).then_some(answers))
}

/// The judge jobs among `jobs` whose judgment is not stored yet.
async fn missing_judgments(svc: &Services, jobs: Vec<EvalJob>) -> Result<Vec<EvalJob>, WorkerError> {
    let mut missing = Vec::new();
    for job in jobs {
        if let EvalJob::Judge { experiment_id, item_id, subject, rubric, position } = &job
            && svc.store.judgment_exists(experiment_id, item_id, subject, rubric, position).await?
        {
            continue;
        }
        missing.push(job);
    }
    Ok(missing)
}

/// Runs `job`: claims its work first, then replays or judges by the worker holding the claim.
/// A model is called only by that worker: a duplicated or re-delivered job finds the work
/// finished (and returns what still follows from it) or waits for the holder.
pub async fn run(svc: &Services, job: &EvalJob) -> Result<JobOutcome, WorkerError> {
    match claims::acquire(svc, job.experiment_id(), &job.work_key()).await? {
        Acquired::Finished => already_done(svc, job).await,
        Acquired::Held(held) => run_claimed(svc, held, job).await,
    }
}

/// Runs `job` by the worker holding its claim; the claim is deferred or given back when the
/// job did not store its result.
pub(crate) async fn run_claimed(
    svc: &Services,
    held: HeldWork,
    job: &EvalJob,
) -> Result<JobOutcome, WorkerError> {
    let experiment_id = job.experiment_id();
    let result = match job {
        EvalJob::Replay { item_id, candidate, .. } => {
            replaying::replay_held(svc, experiment_id, item_id, candidate).await
        }
        EvalJob::Judge { item_id, subject, rubric, position, .. } => {
            judging::judge_held(svc, experiment_id, item_id, subject, rubric, position).await
        }
    };
    match &result {
        Ok(JobOutcome::Stored { .. }) => {
            if held.claims() > 1 {
                tracing::info!(experiment_id, work = %job.work_key(), "done after taking over a claim");
            }
            if matches!(job, EvalJob::Judge { .. }) {
                crate::early_stop::consider(svc, experiment_id).await;
            }
        }
        Ok(JobOutcome::Failed { .. }) => {}
        Ok(JobOutcome::Deferred) => held.defer(svc, claims::DEFER).await,
        Ok(JobOutcome::WaitsForBatch) => held.defer(svc, svc.batching.poll.max(claims::DEFER)).await,
        Ok(JobOutcome::Parked { endpoint, body }) => held.park(svc, endpoint, body).await,
        _ => held.release(svc).await,
    }
    result
}

/// The outcome of a job whose work another worker already finished: for a successful replay,
/// its judgments still missing.
async fn already_done(svc: &Services, job: &EvalJob) -> Result<JobOutcome, WorkerError> {
    let EvalJob::Replay { experiment_id, item_id, candidate } = job else {
        return Ok(JobOutcome::AlreadyDone { follow_up: Vec::new() });
    };
    let follow_up = match svc.store.replay(experiment_id, item_id, candidate).await? {
        Some(replay) if replay.error.is_none() => {
            let experiment = svc.experiment(experiment_id).await?;
            missing_judgments(svc, replay_follow_ups(experiment_id, item_id, candidate, &experiment.spec))
                .await?
        }
        _ => Vec::new(),
    };
    Ok(JobOutcome::AlreadyDone { follow_up })
}

mod judging;
mod replaying;

pub use replaying::REPLAY_OUTPUT_TOKENS_FLOOR;

/// Why work was not attempted when the experiment's spend cap was reached.
pub const SPEND_CAP_REACHED: &str = "spend cap reached";

/// Records `job` as not attempted for `reason` (no model is called); a result already stored
/// stands.
pub async fn store_skipped(
    store: &evaltap_store::Store,
    experiment: &evaltap_store::Experiment,
    job: &EvalJob,
    reason: &str,
) -> Result<(), WorkerError> {
    match job {
        EvalJob::Replay { experiment_id, item_id, candidate } => {
            let model =
                experiment.spec.candidates.iter().find(|c| c.name == *candidate).map_or("", |c| &c.model);
            let mut record =
                ReplayRecord::new(experiment_id, experiment.spec.item_kind(), item_id, candidate, model);
            record.error = Some(reason.into());
            record.skipped = Some(reason.into());
            store.insert_replay(&record).await?;
        }
        EvalJob::Judge { experiment_id, item_id, subject, rubric, position } => {
            let mut record = JudgmentRecord::new(experiment_id, item_id, subject, rubric, position);
            record.item_kind = experiment.spec.item_kind().into();
            record.error = Some(reason.into());
            record.skipped = Some(reason.into());
            store.insert_judgment(&record).await?;
        }
    }
    Ok(())
}
