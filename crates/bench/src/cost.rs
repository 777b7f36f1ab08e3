//! `evaltap bench cost`: dollars per decided verdict on the demo's setting (two candidates, two
//! rubrics, two routes of simulated traffic at the simulator's catalog prices), with every
//! sampled exchange replayed and judged (fixed n), with early stopping waiting for each route's
//! verdicts (the default: the per-route recommendations need them), with the result cache on
//! top (an answer identical to one already judged is not judged again), for that experiment
//! asked again, and with all of it through the providers' batch interfaces (half price); then
//! early stopping on the whole-sample verdicts alone, without and with the cache and batches.
//! Each is a whole run of the loop: real replays and judge calls against the simulated
//! upstream, spend read from evaltap's own ledger, what the recommendations rest on read over
//! the API. It prints figures; it asserts nothing.

use std::fmt::Write as _;

use anyhow::Context as _;
use evaltap_stats::Verdict;

use evaltap_demo::DemoOptions;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct CostBench {
    /// Production exchanges (all sampled).
    pub exchanges: usize,
    /// Seed of the traffic.
    pub seed: u64,
}

/// What one way of running cost.
#[derive(Debug, Clone)]
pub struct CostFigures {
    /// `fixed n`, `early stop` (waiting for each route's verdicts), `+ cache` (early stopping and
    /// the result cache), `cached re-run` (the last asked again), `+ batch` (early stopping and
    /// the cache, every call through a batch interface); `verdicts only` and `verdicts + batch`
    /// are `early stop` and `+ batch` stopping on the whole-sample verdicts alone.
    pub mode: &'static str,
    /// Replays and judge calls, in USD.
    pub spent_usd: f64,
    /// Replay spend alone.
    pub replays_usd: f64,
    /// Judge spend alone.
    pub judge_usd: f64,
    /// Replays made (not skipped).
    pub replays: usize,
    /// Candidate × rubric verdicts decided (not inconclusive).
    pub decided: usize,
    /// Candidate × rubric verdicts in all.
    pub verdicts: usize,
    /// Route × candidate × rubric verdicts decided (what the recommendations rest on), and in
    /// all.
    pub route_verdicts: (usize, usize),
    /// Routes the recommendations switch to a candidate.
    pub switches: usize,
    /// Replays and candidates' judgments read back from the result cache, and what they cost
    /// when paid (every candidate's together).
    pub reused: evaltap_report::CacheUse,
}

impl CostFigures {
    /// USD per decided verdict (infinite when none was decided).
    pub fn per_verdict(&self) -> f64 {
        if self.decided == 0 { f64::INFINITY } else { self.spent_usd / self.decided as f64 }
    }
}

