//! Early stopping: a candidate whose every rubric and check has a settled always-valid verdict
//! stops; its replays not yet made are skipped, never paid. The always-valid statistics stay
//! valid however often they are looked at, so stopping on them keeps the error rates.

use evaltap_stats::{Basis, Verdict};
use evaltap_store::{Experiment, StopOn, Store, StoreError};

use crate::segments::{SegmentOptions, SegmentedReport};
use crate::{CandidateReport, Report};

/// Whether verdicts read while results land settle a candidate: each `better`, `worse` or
/// `non-inferior` (none `inconclusive`), and at least one.
pub fn settles(verdicts: &[Verdict]) -> bool {
    !verdicts.is_empty() && verdicts.iter().all(|v| *v != Verdict::Inconclusive)
}

/// The candidates whose verdicts are settled on a running report — and, given `segmented`
/// (stopping on [`StopOn::Segments`]), on every segment of `[recommend] segment_by` too (one
/// when the traffic does not split): a recommendation needs each segment's verdict, decided in
/// the family of every segment × candidate × rubric — with the fewest pairs any of their
/// rubrics has. Only the always-valid basis settles anything (a finished experiment has
/// nothing left to save).
pub fn to_settle(report: &Report, segmented: Option<&SegmentedReport>) -> Vec<(String, u64)> {
    if report.basis != Basis::Sequential {
        return Vec::new();
    }
    report
        .candidates
        .iter()
        .filter(|c| c.stopped_early.is_none() && settled_on(&c.rubrics))
        .filter(|c| segmented.is_none_or(|segmented| settled_in_segments(&c.name, segmented)))
        .map(|c: &CandidateReport| {
            (c.name.clone(), c.rubrics.iter().map(|r| r.stats.n as u64).min().unwrap_or(0))
        })
        .collect()
}

fn settled_on(rubrics: &[crate::RubricResult]) -> bool {
    settles(&rubrics.iter().map(|r| r.stats.verdict).collect::<Vec<_>>())
}

/// Whether `candidate`'s verdicts are settled on every segment (one when the traffic does not
/// split: its verdicts there are decided in the recommendations' family, not alone).
pub fn settled_in_segments(candidate: &str, segmented: &SegmentedReport) -> bool {
    segmented.segments.iter().all(|segment| {
        segment
            .candidates
            .iter()
            .filter(|s| s.results.name == candidate)
            .all(|s| settled_on(&s.results.rubrics))
    })
}

/// Reads the experiment's results as they stand and records every candidate they settle;
/// returns those newly settled. The statistics run without the bootstrap, off the runtime.
pub async fn settle(
    store: &Store,
    experiment: &Experiment,
    segments: &SegmentOptions,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut inputs = crate::load(store, experiment).await?;
    inputs.bootstrap_resamples = 0;
    // Segments are read only when the stop waits for them.
    let segments = (experiment.spec.early_stop_on == StopOn::Segments).then(|| segments.clone());
    let computed = tokio::task::spawn_blocking(move || {
        let segmented = segments.map(|segments| crate::segments::segments(&inputs, &segments));
        (crate::compute(inputs), segmented)
    })
    .await;
    let (report, segmented) = match computed {
        Ok(both) => both,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => unreachable!("a blocking task is never cancelled: {err}"),
    };
    let mut settled = Vec::new();
    for (candidate, pairs) in to_settle(&report, segmented.as_ref()) {
        if store.settle_candidate(&experiment.id, &candidate, pairs).await? {
            tracing::info!(experiment = %experiment.spec.name, %candidate, pairs, "verdict settled: the candidate stops early");
            settled.push((candidate, pairs));
        }
    }
    Ok(settled)
}
