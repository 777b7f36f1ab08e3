//! Anytime-valid inference for continuous monitoring: people look at results as replays land,
//! and repeated fixed-n tests would inflate false alarms. Stats-methods §4.

use serde::Serialize;

/// ρ that makes the normal-mixture confidence sequence tightest near `n_star` samples:
/// ρ² = (−2 ln α + ln(1 − 2 ln α)) / N*.
pub fn mixture_rho(alpha: f64, n_star: f64) -> f64 {
    ((-2.0 * alpha.ln() + (1.0 - 2.0 * alpha.ln()).ln()) / n_star).sqrt()
}

/// The normal-mixture mSPRT at one time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixturePoint {
    /// Samples so far.
    pub n: usize,
    /// Running mean.
    pub mean: f64,
    /// Running standard deviation (ddof = 1).
    pub sd: f64,
    /// Mixture likelihood ratio Λₙ against θ0.
    pub lambda: f64,
    /// Always-valid p-value: min over time of 1/Λ (capped at 1).
    pub p_value: f64,
    /// min(1, 1/Λₙ) at this time alone.
    pub p_instant: f64,
    /// Confidence sequence at this time.
    pub cs: (f64, f64),
    /// Running intersection of the confidence sequence so far.
    pub cs_intersection: (f64, f64),
}

/// Λ and the confidence sequence from a sum of deviations, sd and n.
fn mixture_at(sum_dev: f64, mean: f64, sd: f64, n: f64, rho: f64, alpha: f64) -> (f64, (f64, f64)) {
    let r2 = rho * rho;
    let k = n * r2 + 1.0;
    let lambda = (r2 * (sum_dev / sd).powi(2) / (2.0 * k)).exp() / k.sqrt();
    let half = sd * (2.0 * k / (n * n * r2) * (k.sqrt() / alpha).ln()).sqrt();
    (lambda, (mean - half, mean + half))
}

/// Runs the normal-mixture mSPRT over `d` in arrival order against θ0 = `theta0`, tuned for
/// `n_star` samples; returns the state after each sample from the second on (σ̂ needs two).
///
/// The running minimum of p and the running intersection of the sequence start at the first
/// sample (as the spec's test vectors are computed). Products monitor with
/// [`normal_mixture_from`] and a burn-in instead.
pub fn normal_mixture(d: &[f64], theta0: f64, alpha: f64, n_star: f64) -> Vec<MixturePoint> {
    normal_mixture_from(d, theta0, alpha, n_star, 2)
}

