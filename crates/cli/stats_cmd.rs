//! `evaltap stats compare`: evaltap's paired analysis on any CSV of paired scores, so users can
//! check it against their own tools.

use std::path::Path;

use anyhow::{Context as _, bail};
use evaltap_stats::{Basis, BcaInterval, CompareOptions, Comparison, bca_interval, compare_paired};
use serde::Serialize;

/// What `stats compare` prints with `--json`.
#[derive(Debug, Serialize)]
pub struct CsvComparison {
    /// Baseline column.
    pub baseline: String,
    /// Candidate column.
    pub candidate: String,
    /// Cluster column, if any.
    pub cluster: Option<String>,
    /// Non-inferiority margin.
    pub margin: f64,
    /// The statistics and verdict.
    #[serde(flatten)]
    pub stats: Comparison,
    /// BCa bootstrap interval of the mean difference (unclustered data only).
    pub bca: Option<BcaInterval>,
}

fn column(headers: &csv::StringRecord, name: &str) -> anyhow::Result<usize> {
    headers.iter().position(|h| h.trim() == name).with_context(|| {
        format!("no column `{name}` in the CSV (columns: {})", headers.iter().collect::<Vec<_>>().join(", "))
    })
}

fn number(record: &csv::StringRecord, index: usize, name: &str, row: usize) -> anyhow::Result<f64> {
    let cell = record.get(index).unwrap_or("").trim();
    cell.parse::<f64>().with_context(|| format!("row {row}, column `{name}`: `{cell}` is not a number"))
}

/// Reads the CSV and runs the comparison.
pub fn compare_csv(
    path: &Path,
    baseline: &str,
    candidate: &str,
    cluster: Option<&str>,
    margin: f64,
    alpha: f64,
) -> anyhow::Result<CsvComparison> {
    if !(0.0..1.0).contains(&alpha) || alpha == 0.0 {
        bail!("--alpha must be within (0, 1), got {alpha}");
    }
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let headers =
        reader.headers().with_context(|| format!("reading the header of {}", path.display()))?.clone();
    let (bi, ci) = (column(&headers, baseline)?, column(&headers, candidate)?);
    let cluster_index = cluster.map(|name| column(&headers, name)).transpose()?;
    let (mut b, mut c, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    for (i, record) in reader.records().enumerate() {
        // Row numbers as a spreadsheet shows them: the header is row 1.
        let row = i + 2;
        let record = record.with_context(|| format!("reading row {row}"))?;
        b.push(number(&record, bi, baseline, row)?);
        c.push(number(&record, ci, candidate, row)?);
        if let Some(k) = cluster_index {
            keys.push(record.get(k).unwrap_or("").trim().to_string());
        }
    }
    let options = CompareOptions { alpha, margin, basis: Basis::FixedN, ..CompareOptions::default() };
    let stats = compare_paired(&b, &c, cluster_index.map(|_| &keys[..]), &options);
    let bca = if cluster_index.is_none() && stats.note.is_none() {
        let diffs: Vec<f64> = c.iter().zip(&b).map(|(c, b)| c - b).collect();
        bca_interval(&diffs, options.bootstrap_resamples, alpha, options.seed)
    } else {
        None
    };
    Ok(CsvComparison {
        baseline: baseline.into(),
        candidate: candidate.into(),
        cluster: cluster.map(str::to_owned),
        margin,
        stats,
        bca,
    })
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
            "always-valid (mSPRT): p = {:.6}, confidence sequence [{:+.6}, {:+.6}]",
            s.p_value_sequential, s.cs_low, s.cs_high
        ),
    ];
    if let Some((lo, hi)) = s.bootstrap_ci {
        lines.push(format!("bootstrap percentile 95% CI [{lo:+.6}, {hi:+.6}]"));
    }
    if let Some(bca) = &result.bca {
        lines.push(format!(
            "bootstrap BCa 95% CI [{:+.6}, {:+.6}] (z0 {:.4}, a {:.4})",
            bca.low, bca.high, bca.z0, bca.a
        ));
    }
    let mut verdict = format!("verdict: {}", s.verdict);
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
        let result = compare_csv(&path, "base", "cand", None, 0.5, 0.05).expect("compares");
        assert!((result.stats.p_value - 0.0960136657).abs() < 1e-8);
        assert!((result.stats.ni_lower_bound - 0.0055738039).abs() < 1e-8);
        assert!(render(&result).contains("verdict: non-inferior"));
        let bad = write("bad", "base,cand\n1,2\n3,x\n");
        let err = compare_csv(&bad, "base", "cand", None, 0.02, 0.05).expect_err("bad cell");
        assert!(format!("{err:#}").contains("row 3, column `cand`"), "{err:#}");
        let err = compare_csv(&bad, "base", "nope", None, 0.02, 0.05).expect_err("bad column");
        assert!(format!("{err:#}").contains("no column `nope`"), "{err:#}");
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(bad);
    }
}
