//! Holding work while its model call runs: claim first, renew while calling, finish by storing
//! the result (the store marks the claim finished in the same transaction), release on failure.

use std::time::Duration;

use evaltap_store::{Claim, Lease, now_ms};

use crate::{Services, WorkerError};

/// Work this worker holds; the lease is renewed in the background until dropped.
pub(crate) struct HeldWork {
    lease: Lease,
    renewer: tokio::task::JoinHandle<()>,
}

impl HeldWork {
    /// Holds a claim already made (a batch claim, or work registered claimed), renewing it.
    pub(crate) fn hold(svc: &Services, lease: Lease) -> HeldWork {
        if lease.claims > 1 {
            tracing::info!(work = %lease.work_key, claims = lease.claims, "taking over work whose claimant stopped");
        }
        let renewer = tokio::spawn(renew(svc.clone(), lease.clone()));
        HeldWork { lease, renewer }
    }

    /// How many claims the work has had, this one included (more than one: a takeover).
    pub(crate) fn claims(&self) -> i64 {
        self.lease.claims
    }

    /// Gives the work up unfinished, to the job queue's retries.
    pub(crate) async fn release(self, svc: &Services) {
        self.renewer.abort();
        if let Err(err) = svc.store.release_lease(&self.lease).await {
            tracing::warn!(%err, work = %self.lease.work_key, "releasing a claim failed; it expires with its lease");
        }
    }
}

/// How long deferred work waits before it is ready again (calls in flight settle meanwhile).
pub(crate) const DEFER: std::time::Duration = std::time::Duration::from_millis(200);

impl HeldWork {
    /// Gives the work back unfinished for a moment: it waits for something else (room under
    /// the spend cap), and any worker claims it again after.
    pub(crate) async fn defer(self, svc: &Services, wait: Duration) {
        self.renewer.abort();
        let until = evaltap_store::now_ms().saturating_add(wait.as_millis() as i64);
        if let Err(err) = svc.store.defer_lease(&self.lease, until).await {
            tracing::warn!(%err, work = %self.lease.work_key, "deferring a claim failed; it expires with its lease");
        }
    }
}

/// How long a parked call's claim (and spend reservation) is held for its batch: past the
/// providers' 24-hour completion window, so a batch that ends answers its calls first.
const PARKED_FOR: Duration = Duration::from_secs(26 * 3600);

impl HeldWork {
    /// Parks the work's call `body` until a batch of `endpoint` (a candidate's name, or '' for
    /// the judge) answers it: the claim and the spend reservation pass to the batch.
    pub(crate) async fn park(self, svc: &Services, endpoint: &str, body: &serde_json::Value) {
        self.renewer.abort();
        let request_key = evaltap_providers::request_key(body);
        let custom_id = custom_id(&self.lease.work_key, &request_key);
        let until = now_ms().saturating_add(PARKED_FOR.as_millis() as i64);
        match svc.store.park_call(&self.lease, endpoint, &request_key, &custom_id, body, until).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(work = %self.lease.work_key, "the claim was lost before its call was parked")
            }
            Err(err) => {
                tracing::warn!(%err, work = %self.lease.work_key, "parking a call failed; it expires with its lease")
            }
        }
    }
}

/// A call's id within its batch: unique per unit of work and request, and within what both
/// OpenAI and Anthropic accept (`[a-zA-Z0-9_-]{1,64}`).
fn custom_id(work_key: &str, request_key: &str) -> String {
    let both = evaltap_providers::request_key(&serde_json::json!([work_key, request_key]));
    format!("c-{}", &both[..40])
}

impl Drop for HeldWork {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// What claiming found.
pub(crate) enum Acquired {
    /// This worker holds the work and is the one to call.
    Held(HeldWork),
    /// The work is finished (by this or another worker): call nothing.
    Finished,
}

/// Claims `work_key`, waiting while another live worker holds it (a duplicated or
/// re-delivered job): returns once this worker holds it, or it is finished.
pub(crate) async fn acquire(
    svc: &Services,
    experiment_id: &str,
    work_key: &str,
) -> Result<Acquired, WorkerError> {
    loop {
        match svc.store.claim_work(experiment_id, work_key, &svc.owner, svc.lease).await? {
            Claim::Claimed(lease) => return Ok(Acquired::Held(HeldWork::hold(svc, lease))),
            Claim::Finished => return Ok(Acquired::Finished),
            Claim::HeldElsewhere { expires_ms } => {
                let wait = (expires_ms - now_ms()).clamp(50, 1_000);
                tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
            }
        }
    }
}

async fn renew(svc: Services, lease: Lease) {
    let every = svc.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        match svc.store.renew_lease(&lease, svc.lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => tracing::warn!(%err, work = %lease.work_key, "renewing a claim failed; will retry"),
        }
    }
}
