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
