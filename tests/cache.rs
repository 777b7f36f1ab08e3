//! The result cache from outside, counting what reaches the simulated upstream: re-running an
//! experiment and a golden set makes no model call at all, the report says what was reused and
//! what it cost when paid, and a drift run (which exists to see the model as it answers now)
//! calls afresh. On both engines.

use std::time::Duration;

use evaltap_golden::{DatasetDir, Item};
use evaltap_worker::ExperimentRequest;

use crate::common::{Bench, experiment_request, run};

crate::on_both_engines! {
async fn re_runs_reuse_what_was_paid_for_and_drift_calls_afresh() {
    let bench = Bench::start("cache", evaltap_sim::JudgeBehavior::default(), None, 120).await;
    let app = &bench.app;
    let cached = |name: &str| ExperimentRequest {
        cache: true,
        ..experiment_request(name, "small", "correctness", 120)
    };
    let first = run(app, &bench.create(cached("first")).await).await;
    let calls = bench.sim.calls.total();
    assert!(calls >= 240, "replays and judgments were paid for: {calls}");

    // The same experiment again, under another name: nothing reaches the provider.
    let again = run(app, &bench.create(cached("again")).await).await;
    assert_eq!(bench.sim.calls.total(), calls, "a re-run made model calls");
    let (was, now) = (&first.candidates[0], &again.candidates[0]);
    assert_eq!((now.cached.replays, now.cached.judgments), (120, 120), "{now:#?}");
    assert!(now.cached.original_cost_usd > 0.0, "what they cost when paid is shown");
    assert_eq!(now.cost_per_request_usd, was.cost_per_request_usd, "the model's price per request stands");
    assert_eq!(again.spend.spent_usd, 0.0, "{:?}", again.spend);
    assert_eq!(again.spend.judge_spent_usd, 0.0, "{:?}", again.spend);
    // The same scores, summed in the order they landed.
    assert!((now.rubrics[0].stats.delta - was.rubrics[0].stats.delta).abs() < 1e-12);
    assert!(evaltap_report::render_text(&again).contains("reused from the result cache: 120 replays and 120 judgments"));
    let page = reqwest::get(format!("{}/experiments/again", bench.url)).await.expect("page").text().await.expect("html");
    assert!(page.contains("reused from the cache: 120 replays, 120 judgments"), "the experiment page shows the reuse");

    // Off, every call is paid again.
    let fresh = ExperimentRequest { cache: false, ..cached("fresh") };
    run(app, &bench.create(fresh).await).await;
    assert!(bench.sim.calls.total() >= calls + 240, "--no-cache paid again");

    // A golden set, run twice: the second run makes no call.
    let items: Vec<Item> = (0..20)
        .map(|i| {
            let mut item = Item::from_input(format!("g{i}"), &format!("What is {} + {}? Reply with the number.", i + 2, 3 * i + 1));
            item.reference = Some((4 * i + 3).to_string());
            item
        })
        .collect();
    DatasetDir::new(&app.config.datasets_dir).write("sums", &items).expect("write");
    let options = evaltap_app::golden::GoldenRun {
        candidates: vec!["small".into()],
        against_reference: true,
        ..Default::default()
    };
    crate::common::golden_run(app, "sums", &options).await.expect("first golden run");
    let before = bench.sim.calls.total();
    let rerun = crate::common::golden_run(app, "sums", &options).await.expect("second golden run");
    assert_eq!(bench.sim.calls.total(), before, "a golden re-run made model calls");
    assert_eq!(rerun.candidates[0].cached.replays, 20);

    // A drift run of the same set calls the model afresh.
    let version = evaltap_app::golden::sync(&app.context(), "sums").await.expect("sync").0;
    let ctx = app.drift_context().expect("context");
    let schedule = evaltap_drift::add_schedule(
        &ctx,
        evaltap_drift::NewSchedule {
            name: None,
            dataset: evaltap_store::DatasetRef { name: "sums".into(), version },
            candidate: "small".into(),
            every: Duration::from_secs(3600),
            spec: evaltap_store::ScheduleSpec { rubrics: vec!["correctness".into()], checks: vec![], margin: 0.02, guard: None },
        },
    )
    .await
    .expect("schedule");
    let started = evaltap_drift::tick(&ctx, chrono::Utc::now()).await.expect("tick");
    assert_eq!(started.started.len(), 1, "{started:?}");
    let runs = app.store.schedule_runs(&schedule.id).await.expect("runs");
    let Some(run_id) = runs.first().and_then(|r| r.experiment_id.clone()) else {
        // Seen once in CI on PostgreSQL: a tick that said it started the run, and no run read
        // back. Say everything there is to say if it happens again.
        let schedules = app.store.schedules().await.expect("schedules");
        panic!("no started run recorded for {schedule:?} (runs: {runs:?}); the tick said {started:?}; schedules: {schedules:?}");
    };
    let experiment = app.store.experiment(&run_id).await.expect("read").expect("exists");
    assert!(!experiment.spec.use_cache);
    run(app, &experiment).await;
    assert!(bench.sim.calls.total() >= before + 20, "the drift run called the model");
}
}
