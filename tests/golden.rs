//! Golden sets end to end: promote production traffic into a dataset, accept it, run it
//! against two simulated models through the queue, get the expected verdicts with the dataset
//! version named; a judge that follows the reference it is shown; deterministic checks decided
//! by McNemar; drafts and bad files refused.

use evaltap_app::golden::{self as golden_cmd, GoldenRun, Promotion};
use evaltap_golden::{DatasetDir, Item};
use evaltap_sim::JudgeBehavior;
use evaltap_stats::Verdict;

use crate::common::Bench;

const QUIET: JudgeBehavior = JudgeBehavior { noise: 0.0, position_bias: 0.0, unreadable_long: 0.0 };

fn run_options(candidates: &[&str]) -> GoldenRun {
    GoldenRun { candidates: candidates.iter().map(|c| c.to_string()).collect(), ..GoldenRun::default() }
}

crate::on_both_engines! {
    async fn promoted_traffic_becomes_a_golden_set_that_runs_to_the_expected_verdicts() {
        let bench = Bench::start("golden", QUIET, None, 120).await;
        let app = &bench.app;
        let promotion = Promotion { sample: Some(50), ..Promotion::default() };
        let ids = golden_cmd::promote(&app.context(), "support", &promotion).await.expect("promotes");
        assert_eq!(ids.len(), 50);
        // Promoting again takes other exchanges, never the same one twice.
        let more = golden_cmd::promote(&app.context(), "support", &Promotion { sample: Some(5), ..Promotion::default() })
            .await
            .expect("promotes");
        assert!(more.iter().all(|id| !ids.contains(id)));
        golden_cmd::remove_items(&app.context(), "support", &more).expect("removes");

        // Draft references cannot be graded against until accepted.
        let against = GoldenRun { against_reference: true, ..run_options(&["medium"]) };
        let err = crate::common::golden_run(app, "support", &against).await.expect_err("drafts");
        assert!(format!("{err:#}").contains("still a draft"), "{err:#}");
        assert_eq!(golden_cmd::accept(&app.context(), "support", true, &[]).expect("accepts"), 50);

        // The references are the production model's answers: graded against them, the production
        // model replayed scores 10 everywhere; medium agrees on most items, small on far fewer.
        let options =
            GoldenRun { baseline: Some("large".into()), margin: Some(0.2), ..run_options(&["medium", "small"]) };
        let report = crate::common::golden_run(app, "support", &options).await.expect("runs");
        let (version, _, count) = golden_cmd::sync(&app.context(), "support").await.expect("sync");
        assert_eq!(count, 50);
        assert_eq!(report.dataset.as_deref(), Some("support"));
        assert_eq!(report.dataset_version.as_deref(), Some(version.as_str()));
        assert_eq!(
            (report.status.as_str(), report.baseline.model.as_str(), report.baseline.n),
            ("done", "sim-large", 50)
        );
        let verdict = |name: &str| {
            let c = report.candidates.iter().find(|c| c.name == name).expect("candidate");
            assert_eq!(c.rubrics[0].rubric, "correctness_vs_reference");
            assert_eq!(c.rubrics[0].stats.n, 50);
            c.rubrics[0].stats.verdict
        };
        assert_eq!(verdict("small"), Verdict::Worse, "{report:#?}");
        assert_eq!(verdict("medium"), Verdict::NonInferior, "{report:#?}");
        assert!(report.candidates.iter().all(|c| c.name != "large"), "the baseline is not a candidate");
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["dataset_version"], serde_json::json!(version));

        // The gate reads a golden run like any experiment: small regressed.
        let gate = evaltap_app::gate::evaluate(&report, Some("small"));
        assert_eq!(gate.code, evaltap_app::gate::GateCode::Regression);

        // The dashboard's example view of a golden run: items by regression, the dataset's
        // messages, the replayed baseline beside the candidate with a diff (on both engines).
        let http = evaltap_providers::http_client(std::time::Duration::from_secs(30)).expect("client");
        let base = format!("{}/api/experiments/{}", bench.url, report.experiment);
        let page: serde_json::Value = http
            .get(format!("{base}/examples?candidate=small&direction=regressions"))
            .send()
            .await
            .expect("examples")
            .json()
            .await
            .expect("json");
        let rows = page["rows"].as_array().expect("rows");
        assert!(!rows.is_empty() && rows.iter().all(|r| r["delta"].as_f64().is_some_and(|d| d < 0.0)), "{page}");
        assert!(rows[0]["preview"].as_str().is_some_and(|p| !p.is_empty()), "{page}");
        let item = rows[0]["item_id"].as_str().expect("item");
        // Dataset item keys hold a `/`: the path segment is encoded.
        let mut url = reqwest::Url::parse(&base).expect("url");
        url.path_segments_mut().expect("segments").push("examples").push(item);
        let detail: serde_json::Value = http.get(url).send().await.expect("detail").json().await.expect("json");
        assert_eq!(detail["baseline"]["name"], "large", "{detail}");
        assert!(detail["messages"].as_array().is_some_and(|m| !m.is_empty()), "{detail}");
        let small = &detail["candidates"].as_array().expect("sides")[..].iter().find(|c| c["name"] == "small").cloned().expect("small");
        assert!(small["diff"].as_array().is_some_and(|d| !d.is_empty()) && small["judgments"].as_array().is_some_and(|j| !j.is_empty()), "{small}");

        // A changed file is a new version; the old one stays stored with its run.
        golden_cmd::add(&app.context(),
            "support",
            &golden_cmd::NewItem { input: Some("What is 1 + 1?".into()), ..Default::default() },
        )
        .expect("adds");
        let (new_version, new, _) = golden_cmd::sync(&app.context(), "support").await.expect("sync");
        assert!(new && new_version != version);
        // Stored: the draft version (synced by the refused run), the accepted one the run used, and
        // the new one.
        let versions: Vec<String> = app
            .store
            .dataset_versions("support")
            .await
            .expect("versions")
            .into_iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions.len(), 3);
        assert!(versions.contains(&version) && versions.contains(&new_version));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_grades_against_the_reference_it_is_shown_even_a_wrong_one() {
    let bench = Bench::start("wrongref", QUIET, None, 1).await;
    let app = &bench.app;
    // References deliberately one off the true sum.
    for (i, (a, b)) in [(2, 3), (10, 7), (4, 4), (12, 30), (6, 9), (21, 21)].iter().enumerate() {
        let new = golden_cmd::NewItem {
            id: Some(format!("sum-{i}")),
            input: Some(format!("What is {a} + {b}? Reply with the number.")),
            reference: Some(format!("The answer is {}.", a + b + 1)),
            ..Default::default()
        };
        golden_cmd::add(&app.context(), "wrong", &new).expect("adds");
    }
    let options = GoldenRun { against_reference: true, ..run_options(&["medium"]) };
    let report = crate::common::golden_run(app, "wrong", &options).await.expect("runs");
    let experiment = app.store.require_experiment(&report.experiment).await.expect("experiment");
    let mut followed = 0;
    for j in app.store.judgments(&experiment.id).await.expect("judgments") {
        if j.subject == "baseline" {
            // The reference graded against itself.
            assert_eq!(j.raw_score, Some(10.0), "{j:?}");
            continue;
        }
        let replay =
            app.store.replay(&experiment.id, &j.item_id, "medium").await.expect("replay").expect("stored");
        let answer = replay.output_text.expect("answered");
        let item = app.store.dataset_item(&j.item_id).await.expect("item").expect("stored");
        let reference = item.body["reference"].as_str().expect("reference").to_string();
        let reference_number = reference.trim_start_matches("The answer is ").trim_end_matches('.');
        // Agreeing with the (wrong) reference scores 10, the true answer scores 2.
        let agrees = answer.contains(reference_number);
        assert_eq!(j.raw_score, Some(if agrees { 10.0 } else { 2.0 }), "{answer} vs {reference}");
        followed += usize::from(!agrees);
    }
    assert!(followed >= 4, "the judge should mark true answers wrong against wrong references");
}

