//! `stats compare`: evaltap's paired analysis on any CSV of paired scores, so users can check
//! it against their own tools.

use std::path::Path;

use evaltap_stats::{Basis, BcaInterval, CompareOptions, Comparison, bca_interval, compare_paired};
use serde::Serialize;

use crate::AppError;

type Result<T> = std::result::Result<T, AppError>;

fn invalid(message: String) -> AppError {
    AppError::Invalid(message)
}

/// What `stats compare` is asked.
#[derive(Debug, Clone)]
pub struct CompareSettings<'a> {
    /// Baseline column.
    pub baseline: &'a str,
    /// Candidate column.
    pub candidate: &'a str,
    /// Cluster column.
    pub cluster: Option<&'a str>,
    /// Non-inferiority margin (≥ 0, on the scores' scale).
    pub margin: f64,
    /// Significance level.
    pub alpha: f64,
    /// The planned number of pairs, fixed when monitoring starts: it tunes the always-valid
    /// statistics. Without it they are tuned to the rows present, which is not always-valid
    /// across re-runs on a growing file.
    pub planned_n: Option<usize>,
    /// Decide as a running experiment would (sequential basis) instead of fixed-n.
    pub sequential: bool,
}

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

fn column(headers: &csv::StringRecord, name: &str) -> Result<usize> {
    headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
        invalid(format!(
            "no column `{name}` in the CSV (columns: {})",
            headers.iter().collect::<Vec<_>>().join(", ")
        ))
    })
}

fn number(record: &csv::StringRecord, index: usize, name: &str, row: usize) -> Result<f64> {
    let cell = record.get(index).unwrap_or("").trim();
    cell.parse::<f64>().map_err(|_| invalid(format!("row {row}, column `{name}`: `{cell}` is not a number")))
}

/// Reads the CSV and runs the comparison.
pub fn compare_csv(path: &Path, settings: &CompareSettings<'_>) -> Result<CsvComparison> {
    let CompareSettings { baseline, candidate, cluster, margin, alpha, planned_n, sequential } = *settings;
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(invalid(format!("--alpha must be within (0, 1), got {alpha}")));
    }
    if !(margin.is_finite() && margin >= 0.0) {
        return Err(invalid(format!("--margin must be a number ≥ 0 on the scores' scale, got {margin}")));
    }
    if planned_n == Some(0) {
        return Err(invalid("--planned-n must be at least 1".into()));
    }
    if sequential && planned_n.is_none() {
        return Err(invalid(
            "--sequential needs --planned-n: the always-valid statistics are tuned to the planned \
             number of pairs, fixed when monitoring starts"
                .into(),
        ));
    }
    let mut reader =
        csv::Reader::from_path(path).map_err(|err| invalid(format!("opening {}: {err}", path.display())))?;
    let headers = reader
        .headers()
        .map_err(|err| invalid(format!("reading the header of {}: {err}", path.display())))?
        .clone();
    let (bi, ci) = (column(&headers, baseline)?, column(&headers, candidate)?);
    let cluster_index = cluster.map(|name| column(&headers, name)).transpose()?;
    let (mut b, mut c, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    for (i, record) in reader.records().enumerate() {
        // Row numbers as a spreadsheet shows them: the header is row 1.
        let row = i + 2;
        let record = record.map_err(|err| invalid(format!("reading row {row}: {err}")))?;
        b.push(number(&record, bi, baseline, row)?);
        c.push(number(&record, ci, candidate, row)?);
        if let Some(k) = cluster_index {
            let key = record.get(k).unwrap_or("").trim();
            if key.is_empty() {
                return Err(invalid(format!(
                    "row {row}, column `{}`: empty cluster key",
                    cluster.unwrap_or_default()
                )));
            }
            keys.push(key.to_string());
        }
    }
    let basis = if sequential { Basis::Sequential } else { Basis::FixedN };
    let options = CompareOptions { alpha, margin, basis, planned_n, ..CompareOptions::default() };
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
