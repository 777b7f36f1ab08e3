//! `evaltap bench dashboard`: every dashboard page and its JSON endpoint timed against a store
//! holding a finished experiment of N pairs and M exchanges in all. The demo's loop produces
//! the experiment (real replays and judgments against the simulated upstream); the rest of the
//! traffic is stored through the same group commit the mirror endpoint uses. It prints figures;
//! it asserts nothing about speed.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use evaltap_core::Exchange;
use evaltap_ingest::Adapter as _;
use evaltap_store::{Delivery, DeliveryCounts};
use serde_json::json;

use evaltap_demo::{DemoOptions, PRODUCTION_MODEL};

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct DashboardBench {
    /// Exchanges stored in all.
    pub exchanges: usize,
    /// Pairs of the experiment (sampled exchanges, each replayed on two candidates).
    pub pairs: usize,
    /// Warm requests per page after the first.
    pub repeats: usize,
    /// Items of the golden dataset the datasets and drift pages show.
    pub dataset_items: usize,
    /// Runs of the drift schedule on that dataset (each a real golden run).
    pub drift_runs: usize,
}

/// Name of the benchmark's golden dataset.
const DATASET: &str = "bench";
/// Name of the benchmark's drift schedule.
const SCHEDULE: &str = "bench-drift";

/// One page's timings.
#[derive(Debug, Clone)]
pub struct PageTiming {
    /// The path requested.
    pub path: String,
    /// The first request (statistics computed and stored when the page needs them).
    pub first: Duration,
    /// Median of the warm requests.
    pub warm_p50: Duration,
    /// Slowest warm request.
    pub warm_max: Duration,
    /// Response size in bytes.
    pub bytes: usize,
}

fn synthetic_exchange(i: usize) -> anyhow::Result<Exchange> {
    let item = json!({
        "id": format!("bench-{i}"), "cost_usd": 0.00015, "latency_ms": 40.0, "tags": {"route": "assistant"},
        "request": {"model": PRODUCTION_MODEL, "messages": [
            {"role": "system", "content": "You are a concise assistant. Answer with the result only."},
            {"role": "user", "content": format!("Extract the value of the field \"plan\" from this JSON: {{\"city\":\"c-{i}\",\"plan\":\"p-{i}\"}}")}]},
        "response": {"model": PRODUCTION_MODEL, "choices": [{"message": {"role": "assistant", "content": format!("The answer is p-{i}.")}}],
                     "usage": {"prompt_tokens": 35, "completion_tokens": 6}}});
    let decoded = evaltap_ingest::formats::native::Native
        .decode(item.to_string().as_bytes(), &reqwest::header::HeaderMap::new())
        .context("decoding a synthetic exchange")?;
    decoded.exchanges.into_iter().next().map(|(_, e)| e).context("one exchange")
}

