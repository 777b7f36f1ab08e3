use serde::{Deserialize, Serialize};

/// What a comparison says about the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The candidate is significantly better than the baseline.
    Better,
    /// The candidate is significantly worse than the baseline.
    Worse,
    /// The candidate is no worse than the baseline by more than the margin.
    NonInferior,
    /// The data do not settle it yet.
    Inconclusive,
}

impl Verdict {
    /// The label used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NonInferior => "non-inferior",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Turns a two-sided interval of the mean difference (candidate − baseline) into a verdict.
///
/// - lower bound > 0: `better`;
/// - upper bound < 0: `worse` (a significant drop, however small: a gate should see it);
/// - lower bound > −`margin`: `non-inferior`;
/// - otherwise `inconclusive`.
pub fn verdict(ci_low: f64, ci_high: f64, margin: f64) -> Verdict {
    if ci_low > 0.0 {
        Verdict::Better
    } else if ci_high < 0.0 {
        Verdict::Worse
    } else if ci_low > -margin {
        Verdict::NonInferior
    } else {
        Verdict::Inconclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_region_maps_to_its_verdict() {
        assert_eq!(verdict(0.01, 0.2, 0.02), Verdict::Better);
        assert_eq!(verdict(-0.2, -0.01, 0.02), Verdict::Worse);
        assert_eq!(verdict(-0.01, 0.03, 0.02), Verdict::NonInferior);
        assert_eq!(verdict(-0.05, 0.03, 0.02), Verdict::Inconclusive);
        assert_eq!(Verdict::NonInferior.to_string(), "non-inferior");
    }
}
