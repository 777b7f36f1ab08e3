//! Work claims and the job queue, in one process on either engine: storing a result finishes
//! its claim, batch claims hand each unit to one worker, failing work is retried a few times
//! then given up, concurrent small writes each get their own answer, `--requeue` pushes
//! unfinished work again without repeating a call, and queue jobs no worker takes are seen.

use std::time::Duration;

use std::process::Command;

use crate::common::{Bench, experiment_request, write_config};
use crate::scale::QUIET;

crate::on_both_engines! {
    /// Storing a result finishes its claim in the same statement, whatever characters the key
    /// holds: the database builds the key exactly as the store does.
    async fn storing_a_result_finishes_its_claim() {
        let bench = Bench::start("claims", QUIET, None, 5).await;
        let experiment = bench.create(experiment_request("claims", "small", "correctness", 5)).await;
        let store = &bench.app.store;
        let item = "it\"em/ü\n\t\\ \u{1f} 🦀";
        let lease = Duration::from_secs(30);
        let key = evaltap_store::replay_work_key(item, "small");
        let claimed = store.claim_work(&experiment.id, &key, "me", lease).await.expect("claim");
        assert!(matches!(claimed, evaltap_store::Claim::Claimed(_)), "{claimed:?}");
        let elsewhere = store.claim_work(&experiment.id, &key, "other", lease).await.expect("claim");
        assert!(matches!(elsewhere, evaltap_store::Claim::HeldElsewhere { .. }), "{elsewhere:?}");
        let mut replay = evaltap_store::ReplayRecord::new(&experiment.id, "exchange", item, "small", "sim-small");
        replay.error = Some("failed".into());
        assert!(store.insert_replay(&replay).await.expect("insert"));
        let after = store.claim_work(&experiment.id, &key, "other", lease).await.expect("claim");
        assert_eq!(after, evaltap_store::Claim::Finished);

        let key = evaltap_store::judgment_work_key(item, "small", "rubric \"q\"", "ab");
        let mut judgment = evaltap_store::JudgmentRecord::new(&experiment.id, item, "small", "rubric \"q\"", "ab");
        judgment.error = Some("failed".into());
        assert!(store.insert_judgment(&judgment).await.expect("insert"));
        let after = store.claim_work(&experiment.id, &key, "me", lease).await.expect("claim");
        assert_eq!(after, evaltap_store::Claim::Finished);
    }
}

