//! The whole loop in-process: simulated upstream → mirror endpoint → store → queue → replay →
//! judge → statistics → report, then idempotency under re-runs and a worker crash.

use std::collections::HashMap;
use std::time::Duration;

use evaltap_app::App;
use evaltap_demo::{DemoOptions, start};
use evaltap_stats::Verdict;
use evaltap_store::{Experiment, Progress};
use evaltap_worker::{EvalJob, ExperimentRequest, JobOutcome};
use sqlx::Row;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::common::{TempDir, experiment_request};

async fn count(pool: &sqlx::SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

/// Every (experiment, exchange, candidate) has one replay and every (experiment, exchange,
/// subject, rubric, position) one judgment.
async fn assert_unique(pool: &sqlx::SqlitePool) {
    let replays = count(pool, "SELECT COUNT(*) FROM replays").await;
    let distinct =
        count(pool, "SELECT COUNT(*) FROM (SELECT DISTINCT experiment_id, item_id, candidate FROM replays)")
            .await;
    assert_eq!(replays, distinct);
    let judgments = count(pool, "SELECT COUNT(*) FROM judgments").await;
    let distinct = count(
        pool,
        "SELECT COUNT(*) FROM (SELECT DISTINCT experiment_id, item_id, subject, rubric, position FROM judgments)",
    )
    .await;
    assert_eq!(judgments, distinct);
}

/// Creates a one-candidate, one-rubric experiment over `sample` exchanges.
async fn create(
    app: &App,
    name: &str,
    candidate: &str,
    rubric: &str,
    sample: usize,
    spend_cap_usd: Option<f64>,
) -> Experiment {
    let request = ExperimentRequest { spend_cap_usd, ..experiment_request(name, candidate, rubric, sample) };
    evaltap_worker::create_experiment(&app.config, &app.rubrics, &app.store, request).await.expect("create")
}

/// Runs a worker with `concurrency` jobs in flight until `experiment` is done, then stops it.
async fn run_to_done(app: &App, experiment: &Experiment, concurrency: usize) -> Progress {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = app.clone();
    let worker = tokio::spawn(async move {
        runner
            .run_worker(concurrency, async move {
                let _ = stop_rx.await;
            })
            .await
    });
    let done = app.wait_done(experiment, Duration::from_secs(60), |_| {}).await.expect("finishes");
    let _ = stop_tx.send(());
    worker.await.expect("join").expect("worker");
    done
}

async fn pending_jobs(pool: &sqlx::SqlitePool) -> i64 {
    count(pool, "SELECT COUNT(*) FROM Jobs WHERE status NOT IN ('Done', 'Failed', 'Killed')").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_loop_reaches_the_right_verdicts_and_is_idempotent() {
    let dir = TempDir::new("loop");
    let options = DemoOptions {
        json: true,
        exchanges: 300,
        seed: 7,
        port: 0,
        early_stop: false,
        early_stop_on: evaltap_store::StopOn::Segments,
        cache: false,
        batch: false,
        datasets_dir: None,
    };
    let run = start(&options, format!("sqlite://{}", dir.database().display())).await.expect("the loop runs");
    let report = &run.report;
    let pool = crate::common::sqlite_pool(&run.app.store).clone();

    // Verdicts: the cheap, clearly worse model is `worse` on every rubric; the cheap model about
    // as good as production is not, and both cost less.
    assert_eq!(report.status, "done");
    assert_eq!(report.baseline.n, 300);
    assert_eq!(report.baseline.model, "sim-large");
    let by_name: HashMap<&str, _> = report.candidates.iter().map(|c| (c.name.as_str(), c)).collect();
    let small = by_name["small"];
    let medium = by_name["medium"];
    for rubric in &small.rubrics {
        assert_eq!(rubric.stats.verdict, Verdict::Worse, "{rubric:?}");
        assert!(rubric.stats.ci_high < 0.0);
    }
    for rubric in &medium.rubrics {
        assert_ne!(rubric.stats.verdict, Verdict::Worse, "{rubric:?}");
    }
    let (medium_cost, small_cost) =
        (medium.cost_delta_pct.expect("priced"), small.cost_delta_pct.expect("priced"));
    assert!(medium_cost < 0.0 && small_cost < medium_cost);
    assert_eq!((small.n, small.errors, medium.n, medium.errors), (300, 0, 300, 0));
    assert!(medium.latency_p50_ms > 0.0);

    // The JSON contract's names.
    let json = serde_json::to_value(report).expect("serializes");
    for key in ["experiment", "status", "baseline", "candidates"] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    for key in ["model", "n", "cost_per_request_usd"] {
        assert!(json["baseline"].get(key).is_some(), "missing baseline.{key}");
    }
    let first = &json["candidates"][0];
    for key in [
        "name",
        "model",
        "n",
        "errors",
        "cost_per_request_usd",
        "cost_delta_pct",
        "latency_p50_ms",
        "rubrics",
    ] {
        assert!(first.get(key).is_some(), "missing candidates[].{key}");
    }
    for key in
        ["rubric", "n", "baseline_mean", "candidate_mean", "delta", "ci_low", "ci_high", "p_value", "verdict"]
    {
        assert!(first["rubrics"][0].get(key).is_some(), "missing rubrics[].{key}");
    }
    assert_eq!(json["basis"], "fixed-n");

    // Recompute means, deltas and p-values from the stored judgments.
    let rows = sqlx::query("SELECT item_id, subject, rubric, score FROM judgments WHERE experiment_id = ?")
        .bind(&run.experiment.id)
        .fetch_all(&pool)
        .await
        .expect("judgments");
    let mut scores: HashMap<(String, String), HashMap<String, f64>> = HashMap::new();
    for row in rows {
        let score: Option<f64> = row.get("score");
        scores
            .entry((row.get("subject"), row.get("rubric")))
            .or_default()
            .insert(row.get("item_id"), score.expect("every judgment scored"));
    }
    for candidate in &report.candidates {
        for rubric in &candidate.rubrics {
            let result = &rubric.stats;
            let base = &scores[&("baseline".to_string(), rubric.rubric.clone())];
            let cand = &scores[&(candidate.name.clone(), rubric.rubric.clone())];
            let diffs: Vec<f64> = cand.iter().map(|(ex, c)| c - base[ex]).collect();
            let n = diffs.len() as f64;
            let mean = diffs.iter().sum::<f64>() / n;
            let sd = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let t = mean / (sd / n.sqrt());
            let p = 2.0 * StudentsT::new(0.0, 1.0, n - 1.0).expect("t").sf(t.abs());
            let base_mean = cand.keys().map(|ex| base[ex]).sum::<f64>() / n;
            assert_eq!(result.n, diffs.len());
            assert!(
                (result.delta - mean).abs() < 1e-9,
                "{} {}: {} vs {mean}",
                candidate.name,
                rubric.rubric,
                result.delta
            );
            assert!((result.baseline_mean - base_mean).abs() < 1e-9);
            assert!((result.candidate_mean - (base_mean + mean)).abs() < 1e-9);
            assert!((result.p_value - p).abs() <= 1e-9 * p.max(1e-300) + 1e-300, "{} vs {p}", result.p_value);
        }
    }
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM replays").await, 600);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM judgments").await, 300 * 3 * 2);
    assert_unique(&pool).await;

    // The CI gate fails on the worse candidate; the other it never fails, and passes exactly
    // when the report shows it non-inferior (or better) on every rubric.
    let small_gate = evaltap_app::gate::evaluate(report, Some("small"));
    assert!(
        small_gate.code == evaltap_app::gate::GateCode::Regression && small_gate.reasons.len() == 2,
        "{small_gate:?}"
    );
    let medium_gate = evaltap_app::gate::evaluate(report, Some("medium"));
    let shown =
        medium.rubrics.iter().all(|r| matches!(r.stats.verdict, Verdict::NonInferior | Verdict::Better));
    let expected =
        if shown { evaltap_app::gate::GateCode::Pass } else { evaltap_app::gate::GateCode::Undecided };
    assert_eq!(medium_gate.code, expected, "{medium_gate:?}");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["gate", "demo", "--candidate", "small"])
        .env("EVALTAP_DATABASE_URL", format!("sqlite://{}", dir.database().display()))
        .current_dir(&dir.0)
        .status()
        .expect("run evaltap gate");
    assert_eq!(status.code(), Some(1));

    // The dashboard shows the experiment.
    let http = evaltap_providers::http_client(Duration::from_secs(30)).expect("client");
    let index = http.get(format!("http://{}/", run.server_addr)).send().await.expect("index");
    assert_eq!(index.status().as_u16(), 200);
    assert!(index.text().await.expect("html").contains("/experiments/demo"));
    let page = http.get(format!("http://{}/experiments/demo", run.server_addr)).send().await.expect("page");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("sim-small") && html.contains(">worse<") && html.contains("<svg"), "{html}");
    let api = http.get(format!("http://{}/api/experiments/demo", run.server_addr)).send().await.expect("api");
    assert_eq!(api.status().as_u16(), 200);

    // Running a job again finds its result stored and adds nothing.
    let item_id = &run.app.store.experiment_item_ids(&run.experiment.id).await.expect("ids")[0];
    let replay = EvalJob::Replay {
        experiment_id: run.experiment.id.clone(),
        item_id: item_id.clone(),
        candidate: "small".into(),
    };
    let again = evaltap_worker::run(&run.app.services, &replay).await.expect("replay");
    assert!(matches!(again, JobOutcome::AlreadyDone { .. }), "{again:?}");

    // Enqueueing every job of 60 of its items a second time, with the worker still running,
    // drains without adding a row. (All 300 items' 1,500 jobs took over two minutes to drain
    // when the full suite loaded both cores: each duplicate still costs a claim and an ack,
    // each a synced write. 300 show the same.)
    let queue = run.app.queue.clone();
    let mut duplicate_jobs = Vec::new();
    let items = run.app.store.experiment_item_ids(&run.experiment.id).await.expect("ids");
    for item_id in items.into_iter().take(60) {
        for candidate in ["small", "medium"] {
            duplicate_jobs.push(EvalJob::Replay {
                experiment_id: run.experiment.id.clone(),
                item_id: item_id.clone(),
                candidate: candidate.into(),
            });
        }
        for subject in ["baseline", "small", "medium"] {
            duplicate_jobs.push(EvalJob::Judge {
                experiment_id: run.experiment.id.clone(),
                item_id: item_id.clone(),
                subject: subject.into(),
                rubric: "correctness".into(),
                position: String::new(),
            });
        }
    }
    evaltap_worker::queue::push_jobs(&queue, duplicate_jobs).await.expect("push duplicates");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while pending_jobs(&pool).await > 0 {
        if tokio::time::Instant::now() >= deadline {
            let jobs: Vec<(String, Option<String>, i64, i64)> = sqlx::query_as(
                "SELECT status, lock_by, COUNT(*), MAX(attempts) FROM Jobs GROUP BY status, lock_by",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            let workers: Vec<(String, i64)> = sqlx::query_as("SELECT id, last_seen FROM Workers")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
            panic!(
                "duplicate jobs never drained: jobs (status, lock_by, count, attempts) {jobs:?}; workers {workers:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM replays").await, 600);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM judgments").await, 1800);
    run.shutdown();

    // A worker killed mid-run: its replacement finishes the experiment with one row per key.
    let app = run.app.clone();
    let experiment = create(&app, "restart", "small", "correctness", 120, None).await;
    let crashing = app.clone();
    let worker = tokio::spawn(async move { crashing.run_worker(16, std::future::pending()).await });
    loop {
        let progress = app.progress(&experiment).await.expect("progress");
        if progress.completed() >= progress.total() / 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.abort();
    let _ = worker.await;
    let before = app.progress(&experiment).await.expect("progress");
    assert!(!before.is_done(), "the crash must land mid-run: {before:?}");

    app.resume_unfinished().await.expect("resume");
    let done = run_to_done(&app, &experiment, 16).await;
    assert_eq!((done.replays_done, done.judgments_done), (120, 240));
    assert_unique(&pool).await;
    let report = evaltap_report::build(&app.store, &experiment).await.expect("report");
    assert_eq!(report.candidates[0].rubrics[0].stats.verdict, Verdict::Worse);

    // A spend cap: replays past it are skipped, never attempted, and the report says so. (A
    // cap smaller than one judgment's reservation — the most its calls can cost, about $0.011
    // here — buys nothing at all: no pair can be scored.)
    let cap = 0.015;
    let capped = create(&app, "capped", "medium", "correctness", 50, Some(cap)).await;
    run_to_done(&app, &capped, 8).await;
    let report = evaltap_report::build(&app.store, &capped).await.expect("report");
    let medium = &report.candidates[0];
    assert!(report.spend_cap_reached);
    assert!(report.spend.spent_usd <= cap && report.spend.spent_usd > 0.0, "{:?}", report.spend);
    assert!(medium.n > 0 && medium.skipped > 0 && medium.errors == 0, "{medium:?}");
    assert_eq!(medium.n + medium.skipped, 50);
    let replayed: f64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(cost_usd), 0) FROM replays WHERE experiment_id = ?")
            .bind(&capped.id)
            .fetch_one(&pool)
            .await
            .expect("sum");
    assert!((replayed - report.spend.spent_usd).abs() < 1e-12);

    // A pairwise rubric: each exchange judged in both orders, a win only when both agree.
    let pairwise = create(&app, "pairwise", "small", "preference", 80, None).await;
    assert_eq!(pairwise.spec.pairwise_rubrics, ["preference"]);
    let done = run_to_done(&app, &pairwise, 16).await;
    assert_eq!(done.judgments_done, 160);
    let positions: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT subject, position, COUNT(*) FROM judgments WHERE experiment_id = ? GROUP BY subject, position ORDER BY position",
    )
    .bind(&pairwise.id)
    .fetch_all(&pool)
    .await
    .expect("counts");
    assert_eq!(
        positions,
        [("small".to_string(), "ab".to_string(), 80), ("small".to_string(), "ba".to_string(), 80)]
    );
    let report = evaltap_report::build(&app.store, &pairwise).await.expect("report");
    let rubric = &report.candidates[0].rubrics[0];
    let summary = rubric.pairwise.as_ref().expect("pairwise summary");
    assert_eq!(summary.wins + summary.losses + summary.ties, 80);
    assert!(summary.losses > summary.wins, "{summary:?}");
    assert!(summary.position_consistency > 0.5 && summary.position_consistency < 1.0, "{summary:?}");
    assert_eq!(rubric.stats.baseline_mean, 0.5);
    assert_eq!(rubric.stats.verdict, Verdict::Worse, "{rubric:?}");

    // Every field the README's report contract names is in the JSON (pointwise and pairwise).
    let mut present = std::collections::HashSet::new();
    for report in [&run.report, &report] {
        collect_keys(&serde_json::to_value(report).expect("json"), &mut present);
    }
    for key in readme_report_keys() {
        assert!(present.contains(&key), "README promises report field `{key}`, the report has none");
    }
}

