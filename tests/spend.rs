//! The spend ledger from outside the worker: presumed payments, answers cut at their output
//! limit, the cost estimated before a run and a cap that buys complete pairs. (Spend under a cap with several processes is in `scale`.)

use std::time::Duration;

use evaltap_sim::JudgeBehavior;
use evaltap_store::{Paid, Reserve, SpendKind};

use crate::common::{Bench, experiment_request};
use crate::first_hour::{evaltap_in, stderr, stdout};

const QUIET: JudgeBehavior = JudgeBehavior { noise: 0.0, position_bias: 0.0, unreadable_long: 0.0 };

crate::on_both_engines! {
    /// A reservation whose caller died is settled at its reserved amount as presumed, never
    /// released to zero; if the caller answers after all, its actual cost replaces the
    /// presumed amount.
    async fn a_dead_caller_s_reservation_is_presumed_paid_and_a_late_answer_replaces_it() {
        let bench = Bench::start("presumed", QUIET, None, 3).await;
        let mut request = experiment_request("presumed", "medium", "correctness", 3);
        request.spend_cap_usd = Some(1.0);
        let experiment = bench.create(request).await;
        let store = &bench.app.store;
        let id = experiment.id.as_str();
        let reserve = |key: &'static str, usd: f64| async move {
            match store.reserve_spend(id, SpendKind::Replay, key, usd, Duration::from_millis(1)).await {
                Ok(Reserve::Reserved(reservation)) => reservation,
                other => panic!("{other:?}"),
            }
        };
        let late = reserve("late", 0.010).await;
        let _dead = reserve("dead", 0.020).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(store.presume_expired_reservations().await.expect("presume"), 2);
        let spend = store.spend(&experiment.id).await.expect("spend");
        assert!((spend.spent_usd - 0.030).abs() < 1e-12, "{spend:?}");
        assert!((spend.presumed_usd - 0.030).abs() < 1e-12 && spend.presumed_calls == 2, "{spend:?}");
        assert!(spend.reserved_usd.abs() < 1e-12, "{spend:?}");
        // Presumed once: asking again changes nothing.
        assert_eq!(store.presume_expired_reservations().await.expect("presume"), 0);

        store.settle_spend(&experiment.id, SpendKind::Replay, Some(&late), Paid::Actual(0.004)).await.expect("settle");
        let spend = store.spend(&experiment.id).await.expect("spend");
        assert!((spend.spent_usd - 0.024).abs() < 1e-12, "{spend:?}");
        assert!((spend.presumed_usd - 0.020).abs() < 1e-12 && spend.presumed_calls == 1, "{spend:?}");

        // A call whose answer was lost after sending counts at its bound, as presumed.
        let lost = reserve("lost", 0.005).await;
        store.settle_spend(&experiment.id, SpendKind::Replay, Some(&lost), Paid::Presumed(0.005)).await.expect("settle");
        let spend = store.spend(&experiment.id).await.expect("spend");
        assert!((spend.spent_usd - 0.029).abs() < 1e-12 && spend.presumed_calls == 2, "{spend:?}");
        let ledger = store.reservations(&experiment.id).await.expect("ledger");
        let statuses: Vec<(&str, i64)> = ledger.iter().map(|(s, n, _)| (s.as_str(), *n)).collect();
        assert_eq!(statuses, [("presumed", 2), ("settled", 1)]);
    }
}

