//! The benchmark commands run end to end on small sizes (correctness only: CI asserts no speed).

use std::process::Command;

fn evaltap(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_evaltap")).args(args).output().expect("run evaltap");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn bench_ingest_measures_both_engines() {
    let Some(postgres) = evaltap_testenv::postgres_or_skip() else { return };
    let admin = postgres.admin_url.clone();
    let out = evaltap(&[
        "bench",
        "ingest",
        "--exchanges",
        "300",
        "--concurrency",
        "8",
        "--batch",
        "30",
        "--postgres-url",
        &admin,
    ]);
    assert!(out.lines().any(|l| l.starts_with("sqlite ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("postgres ")), "{out}");
    // The LiteLLM batches and the open loop ran too (the command fails unless every exchange
    // it sent was stored).
    assert!(out.contains("litellm ex/s") && out.contains("open-loop ex/s"), "{out}");
}

#[test]
fn bench_stats_runs_plain_and_clustered() {
    let out = evaltap(&["bench", "stats", "--pairs", "5000"]);
    assert!(out.contains("evaltap, plain") && out.contains("evaltap, clustered"), "{out}");
}

#[test]
fn bench_cost_prints_dollars_per_verdict_for_each_mode() {
    let out = evaltap(&["bench", "cost", "--exchanges", "600"]);
    const MODES: [&str; 7] =
        ["fixed n", "early stop", "+ cache", "cached re-run", "+ batch", "verdicts only", "verdicts + batch"];
    // Each row: its mode, then the figures.
    let rows: Vec<Vec<&str>> = MODES
        .iter()
        .filter_map(|mode| {
            let row = out.lines().find(|l| l.starts_with(&format!("{mode} ")))?;
            Some(row[mode.len()..].split_whitespace().collect())
        })
        .collect();
    assert_eq!(rows.len(), MODES.len(), "{out}");
    let spent = |row: &[&str]| row[0].parse::<f64>().expect("spent");
    let replays = |row: &[&str]| row[3].parse::<usize>().expect("replays");
    // Fixed n replays every sampled exchange on both candidates; early stopping never more.
    assert_eq!(replays(&rows[0]), 1200, "{out}");
    assert!(replays(&rows[1]) <= 1200 && spent(&rows[1]) <= spent(&rows[0]) * 1.01, "{out}");
    // With the cache, answers identical to one already judged are read back, not paid again.
    assert!(spent(&rows[2]) < spent(&rows[1]), "{out}");
    // Asked again, the experiment pays only for what the first run did not make (it stopped
    // early; the re-run, under another name, claims items in another order): the rest is read
    // back from the cache. How far each run goes before it stops varies with timing, so their
    // spends are not compared with each other.
    let reused = out.lines().find(|l| l.starts_with("cached re-run: ")).expect("the re-run's reuse line");
    let read_back = reused
        .trim_start_matches("cached re-run: ")
        .split_whitespace()
        .next()
        .and_then(|n| n.replace(',', "").parse::<usize>().ok())
        .expect("replays read back");
    assert!(read_back > 0 && spent(&rows[3]) < spent(&rows[0]), "{out}");
    // Through the batch interface every call costs half: well under early stopping alone.
    assert!(spent(&rows[4]) < spent(&rows[1]) && spent(&rows[4]) <= spent(&rows[0]) * 0.5, "{out}");
    // Stopping on the whole-sample verdicts alone never pays more than fixed n either, and in
    // batch mode at most half.
    assert!(replays(&rows[5]) <= 1200 && spent(&rows[5]) <= spent(&rows[0]) * 1.01, "{out}");
    assert!(spent(&rows[6]) <= spent(&rows[0]) * 0.5, "{out}");
    // What the per-route recommendations rest on is counted beside the verdicts: of two routes
    // × two candidates × two rubrics, as many decided as the routes' verdicts say; with fixed n
    // every route has its verdicts.
    for row in &rows {
        let (decided, of) = (row[9].parse::<usize>().expect("route verdicts"), row[11]);
        assert!(of == "8" && decided <= 8, "{out}");
    }
    assert_eq!(rows[0][9], "8", "{out}");
}

#[test]
fn bench_proxy_mirrors_what_it_proxied() {
    let out = evaltap(&[
        "bench",
        "proxy",
        "--requests",
        "200",
        "--concurrency",
        "8",
        "--sequential",
        "20",
        "--no-litellm",
    ]);
    // 200 distinct proxied calls stored (the 20 sequential ones repeat some of them, and a
    // repeat is the same exchange); none shed at this size.
    assert!(out.contains("mirrored 200 exchanges, shed 0"), "{out}");
}

#[test]
fn bench_dashboard_times_every_page() {
    let out = evaltap(&[
        "bench",
        "dashboard",
        "--exchanges",
        "300",
        "--pairs",
        "40",
        "--repeats",
        "1",
        "--dataset-items",
        "30",
        "--drift-runs",
        "2",
    ]);
    for page in [
        "/experiments/demo",
        "/experiments/demo/examples?direction=regressions",
        "/spend",
        "/sources",
        "/datasets/bench",
        "/drift/bench-drift",
    ] {
        assert!(out.lines().any(|l| l.starts_with(&format!("{page} "))), "{page} missing: {out}");
    }
}
