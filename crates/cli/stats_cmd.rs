//! `evaltap stats compare`: evaltap's paired analysis on any CSV of paired scores, so users can
//! check it against their own tools.

use clap::Subcommand;
use evaltap_app::stats_csv::CsvComparison;
use evaltap_stats::Basis;

#[derive(Debug, Subcommand)]
pub(crate) enum StatsCommand {
    /// Compare paired scores from a CSV: paired t (clustered if asked), non-inferiority,
    /// Wilcoxon, bootstrap, always-valid p-value, and the verdict evaltap would give.
    Compare {
        /// CSV file with a header row.
        #[arg(long)]
        csv: std::path::PathBuf,
        /// Column of baseline scores.
        #[arg(long)]
        baseline: String,
        /// Column of candidate scores.
        #[arg(long)]
        candidate: String,
        /// Column whose equal values mark pairs of one cluster (conversation, user…).
        #[arg(long)]
        cluster: Option<String>,
        /// Non-inferiority margin, on the scores' scale.
        #[arg(long, default_value_t = evaltap_worker::DEFAULT_MARGIN)]
        margin: f64,
        /// Significance level.
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        /// Planned number of pairs, fixed when monitoring starts; tunes the always-valid
        /// p-value and confidence sequence. Re-run on a growing file with the same value.
        #[arg(long)]
        planned_n: Option<usize>,
        /// Decide as a running experiment's report does: from the always-valid statistics
        /// (needs --planned-n) instead of the fixed-n test.
        #[arg(long)]
        sequential: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Human-readable summary.
pub fn render(result: &CsvComparison) -> String {
    let s = &result.stats;
    let mut lines = vec![
        format!("{} vs {} (candidate − baseline), n = {}", result.candidate, result.baseline, s.n),
        format!(
            "means: baseline {:.6}, candidate {:.6}, delta {:+.6} (sd {:.6})",
            s.baseline_mean, s.candidate_mean, s.delta, s.sd_delta
        ),
        format!(
            "paired t: 95% CI [{:+.6}, {:+.6}], p = {:.6}{}",
            s.ci_low,
            s.ci_high,
            s.p_value,
            s.clusters.map(|c| format!(" (clustered SE, {c} clusters)")).unwrap_or_default()
        ),
        format!(
            "non-inferiority at −{}: one-sided p = {:.6}, lower bound {:+.6}",
            result.margin, s.p_noninferiority, s.ni_lower_bound
        ),
        format!("Wilcoxon signed-rank (Pratt): p = {:.6}", s.p_value_wilcoxon),
        format!(
            "always-valid (mSPRT, from {} pairs on): p = {:.6}, confidence sequence [{:+.6}, {:+.6}]{}",
            evaltap_stats::SEQUENTIAL_MIN_N,
            s.p_value_sequential,
            s.cs_low,
            s.cs_high,
            match s.planned_n {
                Some(n) => format!(" (tuned to a planned {n} pairs)"),
                None => " (tuned to this file's rows; pass --planned-n to monitor a growing file)".into(),
            }
        ),
    ];
    if let Some(m) = &s.mcnemar {
        lines.push(format!(
            "pass/fail: McNemar exact p = {:.6} ({} baseline-only, {} candidate-only passes)",
            m.p_exact, m.baseline_only, m.candidate_only
        ));
    }
    if let Some(deff) = s.design_effect {
        lines.push(format!("design effect of clustering: {deff:.3}"));
    }
    if let Some((lo, hi)) = s.bootstrap_ci {
        let error = s.bootstrap_mc_error.map_or(String::new(), |e| format!(", Monte Carlo error ±{e:.6}"));
        lines.push(format!(
            "bootstrap percentile 95% CI [{lo:+.6}, {hi:+.6}] ({} resamples{error})",
            s.bootstrap_resamples
        ));
    }
    if let Some(bca) = &result.bca {
        lines.push(format!(
            "bootstrap BCa 95% CI [{:+.6}, {:+.6}] (z0 {:.4}, a {:.4})",
            bca.low, bca.high, bca.z0, bca.a
        ));
    }
    let basis = match s.basis {
        Basis::Sequential => "sequential",
        Basis::FixedN => "fixed-n",
    };
    let mut verdict = format!("verdict ({basis}): {}", s.verdict);
    if s.significantly_lower {
        verdict.push_str(" (significantly lower, but shown within the margin)");
    }
    if let Some(n) = s.samples_needed {
        verdict.push_str(&format!(" (about {n} pairs in all would settle it)"));
    }
    lines.push(verdict);
    if let Some(note) = &s.note {
        lines.push(format!("note: {note}"));
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use evaltap_app::stats_csv::{CompareSettings, compare_csv};

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("evaltap-stats-{name}-{}.csv", std::process::id()));
        std::fs::write(&path, text).expect("write csv");
        path
    }

    #[test]
    fn reproduces_the_spec_paired_t_and_names_bad_cells() {
        let b = [7, 6, 8, 5, 9, 7, 6, 8, 7, 6, 5, 8];
        let c = [8, 6, 7, 6, 9, 8, 7, 8, 8, 5, 6, 9];
        let text: String = std::iter::once("id,base,cand\n".to_string())
            .chain(b.iter().zip(&c).enumerate().map(|(i, (b, c))| format!("{i},{b},{c}\n")))
            .collect();
        let path = write("d", &text);
        let result = compare_csv(&path, &CompareSettings { margin: 0.5, ..settings() }).expect("compares");
        assert!((result.stats.p_value - 0.0960136657).abs() < 1e-8);
        assert!((result.stats.ni_lower_bound - 0.0055738039).abs() < 1e-8);
        assert!(render(&result).contains("verdict (fixed-n): non-inferior"), "{}", render(&result));
        let bad = write("bad", "base,cand\n1,2\n3,x\n");
        let err = compare_csv(&bad, &settings()).expect_err("bad cell");
        assert!(format!("{err:#}").contains("row 3, column `cand`"), "{err:#}");
        let err =
            compare_csv(&bad, &CompareSettings { candidate: "nope", ..settings() }).expect_err("bad column");
        assert!(format!("{err:#}").contains("no column `nope`"), "{err:#}");
        for margin in [f64::NAN, -0.01] {
            let err = compare_csv(&path, &CompareSettings { margin, ..settings() }).expect_err("bad margin");
            assert!(format!("{err:#}").contains("--margin"), "{err:#}");
        }
        let err = compare_csv(&path, &CompareSettings { sequential: true, ..settings() }).expect_err("no N*");
        assert!(format!("{err:#}").contains("--planned-n"), "{err:#}");
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(bad);
    }

    fn settings() -> CompareSettings<'static> {
        CompareSettings {
            baseline: "base",
            candidate: "cand",
            cluster: None,
            margin: 0.02,
            alpha: 0.05,
            planned_n: None,
            sequential: false,
        }
    }

