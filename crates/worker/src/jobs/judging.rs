//! Judging a subject's answer to an item with a rubric or a check: claimed, reserved under the
//! spend cap, asked once per sample, stored.

use evaltap_core::chat;
use evaltap_golden::Check;
use evaltap_judge::Winner;
use evaltap_judge::{JudgeError, Subject};
use evaltap_store::{BASELINE, BaselineSpec, ExperimentSpec, JudgmentRecord, Paid, Reserve, SpendKind};
use serde_json::Value;

use crate::{Services, WorkerError};

use super::*;

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
/// Runs by the worker holding the judgment's claim.
pub(super) async fn judge_held(
    svc: &Services,
    experiment_id: &str,
    item_id: &str,
    subject: &str,
    rubric: &str,
    position: &str,
) -> Result<JobOutcome, WorkerError> {
    let key = &evaltap_store::judgment_work_key(item_id, subject, rubric, position);
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
    if subject == BASELINE && crate::early_stop::baseline_not_needed(svc, &experiment, item_id).await? {
        // Every candidate stopped before replaying this item: its baseline score pairs nothing.
        record.error = Some(evaltap_store::SETTLED.into());
        record.skipped = Some(evaltap_store::SETTLED.into());
        return store_judgment(svc, &record, JobOutcome::Failed { error: evaltap_store::SETTLED.into() })
            .await;
    }
    if subject != BASELINE && crate::early_stop::judgment_not_needed(svc, &experiment, subject, key).await? {
        // Its candidate stopped early after this answer was made: a pair judged after the
        // stop changes no verdict, so the judge is not paid for it.
        record.error = Some(evaltap_store::SETTLED.into());
        record.skipped = Some(evaltap_store::SETTLED.into());
        return store_judgment(svc, &record, JobOutcome::Failed { error: evaltap_store::SETTLED.into() })
            .await;
    }
    // The reference graded against itself is right by definition: full marks, no judge call
    // (the judgment that could not change a verdict costs nothing).
    if subject == BASELINE
        && let Some(frozen) = experiment.spec.reference_by_definition(rubric)
    {
        record.score = Some(1.0);
        record.raw_score = Some(frozen.scale_max);
        record.reason = Some(evaltap_store::REFERENCE_AGAINST_ITSELF.into());
        record.cost_usd = Some(0.0);
        return store_judgment(
            svc,
            &record,
            JobOutcome::Stored { follow_up: Vec::new(), first_claimed: None },
        )
        .await;
    }
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
    // Set once a paid judgment is to be kept for reuse.
    let mut cache_key: Option<String> = None;
    let outcome = match (svc.judge_for(&experiment.spec), rubrics) {
        (None, _) => Err("no [judge] is configured in evaltap.toml".to_string()),
        (_, Err(err)) => Err(format!("the experiment's frozen rubrics do not load: {err}")),
        (Some((judge, config)), Ok(rubrics)) => {
            let samples = if position.is_empty() { experiment.spec.judge_samples.max(1) } else { 1 };
            // From the experiment's name and the item's content, not row ids: the same run of the
            // same traffic (a test, a re-run under the same name) asks the judge as before.
            let content = evaltap_core::sampling::content_hash(&[request]).to_string();
            // With the cache on, the seed leaves the experiment's name and the subject out: the
            // same prompt to the same judge is the same judgment, whichever experiment asks and
            // whoever answered — an answer identical to one already judged (a candidate's to
            // production's, often) is read back, not paid for again. Its difference is then
            // exactly 0, as it is in truth: the judge's noise says nothing about identical text.
            let seed = if experiment.spec.use_cache {
                evaltap_judge::judgment_seed(&[&content, rubric, position])
            } else {
                evaltap_judge::judgment_seed(&[&experiment.spec.name, &content, subject, rubric, position])
            };
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
            if let (Ok(text), true) = (&prompt, experiment.spec.use_cache) {
                let rubric_sha = experiment.spec.frozen_rubric(rubric).map(|f| f.sha256.as_str());
                let key = crate::cache::judgment_key(
                    &config.model,
                    config.temperature,
                    samples,
                    rubric_sha,
                    text,
                    position,
                    seed,
                );
                if let Some(hit) = svc
                    .store
                    .cached::<crate::cache::CachedJudgment>(
                        evaltap_store::JUDGMENT_CACHE,
                        &key,
                        svc.cache_max_age,
                    )
                    .await?
                {
                    hit.fill(&mut record);
                    return store_judgment(
                        svc,
                        &record,
                        JobOutcome::Stored { follow_up: Vec::new(), first_claimed: None },
                    )
                    .await;
                }
                cache_key = Some(key);
            }
            let input_tokens = prompt.as_ref().map_or(0, |prompt| {
                evaltap_core::pricing::input_tokens_bound(
                    &serde_json::json!({"messages": [{"role": "user", "content": prompt}]}),
                )
            });
            let estimate = config.price().cost(evaltap_core::Usage {
                input_tokens,
                output_tokens: config.output_bound(),
                ..Default::default()
            }) * evaltap_judge::Judge::most_calls(samples) as f64
                * config.price_factor();
            // A judgment whose call was parked for a batch kept the reservation it made.
            let answers = match config.batch {
                true => match batch_answers(svc, experiment_id, key, "").await? {
                    Some(answers) => Some(answers),
                    None => return Ok(JobOutcome::WaitsForBatch),
                },
                false => None,
            };
            let parked_with =
                if config.batch { svc.store.held_reservation(experiment_id, key).await? } else { None };
            let reservation = match parked_with {
                Some(held) => Some(held),
                None if capped => {
                    match reserve_in_line(svc, experiment_id, SpendKind::Judge, key, estimate).await? {
                        Reserve::Reserved(reservation) => Some(reservation),
                        Reserve::Wait => return Ok(JobOutcome::Deferred),
                        Reserve::Exhausted => None,
                    }
                }
                None => None,
            };
            let judge = match answers {
                Some(answers) => judge.answering_from_batches(answers),
                None => judge,
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
                if let Err(failure) = &result
                    && let JudgeError::Provider(evaltap_providers::ProviderError::Parked { body, .. }) =
                        &failure.error
                {
                    return Ok(JobOutcome::Parked { endpoint: String::new(), body: body.clone() });
                }
                let calls = match &result {
                    Ok((.., calls)) => calls.clone(),
                    Err(failure) => failure.calls.clone(),
                };
                let actual = config.price().cost(calls.usage) * config.price_factor();
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
            if let Some(key) = &cache_key {
                let kept = crate::cache::CachedJudgment::of(&record);
                svc.store.cache_result(evaltap_store::JUDGMENT_CACHE, key, &kept).await?;
            }
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
