//! Drift from outside, with the simulator's judge noisy from call to call: a schedule against
//! the simulated model whose accuracy drops mid-series (0.92 → 0.60) raises exactly one alert,
//! at the first run after the drop, delivered to a local webhook with a valid signature, and
//! one recovery notice once accuracy is restored; missed slots run once, a slot never twice; an
//! A/A schedule of 30 compared runs raises none. Time is passed to the scheduler, not waited
//! for.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use evaltap_app::App;
use evaltap_drift::{NewSchedule, TickReport, tick};
use evaltap_golden::{DatasetDir, Item};
use evaltap_sim::JudgeBehavior;
use evaltap_store::{DatasetRef, ScheduleSpec};

use crate::common::{BackgroundWorker, Bench};

const QUIET: JudgeBehavior = JudgeBehavior { noise: 0.0, position_bias: 0.0, unreadable_long: 0.0 };
const SIX_HOURS: i64 = 6 * 3600;

type Deliveries = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// A local webhook receiver recording each delivery's signature header and body.
async fn receiver() -> (String, Deliveries) {
    let got: Deliveries = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let signature =
                    headers.get("x-evaltap-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
                sink.lock().expect("lock").push((signature, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

/// A dataset of `n` arithmetic questions, synced; returns its reference.
async fn dataset(app: &App, name: &str, n: usize) -> DatasetRef {
    let items: Vec<Item> = (0..n)
        .map(|i| {
            Item::from_input(
                format!("q{i}"),
                &format!("What is {} + {}? Reply with the number.", 7 * i + 3, i + 11),
            )
        })
        .collect();
    DatasetDir::new(&app.config.datasets_dir).write(name, &items).expect("write");
    let (version, _, _) = evaltap_app::golden::sync(&app.context(), name).await.expect("sync");
    DatasetRef { name: name.into(), version }
}

/// Ticks at `now` until the run started there is evaluated (not merely another schedule's
/// run still finishing); returns every tick's alerts.
async fn run_slot(app: &App, now: DateTime<Utc>) -> TickReport {
    let ctx = app.drift_context().expect("context");
    match evaltap_drift::run_slot_to_end(&ctx, now, Duration::from_millis(50), Duration::from_secs(60)).await
    {
        Ok(report) => report,
        Err(err) => panic!("{err}: {}", stuck(app).await),
    }
}

async fn front_page(url: &str) -> String {
    reqwest::get(format!("{url}/")).await.expect("front page").text().await.expect("html")
}

/// What an unfinished run is waiting for: each unevaluated run's progress, its unfinished
/// work with claims, and the queue's jobs by status.
async fn stuck(app: &App) -> String {
    let mut out = String::new();
    for run in app.store.unevaluated_runs().await.unwrap_or_default() {
        let Some(id) = run.experiment_id else { continue };
        let Ok(Some(experiment)) = app.store.experiment(&id).await else { continue };
        let progress = app.store.experiment_progress(&experiment).await;
        let unfinished = app.store.unfinished_work(&id).await;
        out.push_str(&format!("\nrun {} ({id}): {progress:?}\n  unfinished work: {unfinished:?}", run.slot));
    }
    if let evaltap_store::Pool::Sqlite(pool) = app.store.pool() {
        let jobs: Result<Vec<(String, i64, i64)>, _> =
            sqlx::query_as("SELECT status, COUNT(*), MAX(attempts) FROM Jobs GROUP BY status")
                .fetch_all(pool)
                .await;
        out.push_str(&format!("\nqueue: {jobs:?}"));
    }
    out
}

crate::on_both_engines! {
    async fn a_drop_alerts_once_and_recovers_once_and_a_and_a_never_alerts() {
        let (url, deliveries) = receiver().await;
        // 5% of the judge's scores random, drawn afresh per call: runs of an unchanged model differ.
        let noisy = JudgeBehavior { noise: 0.05, position_bias: 0.0, unreadable_long: 0.0 };
        let bench = Bench::start_with("drift", noisy, None, 1, |config| {
            config.alerts.webhooks.push(evaltap_core::WebhookSink {
                url: url.clone(),
                secret: Some("s3cret".into()),
                secret_env: None,
            });
            config.alerts.backoff_ms = 10;
            let mut drift = config.candidates[0].clone();
            drift.name = "drift".into();
            drift.model = "sim-drift".into();
            config.candidates.push(drift);
        })
        .await;
        let app = bench.app.clone();
        let worker = BackgroundWorker::start(&app);

        let ctx = app.drift_context().expect("context");
        let spec = ScheduleSpec { rubrics: vec!["correctness".into()], checks: vec![], margin: 0.02, guard: None };
        let new = |dataset: DatasetRef, candidate: &str| NewSchedule {
            name: None,
            dataset,
            candidate: candidate.into(),
            every: Duration::from_secs(SIX_HOURS as u64),
            spec: spec.clone(),
        };
        let support = dataset(&app, "support", 60).await;
        let schedule = evaltap_drift::add_schedule(&ctx, new(support, "drift")).await.expect("schedule");

        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).single().expect("time");
        let at = |k: i64| t0 + chrono::Duration::seconds(k * SIX_HOURS);
        // Three reference runs, the drop, then recovery.
        let accuracy = [0.92, 0.92, 0.92, 0.60, 0.60, 0.92, 0.92];
        let (mut opened, mut closed) = (Vec::new(), Vec::new());
        for (k, acc) in accuracy.iter().enumerate() {
            bench.sim.accuracy.set("sim-drift", *acc);
            let report = run_slot(&app, at(k as i64)).await;
            opened.extend(report.opened.iter().map(|a| (k, a.rubric.clone())));
            if k == 3 {
                let front = front_page(&bench.url).await;
                assert!(front.contains("Open drift alerts") && front.contains("href=\"/drift/support%3Adrift\""), "{front}");
            }
            closed.extend(report.closed.iter().map(|a| (k, a.rubric.clone())));
        }
        assert_eq!(opened, [(3, "correctness".to_string())], "one alert per regression, at its first run");
        assert_eq!(closed, [(5, "correctness".to_string())], "one recovery notice");

        // Delivered, signed, in order.
        let got = deliveries.lock().expect("lock").clone();
        assert_eq!(got.len(), 2, "{got:?}");
        for ((signature, body), event) in got.iter().zip(["opened", "recovered"]) {
            let expected = format!("sha256={}", evaltap_drift::signature("s3cret", body));
            assert_eq!(signature.as_deref(), Some(expected.as_str()));
            let json: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
            assert_eq!(json["event"], event);
            assert_eq!(json["details"]["model"], "drift");
        }
        let alerts = app.store.alerts().await.expect("alerts");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].status, "closed");
        let details = &alerts[0].details;
        assert!(details["delta"].as_f64().is_some_and(|d| d < -0.1), "{details:?}");
        assert!(details["p_holm"].as_f64() <= details["threshold"].as_f64(), "{details:?}");
        assert_eq!(details["reference_runs"].as_array().map(Vec::len), Some(3), "{details:?}");
        let recorded = app.store.alert_deliveries(&alerts[0].id).await.expect("deliveries");
        assert_eq!(
            recorded.iter().map(|d| (d.0.as_str(), d.3)).collect::<Vec<_>>(),
            [("opened", true), ("recovered", true)]
        );

        // The front page lists open alerts only: this one has recovered.
        assert!(!front_page(&bench.url).await.contains("Open drift alerts"));
        // Everything was down for days: the schedule runs once on the way back, not once per slot.
        let back = at(100);
        let report = run_slot(&app, back).await;
        assert!(report.opened.is_empty() && report.closed.is_empty());
        let runs = app.store.schedule_runs(&schedule.id).await.expect("runs");
        assert_eq!(runs.len(), accuracy.len() + 1);
        // Two processes at the same time: one starts the slot.
        let (a, b) = tokio::join!(tick(&ctx, at(101)), tick(&ctx, at(101)));
        assert_eq!(a.expect("tick").started.len() + b.expect("tick").started.len(), 1);

        // The alerts API.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let api = format!("http://{}/api/alerts", listener.local_addr().expect("addr"));
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(evaltap_server::serve(listener, evaltap_server::AppState::for_app(&app), async move {
            let _ = api_stopped.await;
        }));
        let http = evaltap_providers::http_client(Duration::from_secs(30)).expect("client");
        let listed: serde_json::Value = http.get(&api).send().await.expect("api").json().await.expect("json");
        assert_eq!(listed["alerts"][0]["deliveries"].as_array().map(Vec::len), Some(2), "{listed}");
        // The drift page: a point per compared run, the opened and recovered markers on the
        // runs that opened and closed the alert, each linking to its run's experiment.
        let page_url = api.replace("/api/alerts", &format!("/drift/{}", evaltap_server::path_segment(&schedule.name)));
        let page = http.get(&page_url).send().await.expect("page");
        assert_eq!(page.status().as_u16(), 200);
        let html = page.text().await.expect("html");
        assert_eq!(html.matches("<circle class=\"run").count(), accuracy.len() - 3 + 1, "{html}");
        assert_eq!(html.matches("class=\"run opened\"").count(), 1, "{html}");
        assert_eq!(html.matches("class=\"run closed\"").count(), 1, "{html}");
        let run_links = format!("/experiments/{}%23", evaltap_server::path_segment(&schedule.name));
        assert!(html.contains(&run_links) && html.contains("reference run"), "{html}");
        let index = http.get(api.replace("/api/alerts", "/drift")).send().await.expect("drift list");
        assert!(index.text().await.expect("html").contains("3 of 3"), "the reference is complete");
        let _ = stop_api.send(());

        // A/A: 3 reference runs and 30 compared runs of an unchanged model raise nothing (the
        // first schedule paused meanwhile), though the judge's noise makes every run differ.
        app.store.set_schedule_paused(&schedule.id, true).await.expect("pause");
        let aa = dataset(&app, "aa", 30).await;
        let schedule = evaltap_drift::add_schedule(&ctx, new(aa, "medium")).await.expect("schedule");
        let mut deltas = Vec::new();
        for k in 200..233 {
            let report = run_slot(&app, at(k)).await;
            assert!(report.opened.is_empty(), "A/A run {k} alerted: {report:?}");
        }
        for run in app.store.schedule_runs(&schedule.id).await.expect("runs") {
            let outcome = run.outcome.expect("evaluated");
            if let Some(delta) = outcome["rubrics"][0]["delta"].as_f64() {
                deltas.push(delta);
            }
        }
        assert_eq!(deltas.len(), 30, "30 compared runs after the 3 reference runs");
        assert!(deltas.iter().filter(|d| **d != 0.0).count() >= 20, "the judge's noise reaches the runs: {deltas:?}");
        assert_eq!(app.store.alerts().await.expect("alerts").len(), 1);
        worker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_that_cannot_run_fails_visibly_and_a_config_change_is_picked_up() {
    let (url, deliveries) = receiver().await;
    let bench = Bench::start_with("cannot-run", QUIET, None, 1, |config| {
        config.alerts.webhooks.push(evaltap_core::WebhookSink {
            url: url.clone(),
            secret: None,
            secret_env: None,
        });
        config.alerts.backoff_ms = 10;
    })
    .await;
    let app = bench.app.clone();
    let config_file = crate::common::write_config(&bench.dir, &app.config);
    let support = dataset(&app, "support", 5).await;
    let full = app.drift_context().expect("context");
    let spec =
        ScheduleSpec { rubrics: vec!["correctness".into()], checks: vec![], margin: 0.02, guard: None };
    let schedule = evaltap_drift::add_schedule(
        &full,
        NewSchedule {
            name: None,
            dataset: support,
            candidate: "small".into(),
            every: Duration::from_secs(3600),
            spec,
        },
    )
    .await
    .expect("schedule");
    // A running process that started before `small` was configured: its runs cannot start.
    let mut stale = app.drift_context().expect("context");
    stale.config.candidates.retain(|c| c.name != "small");
    stale.config_path = Some(config_file.clone());
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).single().expect("time");
    let report = tick(&stale, t0).await.expect("tick");
    assert!(report.started.is_empty());
    assert_eq!(report.opened.len(), 1, "{report:?}");
    assert_eq!(report.opened[0].rubric, evaltap_drift::CANNOT_RUN);
    // Another failing slot does not raise a second alert.
    let again = tick(&stale, t0 + chrono::Duration::hours(1)).await.expect("tick");
    assert!(again.opened.is_empty(), "{again:?}");
    // `schedule list` and `alerts` say so.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
            .args(args)
            .arg("--config")
            .arg(&config_file)
            .current_dir(&bench.dir.0)
            .output()
            .expect("run evaltap");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let list = cli(&["golden", "schedule", "list"]);
    assert!(
        list.contains("2 runs (2 could not start), 1 open alert — FAILING: unknown candidate `small`"),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli(&["golden", "schedule", "list", "--json"])).expect("json");
    assert_eq!(json[0]["status"], "failing", "{json}");
    assert!(cli(&["golden", "alerts"]).contains(evaltap_drift::CANNOT_RUN));
    // The webhook heard it once.
    let heard: Vec<serde_json::Value> = deliveries
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, body)| serde_json::from_slice(body).expect("json"))
        .collect();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(
        heard[0]["details"]["error"].as_str().map(|e| e.contains("unknown candidate `small`")),
        Some(true)
    );
    // The process reads its configuration file again (as the scheduler does before each pass):
    // the next slot starts and the failing alert closes.
    evaltap_drift::reload_config(&mut stale).expect("reload");
    let recovered = tick(&stale, t0 + chrono::Duration::hours(2)).await.expect("tick");
    assert_eq!(recovered.started.len(), 1, "{recovered:?}");
    assert_eq!(recovered.closed.len(), 1, "{recovered:?}");
    assert!(
        app.store.open_alert_for(&schedule.id, evaltap_drift::CANNOT_RUN).await.expect("alerts").is_none()
    );
    assert!(!cli(&["golden", "schedule", "list"]).contains("FAILING"));
}