    #[test]
    fn empty_cluster_keys_are_an_error_not_a_silent_fallback() {
        let path = write("emptykey", "base,cand,conv\n0.1,0.2,a\n0.3,0.4,\n");
        let err =
            compare_csv(&path, &CompareSettings { cluster: Some("conv"), ..settings() }).expect_err("empty");
        assert!(format!("{err:#}").contains("row 3, column `conv`: empty cluster key"), "{err:#}");
        let _ = std::fs::remove_file(path);
    }

    /// Re-running on a growing file with a fixed --planned-n is the always-valid procedure: each
    /// prefix's p is the one the monitored sequence reached there, so it never goes back up.
    #[test]
    fn a_growing_file_with_a_planned_n_is_monitored_not_retuned() {
        let rows: Vec<(f64, f64)> =
            (0..120).map(|i| (((i * 37) % 10) as f64 / 9.0, (((i * 53) + 3) % 10) as f64 / 9.0)).collect();
        let mut last_p = 1.0;
        for n in (10..=120).step_by(10) {
            let text: String = std::iter::once("base,cand\n".to_string())
                .chain(rows[..n].iter().map(|(b, c)| format!("{b},{c}\n")))
                .collect();
            let path = write(&format!("grow{n}"), &text);
            let s = CompareSettings { planned_n: Some(120), sequential: true, ..settings() };
            let result = compare_csv(&path, &s).expect("compares");
            let _ = std::fs::remove_file(&path);
            assert_eq!(result.stats.planned_n, Some(120));
            assert!(result.stats.p_value_sequential <= last_p, "p went back up at n = {n}");
            last_p = result.stats.p_value_sequential;
            let b: Vec<f64> = rows[..n].iter().map(|r| r.0).collect();
            let c: Vec<f64> = rows[..n].iter().map(|r| r.1).collect();
            let direct = evaltap_stats::normal_mixture_from(
                &c.iter().zip(&b).map(|(c, b)| c - b).collect::<Vec<_>>(),
                0.0,
                0.05,
                120.0,
                evaltap_stats::SEQUENTIAL_MIN_N,
            );
            if n >= evaltap_stats::SEQUENTIAL_MIN_N {
                let point = direct.last().expect("points");
                assert_eq!(result.stats.p_value_sequential, point.p_value);
            }
        }
    }
}
