//! Judge reliability: agreement with human labels, calibration, and the length-controlled win
//! rate. Stats-methods §6.

use std::collections::BTreeMap;

use serde::Serialize;

fn key(x: f64) -> i64 {
    // Labels are small integers or categories coded as numbers; compare them exactly.
    (x * 1e9).round() as i64
}

/// Cohen's κ between two raters' labels. NaN when chance agreement is 1 (κ undefined); the
/// raw agreement is returned beside it.
pub fn cohen_kappa(a: &[f64], b: &[f64]) -> (f64, f64) {
    let n = a.len().min(b.len()) as f64;
    let observed = a.iter().zip(b).filter(|(x, y)| key(**x) == key(**y)).count() as f64 / n;
    let mut ma: BTreeMap<i64, f64> = BTreeMap::new();
    let mut mb: BTreeMap<i64, f64> = BTreeMap::new();
    for (x, y) in a.iter().zip(b) {
        *ma.entry(key(*x)).or_default() += 1.0 / n;
        *mb.entry(key(*y)).or_default() += 1.0 / n;
    }
    let expected: f64 = ma.iter().map(|(k, p)| p * mb.get(k).copied().unwrap_or(0.0)).sum();
    let kappa =
        if (1.0 - expected).abs() < 1e-15 { f64::NAN } else { (observed - expected) / (1.0 - expected) };
    (kappa, observed)
}

/// Quadratic-weighted κ over the union of labels (weights by label rank distance).
pub fn quadratic_weighted_kappa(a: &[f64], b: &[f64]) -> f64 {
    let mut labels: Vec<i64> = a.iter().chain(b).map(|x| key(*x)).collect();
    labels.sort_unstable();
    labels.dedup();
    let k = labels.len();
    if k < 2 {
        return f64::NAN;
    }
    let index = |x: f64| labels.binary_search(&key(x)).unwrap_or(0);
    let mut observed = vec![vec![0.0; k]; k];
    for (x, y) in a.iter().zip(b) {
        observed[index(*x)][index(*y)] += 1.0;
    }
    let n: f64 = observed.iter().flatten().sum();
    let rows: Vec<f64> = observed.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<f64> = (0..k).map(|j| observed.iter().map(|r| r[j]).sum()).collect();
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            let w = ((i as f64 - j as f64) / (k as f64 - 1.0)).powi(2);
            num += w * observed[i][j];
            den += w * rows[i] * cols[j] / n;
        }
    }
    if den == 0.0 { f64::NAN } else { 1.0 - num / den }
}

/// The distance Krippendorff's α uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Labels either agree or not.
    Nominal,
    /// Squared numeric difference.
    Interval,
}

/// Krippendorff's α for two raters without missing values; 1 when expected disagreement is 0.
pub fn krippendorff_alpha(a: &[f64], b: &[f64], level: Level) -> f64 {
    let delta = |x: f64, y: f64| match level {
        Level::Nominal => f64::from(u8::from(key(x) != key(y))),
        Level::Interval => (x - y).powi(2),
    };
    let values: Vec<f64> = a.iter().chain(b).copied().collect();
    let n = values.len() as f64;
    // Each unit contributes its ordered pairs (a, b) and (b, a) with weight 1/(m − 1) = 1.
    let observed: f64 = a.iter().zip(b).map(|(x, y)| 2.0 * delta(*x, *y)).sum::<f64>() / n;
    let mut expected = 0.0;
    for (i, x) in values.iter().enumerate() {
        for (j, y) in values.iter().enumerate() {
            if i != j {
                expected += delta(*x, *y);
            }
        }
    }
    expected /= n * (n - 1.0);
    if expected == 0.0 { 1.0 } else { 1.0 - observed / expected }
}

/// Krippendorff's α (interval) for any number of coders per unit, units with fewer than two
/// values left out (they are not pairable): α = 1 − D_o/D_e with D_o = Σ_u Σ_{c≠k} (v_c − v_k)²
/// /(m_u − 1) / n and D_e = Σ over all pairable values (v − v')² / (n(n − 1)). NaN with fewer
/// than two pairable values; 1 when the values do not vary.
pub fn krippendorff_alpha_multi(units: &[Vec<f64>]) -> f64 {
    let pairable: Vec<&Vec<f64>> = units.iter().filter(|u| u.len() >= 2).collect();
    let values: Vec<f64> = pairable.iter().flat_map(|u| u.iter().copied()).collect();
    let n = values.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    // Σ_{c≠k} (v_c − v_k)² = 2 m Σ (v − v̄)² for a unit of m values; the same for all values.
    let spread = |xs: &[f64]| {
        let m = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / m;
        2.0 * m * xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
    };
    let observed: f64 = pairable.iter().map(|u| spread(u) / (u.len() as f64 - 1.0)).sum::<f64>() / n;
    let expected = spread(&values) / (n * (n - 1.0));
    if expected == 0.0 { 1.0 } else { 1.0 - observed / expected }
}

/// Rogan–Gladen correction of an observed pass rate for a judge with sensitivity `se` and
/// specificity `sp`, clipped to [0, 1]; NaN when se + sp = 1 (an uninformative judge).
pub fn rogan_gladen(p_obs: f64, se: f64, sp: f64) -> f64 {
    let denom = se + sp - 1.0;
    if denom == 0.0 { f64::NAN } else { ((p_obs + sp - 1.0) / denom).clamp(0.0, 1.0) }
}

/// Length-controlled win rate (Dubois et al. 2024).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthControlled {
    /// Mean outcome (wins 1, ties ½).
    pub raw: f64,
    /// σ(θ): the win rate at equal length.
    pub lc: f64,
    /// Intercept θ.
    pub theta: f64,
    /// Length coefficient φ (0 when lengths do not vary).
    pub phi: f64,
    /// Standard deviation of the length differences (ddof = 1).
    pub sd_length: f64,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Fits logit P(win) = θ + φ·tanh(Δlen/sd(Δlen)) with fractional outcomes `y` (ties ½) by
