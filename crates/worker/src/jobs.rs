//! The jobs, callable without a queue.

use evaltap_core::chat;
use evaltap_golden::Check;
use evaltap_judge::Winner;
use evaltap_judge::{JudgeError, Subject};
use evaltap_providers::replay_body;
use evaltap_store::{
    BASELINE, BaselineSpec, ExperimentSpec, ITEM_DATASET, ITEM_EXCHANGE, JudgmentRecord, Paid, ReplayRecord,
    Reserve, SpendKind,
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
}

impl JobOutcome {
    /// Jobs to enqueue after this one.
    pub fn follow_up(&self) -> &[EvalJob] {
        match self {
            JobOutcome::Stored { follow_up, .. } | JobOutcome::AlreadyDone { follow_up } => follow_up,
            JobOutcome::Failed { .. } | JobOutcome::Deferred => &[],
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

/// Output tokens a replay may write under a spend cap when neither the production request nor
/// the candidate's `params` set a limit: the larger of this and twice the production answer.
pub const REPLAY_OUTPUT_TOKENS_FLOOR: u64 = 1024;

/// Removes the fields a candidate's model refuses (its `drop_params`) from a replay body.
fn drop_params(body: &mut Value, refused: &[String]) {
    if let Some(fields) = body.as_object_mut() {
        for field in refused {
            fields.remove(field);
        }
    }
}

/// The request's own output limit (`max_completion_tokens`, else `max_tokens`).
fn output_limit(body: &Value) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"].iter().find_map(|field| body.get(*field).and_then(Value::as_u64))
}

/// The most tokens a replay of `item` sending `body` can be billed for: the request's bytes
/// (images at their cap) and its output limit. Under a spend cap (`bound_output`) a request
/// without a limit is given one — twice the production answer, at least
/// [`REPLAY_OUTPUT_TOKENS_FLOOR`] — so the provider stops there and the call cannot cost more
/// than it reserved; without a cap the request goes as production sent it, and that figure is
/// only what a lost answer is presumed to have cost.
fn replay_bound(item: &JobItem, body: &mut Value, bound_output: bool) -> evaltap_core::Usage {
    let output_tokens = output_limit(body).unwrap_or_else(|| {
        let production = item.usage.map_or(0, |u| u.output_tokens.saturating_mul(2));
        let limit = production.max(REPLAY_OUTPUT_TOKENS_FLOOR);
        if bound_output && let Some(fields) = body.as_object_mut() {
            fields.insert("max_tokens".into(), Value::from(limit));
        }
        limit
    });
    let input_tokens = evaltap_core::pricing::input_tokens_bound(body);
    evaltap_core::Usage { input_tokens, output_tokens, ..Default::default() }
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

/// Runs `job`, claiming its work first ([`replay`] or [`judge`]).
pub async fn run(svc: &Services, job: &EvalJob) -> Result<JobOutcome, WorkerError> {
    match job {
        EvalJob::Replay { experiment_id, item_id, candidate } => {
            replay(svc, experiment_id, item_id, candidate).await
        }
        EvalJob::Judge { experiment_id, item_id, subject, rubric, position } => {
            judge(svc, experiment_id, item_id, subject, rubric, position).await
        }
    }
}

/// Runs `job` by the worker holding its claim ([`replay_claimed`] or [`judge_claimed`]).
pub(crate) async fn run_claimed(
    svc: &Services,
    held: HeldWork,
    job: &EvalJob,
) -> Result<JobOutcome, WorkerError> {
    match job {
        EvalJob::Replay { experiment_id, item_id, candidate } => {
            replay_claimed(svc, held, experiment_id, item_id, candidate).await
        }
        EvalJob::Judge { experiment_id, item_id, subject, rubric, position } => {
            judge_claimed(svc, held, experiment_id, item_id, subject, rubric, position).await
        }
    }
}

/// Replays an item against a candidate and stores the response, usage, cost and latency, or
/// the error. The model is called only by the worker holding the replay's claim: a duplicated
/// or re-delivered job waits for it and calls nothing.
pub async fn replay(
    svc: &Services,
    experiment_id: &str,
    item_id: &str,
    candidate: &str,
) -> Result<JobOutcome, WorkerError> {
    let key = evaltap_store::replay_work_key(item_id, candidate);
    match claims::acquire(svc, experiment_id, &key).await? {
        Acquired::Finished => {
            let experiment = svc.experiment(experiment_id).await?;
            already_replayed(svc, &experiment, item_id, candidate).await
        }
        Acquired::Held(held) => replay_claimed(svc, held, experiment_id, item_id, candidate).await,
    }
}

/// [`replay`] by the worker that holds the replay's claim; the claim is given back to the
/// queue if the replay cannot be stored.
async fn replay_claimed(
    svc: &Services,
    held: HeldWork,
    experiment_id: &str,
    item_id: &str,
    candidate: &str,
) -> Result<JobOutcome, WorkerError> {
    let key = evaltap_store::replay_work_key(item_id, candidate);
    let experiment = match svc.experiment(experiment_id).await {
        Ok(experiment) => experiment,
        Err(err) => {
            held.release(svc).await;
            return Err(err.into());
        }
    };
    let result = replay_held(svc, &experiment, item_id, candidate, &key).await;
    if result.is_err() {
        held.release(svc).await;
    } else if matches!(result, Ok(JobOutcome::Deferred)) {
        held.defer(svc).await;
    } else if held.claims() > 1 {
        tracing::info!(experiment_id, item_id, candidate, "replayed after taking over a claim");
    }
    result
}

/// The outcome of a replay job whose replay is already stored: its judgments still missing.
async fn already_replayed(
    svc: &Services,
    experiment: &evaltap_store::Experiment,
    item_id: &str,
    candidate: &str,
) -> Result<JobOutcome, WorkerError> {
    let stored = svc.store.replay(&experiment.id, item_id, candidate).await?;
    let follow_up = match stored {
        Some(replay) if replay.error.is_none() => {
            missing_judgments(svc, judge_jobs(&experiment.id, item_id, candidate, &experiment.spec)).await?
        }
        _ => Vec::new(),
    };
    Ok(JobOutcome::AlreadyDone { follow_up })
}

/// The replay itself, by the worker holding its claim.
async fn replay_held(
    svc: &Services,
    experiment: &evaltap_store::Experiment,
    item_id: &str,
    candidate: &str,
    key: &str,
) -> Result<JobOutcome, WorkerError> {
    let experiment_id = experiment.id.as_str();
    let follow_up = judge_jobs(experiment_id, item_id, candidate, &experiment.spec);
    let config = experiment.spec.candidates.iter().find(|c| c.name == candidate).ok_or_else(|| {
        WorkerError::Missing(format!("experiment {experiment_id} has no candidate `{candidate}`"))
    })?;
    let item = match load_item(svc, &experiment.spec, item_id).await {
        Ok(item) => item,
        Err(err) if unreadable(&err) => {
            // A row that does not read back fails this replay, visibly, instead of failing the
            // job forever (the experiment still completes).
            let error = format!("the item does not read back: {err}");
            let mut record = ReplayRecord::new(
                experiment_id,
                experiment.spec.item_kind(),
                item_id,
                candidate,
                &config.model,
            );
            record.error = Some(error.clone());
            svc.store.insert_replay(&record).await?;
            return Ok(JobOutcome::Failed { error });
        }
        Err(err) => return Err(err),
    };
    let capped = experiment.spec.spend_cap_usd.is_some();
    let mut body = replay_body(&item.request, &config.model, &config.params);
    drop_params(&mut body, &config.drop_params);
    let mut record = ReplayRecord::new(experiment_id, item.kind, item_id, candidate, &config.model);
    let bound_output = capped || evaltap_providers::api::requires_output_limit(config.api);
    let estimate = config.price.cost(replay_bound(&item, &mut body, bound_output));
    // Carried to the candidate's API before anything is paid: what it cannot carry is skipped,
    // with the reason, and counted.
    let body = match evaltap_providers::api::to_api(&body, config.api) {
        Ok(body) => body,
        Err(untranslatable) => {
            let reason = format!("{}{untranslatable}", evaltap_store::UNSUPPORTED_PREFIX);
            record.error = Some(reason.clone());
            record.skipped = Some(reason.clone());
            return store_replay(svc, experiment, &record, JobOutcome::Failed { error: reason }).await;
        }
    };
    // Without a cap there is nothing to reserve against: only the actual cost is recorded.
    let reservation = match experiment.spec.spend_cap_usd {
        None => None,
        Some(_) => match reserve_in_line(svc, experiment_id, SpendKind::Replay, key, estimate).await? {
            Reserve::Reserved(reservation) => Some(reservation),
            Reserve::Wait => return Ok(JobOutcome::Deferred),
            Reserve::Exhausted => {
                let reason = SPEND_CAP_REACHED.to_string();
                record.error = Some(reason.clone());
                record.skipped = Some(reason.clone());
                return store_replay(svc, experiment, &record, JobOutcome::Failed { error: reason }).await;
            }
        },
    };
    let client = svc.candidate_client(config);
    let result = if capped { client.paying_once().chat(&body).await } else { client.chat(&body).await };
    let paid = match &result {
        Ok(done) => done.usage.map_or(Paid::Presumed(estimate), |u| Paid::Actual(config.price.cost(u))),
        // An answer lost after sending may have been billed: counted at its bound.
        Err(err) if err.may_have_been_billed() => Paid::Presumed(estimate),
        Err(_) => Paid::Actual(0.0),
    };
    svc.store.settle_spend(experiment_id, SpendKind::Replay, reservation.as_ref(), paid).await?;
    let outcome = match result {
        Ok(done) => {
            record.cost_usd = done.usage.map(|u| config.price.cost(u));
            record.usage = done.usage;
            record.latency_ms = Some(done.latency_ms);
            record.output_text = Some(done.text);
            record.finish_reason =
                done.response.pointer("/choices/0/finish_reason").and_then(Value::as_str).map(str::to_string);
            record.response = Some(done.response);
            JobOutcome::Stored { follow_up, first_claimed: None }
        }
        Err(err) => {
            tracing::warn!(%err, experiment_id, item_id, candidate, "replay failed");
            record.error = Some(err.to_string());
            JobOutcome::Failed { error: err.to_string() }
        }
    };
    store_replay(svc, experiment, &record, outcome).await
}

/// Stores a replay (finishing its claim) and, for a successful one, registers its judgments
/// in the same transaction, the first claimed by this worker; a replay stored first by another
/// worker stands.
async fn store_replay(
    svc: &Services,
    experiment: &evaltap_store::Experiment,
    record: &ReplayRecord,
    outcome: JobOutcome,
) -> Result<JobOutcome, WorkerError> {
    let stored = match outcome {
        JobOutcome::Stored { follow_up, .. } => {
            let keys: Vec<String> = follow_up.iter().map(EvalJob::work_key).collect();
            let (inserted, first_claimed) =
                svc.store.insert_replay_with_follow_ups(record, &keys, &svc.owner, svc.lease).await?;
            inserted.then_some(JobOutcome::Stored { follow_up, first_claimed })
        }
        outcome => svc.store.insert_replay(record).await?.then_some(outcome),
    };
    match stored {
        Some(outcome) => Ok(outcome),
        None => already_replayed(svc, experiment, &record.item_id, &record.candidate).await,
    }
}

/// A subject's answer to an item: its text, and the whole response when there is one.
struct Answer {
    text: String,
    response: Option<Value>,
}

impl Answer {
    /// The answer as the judge is shown it: its text and the tool calls it makes (a tool-call
    /// answer is not an empty one).
    fn for_judge(&self) -> String {
        self.response
            .as_ref()
            .map(chat::answer_text)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| self.text.clone())
    }
}

/// The answer of `subject` (`baseline` or a candidate) to an item. The baseline's is the
/// production response, the item's reference, or the baseline model's replay.
async fn subject_answer(
    svc: &Services,
    experiment: &evaltap_store::Experiment,
    item: &JobItem,
    subject: &str,
) -> Result<Answer, WorkerError> {
    let spec = &experiment.spec;
    let replayed = match (subject, &spec.baseline) {
        (BASELINE, BaselineSpec::Production) => {
            let response = item.production.clone().ok_or_else(|| {
                WorkerError::Missing(format!("item {} has no production response", item.id))
            })?;
            return Ok(Answer { text: chat::response_text(&response), response: Some(response) });
        }
        (BASELINE, BaselineSpec::Reference) => {
            let text = item
                .reference
                .clone()
                .ok_or_else(|| WorkerError::Missing(format!("item {} has no reference answer", item.id)))?;
            return Ok(Answer { text, response: None });
        }
        (BASELINE, BaselineSpec::Candidate { name }) => name.as_str(),
        (candidate, _) => candidate,
    };
    let item_id = &item.id;
    let replay =
        svc.store.replay(&experiment.id, item_id, replayed).await?.ok_or_else(|| {
            WorkerError::Missing(format!("no replay of {item_id} by `{replayed}` to judge"))
        })?;
    let text = replay
        .output_text
        .ok_or_else(|| WorkerError::Missing(format!("the replay of {item_id} by `{replayed}` failed")))?;
    Ok(Answer { text, response: replay.response })
}

/// The checks named `name` that apply to an item: its own, and the run's.
fn checks_named(spec: &ExperimentSpec, item: &JobItem, name: &str) -> Result<Vec<Check>, String> {
    let mut checks: Vec<Check> = item.checks.iter().filter(|c| c.name() == name).cloned().collect();
    for value in &spec.checks {
        let check = Check::parse(value).map_err(|e| format!("the run's check does not load: {e}"))?;
        if check.name() == name {
            checks.push(check);
        }
    }
    Ok(checks)
}

/// The candidate's score in one pairwise order: 1 if it won, 0 if it lost, ½ for a tie.
fn candidate_score(position: &str, winner: Winner) -> f64 {
    let candidate_is_a = position == "ba";
    match winner {
        Winner::Tie => 0.5,
        Winner::A if candidate_is_a => 1.0,
        Winner::B if !candidate_is_a => 1.0,
        _ => 0.0,
    }
}

/// Scores a response to an exchange with a rubric: pointwise (`position` '') the baseline's or
/// a candidate's; pairwise the candidate against the baseline in the order `position` names.
///
/// Uses the rubric text and judge the experiment froze. An unreadable answer is asked again
/// (with backoff) before the judgment is stored as failed, with the judge's raw answer kept.
/// Judge calls reserve their estimated cost against the experiment's cap first and settle what
/// they cost after; past the cap the judgment is stored as skipped.
pub async fn judge(
    svc: &Services,
    experiment_id: &str,
    item_id: &str,
    subject: &str,
    rubric: &str,
    position: &str,
) -> Result<JobOutcome, WorkerError> {
    let key = evaltap_store::judgment_work_key(item_id, subject, rubric, position);
    match claims::acquire(svc, experiment_id, &key).await? {
        Acquired::Finished => Ok(JobOutcome::AlreadyDone { follow_up: Vec::new() }),
        Acquired::Held(held) => {
            judge_claimed(svc, held, experiment_id, item_id, subject, rubric, position).await
        }
    }
}

/// [`judge`] by the worker that holds the judgment's claim; the claim is given back to the
/// queue if the judgment cannot be stored.
async fn judge_claimed(
    svc: &Services,
    held: HeldWork,
    experiment_id: &str,
    item_id: &str,
    subject: &str,
    rubric: &str,
    position: &str,
) -> Result<JobOutcome, WorkerError> {
    let key = evaltap_store::judgment_work_key(item_id, subject, rubric, position);
    let result = judge_held(svc, experiment_id, item_id, subject, rubric, position, &key).await;
    if matches!(result, Ok(JobOutcome::Deferred)) {
        held.defer(svc).await;
    } else if !matches!(result, Ok(JobOutcome::Stored { .. } | JobOutcome::Failed { .. })) {
        held.release(svc).await;
    }
    result
}

/// The judgment itself, by the worker holding its claim.
async fn judge_held(
    svc: &Services,
    experiment_id: &str,
    item_id: &str,
    subject: &str,
    rubric: &str,
    position: &str,
    key: &str,
) -> Result<JobOutcome, WorkerError> {
    let experiment = svc.experiment(experiment_id).await?;
    let mut record = JudgmentRecord::new(experiment_id, item_id, subject, rubric, position);
    record.item_kind = experiment.spec.item_kind().into();
    let item = match load_item(svc, &experiment.spec, item_id).await {
        Ok(item) => item,
        Err(err) if unreadable(&err) => {
            let error = format!("the item does not read back: {err}");
            record.error = Some(error.clone());
            return store_judgment(svc, &record, JobOutcome::Failed { error }).await;
        }
        Err(err) => return Err(err),
    };
    let answer = subject_answer(svc, &experiment, &item, subject).await?;
    record.item_kind = item.kind.into();
    if let Some(name) = rubric.strip_prefix(CHECK_PREFIX) {
        return check(svc, &experiment.spec, &item, &answer, name, record).await;
    }
    let response_text = answer.for_judge();
    // Pairwise rubrics compare with the baseline's answer; read it before reserving spend.
    let baseline = if position.is_empty() {
        String::new()
    } else {
        subject_answer(svc, &experiment, &item, BASELINE).await?.for_judge()
    };
    let request = &item.request;
    let rubrics = svc.rubrics_for(experiment_id, &experiment.spec);
    let outcome = match (svc.judge_for(&experiment.spec), rubrics) {
        (None, _) => Err("no [judge] is configured in evaltap.toml".to_string()),
        (_, Err(err)) => Err(format!("the experiment's frozen rubrics do not load: {err}")),
        (Some((judge, config)), Ok(rubrics)) => {
            let samples = if position.is_empty() { experiment.spec.judge_samples.max(1) } else { 1 };
            // From the experiment's name and the item's content, not row ids: the same run of the
            // same traffic (a test, a re-run under the same name) asks the judge as before.
            let content = evaltap_core::sampling::content_hash(&[request]).to_string();
            let seed =
                evaltap_judge::judgment_seed(&[&experiment.spec.name, &content, subject, rubric, position]);
            // Reserve before paying, at the most the judgment can cost: its prompt's bytes and
            // the output limit its calls carry, for every call it may make.
            let capped = experiment.spec.spend_cap_usd.is_some();
            let judge = if capped { judge.bounded(config.output_bound()) } else { judge };
            let prompt = if position.is_empty() {
                let subject =
                    Subject { request, response: &response_text, reference: item.reference.as_deref() };
                rubrics.render(rubric, subject)
            } else {
                rubrics.render_pair(rubric, request, &baseline, &response_text)
            };
            let input_tokens = prompt.as_ref().map_or(0, |prompt| {
                evaltap_core::pricing::input_tokens_bound(
                    &serde_json::json!({"messages": [{"role": "user", "content": prompt}]}),
                )
            });
            let estimate = config.price().cost(evaltap_core::Usage {
                input_tokens,
                output_tokens: config.output_bound(),
                ..Default::default()
            }) * evaltap_judge::Judge::most_calls(samples) as f64;
            let reservation = if capped {
                match reserve_in_line(svc, experiment_id, SpendKind::Judge, key, estimate).await? {
                    Reserve::Reserved(reservation) => Some(reservation),
                    Reserve::Wait => return Ok(JobOutcome::Deferred),
                    Reserve::Exhausted => None,
                }
            } else {
                None
            };
            if capped && reservation.is_none() {
                let reason = SPEND_CAP_REACHED.to_string();
                record.error = Some(reason.clone());
                record.skipped = Some(reason.clone());
                Err(reason)
            } else {
                let result = if position.is_empty() {
                    let subject =
                        Subject { request, response: &response_text, reference: item.reference.as_deref() };
                    judge.grade(&rubrics, rubric, subject, samples, seed).await.map(|graded| {
                        let mean = graded.mean();
                        if graded.samples.len() > 1 {
                            record.score_samples =
                                Some(graded.samples.iter().map(|s| s.normalized).collect());
                        }
                        (mean.raw, mean.normalized, mean.reason, graded.calls)
                    })
                } else {
                    let (a, b) = if position == "ba" {
                        (&response_text, &baseline)
                    } else {
                        (&baseline, &response_text)
                    };
                    judge.prefer(&rubrics, rubric, request, (a, b), seed).await.map(
                        |(winner, reason, calls)| {
                            let score = candidate_score(position, winner);
                            (score, score, reason, calls)
                        },
                    )
                };
                let calls = match &result {
                    Ok((.., calls)) => calls.clone(),
                    Err(failure) => failure.calls.clone(),
                };
                let actual = config.price().cost(calls.usage);
                // A call whose answer was lost after sending may have been billed: one call's
                // bound on top of what the answered calls cost.
                let lost = match &result {
                    Err(failure) => {
                        matches!(&failure.error, JudgeError::Provider(e) if e.may_have_been_billed())
                    }
                    Ok(_) => false,
                };
                let paid = if lost {
                    Paid::Presumed(actual + estimate / evaltap_judge::Judge::most_calls(samples) as f64)
                } else {
                    Paid::Actual(actual)
                };
                svc.store.settle_spend(experiment_id, SpendKind::Judge, reservation.as_ref(), paid).await?;
                record.raw_output = calls.raw_output.clone();
                record.attempts = i64::from(calls.attempts);
                record.judge_model = Some(calls.model.clone()).filter(|m| !m.is_empty());
                if calls.attempts > 0 {
                    record.input_tokens = Some(calls.usage.input_tokens as i64);
                    record.output_tokens = Some(calls.usage.output_tokens as i64);
                    record.cost_usd = Some(actual);
                }
                result
                    .map(|(raw, normalized, reason, _)| (raw, normalized, reason))
                    .map_err(|f| f.error.to_string())
            }
        }
    };
    let outcome = match outcome {
        Ok((raw, normalized, reason)) => {
            record.raw_score = Some(raw);
            record.score = Some(normalized);
            record.reason = Some(reason);
            JobOutcome::Stored { follow_up: Vec::new(), first_claimed: None }
        }
        Err(err) => {
            tracing::warn!(%err, experiment_id, item_id, subject, rubric, position, "judgment failed");
            record.error = Some(err.clone());
            JobOutcome::Failed { error: err }
        }
    };
    store_judgment(svc, &record, outcome).await
}

/// The first tool call of a chat-completions response as `{"name", "arguments"}` JSON, the
/// shape `tool_call` checks compare with.
fn first_tool_call(response: &Value) -> Option<String> {
    let call = response.pointer("/choices/0/message/tool_calls/0/function")?;
    let name = call.get("name")?.as_str()?;
    let arguments = match call.get("arguments") {
        Some(Value::String(raw)) => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone())),
        Some(other) => other.clone(),
        None => Value::Null,
    };
    Some(serde_json::json!({"name": name, "arguments": arguments}).to_string())
}

