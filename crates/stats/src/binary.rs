//! Pass/fail and preference counts: McNemar, the sign test, Wilson intervals.

use serde::Serialize;
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, Discrete, DiscreteCDF};

use crate::descriptive::{normal_sf, z_quantile};

fn binomial_half(n: u64) -> Binomial {
    Binomial::new(0.5, n).expect("p = 0.5 is valid")
}

/// Exact two-sided binomial test of min(a, b) out of a + b at ½: min(1, 2·P(X ≤ min)).
fn exact_two_sided(a: u64, b: u64) -> f64 {
    if a + b == 0 {
        return 1.0;
    }
    (2.0 * binomial_half(a + b).cdf(a.min(b))).min(1.0)
}

/// McNemar's test on discordant pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McNemar {
    /// Exact two-sided p-value.
    pub p_exact: f64,
    /// Mid-p variant (exact p minus the point probability of the observed minimum).
    pub p_mid: f64,
    /// χ² with continuity correction, (|b−c|−1)²/(b+c).
    pub chi2_cc: f64,
    /// p-value of `chi2_cc` on 1 df.
    pub p_chi2: f64,
}

/// McNemar's test: `b` pairs pass only on the baseline, `c` only on the candidate.
pub fn mcnemar(b: u64, c: u64) -> McNemar {
    if b + c == 0 {
        return McNemar { p_exact: 1.0, p_mid: 1.0, chi2_cc: 0.0, p_chi2: 1.0 };
    }
    let p_exact = exact_two_sided(b, c);
    let p_mid = (p_exact - binomial_half(b + c).pmf(b.min(c))).clamp(0.0, 1.0);
    let chi2_cc = ((b as f64 - c as f64).abs() - 1.0).max(0.0).powi(2) / (b + c) as f64;
    let p_chi2 = ChiSquared::new(1.0).expect("1 df").sf(chi2_cc);
    McNemar { p_exact, p_mid, chi2_cc, p_chi2 }
}

/// Wald non-inferiority test on paired pass/fail (n pairs, `b` baseline-only, `c`
/// candidate-only passes) at margin δ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedBinaryNi {
    /// Δ̂ = (c − b)/n.
    pub delta: f64,
    /// SE = sqrt((b+c)/n − Δ̂²)/√n.
    pub se: f64,
    /// z = (Δ̂ + δ)/SE.
    pub z: f64,
    /// One-sided p-value of H0: Δ ≤ −δ.
    pub p_value: f64,
}

/// See [`PairedBinaryNi`]. With SE = 0 the z is ±∞ (or 0 when Δ̂ = −δ).
pub fn paired_binary_noninferiority(n: u64, b: u64, c: u64, margin: f64) -> PairedBinaryNi {
    let nf = n.max(1) as f64;
    let delta = (c as f64 - b as f64) / nf;
    let se = (((b + c) as f64 / nf) - delta * delta).max(0.0).sqrt() / nf.sqrt();
    let shifted = delta + margin;
    let z = if se > 0.0 {
        shifted / se
    } else if shifted == 0.0 {
        0.0
    } else {
        shifted.signum() * f64::INFINITY
    };
    PairedBinaryNi { delta, se, z, p_value: normal_sf(z) }
}

/// Pairwise preferences after position swapping: wins, losses, ties of the candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignTest {
    /// Candidate wins.
    pub wins: u64,
    /// Candidate losses.
    pub losses: u64,
    /// Ties (reported, excluded from the test).
    pub ties: u64,
    /// Two-sided exact p-value.
    pub p_two_sided: f64,
    /// One-sided p-value in the direction observed.
    pub p_one_sided: f64,
    /// Wilson interval of wins/(wins+losses).
    pub win_rate_ci: (f64, f64),
    /// Tie-as-half win rate (W + T/2)/n (AlpacaEval convention).
    pub win_rate_tie_half: f64,
}

