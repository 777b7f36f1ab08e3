//! `evaltap bench proxy`: the tee proxy against calling the simulated upstream directly, in one
//! run — throughput at a concurrency, and the latency it adds to sequential calls — with what it
//! mirrored and shed. It prints figures; it asserts nothing about speed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use evaltap_core::{AuthConfig, Config, SourceConfig};
use evaltap_sim::SimConfig;
use futures_util::StreamExt as _;
use serde_json::json;

use evaltap_app::App;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct ProxyBench {
    /// Requests per throughput measurement.
    pub requests: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Sequential requests for the added-latency measurement.
    pub sequential: usize,
    /// The LiteLLM proxy's executable, measured the same way beside the tee proxy when given.
    pub litellm: Option<std::path::PathBuf>,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct ProxyFigures {
    /// Requests per second, direct.
    pub direct_per_sec: f64,
    /// Requests per second, through the proxy.
    pub proxied_per_sec: f64,
    /// Sequential latency added by the proxy: p50.
    pub added_p50: Duration,
    /// Sequential latency added by the proxy: p99.
    pub added_p99: Duration,
    /// Exchanges stored from the proxied calls.
    pub mirrored: i64,
    /// Exchanges the proxy shed.
    pub shed: u64,
    /// The LiteLLM proxy in front of the same upstream, when it was measured.
    pub litellm: Option<OtherProxy>,
}

/// Another proxy in front of the same upstream, measured like the tee proxy.
#[derive(Debug, Clone)]
pub struct OtherProxy {
    /// Its version, as it reports it.
    pub version: String,
    /// Requests per second at the same concurrency (over at most [`OTHER_PROXY_REQUESTS`]).
    pub per_sec: f64,
    /// Sequential latency it adds: p50.
    pub added_p50: Duration,
    /// Sequential latency it adds: p99.
    pub added_p99: Duration,
}

/// Requests sent through another proxy for its throughput (LiteLLM serves a few hundred a
/// second; the tee proxy's count would take minutes).
pub const OTHER_PROXY_REQUESTS: usize = 2_000;

/// The LiteLLM proxy to compare with: `litellm` on the PATH, or the one the Python tests
/// install under `target/python-venv`.
pub fn find_litellm() -> Option<std::path::PathBuf> {
    let venv = std::path::PathBuf::from("target/python-venv/bin/litellm");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("litellm")).find(|candidate| candidate.is_file())
    })
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted.get(((sorted.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or_default()
}

/// Chat call number `i` through `request` (its URL and credentials set); the time until the
/// whole answer has arrived.
async fn timed_chat(request: reqwest::RequestBuilder, i: usize) -> anyhow::Result<Duration> {
    let body = json!({"model": "sim-large",
                      "messages": [{"role": "user", "content": format!("What is {i} + 30? Reply with the number.")}]});
    let started = Instant::now();
    let reply = request.json(&body).send().await?;
    anyhow::ensure!(reply.status().is_success(), "{} answered {}", reply.url(), reply.status());
    reply.bytes().await?;
    Ok(started.elapsed())
}

/// Runs the benchmark on a fresh SQLite file.
pub async fn proxy(settings: &ProxyBench) -> anyhow::Result<ProxyFigures> {
    let sim = evaltap_sim::spawn(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SimConfig { latency_scale: 0.0, ..Default::default() },
    )
    .await?;
    let dir = std::env::temp_dir().join(format!("evaltap-bench-proxy-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let source =
        SourceConfig { upstream: Some(sim.base_url()), ..SourceConfig::with_key("bench", "k-bench") };
    let config = Config {
        database_url: format!("sqlite://{}", dir.join("bench.db").display()),
        sources: vec![source],
        auth: AuthConfig { allow_unauthenticated: true, tokens: Vec::new() },
        ..Config::default()
    };
    let app = App::open(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(evaltap_server::serve(listener, evaltap_server::AppState::for_app(&app), async move {
            let _ = stopped.await;
        }));
    let http = evaltap_providers::http_client(Duration::from_secs(60))?;
    let direct = format!("{}/chat/completions", sim.base_url());
    let proxied = format!("{base}/proxy/bench/v1/chat/completions");
    let call = |url: String, i: usize| timed_chat(http.post(&url).header("x-evaltap-key", "k-bench"), i);
    let throughput = |url: String| {
        let call = &call;
        async move {
            let started = Instant::now();
            let done: Vec<anyhow::Result<Duration>> =
                futures_util::stream::iter((0..settings.requests).map(|i| call(url.clone(), i)))
                    .buffer_unordered(settings.concurrency.max(1))
                    .collect()
                    .await;
            done.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
            Ok::<f64, anyhow::Error>(settings.requests as f64 / started.elapsed().as_secs_f64().max(1e-9))
        }
    };
    let direct_per_sec = throughput(direct.clone()).await?;
    let proxied_per_sec = throughput(proxied.clone()).await?;
    let (mut direct_times, mut proxied_times) = (Vec::new(), Vec::new());
    for i in 0..settings.sequential {
        direct_times.push(call(direct.clone(), i).await?);
        proxied_times.push(call(proxied.clone(), i).await?);
    }
    direct_times.sort();
    proxied_times.sort();
    let added = |q: f64| quantile(&proxied_times, q).saturating_sub(quantile(&direct_times, q));
    let litellm = match &settings.litellm {
        Some(executable) => Some(litellm(executable, &sim.base_url(), &dir, settings, &direct_times).await?),
        None => None,
    };
    // Stopping the server flushes what the proxy mirrored (and records what it shed).
    let _ = stop.send(());
    let _ = server.await;
    let mirrored = app.store.count_exchanges().await?;
    let shed = app.store.counter(evaltap_server::PROXY_SHED_COUNTER).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ProxyFigures {
        direct_per_sec,
        proxied_per_sec,
        added_p50: added(0.5),
        added_p99: added(0.99),
        mirrored,
        shed,
        litellm,
    })
}

/// A LiteLLM proxy key for the benchmark's own throwaway process.
const LITELLM_MASTER_KEY: &str = "sk-evaltap-bench";

/// Starts the LiteLLM proxy at `executable` in front of `upstream` (no callbacks: a plain
/// proxy), measures it like the tee proxy, and stops it.
async fn litellm(
    executable: &std::path::Path,
    upstream: &str,
    dir: &std::path::Path,
    settings: &ProxyBench,
    direct_times: &[Duration],
) -> anyhow::Result<OtherProxy> {
    use anyhow::Context as _;
    let version = std::process::Command::new(executable)
        .arg("--version")
        .output()
        // It prints "LiteLLM: Current Version = 1.108.7".
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().last().unwrap_or_default().to_string())
        .unwrap_or_default();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: sim-large\n    litellm_params:\n      model: openai/sim-large\n      \
             api_base: {upstream}\n      api_key: sk-upstream\ngeneral_settings:\n  master_key: {LITELLM_MASTER_KEY}\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("litellm.log"))?;
    let mut child = tokio::process::Command::new(executable)
        .args(["--config", &config.display().to_string(), "--port", &port.to_string(), "--host", "127.0.0.1"])
        .env("LITELLM_LOG", "ERROR")
        .env("NO_DOCS", "True")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", executable.display()))?;
    let base = format!("http://127.0.0.1:{port}");
    let http = evaltap_providers::http_client(Duration::from_secs(60))?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if http.get(format!("{base}/health/liveliness")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        anyhow::ensure!(
            child.try_wait()?.is_none(),
            "the LiteLLM proxy exited; see {}",
            dir.join("litellm.log").display()
        );
        anyhow::ensure!(Instant::now() < deadline, "the LiteLLM proxy did not come up within 180 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let url = format!("{base}/chat/completions");
    let call = |i: usize| timed_chat(http.post(&url).bearer_auth(LITELLM_MASTER_KEY), i);
    let requests = settings.requests.min(OTHER_PROXY_REQUESTS);
    let started = Instant::now();
    futures_util::stream::iter((0..requests).map(call))
        .buffer_unordered(settings.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let per_sec = requests as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let mut times = Vec::with_capacity(settings.sequential);
    for i in 0..settings.sequential {
        times.push(call(i).await?);
    }
    times.sort();
    let _ = child.kill().await;
    let added = |q: f64| quantile(&times, q).saturating_sub(quantile(direct_times, q));
    Ok(OtherProxy { version, per_sec, added_p50: added(0.5), added_p99: added(0.99) })
}

/// The figures as text.
pub fn render(settings: &ProxyBench, f: &ProxyFigures) -> String {
    let litellm = match &f.litellm {
        Some(other) => format!(
            "LiteLLM proxy {} (same upstream, no callbacks): {:.0} req/s over {} requests ({:.2} of direct), \
             added latency p50 {:.3} ms, p99 {:.3} ms\n",
            other.version,
            other.per_sec,
            settings.requests.min(OTHER_PROXY_REQUESTS),
            other.per_sec / f.direct_per_sec.max(1e-9),
            other.added_p50.as_secs_f64() * 1000.0,
            other.added_p99.as_secs_f64() * 1000.0,
        ),
        None => "LiteLLM proxy: not measured (not found; install `litellm[proxy]` or pass --litellm PATH)\n"
            .into(),
    };
    tee_lines(settings, f) + &litellm
}

fn tee_lines(settings: &ProxyBench, f: &ProxyFigures) -> String {
    format!(
        "tee proxy vs direct: {} requests at concurrency {}, {} sequential\n\
         direct   {:>8.0} req/s\n\
         proxied  {:>8.0} req/s  ({:.2} of direct)\n\
         added latency (sequential): p50 {:.3} ms, p99 {:.3} ms\n\
         mirrored {} exchanges, shed {}\n",
        settings.requests,
        settings.concurrency,
        settings.sequential,
        f.direct_per_sec,
        f.proxied_per_sec,
        f.proxied_per_sec / f.direct_per_sec.max(1e-9),
        f.added_p50.as_secs_f64() * 1000.0,
        f.added_p99.as_secs_f64() * 1000.0,
        f.mirrored,
        f.shed,
    )
}
