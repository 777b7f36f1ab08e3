//! Multiple-comparison adjustments over a family of p-values (every candidate × rubric test
//! feeding one decision). NaN p-values stay NaN but still count in the family size m.

fn order(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    idx
}

/// Holm's step-down adjustment (family-wise error, any dependence):
/// adj₍ᵢ₎ = max_{j≤i} min(1, (m−j+1)·p₍ⱼ₎).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len() as f64;
    let mut adjusted = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (j, &i) in order(p).iter().enumerate() {
        running = running.max(((m - j as f64) * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

fn step_up(p: &[f64], factor: f64) -> Vec<f64> {
    let m = p.len() as f64;
    let idx = order(p);
    let mut adjusted = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (j, &i) in idx.iter().enumerate().rev() {
        running = running.min((factor * m * p[i] / (j + 1) as f64).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Benjamini–Hochberg q-values (false discovery rate, independence or PRDS):
/// adj₍ᵢ₎ = min_{j≥i} min(1, m·p₍ⱼ₎/j).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    step_up(p, 1.0)
}

/// Benjamini–Yekutieli q-values (false discovery rate under any dependence): BH times Σ_{k≤m} 1/k.
pub fn benjamini_yekutieli(p: &[f64]) -> Vec<f64> {
    let harmonic: f64 = (1..=p.len()).map(|k| 1.0 / k as f64).sum();
    step_up(p, harmonic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_all_close;

    const P1: [f64; 6] = [0.01, 0.04, 0.03, 0.005, 0.20, 0.012];
    const P2: [f64; 8] = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205];

    #[test]
    fn spec_vectors_18_to_21() {
        assert_all_close(&holm(&P1), &[0.05, 0.09, 0.09, 0.03, 0.20, 0.05], 1e-9);
        assert_all_close(&benjamini_hochberg(&P1), &[0.024, 0.048, 0.045, 0.024, 0.20, 0.024], 1e-9);
        assert_all_close(&holm(&P2), &[0.008, 0.056, 0.234, 0.234, 0.234, 0.234, 0.234, 0.234], 1e-9);
        assert_all_close(
            &benjamini_hochberg(&P2),
            &[0.008, 0.032, 0.0672, 0.0672, 0.0672, 0.08, 0.0845714286, 0.205],
            1e-9,
        );
        let rejected: Vec<bool> = holm(&P1).iter().map(|q| *q <= 0.05).collect();
        assert_eq!(rejected, [true, false, false, true, false, true]);
    }

    #[test]
    fn nan_counts_in_m_but_stays_nan() {
        let adj = holm(&[0.01, f64::NAN]);
        assert_eq!(adj[0], 0.02);
        assert!(adj[1].is_nan());
        let by = benjamini_yekutieli(&[0.01, 0.02]);
        assert!((by[0] - 0.02 * 1.5).abs() < 1e-12);
    }
}