crate::on_both_engines! {
    /// Registered work is the queue: workers claiming ready work in batches, four at once, get
    /// every unit exactly once; work handed back to the job queue is left to the queue's job;
    /// a lease that runs out is taken over; finished work is never claimed again; and work
    /// registered already claimed is held by its registrant.
    async fn claiming_ready_work_in_batches_hands_each_unit_to_one_worker() {
        let bench = Bench::start("batch-claims", QUIET, None, 12).await;
        let experiment = bench.create(experiment_request("batch-claims", "small", "correctness", 12)).await;
        let store = bench.app.store.clone();
        let lease = Duration::from_secs(30);
        let registered: Vec<String> =
            store.unfinished_work(&experiment.id).await.expect("work").into_iter().map(|(key, _)| key).collect();
        assert_eq!(registered.len(), 12, "12 replays registered at creation (the baseline's judgments follow replays)");
        assert!(store.has_ready_work().await.expect("poll"));

        let claimers = futures::future::join_all((0..4).map(|w| {
            let store = store.clone();
            async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_ready_work(&format!("worker-{w}"), lease, 3).await.expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    assert!(batch.len() <= 3, "a batch is at most the free slots");
                    mine.extend(batch);
                    tokio::task::yield_now().await;
                }
            }
        }))
        .await;
        let mut claimed: Vec<String> = claimers.iter().flatten().map(|lease| lease.work_key.clone()).collect();
        assert!(claimers.iter().flatten().all(|lease| lease.claims == 1));
        claimed.sort();
        let mut expected = registered.clone();
        expected.sort();
        assert_eq!(claimed, expected, "every unit claimed, none twice");
        assert!(!store.has_ready_work().await.expect("poll"), "all held");
        assert!(store.claim_ready_work("late", lease, 64).await.expect("claim").is_empty());

        // Handed back to the queue after a failure: not ready, but the queue's job claims it.
        // (Any claimer's: on PostgreSQL one of the four may have found every unit taken.)
        let given_back = claimers.iter().flatten().next().expect("a claimed unit").clone();
        store.release_lease(&given_back).await.expect("release");
        assert!(store.claim_ready_work("late", lease, 64).await.expect("claim").is_empty());
        let by_job = store.claim_work(&experiment.id, &given_back.work_key, "queue-job", lease).await.expect("claim");
        assert!(matches!(by_job, evaltap_store::Claim::Claimed(ref l) if l.claims == 2), "{by_job:?}");

        // A claimant whose lease runs out: its work is taken over by the next batch claim;
        // finished work is not claimed again, even once its lease has run out.
        let other_experiment = bench.create(experiment_request("batch-claims-2", "small", "correctness", 12)).await;
        let dying = store.claim_ready_work("dies", Duration::from_millis(1), 64).await.expect("claim");
        assert_eq!(dying.len(), 12);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let taken = store.claim_ready_work("survivor", Duration::from_millis(1), 64).await.expect("claim");
        assert_eq!(taken.len(), 12);
        assert!(taken.iter().all(|l| l.claims == 2 && l.experiment_id == other_experiment.id));
        let finished = &taken[0].work_key;
        let parts: Vec<String> = serde_json::from_str(finished).expect("key");
        if parts[0] == "replay" {
            let mut replay =
                evaltap_store::ReplayRecord::new(&other_experiment.id, "exchange", &parts[1], &parts[2], "sim-small");
            replay.error = Some("failed".into());
            assert!(store.insert_replay(&replay).await.expect("insert"));
        } else {
            let mut judgment = evaltap_store::JudgmentRecord::new(
                &other_experiment.id, &parts[1], &parts[2], &parts[3], &parts[4],
            );
            judgment.error = Some("failed".into());
            assert!(store.insert_judgment(&judgment).await.expect("insert"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rest = store.claim_ready_work("rest", lease, 64).await.expect("claim");
        assert_eq!(rest.len(), 11, "{finished} {rest:?}");
        assert!(rest.iter().all(|l| &l.work_key != finished && l.claims == 3));
        // Every unit was taken over (the finished one too: it may have been paid twice).
        assert_eq!(store.work_takeovers(&other_experiment.id).await.expect("takeovers"), 12);
        // The report shows them.
        let report = evaltap_report::build(&store, &other_experiment).await.expect("report");
        assert_eq!(report.takeovers, 12);
        assert!(evaltap_report::render_text(&report).contains("takeovers: 12 units"), "{}", evaltap_report::render_text(&report));

        // Follow-ups: the first registered claimed by the registrant, the rest ready for any
        // worker; what was registered before is left alone.
        let first = evaltap_store::judgment_work_key("fresh-item", "small", "correctness", "");
        let second = evaltap_store::judgment_work_key("fresh-item", "small", "helpfulness", "");
        let keys = [first.clone(), rest[0].work_key.clone(), second.clone()];
        let held = store.register_follow_ups(&other_experiment.id, &keys, "replayer", lease).await.expect("register");
        let held = held.expect("the first is new");
        assert_eq!((held.work_key.as_str(), held.claims, held.owner.as_str()), (first.as_str(), 1, "replayer"));
        let elsewhere = store.claim_work(&other_experiment.id, &first, "other", lease).await.expect("claim");
        assert!(matches!(elsewhere, evaltap_store::Claim::HeldElsewhere { .. }), "{elsewhere:?}");
        let ready = store.claim_ready_work("late", lease, 64).await.expect("claim");
        assert_eq!(ready.iter().map(|l| l.work_key.as_str()).collect::<Vec<_>>(), [second.as_str()]);
        let again = store.register_follow_ups(&other_experiment.id, &keys, "replayer", lease).await.expect("register");
        assert_eq!(again, None, "registered before: nothing held");
    }
}

crate::on_both_engines! {
    /// Work that fails on something worth retrying (here its item's row is missing) is handed to
    /// the apalis queue, tried there at most four more times, then given up: never claimed again
    /// in a loop, and the rest of the experiment completes.
    async fn failing_work_is_retried_by_the_queue_a_few_times_then_given_up() {
        let bench = Bench::start("retries", QUIET, None, 5).await;
        let experiment = bench.create(experiment_request("retries", "small", "correctness", 5)).await;
        let store = &bench.app.store;
        let ghost = evaltap_worker::EvalJob::Replay {
            experiment_id: experiment.id.clone(),
            item_id: "ghost".into(),
            candidate: "small".into(),
        };
        let key = ghost.work_key();
        assert_eq!(evaltap_worker::enqueue(store, vec![ghost]).await.expect("enqueue"), 1);
        let worker = crate::common::BackgroundWorker::start(&bench.app);
        bench.app.wait_done(&experiment, Duration::from_secs(60), |_| {}).await.expect("the rest finishes");

        const ROW: &str = "SELECT owner, claims, finished FROM work_claims WHERE experiment_id = $1 AND work_key = $2";
        let row = || async {
            let row: (String, i64, bool) = match store.pool() {
                evaltap_store::Pool::Sqlite(pool) => sqlx::query_as(ROW).bind(&experiment.id).bind(&key).fetch_one(pool).await,
                evaltap_store::Pool::Postgres(pool) => sqlx::query_as(ROW).bind(&experiment.id).bind(&key).fetch_one(pool).await,
            }
            .expect("the ghost's row");
            row
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let given_up = loop {
            let now = row().await;
            if now.0 == evaltap_store::QUEUED && now.1 >= 2 {
                // Handed back and tried by the queue; given up once it stops changing.
                tokio::time::sleep(Duration::from_secs(1)).await;
                if row().await == now {
                    break now;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "never given up: {now:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        worker.stop().await;
        let (_, claims, finished) = given_up;
        assert!(!finished);
        assert!(claims <= 5, "one claim from the table and at most four by the queue, not {claims}");
    }
}

crate::on_both_engines! {
    /// Workers' small writes made at the same time (on SQLite they share one transaction, the
    /// group commit) each get their own answer: one claimant per unit of work, every result
    /// stored once, and a write that fails fails alone.
    async fn concurrent_small_writes_each_get_their_own_answer() {
        let bench = Bench::start("group", QUIET, None, 5).await;
        let experiment = bench.create(experiment_request("group", "small", "correctness", 5)).await;
        let store = bench.app.store.clone();
        let lease = Duration::from_secs(30);

        // 64 owners race for one unit of work while 64 others each claim their own.
        let contested = evaltap_store::replay_work_key("contested", "small");
        let claims = futures::future::join_all((0..128).map(|i| {
            let (store, id, contested) = (store.clone(), experiment.id.clone(), contested.clone());
            async move {
                let key = if i % 2 == 0 { contested } else { evaltap_store::replay_work_key(&format!("own-{i}"), "small") };
                (i % 2 == 0, store.claim_work(&id, &key, &format!("owner-{i}"), lease).await.expect("claim"))
            }
        }))
        .await;
        let held = |contested: bool| {
            claims.iter().filter(|(c, claim)| *c == contested && matches!(claim, evaltap_store::Claim::Claimed(_))).count()
        };
        assert_eq!(held(true), 1, "one claimant of the contested work");
        assert_eq!(held(false), 64, "everyone else holds their own");

        // Results stored concurrently, one of them for an experiment that does not exist.
        let results = futures::future::join_all((0..40).map(|i| {
            let store = store.clone();
            let experiment_id = if i == 17 { "no-such-experiment".to_string() } else { experiment.id.clone() };
            async move {
                let mut replay =
                    evaltap_store::ReplayRecord::new(&experiment_id, "exchange", &format!("item-{i}"), "small", "sim-small");
                replay.output_text = Some(format!("answer {i}"));
                store.insert_replay(&replay).await
            }
        }))
        .await;
        for (i, result) in results.iter().enumerate() {
            match i {
                17 => assert!(result.is_err(), "a replay of an unknown experiment is refused"),
                _ => assert!(matches!(result, Ok(true)), "replay {i}: {result:?}"),
            }
        }
        let stored = store.replays(&experiment.id).await.expect("replays");
        assert_eq!(stored.len(), 39, "every other replay stored, once");
        for i in (0..40).filter(|i| *i != 17) {
            let replay = stored.iter().find(|r| r.item_id == format!("item-{i}")).expect("stored");
            assert_eq!(replay.output_text.as_deref(), Some(format!("answer {i}").as_str()));
        }
    }
}

/// `experiment run --requeue` pushes every unfinished job again, already queued or not, and the
/// duplicates call no model: the claims decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_pushes_unfinished_jobs_again_and_calls_nothing_twice() {
    let bench = Bench::start("requeue", QUIET, None, 30).await;
    let config = write_config(&bench.dir, &bench.app.config);
    let production_calls = bench.sim.calls.total();
    bench.create(experiment_request("requeued", "small", "correctness", 30)).await;
    let output = Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .arg("--config")
        .arg(&config)
        .args(["experiment", "run", "requeued", "--requeue"])
        .output()
        .expect("experiment run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // 30 replays were queued at creation (the baseline's judgments follow them); all are
    // pushed again.
    assert!(stderr.contains("requeued 30 unfinished jobs"), "{stderr}");
    // 30 replays, 30 baseline and 30 candidate judgments: each called once.
    assert_eq!(bench.sim.calls.total() - production_calls, 90, "a duplicate job called a model");
}

crate::on_both_engines! {
    /// Ready queue jobs that no worker takes are seen as stalled (the watchdog that starts a
    /// stalled queue worker again reads this), and a running worker takes them.
    async fn ready_queue_jobs_no_worker_takes_are_seen_as_stalled() {
        let bench = Bench::start("stalled", QUIET, None, 2).await;
        let experiment = bench.create(experiment_request("stalled", "small", "correctness", 2)).await;
        let store = &bench.app.store;
        let items = store.experiment_item_ids(&experiment.id).await.expect("ids");
        let job = evaltap_worker::EvalJob::Replay {
            experiment_id: experiment.id.clone(),
            item_id: items[0].clone(),
            candidate: "small".into(),
        };
        evaltap_worker::queue::push_jobs(&bench.app.queue, vec![job]).await.expect("push");
        assert_eq!(store.stalled_queue_jobs(3).await.expect("stalled"), 0, "not yet");
        tokio::time::sleep(Duration::from_millis(4_200)).await;
        assert_eq!(store.stalled_queue_jobs(3).await.expect("stalled"), 1, "ready for 4 s, untaken");
        let worker = crate::common::BackgroundWorker::start(&bench.app);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while store.stalled_queue_jobs(0).await.expect("stalled") > 0 {
            assert!(tokio::time::Instant::now() < deadline, "the worker never took the job");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worker.stop().await;
    }
}