/// A deterministic check: pass (1) when every check of that name on the item passes, fail (0)
/// otherwise; no model is called. An item without such a check is recorded as not applicable.
async fn check(
    svc: &Services,
    spec: &ExperimentSpec,
    item: &JobItem,
    answer: &Answer,
    name: &str,
    mut record: JudgmentRecord,
) -> Result<JobOutcome, WorkerError> {
    record.attempts = 0;
    // What each check compares with: the item's reference; on production traffic, the
    // production answer's own tool call for `tool_call`.
    let production_call = item.production.as_ref().and_then(first_tool_call);
    let reference = item.reference.clone().or(production_call);
    let applicable = checks_named(spec, item, name).map(|checks| {
        checks
            .into_iter()
            .filter_map(|c| c.for_request(&item.request))
            .filter(|c| !(matches!(c, Check::ToolCall { name: None, .. }) && reference.is_none()))
            .collect::<Vec<_>>()
    });
    let outcome = match applicable {
        Ok(checks) if checks.is_empty() => {
            record.skipped = Some(NOT_APPLICABLE.into());
            JobOutcome::Failed { error: NOT_APPLICABLE.into() }
        }
        Ok(checks) => {
            let results: Result<Vec<bool>, _> = checks
                .iter()
                .map(|c| c.passes(&answer.text, answer.response.as_ref(), reference.as_deref()))
                .collect();
            match results {
                Ok(passes) => {
                    let passed = passes.iter().all(|p| *p);
                    let score = f64::from(u8::from(passed));
                    record.raw_score = Some(score);
                    record.score = Some(score);
                    record.reason = Some(format!(
                        "{} of {} `{name}` checks passed",
                        passes.iter().filter(|p| **p).count(),
                        passes.len()
                    ));
                    JobOutcome::Stored { follow_up: Vec::new(), first_claimed: None }
                }
                Err(err) => {
                    record.error = Some(err.to_string());
                    JobOutcome::Failed { error: err.to_string() }
                }
            }
        }
        Err(err) => {
            record.error = Some(err.clone());
            JobOutcome::Failed { error: err }
        }
    };
    store_judgment(svc, &record, outcome).await
}

