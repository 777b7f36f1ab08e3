//! The Wilcoxon signed-rank test, a robustness check for ordinal judge scores.

use serde::Serialize;

use crate::descriptive::normal_sf;

/// How zero differences are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZeroMethod {
    /// Drop zeros before ranking.
    Wilcox,
    /// Rank zeros with the rest, then drop their ranks (recommended: judge deltas have many
    /// zeros).
    Pratt,
    /// Rank zeros with the rest and split their ranks between T⁺ and T⁻.
    Zsplit,
}

/// How the p-value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WilcoxonMethod {
    /// Exact when there are no ties or zeros and at most 50 differences, else normal.
    Auto,
    /// Exact null distribution (falls back to normal where it does not apply).
    Exact,
    /// Normal approximation with tie correction.
    Normal,
}

/// Result of [`wilcoxon`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wilcoxon {
    /// Differences used (after dropping zeros for `wilcox`).
    pub n: usize,
    /// Sum of ranks of positive differences.
    pub t_plus: f64,
    /// Sum of ranks of negative differences.
    pub t_minus: f64,
    /// min(T⁺, T⁻), as scipy reports.
    pub statistic: f64,
    /// z statistic of the normal approximation (0 when exact).
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether the exact distribution was used.
    pub exact: bool,
    /// Fewer than 6 non-zero differences: p can never reach 0.05.
    pub underpowered: bool,
}

/// Average ranks (1-based) of `values`, with the sizes of tie groups.
fn average_ranks(values: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut ties = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        ties.push(end - start);
        start = end;
    }
    (ranks, ties)
}

fn tie_term(groups: impl Iterator<Item = usize>) -> f64 {
    groups.map(|t| (t as f64).powi(3) - t as f64).sum::<f64>() / 48.0
}

/// Exact two-sided p-value: subset-sum counts over ranks 1..=n.
fn exact_p(n: usize, statistic: f64) -> f64 {
    let max = n * (n + 1) / 2;
    let mut counts = vec![0.0f64; max + 1];
    counts[0] = 1.0;
    for k in 1..=n {
        for s in (k..=max).rev() {
            counts[s] += counts[s - k];
        }
    }
    let total = 2f64.powi(n as i32);
    let upto = statistic.floor() as usize;
    let tail: f64 = counts[..=upto.min(max)].iter().sum();
    (2.0 * tail / total).min(1.0)
}

