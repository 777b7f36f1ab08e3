//! Early stopping from outside: a clearly worse candidate stops once its verdict is settled —
//! its remaining replays are skipped as settled, never sent to the provider — and the report
//! says when and at how many pairs, with the verdict on the always-valid basis; with early
//! stopping off every sampled exchange is replayed. On both engines.

use evaltap_recommend::Action;
use evaltap_stats::{Basis, Verdict};
use evaltap_store::StopOn;
use evaltap_worker::ExperimentRequest;

use crate::common::{Bench, experiment_request, run};

crate::on_both_engines! {
async fn a_clearly_worse_candidate_stops_early_and_its_remaining_replays_are_never_paid() {
    let bench = Bench::start("early-stop", evaltap_sim::JudgeBehavior::default(), None, 600).await;
    let stopped = bench
        .create(ExperimentRequest {
            early_stop: true,
            margin: Some(0.05),
            ..experiment_request("stops", "small", "correctness", 600)
        })
        .await;
    assert!(stopped.spec.early_stop);
    let report = run(&bench.app, &stopped).await;
    assert_eq!(report.status, "done");
    let small = &report.candidates[0];
    let stop = small.stopped_early.as_ref().unwrap_or_else(|| panic!("small did not stop: {small:#?}"));
    assert!(small.settled > 0 && small.n + small.settled + small.errors == 600, "{small:#?}");
    assert!(stop.pairs >= 30 && (stop.pairs as usize) <= small.n, "{stop:?}");
    assert!(stop.saved_usd.is_some_and(|usd| usd > 0.0), "{stop:?}");
    assert_eq!(small.skipped, 0, "settled replays are not spend-cap skips");
    assert!(!report.spend_cap_reached);
    let rubric = &small.rubrics[0];
    assert_eq!((rubric.stats.verdict, rubric.stats.basis), (Verdict::Worse, Basis::Sequential), "{rubric:?}");
    // What was skipped never reached the provider.
    let replays = bench.app.store.replays(&stopped.id).await.expect("replays");
    let settled = replays.iter().filter(|r| r.settled()).count();
    assert_eq!(settled, small.settled);
    assert!(replays.iter().filter(|r| r.settled()).all(|r| r.response.is_none() && r.cost_usd.is_none()));
    let text = evaltap_report::render_text(&report);
    assert!(text.contains("stopped early"), "{text}");
    // The header does not call the verdicts fixed-n: the only candidate's rest on the sequence.
    assert!(text.contains("verdicts sequential (always-valid: every candidate stopped early)"), "{text}");
    // The experiment page says so beside the candidate.
    let page = reqwest::get(format!("{}/experiments/stops", bench.url)).await.expect("page").text().await.expect("html");
    assert!(page.contains("stopped early at") && page.contains("not made"), "the experiment page shows the stop");
    assert!(page.contains("always-valid sequential statistics (every candidate stopped early)"), "the page's basis");

    // Off: every exchange is replayed.
    let full = bench.create(experiment_request("full", "small", "correctness", 600)).await;
    assert!(!full.spec.early_stop);
    let report = run(&bench.app, &full).await;
    let small = &report.candidates[0];
    assert!(small.stopped_early.is_none() && small.settled == 0 && small.n == 600, "{small:#?}");
    assert_eq!(small.rubrics[0].stats.basis, Basis::FixedN);
}
}

