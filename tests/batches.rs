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

/// Waits until the simulator has received `count` batches.
async fn batches_submitted(bench: &Bench, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while bench.sim.batches.created() < count {
        assert!(std::time::Instant::now() < deadline, "{count} batches were never submitted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

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
    /// Replays and judgments go out in batches, one batch's worth per endpoint at a time; the
    /// worker is killed (-9) while its first batch runs, and the one started after it polls it — the simulator receives each batch
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

        let worker = Process::start(&config, &["worker", "--concurrency", "8"]);
        batches_submitted(&bench, 1).await;
        worker.kill();
        // (Jobs checking at once may each park a call while the first batch's worth is still
        // being parked: about one batch's worth is out at a time, not exactly.)
        let running = bench.sim.batches.by_status().get("in_progress").copied().unwrap_or(0);
        assert!(running >= 1, "killed while batches run");
        let restarted = Process::start(&config, &["worker", "--concurrency", "8"]);
        let progress = bench.app.wait_done(&experiment, Duration::from_secs(60), |_| {}).await.expect("done");
        restarted.kill();

        assert_eq!((progress.replays_done, progress.judgments_done), (40, 80), "{progress:?}");
        let replays = store.replays(&experiment.id).await.expect("replays");
        assert!(replays.iter().all(|r| r.error.is_none()), "every replay answered: {:?}", replays.iter().find(|r| r.error.is_some()));
        assert!(replays.iter().all(|r| r.latency_ms.is_none()), "a batched answer has no latency of its own");
        let judgments = store.judgments(&experiment.id).await.expect("judgments");
        assert!(judgments.iter().all(|j| j.error.is_none() && j.score.is_some()));
        // Every batch evaltap formed reached the simulator once: two of replays (25, then 15
        // once the first was answered) and the judgments' (at most 25 each).
        let batches = store.batches(&experiment.id).await.expect("batches");
        assert_eq!(bench.sim.batches.created(), batches.len(), "{batches:?}");
        assert!(batches.iter().all(|b| b.status == "ended" && b.provider_status.as_deref() == Some("completed")));
        assert_eq!(batches.iter().filter(|b| b.endpoint == "small").map(|b| b.requests).sum::<i64>(), 40);
        assert_eq!(batches.iter().filter(|b| b.endpoint.is_empty()).map(|b| b.requests).sum::<i64>(), 80);
        // (A batch the killed worker had started submitting shows 2 submissions: the next
        // worker looked for it at the provider, did not find it, and submitted it — once, as
        // the count of batches the simulator received shows.)
        assert!(batches.iter().all(|b| b.failed == 0 && b.requests <= 25), "{batches:?}");
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
        // The report says what went through the batch interfaces.
        let report = evaltap_report::build(store, &experiment).await.expect("report");
        let small = report.batches.iter().find(|b| b.endpoint == "small").expect("small's batches");
        let judge = report.batches.iter().find(|b| b.endpoint == "judge").expect("the judge's batches");
        assert_eq!((small.requests, judge.requests, small.unanswered + judge.unanswered), (40, 80, 0));
        assert_eq!(small.batches + judge.batches, batches.len());
        let text = evaltap_report::render_text(&report);
        assert!(text.contains("batch interfaces: small ") && text.contains("of 40 requests"), "{text}");
        // What small's verdict cost: its replays and its judgments, at the batch price.
        let own_judgments: f64 =
            judgments.iter().filter(|j| j.subject == "small").filter_map(|j| j.cost_usd).sum();
        let small_report = report.candidates.iter().find(|c| c.name == "small").expect("small");
        assert!((small_report.spent_usd - (replay_cost + own_judgments)).abs() < 1e-12, "{small_report:?}");
        assert!(text.contains(&format!("spent ${:.4} to its verdicts", small_report.spent_usd)), "{text}");
        // Work the killed worker held unparked (waiting for the batch) was taken over; no call
        // was repeated for it (above).
        assert!(store.work_takeovers(&experiment.id).await.expect("takeovers") <= 8);
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
            if reserved > 0.0 && bench.sim.batches.created() >= 1 {
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
        assert!(batches.iter().all(|b| b.provider_status.as_deref() == Some("expired")), "{batches:?}");
        assert_eq!(batches.iter().map(|b| b.failed).sum::<i64>(), 12);
        assert_eq!(bench.sim.batches.created(), batches.len());
        let report = evaltap_report::build(store, &experiment).await.expect("report");
        let text = evaltap_report::render_text(&report);
        assert!(text.contains(" of 12 requests, 12 unanswered"), "{text}");
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
    assert_eq!(batches.iter().map(|b| b.requests).sum::<i64>(), 10, "{batches:?}");
    assert!(
        batches.iter().all(|b| b.provider_id.as_deref().is_some_and(|id| id.starts_with("msgbatch_"))
            && b.provider_status.as_deref() == Some("ended")),
        "{batches:?}"
    );
    assert_eq!(report.candidates[0].n, 10);
    // The experiment page says so.
    let page = reqwest::get(format!("{}/experiments/anthropic", bench.url))
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("Through batch interfaces") && page.contains(" of 10 requests"), "{page}");
    assert!(page.contains("to its verdicts"), "the page says what the candidate's verdicts cost");
}

on_both_engines! {
    /// A worker that dies after the provider created its batch but before it recorded the
    /// batch's id leaves it `submitting`: the next worker finds it at the provider by the tag
    /// in its metadata and polls it, instead of submitting it again.
    async fn a_batch_created_but_not_recorded_is_found_not_resubmitted() {
        found_not_resubmitted(evaltap_core::ModelApi::OpenaiChat).await;
    }
}

/// The same on Anthropic's interface, whose batches take no metadata: the batch is found by
/// its size and time, and checked on its results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_batch_created_but_not_recorded_is_found_by_size_and_time() {
    found_not_resubmitted(evaltap_core::ModelApi::AnthropicMessages).await;
}

async fn found_not_resubmitted(api: evaltap_core::ModelApi) {
    let bench = Bench::start_with("batch-found", QUIET, None, 6, |config| {
        batched(config);
        for candidate in &mut config.candidates {
            if candidate.name == "small" {
                candidate.api = api;
            }
        }
    })
    .await;
    bench.sim.batches.set_delay(Duration::from_secs(2));
    let experiment = bench.create(experiment_request("found", "small", "correctness", 6)).await;
    let store = &bench.app.store;
    let worker = BackgroundWorker::start(&bench.app);
    batches_submitted(&bench, 1).await;
    worker.stop().await;
    let first = store.batches(&experiment.id).await.expect("batches");
    assert_eq!(first.len(), 1, "{first:?}");
    let provider_id = first[0].provider_id.clone().expect("recorded");
    // As if the worker had died between the provider's answer and recording it.
    let forget = "UPDATE batches SET status = 'submitting', provider_id = NULL, expires_ms = 0";
    match store.pool() {
        evaltap_store::Pool::Sqlite(pool) => sqlx::query(forget).execute(pool).await.map(|_| ()),
        evaltap_store::Pool::Postgres(pool) => sqlx::query(forget).execute(pool).await.map(|_| ()),
    }
    .expect("forget the provider's id");
    let worker = BackgroundWorker::start(&bench.app);
    bench.app.wait_done(&experiment, Duration::from_secs(30), |_| {}).await.expect("done");
    worker.stop().await;

    let batches = store.batches(&experiment.id).await.expect("batches");
    let replay_batches: Vec<_> = batches.iter().filter(|b| b.endpoint == "small").collect();
    assert_eq!(replay_batches.len(), 1, "{batches:?}");
    assert_eq!(
        replay_batches[0].provider_id.as_deref(),
        Some(provider_id.as_str()),
        "found, not created again"
    );
    assert_eq!(replay_batches[0].submissions, 1);
    assert_eq!(bench.sim.batches.created(), batches.len());
    assert!(bench.sim.calls.repeats().is_empty());
    let replays = store.replays(&experiment.id).await.expect("replays");
    assert!(replays.iter().all(|r| r.error.is_none()) && replays.len() == 6, "{replays:?}");
}

/// A judgment of several samples in batch mode asks them one batch after another (each call's
/// seed follows from the last's position): every sample is asked once, through a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judgment_of_two_samples_asks_each_through_a_batch() {
    let bench = Bench::start_with("batch-samples", QUIET, None, 8, batched).await;
    let production_calls = bench.sim.calls.total();
    let mut request = experiment_request("samples", "medium", "correctness", 8);
    request.judge_samples = Some(2);
    let experiment = bench.create(request).await;
    run(&bench.app, &experiment).await;
    let judgments = bench.app.store.judgments(&experiment.id).await.expect("judgments");
    assert_eq!(judgments.len(), 16, "the baseline's and medium's, per item");
    assert!(
        judgments.iter().all(|j| j.score_samples.as_ref().is_some_and(|s| s.len() == 2)),
        "{judgments:?}"
    );
    // medium replays directly (batch off); each judgment's two calls went through batches.
    assert_eq!(bench.sim.batches.requests(), 32);
    assert_eq!(bench.sim.calls.total() - production_calls, 8 + 32);
    assert!(bench.sim.calls.repeats().is_empty());
}

