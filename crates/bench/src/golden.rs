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

use evaltap_app::App;
use evaltap_app::golden::GoldenRun;
use evaltap_demo::demo_config;

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
    /// Model calls evaltap made, counted from its own replays and judgments (and checked
    /// against the requests the simulated upstream received meanwhile).
    pub evaltap_calls: usize,
    /// Model calls the bare client made (replays and judge calls).
    pub bare_calls: usize,
    /// evaltap: enqueue, replay, judge, store, report.
    pub evaltap: Duration,
    /// The bare client: the same calls, nothing stored.
    pub bare: Duration,
    /// CPU time this process spent during evaltap's run (user + system), when the platform
    /// reports it.
    pub evaltap_cpu: Option<Duration>,
    /// Bytes this process caused to be written to storage during evaltap's run, when the
    /// platform reports it.
    pub evaltap_written: Option<u64>,
}

/// This process's CPU time so far (user + system), from `/proc/self/stat` (Linux).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15, in clock ticks of 1/100 s on Linux.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Bytes this process caused to be written to storage so far, from `/proc/self/io` (Linux).
fn process_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|line| line.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok())
}

impl GoldenBenchResult {
    /// The figures as text.
    pub fn render(&self, settings: &GoldenBench) -> String {
        let ratio = self.bare.as_secs_f64() / self.evaltap.as_secs_f64().max(1e-9);
        let mut out = format!(
            "golden run: {} items, correctness_vs_reference, concurrency {}, latency scale {}\n\
             evaltap     {:>8.2} s  {:>6} calls ({:>7.0} calls/s, counted from evaltap's results)\n\
             bare client {:>8.2} s  {:>6} calls ({:>7.0} calls/s)\n\
             evaltap / bare time: {:.2}× (target ≤ 2×); bare / evaltap throughput: {:.2}\n",
            settings.items,
            settings.concurrency,
            settings.latency_scale,
            self.evaltap.as_secs_f64(),
            self.evaltap_calls,
            self.evaltap_calls as f64 / self.evaltap.as_secs_f64().max(1e-9),
            self.bare.as_secs_f64(),
            self.bare_calls,
            self.bare_calls as f64 / self.bare.as_secs_f64().max(1e-9),
            1.0 / ratio.max(1e-9),
            ratio,
        );
        if let (Some(cpu), Some(written)) = (self.evaltap_cpu, self.evaltap_written) {
            out.push_str(&format!(
                "evaltap's run in this process: {:.2} s CPU, {:.1} MB written to storage\n",
                cpu.as_secs_f64(),
                written as f64 / 1e6
            ));
        }
        out
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
    let (cpu_before, written_before, sent_before) = (process_cpu(), process_written(), sim.calls.total());
    let (experiment, _) = evaltap_app::golden::start_run(&app.context(), "bench", &options).await?;
    app.run_to_done(&experiment, settings.concurrency, |_| {}).await?;
    let evaltap = started.elapsed();
    let evaltap_cpu = process_cpu().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    let evaltap_written =
        process_written().zip(written_before).map(|(after, before)| after.saturating_sub(before));
    let evaltap_calls = evaltap_calls(&app, &experiment).await?;
    let sent = sim.calls.total() - sent_before;
    anyhow::ensure!(
        sent == evaltap_calls as u64,
        "evaltap's results account for {evaltap_calls} model calls but the simulated upstream received {sent}"
    );

    // The bare client: per item the replay, then the judge on the answer (the reference, graded
    // against itself, needs no call).
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
                let subject = Subject { request: &request, response: &answer, reference: item.reference.as_deref() };
                let prompt = rubrics.render("correctness_vs_reference", subject)?;
                let body = json!({"model": "sim-judge", "temperature": 0, "messages": [{"role": "user", "content": prompt}]});
                judge.chat(&body).await?;
                Ok(2)
            }
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    let bare = started.elapsed();
    let bare_calls = calls.into_iter().sum::<anyhow::Result<usize>>()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(GoldenBenchResult { evaltap_calls, bare_calls, evaltap, bare, evaltap_cpu, evaltap_written })
}

/// The model calls evaltap's run made, from its stored replays and judgments; an error if any
/// of them failed or was skipped (the run must have done the work it is timed on).
async fn evaltap_calls(app: &App, experiment: &evaltap_store::Experiment) -> anyhow::Result<usize> {
    let replays = app.store.replays(&experiment.id).await?;
    let judgments = app.store.judgments(&experiment.id).await?;
    let failures: Vec<String> = replays
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("replay of {}: {e}", r.item_id)))
        .chain(judgments.iter().filter_map(|j| {
            j.error.as_ref().map(|e| format!("judgment of {} ({}): {e}", j.item_id, j.subject))
        }))
        .collect();
    anyhow::ensure!(
        failures.is_empty(),
        "evaltap's golden run failed {} of its calls, first: {}",
        failures.len(),
        failures[0]
    );
    let cached = |cost: Option<f64>| cost.is_some();
    let replay_calls = replays.iter().filter(|r| !cached(r.cached_cost_usd)).count();
    let judge_calls: usize = judgments
        .iter()
        .filter(|j| !j.rubric.starts_with(evaltap_worker::jobs::CHECK_PREFIX) && !cached(j.cached_cost_usd))
        .map(|j| j.attempts.max(0) as usize)
        .sum();
    Ok(replay_calls + judge_calls)
}
