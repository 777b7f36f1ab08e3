//! `evaltap bench ingest`: mirror-endpoint throughput on SQLite and on PostgreSQL, side by side
//! in one run — single-exchange POSTs at a concurrency, then NDJSON batches — each against a
//! fresh database behind a real `serve` on loopback. It prints figures; it asserts nothing.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use evaltap_core::{AuthConfig, Config, SourceConfig};
use futures_util::StreamExt as _;
use serde_json::json;

use evaltap_app::App;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct IngestBench {
    /// Exchanges sent in each measurement.
    pub exchanges: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Exchanges per batch in the batched measurement.
    pub batch: usize,
    /// An administrative PostgreSQL URL to create the benchmark's database with (none: SQLite only).
    pub postgres_url: Option<String>,
    /// Single-exchange POSTs per second sent on a fixed schedule (open loop), whatever the
    /// answers' pace.
    pub open_loop_rate: u32,
}

/// One engine's figures.
#[derive(Debug, Clone)]
pub struct IngestFigures {
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
    /// Single-exchange POSTs: exchanges per second.
    pub single_per_sec: f64,
    /// Single-exchange POSTs: median time to the 202.
    pub single_p50: Duration,
    /// Single-exchange POSTs: 99th percentile time to the 202.
    pub single_p99: Duration,
    /// Batched POSTs: exchanges per second.
    pub batched_per_sec: f64,
    /// LiteLLM `ndjson` batches of real 17 KB payloads: exchanges per second.
    pub litellm_per_sec: f64,
    /// Open loop: the rate the answers kept up with, and the time to each 202 from when its
    /// request was due (so a server falling behind shows as latency, not as a slower client).
    pub open_loop: OpenLoop,
    /// The database alone, the same rows: one transaction per row, rows per second.
    pub raw_single_per_sec: f64,
    /// The database alone, the same rows: transactions of a batch each, rows per second.
    pub raw_batched_per_sec: f64,
}

/// An open-loop measurement.
#[derive(Debug, Clone, Default)]
pub struct OpenLoop {
    /// Requests per second answered.
    pub answered_per_sec: f64,
    /// Median time from due to 202.
    pub p50: Duration,
    /// 99th percentile time from due to 202.
    pub p99: Duration,
    /// Requests the door refused with 503 (at capacity: more in flight than it admits).
    pub refused: usize,
}

