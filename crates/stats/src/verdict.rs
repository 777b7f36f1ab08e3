use serde::{Deserialize, Serialize};

/// What a comparison says about the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The candidate is significantly better than the baseline.
    Better,
    /// The candidate is significantly worse than the baseline.
    Worse,
    /// The candidate is shown to be no worse than the baseline by more than the margin.
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

/// The statistics a verdict is decided from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// Mean difference candidate − baseline.
    pub delta: f64,
    /// p-value of "no difference", adjusted across the family (Holm).
    pub p_adjusted: f64,
    /// Lower confidence bound of the difference used for non-inferiority.
    pub ni_lower_bound: f64,
    /// Whether the method's minimum data requirement is met.
    pub enough_data: bool,
}

/// The one place that turns statistics into a verdict, in this order:
///
/// 1. not enough data → `inconclusive`;
/// 2. adjusted p < α and Δ > 0 → `better`;
/// 3. lower bound > −margin → `non-inferior` (an intersection–union test: no adjustment), even
///    when the drop is significant: a cost swap asks "within the margin?", and that is shown
///    (the comparison flags `significantly_lower` beside it);
/// 4. adjusted p < α and Δ < 0 → `worse`: lower, and not shown to be within the margin;
/// 5. otherwise `inconclusive`.
pub fn verdict(evidence: &Evidence, alpha: f64, margin: f64) -> Verdict {
    if !evidence.enough_data || evidence.p_adjusted.is_nan() || evidence.ni_lower_bound.is_nan() {
        return Verdict::Inconclusive;
    }
    if evidence.p_adjusted < alpha && evidence.delta > 0.0 {
        Verdict::Better
    } else if evidence.ni_lower_bound > -margin {
        Verdict::NonInferior
    } else if evidence.p_adjusted < alpha && evidence.delta < 0.0 {
        Verdict::Worse
    } else {
        Verdict::Inconclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(delta: f64, p: f64, lower: f64) -> Evidence {
        Evidence { delta, p_adjusted: p, ni_lower_bound: lower, enough_data: true }
    }

    #[test]
    fn each_region_maps_to_its_verdict() {
        assert_eq!(verdict(&ev(0.05, 0.01, 0.01), 0.05, 0.02), Verdict::Better);
        assert_eq!(verdict(&ev(-0.05, 0.01, -0.09), 0.05, 0.02), Verdict::Worse);
        // Significantly lower but shown within the margin: non-inferior (cost-swap reading).
        assert_eq!(verdict(&ev(-0.001, 0.01, -0.002), 0.05, 0.02), Verdict::NonInferior);
        assert_eq!(verdict(&ev(-0.01, 0.01, -0.0201), 0.05, 0.02), Verdict::Worse);
        assert_eq!(verdict(&ev(0.001, 0.6, -0.01), 0.05, 0.02), Verdict::NonInferior);
        assert_eq!(verdict(&ev(0.001, 0.6, -0.05), 0.05, 0.02), Verdict::Inconclusive);
        let thin = Evidence { enough_data: false, ..ev(0.5, 0.0, 0.4) };
        assert_eq!(verdict(&thin, 0.05, 0.02), Verdict::Inconclusive);
        assert_eq!(Verdict::NonInferior.to_string(), "non-inferior");
    }
}