crate::on_both_engines! {
    async fn deterministic_checks_are_pass_fail_and_compared_by_mcnemar() {
        let bench = Bench::start("checks", QUIET, None, 1).await;
        let app = &bench.app;
        let items: String = (0..40)
            .map(|i| {
                format!(
                    "{}\n",
                    serde_json::json!({"id": format!("q{i}"), "input": format!("What is {} + {}? Reply with the number.", 3 * i + 1, i + 2),
                        "reference": format!("{}", 4 * i + 3),
                        "checks": [{"type": "regex", "pattern": "^The answer is -?\\d+\\.$"}]})
                )
            })
            .collect();
        let file = bench.dir.0.join("sums.jsonl");
        std::fs::write(&file, items).expect("write");
        assert_eq!(golden_cmd::import(&app.context(), "sums", &file, None, &[]).expect("imports").0, 40);
        // medium answers in sentences, small with bare numbers.
        let options = GoldenRun {
            baseline: Some("medium".into()),
            rubrics: vec!["correctness".into()],
            checks: vec!["max_length=200".into()],
            ..run_options(&["small"])
        };
        let report = crate::common::golden_run(app, "sums", &options).await.expect("runs");
        let small = &report.candidates[0];
        let regex = small.rubrics.iter().find(|r| r.rubric == "check:regex").expect("regex check");
        let mcnemar = regex.stats.mcnemar.expect("pass/fail");
        assert_eq!((mcnemar.baseline_only, mcnemar.candidate_only), (40, 0), "{regex:?}");
        assert_eq!(regex.stats.verdict, Verdict::Worse);
        let rates = regex.pass_rates.as_ref().expect("pass rates");
        assert_eq!((rates.baseline, rates.candidate), (1.0, 0.0));
        assert!(rates.baseline_ci.0 > 0.9 && rates.candidate_ci.1 < 0.1, "{rates:?}");
        let length = small.rubrics.iter().find(|r| r.rubric == "check:max_length").expect("length check");
        assert_eq!(length.pass_rates.as_ref().map(|r| (r.baseline, r.candidate)), Some((1.0, 1.0)));

        // A pathological pattern is refused before anything runs.
        let bad = GoldenRun { checks: vec!["regex=(unclosed".into()], ..options.clone() };
        let err = crate::common::golden_run(app, "sums", &bad).await.expect_err("refused");
        assert!(format!("{err:#}").contains("regex"), "{err:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_import_names_the_line_and_leaves_the_dataset_unchanged() {
    let bench = Bench::start("import", QUIET, None, 1).await;
    let app = &bench.app;
    golden_cmd::add(
        &app.context(),
        "kept",
        &golden_cmd::NewItem { input: Some("first".into()), ..Default::default() },
    )
    .expect("adds");
    let path = golden_cmd::datasets(&app.context()).path("kept").expect("path");
    let before = std::fs::read(&path).expect("read");
    let file = bench.dir.0.join("bad.csv");
    std::fs::write(&file, "question,__expected\nfine,1\n\"unterminated,2\n").expect("write");
    let err = golden_cmd::import(&app.context(), "kept", &file, None, &[]).expect_err("malformed");
    assert!(format!("{err:#}").contains("bad.csv:"), "{err:#}");
    assert_eq!(std::fs::read(&path).expect("read"), before);
    // Through the binary: exit 1 with the message, file untouched.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["golden", "import", "kept", file.to_str().expect("path")])
        .env("EVALTAP_DATABASE_URL", format!("sqlite://{}", bench.dir.database().display()))
        .current_dir(&bench.dir.0)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.csv"));
    assert_eq!(std::fs::read(&path).expect("read"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_datasets_run_against_the_simulated_upstream() {
    let bench = Bench::start("shipped", QUIET, None, 1).await;
    let app = &bench.app;
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
    let target = golden_cmd::datasets(&app.context());
    std::fs::create_dir_all(target.root()).expect("mkdir");
    for name in ["arithmetic", "json-output"] {
        std::fs::copy(shipped.join(format!("{name}.jsonl")), target.path(name).expect("path")).expect("copy");
    }
    // Arithmetic against its references: the cheap terse model is worse.
    let options = GoldenRun { against_reference: true, ..run_options(&["small"]) };
    let report = crate::common::golden_run(app, "arithmetic", &options).await.expect("runs");
    let small = &report.candidates[0];
    let graded = small.rubrics.iter().find(|r| r.rubric == "correctness_vs_reference").expect("rubric");
    assert_eq!((graded.stats.n, graded.stats.verdict), (24, Verdict::Worse), "{graded:?}");
    assert!(small.rubrics.iter().any(|r| r.rubric == "check:contains"));
    // JSON output against the production model: small answers bare numbers, which are JSON
    // but not the schema's object.
    let options = GoldenRun {
        baseline: Some("large".into()),
        rubrics: vec!["correctness".into()],
        ..run_options(&["small"])
    };
    let report = crate::common::golden_run(app, "json-output", &options).await.expect("runs");
    let by_rubric =
        |name: &str| report.candidates[0].rubrics.iter().find(|r| r.rubric == name).expect("rubric").clone();
    let schema = by_rubric("check:json_schema");
    assert_eq!(schema.pass_rates.as_ref().map(|p| (p.baseline, p.candidate)), Some((1.0, 0.0)), "{schema:?}");
    assert_eq!(schema.stats.verdict, Verdict::Worse);
    let valid = by_rubric("check:json_valid");
    assert_eq!(valid.pass_rates.as_ref().map(|p| (p.baseline, p.candidate)), Some((1.0, 1.0)));
}

/// The benchmark's smoke run (`bench golden`, also `bench pipeline`): correct, with both
/// figures printed (no timing asserted).
#[test]
fn the_golden_benchmark_runs_and_prints_both_figures() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["bench", "pipeline", "--items", "30", "--concurrency", "8", "--latency-scale", "0"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    // 30 replays and 30 judge calls (the reference, graded against itself, needs none) on each
    // side; evaltap's are
    // counted from its own results (the command fails when they disagree with what the
    // simulated upstream received, or when any failed).
    assert!(stdout.contains("counted from evaltap's results") && stdout.contains("bare client"), "{stdout}");
    assert_eq!(stdout.matches("    60 calls").count(), 2, "{stdout}");
    // On Linux the run's CPU and bytes written are read from /proc and printed.
    assert!(stdout.contains("evaltap's run in this process:") && stdout.contains("s CPU"), "{stdout}");
}

/// `promote --stratify route` spreads the sample evenly over the routes, however lopsided the
/// traffic: 40 exchanges on one route and 4 on each of two others, a sample of 9, gives 3 of
/// each; without stratifying the big route takes most of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_stratified_by_route_takes_each_route_evenly() {
    let bench = Bench::start("stratify", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    let app = &bench.app;
    let exchange = |route: &str, i: usize| evaltap_core::Exchange {
        external_id: Some(format!("{route}-{i}")),
        occurred_at: None,
        request: serde_json::json!({"model": "m", "messages": [{"role": "user", "content": format!("{route} question {i}")}]}),
        response: serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "answer"}}]}),
        model: Some("m".into()),
        usage: None,
        cost_usd: None,
        latency_ms: None,
        tags: serde_json::json!({"route": route}),
        succeeded: true,
    };
    let traffic: Vec<_> = (0..40)
        .map(|i| exchange("search", i))
        .chain((0..4).map(|i| exchange("billing", i)))
        .chain((0..4).map(|i| exchange("refunds", i)))
        .collect();
    app.store.insert_exchanges("routes", &traffic).await.expect("stored");
    let routes_of = |ids: &[String], items: &[evaltap_golden::Item]| {
        let mut counts = std::collections::BTreeMap::new();
        for item in items.iter().filter(|i| ids.contains(&i.id)) {
            *counts.entry(item.tags["route"].clone()).or_insert(0) += 1;
        }
        counts
    };
    let ctx = app.context();
    let promotion = |stratify: Option<&str>| Promotion {
        filter: evaltap_store::Filter { source: Some("routes".into()), ..Default::default() },
        sample: Some(9),
        stratify: stratify.map(str::to_string),
        ..Promotion::default()
    };
    let even = golden_cmd::promote(&ctx, "even", &promotion(Some("route"))).await.expect("promotes");
    let items = golden_cmd::datasets(&ctx).read("even").expect("read");
    assert_eq!(
        routes_of(&even, &items),
        [("billing".to_string(), 3), ("refunds".to_string(), 3), ("search".to_string(), 3)].into(),
    );
    let plain = golden_cmd::promote(&ctx, "plain", &promotion(None)).await.expect("promotes");
    let items = golden_cmd::datasets(&ctx).read("plain").expect("read");
    assert!(routes_of(&plain, &items)["search"] > 3, "{:?}", routes_of(&plain, &items));
    let refused = golden_cmd::promote(&ctx, "bad", &promotion(Some("colour"))).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("use route, model or source")));
}

