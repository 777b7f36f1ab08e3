//! Replaying an item against a candidate (or a replayed baseline): claimed, reserved under the
//! spend cap, called once, stored.

use evaltap_providers::replay_body;
use evaltap_store::{Paid, ReplayRecord, Reserve, SpendKind};
use serde_json::Value;

use crate::{Services, WorkerError};

use super::*;

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

/// Replays an item against a candidate and stores the response, usage, cost and latency, or
/// the error, by the worker holding the replay's claim.
pub(super) async fn replay_held(
    svc: &Services,
    experiment_id: &str,
    item_id: &str,
    candidate: &str,
) -> Result<JobOutcome, WorkerError> {
    let experiment = &svc.experiment(experiment_id).await?;
    let key = &evaltap_store::replay_work_key(item_id, candidate);
    let follow_up = replay_follow_ups(experiment_id, item_id, candidate, &experiment.spec);
    let config = experiment.spec.candidates.iter().find(|c| c.name == candidate).ok_or_else(|| {
        WorkerError::Missing(format!("experiment {experiment_id} has no candidate `{candidate}`"))
    })?;
    // Early stopping: a candidate whose verdict is settled makes no more calls (a call its
    // batch already answered was paid for: it is stored, and settles its reservation).
    if experiment.spec.early_stop
        && svc.is_settled(experiment_id, candidate).await?
        && (!config.batch || svc.store.batch_answers(experiment_id, key).await?.is_empty())
    {
        // A reservation left by a worker that died before parking its call: nothing went out.
        if config.batch
            && let Some(held) = svc.store.held_reservation(experiment_id, key).await?
        {
            svc.store.settle_spend(experiment_id, SpendKind::Replay, Some(&held), Paid::Actual(0.0)).await?;
        }
        let mut record =
            ReplayRecord::new(experiment_id, experiment.spec.item_kind(), item_id, candidate, &config.model);
        record.error = Some(evaltap_store::SETTLED.into());
        record.skipped = Some(evaltap_store::SETTLED.into());
        return store_replay(
            svc,
            experiment,
            &record,
            JobOutcome::Failed { error: evaltap_store::SETTLED.into() },
        )
        .await;
    }
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
    let factor = config.price_factor();
    let estimate = config.price.cost(replay_bound(&item, &mut body, bound_output)) * factor;
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
    // Paid for before (same request, endpoint and model): read back, not paid again.
    let cache_key = experiment.spec.use_cache.then(|| crate::cache::replay_key(config, &body));
    if let Some(key) = &cache_key
        && let Some(hit) = svc
            .store
            .cached::<crate::cache::CachedReplay>(evaltap_store::REPLAY_CACHE, key, svc.cache_max_age)
            .await?
    {
        hit.fill(&mut record);
        return store_replay(svc, experiment, &record, JobOutcome::Stored { follow_up, first_claimed: None })
            .await;
    }
    // A call parked for a batch kept the reservation it made: its job, run again once the
    // batch answered, settles that one. Without a cap there is nothing to reserve against:
    // only the actual cost is recorded.
    let answers = match config.batch {
        true => match batch_answers(svc, experiment_id, key, candidate).await? {
            Some(answers) => Some(answers),
            None => return Ok(JobOutcome::WaitsForBatch),
        },
        false => None,
    };
    let parked_with = if config.batch { svc.store.held_reservation(experiment_id, key).await? } else { None };
    let reservation = match (parked_with, experiment.spec.spend_cap_usd) {
        (Some(held), _) => Some(held),
        (None, None) => None,
        (None, Some(_)) => match reserve_in_line(svc, experiment_id, SpendKind::Replay, key, estimate).await?
        {
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
    let client = match answers {
        Some(answers) => client.answering_from_batches(answers),
        None => client,
    };
    let result = if capped { client.paying_once().chat(&body).await } else { client.chat(&body).await };
    if let Err(evaltap_providers::ProviderError::Parked { body, .. }) = result {
        return Ok(JobOutcome::Parked { endpoint: candidate.to_string(), body });
    }
    let paid = match &result {
        Ok(done) => {
            done.usage.map_or(Paid::Presumed(estimate), |u| Paid::Actual(config.price.cost(u) * factor))
        }
        // An answer lost after sending may have been billed: counted at its bound.
        Err(err) if err.may_have_been_billed() => Paid::Presumed(estimate),
        Err(_) => Paid::Actual(0.0),
    };
    svc.store.settle_spend(experiment_id, SpendKind::Replay, reservation.as_ref(), paid).await?;
    let outcome = match result {
        Ok(done) => {
            record.cost_usd = done.usage.map(|u| config.price.cost(u) * factor);
            record.usage = done.usage;
            // A batched answer has no latency of its own (it came when its batch ended).
            record.latency_ms = (!config.batch).then_some(done.latency_ms);
            record.output_text = Some(done.text);
            record.finish_reason =
                done.response.pointer("/choices/0/finish_reason").and_then(Value::as_str).map(str::to_string);
            record.response = Some(done.response);
            if let Some(key) = &cache_key {
                let kept = crate::cache::CachedReplay::of(&record);
                svc.store.cache_result(evaltap_store::REPLAY_CACHE, key, &kept).await?;
            }
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
        None => {
            let job = EvalJob::Replay {
                experiment_id: experiment.id.clone(),
                item_id: record.item_id.clone(),
                candidate: record.candidate.clone(),
            };
            already_done(svc, &job).await
        }
    }
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