/// The cost estimated before a run prices batched calls at the batch discount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_estimate_prices_batched_calls_at_the_discount() {
    let bench = Bench::start_with("batch-estimate", QUIET, None, 6, batched).await;
    let experiment = bench.create(experiment_request("estimate", "small", "correctness", 6)).await;
    let batched = evaltap_worker::estimate_cost(&bench.app.store, &bench.app.rubrics, &experiment.spec)
        .await
        .expect("estimate");
    let mut direct = experiment.spec.clone();
    for candidate in &mut direct.candidates {
        candidate.batch = false;
    }
    if let Some(judge) = direct.judge.as_mut() {
        judge.batch = false;
    }
    let direct =
        evaltap_worker::estimate_cost(&bench.app.store, &bench.app.rubrics, &direct).await.expect("estimate");
    assert!(direct.replay_usd > 0.0 && direct.judge_usd > 0.0);
    assert!((batched.replay_usd - direct.replay_usd * 0.5).abs() < 1e-12, "{batched:?} vs {direct:?}");
    assert!((batched.judge_usd - direct.judge_usd * 0.5).abs() < 1e-12, "{batched:?} vs {direct:?}");
}

/// A batch cancelled at the provider (by an operator, say) while it runs: its replays fail
/// with the reason and cost nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cancelled_at_the_provider_fails_its_calls_unpaid() {
    let bench = Bench::start_with("batch-cancel", QUIET, None, 6, batched).await;
    bench.sim.batches.set_delay(Duration::from_secs(30));
    let mut request = experiment_request("cancelled", "small", "correctness", 6);
    request.spend_cap_usd = Some(1.0);
    let experiment = bench.create(request).await;
    let store = &bench.app.store;
    let worker = BackgroundWorker::start(&bench.app);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let batches = store.batches(&experiment.id).await.expect("batches");
        if batches.iter().map(|b| b.requests).sum::<i64>() == 6
            && batches.iter().all(|b| b.provider_id.is_some())
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the replays never went out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for batch in store.batches(&experiment.id).await.expect("batches") {
        let id = batch.provider_id.expect("submitted");
        let cancelled = reqwest::Client::new()
            .post(format!("{}/batches/{id}/cancel", bench.sim.base_url()))
            .send()
            .await
            .expect("cancel");
        assert!(cancelled.status().is_success());
    }
    bench.app.wait_done(&experiment, Duration::from_secs(30), |_| {}).await.expect("done");
    worker.stop().await;
    let replays = store.replays(&experiment.id).await.expect("replays");
    assert_eq!(replays.len(), 6);
    assert!(
        replays.iter().all(|r| r.error.as_deref().is_some_and(|e| e.contains("batch_cancelled"))),
        "{replays:?}"
    );
    let spend = store.spend(&experiment.id).await.expect("spend");
    assert!(spend.reserved_usd.abs() < 1e-12 && spend.total_spent_usd == 0.0, "{spend:?}");
    assert!(
        store
            .batches(&experiment.id)
            .await
            .expect("batches")
            .iter()
            .all(|b| b.provider_status.as_deref() == Some("cancelled"))
    );
}