/// A local Slack-compatible receiver that answers 500 to the first `failures` deliveries, then
/// 200; records every body it got.
async fn flaky_receiver(failures: usize) -> (String, Deliveries) {
    let got: Deliveries = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/slack",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let mut seen = sink.lock().expect("lock");
                seen.push((None, body.to_vec()));
                if seen.len() <= failures {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/slack", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_alerts_are_retried_until_delivered_and_a_dead_sink_is_recorded_as_failed() {
    let (flaky, flaky_got) = flaky_receiver(2).await;
    let (dead, dead_got) = flaky_receiver(usize::MAX).await;
    let bench = Bench::start_with("slack", QUIET, None, 1, |config| {
        config.alerts.slack.push(evaltap_core::SlackSink { url: flaky.clone() });
        config.alerts.slack.push(evaltap_core::SlackSink { url: dead.clone() });
        config.alerts.max_attempts = 3;
        config.alerts.backoff_ms = 10;
    })
    .await;
    let app = bench.app.clone();
    let support = dataset(&app, "support", 5).await;
    let full = app.drift_context().expect("context");
    let spec =
        ScheduleSpec { rubrics: vec!["correctness".into()], checks: vec![], margin: 0.02, guard: None };
    let new = NewSchedule {
        name: None,
        dataset: support,
        candidate: "small".into(),
        every: Duration::from_secs(3600),
        spec,
    };
    evaltap_drift::add_schedule(&full, new).await.expect("schedule");
    // A process that does not know the candidate: its run cannot start, which alerts.
    let mut stale = app.drift_context().expect("context");
    stale.config.candidates.retain(|c| c.name != "small");
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).single().expect("time");
    let report = tick(&stale, t0).await.expect("tick");
    assert_eq!(report.opened.len(), 1, "{report:?}");
    // The flaky sink: two 500s, then delivered on the third attempt, one Slack-shaped body each.
    let bodies = flaky_got.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    for (_, body) in &bodies {
        let json: serde_json::Value = serde_json::from_slice(body).expect("json");
        let text = json["text"].as_str().expect("a Slack `text` field");
        assert!(text.contains("cannot run") && text.contains("unknown candidate `small`"), "{text}");
    }
    // The dead sink: tried max_attempts times, then given up.
    assert_eq!(dead_got.lock().expect("lock").len(), 3);
    let recorded = app.store.alert_deliveries(&report.opened[0].id).await.expect("deliveries");
    let by_sink = |url: &str| recorded.iter().find(|d| d.1 == url).map(|d| (d.2, d.3));
    assert_eq!(by_sink(&flaky), Some((3, true)), "{recorded:?}");
    assert_eq!(by_sink(&dead), Some((3, false)), "{recorded:?}");
}

