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
    /// The standard deviation the statistic used: the running one (ddof = 1), or with
    /// clusters the larger of it and √n × the clustered standard error.
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
    mixture(d, None, theta0, alpha, n_star, burn_in)
}

/// [`normal_mixture_from`] for differences that arrive in clusters (`clusters[i]` labels
/// difference i: a conversation, session or user), valid when clusters arrive one after another
/// as production sessions do (docs/statistics.md §3). At each time σ̂ is the larger of the
/// differences' standard deviation and √n × their clustered standard error — the design effect
/// so far, never below 1 — and nothing accumulates before `min_clusters` clusters have arrived,
/// since the clustered error of a few clusters is itself too uncertain to lean on.
pub fn normal_mixture_clustered(
    d: &[f64],
    clusters: &[usize],
    theta0: f64,
    alpha: f64,
    n_star: f64,
    (burn_in, min_clusters): (usize, usize),
) -> Vec<MixturePoint> {
    mixture(d, Some((clusters, min_clusters)), theta0, alpha, n_star, burn_in)
}

/// Cluster sums of a growing sample, for its clustered variance in O(1) per arrival.
#[derive(Default)]
struct ClusterSums {
    /// Per cluster: the sum of its values and its size.
    by_cluster: std::collections::HashMap<usize, (f64, f64)>,
    /// Σ_c S_c², Σ_c S_c·n_c and Σ_c n_c².
    sums: (f64, f64, f64),
}

impl ClusterSums {
    fn add(&mut self, cluster: usize, x: f64) {
        let (sum, size) = self.by_cluster.entry(cluster).or_insert((0.0, 0.0));
        let (old_sum, old_size) = (*sum, *size);
        (*sum, *size) = (old_sum + x, old_size + 1.0);
        self.sums.0 += *sum * *sum - old_sum * old_sum;
        self.sums.1 += *sum * *size - old_sum * old_size;
        self.sums.2 += *size * *size - old_size * old_size;
    }

    fn count(&self) -> usize {
        self.by_cluster.len()
    }

    /// n × the clustered squared standard error of the mean of n values with mean `mean`:
    /// C/(C−1) · Σ_c (S_c − n_c·mean)² / n (as [`crate::clustered_se`]).
    fn variance_per_value(&self, mean: f64, n: f64) -> f64 {
        let c = self.count() as f64;
        let (s2, sn, n2) = self.sums;
        let spread = (s2 - 2.0 * mean * sn + mean * mean * n2).max(0.0);
        c / (c - 1.0) * spread / n
    }
}

fn mixture(
    d: &[f64],
    clusters: Option<(&[usize], usize)>,
    theta0: f64,
    alpha: f64,
    n_star: f64,
    burn_in: usize,
) -> Vec<MixturePoint> {
    let rho = mixture_rho(alpha, n_star);
    let burn_in = burn_in.max(2) as f64;
    let (mut count, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
    let mut by_cluster = ClusterSums::default();
    let mut p_value = 1.0f64;
    let mut inter = (f64::NEG_INFINITY, f64::INFINITY);
    let mut points = Vec::new();
    for (i, &x) in d.iter().enumerate() {
        count += 1.0;
        let delta = x - mean;
        mean += delta / count;
        m2 += delta * (x - mean);
        if let Some((labels, _)) = clusters {
            by_cluster.add(labels.get(i).copied().unwrap_or(usize::MAX), x);
        }
        if count < 2.0 {
            continue;
        }
        let unclustered_sd = (m2 / (count - 1.0)).sqrt();
        let (sd, enough_clusters) = match clusters {
            Some((_, min_clusters)) if by_cluster.count() >= min_clusters.max(4) => {
                // The clustered variance rests on C − 1 degrees of freedom: (C − 1)/(C − 3), the
                // variance of a t on them, widens it for the uncertainty of the estimate.
                let c = by_cluster.count() as f64;
                let clustered = by_cluster.variance_per_value(mean, count) * (c - 1.0) / (c - 3.0);
                (unclustered_sd.max(clustered.sqrt()), true)
            }
            Some(_) => (unclustered_sd, false),
            None => (unclustered_sd, true),
        };
        let (lambda, cs) = if !enough_clusters {
            // Too few clusters to know the spread: no evidence, and no bound.
            (1.0, (f64::NEG_INFINITY, f64::INFINITY))
        } else if sd > 0.0 && sd.is_finite() {
            mixture_at(count * (mean - theta0), mean, sd, count, rho, alpha)
        } else {
            (1.0, (mean, mean))
        };
        let p_instant = (1.0 / lambda).min(1.0);
        let accumulating = count >= burn_in && sd > 0.0 && enough_clusters;
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
    fn running_cluster_sums_give_the_clustered_standard_error_at_every_time() {
        let d = stream();
        let labels: Vec<usize> = (0..d.len()).map(|i| (i * 7 / 13) % 17).collect();
        let mut sums = ClusterSums::default();
        for (i, (&x, &c)) in d.iter().zip(&labels).enumerate() {
            sums.add(c, x);
            let n = i + 1;
            if let Some((se, clusters)) = crate::clustered_se(&d[..n], &labels[..n]) {
                assert_eq!(clusters, sums.count());
                let mean = d[..n].iter().sum::<f64>() / n as f64;
                assert_close(sums.variance_per_value(mean, n as f64), se * se * n as f64, 1e-9);
            }
        }
    }

    #[test]
    fn clustered_monitoring_waits_for_clusters_and_never_narrows_below_the_pairs() {
        let d = stream();
        let one_each: Vec<usize> = (0..d.len()).collect();
        let plain = normal_mixture_from(&d, 0.0, 0.05, 200.0, 30);
        let clustered = normal_mixture_clustered(&d, &one_each, 0.0, 0.05, 200.0, (30, 10));
        for (p, c) in plain.iter().zip(&clustered) {
            assert!(c.sd >= p.sd && c.p_value >= p.p_value - 1e-12, "{p:?} {c:?}");
        }
        // Ten sessions of 40 in a row: nothing accumulates, and no bound is given, before the
        // tenth session starts.
        let sessions: Vec<usize> = (0..d.len()).map(|i| i / 40).collect();
        let points = normal_mixture_clustered(&d, &sessions, 0.0, 0.05, 200.0, (30, 10));
        for p in points.iter().filter(|p| p.n <= 360) {
            assert!(p.p_value == 1.0 && p.cs_intersection.0 == f64::NEG_INFINITY, "{p:?}");
        }
        assert!(points.last().is_some_and(|p| p.cs_intersection.0.is_finite()));
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
