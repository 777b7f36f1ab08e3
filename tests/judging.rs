//! Judges you can trust, checked from outside: frozen rubrics, counted judge failures, position
//! bias recovered, judge cost against the cap, repeated judging, and calibration against human
//! labels. Each test runs evaltap against its own simulated upstream with a judge behaving as
//! the test needs.

use std::path::Path;
use std::time::Duration;

use evaltap_app::App;
use evaltap_sim::JudgeBehavior;
use evaltap_worker::ExperimentRequest;

use crate::common::experiment_request as request;
use crate::common::{Bench, TempDir, repo_rubrics, run};

const QUIET: JudgeBehavior = JudgeBehavior { noise: 0.0, position_bias: 0.0, unreadable_long: 0.0 };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rubric_edited_after_creation_leaves_the_experiment_unchanged() {
    let rubrics = TempDir::new("rubrics");
    let original = std::fs::read_to_string(repo_rubrics().join("correctness.toml")).expect("read");
    let file = rubrics.0.join("correctness.toml");
    std::fs::write(&file, &original).expect("write");
    let bench = Bench::start("frozen", QUIET, Some(&rubrics.0), 40).await;
    let experiment = bench.create(request("frozen", "small", "correctness", 40)).await;

    // Someone edits the rubric to a 1–5 scale, and a new process (new rubric files) runs the jobs.
    let edited = original.replace("scale = { min = 1, max = 10 }", "scale = { min = 1, max = 5 }");
    assert_ne!(edited, original);
    std::fs::write(&file, &edited).expect("edit");
    let mut config = bench.app.config.clone();
    config.rubrics_dir = rubrics.0.clone();
    let fresh = App::open(config).await.expect("reopen");
    assert_eq!(fresh.rubrics.get("correctness").expect("loaded").scale.max, 5.0);
    let report = run(&fresh, &experiment).await;

    // The judge was asked on the frozen 1–10 scale: correct answers score 10.
    let max: f64 = sqlx::query_scalar("SELECT MAX(raw_score) FROM judgments WHERE experiment_id = ?")
        .bind(&experiment.id)
        .fetch_one(crate::common::sqlite_pool(&fresh.store))
        .await
        .expect("max");
    assert_eq!(max, 10.0);
    let frozen = &report.frozen_rubrics[0];
    assert_eq!(frozen.sha256, evaltap_judge::sha256_hex(&original));
    assert_ne!(frozen.sha256, evaltap_judge::sha256_hex(&edited));
    assert_eq!((frozen.mode.as_str(), frozen.scale), ("pointwise", (1.0, 10.0)));
    assert_eq!(report.judge_model.as_deref(), Some("sim-judge"));

    // What the experiment froze, and the prompt it uses, against the file as it is now.
    let shown = evaltap::judge_cmd::show_experiment(&experiment, 40);
    assert!(
        shown.contains(&frozen.sha256)
            && shown.contains("scale 1–10")
            && shown.contains("judge: model sim-judge")
    );
    let exchange = &fresh.store.experiment_item_ids(&experiment.id).await.expect("ids")[0];
    let frozen_prompt =
        evaltap::judge_cmd::render_rubric(&fresh, "correctness", exchange, Some("frozen"), None)
            .await
            .expect("render");
    let current_prompt =
        evaltap::judge_cmd::render_rubric(&fresh, "correctness", exchange, None, None).await.expect("render");
    assert!(frozen_prompt.contains("scale from 1 to 10"), "{frozen_prompt}");
    assert!(current_prompt.contains("scale from 1 to 5"), "{current_prompt}");
    drop(bench);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_failing_on_long_answers_shows_judge_errors_and_a_warning() {
    let faulty = JudgeBehavior { unreadable_long: 0.10, ..QUIET };
    let (bench, experiment, report) = Bench::run_one("faulty", faulty, "medium", "correctness", 200).await;
    let rubric = &report.candidates[0].rubrics[0];
    let pool = crate::common::sqlite_pool(&bench.app.store);

    // Failed judgments are stored with the judge's raw answer, after three attempts.
    let failed: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT subject, raw_output, attempts FROM judgments WHERE experiment_id = ? AND error IS NOT NULL",
    )
    .bind(&experiment.id)
    .fetch_all(pool)
    .await
    .expect("failed");
    assert!(!failed.is_empty());
    for (_, raw, attempts) in &failed {
        assert_eq!(*attempts, i64::from(evaltap_judge::JUDGE_ATTEMPTS));
        assert!(raw.as_deref().is_some_and(|r| r.contains("step by step")), "{raw:?}");
    }
    // Every failure that cost a pair is counted, and n + judge_errors covers every replay.
    let lost_exchanges: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT item_id) FROM judgments WHERE experiment_id = ? AND error IS NOT NULL",
    )
    .bind(&experiment.id)
    .fetch_one(pool)
    .await
    .expect("count");
    assert_eq!(rubric.judge_errors, lost_exchanges as u64);
    assert_eq!(rubric.stats.n as u64 + rubric.judge_errors, report.candidates[0].n as u64);
    assert!(rubric.judge_errors >= 20, "{}", rubric.judge_errors);
    assert!(rubric.warnings.iter().any(|w| w.contains("lost to judge failures")), "{:?}", rubric.warnings);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["candidates"][0]["rubrics"][0]["judge_errors"], rubric.judge_errors);
    let text = evaltap_report::render_text(&report);
    assert!(text.contains("judge errors") && text.contains("lost to judge failures"), "{text}");

    // The dashboard shows them too.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/experiments/faulty", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(evaltap_server::serve(
        listener,
        evaltap_server::AppState::for_app(&bench.app),
        async move {
            let _ = stopped.await;
        },
    ));
    let http = evaltap_providers::http_client(Duration::from_secs(30)).expect("client");
    let html = http.get(&url).send().await.expect("page").text().await.expect("html");
    let _ = stop.send(());
    assert!(html.contains(&format!("<td class=\"num judge-errors\">{}", rubric.judge_errors)), "{html}");
    assert!(html.contains("lost to judge failures") && html.contains("judge $"), "{html}");

    // Judge calls cost money: stored per call, summed in the spend, failed attempts included.
    let stored: f64 = sqlx::query_scalar("SELECT SUM(cost_usd) FROM judgments WHERE experiment_id = ?")
        .bind(&experiment.id)
        .fetch_one(pool)
        .await
        .expect("sum");
    assert!(stored > 0.0 && (report.spend.judge_spent_usd - stored).abs() < 1e-12, "{:?}", report.spend);
    assert!(rubric.judge_cost_usd > 0.0 && rubric.judge_cost_usd < stored);
    assert!((report.spend.total_spent_usd - report.spend.spent_usd - stored).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_recovers_the_judges_position_bias_and_warns() {
    let biased = JudgeBehavior { position_bias: 0.3, ..QUIET };
    let (_bench, _, report) = Bench::run_one("bias", biased, "medium", "preference", 300).await;
    let rubric = &report.candidates[0].rubrics[0];
    let summary = rubric.pairwise.as_ref().expect("pairwise");
    assert!((summary.position_bias - 0.3).abs() < 0.06, "{summary:?}");
    assert_eq!(rubric.first_position_rate, Some(summary.first_position_rate));
    assert!(summary.first_position_rate >= 0.25, "{summary:?}");
    let consistency = rubric.consistency.expect("consistency");
    assert!(consistency < 0.8, "{consistency}");
    assert!(rubric.warnings.iter().any(|w| w.contains("position bias")), "{:?}", rubric.warnings);
    assert!(rubric.lc_win_rate.is_some_and(|lc| (0.0..=1.0).contains(&lc)), "{rubric:?}");

    // An unbiased judge: no first-position preference, full consistency on these answers.
    let (_fair, _, report) = Bench::run_one("fair", QUIET, "medium", "preference", 150).await;
    let rubric = &report.candidates[0].rubrics[0];
    let summary = rubric.pairwise.as_ref().expect("pairwise");
    assert!(summary.position_bias.abs() < 1e-12, "{summary:?}");
    assert!(rubric.warnings.is_empty(), "{:?}", rubric.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_calls_count_against_the_spend_cap() {
    let bench = Bench::start("judgecap", QUIET, None, 60).await;
    // Replays of sim-small cost about $0.000004 each; the judge (sim-judge) about $0.0002 a call,
    // and a judgment reserves the most its calls can cost (about $0.011).
    let cap = 0.015;
    let experiment = bench
        .create(ExperimentRequest {
            spend_cap_usd: Some(cap),
            ..request("judgecap", "small", "correctness", 60)
        })
        .await;
    let report = run(&bench.app, &experiment).await;
    let spend = report.spend;
    assert!(spend.judge_spent_usd > 0.0 && spend.judge_spent_usd > spend.spent_usd, "{spend:?}");
    assert!(report.spend_cap_reached, "{spend:?}");
    // Work past the cap is skipped, whole items at a time (no half-finished pairs beyond those
    // in flight): replays not made, and the judgments of those in flight.
    let candidate = &report.candidates[0];
    assert!(candidate.skipped > 0 || candidate.rubrics[0].judge_skipped > 0, "{candidate:?}");
    // Reserved before paying: at most one judge call's estimation error over the cap.
    let largest_call: f64 = sqlx::query_scalar("SELECT MAX(cost_usd) FROM judgments WHERE experiment_id = ?")
        .bind(&experiment.id)
        .fetch_one(crate::common::sqlite_pool(&bench.app.store))
        .await
        .expect("max");
    assert!(spend.total_spent_usd <= cap + largest_call, "{spend:?}");
    // (Concurrent settles in another order leave float dust, never a reservation.)
    assert!(spend.reserved_usd.abs() < 1e-12, "no reservation left behind: {spend:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_judging_averages_k_samples_and_reports_their_spread() {
    let noisy = JudgeBehavior { noise: 0.3, ..QUIET };
    let bench = Bench::start("samples", noisy, None, 40).await;
    let experiment = bench
        .create(ExperimentRequest {
            judge_samples: Some(3),
            ..request("samples", "small", "correctness", 40)
        })
        .await;
    assert_eq!(experiment.spec.judge_samples, 3);
    let report = run(&bench.app, &experiment).await;
    let rows: Vec<(f64, String, i64)> = sqlx::query_as(
        "SELECT score, score_samples, attempts FROM judgments WHERE experiment_id = ? AND score IS NOT NULL",
    )
    .bind(&experiment.id)
    .fetch_all(crate::common::sqlite_pool(&bench.app.store))
    .await
    .expect("rows");
    assert_eq!(rows.len(), 80);
    let mut varied = 0;
    for (score, samples, attempts) in &rows {
        let samples: Vec<f64> = serde_json::from_str(samples).expect("json");
        assert_eq!((samples.len(), *attempts), (3, 3));
        assert!((score - samples.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        varied += usize::from(samples.iter().any(|s| *s != samples[0]));
    }
    assert!(varied > 0, "the seeded samples never differed");
    let rubric = &report.candidates[0].rubrics[0];
    assert!(rubric.judge_within_item_sd.is_some_and(|sd| sd > 0.0), "{rubric:?}");
    assert_eq!(report.judge.as_ref().map(|j| j.samples), Some(3));
}

/// Cohen's κ and quadratic-weighted κ recomputed here from the confusion table by their
/// textbook definitions, independently of evaltap-stats.
fn kappas_from_confusion(cells: &[(f64, f64, f64)], midpoint: f64) -> (f64, f64) {
    let n: f64 = cells.iter().map(|c| c.2).sum();
    let pass = |x: f64| x >= midpoint;
    let po = cells.iter().filter(|c| pass(c.0) == pass(c.1)).map(|c| c.2).sum::<f64>() / n;
    let ph = cells.iter().filter(|c| pass(c.0)).map(|c| c.2).sum::<f64>() / n;
    let pj = cells.iter().filter(|c| pass(c.1)).map(|c| c.2).sum::<f64>() / n;
    let pe = ph * pj + (1.0 - ph) * (1.0 - pj);
    let kappa = (po - pe) / (1.0 - pe);
    let mut labels: Vec<f64> = cells.iter().flat_map(|c| [c.0, c.1]).collect();
    labels.sort_by(f64::total_cmp);
    labels.dedup();
    let k = labels.len() as f64;
    let rank = |x: f64| labels.iter().position(|l| *l == x).expect("label") as f64;
    let weight = |a: f64, b: f64| ((rank(a) - rank(b)) / (k - 1.0)).powi(2);
    let row = |h: f64| cells.iter().filter(|c| c.0 == h).map(|c| c.2).sum::<f64>();
    let col = |j: f64| cells.iter().filter(|c| c.1 == j).map(|c| c.2).sum::<f64>();
    let observed: f64 = cells.iter().map(|c| weight(c.0, c.1) * c.2).sum();
    let mut expected = 0.0;
    for a in &labels {
        for b in &labels {
            expected += weight(*a, *b) * row(*a) * col(*b) / n;
        }
    }
    (kappa, 1.0 - observed / expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_against_human_labels_is_stored_and_named_in_reports() {
    let bench = Bench::start("calibrate", QUIET, None, 40).await;
    let labels = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/calibration/correctness.jsonl");
    let result =
        evaltap_app::calibrate::calibrate(&bench.app, "correctness", &labels).await.expect("calibrates");
    assert_eq!((result.n, result.judge_failures), (40, 0));
    let cells: Vec<(f64, f64, f64)> =
        result.confusion.iter().map(|c| (c.human, c.judge, c.count as f64)).collect();
    assert_eq!(cells.iter().map(|c| c.2).sum::<f64>(), 40.0);
    let (kappa, weighted) = kappas_from_confusion(&cells, 5.5);
    assert!((result.kappa - kappa).abs() < 1e-12, "{} vs {kappa}", result.kappa);
    assert!((result.weighted_kappa - weighted).abs() < 1e-12, "{} vs {weighted}", result.weighted_kappa);
    assert!(result.kappa > 0.9 && result.alpha_all.is_some() && result.alpha_humans.is_some(), "{result:?}");
    // The judge gives 10 to correct sentences where people gave 9–10: a small lenient bias.
    assert!(result.mean_bias > 0.0 && result.mean_bias < 1.0, "{result:?}");

    let experiment = bench.create(request("calibrated", "small", "correctness", 20)).await;
    let report = run(&bench.app, &experiment).await;
    let calibration = report.candidates[0].rubrics[0].calibration.as_ref().expect("named");
    assert!(calibration.same_rubric_text);
    assert_eq!(calibration.result["weighted_kappa"], serde_json::json!(result.weighted_kappa));
    let text = evaltap_report::render_text(&report);
    assert!(text.contains("calibrated"), "{text}");

    // A malformed labels file names its line and stores nothing.
    let bad = bench.dir.0.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": 1, \"input\": \"q\", \"response\": \"a\", \"label\": 4}\n{\"id\": 2, \"input\": \"q\"}\n",
    )
    .expect("write");
    let err = evaltap_app::calibrate::calibrate(&bench.app, "correctness", &bad).await.expect_err("bad file");
    assert!(format!("{err:#}").contains("bad.jsonl:2") && format!("{err:#}").contains("response"), "{err:#}");
}

#[test]
fn rubric_check_reports_a_broken_template_with_its_line() {
    let dir = TempDir::new("check");
    std::fs::write(
        dir.0.join("ok.toml"),
        "name='ok'\nmode='pointwise'\ntemplate='''\n### Response\n{{ response }}\n'''\n",
    )
    .expect("write");
    let out = evaltap::judge_cmd::check_rubrics(&dir.0).expect("all fine");
    assert!(out.contains("ok  ok"), "{out}");
    std::fs::write(
        dir.0.join("typo.toml"),
        "name='typo'\nmode='pointwise'\ntemplate='''\nGrade:\n{{ respons }}\n'''\n",
    )
    .expect("write");
    let err = evaltap::judge_cmd::check_rubrics(&dir.0).expect_err("broken");
    assert!(format!("{err}").contains("rubric `typo`:5: template error"), "{err}");
    // Through the binary: exit 1 with the message.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["rubric", "check"])
        .current_dir(&dir.0)
        .env("EVALTAP_CONFIG", dir.0.join("evaltap.toml"))
        .output()
        .expect("run");
    // An explicit config that does not exist is an error; without one the defaults apply.
    assert!(!output.status.success());
    let config_dir = TempDir::new("check-config");
    let config = config_dir.0.join("evaltap.toml");
    std::fs::write(&config, format!("rubrics_dir = {:?}\n", dir.0.display().to_string())).expect("config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["rubric", "check"])
        .env("EVALTAP_CONFIG", &config)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("typo`:5: template error"), "{stderr}");
    // The same problem stops any command that would judge, at start-up.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["experiment", "list"])
        .env("EVALTAP_CONFIG", &config)
        .env("EVALTAP_DATABASE_URL", format!("sqlite://{}", config_dir.0.join("db.sqlite").display()))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken rubric") && stderr.contains("typo`:5"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_whose_every_call_failed_has_an_unknown_cost_not_minus_100_percent() {
    let bench = Bench::start_with("down", QUIET, None, 10, |config| {
        let mut down = config.candidates[0].clone();
        down.name = "down".into();
        down.base_url = "http://127.0.0.1:9/v1".into();
        down.deadline_secs = Some(1);
        config.candidates.push(down);
    })
    .await;
    let experiment = bench.create(request("down", "down", "correctness", 10)).await;
    let report = run(&bench.app, &experiment).await;
    let down = &report.candidates[0];
    assert_eq!((down.n, down.errors), (0, 10));
    assert_eq!((down.cost_per_request_usd, down.cost_delta_pct), (None, None));
    let json = serde_json::to_value(&report).expect("json");
    assert!(json["candidates"][0]["cost_delta_pct"].is_null());
    assert!(evaltap_report::render_text(&report).contains("unknown"));
}

/// The real loop on an unchanged model: the production model replayed against itself and both
/// answers judged by the simulator's judge, 30% of whose scores are random, drawn afresh per
/// call. Over 100 experiments on the same 40 exchanges the report says `better` or `worse` in
/// at most 5% of them (what α promises) up to two standard errors of simulation error — a
/// method that ignored the noise would call far more — while the noise is real: nearly every
/// experiment sees the two sides scored differently (a noiseless judge could not fail this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_model_is_called_better_or_worse_in_at_most_5_percent_of_experiments() {
    let noisy = JudgeBehavior { noise: 0.3, position_bias: 0.0, unreadable_long: 0.0 };
    let bench = Bench::start("a-and-a", noisy, None, 40).await;
    let experiments = 100;
    let mut created = Vec::new();
    for k in 0..experiments {
        let mut request = request(&format!("a-and-a-{k}"), "large", "correctness", 40);
        request.auto_checks = false;
        created.push(bench.create(request).await);
    }
    let worker = crate::common::BackgroundWorker::start(&bench.app);
    for experiment in &created {
        bench.app.wait_done(experiment, Duration::from_secs(120), |_| {}).await.expect("finishes");
    }
    worker.stop().await;
    let (mut calls, mut differing) = (Vec::new(), 0);
    for experiment in &created {
        let report = evaltap_report::build(&bench.app.store, experiment).await.expect("report");
        let stats = &report.candidates[0].rubrics[0].stats;
        assert_eq!(stats.n, 40, "{stats:?}");
        if matches!(stats.verdict, evaltap_stats::Verdict::Better | evaltap_stats::Verdict::Worse) {
            calls.push((experiment.spec.name.clone(), stats.delta, stats.p_value));
        }
        differing += usize::from(stats.sd_delta > 0.0);
    }
    eprintln!(
        "A/A: {} false calls in {experiments} experiments, {differing} with differing scores",
        calls.len()
    );
    assert!(differing >= experiments * 9 / 10, "the judge's noise must reach the scores: {differing}");
    let bound = 0.05 + 2.0 * (0.05 * 0.95 / experiments as f64).sqrt();
    assert!(calls.len() as f64 <= bound * experiments as f64, "false calls beyond 5%: {calls:?}");
}