/// A golden run against the references never asks the judge to grade a reference against
/// itself (a rubric that grades against the reference gives it full marks by definition), and
/// asks about a reference once per rubric version: the next run reads it back. The report says
/// what the baseline's scores rest on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_is_judged_once_per_rubric_version_and_never_against_itself() {
    let bench = crate::common::Bench::start("reference-once", JudgeBehavior::default(), None, 0).await;
    let app = &bench.app;
    let items: Vec<Item> = (0..20)
        .map(|i| {
            let mut item = Item::from_input(
                format!("r{i}"),
                &format!("What is {} + {}? Reply with the number.", i + 5, 2 * i + 1),
            );
            item.reference = Some((3 * i + 6).to_string());
            item
        })
        .collect();
    DatasetDir::new(&app.config.datasets_dir).write("refs", &items).expect("write");
    let run_with = |candidate: &str| evaltap_app::golden::GoldenRun {
        candidates: vec![candidate.into()],
        against_reference: true,
        rubrics: vec!["correctness_vs_reference".into(), "correctness".into()],
        ..Default::default()
    };
    let before = bench.sim.calls.total();
    let first = crate::common::golden_run(app, "refs", &run_with("small")).await.expect("first run");
    let judged = &first.baseline.judgments;
    assert_eq!(judged.by_definition, 20, "{judged:?}");
    assert_eq!(judged.asked + judged.reused, 20, "the reference judged once on `correctness`: {judged:?}");
    // Paid: the replays, the candidate's judgments not read back (an answer identical to the
    // reference is judged once), and the reference on `correctness` alone.
    let paid = 20 + 40 - first.candidates[0].cached.judgments as u64 + judged.asked as u64;
    assert_eq!(bench.sim.calls.total() - before, paid, "{judged:?} {:?}", first.candidates[0].cached);
    let cvr =
        first.candidates[0].rubrics.iter().find(|r| r.rubric == "correctness_vs_reference").expect("row");
    assert_eq!((cvr.stats.n, cvr.stats.baseline_mean), (20, 1.0), "{cvr:?}");
    assert!(
        evaltap_report::render_text(&first)
            .contains("full marks by definition (the reference graded against itself)"),
        "{}",
        evaltap_report::render_text(&first)
    );

    // Another candidate on the same set: the reference's judgments are read back, not paid.
    let before = bench.sim.calls.total();
    let second = crate::common::golden_run(app, "refs", &run_with("medium")).await.expect("second run");
    let judged = &second.baseline.judgments;
    assert_eq!((judged.asked, judged.reused, judged.by_definition), (0, 20, 20), "{judged:?}");
    let candidate = &second.candidates[0];
    let candidate_calls = 20 + 40 - candidate.cached.judgments as u64 - candidate.cached.replays as u64;
    assert_eq!(
        bench.sim.calls.total() - before,
        candidate_calls,
        "only the candidate's replays and judgments were paid"
    );
}
