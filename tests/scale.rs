//! Several evaltap processes on one database, tested from outside: worker processes sharing an
//! experiment (one SIGKILLed), `serve` stopped with signals and restarted, `serve` SIGKILLed while
//! a client streams mirror batches, SIGTERM with proxy streams in flight, and a spend cap held
//! across workers. The simulated upstream counts every request it receives, so a model call
//! made twice shows.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use evaltap_core::Config;
use evaltap_sim::{JudgeBehavior, SimConfig};
use evaltap_store::{Experiment, Store};
use serde_json::{Value, json};

use crate::common::{Bench, Process, TempDir, experiment_request, write_config};

pub(crate) const QUIET: JudgeBehavior =
    JudgeBehavior { noise: 0.0, position_bias: 0.0, unreadable_long: 0.0 };

/// Writes `config` where processes can read it.
/// A configuration with one source (`app`, key `k-app`) on a fresh database of the running
/// test's engine, written for processes to read.
fn source_config(dir: &mut TempDir, source: evaltap_core::SourceConfig) -> (Config, PathBuf) {
    let config = Config {
        database_url: dir.database_url(),
        sources: vec![source],
        auth: evaltap_core::AuthConfig { allow_unauthenticated: true, tokens: Vec::new() },
        ..Config::default()
    };
    let path = write_config(dir, &config);
    (config, path)
}

/// Short leases and heartbeats, so that a killed worker's work moves on within seconds.
fn fast_takeover(config: &mut Config) {
    config.worker.lease_secs = 2.0;
    config.worker.heartbeat_secs = 0.5;
    config.worker.missed_heartbeats = 2;
}