/// Why a check judgment has no score when the item carries no check of that name.
pub const NOT_APPLICABLE: &str = "not applicable: the item has no such check";

/// Stores a judgment; a judgment another worker stored first stands, and this job is a no-op.
async fn store_judgment(
    svc: &Services,
    record: &JudgmentRecord,
    outcome: JobOutcome,
) -> Result<JobOutcome, WorkerError> {
    if svc.store.insert_judgment(record).await? {
        Ok(outcome)
    } else {
        Ok(JobOutcome::AlreadyDone { follow_up: Vec::new() })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(usage: Option<evaltap_core::Usage>) -> JobItem {
        JobItem {
            kind: ITEM_EXCHANGE,
            id: "x".into(),
            request: json!({"messages": [{"role": "user", "content": "What is 2 + 2?"}]}),
            production: None,
            usage,
            reference: None,
            checks: Vec::new(),
        }
    }

    #[test]
    fn refused_params_are_dropped_from_the_replay() {
        let mut body = json!({"model": "o4", "temperature": 0.3, "top_p": 0.9, "messages": []});
        drop_params(&mut body, &["temperature".to_string(), "logprobs".to_string()]);
        assert_eq!(body, json!({"model": "o4", "top_p": 0.9, "messages": []}));
    }

    #[test]
    fn a_capped_replay_without_a_limit_is_given_the_bound_it_reserves() {
        let production = evaltap_core::Usage { input_tokens: 12, output_tokens: 800, ..Default::default() };
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "What is 2 + 2?"}]});
        let bound = replay_bound(&item(Some(production)), &mut body, true);
        assert_eq!(bound.output_tokens, 1600, "twice the production answer");
        assert_eq!(body["max_tokens"], 1600, "the call carries the bound it reserved");
        assert_eq!(bound.input_tokens, body.to_string().len() as u64);

        let mut short = json!({"model": "m", "messages": []});
        assert_eq!(replay_bound(&item(None), &mut short, true).output_tokens, REPLAY_OUTPUT_TOKENS_FLOOR);
        assert_eq!(short["max_tokens"], REPLAY_OUTPUT_TOKENS_FLOOR);
    }

    #[test]
    fn a_limit_of_the_request_or_the_candidate_stands_and_an_uncapped_replay_is_sent_as_captured() {
        let mut own = json!({"model": "m", "messages": [], "max_completion_tokens": 64});
        assert_eq!(replay_bound(&item(None), &mut own, true).output_tokens, 64);
        assert!(own.get("max_tokens").is_none());
        let mut uncapped = json!({"model": "m", "messages": []});
        assert_eq!(replay_bound(&item(None), &mut uncapped, false).output_tokens, REPLAY_OUTPUT_TOKENS_FLOOR);
        assert!(uncapped.get("max_tokens").is_none(), "without a cap the request is not changed");
    }
}