/// Mirrors `count` lookup questions (the `support` route) answered by `model`, as a gateway
/// would after switching the route to it.
async fn route_traffic(bench: &Bench, model: &str, from: u64, count: usize) {
    let exchanges: Vec<serde_json::Value> = futures::future::join_all(
        (from..)
            .map(|i| evaltap_sim::Task::generate(77, i))
            .filter(|task| task.family() == evaltap_sim::tasks::Family::Lookup)
            .take(count)
            .enumerate()
            .map(|(i, task)| async move {
                let request = serde_json::json!({"model": model,
                    "messages": [{"role": "user", "content": task.prompt()}]});
                let response = bench.production_call(&request).await;
                serde_json::json!({"id": format!("guard-{from}-{i}"), "tags": {"route": "support"},
                                   "request": request, "response": response})
            }),
    )
    .await;
    crate::first_hour::mirror(bench, exchanges).await;
}

crate::on_both_engines! {
    /// A guard on a switched route: the new model as good as the former production model raises
    /// nothing; once it degrades, one alert (delivered); once it recovers, one recovery notice.
    async fn a_guard_alerts_once_when_the_switched_model_degrades_and_closes_when_it_recovers() {
        let (url, deliveries) = receiver().await;
        let noisy = JudgeBehavior { noise: 0.05, position_bias: 0.0, unreadable_long: 0.0 };
        let bench = Bench::start_with("guard", noisy, None, 1, |config| {
            config.alerts.webhooks.push(evaltap_core::WebhookSink { url: url.clone(), secret: None, secret_env: None });
            config.alerts.backoff_ms = 10;
        })
        .await;
        let app = bench.app.clone();
        let worker = BackgroundWorker::start(&app);
        let ctx = app.drift_context().expect("context");
        let guard = evaltap_drift::add_guard(
            &ctx,
            evaltap_drift::NewGuard {
                name: Some("guard:support".into()),
                guard: evaltap_store::GuardSpec {
                    tag: "route".into(),
                    route: "support".into(),
                    model: "sim-drift".into(),
                    former: "large".into(),
                    source: None,
                    sample: 150,
                    experiment: None,
                },
                every: Duration::from_secs(3600),
                rubrics: vec!["correctness".into()],
                margin: 0.05,
            },
        )
        .await
        .expect("guard");
        assert_eq!(guard.candidate, "large");
        let hour = |k: i64| Utc.timestamp_opt(1_900_000_800 + k * 3600, 0).single().expect("time");

        // No traffic yet: the slot is skipped, not failed.
        let idle = tick(&ctx, hour(0)).await.expect("tick");
        assert!(idle.started.is_empty() && idle.opened.is_empty(), "{idle:?}");

        route_traffic(&bench, "sim-drift", 0, 150).await;
        let same = run_slot(&app, hour(1)).await;
        assert!(same.opened.is_empty() && same.closed.is_empty(), "{same:?}");

        bench.sim.accuracy.set("sim-drift", 0.4);
        route_traffic(&bench, "sim-drift", 1_000, 150).await;
        let degraded = run_slot(&app, hour(2)).await;
        assert_eq!(degraded.opened.len(), 1, "{degraded:?}");
        assert_eq!(degraded.opened[0].rubric, "correctness");

        bench.sim.accuracy.set("sim-drift", 0.92);
        route_traffic(&bench, "sim-drift", 2_000, 150).await;
        let recovered = run_slot(&app, hour(3)).await;
        assert!(recovered.opened.is_empty(), "{recovered:?}");
        assert_eq!(recovered.closed.len(), 1, "{recovered:?}");

        // Each run replayed only its own period's traffic, against the former production model.
        let runs = app.store.schedule_runs(&guard.id).await.expect("runs");
        let mut seen = std::collections::HashSet::new();
        for run in runs.iter().filter_map(|r| r.experiment_id.clone()) {
            let experiment = app.store.experiment(&run).await.expect("read").expect("exists");
            assert_eq!(experiment.spec.candidates[0].model, "sim-large");
            for item in app.store.experiment_item_ids(&experiment.id).await.expect("items") {
                assert!(seen.insert(item), "an exchange replayed by two runs");
            }
        }
        assert_eq!(seen.len(), 450);
        let events: Vec<String> = deliveries
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, body)| serde_json::from_slice::<serde_json::Value>(body).expect("json")["event"].to_string())
            .collect();
        assert_eq!(events, ["\"opened\"", "\"recovered\""]);
        // The drift page shows the guard with its alert and recovery.
        let page = reqwest::get(format!("{}/drift/guard%3Asupport", bench.url)).await.expect("page").text().await.expect("html");
        assert!(page.contains("Guard after a switch") && page.contains("sim-drift"), "{page}");
        assert!(page.contains("alert opened on correctness") && page.contains("recovered on correctness"), "{page}");
        assert!(page.contains("no new traffic on the route"), "the idle slot is shown as skipped");
        worker.stop().await;
    }
}