/// Runs the benchmark in a fresh temporary folder.
pub async fn dashboard(settings: &DashboardBench) -> anyhow::Result<DashboardFigures> {
    let dir = std::env::temp_dir().join(format!("evaltap-bench-dashboard-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let options = DemoOptions {
        json: true,
        exchanges: settings.pairs,
        seed: 7,
        port: 0,
        early_stop: true,
        early_stop_on: evaltap_store::StopOn::Segments,
        cache: true,
        batch: false,
        datasets_dir: Some(dir.join("datasets")),
    };
    let started = Instant::now();
    let run = evaltap_demo::start(&options, format!("sqlite://{}", dir.join("evaltap.db").display())).await?;
    eprintln!("experiment of {} pairs done in {:.1} s", settings.pairs, started.elapsed().as_secs_f64());
    let filler = settings.exchanges.saturating_sub(settings.pairs);
    let started = Instant::now();
    for chunk_start in (0..filler).step_by(1000) {
        let exchanges: Vec<Exchange> = (chunk_start..(chunk_start + 1000).min(filler))
            .map(synthetic_exchange)
            .collect::<anyhow::Result<_>>()?;
        let counts = DeliveryCounts { received: exchanges.len(), ..DeliveryCounts::default() };
        run.app
            .store
            .record_deliveries(&[Delivery { source: "demo", exchanges: &exchanges, counts }])
            .await?;
    }
    eprintln!("{filler} more exchanges stored in {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    populate_golden_and_drift(&run.app, settings).await?;
    eprintln!(
        "dataset of {} items in two versions, {} drift runs, in {:.1} s",
        settings.dataset_items,
        settings.drift_runs,
        started.elapsed().as_secs_f64()
    );
    let stored = run.app.store.count_exchanges().await?;
    // What the stored report saves each page: computing it from the results.
    let started = Instant::now();
    evaltap_report::build(&run.app.store, &run.experiment).await?;
    let compute = started.elapsed();

    let base = format!("http://{}", run.server_addr);
    let http = evaltap_providers::http_client(Duration::from_secs(120))?;
    // The listing first, so that its first request is a cold one (nothing cached in memory).
    let mut paths = vec![
        "/api/experiments/demo/examples?direction=regressions".to_string(),
        "/experiments/demo/examples?direction=regressions".to_string(),
        "/api/experiments/demo".to_string(),
        "/experiments/demo".to_string(),
        "/experiments/demo/recommendations".to_string(),
        "/api/experiments/demo/recommendations".to_string(),
        "/api/experiments/demo/chart".to_string(),
        "/api/experiments/demo/projection".to_string(),
        "/spend".to_string(),
        "/api/spend".to_string(),
        "/sources".to_string(),
        "/api/sources".to_string(),
        "/datasets".to_string(),
        "/api/datasets".to_string(),
        format!("/datasets/{DATASET}"),
        format!("/api/datasets/{DATASET}"),
        "/drift".to_string(),
        "/api/schedules".to_string(),
        format!("/drift/{SCHEDULE}"),
        format!("/api/schedules/{SCHEDULE}"),
        "/".to_string(),
    ];
    let mut timings = Vec::new();
    let mut next = 0;
    while next < paths.len() {
        let path = paths[next].clone();
        next += 1;
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..=settings.repeats {
            let started = Instant::now();
            let reply = http.get(format!("{base}{path}")).send().await?;
            let status = reply.status();
            let body = reply.bytes().await?;
            times.push(started.elapsed());
            anyhow::ensure!(status.is_success(), "{path} answered {status}");
            bytes = body.len();
        }
        let first = times[0];
        let mut warm = times[1..].to_vec();
        warm.sort();
        timings.push(PageTiming {
            path,
            first,
            warm_p50: warm.get(warm.len() / 2).copied().unwrap_or(first),
            warm_max: warm.last().copied().unwrap_or(first),
            bytes,
        });
        if next == 1 {
            // One regression to open, once the listing has been timed cold.
            let regression: serde_json::Value = http
                .get(format!("{base}/api/experiments/demo/examples?direction=regressions&per_page=1"))
                .send()
                .await?
                .json()
                .await?;
            let item = regression["rows"][0]["item_id"].as_str().context("a regression to open")?.to_string();
            paths.push(format!("/experiments/demo/examples/{item}"));
            paths.push(format!("/api/experiments/demo/examples/{item}"));
        }
    }
    run.shutdown();
    eprintln!("{stored} exchanges stored; database {}", dir.join("evaltap.db").display());
    Ok(DashboardFigures { report_compute: compute, pages: timings })
}

/// A golden dataset of `dataset_items` items stored in two versions (the second adds a tenth
/// more, a few as drafts), and a drift schedule on it with `drift_runs` runs, each a real golden
/// run by the demo's worker: what the datasets and drift pages show.
async fn populate_golden_and_drift(app: &evaltap_app::App, settings: &DashboardBench) -> anyhow::Result<()> {
    let item = |i: usize| {
        let task = evaltap_sim::Task::generate(11, i as u64);
        let mut item = evaltap_golden::Item::from_input(format!("q{i}"), &task.prompt());
        item.reference = Some(task.answer());
        item
    };
    let dir = evaltap_app::golden::datasets(&app.context());
    let first: Vec<_> = (0..settings.dataset_items).map(item).collect();
    dir.write(DATASET, &first)?;
    evaltap_app::golden::sync(&app.context(), DATASET).await?;
    let more = settings.dataset_items / 10 + 1;
    let mut second = first;
    second.extend((settings.dataset_items..settings.dataset_items + more).map(|i| {
        let mut draft = item(i);
        draft.draft = i % 3 == 0;
        draft
    }));
    dir.write(DATASET, &second)?;
    let (version, _, _) = evaltap_app::golden::sync(&app.context(), DATASET).await?;

    let ctx = app.drift_context()?;
    let spec = evaltap_store::ScheduleSpec {
        rubrics: vec!["correctness".into()],
        checks: Vec::new(),
        margin: evaltap_demo::DEMO_MARGIN,
        guard: None,
    };
    let every = Duration::from_secs(3600);
    let new = evaltap_drift::NewSchedule {
        name: Some(SCHEDULE.into()),
        dataset: evaltap_store::DatasetRef { name: DATASET.into(), version },
        candidate: "medium".into(),
        every,
        spec,
    };
    evaltap_drift::add_schedule(&ctx, new).await?;
    // One slot an hour, run by the demo's worker; each slot ticks until its run is evaluated.
    let start = chrono::Utc::now() - chrono::Duration::hours(settings.drift_runs as i64);
    for k in 0..settings.drift_runs {
        let now = start + chrono::Duration::hours(k as i64);
        evaltap_drift::run_slot_to_end(&ctx, now, Duration::from_millis(100), Duration::from_secs(600))
            .await
            .with_context(|| format!("drift run {k}"))?;
    }
    Ok(())
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct DashboardFigures {
    /// Computing the experiment's report from its stored results (what a stored report saves).
    pub report_compute: Duration,
    /// Each page.
    pub pages: Vec<PageTiming>,
}

/// The figures as text.
pub fn render(settings: &DashboardBench, figures: &DashboardFigures) -> String {
    let mut out = format!(
        "dashboard pages: {} exchanges stored, a finished experiment of {} pairs (2 candidates × 2 rubrics), \
         a golden dataset of {} items in two versions with {} drift runs, \
         first request then {} warm ones; target ≤ 200 ms\n\
         computing the report from its results (done once, then stored): {:.1} ms\n\
         {:<62} {:>9} {:>9} {:>9} {:>9}\n",
        settings.exchanges,
        settings.pairs,
        settings.dataset_items,
        settings.drift_runs,
        settings.repeats,
        figures.report_compute.as_secs_f64() * 1e3,
        "page",
        "first ms",
        "p50 ms",
        "max ms",
        "KiB"
    );
    for t in &figures.pages {
        out.push_str(&format!(
            "{:<62} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
            if t.path.len() > 62 { format!("{}…", &t.path[..61]) } else { t.path.clone() },
            t.first.as_secs_f64() * 1e3,
            t.warm_p50.as_secs_f64() * 1e3,
            t.warm_max.as_secs_f64() * 1e3,
            t.bytes as f64 / 1024.0
        ));
    }
    out
}