/// `experiment run --requeue` while calls are out in a batch pushes the rest again and leaves
/// those to their batch (a job for them would only hold a queue slot until the batch ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_leaves_calls_out_in_batches_to_them() {
    let bench = Bench::start_with("batch-requeue", QUIET, None, 6, batched).await;
    bench.sim.batches.set_delay(Duration::from_secs(30));
    let experiment = bench.create(experiment_request("requeued", "small", "correctness", 6)).await;
    let store = &bench.app.store;
    let worker = BackgroundWorker::start(&bench.app);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.calls_out(&experiment.id, Some("small")).await.expect("calls out") < 6 {
        assert!(std::time::Instant::now() < deadline, "the replays were never parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.stop().await;
    let requeued =
        evaltap_worker::requeue_unfinished(store, &bench.app.queue, &experiment).await.expect("requeue");
    assert_eq!(requeued, evaltap_worker::Requeued { pushed: 0, in_batches: 6 });
    // From the command line, the operator is told.
    let config = write_config(&bench.dir, &bench.app.config);
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .arg("--config")
        .arg(&config)
        .args(["experiment", "run", "requeued", "--requeue"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("experiment run");
    let stderr = run.stderr.take().expect("stderr");
    let first = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stderr).lines().map_while(Result::ok).find(|l| l.starts_with("requeued"))
    })
    .await
    .expect("read");
    let _ = run.kill();
    let _ = run.wait();
    assert_eq!(first.as_deref(), Some("requeued 0 unfinished jobs (6 out in batches are left to them)"));
}