/// Runs the benchmark on SQLite, then on PostgreSQL when a URL is given.
pub async fn ingest(settings: &IngestBench) -> anyhow::Result<Vec<IngestFigures>> {
    let dir = std::env::temp_dir().join(format!("evaltap-bench-ingest-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).context("creating a temporary folder")?;
    let mut figures = Vec::new();
    let sqlite = measure("sqlite", format!("sqlite://{}", dir.join("bench.db").display()), settings).await;
    let _ = std::fs::remove_dir_all(&dir);
    figures.push(sqlite?);
    if let Some(admin_url) = &settings.postgres_url {
        let (url, name) = evaltap_store::create_scratch_database(admin_url, "evaltap_bench")
            .await
            .with_context(|| format!("creating a database on PostgreSQL at {admin_url}"))?;
        let measured = measure("postgres", url, settings).await;
        evaltap_store::drop_scratch_database(admin_url, &name).await?;
        figures.push(measured?);
    }
    Ok(figures)
}

fn exchange(i: usize) -> String {
    json!({"id": format!("bench-{i}"),
           "request": {"model": "m", "messages": [{"role": "user", "content": format!("question {i}")}]},
           "response": {"model": "m", "choices": [{"message": {"role": "assistant", "content": "answer"}}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 3}}})
    .to_string()
}

/// A payload as LiteLLM proxy 1.108.7 posts it (see the ingest crate's fixture).
const LITELLM_PAYLOAD: &str = include_str!("../../ingest/tests/fixtures/litellm/1.108.7_payload.json");
const LITELLM_CALL_ID: &str = "ca9afd90-0b58-4d99-967c-47a5a68111b8";

/// LiteLLM's real payload as one JSON line, with a placeholder for the call id.
fn litellm_template() -> anyhow::Result<String> {
    let batch: Vec<serde_json::Value> =
        serde_json::from_str(LITELLM_PAYLOAD).context("reading the LiteLLM fixture")?;
    let first = batch.into_iter().next().context("the LiteLLM fixture is empty")?;
    Ok(first.to_string())
}

async fn measure(
    engine: &'static str,
    database_url: String,
    settings: &IngestBench,
) -> anyhow::Result<IngestFigures> {
    let config = Config {
        database_url,
        sources: vec![SourceConfig::with_key("bench", "k-bench")],
        auth: AuthConfig { allow_unauthenticated: true, tokens: Vec::new() },
        max_concurrent_ingest: settings.concurrency.max(64),
        ..Config::default()
    };
    let app = App::open(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/mirror", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(evaltap_server::serve(listener, evaltap_server::AppState::for_app(&app), async move {
            let _ = stopped.await;
        }));
    let http = evaltap_providers::http_client(Duration::from_secs(60))?;

    let post_to = |url: &str, body: String| {
        let (http, url) = (http.clone(), url.to_string());
        async move {
            let started = Instant::now();
            let reply = http.post(&url).bearer_auth("k-bench").body(body).send().await?;
            anyhow::ensure!(reply.status().as_u16() == 202, "the mirror answered {}", reply.status());
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    };
    let post = |body: String| post_to(&url, body);
    let n = settings.exchanges;
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures_util::stream::iter((0..n).map(|i| post(exchange(i))))
        .buffer_unordered(settings.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let single = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];

    let size = settings.batch.max(1);
    let batches = n.div_ceil(size);
    let started = Instant::now();
    let batched: Vec<Duration> = futures_util::stream::iter((0..batches).map(|b| {
        let lines: Vec<String> = (n + b * size..n + (b + 1) * size).map(exchange).collect();
        post(lines.join("\n"))
    }))
    .buffer_unordered(settings.concurrency.clamp(1, 8))
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<_>>()?;
    let batched_time = started.elapsed();
    anyhow::ensure!(batched.len() == batches);

    // LiteLLM's generic_api callback with `log_format: ndjson`, each payload its own call.
    let template = litellm_template()?;
    let litellm_url = format!("{url}/litellm");
    let started = Instant::now();
    futures_util::stream::iter((0..batches).map(|b| {
        let lines: Vec<String> = (b * size..(b + 1) * size)
            .map(|i| template.replace(LITELLM_CALL_ID, &format!("bench-litellm-{i}")))
            .collect();
        post_to(&litellm_url, lines.join("\n"))
    }))
    .buffer_unordered(settings.concurrency.clamp(1, 8))
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<Duration>>>()?;
    let litellm_time = started.elapsed();

    let open_loop = open_loop(settings, n + batches * size, &http, &url).await?;

    let stored = app.store.count_exchanges().await?;
    let expected = 2 * n + 2 * batches * size - open_loop.refused;
    anyhow::ensure!(stored as usize == expected, "{stored} stored of {expected}");
    let (raw_single_per_sec, raw_batched_per_sec) = raw_inserts(&app.store, n, size).await?;
    let _ = stop.send(());
    let _ = server.await;
    Ok(IngestFigures {
        engine,
        single_per_sec: n as f64 / single.as_secs_f64().max(1e-9),
        single_p50: at(0.5),
        single_p99: at(0.99),
        batched_per_sec: (batches * size) as f64 / batched_time.as_secs_f64().max(1e-9),
        litellm_per_sec: (batches * size) as f64 / litellm_time.as_secs_f64().max(1e-9),
        open_loop,
        raw_single_per_sec,
        raw_batched_per_sec,
    })
}

/// The database's own rate for the same rows with nothing of evaltap in between, on a scratch
/// table shaped like `exchanges` in the same database (same durability settings): one
/// transaction per row, one after another (the least each acknowledged single POST needs), then
/// transactions of `batch` rows as multi-row inserts. Returns rows per second of each.
async fn raw_inserts(store: &evaltap_store::Store, n: usize, batch: usize) -> anyhow::Result<(f64, f64)> {
    let rows: Vec<evaltap_store::RawRow> = (0..2 * n)
        .map(|i| {
            let item: serde_json::Value = serde_json::from_str(&exchange(i)).unwrap_or_default();
            (
                format!("raw-{i}"),
                format!("id:bench-{i}"),
                item["request"].to_string(),
                item["response"].to_string(),
            )
        })
        .collect();
    let (single_rows, batched_rows) = rows.split_at(n);
    let (single, batched) = store
        .time_raw_inserts(single_rows, batched_rows, batch)
        .await
        .context("timing the database's own inserts")?;
    let per_sec = |rows: usize, took: Duration| rows as f64 / took.as_secs_f64().max(1e-9);
    Ok((per_sec(single_rows.len(), single), per_sec(batched_rows.len(), batched)))
}

/// Sends `settings.exchanges` single-exchange POSTs (numbered from `first_id` on), each at its
/// due time on a fixed schedule at `settings.open_loop_rate` per second.
async fn open_loop(
    settings: &IngestBench,
    first_id: usize,
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<OpenLoop> {
    let n = settings.exchanges;
    let interval = Duration::from_secs_f64(1.0 / f64::from(settings.open_loop_rate.max(1)));
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..n {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let request = http.post(url).bearer_auth("k-bench").body(exchange(first_id + i)).send();
        sent.spawn(async move {
            let status = request.await?.status().as_u16();
            anyhow::ensure!(matches!(status, 202 | 503), "the mirror answered {status}");
            Ok::<Option<Duration>, anyhow::Error>((status == 202).then(|| due.elapsed()))
        });
    }
    let mut latencies = Vec::with_capacity(n);
    let mut refused = 0;
    while let Some(joined) = sent.join_next().await {
        match joined?? {
            Some(latency) => latencies.push(latency),
            None => refused += 1,
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let at = |q: f64| {
        latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default()
    };
    Ok(OpenLoop {
        answered_per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: at(0.5),
        p99: at(0.99),
        refused,
    })
}

/// The figures as a table.
pub fn render(settings: &IngestBench, figures: &[IngestFigures]) -> String {
    let mut out = format!(
        "mirror ingest: {} single-exchange POSTs at concurrency {}, then {} exchanges in batches of {}, \
         native and LiteLLM (real 17 KB payloads, ndjson)\n\
         and {} single POSTs on a schedule of {}/s (open loop)\n\
         engine     single ex/s   ack p50    ack p99   batched ex/s   litellm ex/s   open-loop ex/s   ack p50    ack p99  refused   \
         db alone: single rows/s   batched rows/s\n",
        settings.exchanges,
        settings.concurrency,
        settings.exchanges,
        settings.batch,
        settings.exchanges,
        settings.open_loop_rate
    );
    for f in figures {
        out.push_str(&format!(
            "{:<9} {:>12.0} {:>7.2} ms {:>7.2} ms {:>14.0} {:>14.0} {:>16.0} {:>7.2} ms {:>7.2} ms {:>8} {:>25.0} {:>16.0}\n",
            f.engine,
            f.single_per_sec,
            f.single_p50.as_secs_f64() * 1000.0,
            f.single_p99.as_secs_f64() * 1000.0,
            f.batched_per_sec,
            f.litellm_per_sec,
            f.open_loop.answered_per_sec,
            f.open_loop.p50.as_secs_f64() * 1000.0,
            f.open_loop.p99.as_secs_f64() * 1000.0,
            f.open_loop.refused,
            f.raw_single_per_sec,
            f.raw_batched_per_sec
        ));
    }
    out
}