/// Under a cap a replay carries an output limit: answers that fit are whole, and answers cut at
/// a limit the user set are counted per candidate, in the report's JSON, its text and the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_cut_at_the_output_limit_are_counted_per_candidate() {
    let bench = Bench::start_with("truncated", QUIET, None, 30, |config| {
        let mut verbose = config.candidates[0].clone();
        verbose.name = "verbose".into();
        verbose.model = "sim-verbose".into();
        verbose.price =
            evaltap_core::Price { input_per_mtok: 3.0, output_per_mtok: 15.0, ..Default::default() };
        let mut cut = verbose.clone();
        cut.name = "verbose-cut".into();
        cut.params.insert("max_tokens".into(), 40.into());
        config.candidates.extend([verbose, cut]);
    })
    .await;
    let mut request = experiment_request("truncated", "verbose", "correctness", 30);
    request.candidates.push("verbose-cut".into());
    request.spend_cap_usd = Some(10.0);
    let experiment = bench.create(request).await;
    let report = crate::common::run(&bench.app, &experiment).await;
    let by_name = |name: &str| report.candidates.iter().find(|c| c.name == name).expect("candidate");
    assert_eq!(by_name("verbose").truncated, 0, "a rambling answer fits the bound a capped replay carries");
    assert_eq!(by_name("verbose-cut").truncated, 30);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["candidates"][1]["truncated"], 30);
    let text = evaltap_report::render_text(&report);
    assert!(text.contains("30 answers cut at the output limit"), "{text}");
    let page = reqwest::get(format!("{}/experiments/truncated", bench.url)).await.expect("page");
    let page = page.text().await.expect("body");
    assert!(page.contains("30 answers cut at the output limit"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_is_estimated_before_a_run_and_a_cap_buys_complete_pairs() {
    let bench =
        crate::common::Bench::start("estimate", evaltap_sim::JudgeBehavior::default(), None, 60).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    let dir = &bench.dir.0;
    // --dry-run: the estimate, replays and judge apart, and nothing created.
    let out = evaltap_in(
        dir,
        &[
            "experiment",
            "create",
            "--name",
            "plan",
            "--candidate",
            "small,medium",
            "--rubric",
            "correctness,helpfulness",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    let figure = |label: &str| -> (f64, u64) {
        let re = regex::Regex::new(&format!(r"{label} \$([0-9.]+) \((\d+) calls\)")).expect("regex");
        let c = re.captures(&line).unwrap_or_else(|| panic!("{label} in {line}"));
        (c[1].parse().expect("usd"), c[2].parse().expect("calls"))
    };
    assert!(line.starts_with("estimated cost $") && line.contains("for 60 items"), "{line}");
    let (replay_usd, replay_calls) = figure("replays");
    let (judge_usd, judge_calls) = figure("judge");
    assert_eq!(replay_calls, 60 * 2);
    assert_eq!(judge_calls, 60 * 2 * 3, "two rubrics on the baseline and both candidates");
    assert!(bench.app.store.experiment("plan").await.expect("read").is_none(), "a dry run created it");

    // The same request, run: the estimate is of the right size.
    let request = |name: &str, cap: Option<f64>| evaltap_worker::ExperimentRequest {
        name: name.into(),
        candidates: vec!["small".into(), "medium".into()],
        rubrics: vec!["correctness".into(), "helpfulness".into()],
        sample_size: None,
        filter: Default::default(),
        margin: None,
        spend_cap_usd: cap,
        judge_samples: None,
        dataset: None,
        baseline: None,
        checks: vec![],
        auto_checks: true,
        // The estimate is of every replay: compare it with an experiment that makes them all.
        early_stop: false,
        early_stop_on: evaltap_store::StopOn::Segments,
        cache: false,
    };
    let full = bench.create(request("full", None)).await;
    let report = crate::common::run(&bench.app, &full).await;
    let within = |estimated: f64, actual: f64| actual > estimated / 3.0 && actual < estimated * 3.0;
    assert!(
        within(replay_usd, report.spend.spent_usd),
        "replays: estimated {replay_usd}, spent {}",
        report.spend.spent_usd
    );
    assert!(
        within(judge_usd, report.spend.judge_spent_usd),
        "judge: estimated {judge_usd}, spent {}",
        report.spend.judge_spent_usd
    );

    // A cap of a third of the cost buys complete pairs on every candidate × rubric, not
    // baseline judgments of every item and half-finished pairs.
    let cap = (replay_usd + judge_usd) / 3.0;
    let capped = bench.create(request("capped-third", Some(cap))).await;
    let report = crate::common::run(&bench.app, &capped).await;
    assert!(report.spend_cap_reached, "the cap was not reached");
    // Items the money touched (a call paid for) against items it finished: what is left
    // half-done is at most what was in flight when the cap was reached.
    let replays = bench.app.store.replays(&capped.id).await.expect("replays");
    let judgments = bench.app.store.judgments(&capped.id).await.expect("judgments");
    let paid: std::collections::BTreeSet<&str> = replays
        .iter()
        .filter(|r| r.skipped.is_none())
        .map(|r| r.item_id.as_str())
        .chain(judgments.iter().filter(|j| j.skipped.is_none()).map(|j| j.item_id.as_str()))
        .collect();
    let finished = paid
        .iter()
        .filter(|item| {
            let done = judgments.iter().filter(|j| j.item_id == **item && j.score.is_some()).count();
            done == 3 * 2 // baseline and both candidates, on both rubrics
        })
        .count();
    assert!(paid.len() - finished <= 16, "{} items paid for, {finished} finished", paid.len());
    for c in &report.candidates {
        for r in &c.rubrics {
            assert!(
                r.stats.n >= 8,
                "{} × {}: {} pairs for a third of the money",
                c.name,
                r.rubric,
                r.stats.n
            );
        }
    }
}
