//! The demo: a simulated production (the simulated upstream's production model, its traffic
//! teed to the mirror endpoint over HTTP as a gateway would) and evaltap on the embedded default
//! — server, worker, an experiment with two cheaper candidates — run end to end.
//!
//! Replays and judge calls go through the same HTTP client used against real providers; only
//! the base URL differs. `evaltap demo` prints what this runs; the benchmarks and the
//! end-to-end tests start it too.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use evaltap_app::App;
use evaltap_core::{CandidateConfig, Config, JudgeConfig, Price, SourceConfig};
use evaltap_providers::{ChatClient, http_client};
use evaltap_report::Report;
use evaltap_server::AppState;
use evaltap_sim::{SimConfig, SimServer, Task};
use evaltap_store::Experiment;
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The database given to the demo already holds one: the demo needs a database of its own.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} already holds a demo: give the demo a new database (or none: it then makes one under the system's temp folder)"
)]
pub struct DatabaseInUse(pub String);

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Headless: only the report JSON on stdout, exit when done.
    pub json: bool,
    /// Production exchanges to generate.
    pub exchanges: usize,
    /// Seed of the generated traffic.
    pub seed: u64,
    /// Dashboard port (0 picks a free one; a taken port falls back to a free one).
    pub port: u16,
    /// Stop each candidate once its verdicts are settled (the default; off to replay all).
    pub early_stop: bool,
    /// What early stopping waits for (each route's verdicts too, by default: the demo's
    /// recommendations are per route).
    pub early_stop_on: evaltap_store::StopOn,
    /// Reuse results already paid for (the default; off to call every model afresh).
    pub cache: bool,
    /// Send the candidates' and the judge's calls through the simulator's batch interface.
    pub batch: bool,
    /// Golden datasets folder (`datasets` under the working folder unless set).
    pub datasets_dir: Option<std::path::PathBuf>,
}

/// Requests in one of the demo's batches in batch mode: small enough that early stopping
/// looks at the results several times before a candidate's sample is spent.
pub const DEMO_BATCH_REQUESTS: usize = 100;

/// Name of the demo's production model (the baseline).
pub const PRODUCTION_MODEL: &str = "sim-large";
const SOURCE_KEY: &str = "demo-source-key";
/// Name of the demo's experiment.
pub const EXPERIMENT: &str = "demo";
/// The demo's non-inferiority margin: a cost swap that keeps quality within 5 points.
pub const DEMO_MARGIN: f64 = 0.05;

/// A demo whose loop has run: everything stays up until it is dropped or shut down.
pub struct DemoRun {
    /// The opened app (store, queue…).
    pub app: App,
    /// The experiment.
    pub experiment: Experiment,
    /// Its report once done.
    pub report: Report,
    /// Where the server (mirror endpoint, API, dashboard) listens.
    pub server_addr: SocketAddr,
    /// Where the simulated upstream listens.
    pub sim: SimServer,
    /// The database it wrote to.
    pub database_url: String,
    stop: watch::Sender<bool>,
}

