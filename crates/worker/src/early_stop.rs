//! Early stopping inside the worker: after judgments land, the experiment's results are read
//! (per experiment and process, after every 50 judgments or a second, whichever comes first)
//! and every candidate they settle is recorded; its replays not yet made are then skipped (`jobs::replaying`), and so are the
//! baseline judgments no candidate will pair with.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use evaltap_store::Experiment;

use crate::{Services, WorkerError};

/// A process looks at one experiment's results again after this many judgments it stored…
const LOOK_AFTER_JUDGMENTS: u64 = 50;
/// …or this long, whichever comes first.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Per experiment: when this process last looked, and the judgments it stored since.
static LAST_LOOK: LazyLock<Mutex<HashMap<String, (Instant, u64)>>> = LazyLock::new(Mutex::default);

/// Whether this process should look at `experiment_id`'s results now, one judgment having
/// landed (and note that it does).
fn due(experiment_id: &str) -> bool {
    let Ok(mut last) = LAST_LOOK.lock() else { return false };
    let now = Instant::now();
    let entry = last.entry(experiment_id.to_string()).or_insert((now, 0));
    entry.1 += 1;
    if entry.1 >= LOOK_AFTER_JUDGMENTS || now.duration_since(entry.0) >= LOOK_EVERY {
        *entry = (now, 0);
        true
    } else {
        false
    }
}

/// Looks at the experiment's results after a judgment landed and settles the candidates they
/// settle. A failure here costs only the saving: it is logged, never fatal to the job.
pub(crate) async fn consider(svc: &Services, experiment_id: &str) {
    if !due(experiment_id) {
        return;
    }
    let result: Result<(), WorkerError> = async {
        let experiment = svc.experiment(experiment_id).await?;
        if !experiment.spec.early_stop {
            return Ok(());
        }
        let settled = svc.store.settled_candidates(experiment_id).await?;
        if experiment.spec.compared_candidates().all(|c| settled.iter().any(|s| s.candidate == c.name)) {
            return Ok(());
        }
        let segments = evaltap_report::segments::SegmentOptions::from(&svc.recommend);
        evaltap_report::early_stop::settle(&svc.store, &experiment, &segments).await?;
        Ok(())
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(%err, experiment_id, "early stopping could not read the results");
    }
}

/// Whether a judgment of `candidate`'s answer (work `key`) can be skipped: the candidate
/// stopped early (its answer was made before, or in flight then), and the judgment's call was
/// never parked for a batch — one parked holds its reservation and goes out with its batch.
pub(crate) async fn judgment_not_needed(
    svc: &Services,
    experiment: &Experiment,
    candidate: &str,
    key: &str,
) -> Result<bool, WorkerError> {
    if !experiment.spec.early_stop || !svc.is_settled(&experiment.id, candidate).await? {
        return Ok(false);
    }
    let batched = svc.judge_config(&experiment.spec).is_some_and(|config| config.batch);
    Ok(!batched || svc.store.held_reservation(&experiment.id, key).await?.is_none())
}

/// Whether the baseline's judgment of `item_id` can be skipped: every compared candidate has
/// stopped early and none replayed the item.
pub(crate) async fn baseline_not_needed(
    svc: &Services,
    experiment: &Experiment,
    item_id: &str,
) -> Result<bool, WorkerError> {
    if !experiment.spec.early_stop {
        return Ok(false);
    }
    let settled = svc.store.settled_candidates(&experiment.id).await?;
    for candidate in experiment.spec.compared_candidates() {
        if !settled.iter().any(|s| s.candidate == candidate.name) {
            return Ok(false);
        }
        if svc
            .store
            .replay(&experiment.id, item_id, &candidate.name)
            .await?
            .is_some_and(|r| r.error.is_none())
        {
            return Ok(false);
        }
    }
    Ok(true)
}