/// Wilcoxon signed-rank test of differences `d` against 0.
pub fn wilcoxon(d: &[f64], zeros: ZeroMethod, continuity: bool, method: WilcoxonMethod) -> Wilcoxon {
    let nonzero: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    let n_zero = d.len() - nonzero.len();
    let used: &[f64] = if zeros == ZeroMethod::Wilcox { &nonzero } else { d };
    let abs: Vec<f64> = used.iter().map(|x| x.abs()).collect();
    let (ranks, _) = average_ranks(&abs);
    let mut t_plus: f64 = used.iter().zip(&ranks).filter(|(x, _)| **x > 0.0).map(|(_, r)| r).sum();
    let mut t_minus: f64 = used.iter().zip(&ranks).filter(|(x, _)| **x < 0.0).map(|(_, r)| r).sum();
    let zero_ranks: f64 = used.iter().zip(&ranks).filter(|(x, _)| **x == 0.0).map(|(_, r)| r).sum();
    if zeros == ZeroMethod::Zsplit {
        t_plus += zero_ranks / 2.0;
        t_minus += zero_ranks / 2.0;
    }
    let statistic = t_plus.min(t_minus);
    let result = |z: f64, p_value: f64, exact: bool| Wilcoxon {
        n: used.len(),
        t_plus,
        t_minus,
        statistic,
        z,
        p_value,
        exact,
        underpowered: nonzero.len() < 6,
    };
    if nonzero.is_empty() {
        return result(0.0, 1.0, false);
    }
    let (_, nonzero_ties) = average_ranks(&nonzero.iter().map(|x| x.abs()).collect::<Vec<_>>());
    let has_ties = nonzero_ties.iter().any(|t| *t > 1);
    let exact_applies = n_zero == 0 && !has_ties && nonzero.len() <= 50;
    if exact_applies && method != WilcoxonMethod::Normal {
        return result(0.0, exact_p(nonzero.len(), statistic), true);
    }
    let nf = used.len() as f64;
    let n0 = n_zero as f64;
    let (mu, sigma2) = match zeros {
        ZeroMethod::Wilcox => (
            nf * (nf + 1.0) / 4.0,
            nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term(nonzero_ties.into_iter()),
        ),
        ZeroMethod::Pratt => (
            nf * (nf + 1.0) / 4.0 - n0 * (n0 + 1.0) / 4.0,
            nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0
                - n0 * (n0 + 1.0) * (2.0 * n0 + 1.0) / 24.0
                - tie_term(nonzero_ties.into_iter()),
        ),
        ZeroMethod::Zsplit => {
            let all_ties = nonzero_ties.into_iter().chain((n_zero > 0).then_some(n_zero));
            (nf * (nf + 1.0) / 4.0, nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term(all_ties))
        }
    };
    let shift = t_plus - mu;
    let cc = if continuity { 0.5 * shift.signum() } else { 0.0 };
    let z = (shift - cc) / sigma2.sqrt();
    result(z, (2.0 * normal_sf(z.abs())).min(1.0), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{D, assert_close};

    #[test]
    fn spec_vectors_4_to_6_zero_methods() {
        let w = wilcoxon(&D, ZeroMethod::Wilcox, false, WilcoxonMethod::Normal);
        assert_eq!((w.n, w.t_plus, w.t_minus), (9, 35.0, 10.0));
        assert_close(w.z.abs(), 1.6666666667, 1e-9);
        assert_close(w.p_value, 0.0955807045, 1e-9);
        let w = wilcoxon(&D, ZeroMethod::Wilcox, true, WilcoxonMethod::Normal);
        assert_close(w.z.abs(), 1.6, 1e-12);
        assert_close(w.p_value, 0.1095985834, 1e-9);
        let w = wilcoxon(&D, ZeroMethod::Pratt, false, WilcoxonMethod::Auto);
        assert_eq!((w.t_plus, w.t_minus), (56.0, 16.0));
        assert_close(w.z.abs(), 1.6666666667, 1e-9);
        assert_close(w.p_value, 0.0955807045, 1e-9);
        let w = wilcoxon(&D, ZeroMethod::Pratt, true, WilcoxonMethod::Auto);
        assert_close(w.z.abs(), 1.625, 1e-12);
        assert_close(w.p_value, 0.1041625588, 1e-9);
        let w = wilcoxon(&D, ZeroMethod::Zsplit, false, WilcoxonMethod::Auto);
        assert_eq!(w.t_plus, 59.0);
        assert_close(w.z.abs(), 1.6495721977, 1e-9);
        assert_close(w.p_value, 0.0990304653, 1e-9);
        assert_close(
            wilcoxon(&D, ZeroMethod::Zsplit, true, WilcoxonMethod::Auto).p_value,
            0.1077622904,
            1e-9,
        );
    }

    #[test]
    fn spec_vectors_7_and_8_exact_and_all_zero() {
        let d2 = [0.5, -0.2, 0.8, 1.1, 0.3, -0.6, 0.9, 0.4, 1.3, -0.1];
        let w = wilcoxon(&d2, ZeroMethod::Pratt, false, WilcoxonMethod::Auto);
        assert!(w.exact);
        assert_eq!((w.t_plus, w.t_minus), (46.0, 9.0));
        assert_close(w.p_value, 0.064453125, 1e-12);
        let approx = wilcoxon(&d2, ZeroMethod::Pratt, false, WilcoxonMethod::Normal);
        assert_close(approx.z.abs(), 1.8856946083, 1e-9);
        assert_close(approx.p_value, 0.0593361199, 1e-9);
        let zero = wilcoxon(&[0.0; 4], ZeroMethod::Pratt, false, WilcoxonMethod::Auto);
        assert_eq!(zero.p_value, 1.0);
        assert!(zero.underpowered);
    }
}