/// The normal-mixture mSPRT whose always-valid p-value and confidence-sequence intersection
/// accumulate only from `burn_in` samples on (docs/statistics.md §3): σ̂ is a plug-in, and with a
/// handful of samples a chance run of near-equal differences sets a tiny p that the running
/// minimum would keep forever. Points before `burn_in` report p = 1 and the unintersected
/// sequence. An intersection that would come out empty (which a valid procedure allows only
/// with probability ≤ α) is never reported: the sequence at that time stands in for it.
pub fn normal_mixture_from(
    d: &[f64],
    theta0: f64,
    alpha: f64,
    n_star: f64,
    burn_in: usize,
) -> Vec<MixturePoint> {
    let rho = mixture_rho(alpha, n_star);
    let burn_in = burn_in.max(2) as f64;
    let (mut count, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
    let mut p_value = 1.0f64;
    let mut inter = (f64::NEG_INFINITY, f64::INFINITY);
    let mut points = Vec::new();
    for &x in d {
        count += 1.0;
        let delta = x - mean;
        mean += delta / count;
        m2 += delta * (x - mean);
        if count < 2.0 {
            continue;
        }
        let sd = (m2 / (count - 1.0)).sqrt();
        let (lambda, cs) = if sd > 0.0 && sd.is_finite() {
            mixture_at(count * (mean - theta0), mean, sd, count, rho, alpha)
        } else {
            (1.0, (mean, mean))
        };
        let p_instant = (1.0 / lambda).min(1.0);
        let accumulating = count >= burn_in && sd > 0.0;
        if accumulating {
            p_value = p_value.min(p_instant);
            let next = (inter.0.max(cs.0), inter.1.min(cs.1));
            inter = if next.0 <= next.1 { next } else { cs };
        }
        points.push(MixturePoint {
            n: count as usize,
            mean,
            sd,
            lambda,
            p_value,
            p_instant,
            cs,
            cs_intersection: if accumulating || inter.0.is_finite() { inter } else { cs },
        });
    }
    points
}

/// Predictable-mixture empirical-Bernstein lower confidence sequence for the mean of
/// `y` ∈ [0, 1] at level α (one-sided), after each sample. Mirrors
/// `confseq.predmix_empbern_lower_cs` with truncation ½ (docs/statistics.md §3).
pub fn prpl_eb_lower(y: &[f64], alpha: f64) -> Vec<f64> {
    let log_inv = (1.0 / alpha).ln();
    let (mut sum_y, mut sum_sq) = (0.0, 0.0);
    let mut sigma2_prev = 0.25;
    // v_t centres on the plain running mean of the earlier samples, ȳ₀ = 0 (as the spec's
    // test vectors, computed with confseq, require).
    let mut mean_prev = 0.0;
    let (mut sum_lambda, mut sum_lambda_y, mut sum_v_psi) = (0.0, 0.0, 0.0);
    let mut lower = Vec::with_capacity(y.len());
    for (i, &x) in y.iter().enumerate() {
        let t = (i + 1) as f64;
        let lambda = (2.0 * log_inv / (t * (1.0 + t).ln() * sigma2_prev)).sqrt().min(0.5);
        let lambda = if lambda.is_nan() { 0.0 } else { lambda };
        let v = 4.0 * (x - mean_prev).powi(2);
        let psi = (-(1.0 - lambda).ln() - lambda) / 4.0;
        sum_lambda += lambda;
        sum_lambda_y += lambda * x;
        sum_v_psi += v * psi;
        let bound = sum_lambda_y / sum_lambda - (log_inv + sum_v_psi) / sum_lambda;
        lower.push(bound.max(0.0));
        // Predictable plug-ins for the next step.
        sum_y += x;
        let mu = ((0.5 + sum_y) / (t + 1.0)).min(1.0);
        sum_sq += (x - mu).powi(2);
        sigma2_prev = (0.25 + sum_sq) / (t + 1.0);
        mean_prev = sum_y / t;
    }
    lower
}

/// Two-sided PrPl-EB confidence sequence for the mean of differences `d` ∈ [−1, 1], mapped to
/// y = (d+1)/2 with α/2 per side; after each sample.
pub fn prpl_eb_cs(d: &[f64], alpha: f64) -> Vec<(f64, f64)> {
    let y: Vec<f64> = d.iter().map(|x| (x.clamp(-1.0, 1.0) + 1.0) / 2.0).collect();
    let flipped: Vec<f64> = y.iter().map(|v| 1.0 - v).collect();
    let low = prpl_eb_lower(&y, alpha / 2.0);
    let high = prpl_eb_lower(&flipped, alpha / 2.0);
    low.iter().zip(&high).map(|(l, h)| (2.0 * l - 1.0, 2.0 * (1.0 - h) - 1.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{D, assert_close};

    fn stream() -> Vec<f64> {
        (0..400).map(|i| ((((37 * i) % 11) as f64 - 5.0) / 5.0 + 0.1).clamp(-1.0, 1.0)).collect()
    }

    #[test]
    fn spec_vectors_23_and_24_on_d() {
        assert_close(mixture_rho(0.05, 100.0), 0.2817118138, 1e-9);
        let last = normal_mixture(&D, 0.0, 0.05, 100.0).pop().expect("points");
        assert_close(last.sd, 0.7929614611, 1e-9);
        assert_close(last.lambda, 1.6057293984, 1e-9);
        assert_close(last.p_instant, 0.6227699393, 1e-9);
        assert_close(last.cs.0, -0.4291894814, 1e-9);
        assert_close(last.cs.1, 1.2625228148, 1e-9);
        assert_close(mixture_rho(0.05, 1000.0), 0.0890850975, 1e-9);
        let last = normal_mixture(&D, 0.0, 0.05, 1000.0).pop().expect("points");
        assert_close(last.lambda, 1.1035857706, 1e-9);
        assert_close(last.cs.0, -1.4978442722, 1e-9);
        assert_close(last.cs.1, 2.3311776056, 1e-9);
    }

    #[test]
    fn spec_vector_25_stream() {
        let points = normal_mixture(&stream(), 0.0, 0.05, 200.0);
        let at = |t: usize| points.iter().find(|p| p.n == t).expect("point");
        assert_close(at(100).cs.0, -0.1121760771, 1e-9);
        assert_close(at(100).cs.1, 0.2741760771, 1e-9);
        let end = at(400);
        assert_close(end.mean, 0.0875, 1e-12);
        assert_close(end.lambda, 10.28408, 1e-6);
        assert_close(end.p_instant, 0.0972377167, 1e-9);
        // The always-valid p-value keeps the smallest 1/Λ seen so far.
        assert!(end.p_value <= end.p_instant);
        assert_eq!(end.p_value, points.iter().map(|p| p.p_instant).fold(1.0, f64::min));
        assert_close(end.cs.0, -0.0074558708, 1e-9);
        assert_close(end.cs.1, 0.1824558708, 1e-9);
    }

    #[test]
    fn spec_vector_26_prpl_eb() {
        let cs = prpl_eb_cs(&stream(), 0.05);
        assert_close(cs[99].0, -0.1468656301, 1e-9);
        assert_close(cs[99].1, 0.3166548824, 1e-9);
        assert_close(cs[399].0, -0.0213801722, 1e-9);
        assert_close(cs[399].1, 0.1984522586, 1e-9);
    }
}
