//! `evaltap gate` through the binary, as a CI job runs it: exit 0 only when every rubric is
//! non-inferior or better, 1 on a regression, 2 while running, inconclusive or without data;
//! JUnit XML a parser accepts; a Markdown comment with its sticky marker.

use std::path::Path;
use std::process::Output;

use evaltap_sim::JudgeBehavior;
use evaltap_worker::ExperimentRequest;

use crate::common::{Bench, experiment_request, run};

const QUIET: JudgeBehavior = JudgeBehavior { noise: 0.0, position_bias: 0.0, unreadable_long: 0.0 };

fn gate(database: &Path, args: &[&str], summary: Option<&Path>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_evaltap"));
    command
        .arg("gate")
        .args(args)
        .env("EVALTAP_DATABASE_URL", format!("sqlite://{}", database.display()))
        .env_remove("GITHUB_STEP_SUMMARY");
    if let Some(path) = summary {
        command.env("GITHUB_STEP_SUMMARY", path);
    }
    command.output().expect("run evaltap gate")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_exits_0_1_or_2_and_writes_junit_and_markdown() {
    let bench = Bench::start("gate", QUIET, None, 300).await;
    let database = bench.dir.database();

    // Created but not run: still running → 2, never a pass.
    let pending = bench.create(experiment_request("pending", "small", "correctness", 50)).await;
    let out = gate(&database, &["pending"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("still running"), "{}", stdout(&out));
    drop(pending);

    // Done, but with nothing scored (a zero cap skips every replay) → 2.
    let empty = bench
        .create(ExperimentRequest {
            spend_cap_usd: Some(0.0),
            ..experiment_request("empty", "small", "correctness", 20)
        })
        .await;
    let report = run(&bench.app, &empty).await;
    assert_eq!(report.status, "done");
    let out = gate(&database, &["empty"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("no scored pairs"), "{}", stdout(&out));

    // A clear regression → 1, with JUnit and Markdown.
    let worse = bench.create(experiment_request("worse", "small", "correctness", 300)).await;
    run(&bench.app, &worse).await;
    let junit = bench.dir.0.join("junit.xml");
    let markdown = bench.dir.0.join("comment.md");
    let summary = bench.dir.0.join("summary.md");
    std::fs::write(&summary, "earlier step\n").expect("summary");
    let out = gate(
        &database,
        &["worse", "--junit", junit.to_str().expect("path"), "--markdown", markdown.to_str().expect("path")],
        Some(&summary),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    let doc = roxmltree::Document::parse(&xml).expect("JUnit XML parses");
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).expect("a testsuite");
    assert_eq!((suite.attribute("tests"), suite.attribute("failures")), (Some("1"), Some("1")));
    let case = suite.children().find(|n| n.has_tag_name("testcase")).expect("a testcase");
    assert_eq!(
        (case.attribute("classname"), case.attribute("name")),
        (Some("worse.small"), Some("correctness"))
    );
    assert!(case.children().any(|n| n.has_tag_name("failure")));
    let comment = std::fs::read_to_string(&markdown).expect("markdown written");
    assert_eq!(comment.lines().next(), Some("<!-- evaltap-gate: worse -->"));
    assert!(comment.contains("| small | correctness |") && comment.contains("worse"), "{comment}");
    assert!(comment.contains("Items that regressed most"), "{comment}");
    // Cost beside quality.
    assert!(comment.contains("| $/request | cost Δ |") && comment.contains("%"), "{comment}");
    let appended = std::fs::read_to_string(&summary).expect("summary");
    assert!(appended.starts_with("earlier step\n<!-- evaltap-gate: worse -->"), "{appended}");

    // A candidate as good as production, with a margin it clears → 0.
    let good = bench
        .create(ExperimentRequest {
            margin: Some(0.1),
            ..experiment_request("good", "medium", "correctness", 300)
        })
        .await;
    run(&bench.app, &good).await;
    let out = gate(&database, &["good", "--junit", junit.to_str().expect("path")], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    let doc = roxmltree::Document::parse(&xml).expect("JUnit XML parses");
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).expect("a testsuite");
    assert_eq!(suite.attribute("failures"), Some("0"));

    // Too few pairs to say → 2, and JUnit reports the undecided rubric as skipped, not failed.
    let few = bench.create(experiment_request("few", "medium", "correctness", 5)).await;
    run(&bench.app, &few).await;
    let out = gate(&database, &["few", "--junit", junit.to_str().expect("path")], None);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    let doc = roxmltree::Document::parse(&xml).expect("JUnit XML parses");
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).expect("a testsuite");
    assert_eq!(suite.attribute("failures"), Some("0"), "{xml}");
    let case = suite.children().find(|n| n.has_tag_name("testcase")).expect("a testcase");
    assert!(case.children().any(|n| n.has_tag_name("skipped")), "{xml}");

    // With `public_url` configured, the comment links the experiment, each row and each item.
    let config = bench.dir.0.join("public.toml");
    std::fs::write(&config, "public_url = \"https://evaltap.example.com/\"\n").expect("config");
    let out = gate(
        &database,
        &[
            "worse",
            "--config",
            config.to_str().expect("path"),
            "--markdown",
            markdown.to_str().expect("path"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let comment = std::fs::read_to_string(&markdown).expect("markdown written");
    assert!(comment.contains("[`worse`](https://evaltap.example.com/experiments/worse)"), "{comment}");
    assert!(
        comment.contains("[worse](https://evaltap.example.com/experiments/worse/examples?candidate=small&rubric=correctness&direction=regressions)"),
        "{comment}"
    );
    assert!(comment.contains("](https://evaltap.example.com/experiments/worse/examples/"), "{comment}");

    // A typo is not a regression (1) nor undecided (2): usage errors exit 64…
    for args in [&["no-such-experiment"][..], &["good", "--candidate", "nope"], &["good", "--no-such-flag"]] {
        let out = gate(&database, args, None);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = gate(&database, &["good", "--candidate", "nope"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("its candidates: medium"), "{out:?}");
    // …and a gate that cannot do its work for another reason (here, write its JUnit file) 70.
    let out = gate(&database, &["good", "--junit", "/nonexistent-folder/junit.xml"], None);
    assert_eq!(out.status.code(), Some(70), "{}", String::from_utf8_lossy(&out.stderr));
}