/// The sign test with a Wilson interval at confidence 1 − `alpha`.
pub fn sign_test(wins: u64, losses: u64, ties: u64, alpha: f64) -> SignTest {
    let n = wins + losses;
    let p_one_sided = if n == 0 { 1.0 } else { binomial_half(n).cdf(wins.min(losses)).min(1.0) };
    let total = (n + ties).max(1) as f64;
    SignTest {
        wins,
        losses,
        ties,
        p_two_sided: exact_two_sided(wins, losses),
        p_one_sided,
        win_rate_ci: wilson(wins, n, alpha),
        win_rate_tie_half: (wins as f64 + ties as f64 / 2.0) / total,
    }
}

/// Wilson score interval for `successes` of `n` at confidence 1 − `alpha`; (0, 1) when n = 0.
pub fn wilson(successes: u64, n: u64, alpha: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = z_quantile(1.0 - alpha / 2.0);
    let nf = n as f64;
    let p = successes as f64 / nf;
    let center = p + z * z / (2.0 * nf);
    let spread = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt();
    let denom = 1.0 + z * z / nf;
    // At p̂ = 0 or 1 the bound is exactly 0 or 1; the formula only reaches it up to rounding.
    let low = if successes == 0 { 0.0 } else { ((center - spread) / denom).max(0.0) };
    let high = if successes == n { 1.0 } else { ((center + spread) / denom).min(1.0) };
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_close;

    #[test]
    fn spec_vectors_9_to_12_mcnemar() {
        let m = mcnemar(12, 4);
        assert_close(m.p_exact, 0.0768127441, 1e-9);
        assert_close(m.p_mid, 0.0490417480, 1e-9);
        assert_close(m.chi2_cc, 3.0625, 1e-12);
        assert_close(m.p_chi2, 0.0801183137, 1e-9);
        let m = mcnemar(9, 1);
        assert_close(m.p_exact, 0.0214843750, 1e-9);
        assert_close(m.p_mid, 0.0117187500, 1e-9);
        let m = mcnemar(40, 25);
        assert_close(m.p_exact, 0.0816815339, 1e-9);
        assert_close(m.chi2_cc, 3.0153846154, 1e-9);
        assert_close(m.p_chi2, 0.0824778875, 1e-9);
        assert_eq!(mcnemar(5, 5).p_exact, 1.0);
        assert_eq!(mcnemar(0, 0).p_exact, 1.0);
    }

    #[test]
    fn spec_vectors_13_to_17_sign_and_wilson() {
        let s = sign_test(30, 18, 12, 0.05);
        assert_close(s.p_two_sided, 0.1114028911, 1e-9);
        assert_close(s.p_one_sided, 0.0557014455, 1e-9);
        assert_close(sign_test(10, 2, 3, 0.05).p_two_sided, 0.0385742188, 1e-9);
        assert_eq!(sign_test(7, 7, 0, 0.05).p_two_sided, 1.0);
        assert_eq!(sign_test(0, 0, 4, 0.05).p_two_sided, 1.0);
        let (lo, hi) = wilson(30, 48, 0.05);
        assert_close(lo, 0.4836276352, 1e-9);
        assert_close(hi, 0.7478473324, 1e-9);
        let (lo, hi) = wilson(0, 20, 0.05);
        assert_eq!(lo, 0.0);
        assert_close(hi, 0.1611251581, 1e-9);
        let (lo, hi) = wilson(20, 20, 0.05);
        assert_close(lo, 0.8388748419, 1e-9);
        assert_eq!(hi, 1.0);
        let (lo, hi) = wilson(1, 1, 0.05);
        assert_close(lo, 0.2065493144, 1e-9);
        assert_eq!(hi, 1.0);
        assert_close(s.win_rate_tie_half, 0.6, 1e-12);
    }

    #[test]
    fn spec_vector_29_paired_binary_ni() {
        let ni = paired_binary_noninferiority(200, 18, 12, 0.05);
        assert_close(ni.delta, -0.03, 1e-12);
        assert_close(ni.se, 0.0273038459, 1e-9);
        assert_close(ni.z, 0.7324975421, 1e-9);
        assert_close(ni.p_value, 0.2319324712, 1e-9);
    }
}
