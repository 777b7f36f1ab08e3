//! The report's statistics wired where the README documents them in the report JSON: pairs
//! clustered by their `session_id` tag (`candidates[].rubrics[].clusters`, `design_effect`),
//! Holm across every candidate × rubric (`p_holm`, from the basis's p-values), and the running
//! report on the sequential basis (`"basis": "sequential"`, verdicts read off `cs_low`/`cs_high`)
//! before the fixed-n one once every result is in.

use std::time::Duration;

use evaltap_providers::{ChatClient, http_client};
use evaltap_sim::{JudgeBehavior, Task};
use serde_json::{Value, json};

use crate::common::{BackgroundWorker, Bench, experiment_request};
use crate::first_hour::mirror;

/// Exchanges of the test's traffic and sessions they fall into (ten each).
const EXCHANGES: usize = 150;
const SESSIONS: usize = 15;

/// Every rubric row of the report JSON, with its candidate.
fn rows(report: &Value) -> Vec<(String, Value)> {
    report["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .flat_map(|c| {
            let name = c["name"].as_str().expect("name").to_string();
            c["rubrics"].as_array().expect("rubrics").iter().map(move |r| (name.clone(), r.clone()))
        })
        .collect()
}

/// Checks Holm across the whole family: each row's `p_holm` is the Holm adjustment of the
/// basis's p-values of every candidate × rubric (not per candidate, not unadjusted).
fn assert_holm_across_the_family(report: &Value, p_field: &str) {
    let rows = rows(report);
    assert_eq!(rows.len(), 4, "two candidates × two rubrics: {report}");
    let p: Vec<f64> = rows.iter().map(|(_, r)| r[p_field].as_f64().expect("p")).collect();
    let adjusted = evaltap_stats::holm(&p);
    for ((candidate, row), expected) in rows.iter().zip(adjusted) {
        let p_holm = row["p_holm"].as_f64().expect("p_holm");
        assert!(
            (p_holm - expected).abs() < 1e-12,
            "{candidate}/{}: p_holm {p_holm}, Holm of {p_field} {expected}",
            row["rubric"]
        );
    }
}

crate::on_both_engines! {
    async fn the_report_json_holds_clusters_holm_and_the_running_basis_where_documented() {
        let bench = Bench::start("wiring", JudgeBehavior::default(), None, 0).await;
        // Production traffic in sessions of ten, tagged as an SDK would tag them.
        let http = http_client(Duration::from_secs(30)).expect("client");
        let production = ChatClient::new(http, &bench.sim.base_url(), None, 8);
        let mut exchanges = Vec::new();
        for i in 0..EXCHANGES {
            let request = json!({"model": "sim-large", "messages": [
                {"role": "user", "content": Task::generate(23, i as u64).prompt()}]});
            let done = production.chat(&request).await.expect("production call");
            exchanges.push(json!({"id": format!("w-{i}"), "request": request, "response": done.response,
                                  "tags": {"session_id": format!("s-{}", i % SESSIONS)}}));
        }
        mirror(&bench, exchanges).await;
        let mut request = experiment_request("wiring", "medium", "correctness", EXCHANGES);
        request.candidates = vec!["medium".into(), "small".into()];
        request.rubrics = vec!["correctness".into(), "helpfulness".into()];
        let experiment = bench.create(request).await;

        // While it runs: the sequential basis, Holm over the sequential p-values, and each
        // verdict read off the confidence sequence.
        let worker = BackgroundWorker::start(&bench.app);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let progress = bench.app.store.experiment_progress(&experiment).await.expect("progress");
            if progress.completed() * 2 >= progress.total() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "half the work never got done: {progress:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worker.stop().await;
        let running = evaltap_report::build(&bench.app.store, &experiment).await.expect("report");
        let running = serde_json::to_value(&running).expect("json");
        assert_eq!(running["status"], "running", "{running}");
        assert_eq!(running["basis"], "sequential", "{running}");
        assert_holm_across_the_family(&running, "p_value_sequential");
        let margin = running["margin"].as_f64().expect("margin");
        for (candidate, row) in rows(&running) {
            let (low, high) = (row["cs_low"].as_f64(), row["cs_high"].as_f64());
            match row["verdict"].as_str() {
                Some("better") => assert!(low.expect("cs_low") > 0.0, "{candidate}: {row}"),
                Some("non-inferior") => assert!(low.expect("cs_low") > -margin, "{candidate}: {row}"),
                Some("worse") => assert!(high.expect("cs_high") < 0.0, "{candidate}: {row}"),
                _ => {}
            }
        }

        // Done: the fixed-n basis, Holm over the fixed-n p-values, and the pairs clustered by
        // session: every session is a cluster, and the design effect is reported.
        let done = crate::common::run(&bench.app, &experiment).await;
        let done = serde_json::to_value(&done).expect("json");
        assert_eq!(done["status"], "done", "{done}");
        assert_eq!(done["basis"], "fixed-n", "{done}");
        assert_holm_across_the_family(&done, "p_value");
        for (candidate, row) in rows(&done) {
            assert_eq!(row["n"], EXCHANGES, "{candidate}: {row}");
            assert_eq!(row["clusters"], SESSIONS, "{candidate}: pairs clustered by session_id: {row}");
            assert!(row["design_effect"].as_f64().is_some_and(f64::is_finite), "{candidate}: {row}");
        }
    }
}