async fn wait_until(store: &Store, experiment: &Experiment, fraction: f64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let progress = store.experiment_progress(experiment).await.expect("progress");
        if progress.completed() as f64 >= fraction * progress.total() as f64 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("stuck at {progress:?}{}", unfinished(store, experiment).await);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What an unfinished experiment waits for: its unfinished units (owner, lease, claims) and the
/// job queue's jobs by status.
async fn unfinished(store: &Store, experiment: &Experiment) -> String {
    const WORK: &str = "SELECT work_key, owner, expires_ms, claims FROM work_claims
                        WHERE experiment_id = $1 AND finished = FALSE ORDER BY work_key LIMIT 20";
    type Unit = (String, String, i64, i64);
    type Rows<T> = Result<Vec<T>, sqlx::Error>;
    let (work, jobs): (Rows<Unit>, Rows<(String, i64)>) = match store.pool() {
        evaltap_store::Pool::Sqlite(pool) => (
            sqlx::query_as(WORK).bind(&experiment.id).fetch_all(pool).await,
            sqlx::query_as("SELECT status, COUNT(*) FROM Jobs GROUP BY status").fetch_all(pool).await,
        ),
        evaltap_store::Pool::Postgres(pool) => (
            sqlx::query_as(WORK).bind(&experiment.id).fetch_all(pool).await,
            sqlx::query_as("SELECT status, COUNT(*) FROM apalis.jobs GROUP BY status").fetch_all(pool).await,
        ),
    };
    format!("\nnow {} ms; unfinished work: {work:?}\nqueue: {jobs:?}", evaltap_store::now_ms())
}

/// Model calls one experiment of `items` items needs: a replay per candidate, and a correctness
/// judgment of the baseline and of each candidate.
fn calls_needed(items: u64, candidates: u64) -> u64 {
    items * candidates + items * (1 + candidates)
}

fn two_candidates(name: &str, items: usize) -> evaltap_worker::ExperimentRequest {
    let mut request = experiment_request(name, "small", "correctness", items);
    request.candidates.push("medium".into());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_postgres_one_killed_call_each_model_once() {
    crate::common::on_postgres(async {
        let sim = SimConfig { latency_scale: 4.0, judge: QUIET };
        let bench = Bench::start_on("workers", sim, None, 120, fast_takeover).await;
        let config = write_config(&bench.dir, &bench.app.config);
        let production_calls = bench.sim.calls.total();
        let experiment = bench.create(two_candidates("shared", 120)).await;

        let concurrency = 6;
        let per_worker = concurrency.to_string();
        let workers: Vec<Process> =
            (0..3).map(|_| Process::start(&config, &["worker", "--concurrency", &per_worker])).collect();
        let store = &bench.app.store;
        wait_until(store, &experiment, 0.3, Duration::from_secs(120)).await;
        let mut workers = workers.into_iter();
        workers.next().expect("a worker").kill();
        wait_until(store, &experiment, 1.0, Duration::from_secs(180)).await;
        drop(workers);

        let progress = store.experiment_progress(&experiment).await.expect("progress");
        assert_eq!((progress.replays_done, progress.judgments_done), (240, 360), "{progress:?}");
        let replays = store.replays(&experiment.id).await.expect("replays");
        assert!(replays.iter().all(|r| r.error.is_none()), "every replay succeeded");
        // Every call made once, except calls in flight in the killed worker: each of those
        // is a takeover, counted in the store, at most one per slot it had.
        let takeovers = store.work_takeovers(&experiment.id).await.expect("takeovers");
        let calls = bench.sim.calls.total() - production_calls;
        let needed = calls_needed(120, 2);
        assert!(calls >= needed, "{calls} calls for {needed} units of work");
        assert!(calls - needed <= takeovers as u64, "{calls} calls, {needed} needed, {takeovers} takeovers");
        assert!(takeovers <= concurrency as i64, "{takeovers} takeovers for {concurrency} slots");
        assert!(store.unfinished_work(&experiment.id).await.expect("work").is_empty());
        // The report shows them: the JSON, the table, the page.
        let report = evaltap_report::build(store, &experiment).await.expect("report");
        assert_eq!(report.takeovers, takeovers as u64);
        if takeovers > 0 {
            assert!(
                evaltap_report::render_text(&report).contains("takeovers: "),
                "{}",
                evaltap_report::render_text(&report)
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stopped_by_sigterm_and_sigint_and_restarted_repeats_no_call() {
    crate::common::on_postgres(async {
        let sim = SimConfig { latency_scale: 3.0, judge: QUIET };
        let bench = Bench::start_on("restarts", sim, None, 80, fast_takeover).await;
        let config = write_config(&bench.dir, &bench.app.config);
        let production_calls = bench.sim.calls.total();
        let experiment = bench.create(two_candidates("restarted", 80)).await;
        let store = &bench.app.store;

        let serve = Process::start(&config, &["serve", "--bind", "127.0.0.1:0", "--workers", "8"]);
        wait_until(store, &experiment, 0.25, Duration::from_secs(120)).await;
        serve.stop_with("TERM");
        let serve = Process::start(&config, &["serve", "--bind", "127.0.0.1:0", "--workers", "8"]);
        wait_until(store, &experiment, 0.6, Duration::from_secs(120)).await;
        serve.stop_with("INT");
        // Running it to the end from the CLI enqueues nothing already queued.
        let status = Command::new(env!("CARGO_BIN_EXE_evaltap"))
            .arg("--config")
            .arg(&config)
            .args(["experiment", "run", "restarted"])
            .stdout(Stdio::null())
            .status()
            .expect("experiment run");
        assert!(status.success());

        let progress = store.experiment_progress(&experiment).await.expect("progress");
        assert!(progress.is_done(), "{progress:?}");
        assert_eq!(store.work_takeovers(&experiment.id).await.expect("takeovers"), 0);
        let calls = bench.sim.calls.total() - production_calls;
        assert_eq!(calls, calls_needed(80, 2), "stopping and restarting repeated a model call");
    })
    .await;
}

fn batch(first: usize, size: usize) -> String {
    (first..first + size)
        .map(|i| {
            json!({"id": format!("req-{i}"),
                   "request": {"model": "m", "messages": [{"role": "user", "content": format!("question {i}")}]},
                   "response": {"model": "m", "choices": [{"message": {"role": "assistant", "content": "answer"}}]}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

crate::on_both_engines! {
    /// Every batch that got a 202 before `serve` was SIGKILLed is stored; sending every batch
    /// again after the restart adds none twice.
    async fn serve_killed_while_ingesting_loses_no_acknowledged_batch() {
        let mut dir = TempDir::new("killed-serve");
        let (config, path) = source_config(&mut dir, evaltap_core::SourceConfig::with_key("app", "k-app"));
        let serve = Process::start(&path, &["serve", "--bind", "127.0.0.1:0", "--no-workers"]);
        let url = format!("{}/v1/mirror", serve.url());
        let http = evaltap_providers::http_client(Duration::from_secs(10)).expect("client");
        const SIZE: usize = 20;
        const BATCHES: usize = 400;
        // Four clients stream batches until the process dies under them.
        let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for client in 0..4 {
            let (http, url, acked) = (http.clone(), url.clone(), acked_tx.clone());
            clients.push(tokio::spawn(async move {
                for b in (client..BATCHES).step_by(4) {
                    let sent = http.post(&url).bearer_auth("k-app").body(batch(b * SIZE, SIZE)).send().await;
                    match sent {
                        Ok(reply) if reply.status().as_u16() == 202 => {
                            let _ = acked.send(b);
                        }
                        _ => return,
                    }
                }
            }));
        }
        drop(acked_tx);
        // Kill once a good number of batches are acknowledged.
        let mut acked = Vec::new();
        while acked.len() < 60 {
            acked.push(acked_rx.recv().await.expect("batches are acknowledged"));
        }
        serve.kill();
        for client in clients {
            let _ = client.await;
        }
        while let Ok(b) = acked_rx.try_recv() {
            acked.push(b);
        }

        let store = Store::connect(&config.database_url).await.expect("store");
        let stored: std::collections::HashSet<String> = store
            .recent_exchanges(Some("app"), 100_000)
            .await
            .expect("stored")
            .into_iter()
            .filter_map(|e| e.exchange.external_id)
            .collect();
        for b in &acked {
            for i in b * SIZE..(b + 1) * SIZE {
                assert!(stored.contains(&format!("req-{i}")), "batch {b} got a 202 but item {i} is lost");
            }
        }

        // Restarted, every batch sent again: stored once each.
        let serve = Process::start(&path, &["serve", "--bind", "127.0.0.1:0", "--no-workers"]);
        let url = format!("{}/v1/mirror", serve.url());
        for b in 0..BATCHES {
            let reply = http.post(&url).bearer_auth("k-app").body(batch(b * SIZE, SIZE)).send().await.expect("resend");
            assert_eq!(reply.status().as_u16(), 202);
        }
        assert_eq!(store.count_exchanges().await.expect("count"), (BATCHES * SIZE) as i64);
        let stats = store.source_stats().await.expect("stats");
        assert_eq!(stats[0].accepted, (BATCHES * SIZE) as i64, "{stats:?}");
        serve.stop_with("TERM");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_sixty_proxy_streams_finish_and_stores_every_exchange() {
    let sim = evaltap_sim::spawn(([127, 0, 0, 1], 0).into(), SimConfig { latency_scale: 25.0, judge: QUIET })
        .await
        .expect("sim");
    let mut dir = TempDir::new("sigterm-proxy");
    let source = evaltap_core::SourceConfig {
        upstream: Some(sim.base_url()),
        ..evaltap_core::SourceConfig::with_key("app", "k-app")
    };
    let (config, path) = source_config(&mut dir, source);
    let serve = Process::start(&path, &["serve", "--bind", "127.0.0.1:0", "--no-workers"]);
    let url = format!("{}/proxy/app/v1/chat/completions", serve.url());
    let http = evaltap_providers::http_client(Duration::from_secs(60)).expect("client");
    let mut streams = Vec::new();
    for i in 0..60 {
        let body = json!({"model": "sim-large", "stream": true, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": format!("What is {i} + 30? Reply with the number.")}]});
        let (http, url) = (http.clone(), url.clone());
        streams.push(tokio::spawn(async move {
            let reply =
                http.post(&url).header("x-evaltap-key", "k-app").json(&body).send().await.expect("send");
            assert_eq!(reply.status().as_u16(), 200);
            String::from_utf8(reply.bytes().await.expect("the stream completes").to_vec()).expect("utf-8")
        }));
    }
    // All sixty are in flight upstream (the simulated model takes a second to answer).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.calls.total() < 60 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} streams reached the upstream",
            sim.calls.total()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = tokio::task::spawn_blocking(move || serve.stop_with("TERM"));
    for stream in streams {
        let text = stream.await.expect("client");
        assert!(text.trim_end().ends_with("data: [DONE]"), "a stream was cut: {text}");
    }
    stopping.await.expect("serve stopped cleanly");
    let store = Store::connect(&config.database_url).await.expect("store");
    assert_eq!(store.count_exchanges().await.expect("count"), 60, "every proxied exchange is stored");
}

/// Calls the worker process `pid` holds a spend reservation for, unsettled.
async fn reserved_calls_of(store: &Store, experiment: &Experiment, pid: u32) -> i64 {
    const HELD: &str = "SELECT COUNT(*) FROM work_claims c JOIN spend_reservations r
                          ON r.experiment_id = c.experiment_id AND r.work_key = c.work_key
                        WHERE c.experiment_id = $1 AND c.finished = FALSE AND c.owner LIKE $2
                          AND r.status = 'reserved'";
    let owner = format!("evaltap-{pid}-%");
    let held = match store.pool() {
        evaltap_store::Pool::Sqlite(pool) => {
            sqlx::query_scalar(HELD).bind(&experiment.id).bind(&owner).fetch_one(pool).await
        }
        evaltap_store::Pool::Postgres(pool) => {
            sqlx::query_scalar(HELD).bind(&experiment.id).bind(&owner).fetch_one(pool).await
        }
    };
    held.expect("claims")
}

/// A candidate as good as production, pricier per token, whose answers run about ten times
/// longer than production's.
fn add_verbose_candidate(config: &mut Config) {
    let mut verbose = config.candidates[0].clone();
    verbose.name = "verbose".into();
    verbose.model = "sim-verbose".into();
    verbose.price =
        evaltap_core::Price { input_per_mtok: 3.00, output_per_mtok: 15.00, ..Default::default() };
    config.candidates.push(verbose);
}

crate::on_both_engines! {
    /// The cap holds as the provider bills it: a verbose candidate, two worker processes, one
    /// killed mid-run. Every call carries its output limit, so none costs more than it
    /// reserved; the killed worker's calls in flight are presumed paid at their bound, so the
    /// report's spend is never below the bill and exceeds it only by what is presumed.
    async fn spend_never_exceeds_the_cap_as_billed_and_a_killed_worker_s_calls_are_on_the_ledger() {
        let sim = SimConfig { latency_scale: 3.0, judge: QUIET };
        let bench = Bench::start_on("capped", sim, None, 120, |config| {
            fast_takeover(config);
            add_verbose_candidate(config);
        })
        .await;
        let config = write_config(&bench.dir, &bench.app.config);
        let billed_before = bench.sim.calls.billed_usd();
        let cap = 0.15;
        let mut request = experiment_request("capped", "verbose", "correctness", 120);
        request.spend_cap_usd = Some(cap);
        let experiment = bench.create(request).await;
        let store = &bench.app.store;

        let workers: Vec<Process> =
            (0..2).map(|_| Process::start(&config, &["worker", "--concurrency", "6"])).collect();
        // Killed mid-run, while it holds a call it reserved money for.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let victim = workers[0].child.id();
        while store.spend(&experiment.id).await.expect("spend").total_spent_usd < cap / 3.0
            || reserved_calls_of(store, &experiment, victim).await == 0
        {
            assert!(tokio::time::Instant::now() < deadline, "the worker never held a reserved call");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut workers = workers.into_iter();
        workers.next().expect("a worker").kill();
        wait_until(store, &experiment, 1.0, Duration::from_secs(180)).await;
        // The killed worker's reservations run out with their lease; the surviving worker's
        // maintenance settles them as presumed paid (nothing here calls the store for it).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let spend = store.spend(&experiment.id).await.expect("spend");
            if spend.reserved_usd.abs() < 1e-9 && spend.presumed_calls > 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the dead worker's reservations were never settled: {spend:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(workers);

        let billed = bench.sim.calls.billed_usd() - billed_before;
        let spend = store.spend(&experiment.id).await.expect("spend");
        assert!(spend.capped, "{spend:?}");
        assert!(billed <= cap, "the upstream billed ${billed:.6} on a ${cap} cap: {spend:?}");
        assert!(spend.total_spent_usd <= cap + 1e-9, "{spend:?}");
        assert!(spend.total_spent_usd >= billed - 1e-9, "a paid call is missing: billed ${billed:.6}, {spend:?}");
        assert!(
            spend.total_spent_usd - spend.presumed_usd <= billed + 1e-9,
            "spend beyond the bill that is not presumed: billed ${billed:.6}, {spend:?}"
        );
        assert!(spend.presumed_calls > 0, "the killed worker had calls in flight: {spend:?}");
        assert!(spend.reserved_usd.abs() < 1e-9, "a reservation is still held: {spend:?}");
        let ledger = store.reservations(&experiment.id).await.expect("ledger");
        assert!(ledger.iter().all(|(status, ..)| status != "reserved" && status != "released"), "{ledger:?}");
        // Each call's reservation was its upper bound: none cost more than it reserved.
        const OVER: &str = "SELECT COUNT(*) FROM spend_reservations
                            WHERE experiment_id = $1 AND status = 'settled' AND actual_usd > estimate_usd + 1e-12";
        let over: i64 = match store.pool() {
            evaltap_store::Pool::Sqlite(pool) => sqlx::query_scalar(OVER).bind(&experiment.id).fetch_one(pool).await,
            evaltap_store::Pool::Postgres(pool) => sqlx::query_scalar(OVER).bind(&experiment.id).fetch_one(pool).await,
        }
        .expect("ledger rows");
        assert_eq!(over, 0, "calls cost more than they reserved");

        let replays = store.replays(&experiment.id).await.expect("replays");
        assert!(replays.iter().any(|r| r.skipped.is_some()), "the cap stopped some replays");
        let report = evaltap_report::build(store, &experiment).await.expect("report");
        let json: Value = serde_json::to_value(&report).expect("json");
        assert_eq!(json["spend"]["capped"], true);
        assert_eq!(json["spend"]["presumed_calls"], spend.presumed_calls);
        let text = evaltap_report::render_text(&report);
        assert!(text.contains("presumed paid for"), "{text}");
        let page = reqwest::get(format!("{}/experiments/capped", bench.url)).await.expect("page");
        let page = page.text().await.expect("html");
        assert!(page.contains("presumed paid for"), "the experiment page shows presumed spend");
        // The verbose answers fit the output limit a capped replay carries: none was cut.
        assert_eq!(report.candidates[0].truncated, 0, "{text}");
    }
}

crate::on_both_engines! {
    /// The whole loop in one process on either engine: every unit of work enqueued once, every
    /// model call made once, the verdicts right.
    async fn the_loop_enqueues_and_calls_each_unit_once() {
        let bench = Bench::start("loop", QUIET, None, 80).await;
        let production_calls = bench.sim.calls.total();
        let mut request = two_candidates("loop", 80);
        request.rubrics.push("preference".into());
        let experiment = bench.create(request).await;
        let app = &bench.app;
        // Created means enqueued: asking again (a re-run, a restart) enqueues nothing.
        assert_eq!(evaltap_worker::enqueue_missing(&app.store, &experiment).await.expect("enqueue"), 0);
        let report = crate::common::run(app, &experiment).await;
        assert_eq!(report.status, "done");
        let by_name = |name: &str| report.candidates.iter().find(|c| c.name == name).expect("candidate");
        let correctness = |name: &str| {
            by_name(name).rubrics.iter().find(|r| r.rubric == "correctness").expect("rubric").stats.verdict
        };
        assert_eq!(correctness("small"), evaltap_stats::Verdict::Worse);
        assert_ne!(correctness("medium"), evaltap_stats::Verdict::Worse);
        // Replays, then judgments: the baseline and each candidate pointwise, each candidate
        // pairwise in both orders.
        let needed = 80 * 2 + 80 + 2 * (80 + 2 * 80);
        assert_eq!(bench.sim.calls.total() - production_calls, needed, "a model call was made twice");
        assert_eq!(app.store.work_takeovers(&experiment.id).await.expect("takeovers"), 0);
        assert_eq!(evaltap_worker::enqueue_missing(&app.store, &experiment).await.expect("enqueue"), 0);
        let spend = app.store.spend(&experiment.id).await.expect("spend");
        assert!(spend.spent_usd > 0.0 && spend.judge_spent_usd > 0.0 && !spend.capped, "{spend:?}");
    }
}

crate::on_both_engines! {
    /// A source's per-minute cap is one budget for every serve process on the database.
    async fn a_per_minute_cap_holds_across_two_serve_processes() {
        // The window is the wall-clock minute: start well inside one.
        while chrono::Utc::now().timestamp() % 60 > 45 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut dir = TempDir::new("rate");
        let source = evaltap_core::SourceConfig {
            max_per_minute: Some(50),
            ..evaltap_core::SourceConfig::with_key("app", "k-app")
        };
        let (config, path) = source_config(&mut dir, source);
        let first = Process::start(&path, &["serve", "--bind", "127.0.0.1:0", "--no-workers"]);
        let second = Process::start(&path, &["serve", "--bind", "127.0.0.1:0", "--no-workers"]);
        let http = evaltap_providers::http_client(Duration::from_secs(10)).expect("client");
        let mut accepted = 0;
        for (n, serve) in [&first, &second, &first, &second].into_iter().enumerate() {
            let reply = http
                .post(format!("{}/v1/mirror", serve.url()))
                .bearer_auth("k-app")
                .body(batch(n * 30, 30))
                .send()
                .await
                .expect("send");
            assert_eq!(reply.status().as_u16(), 202);
            let body: Value = reply.json().await.expect("json");
            accepted += body["accepted"].as_u64().expect("accepted");
        }
        assert_eq!(accepted, 50, "120 sent through two processes under a cap of 50 a minute");
        let store = Store::connect(&config.database_url).await.expect("store");
        assert_eq!(store.count_exchanges().await.expect("count"), 50);
        first.stop_with("TERM");
        second.stop_with("INT");
    }
}

/// The documented multi-process deployment starts processes the CLI accepts, all on one
/// PostgreSQL database (the images themselves cannot be built offline).
#[test]
fn docker_compose_runs_commands_the_cli_accepts_on_one_database() {
    let compose = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"))
        .expect("docker-compose.yml");
    let command = regex::Regex::new(r#"(?m)^\s+command: \[(.*)\]$"#).expect("regex");
    let commands: Vec<Vec<String>> = command
        .captures_iter(&compose)
        .map(|c| c[1].split(',').map(|arg| arg.trim().trim_matches('"').to_string()).collect())
        .collect();
    assert_eq!(commands.len(), 2, "a serve and a worker service");
    assert!(commands.iter().any(|c| c.first().map(String::as_str) == Some("serve")));
    assert!(commands.iter().any(|c| c.first().map(String::as_str) == Some("worker")));
    for args in &commands {
        let status = Command::new(env!("CARGO_BIN_EXE_evaltap"))
            .args(args)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("evaltap");
        assert!(status.success(), "the CLI rejects `evaltap {}`", args.join(" "));
    }
    let urls: Vec<&str> =
        compose.lines().filter_map(|l| l.trim().strip_prefix("EVALTAP_DATABASE_URL: ")).collect();
    assert_eq!(urls.len(), 2);
    assert!(urls.iter().all(|u| u.starts_with("postgres://") && *u == urls[0]), "{urls:?}");
}