/// Runs the loop once per mode, each on a fresh SQLite file: no lever (fixed n), early
/// stopping, early stopping with the result cache — then that experiment asked again.
pub async fn cost(settings: &CostBench) -> anyhow::Result<Vec<CostFigures>> {
    let mut figures = Vec::new();
    use evaltap_store::StopOn::{Segments, Verdicts};
    for (mode, early_stop, early_stop_on, cache, batch) in [
        ("fixed n", false, Segments, false, false),
        ("early stop", true, Segments, false, false),
        ("+ cache", true, Segments, true, false),
        ("+ batch", true, Segments, true, true),
        ("verdicts only", true, Verdicts, false, false),
        ("verdicts + batch", true, Verdicts, true, true),
    ] {
        let dir = std::env::temp_dir().join(format!("evaltap-bench-cost-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let options = DemoOptions {
            json: true,
            exchanges: settings.exchanges,
            seed: settings.seed,
            port: 0,
            early_stop,
            early_stop_on,
            cache,
            batch,
            datasets_dir: None,
        };
        let run =
            evaltap_demo::start(&options, format!("sqlite://{}", dir.join("bench.db").display())).await?;
        let report = &run.report;
        figures.push(figures_of(mode, report, &routes(&run, evaltap_demo::EXPERIMENT).await?));
        if cache && !batch {
            // The same experiment asked again on the same traffic (a re-run, another branch's
            // CI): what was paid for is read back from the result cache.
            let rerun = rerun(&run, report.baseline.n).await?;
            figures.push(figures_of("cached re-run", &rerun, &routes(&run, RERUN).await?));
        }
        run.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(figures)
}

/// What an experiment's per-route recommendations rest on, read over the API as a user would.
struct Routes {
    /// Route × candidate × rubric verdicts decided, and in all.
    verdicts: (usize, usize),
    /// Routes switched to a candidate.
    switches: usize,
}

async fn routes(run: &evaltap_demo::DemoRun, experiment: &str) -> anyhow::Result<Routes> {
    let http = evaltap_providers::http_client(std::time::Duration::from_secs(30))?;
    let get = |what: &'static str| {
        let url = format!("http://{}/api/experiments/{experiment}/{what}", run.server_addr);
        let http = http.clone();
        async move {
            let response = http.get(&url).send().await.with_context(|| format!("reading {url}"))?;
            anyhow::ensure!(response.status().is_success(), "{url}: {}", response.status());
            response.json::<serde_json::Value>().await.with_context(|| format!("decoding {url}"))
        }
    };
    let segmented: evaltap_report::segments::SegmentedReport =
        serde_json::from_value(get("segments").await?).context("reading the segments")?;
    let verdicts: Vec<Verdict> = segmented
        .segments
        .iter()
        .flat_map(|s| s.candidates.iter().flat_map(|c| c.results.rubrics.iter().map(|r| r.stats.verdict)))
        .collect();
    let recommendations = get("recommendations").await?;
    let actions = recommendations["recommendations"]["segments"]
        .as_array()
        .context("the recommendations have no segments")?
        .iter()
        .map(|s| s["action"].as_str().context("a segment's recommendation has no action"))
        .collect::<anyhow::Result<Vec<&str>>>()?;
    Ok(Routes {
        verdicts: (verdicts.iter().filter(|v| **v != Verdict::Inconclusive).count(), verdicts.len()),
        switches: actions.iter().filter(|a| **a == "switch").count(),
    })
}

fn figures_of(mode: &'static str, report: &evaltap_report::Report, routes: &Routes) -> CostFigures {
    let rubrics: Vec<Verdict> =
        report.candidates.iter().flat_map(|c| c.rubrics.iter().map(|r| r.stats.verdict)).collect();
    CostFigures {
        mode,
        spent_usd: report.spend.total_spent_usd,
        replays_usd: report.spend.spent_usd,
        judge_usd: report.spend.judge_spent_usd,
        replays: report.candidates.iter().map(|c| c.n + c.errors).sum(),
        decided: rubrics.iter().filter(|v| **v != Verdict::Inconclusive).count(),
        verdicts: rubrics.len(),
        route_verdicts: routes.verdicts,
        switches: routes.switches,
        reused: report.candidates.iter().fold(evaltap_report::CacheUse::default(), |all, c| {
            evaltap_report::CacheUse {
                replays: all.replays + c.cached.replays,
                judgments: all.judgments + c.cached.judgments,
                original_cost_usd: all.original_cost_usd + c.cached.original_cost_usd,
            }
        }),
    }
}

/// The re-run's name.
const RERUN: &str = "demo-rerun";

/// The demo's experiment created again under another name over the same API, run to the end.
async fn rerun(run: &evaltap_demo::DemoRun, sample: usize) -> anyhow::Result<evaltap_report::Report> {
    let http = evaltap_providers::http_client(std::time::Duration::from_secs(30))?;
    let created = http
        .post(format!("http://{}/api/experiments", run.server_addr))
        .json(&serde_json::json!({"name": RERUN, "candidates": ["medium", "small"],
            "rubrics": ["correctness", "helpfulness"], "margin": evaltap_demo::DEMO_MARGIN, "sample_size": sample,
            "spend_cap_usd": null}))
        .send()
        .await
        .context("creating the re-run")?;
    anyhow::ensure!(created.status().is_success(), "creating the re-run failed: {}", created.text().await?);
    let experiment = run.app.store.require_experiment(RERUN).await?;
    run.app.wait_done(&experiment, std::time::Duration::from_secs(120), |_| {}).await?;
    Ok(evaltap_report::build(&run.app.store, &experiment).await?)
}

/// The figures as a table.
pub fn render(settings: &CostBench, figures: &[CostFigures]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dollars per decided verdict: the demo's setting, {} exchanges on two routes, 2 candidates × 2 rubrics, simulator catalog prices",
        settings.exchanges
    );
    let _ = writeln!(
        out,
        "{:<16} {:>9} {:>9} {:>9} {:>8} {:>8} {:>13} {:>8} {:>13} {:>8}",
        "mode",
        "spent $",
        "replays $",
        "judge $",
        "replays",
        "decided",
        "$ per verdict",
        "vs fixed",
        "route verdicts",
        "switches"
    );
    let baseline = figures.first().map(CostFigures::per_verdict).unwrap_or(f64::NAN);
    for f in figures {
        let _ = writeln!(
            out,
            "{:<16} {:>9.4} {:>9.4} {:>9.4} {:>8} {:>4} of {:<2} {:>13.5} {:>7.2}× {:>8} of {:<2} {:>8}",
            f.mode,
            f.spent_usd,
            f.replays_usd,
            f.judge_usd,
            f.replays,
            f.decided,
            f.verdicts,
            f.per_verdict(),
            f.per_verdict() / baseline,
            f.route_verdicts.0,
            f.route_verdicts.1,
            f.switches
        );
    }
    let _ = writeln!(
        out,
        "decided: candidate × rubric verdicts on the whole sample; route verdicts: route × candidate × rubric, what the per-route recommendations rest on; switches: routes recommended to move to a candidate"
    );
    for f in figures.iter().filter(|f| f.reused.replays + f.reused.judgments > 0) {
        let _ = writeln!(
            out,
            "{}: {} and {} read back from the result cache (${:.4} when paid)",
            f.mode,
            evaltap_core::words::count(f.reused.replays as u64, "replay"),
            evaltap_core::words::count(f.reused.judgments as u64, "judgment"),
            f.reused.original_cost_usd
        );
    }
    out
}