fn collect_keys(value: &serde_json::Value, keys: &mut std::collections::HashSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                keys.insert(k.clone());
                collect_keys(v, keys);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_keys(v, keys)),
        _ => {}
    }
}

/// The field names in the README's report contract block.
fn readme_report_keys() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let start = readme.find("The report JSON (").expect("contract section");
    let block = &readme[start..];
    let open = block.find("```\n").expect("code block") + 4;
    let close = open + block[open..].find("```").expect("end of block");
    let text = block[open..close].replace(r#": "running" | "done""#, "");
    let keys: Vec<String> = regex::Regex::new(r#""([a-z_0-9]+)""#)
        .expect("regex")
        .captures_iter(&text)
        .map(|c| c[1].to_string())
        .collect();
    assert!(keys.len() > 40, "{keys:?}");
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_queue_worker_starts_again_after_a_storage_error() {
    let bench =
        crate::common::Bench::start("queue-restart", evaltap_sim::JudgeBehavior::default(), None, 4).await;
    let experiment = bench.create(experiment_request("restart", "small", "correctness", 4)).await;
    let worker = crate::common::BackgroundWorker::start(&bench.app);
    bench.app.wait_done(&experiment, Duration::from_secs(60), |_| {}).await.expect("done");
    let pool = crate::common::sqlite_pool(&bench.app.store).clone();
    // The queue's table goes away for a moment: apalis's worker fails its next fetch and stops.
    sqlx::query("ALTER TABLE Jobs RENAME TO Jobs_away").execute(&pool).await.expect("rename");
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("ALTER TABLE Jobs_away RENAME TO Jobs").execute(&pool).await.expect("rename back");
    // Work pushed to the queue afterwards is still taken: the queue's worker was started again.
    let items = bench.app.store.experiment_item_ids(&experiment.id).await.expect("ids");
    let duplicates: Vec<EvalJob> = items
        .iter()
        .map(|item_id| EvalJob::Replay {
            experiment_id: experiment.id.clone(),
            item_id: item_id.clone(),
            candidate: "small".into(),
        })
        .collect();
    evaltap_worker::queue::push_jobs(&bench.app.queue, duplicates).await.expect("push");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pending_jobs(&pool).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the queue's worker never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop().await;
}