impl DemoRun {
    /// Stops the server and the worker.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

/// The demo's configuration: one source, two cheaper candidates and the judge, all on the
/// simulated upstream at `sim_url`.
pub fn demo_config(sim_url: &str, database_url: String) -> Config {
    let candidate = |name: &str, model: &str, input: f64, output: f64| CandidateConfig {
        name: name.into(),
        base_url: sim_url.into(),
        model: model.into(),
        api_key_env: None,
        price: Price { input_per_mtok: input, output_per_mtok: output, ..Default::default() },
        params: serde_json::Map::new(),
        api: Default::default(),
        drop_params: Vec::new(),
        max_concurrency: 16,
        attempt_timeout_secs: None,
        deadline_secs: None,
        batch: false,
        batch_discount: None,
        gateway_model: Default::default(),
    };
    Config {
        database_url,
        sources: vec![SourceConfig::with_key("demo", SOURCE_KEY)],
        candidates: vec![
            candidate("medium", "sim-medium", 0.40, 1.60),
            candidate("small", "sim-small", 0.10, 0.40),
        ],
        judge: Some(JudgeConfig {
            base_url: sim_url.into(),
            model: "sim-judge".into(),
            api_key_env: None,
            max_concurrency: 32,
            attempt_timeout_secs: None,
            deadline_secs: None,
            // The simulated judge's list price (its /v1/models catalog entry).
            input_per_mtok: 1.0,
            output_per_mtok: 4.0,
            samples: 1,
            temperature: 0.0,
            max_output_tokens: None,
            images: false,
            batch: false,
            batch_discount: None,
        }),
        // The demo serves on loopback only, for the person running it.
        auth: evaltap_core::AuthConfig { allow_unauthenticated: true, tokens: Vec::new() },
        // One process on a laptop: a stopped worker's work moves on within seconds.
        worker: evaltap_core::WorkerConfig {
            lease_secs: 10.0,
            heartbeat_secs: 1.0,
            missed_heartbeats: 3,
            ..Default::default()
        },
        ..Config::default()
    }
}

/// Puts every candidate and the judge in batch mode, with batches of
/// [`DEMO_BATCH_REQUESTS`] sent as soon as they are full or have waited 200 ms and polled every
/// 100 ms (the simulator answers a batch in 200 ms).
pub fn batch_everything(config: &mut Config) {
    for candidate in &mut config.candidates {
        candidate.batch = true;
    }
    if let Some(judge) = config.judge.as_mut() {
        judge.batch = true;
    }
    config.worker.batch_max_requests = DEMO_BATCH_REQUESTS;
    config.worker.batch_wait_secs = 0.2;
    config.worker.batch_poll_secs = 0.1;
}

/// A progress bar on stderr (hidden in headless runs).
pub fn progress_bar(hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg:<10} [{bar:40}] {pos}/{len} ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Calls the simulated production model `count` times and tees every exchange to the mirror
/// endpoint in NDJSON batches, as a gateway's logging callback would. Returns the number of
/// exchanges the endpoint accepted.
pub async fn tee_production_traffic(
    sim_url: &str,
    mirror_url: &str,
    count: usize,
    seed: u64,
    bar: &ProgressBar,
) -> anyhow::Result<usize> {
    let http = http_client(Duration::from_secs(60))?;
    let production = ChatClient::new(http.clone(), sim_url, None, 16);
    let price = evaltap_sim::models::find(PRODUCTION_MODEL).context("production model in the catalog")?;
    bar.set_message("traffic");
    bar.set_length(count as u64);
    let calls = futures_util::stream::iter(0..count)
        .map(|i| {
            let production = production.clone();
            async move {
                let task = Task::generate(seed, i as u64);
                let request = json!({"model": PRODUCTION_MODEL, "temperature": 0.2, "messages": [
                    {"role": "system", "content": "You are a concise assistant. Answer with the result only."},
                    {"role": "user", "content": task.prompt()}]});
                let done = production.chat(&request).await.context("calling the simulated production model")?;
                let cost = done.usage.map(|u| {
                    Price { input_per_mtok: price.input_per_mtok, output_per_mtok: price.output_per_mtok, ..Default::default() }.cost(u)
                });
                anyhow::Ok(json!({"id": format!("demo-{seed}-{i}"), "latency_ms": done.latency_ms,
                                  "cost_usd": cost, "tags": {"route": task.family().route()},
                                  "request": request, "response": done.response}))
            }
        })
        .buffered(16);
    let items: Vec<Value> =
        calls.inspect(|_| bar.inc(1)).collect::<Vec<_>>().await.into_iter().collect::<anyhow::Result<_>>()?;
    let mut accepted = 0;
    for batch in items.chunks(50) {
        let body: String = batch.iter().map(|item| format!("{item}\n")).collect();
        let reply = http
            .post(mirror_url)
            .bearer_auth(SOURCE_KEY)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .context("sending to the mirror endpoint")?;
        let status = reply.status();
        let counts: Value = reply.json().await.context("reading the mirror reply")?;
        if status.as_u16() != 202 {
            bail!("the mirror endpoint answered {status}: {counts}");
        }
        accepted += counts["accepted"].as_u64().unwrap_or(0) as usize;
    }
    Ok(accepted)
}

/// Runs the loop: simulated upstream, server, worker, production traffic, experiment, report.
pub async fn start(options: &DemoOptions, database_url: String) -> anyhow::Result<DemoRun> {
    let sim = evaltap_sim::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), SimConfig::default())
        .await
        .context("starting the simulated upstream")?;
    let mut config = demo_config(&sim.base_url(), database_url.clone());
    if let Some(dir) = &options.datasets_dir {
        config.datasets_dir = dir.clone();
    }
    if options.batch {
        batch_everything(&mut config);
    }
    let app =
        App::open(config).await.with_context(|| format!("opening the demo's database {database_url}"))?;
    if app.store.experiment(EXPERIMENT).await?.is_some() {
        return Err(DatabaseInUse(database_url).into());
    }

    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await {
        Ok(listener) => listener,
        Err(err) if options.port != 0 => {
            tracing::warn!(port = options.port, %err, "port taken; using a free one");
            tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?
        }
        Err(err) => return Err(err).context("binding the server"),
    };
    let server_addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(evaltap_server::serve(listener, AppState::for_app(&app), stopped(stop_rx.clone())));
    let worker_app = app.clone();
    let worker_stop = stop_rx.clone();
    tokio::spawn(async move {
        if let Err(err) = worker_app.run_worker(32, stopped(worker_stop)).await {
            tracing::error!("worker stopped: {err:#}");
        }
    });

    let bar = progress_bar(options.json);
    let mirror_url = format!("http://{server_addr}/v1/mirror");
    let accepted =
        tee_production_traffic(&sim.base_url(), &mirror_url, options.exchanges, options.seed, &bar).await?;
    if accepted == 0 {
        bail!("the mirror endpoint accepted no exchanges");
    }

    let http = http_client(Duration::from_secs(30))?;
    let created = http
        .post(format!("http://{server_addr}/api/experiments"))
        .json(&json!({"name": EXPERIMENT, "candidates": ["medium", "small"], "rubrics": ["correctness", "helpfulness"],
                      "margin": DEMO_MARGIN, "sample_size": accepted, "spend_cap_usd": null,
                      "early_stop": options.early_stop, "early_stop_on": options.early_stop_on,
                      "cache": options.cache}))
        .send()
        .await
        .context("creating the experiment")?;
    if !created.status().is_success() {
        bail!("creating the experiment failed: {}", created.text().await.unwrap_or_default());
    }
    let experiment = app.store.require_experiment(EXPERIMENT).await?;
    bar.set_message("evaluate");
    bar.set_position(0);
    app.wait_done(&experiment, Duration::from_secs(120), |p| {
        bar.set_length(p.total());
        bar.set_position(p.completed());
    })
    .await?;
    bar.finish_and_clear();
    let report = evaltap_report::build(&app.store, &experiment).await?;
    Ok(DemoRun { app, experiment, report, server_addr, sim, database_url, stop })
}