crate::on_both_engines! {
/// `early_stop_on: verdicts` stops the small model — far worse on `math`, as good as
/// production on `support` — on its whole-sample verdict, without waiting for each route's;
/// its `support` recommendation then never promises pairs that will not come, and `experiment
/// show` says what the stop waited for. (When the stop comes is timing: the wording of each
/// case is checked on fixed segments in crates/recommend/tests/guarantee.rs.)
async fn stopping_on_verdicts_alone_stops_on_the_whole_sample_and_says_so() {
    let bench = Bench::start_with("stop-on-verdicts", evaltap_sim::JudgeBehavior::default(), None, 600, |config| {
        // At the simulator's zero latency, latencies are scheduling noise: not what this is about.
        config.recommend.max_latency_p95_increase_pct = 10_000.0;
    })
    .await;
    let verdicts = bench
        .create(ExperimentRequest {
            early_stop: true,
            early_stop_on: StopOn::Verdicts,
            margin: Some(0.05),
            ..experiment_request("verdicts", "small", "correctness", 600)
        })
        .await;
    assert_eq!(verdicts.spec.early_stop_on, StopOn::Verdicts);
    let report = run(&bench.app, &verdicts).await;
    let small = &report.candidates[0];
    assert!(small.stopped_early.is_some() && small.settled > 0, "small did not stop: {small:#?}");
    assert_eq!(small.rubrics[0].stats.verdict, Verdict::Worse);

    let recommendations =
        evaltap_app::recommend::recommendations(&bench.app.context(), "verdicts").await.expect("recommendations");
    let support = recommendations.segments.iter().find(|s| s.key["route"] == "support").expect("support route");
    let reason = &support.reason;
    assert!(!reason.contains("more pairs needed"), "{reason}");
    if support.action == Action::Keep {
        assert!(reason.contains("stopped early on its whole-sample verdicts"), "{reason}");
    }

    let config = crate::common::write_config(&bench.dir, &bench.app.config);
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .arg("--config")
        .arg(&config)
        .args(["experiment", "show", "verdicts"])
        .output()
        .expect("run evaltap experiment show");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("early stopping on: a candidate stops once its whole-sample verdicts are settled (segments not awaited)"),
        "{text}"
    );
}
}

crate::on_both_engines! {
/// An answer a candidate made before it stopped is not judged after the stop — a pair judged
/// then changes no verdict — and no judge call goes out for it; the baseline's judgment of an
/// item the candidate answered still runs.
async fn answers_made_before_the_stop_are_not_judged_after_it() {
    let bench = Bench::start("stop-judging", evaltap_sim::JudgeBehavior::default(), None, 20).await;
    let app = &bench.app;
    let experiment = bench
        .create(ExperimentRequest { early_stop: true, ..experiment_request("late", "small", "correctness", 20) })
        .await;
    let services = || {
        // A fresh instance reads who settled afresh (each keeps it for a moment).
        evaltap_worker::Services::new(&app.config, app.store.clone(), app.rubrics.clone()).expect("services")
    };
    let item = app.store.experiment_item_ids(&experiment.id).await.expect("items").remove(0);
    let job = |subject: &str| evaltap_worker::EvalJob::Judge {
        experiment_id: experiment.id.clone(),
        item_id: item.clone(),
        subject: subject.into(),
        rubric: "correctness".into(),
        position: String::new(),
    };
    let replay =
        evaltap_worker::EvalJob::Replay { experiment_id: experiment.id.clone(), item_id: item.clone(), candidate: "small".into() };
    evaltap_worker::run(&services(), &replay).await.expect("replay");
    // The candidate's verdict settles after its answer was made, before it is judged.
    assert!(app.store.settle_candidate(&experiment.id, "small", 40).await.expect("settle"));
    let calls = bench.sim.calls.total();
    evaltap_worker::run(&services(), &job("small")).await.expect("judge small");
    assert_eq!(bench.sim.calls.total(), calls, "no judge call for a settled candidate's answer");
    evaltap_worker::run(&services(), &job(evaltap_store::BASELINE)).await.expect("judge the baseline");
    assert_eq!(bench.sim.calls.total(), calls + 1, "the baseline's judgment runs");

    let judgments = app.store.judgments(&experiment.id).await.expect("judgments");
    let small = judgments.iter().find(|j| j.subject == "small").expect("small's judgment is stored");
    assert_eq!(small.skipped.as_deref(), Some(evaltap_store::SETTLED), "{small:?}");
    assert!(small.score.is_none() && small.cost_usd.is_none(), "{small:?}");
}
}
