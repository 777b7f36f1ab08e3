//! Batch mode: a candidate's and the judge's calls through the providers' batch interfaces
//! (the simulator serves OpenAI's files and batches and Anthropic's Message Batches), with
//! evaltap killed while its batches run, a batch the provider expires, and Anthropic's
//! interface.

use std::time::Duration;

use evaltap_core::Config;
use evaltap_sim::JudgeBehavior;

use crate::common::*;
use crate::on_both_engines;

const QUIET: JudgeBehavior = JudgeBehavior { noise: 0.0, position_bias: 0.0, unreadable_long: 0.0 };

/// `small` and the judge in batch mode; batches of at most 25 requests, sent after 200 ms,
/// polled every 100 ms; a dead worker's batches taken over after a second.
fn batched(config: &mut Config) {
    config.worker.lease_secs = 1.0;
    config.worker.batch_max_requests = 25;
    config.worker.batch_wait_secs = 0.2;
    config.worker.batch_poll_secs = 0.1;
    for candidate in &mut config.candidates {
        candidate.batch = candidate.name == "small";
    }
    if let Some(judge) = config.judge.as_mut() {
        judge.batch = true;
    }
}

on_both_engines! {
    /// Replays and judgments go out in batches; the worker is killed (-9) while its first
    /// batches run, and the one started after it polls them — the simulator receives each batch
    /// once and answers each request once — and the results land once, within the cap, at the
    /// batch price.
    async fn a_batch_in_flight_survives_kill_9_and_is_polled_not_resubmitted() {
        let bench = Bench::start_with("batch-kill", QUIET, None, 40, batched).await;
        bench.sim.batches.set_delay(Duration::from_secs(3));
        let config = write_config(&bench.dir, &bench.app.config);
        let (production_calls, production_billed) = (bench.sim.calls.total(), bench.sim.calls.billed_usd());
        let mut request = experiment_request("batched", "small", "correctness", 40);
        request.spend_cap_usd = Some(1.0);
        let experiment = bench.create(request).await;
        let store = &bench.app.store;

        let worker = Process::start(&config, &["worker"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while bench.sim.batches.created() < 2 {
            assert!(std::time::Instant::now() < deadline, "no batches submitted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worker.kill();
        assert_eq!(bench.sim.batches.by_status().get("in_progress"), Some(&2), "killed while they run");
        let restarted = Process::start(&config, &["worker"]);
        let progress = bench.app.wait_done(&experiment, Duration::from_secs(60), |_| {}).await.expect("done");
        restarted.kill();

        assert_eq!((progress.replays_done, progress.judgments_done), (40, 80), "{progress:?}");
        let replays = store.replays(&experiment.id).await.expect("replays");
        assert!(replays.iter().all(|r| r.error.is_none()), "every replay answered: {:?}", replays.iter().find(|r| r.error.is_some()));
        let judgments = store.judgments(&experiment.id).await.expect("judgments");
        assert!(judgments.iter().all(|j| j.error.is_none() && j.score.is_some()));
        // Every batch evaltap formed reached the simulator once: two of replays (25 + 15),
        // then the judgments'.
        let batches = store.batches(&experiment.id).await.expect("batches");
        assert_eq!(bench.sim.batches.created(), batches.len(), "{batches:?}");
        assert!(batches.iter().all(|b| b.status == "ended" && b.provider_status.as_deref() == Some("completed")));
        assert_eq!(batches.iter().filter(|b| b.endpoint == "small").map(|b| b.requests).sum::<i64>(), 40);
        assert_eq!(batches.iter().filter(|b| b.endpoint.is_empty()).map(|b| b.requests).sum::<i64>(), 80);
        assert!(batches.iter().all(|b| b.submissions == 1 && b.failed == 0), "{batches:?}");
        // Each request answered once, none outside a batch.
        assert!(bench.sim.calls.repeats().is_empty(), "{:?}", bench.sim.calls.repeats());
        assert_eq!(bench.sim.calls.total() - production_calls, 120);
        assert_eq!(bench.sim.batches.requests(), 120);
        // The cap held, nothing is left reserved, and what evaltap counts is what the
        // simulator billed, at half price.
        let spend = store.spend(&experiment.id).await.expect("spend");
        assert!(spend.reserved_usd.abs() < 1e-12, "{spend:?}");
        assert!(spend.total_spent_usd <= 1.0, "{spend:?}");
        let billed = bench.sim.calls.billed_usd() - production_billed;
        assert!((spend.total_spent_usd - billed).abs() < 1e-9, "evaltap counts {spend:?}, the simulator billed {billed}");
        let list_price: f64 = replays.iter().map(|r| {
            let usage = r.usage.expect("usage");
            bench.app.config.candidates.iter().find(|c| c.name == "small").expect("small").price.cost(usage)
        }).sum();
        let replay_cost: f64 = replays.iter().filter_map(|r| r.cost_usd).sum();
        assert!((replay_cost - list_price * 0.5).abs() < 1e-12, "{replay_cost} vs list {list_price}");
        assert_eq!(store.work_takeovers(&experiment.id).await.expect("takeovers"), 0);
    }
}

on_both_engines! {
    /// A batch the provider expires before running it: its replays fail with the reason, cost
    /// nothing, and give back every dollar they reserved.
    async fn an_expired_batch_releases_its_reservations() {
        let bench = Bench::start_with("batch-expired", QUIET, None, 12, batched).await;
        bench.sim.batches.set_delay(Duration::from_millis(300));
        bench.sim.batches.set_expire(true);
        let mut request = experiment_request("expired", "small", "correctness", 12);
        request.spend_cap_usd = Some(1.0);
        let experiment = bench.create(request).await;
        let store = &bench.app.store;
        // Parked calls hold their reservations while the batch is out.
        let worker = BackgroundWorker::start(&bench.app);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let reserved = store.spend(&experiment.id).await.expect("spend").reserved_usd;
            if reserved > 0.0 && bench.sim.batches.created() == 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no batch out with its reservations");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bench.app.wait_done(&experiment, Duration::from_secs(30), |_| {}).await.expect("done");
        worker.stop().await;

        let replays = store.replays(&experiment.id).await.expect("replays");
        assert_eq!(replays.len(), 12);
        for replay in &replays {
            let error = replay.error.as_deref().unwrap_or_default();
            assert!(error.contains("before this request ran"), "{error}");
            assert_eq!(replay.cost_usd, None);
        }
        let spend = store.spend(&experiment.id).await.expect("spend");
        assert!(spend.reserved_usd.abs() < 1e-12 && spend.total_spent_usd == 0.0 && spend.presumed_calls == 0, "{spend:?}");
        let reservations = store.reservations(&experiment.id).await.expect("reservations");
        assert!(reservations.iter().all(|(status, ..)| status == "settled"), "{reservations:?}");
        let batches = store.batches(&experiment.id).await.expect("batches");
        assert_eq!(batches.len(), 1);
        assert_eq!((batches[0].provider_status.as_deref(), batches[0].failed), (Some("expired"), 12));
        // Nothing was judged: no candidate answer to pair with.
        assert!(store.judgments(&experiment.id).await.expect("judgments").is_empty());
    }
}

/// A candidate called over Anthropic Messages goes through Anthropic's Message Batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_candidate_is_batched_through_message_batches() {
    let bench = Bench::start_with("batch-anthropic", QUIET, None, 10, |config| {
        batched(config);
        for candidate in &mut config.candidates {
            if candidate.name == "medium" {
                candidate.api = evaltap_core::ModelApi::AnthropicMessages;
                candidate.batch = true;
            }
        }
        if let Some(judge) = config.judge.as_mut() {
            judge.batch = false;
        }
    })
    .await;
    let experiment = bench.create(experiment_request("anthropic", "medium", "correctness", 10)).await;
    let report = run(&bench.app, &experiment).await;
    let replays = bench.app.store.replays(&experiment.id).await.expect("replays");
    assert!(replays.iter().all(|r| r.error.is_none() && r.output_text.is_some()), "{replays:?}");
    let batches = bench.app.store.batches(&experiment.id).await.expect("batches");
    assert_eq!(batches.len(), 1, "{batches:?}");
    assert!(batches[0].provider_id.as_deref().is_some_and(|id| id.starts_with("msgbatch_")), "{batches:?}");
    assert_eq!(batches[0].provider_status.as_deref(), Some("ended"));
    assert_eq!(report.candidates[0].n, 10);
}
