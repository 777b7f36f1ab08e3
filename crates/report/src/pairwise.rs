//! Pairwise rubrics: an exchange's outcome from both orders, and what the outcomes say together
//! (wins, ties, losses, the sign test, position consistency and bias).

use crate::{ALPHA, PairwiseSummary};

/// The exchange's pairwise score from the candidate's score in each order (1 win, ½ tie, 0
/// loss): a win or loss only when both orders agree, anything else a tie.
pub fn pairwise_outcome(ab: f64, ba: f64) -> f64 {
    if ab == 1.0 && ba == 1.0 {
        1.0
    } else if ab == 0.0 && ba == 0.0 {
        0.0
    } else {
        0.5
    }
}

/// Summarizes (score with baseline first, score with candidate first) pairs.
pub(crate) fn pairwise_summary(orders: impl Iterator<Item = (f64, f64)>) -> PairwiseSummary {
    let (mut wins, mut losses, mut ties, mut consistent, mut n) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first, mut second) = (0u64, 0u64);
    for (ab, ba) in orders {
        n += 1;
        if ab == ba {
            consistent += 1;
        }
        let outcome = pairwise_outcome(ab, ba);
        if outcome == 1.0 {
            wins += 1;
        } else if outcome == 0.0 {
            losses += 1;
        } else {
            ties += 1;
        }
        // Baseline first (ab): the candidate's win means B was named. Candidate first (ba): A.
        // A tie (½) names neither.
        let (a_named_ab, a_named_ba) = (ab == 0.0, ba == 1.0);
        let (b_named_ab, b_named_ba) = (ab == 1.0, ba == 0.0);
        first += u64::from(a_named_ab) + u64::from(a_named_ba);
        second += u64::from(b_named_ab) + u64::from(b_named_ba);
    }
    let sign = evaltap_stats::sign_test(wins, losses, ties, ALPHA);
    let verdicts = (2 * n).max(1) as f64;
    PairwiseSummary {
        wins,
        losses,
        ties,
        p_sign: sign.p_two_sided,
        win_rate_ci: sign.win_rate_ci,
        win_rate: sign.win_rate_tie_half,
        position_consistency: if n == 0 { 1.0 } else { consistent as f64 / n as f64 },
        first_position_rate: first as f64 / verdicts,
        position_bias: (first as f64 - second as f64) / verdicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_win_and_a_tie_is_a_tie() {
        assert_eq!(pairwise_outcome(1.0, 0.5), 0.5);
        assert_eq!(pairwise_outcome(0.5, 1.0), 0.5);
        assert_eq!(pairwise_outcome(1.0, 1.0), 1.0);
        assert_eq!(pairwise_outcome(0.0, 0.0), 0.0);
        assert_eq!(pairwise_outcome(1.0, 0.0), 0.5);
        let s = pairwise_summary([(1.0, 0.5), (1.0, 1.0), (0.0, 0.0)].into_iter());
        assert_eq!((s.wins, s.ties, s.losses), (1, 1, 1));
        // Verdicts naming A: (ab=0: A), (ba=1: A) ×2 → in (1,1): ba=1 A; (0,0): ab=0 A; (1,0.5): none.
        assert!((s.first_position_rate - 2.0 / 6.0).abs() < 1e-12, "{s:?}");
    }
}