/// iteratively reweighted least squares; drops the length term when sd(Δlen) = 0.
pub fn length_controlled_win_rate(y: &[f64], length_diff: &[f64]) -> Option<LengthControlled> {
    if y.is_empty() || y.len() != length_diff.len() {
        return None;
    }
    let raw = crate::mean(y);
    let sd_length = if length_diff.len() > 1 { crate::variance(length_diff).sqrt() } else { 0.0 };
    let x: Vec<f64> = if sd_length > 0.0 {
        length_diff.iter().map(|d| (d / sd_length).tanh()).collect()
    } else {
        vec![0.0; y.len()]
    };
    let use_length = sd_length > 0.0;
    let (mut theta, mut phi) = (0.0f64, 0.0f64);
    for _ in 0..100 {
        let (mut g0, mut g1, mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (yi, xi) in y.iter().zip(&x) {
            let p = sigmoid(theta + phi * xi);
            let w = p * (1.0 - p);
            g0 += yi - p;
            g1 += (yi - p) * xi;
            h00 += w;
            h01 += w * xi;
            h11 += w * xi * xi;
        }
        let (step0, step1) = if use_length {
            let det = h00 * h11 - h01 * h01;
            if det.abs() < 1e-300 {
                return None;
            }
            ((h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det)
        } else {
            (g0 / h00, 0.0)
        };
        theta += step0;
        phi += step1;
        if !(theta.is_finite() && phi.is_finite()) {
            return None;
        }
        if step0.abs() < 1e-13 && step1.abs() < 1e-13 {
            break;
        }
    }
    Some(LengthControlled { raw, lc: sigmoid(theta), theta, phi, sd_length })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_close;

    #[test]
    fn spec_vector_30_kappa_and_nominal_alpha() {
        let judge = [1., 1., 0., 1., 0., 1., 1., 0., 0., 1., 1., 1., 0., 1., 0., 0., 1., 1., 0., 1.];
        let human = [1., 1., 0., 0., 0., 1., 1., 0., 1., 1., 1., 1., 0., 1., 0., 1., 1., 0., 0., 1.];
        let (kappa, observed) = cohen_kappa(&judge, &human);
        assert_close(observed, 0.8, 1e-12);
        assert_close(kappa, 0.5833333333, 1e-9);
        assert_close(krippendorff_alpha(&judge, &human, Level::Nominal), 0.59375, 1e-9);
        assert!(cohen_kappa(&[1., 1.], &[1., 1.]).0.is_nan());
    }

    #[test]
    fn spec_vector_31_qwk_and_interval_alpha() {
        let j = [5., 4., 3., 4., 2., 5., 3., 1., 2., 4., 3., 5.];
        let h = [4., 4., 3., 5., 2., 5., 2., 1., 3., 4., 3., 4.];
        assert_close(quadratic_weighted_kappa(&j, &h), 0.8598130841, 1e-9);
        assert_close(krippendorff_alpha(&j, &h, Level::Interval), 0.8654970760, 1e-9);
    }

    #[test]
    fn multi_coder_alpha_reduces_to_the_two_coder_one() {
        let j = [5., 4., 3., 4., 2., 5., 3., 1., 2., 4., 3., 5.];
        let h = [4., 4., 3., 5., 2., 5., 2., 1., 3., 4., 3., 4.];
        let units: Vec<Vec<f64>> = j.iter().zip(&h).map(|(a, b)| vec![*a, *b]).collect();
        assert_close(krippendorff_alpha_multi(&units), 0.8654970760, 1e-9);
        // Three coders, one unit with a missing value: Krippendorff (2011) interval example,
        // computed by hand: D_o = 0.25, D_e = 1.4167 for these values.
        let units = vec![vec![1., 1., 2.], vec![2., 2., 2.], vec![3., 3.], vec![4., 3., 4.], vec![5.]];
        let values = [1., 1., 2., 2., 2., 2., 3., 3., 4., 3., 4.];
        let n = values.len() as f64;
        let m = values.iter().sum::<f64>() / n;
        let d_e = 2.0 * n * values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n * (n - 1.0));
        let d_o = (2.0 * 3.0 * (2.0 / 9.0 * 3.0) / 2.0 + 0.0 + 0.0 + 2.0 * 3.0 * (2.0 / 9.0 * 3.0) / 2.0) / n;
        assert_close(krippendorff_alpha_multi(&units), 1.0 - d_o / d_e, 1e-12);
        assert!(krippendorff_alpha_multi(&[vec![1.0]]).is_nan());
    }

    #[test]
    fn spec_vectors_33_and_34() {
        let y = [1., 1., 0., 1., 0.5, 1., 0., 1., 1., 0., 1., 0.5, 0., 1., 1., 0.];
        let dl =
            [300., 250., -100., 400., 0., 120., -50., 500., 80., -200., 350., 10., -300., 200., -20., 150.];
        let lc = length_controlled_win_rate(&y, &dl).expect("fits");
        assert_close(lc.sd_length, 221.02695914, 1e-9);
        assert_close(lc.theta, -0.1987882530, 1e-6);
        assert_close(lc.phi, 3.7617590858, 1e-6);
        assert_close(lc.raw, 0.625, 1e-12);
        assert_close(lc.lc, 0.4504659482, 1e-6);
        assert_close(rogan_gladen(0.80, 0.95, 0.85), 0.8125, 1e-12);
        let flat = length_controlled_win_rate(&[1., 0., 1.], &[5., 5., 5.]).expect("fits");
        assert_eq!(flat.phi, 0.0);
    }
}
