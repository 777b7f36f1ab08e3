//! Driving batches: every worker groups parked calls into batches and takes batches no live
//! worker drives (never driven, or whose driver's lease ran out), then submits and polls each
//! until it ends, and stores its answers — which makes their work ready, so the jobs run again
//! and read their answers.
//!
//! Nothing is submitted twice: a worker records that it is submitting a batch before asking
//! the provider, and a worker taking over a batch left `submitting` first looks for it at the
//! provider — by the tag in its metadata on OpenAI's interface; by size and time on
//! Anthropic's, which takes no metadata, checked on the results (a batch that was another's is
//! not taken for this one: this one is submitted after all).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evaltap_providers::{BatchClient, BatchRequest, BatchState, ProviderError};
use evaltap_store::BatchRow;

use crate::Services;

/// How often a worker looks for parked calls to group and batches to drive.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Why a call a batch ended without answering has no answer (it never ran: not billed).
fn unanswered(status: &str) -> String {
    format!("the batch ended ({status}) before this request ran")
}

/// Groups parked calls and drives batches until `stop`; batches in hand are given back then.
pub(crate) async fn keep(svc: Services, mut stop: tokio::sync::watch::Receiver<bool>) {
    let driving: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut drivers = tokio::task::JoinSet::new();
    loop {
        while drivers.try_join_next().is_some() {}
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
        if let Err(err) = svc.store.group_parked_calls(svc.batching.max_requests, svc.batching.wait).await {
            tracing::debug!(%err, "grouping parked calls failed; will retry");
        }
        match svc.store.has_undriven_batches().await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                tracing::debug!(%err, "looking for batches failed; will retry");
                continue;
            }
        }
        match svc.store.claim_batches(&svc.owner, svc.lease).await {
            Ok(batches) => {
                for batch in batches {
                    if !driving.lock().unwrap_or_else(|p| p.into_inner()).insert(batch.id.clone()) {
                        continue;
                    }
                    let (svc, driving, stop) = (svc.clone(), driving.clone(), stop.clone());
                    drivers.spawn(async move {
                        let id = batch.id.clone();
                        drive(&svc, batch, stop).await;
                        driving.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    });
                }
            }
            Err(err) => tracing::debug!(%err, "taking batches failed; will retry"),
        }
    }
    while drivers.join_next().await.is_some() {}
}

/// Drives one batch to its end, renewing its lease; gives it back when stopped.
async fn drive(svc: &Services, mut batch: BatchRow, mut stop: tokio::sync::watch::Receiver<bool>) {
    let client = match svc.experiment(&batch.experiment_id).await {
        Ok(experiment) => svc.batch_client(&experiment.spec, &batch.endpoint),
        Err(err) => {
            tracing::warn!(%err, batch = %batch.id, "the batch's experiment does not load; will retry");
            None
        }
    };
    let Some(client) = client else {
        tracing::warn!(batch = %batch.id, endpoint = %batch.endpoint, "no endpoint for this batch; left to its lease");
        return;
    };
    // Renewed a few times per lease; the provider is asked every `poll`.
    let beat = (svc.lease / 3).min(svc.batching.poll);
    let mut next_poll = tokio::time::Instant::now();
    loop {
        if *stop.borrow() {
            if let Err(err) = svc.store.release_batch(&batch.id, &svc.owner).await {
                tracing::debug!(%err, batch = %batch.id, "giving a batch back failed; it expires with its lease");
            }
            return;
        }
        match svc.store.renew_batch(&batch.id, &svc.owner, svc.lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::debug!(%err, batch = %batch.id, "renewing a batch's lease failed; will retry")
            }
        }
        if tokio::time::Instant::now() >= next_poll {
            match step(svc, &client, &mut batch).await {
                Ok(Step::Ended) => return,
                Ok(Step::Submitted) => next_poll = tokio::time::Instant::now() + svc.batching.poll,
                Ok(Step::Running) => next_poll = tokio::time::Instant::now() + svc.batching.poll,
                Err(err) => {
                    tracing::warn!(%err, batch = %batch.id, "a batch's provider call failed; will retry");
                    next_poll = tokio::time::Instant::now() + svc.batching.poll;
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(beat.min(next_poll.saturating_duration_since(tokio::time::Instant::now()))) => {}
        }
    }
}

/// What one step of driving a batch did.
enum Step {
    Submitted,
    Running,
    Ended,
}

#[derive(Debug, thiserror::Error)]
enum DriveError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] evaltap_store::StoreError),
}

