//! `evaltap bench golden`: a golden run of N items with one judge rubric against the simulated
//! upstream, timed beside a bare HTTP client making the same calls at the same concurrency in
//! the same process. It prints figures; it asserts nothing about speed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use evaltap_golden::{DatasetDir, Item};
use evaltap_judge::Subject;
use evaltap_providers::{ChatClient, http_client};
use evaltap_sim::SimConfig;
use futures_util::StreamExt as _;
use serde_json::json;

use crate::demo::demo_config;
use evaltap_app::App;
use evaltap_app::golden::GoldenRun;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct GoldenBench {
    /// Dataset items.
    pub items: usize,
    /// Jobs (and bare calls) in flight.
    pub concurrency: usize,
    /// The simulated models' latency scale (1 = their catalog latency, 0 = none).
    pub latency_scale: f64,
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct GoldenBenchResult {
    /// Model calls in each measurement (replays and judge calls).
    pub calls: usize,
    /// evaltap: enqueue, replay, judge, store, report.
    pub evaltap: Duration,
    /// The bare client: the same calls, nothing stored.
    pub bare: Duration,
}

impl GoldenBenchResult {
    /// The figures as text.
    pub fn render(&self, settings: &GoldenBench) -> String {
        let ratio = self.bare.as_secs_f64() / self.evaltap.as_secs_f64().max(1e-9);
        format!(
            "golden run: {} items, correctness_vs_reference, {} model calls, concurrency {}, latency scale {}\n\
             evaltap     {:>8.2} s  ({:>7.0} calls/s)\n\
             bare client {:>8.2} s  ({:>7.0} calls/s)\n\
             evaltap / bare time: {:.2}× (target ≤ 2×); bare / evaltap throughput: {:.2}\n",
            settings.items,
            self.calls,
            settings.concurrency,
            settings.latency_scale,
            self.evaltap.as_secs_f64(),
            self.calls as f64 / self.evaltap.as_secs_f64().max(1e-9),
            self.bare.as_secs_f64(),
            self.calls as f64 / self.bare.as_secs_f64().max(1e-9),
            1.0 / ratio.max(1e-9),
            ratio,
        )
    }
}

/// Runs the benchmark in a fresh temporary folder.
pub async fn golden(settings: &GoldenBench) -> anyhow::Result<GoldenBenchResult> {
    let sim = evaltap_sim::spawn(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SimConfig { latency_scale: settings.latency_scale, ..SimConfig::default() },
    )
    .await
    .context("starting the simulated upstream")?;
    let dir = std::env::temp_dir().join(format!("evaltap-bench-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut config = demo_config(&sim.base_url(), format!("sqlite://{}", dir.join("bench.db").display()));
    config.datasets_dir = dir.join("datasets");
    for c in &mut config.candidates {
        c.max_concurrency = settings.concurrency;
    }
    if let Some(judge) = config.judge.as_mut() {
        judge.max_concurrency = settings.concurrency;
    }
    let app = App::open(config).await?;
    let items: Vec<Item> = (0..settings.items)
        .map(|i| {
            let (a, b) = (i as i64 * 7 % 97 + 2, i as i64 * 13 % 89 + 3);
            let mut item =
                Item::from_input(format!("b{i}"), &format!("What is {a} + {b}? Reply with the number."));
            item.reference = Some((a + b).to_string());
            item
        })
        .collect();
    DatasetDir::new(&app.config.datasets_dir).write("bench", &items)?;

    // evaltap: the whole golden run through the queue.
    let started = Instant::now();
    let options = GoldenRun {
        candidates: vec!["medium".into()],
        against_reference: true,
        rubrics: vec!["correctness_vs_reference".into()],
        ..GoldenRun::default()
    };
    let (experiment, _) = evaltap_app::golden::start_run(&app.context(), "bench", &options).await?;
    app.run_to_done(&experiment, settings.concurrency, |_| {}).await?;
    let evaltap = started.elapsed();

    // The bare client: per item the replay, then the judge on the answer and on the reference.
    let http = http_client(Duration::from_secs(60))?;
    let model = ChatClient::new(http.clone(), &sim.base_url(), None, settings.concurrency);
    let judge = ChatClient::new(http, &sim.base_url(), None, settings.concurrency);
    let rubrics = app.rubrics.clone();
    let started = Instant::now();
    let calls: Vec<anyhow::Result<usize>> = futures_util::stream::iter(items.iter())
        .map(|item| {
            let (model, judge, rubrics) = (model.clone(), judge.clone(), rubrics.clone());
            async move {
                let mut request = item.request();
                request["model"] = json!("sim-medium");
                let answer = model.chat(&request).await?.text;
                for response in [answer.as_str(), item.reference.as_deref().unwrap_or_default()] {
                    let subject = Subject { request: &request, response, reference: item.reference.as_deref() };
                    let prompt = rubrics.render("correctness_vs_reference", subject)?;
                    let body = json!({"model": "sim-judge", "temperature": 0, "messages": [{"role": "user", "content": prompt}]});
                    judge.chat(&body).await?;
                }
                Ok(3)
            }
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    let bare = started.elapsed();
    let calls = calls.into_iter().sum::<anyhow::Result<usize>>()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(GoldenBenchResult { calls, evaltap, bare })
}
