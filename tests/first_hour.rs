//! What a new user meets in the first hour, checked where they meet it: the CLI's output and
//! exit codes, the HTTP status, the page.

use std::process::{Command, Output};

/// Runs the `evaltap` binary in `dir`.
pub fn evaltap_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(args)
        .current_dir(dir)
        .env_remove("EVALTAP_CONFIG")
        .output()
        .expect("run evaltap")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Sends `exchanges` to a bench's mirror endpoint as native NDJSON; all must be accepted.
pub(crate) async fn mirror(
    bench: &crate::common::Bench,
    exchanges: impl IntoIterator<Item = serde_json::Value>,
) {
    let body: String = exchanges.into_iter().map(|e| e.to_string() + "\n").collect();
    let reply = reqwest::Client::new()
        .post(format!("{}/v1/mirror", bench.url))
        .bearer_auth("demo-source-key")
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("mirror");
    assert_eq!(reply.status(), 202, "{}", reply.text().await.unwrap_or_default());
}

fn write_pairs(dir: &std::path::Path, name: &str, pairs: impl Iterator<Item = (f64, f64)>) -> String {
    let mut csv = String::from("baseline,candidate\n");
    for (b, c) in pairs {
        csv.push_str(&format!("{b},{c}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, csv).expect("write csv");
    path.display().to_string()
}

#[test]
fn stats_compare_passes_identical_pairs_and_never_calls_a_worse_one_within_the_margin() {
    let dir = crate::common::TempDir::new("stats-compare");
    let identical =
        write_pairs(&dir.0, "same.csv", (0..2_000).map(|i| (f64::from(i % 3 == 0), f64::from(i % 3 == 0))));
    let out = evaltap_in(
        &dir.0,
        &["stats", "compare", "--csv", &identical, "--baseline", "baseline", "--candidate", "candidate"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("verdict (fixed-n): non-inferior"), "{text}");
    assert!(text.contains("every pair agrees"), "{text}");

    // A drop of a third: `worse`, with no word of a margin.
    let dropped =
        write_pairs(&dir.0, "drop.csv", (0..600).map(|i| (f64::from(i % 10 < 9), f64::from(i % 10 < 6))));
    let out = evaltap_in(
        &dir.0,
        &["stats", "compare", "--csv", &dropped, "--baseline", "baseline", "--candidate", "candidate"],
    );
    let text = stdout(&out);
    assert!(text.contains("verdict (fixed-n): worse"), "{text}");
    assert!(!text.contains("margin"), "{text}");
}

#[test]
fn without_a_configuration_commands_say_so_and_create_no_database() {
    let dir = crate::common::TempDir::new("no-config");
    for args in [&["experiment", "list"][..], &["report", "demo"], &["sources"], &["gate", "demo"]] {
        let out = evaltap_in(&dir.0, args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        let text = stderr(&out);
        assert!(text.contains("no configuration found: looked for evaltap.toml in"), "{args:?}: {text}");
    }
    let left: Vec<_> = std::fs::read_dir(&dir.0).expect("list").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "files were created: {left:?}");

    // A named file that is missing: the OS error once, not twice.
    let out = evaltap_in(&dir.0, &["--config", "missing.toml", "experiment", "list"]);
    let text = stderr(&out);
    assert!(text.contains("cannot read missing.toml"), "{text}");
    assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");

    // A named database is used as asked.
    let url = format!("sqlite://{}", dir.0.join("named.db").display());
    let out = evaltap_in(&dir.0, &["--database-url", &url, "experiment", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.0.join("named.db").exists());
}

#[test]
fn the_demo_writes_to_the_database_it_is_given_and_says_where() {
    let dir = crate::common::TempDir::new("demo-url");
    let database = dir.0.join("demo.db");
    let url = format!("sqlite://{}", database.display());
    let out =
        evaltap_in(&dir.0, &["demo", "--json", "--exchanges", "40", "--port", "0", "--database-url", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(database.exists(), "the demo did not write to {url}");
    assert!(stderr(&out).contains(&format!("database: {url}")), "{}", stderr(&out));
    let out = evaltap_in(&dir.0, &["--database-url", &url, "experiment", "list"]);
    assert!(stdout(&out).starts_with("demo\t"), "{}", stdout(&out));
    // A second demo on the same database would mix two demos: refused, nothing lost.
    let again =
        evaltap_in(&dir.0, &["demo", "--json", "--exchanges", "40", "--port", "0", "--database-url", &url]);
    assert_eq!(again.status.code(), Some(64), "{}", stderr(&again));
    assert!(stderr(&again).contains("already holds a demo"), "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_create_without_rubrics_uses_the_rubrics_that_apply() {
    let bench =
        crate::common::Bench::start("default-rubrics", evaltap_sim::JudgeBehavior::default(), None, 30).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    let out = evaltap_in(
        &bench.dir.0,
        &["experiment", "create", "--name", "defaults", "--candidate", "small", "--sample", "10"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let experiment = bench.app.store.require_experiment("defaults").await.expect("created");
    let rubrics = &experiment.spec.rubrics;
    assert!(rubrics.contains(&"correctness".to_string()), "{rubrics:?}");
    assert!(!rubrics.contains(&"correctness_vs_reference".to_string()), "no references here: {rubrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_each_thing_once_and_names_a_mixed_baseline() {
    let bench = crate::common::Bench::start("mixed", evaltap_sim::JudgeBehavior::default(), None, 30).await;
    // Ten more exchanges answered by another production model.
    mirror(
        &bench,
        (0..10).map(|i| {
            serde_json::json!({
                "id": format!("medium-{i}"),
                "request": {"model": "sim-medium", "messages": [{"role": "user", "content": format!("What is {i} + {i}?")}]},
                "response": {"model": "sim-medium", "choices": [{"message": {"role": "assistant", "content": format!("{}", 2 * i)}}]}
            })
        }),
    )
    .await;
    // A zero cap: every replay is skipped, none failed.
    let experiment = bench
        .create(evaltap_worker::ExperimentRequest {
            spend_cap_usd: Some(0.0),
            ..crate::common::experiment_request("capped", "small", "correctness", 40)
        })
        .await;
    crate::common::run(&bench.app, &experiment).await;
    let url = bench.app.config.database_url.clone();
    let out = evaltap_in(&bench.dir.0, &["--database-url", &url, "report", "capped", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let progress = &report["progress"];
    let candidate = &report["candidates"][0];
    assert_eq!(progress["replays_failed"], candidate["errors"], "{progress} vs {candidate}");
    assert_eq!(progress["replays_skipped"], candidate["skipped"], "{progress} vs {candidate}");
    assert_eq!(progress["replays_skipped"], 40);
    assert_eq!(report["baseline"]["model"], "mixed", "{}", report["baseline"]);
    assert_eq!(report["baseline"]["models"][1], serde_json::json!({"model": "sim-medium", "n": 10}));
    let out = evaltap_in(&bench.dir.0, &["--database-url", &url, "report", "capped"]);
    let text = stdout(&out);
    assert!(text.contains("baseline mixed (sim-large 75%, sim-medium 25%) on 40 exchanges"), "{text}");

    // Nothing scored: the page says so and why, and plots nothing.
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/experiments/capped", bench.url)).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("no pairs yet: the spend cap was reached before any pair was complete"), "{html}");
    assert!(!html.contains("<circle") && !html.contains("polyline"), "{html}");
    assert!(html.contains("mixed (sim-large 75%, sim-medium 25%)"), "{html}");
    for negative_zero in ["$-0", "-0 requests", "-0.0"] {
        assert!(!html.contains(negative_zero), "{negative_zero} on the page");
    }
    let chart: serde_json::Value = http
        .get(format!("{}/api/experiments/capped/chart", bench.url))
        .send()
        .await
        .expect("chart")
        .json()
        .await
        .expect("chart JSON");
    assert_eq!(chart["points"], serde_json::json!([]), "{chart}");
    assert_eq!(chart["no_pairs"], serde_json::json!(["small"]), "{chart}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_run_example_links_open_and_page_errors_are_pages() {
    use evaltap_app::golden as golden_cmd;
    let bench =
        crate::common::Bench::start("golden-links", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    let app = &bench.app;
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/arithmetic.jsonl");
    let target = golden_cmd::datasets(&app.context());
    std::fs::create_dir_all(target.root()).expect("mkdir");
    std::fs::copy(&shipped, target.path("arithmetic").expect("path")).expect("copy");
    let options = golden_cmd::GoldenRun {
        candidates: vec!["small".into()],
        against_reference: true,
        name: Some("links".into()),
        ..golden_cmd::GoldenRun::default()
    };
    evaltap::golden_cmd::run(app, "arithmetic", &options, 8, true).await.expect("golden run");
    let http = reqwest::Client::new();
    let html = http
        .get(format!("{}/experiments/links/examples?per_page=100", bench.url))
        .send()
        .await
        .expect("examples")
        .text()
        .await
        .expect("html");
    let links: Vec<String> = regex::Regex::new(r#"class="example-link" href="([^"]+)""#)
        .expect("regex")
        .captures_iter(&html)
        .map(|c| c[1].replace("&amp;", "&"))
        .collect();
    assert!(links.len() >= 20, "{html}");
    // Both answers inline, the candidate's as a word diff; improvements and regressions counted.
    assert_eq!(html.matches(r#"class="inline-answers""#).count(), links.len(), "{html}");
    assert!(html.contains("<del>") || html.contains("<ins>"), "no word marked: {html}");
    let counts = regex::Regex::new(r#"<td class="num regressions">(\d+)</td>"#).expect("regex");
    let regressions: usize =
        counts.captures_iter(&html).map(|c| c[1].parse::<usize>().expect("number")).sum();
    assert!(html.contains(r#"class="change-counts""#), "{html}");
    let listed = http
        .get(format!("{}/api/experiments/links/examples?direction=regressions&per_page=100", bench.url))
        .send()
        .await
        .expect("api")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(listed["total"], regressions, "{listed}");
    assert!(links.iter().all(|l| l.matches('/').count() == 4), "an item id left a raw `/`: {links:?}");
    let json_link_pattern = regex::Regex::new(r#"href="(/api/[^"]+)">JSON"#).expect("regex");
    for link in &links {
        let page = http.get(format!("{}{link}", bench.url)).send().await.expect("example");
        assert_eq!(page.status(), 200, "{link}");
        let body = page.text().await.expect("html");
        // Its JSON link opens too.
        let json_link = json_link_pattern.captures(&body).expect("JSON link")[1].to_string();
        assert_eq!(
            http.get(format!("{}{json_link}", bench.url)).send().await.expect("json").status(),
            200,
            "{json_link}"
        );
    }

    // Every page reads as written by a person: "1 exchange", times to the second, an axis.
    let one_plural = regex::Regex::new(r"\b1 (items|pairs|exchanges|requests|more pairs)\b").expect("regex");
    let fraction_of_second = regex::Regex::new(r"\d\d:\d\d:\d\d\.\d").expect("regex");
    for page in ["/", "/sources", "/spend", "/experiments/links", "/experiments/links/examples"] {
        let html =
            http.get(format!("{}{page}", bench.url)).send().await.expect("page").text().await.expect("html");
        assert!(!one_plural.is_match(&html), "{page}: {:?}", one_plural.find(&html));
        assert!(!fraction_of_second.is_match(&html), "{page}: {:?}", fraction_of_second.find(&html));
    }
    let sources =
        http.get(format!("{}/sources", bench.url)).send().await.expect("page").text().await.expect("html");
    assert!(sources.contains("1 exchange stored"), "{sources}");
    assert!(
        sources.contains("exchanges stored per hour, last 24 hours") && sources.contains(":00 UTC</text>"),
        "{sources}"
    );

    // A page that fails is a page; the API keeps JSON.
    let missing = http.get(format!("{}/experiments/nope", bench.url)).send().await.expect("page");
    assert_eq!(missing.status(), 404);
    assert!(missing.headers()["content-type"].to_str().expect("type").starts_with("text/html"));
    let body = missing.text().await.expect("html");
    assert!(
        body.contains("no experiment named `nope`")
            && body.contains("<h1 class=\"error-status\">404 Not Found</h1>"),
        "{body}"
    );
    let api = http.get(format!("{}/api/experiments/nope", bench.url)).send().await.expect("api");
    assert_eq!(api.status(), 404);
    assert!(api.headers()["content-type"].to_str().expect("type").starts_with("application/json"));
}

#[test]
fn source_keys_and_api_tokens_say_what_they_are() {
    let dir = crate::common::TempDir::new("prefixes");
    let token = stdout(&evaltap_in(&dir.0, &["tokens", "add", "--name", "ci", "--role", "read"]));
    let source = stdout(&evaltap_in(
        &dir.0,
        &["sources", "add", "--name", "prod", "--format", "native", "--url", "http://evaltap:7077"],
    ));
    assert!(token.contains("evaltap_token_") && !token.contains("evaltap_source_"), "{token}");
    assert!(source.contains("evaltap_source_") && !source.contains("evaltap_token_"), "{source}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_has_json_and_exchanges_finds_ids_for_rubric_render() {
    let bench =
        crate::common::Bench::start("listings", evaltap_sim::JudgeBehavior::default(), None, 30).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    let dir = &bench.dir.0;
    let json = |args: &[&str]| -> serde_json::Value {
        let out = evaltap_in(dir, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&out)))
    };
    let found = json(&["exchanges", "--limit", "3", "--json"]);
    let exchanges = found["exchanges"].as_array().expect("exchanges");
    assert_eq!(exchanges.len(), 3, "{found}");
    let first = &exchanges[0];
    // A tag of the newest exchange finds it; a tag nobody has finds nothing.
    let (key, value) = first["exchange"]["tags"].as_object().and_then(|t| t.iter().next()).expect("a tag");
    let tag = format!("{key}={}", value.as_str().expect("text tag"));
    let tagged = json(&["exchanges", "--tag", &tag, "--limit", "100", "--json"]);
    assert!(
        tagged["exchanges"]
            .as_array()
            .is_some_and(|e| !e.is_empty() && e.iter().all(|x| x["exchange"]["tags"][key] == *value))
    );
    let none = json(&["exchanges", "--tag", "route=no-such-route", "--json"]);
    assert_eq!(none["exchanges"], serde_json::json!([]));
    assert!(
        stdout(&evaltap_in(dir, &["exchanges", "--model", "no-such-model"]))
            .contains("no stored exchange matches")
    );
    // The id it prints is what `rubric render` takes.
    let id = first["id"].as_str().expect("id");
    let text = stdout(&evaltap_in(dir, &["exchanges", "--limit", "1"]));
    assert!(text.starts_with(id), "{text}");
    let render = evaltap_in(dir, &["rubric", "render", "correctness", "--exchange", id]);
    assert!(render.status.success(), "{}", stderr(&render));

    assert_eq!(json(&["sources", "--json"])[0]["accepted"], 30);
    assert_eq!(json(&["experiment", "list", "--json"]), serde_json::json!([]));
    assert_eq!(json(&["golden", "list", "--json"]), serde_json::json!([]));
    assert_eq!(json(&["golden", "schedule", "list", "--json"]), serde_json::json!([]));
    assert_eq!(json(&["golden", "alerts", "--json"]), serde_json::json!([]));
    assert!(json(&["tokens", "list", "--json"]).is_array());
    let new = evaltap_in(dir, &["golden", "add", "tiny", "--input", "What is 2+2?", "--reference", "4"]);
    assert!(new.status.success(), "{}", stderr(&new));
    assert_eq!(json(&["golden", "list", "--json"])[0]["items"], 1);
    assert_eq!(json(&["golden", "show", "tiny", "--json"])["items"][0]["reference"], "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_and_messages_are_consistent_across_commands() {
    let bench =
        crate::common::Bench::start("consistent", evaltap_sim::JudgeBehavior::default(), None, 20).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    let dir = &bench.dir.0;
    // `--candidate a,b` works wherever candidates are listed.
    let out = evaltap_in(
        dir,
        &[
            "experiment",
            "create",
            "--name",
            "two",
            "--candidate",
            "small,medium",
            "--rubric",
            "correctness",
            "--sample",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let two = bench.app.store.require_experiment("two").await.expect("created");
    assert_eq!(two.spec.candidates.len(), 2);
    // One word for one thing: `--name` names what a command creates; `--candidate` a candidate;
    // defaults are in the help.
    let help = stdout(&evaltap_in(dir, &["golden", "run", "--help"]));
    assert!(help.contains("--name <RUN_NAME>") && help.contains("<DATASET>"), "{help}");
    let help = stdout(&evaltap_in(dir, &["golden", "schedule", "add", "--help"]));
    assert!(help.contains("--candidate <MODEL>") && help.contains("--name <SCHEDULE_NAME>"), "{help}");
    let help = stdout(&evaltap_in(dir, &["experiment", "create", "--help"]));
    assert!(help.contains("[default: 0.02]"), "{help}");
    // An unknown rubric lists the ones there are, as a usage error.
    let out = evaltap_in(dir, &["rubric", "render", "nope", "--exchange", "x"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("available: ") && stderr(&out).contains("correctness"), "{}", stderr(&out));
    // A bad labels file is a bad labels file, not a bad rubric.
    std::fs::write(dir.join("labels.jsonl"), "{not json\n").expect("labels");
    let out = evaltap_in(dir, &["judge", "calibrate", "--rubric", "correctness", "--labels", "labels.jsonl"]);
    assert!(
        stderr(&out).contains("invalid labels file") && !stderr(&out).contains("invalid rubric"),
        "{}",
        stderr(&out)
    );
    // The simulator's control takes JSON whatever the content type says (`curl -d`).
    let reply = reqwest::Client::new()
        .post(format!("{}/control/accuracy", bench.sim.base_url().trim_end_matches("/v1")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"model": "sim-small", "accuracy": 0.5}"#)
        .send()
        .await
        .expect("control");
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_golden_set_says_what_it_can_show_and_passes_the_gate_at_its_own_margin() {
    let bench =
        crate::common::Bench::start("small-set", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    let dir = &bench.dir.0;
    let items: Vec<evaltap_golden::Item> = (0..24)
        .map(|i| evaltap_golden::Item::from_input(format!("q{i}"), &format!("What is {i} + 1?")))
        .collect();
    evaltap_golden::DatasetDir::new(&bench.app.config.datasets_dir).write("tiny", &items).expect("write");
    // A check both sides always pass: every pair agrees.
    let run = |name: &str| {
        evaltap_in(
            dir,
            &[
                "golden",
                "run",
                "tiny",
                "--candidate",
                "small",
                "--baseline",
                "medium",
                "--check",
                "max_length=100000",
                "--name",
                name,
            ],
        )
    };
    let out = run("at-default");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("with 24 items this set can show non-inferiority only at a margin of at least 0.117"),
        "{}",
        stderr(&out)
    );
    assert_eq!(evaltap_in(dir, &["gate", "at-default"]).status.code(), Some(2), "undecided at 0.02");
    // The dataset carries its own margin; a run at it says nothing more and passes the gate.
    let set = evaltap_in(dir, &["golden", "margin", "tiny", "0.15"]);
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(dir.join("datasets/tiny.toml").is_file());
    let out = run("at-its-margin");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("can show non-inferiority only"), "{}", stderr(&out));
    let gate = evaltap_in(dir, &["gate", "at-its-margin"]);
    assert_eq!(gate.status.code(), Some(0), "{}", stdout(&gate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_is_estimated_before_a_run_and_a_cap_buys_complete_pairs() {
    let bench =
        crate::common::Bench::start("estimate", evaltap_sim::JudgeBehavior::default(), None, 60).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    let dir = &bench.dir.0;
    // --dry-run: the estimate, replays and judge apart, and nothing created.
    let out = evaltap_in(
        dir,
        &[
            "experiment",
            "create",
            "--name",
            "plan",
            "--candidate",
            "small,medium",
            "--rubric",
            "correctness,helpfulness",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    let figure = |label: &str| -> (f64, u64) {
        let re = regex::Regex::new(&format!(r"{label} \$([0-9.]+) \((\d+) calls\)")).expect("regex");
        let c = re.captures(&line).unwrap_or_else(|| panic!("{label} in {line}"));
        (c[1].parse().expect("usd"), c[2].parse().expect("calls"))
    };
    assert!(line.starts_with("estimated cost $") && line.contains("for 60 items"), "{line}");
    let (replay_usd, replay_calls) = figure("replays");
    let (judge_usd, judge_calls) = figure("judge");
    assert_eq!(replay_calls, 60 * 2);
    assert_eq!(judge_calls, 60 * 2 * 3, "two rubrics on the baseline and both candidates");
    assert!(bench.app.store.experiment("plan").await.expect("read").is_none(), "a dry run created it");

    // The same request, run: the estimate is of the right size.
    let request = |name: &str, cap: Option<f64>| evaltap_worker::ExperimentRequest {
        name: name.into(),
        candidates: vec!["small".into(), "medium".into()],
        rubrics: vec!["correctness".into(), "helpfulness".into()],
        sample_size: None,
        filter: Default::default(),
        margin: None,
        spend_cap_usd: cap,
        judge_samples: None,
        dataset: None,
        baseline: None,
        checks: vec![],
        auto_checks: true,
        // The estimate is of every replay: compare it with an experiment that makes them all.
        early_stop: false,
        cache: false,
    };
    let full = bench.create(request("full", None)).await;
    let report = crate::common::run(&bench.app, &full).await;
    let within = |estimated: f64, actual: f64| actual > estimated / 3.0 && actual < estimated * 3.0;
    assert!(
        within(replay_usd, report.spend.spent_usd),
        "replays: estimated {replay_usd}, spent {}",
        report.spend.spent_usd
    );
    assert!(
        within(judge_usd, report.spend.judge_spent_usd),
        "judge: estimated {judge_usd}, spent {}",
        report.spend.judge_spent_usd
    );

    // A cap of a third of the cost buys complete pairs on every candidate × rubric, not
    // baseline judgments of every item and half-finished pairs.
    let cap = (replay_usd + judge_usd) / 3.0;
    let capped = bench.create(request("capped-third", Some(cap))).await;
    let report = crate::common::run(&bench.app, &capped).await;
    assert!(report.spend_cap_reached, "the cap was not reached");
    // Items the money touched (a call paid for) against items it finished: what is left
    // half-done is at most what was in flight when the cap was reached.
    let replays = bench.app.store.replays(&capped.id).await.expect("replays");
    let judgments = bench.app.store.judgments(&capped.id).await.expect("judgments");
    let paid: std::collections::BTreeSet<&str> = replays
        .iter()
        .filter(|r| r.skipped.is_none())
        .map(|r| r.item_id.as_str())
        .chain(judgments.iter().filter(|j| j.skipped.is_none()).map(|j| j.item_id.as_str()))
        .collect();
    let finished = paid
        .iter()
        .filter(|item| {
            let done = judgments.iter().filter(|j| j.item_id == **item && j.score.is_some()).count();
            done == 3 * 2 // baseline and both candidates, on both rubrics
        })
        .count();
    assert!(paid.len() - finished <= 16, "{} items paid for, {finished} finished", paid.len());
    for c in &report.candidates {
        for r in &c.rubrics {
            assert!(
                r.stats.n >= 8,
                "{} × {}: {} pairs for a third of the money",
                c.name,
                r.rubric,
                r.stats.n
            );
        }
    }
}

#[test]
fn an_import_says_what_it_mapped_and_what_it_skipped() {
    let dir = crate::common::TempDir::new("import-notes");
    let url = format!("sqlite://{}", dir.0.join("e.db").display());
    let file = dir.0.join("export.jsonl");
    std::fs::write(&file, "{\"id\": \"a\", \"input\": \"2+2?\", \"expected_output\": \"4\"}\n{\"id\": \"b\", \"input\": \"3+3?\", \"expected_output\": \"6\"}\n")
        .expect("write");
    let out = evaltap_in(
        &dir.0,
        &[
            "--database-url",
            &url,
            "golden",
            "import",
            "wrong",
            file.to_str().expect("path"),
            "--format",
            "braintrust",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("skipped expected_output: not a field this format reads"), "{text}");
    assert!(text.contains("this file looks like `langfuse`, not `braintrust`"), "{text}");
    let out = evaltap_in(
        &dir.0,
        &["--database-url", &url, "golden", "import", "right", file.to_str().expect("path")],
    );
    let text = stdout(&out);
    assert!(
        text.contains("mapped expected_output → reference (2 records)") && !text.contains("skipped"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rubric_render_shows_a_tool_using_exchange_for_what_it_is() {
    let bench =
        crate::common::Bench::start("tool-render", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    let exchange = serde_json::json!({
        "id": "tool-1",
        "request": {"model": "sim-large",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "messages": [
                {"role": "system", "content": "You are a travel assistant."},
                {"role": "user", "content": "What is the weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"temp_c\":18}"},
                {"role": "user", "content": "And in Rome?"}]},
        "response": {"model": "sim-large", "choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]}}]}
    });
    mirror(&bench, [exchange]).await;
    let found = evaltap_in(&bench.dir.0, &["exchanges", "--limit", "1", "--json"]);
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).expect("json");
    let id = found["exchanges"][0]["id"].as_str().expect("id").to_string();
    for rubric in ["correctness", "tool_use"] {
        let out = evaltap_in(&bench.dir.0, &["rubric", "render", rubric, "--exchange", &id]);
        assert!(out.status.success(), "{}", stderr(&out));
        let prompt = stdout(&out);
        assert!(prompt.contains("get_weather: Weather for a city. parameters {"), "{prompt}");
        assert!(prompt.contains("assistant: [calls get_weather({\"city\":\"Paris\"})]"), "{prompt}");
        assert!(prompt.contains("tool (c1): {\"temp_c\":18}"), "{prompt}");
        assert!(prompt.contains("### Response\n[calls get_weather({\"city\":\"Rome\"})]"), "{prompt}");
    }
}

crate::on_both_engines! {
/// Tool-calling production traffic gets `check:tool_call` and `check:tool_arguments_valid`,
/// which tell a worse candidate from an equal one.
async fn tool_calling_traffic_gets_tool_call_checks_that_tell_a_worse_candidate_from_an_equal_one() {
    let bench =
        crate::common::Bench::start("tool-checks", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    // Production traffic that calls a tool: the simulated production model answers each
    // request with a call (right with its accuracy), as a gateway would log it.
    let cities = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Dakar"];
    let mut exchanges = Vec::new();
    for i in 0..160 {
        let request = serde_json::json!({"model": "sim-large",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "messages": [{"role": "user", "content": format!("What is the weather in {} today? (#{i})", cities[i % cities.len()])}]});
        let response = bench.production_call(&request).await;
        assert!(response.pointer("/choices/0/message/tool_calls/0").is_some(), "{response}");
        exchanges.push(serde_json::json!({"id": format!("tool-{i}"), "request": request, "response": response}));
    }
    mirror(&bench, exchanges).await;
    let request = |name: &str, candidates: &[&str], auto_checks: bool| evaltap_worker::ExperimentRequest {
        candidates: candidates.iter().map(|c| c.to_string()).collect(),
        // All 161 exchanges: the one without a tool call is not counted by the checks.
        sample_size: None,
        auto_checks,
        ..crate::common::experiment_request(name, "small", "tool_use", 161)
    };
    let experiment = bench.create(request("tools", &["small", "large"], true)).await;
    for check in ["check:tool_call", "check:tool_arguments_valid"] {
        assert!(experiment.spec.rubrics.contains(&check.to_string()), "{:?}", experiment.spec.rubrics);
    }
    let report = crate::common::run(&bench.app, &experiment).await;
    let verdict = |candidate: &str, rubric: &str| {
        let c = report.candidates.iter().find(|c| c.name == candidate).expect("candidate");
        let r = c.rubrics.iter().find(|r| r.rubric == rubric).unwrap_or_else(|| panic!("{rubric} in the report"));
        assert!(r.stats.mcnemar.is_some(), "pass/fail, decided by McNemar: {r:?}");
        assert_eq!(r.stats.n, 160, "the exchange without a tool call is not counted: {r:?}");
        r.stats.verdict
    };
    // The small model calls with the wrong city far more often: worse. The production model
    // itself, replayed, calls as production did: not worse (every pair agrees).
    assert_eq!(verdict("small", "check:tool_call"), evaltap_stats::Verdict::Worse);
    assert_eq!(verdict("large", "check:tool_call"), evaltap_stats::Verdict::NonInferior);
    // Wrong cities are still valid arguments.
    assert_ne!(verdict("small", "check:tool_arguments_valid"), evaltap_stats::Verdict::Worse);
    // The judge, shown the tools, the question and the call, says the same on `tool_use`.
    let judged = |candidate: &str| {
        let c = report.candidates.iter().find(|c| c.name == candidate).expect("candidate");
        c.rubrics.iter().find(|r| r.rubric == "tool_use").expect("tool_use in the report").stats.verdict
    };
    assert_eq!(judged("small"), evaltap_stats::Verdict::Worse);
    assert_ne!(judged("large"), evaltap_stats::Verdict::Worse);
    // Turned off, they are not added.
    let plain = bench.create(request("tools-off", &["small"], false)).await;
    assert!(!plain.spec.rubrics.iter().any(|r| r.starts_with("check:")), "{:?}", plain.spec.rubrics);
}
}

crate::on_both_engines! {
/// Traffic whose requests set a JSON schema gets `check:response_format`: a model that answers
/// bare values is worse, one that follows the format is not.
async fn json_schema_traffic_gets_a_response_format_check() {
    let bench =
        crate::common::Bench::start("format-checks", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    let mut exchanges = Vec::new();
    for i in 0..160_i64 {
        let request = serde_json::json!({"model": "sim-large",
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
                "schema": {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "number"}}}}},
            "messages": [{"role": "user", "content": format!("What is {} + {}? Reply in JSON as {{\"answer\": <number>}}.", i, i + 7)}]});
        let response = bench.production_call(&request).await;
        exchanges.push(serde_json::json!({"id": format!("fmt-{i}"), "request": request, "response": response}));
    }
    mirror(&bench, exchanges).await;
    let experiment = bench
        .create(evaltap_worker::ExperimentRequest {
            candidates: vec!["small".into(), "medium".into()],
            sample_size: None,
            ..crate::common::experiment_request("formats", "small", "correctness", 161)
        })
        .await;
    assert!(experiment.spec.rubrics.contains(&"check:response_format".to_string()), "{:?}", experiment.spec.rubrics);
    let report = crate::common::run(&bench.app, &experiment).await;
    let verdict = |candidate: &str| {
        let c = report.candidates.iter().find(|c| c.name == candidate).expect("candidate");
        let r = c.rubrics.iter().find(|r| r.rubric == "check:response_format").expect("the check in the report");
        assert_eq!(r.stats.n, 160, "{r:?}");
        r.stats.verdict
    };
    // The small model answers bare numbers; the medium one follows the format as production does.
    assert_eq!(verdict("small"), evaltap_stats::Verdict::Worse);
    assert_eq!(verdict("medium"), evaltap_stats::Verdict::NonInferior);
}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_input_and_reasoning_tokens_are_priced_as_billed() {
    let bench = crate::common::Bench::start_with(
        "cached-tokens",
        evaltap_sim::JudgeBehavior::default(),
        None,
        1,
        |config| {
            config.prices.insert(
                "reasoner-1".into(),
                evaltap_core::Price {
                    input_per_mtok: 2.0,
                    output_per_mtok: 8.0,
                    cached_input_per_mtok: Some(0.5),
                },
            );
        },
    )
    .await;
    // No cost from the gateway: evaltap prices the usage itself. 10,000 prompt tokens of which
    // 8,000 cached, 3,000 completion tokens of which 2,500 reasoning: $0.032 a request.
    mirror(
        &bench,
        (0..12).map(|i| {
            serde_json::json!({
                "id": format!("cached-{i}"),
                "request": {"model": "reasoner-1", "messages": [{"role": "user", "content": format!("What is {i} + 1?")}]},
                "response": {"model": "reasoner-1", "choices": [{"message": {"role": "assistant", "content": format!("{}", i + 1)}}],
                             "usage": {"prompt_tokens": 10_000, "completion_tokens": 3_000,
                                       "prompt_tokens_details": {"cached_tokens": 8_000},
                                       "completion_tokens_details": {"reasoning_tokens": 2_500}}}
            })
        }),
    )
    .await;
    let experiment = bench
        .create(evaltap_worker::ExperimentRequest {
            filter: evaltap_store::Filter { model: Some("reasoner-1".into()), ..Default::default() },
            ..crate::common::experiment_request("cached", "small", "correctness", 12)
        })
        .await;
    let report = crate::common::run(&bench.app, &experiment).await;
    assert!((report.baseline.cost_per_request_usd - 0.032).abs() < 1e-12, "{:?}", report.baseline);
    // Each cost says where it came from.
    assert_eq!(
        report.baseline.cost_sources,
        evaltap_report::CostSources { gateway: 0, config: 12, table: 0, unknown: 0 }
    );
    let text = evaltap_report::render_text(&report);
    assert!(text.contains("$0.032000/request (priced: 12 from [prices] in evaltap.toml)"), "{text}");
}

/// A production model that neither the gateway nor `[prices]` priced is priced at the shipped,
/// dated default table, found under the name the gateway logged (provider prefix and date
/// suffix included), and the report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_nobody_priced_is_priced_at_the_dated_default_table() {
    let bench =
        crate::common::Bench::start("table-prices", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    // 10,000 prompt tokens of which 4,000 cached, 1,000 completion tokens, at gpt-4o's list
    // price ($2.50 / $1.25 cached / $10 per million): 6,000 × 2.5 + 4,000 × 1.25 + 1,000 × 10
    // = 15,000 + 5,000 + 10,000 micro-dollars = $0.030 a request.
    mirror(
        &bench,
        (0..8).map(|i| {
            serde_json::json!({
                "id": format!("table-{i}"),
                "request": {"model": "openai/gpt-4o-2024-08-06", "messages": [{"role": "user", "content": format!("What is {i} + 2?")}]},
                "response": {"model": "openai/gpt-4o-2024-08-06", "choices": [{"message": {"role": "assistant", "content": format!("{}", i + 2)}}],
                             "usage": {"prompt_tokens": 10_000, "completion_tokens": 1_000,
                                       "prompt_tokens_details": {"cached_tokens": 4_000}}}
            })
        }),
    )
    .await;
    let experiment = bench
        .create(evaltap_worker::ExperimentRequest {
            filter: evaltap_store::Filter {
                model: Some("openai/gpt-4o-2024-08-06".into()),
                ..Default::default()
            },
            ..crate::common::experiment_request("table", "small", "correctness", 8)
        })
        .await;
    let report = crate::common::run(&bench.app, &experiment).await;
    assert!((report.baseline.cost_per_request_usd - 0.030).abs() < 1e-12, "{:?}", report.baseline);
    assert_eq!(report.baseline.cost_sources, evaltap_report::CostSources { table: 8, ..Default::default() });
    let text = evaltap_report::render_text(&report);
    assert!(
        text.contains("(priced: 8 from the default price table (list prices as of 2025-10-01))"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_prompt_logged_beside_the_messages_reaches_the_judge() {
    let bench = crate::common::Bench::start("hybrid", evaltap_sim::JudgeBehavior::default(), None, 1).await;
    crate::common::write_config(&bench.dir, &bench.app.config);
    // LiteLLM's log of an Anthropic-format /v1/messages call: the system prompt in `instructions`.
    mirror(
        &bench,
        [serde_json::json!({
            "id": "hybrid-1",
            "request": {"model": "claude", "instructions": "You answer in French.", "max_output_tokens": 64,
                        "include": ["reasoning.encrypted_content"], "messages": [{"role": "user", "content": "Hello?"}]},
            "response": {"model": "claude", "choices": [{"message": {"role": "assistant", "content": "Bonjour."}}]}
        })],
    )
    .await;
    let found = evaltap_in(&bench.dir.0, &["exchanges", "--model", "claude", "--json"]);
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).expect("json");
    let id = found["exchanges"][0]["id"].as_str().expect("id").to_string();
    let prompt = stdout(&evaltap_in(&bench.dir.0, &["rubric", "render", "correctness", "--exchange", &id]));
    assert!(prompt.contains("### Conversation\nsystem: You answer in French.\nuser: Hello?"), "{prompt}");
}