/// Submits the batch (or finds it submitted), or polls it and, once ended, stores its answers.
async fn step(svc: &Services, client: &BatchClient, batch: &mut BatchRow) -> Result<Step, DriveError> {
    let provider_id = match &batch.provider_id {
        Some(id) => id.clone(),
        None => return submit(svc, client, batch).await,
    };
    let (status, files) = match client.state(&provider_id).await? {
        BatchState::Running => return Ok(Step::Running),
        BatchState::Ended { status, files } => (status, files),
    };
    let answers = client.answers(&files).await?;
    // A batch found at the provider by its size and time (Anthropic's) whose results are not
    // this batch's requests was another's: this one is submitted after all.
    let ours: HashSet<String> =
        svc.store.batch_requests(&batch.id).await?.into_iter().map(|(custom_id, _)| custom_id).collect();
    if !answers.is_empty() && !answers.iter().any(|(custom_id, _)| ours.contains(custom_id)) {
        tracing::warn!(batch = %batch.id, provider = %provider_id, "the batch found at the provider was another's; submitting this one");
        svc.store.batch_mismatched(&batch.id, &svc.owner).await?;
        batch.provider_id = None;
        batch.status = "new".into();
        return Ok(Step::Submitted);
    }
    svc.store.end_batch(&batch.id, &svc.owner, &status, &answers, &unanswered(&status)).await?;
    let failed = answers.iter().filter(|(_, a)| a.is_err()).count();
    tracing::info!(batch = %batch.id, provider = %provider_id, %status, answers = answers.len(), failed, "batch ended");
    Ok(Step::Ended)
}

/// The provider's batch a worker that died while submitting `batch` created, if any.
async fn find_submitted(
    svc: &Services,
    client: &BatchClient,
    batch: &BatchRow,
) -> Result<Option<String>, DriveError> {
    let since_ms = batch.submitting_ms.unwrap_or(0);
    // Provider ids evaltap recorded for batches formed in the day before: those are taken.
    let taken: HashSet<String> =
        svc.store.recorded_provider_ids(since_ms - 86_400_000).await?.into_iter().collect();
    let requests = usize::try_from(batch.requests).unwrap_or(0);
    Ok(client.find(&batch.id, since_ms / 1000, requests, &taken).await?)
}

async fn submit(svc: &Services, client: &BatchClient, batch: &mut BatchRow) -> Result<Step, DriveError> {
    // A worker died while submitting it: it may exist at the provider already.
    if batch.status == "submitting"
        && let Some(found) = find_submitted(svc, client, batch).await?
    {
        tracing::info!(batch = %batch.id, provider = %found, "found a batch submitted before a restart; polling it");
        svc.store.batch_submitted(&batch.id, &svc.owner, &found).await?;
        batch.provider_id = Some(found);
        return Ok(Step::Submitted);
    }
    if !svc.store.batch_submitting(&batch.id, &svc.owner).await? {
        return Ok(Step::Ended);
    }
    batch.status = "submitting".into();
    let requests: Vec<BatchRequest> = svc
        .store
        .batch_requests(&batch.id)
        .await?
        .into_iter()
        .map(|(custom_id, body)| BatchRequest { custom_id, body })
        .collect();
    match client.submit(&batch.id, &requests).await {
        Ok(provider_id) => {
            svc.store.batch_submitted(&batch.id, &svc.owner, &provider_id).await?;
            tracing::info!(batch = %batch.id, provider = %provider_id, requests = requests.len(), "batch submitted");
            batch.provider_id = Some(provider_id);
            batch.status = "submitted".into();
            Ok(Step::Submitted)
        }
        // The provider refuses the batch itself: its calls are answered with why (not billed),
        // so their jobs store failures and release their reservations.
        Err(ProviderError::Status { status, body, .. }) if (400..500).contains(&status) && status != 429 => {
            let reason = format!("the provider refused the batch ({status}): {body}");
            svc.store.end_batch(&batch.id, &svc.owner, "refused", &[], &reason).await?;
            tracing::warn!(batch = %batch.id, %reason, "batch refused");
            Ok(Step::Ended)
        }
        Err(err) => Err(err.into()),
    }
}
