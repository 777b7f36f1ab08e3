//! Keeps finished experiments' reports computed: once an experiment is done its statistics are
//! computed and stored here, in the background, so that the first person to open its page does
//! not wait for them.

use std::collections::HashSet;
use std::time::Duration;

use evaltap_store::Store;

/// How often finished experiments are looked for.
pub(crate) const KEEPER_INTERVAL: Duration = Duration::from_secs(2);

/// Runs until the task is aborted.
pub(crate) async fn keep_reports(store: Store) {
    // Experiments whose report was stored once they were done: their results no longer change
    // (a later calibration only makes the next page view recompute).
    let mut kept: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(KEEPER_INTERVAL).await;
        let experiments = match store.experiments().await {
            Ok(experiments) => experiments,
            Err(err) => {
                tracing::warn!(%err, "listing experiments to keep their reports failed");
                continue;
            }
        };
        for experiment in &experiments {
            if kept.contains(&experiment.id) {
                continue;
            }
            match store.experiment_progress(experiment).await {
                Ok(progress) if progress.is_done() => {}
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(%err, experiment = %experiment.spec.name, "reading progress failed");
                    continue;
                }
            }
            match evaltap_report::stored(&store, experiment).await {
                Ok(_) => {
                    kept.insert(experiment.id.clone());
                }
                Err(err) => {
                    tracing::warn!(%err, experiment = %experiment.spec.name, "storing the report failed")
                }
            }
        }
    }
}
