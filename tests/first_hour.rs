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

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
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
    crate::common::golden_run(app, "arithmetic", &options).await.expect("golden run");
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
