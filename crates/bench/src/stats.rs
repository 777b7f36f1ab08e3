//! `evaltap bench stats`: `stats compare` end to end (CSV in, every statistic out) on N seeded
//! pairs, with and without clusters, beside scipy's `ttest_rel` on the same file when Python has
//! numpy and scipy. It prints figures; it asserts nothing.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::{RngExt as _, SeedableRng as _};

use evaltap_app::stats_csv::{CompareSettings, compare_csv};

/// What was measured.
#[derive(Debug, Clone)]
pub struct StatsFigures {
    /// Pairs compared.
    pub pairs: usize,
    /// `stats compare` without clusters.
    pub plain: Duration,
    /// `stats compare --cluster` (clusters of 20 pairs).
    pub clustered: Duration,
    /// numpy load + `scipy.stats.ttest_rel`, if Python has them.
    pub scipy: Option<Duration>,
}

/// Writes `pairs` seeded judge-like pairs to a CSV and times the comparisons.
pub fn stats(pairs: usize) -> anyhow::Result<StatsFigures> {
    let dir = std::env::temp_dir().join(format!("evaltap-bench-stats-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).context("creating a temporary folder")?;
    let path = dir.join("pairs.csv");
    let result = (|| {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(7);
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(file, "baseline,candidate,conversation")?;
        for i in 0..pairs {
            let baseline = f64::from(rng.random_range(1..=10u8)) / 10.0;
            let step = f64::from(rng.random_range(0..4u8).min(2)) - 1.0;
            let candidate = (baseline + step / 10.0).clamp(0.1, 1.0);
            writeln!(file, "{baseline:.1},{candidate:.1},{}", i / 20)?;
        }
        file.flush()?;
        drop(file);
        let settings = CompareSettings {
            baseline: "baseline",
            candidate: "candidate",
            cluster: None,
            margin: evaltap_worker::DEFAULT_MARGIN,
            alpha: 0.05,
            planned_n: None,
            sequential: false,
        };
        let started = Instant::now();
        compare_csv(&path, &settings)?;
        let plain = started.elapsed();
        let started = Instant::now();
        compare_csv(&path, &CompareSettings { cluster: Some("conversation"), ..settings })?;
        let clustered = started.elapsed();
        Ok(StatsFigures { pairs, plain, clustered, scipy: scipy(&path) })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// numpy's load and scipy's paired t-test on the same file, timed by Python itself.
fn scipy(path: &std::path::Path) -> Option<Duration> {
    let script = "import sys,time\nt=time.perf_counter()\nimport numpy as np, scipy.stats as st\n\
                  d=np.loadtxt(sys.argv[1],delimiter=',',skiprows=1,usecols=(0,1))\n\
                  st.ttest_rel(d[:,1],d[:,0])\nprint(time.perf_counter()-t)";
    let output = std::process::Command::new("python3").args(["-c", script]).arg(path).output().ok()?;
    let seconds: f64 = String::from_utf8_lossy(&output.stdout).trim().parse().ok()?;
    output.status.success().then(|| Duration::from_secs_f64(seconds))
}

/// The figures as text.
pub fn render(figures: &StatsFigures) -> String {
    let scipy = figures.scipy.map_or_else(
        || "not measured (python3 has no numpy/scipy: pip install numpy scipy)".to_string(),
        |d| format!("{:.3} s (load + paired t-test only)", d.as_secs_f64()),
    );
    format!(
        "stats compare on {} pairs (CSV in, every statistic out)\n\
         evaltap, plain      {:.3} s\n\
         evaltap, clustered  {:.3} s  (clusters of 20)\n\
         numpy + scipy       {scipy}\n",
        figures.pairs,
        figures.plain.as_secs_f64(),
        figures.clustered.as_secs_f64(),
    )
}