/// Early stopping in batch mode: a clearly worse candidate stops between batches — its calls
/// not yet out are never sent — and every dollar reserved for calls that went out is settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clearly_worse_batched_candidate_stops_between_batches() {
    let bench = Bench::start_with("batch-early-stop", JudgeBehavior::default(), None, 600, |config| {
        batched(config);
        config.worker.batch_max_requests = 50;
    })
    .await;
    let experiment = bench
        .create(evaltap_worker::ExperimentRequest {
            early_stop: true,
            // On its whole-sample verdict, far worse, it settles within a few batches; waiting
            // for `support`, where it is as good as production, can take the whole sample.
            early_stop_on: evaltap_store::StopOn::Verdicts,
            margin: Some(0.05),
            spend_cap_usd: Some(5.0),
            ..experiment_request("batched-stop", "small", "correctness", 600)
        })
        .await;
    let report = run(&bench.app, &experiment).await;
    let small = &report.candidates[0];
    assert!(small.stopped_early.is_some() && small.settled > 0, "{small:#?}");
    assert_eq!(small.n + small.settled + small.errors, 600);
    // Only what was answered went out: every request the simulator received was a batch's.
    let sent: i64 = report.batches.iter().find(|b| b.endpoint == "small").map_or(0, |b| b.requests);
    assert_eq!(sent as usize, small.n + small.errors, "{:?}", report.batches);
    assert!((sent as usize) < 600);
    let spend = bench.app.store.spend(&experiment.id).await.expect("spend");
    assert!(spend.reserved_usd.abs() < 1e-12 && spend.presumed_calls == 0, "{spend:?}");
}

/// On Anthropic's interface a batch found by size and time is checked on its results: one that
/// was another's (here a batch of the same size created just before, by someone else) is not
/// taken for this one's answers — this one is submitted after all, and its results land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_batch_found_by_size_and_time_is_checked_on_its_results() {
    let bench = Bench::start_with("batch-mismatch", QUIET, None, 6, |config| {
        batched(config);
        for candidate in &mut config.candidates {
            if candidate.name == "small" {
                candidate.api = evaltap_core::ModelApi::AnthropicMessages;
            }
        }
    })
    .await;
    bench.sim.batches.set_delay(Duration::from_secs(2));
    // Someone else's batch of six, created first.
    let foreign: Vec<serde_json::Value> = (0..6)
        .map(|n| serde_json::json!({"custom_id": format!("theirs-{n}"), "params": {"model": "sim-small", "max_tokens": 16,
            "messages": [{"role": "user", "content": format!("What is {n} + {n}?")}]}}))
        .collect();
    let created = reqwest::Client::new()
        .post(format!("{}/messages/batches", bench.sim.base_url()))
        .json(&serde_json::json!({"requests": foreign}))
        .send()
        .await
        .expect("foreign batch");
    assert!(created.status().is_success());
    let experiment = bench.create(experiment_request("mismatch", "small", "correctness", 6)).await;
    let store = &bench.app.store;
    let worker = BackgroundWorker::start(&bench.app);
    batches_submitted(&bench, 2).await;
    worker.stop().await;
    let forget = "UPDATE batches SET status = 'submitting', provider_id = NULL, expires_ms = 0";
    sqlx::query(forget).execute(sqlite_pool(store)).await.expect("forget the provider's id");
    let worker = BackgroundWorker::start(&bench.app);
    bench.app.wait_done(&experiment, Duration::from_secs(30), |_| {}).await.expect("done");
    worker.stop().await;

    let batches = store.batches(&experiment.id).await.expect("batches");
    let ours = batches.iter().find(|b| b.endpoint == "small").expect("small's batch");
    assert_ne!(ours.provider_id.as_deref(), Some("msgbatch_sim_1"), "not the foreign batch's answers");
    assert_eq!(ours.submissions, 2, "submitted after all: {ours:?}");
    let replays = store.replays(&experiment.id).await.expect("replays");
    assert!(
        replays.iter().all(|r| r.error.is_none() && r.output_text.is_some()) && replays.len() == 6,
        "{replays:?}"
    );
}
