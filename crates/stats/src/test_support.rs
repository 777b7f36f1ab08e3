//! Shared test data and tolerance checks.

/// Dataset D of the spec: differences of 1–10 judge scores, n = 12.
pub const D: [f64; 12] = [1., 0., -1., 1., 0., 1., 1., 0., 1., -1., 1., 1.];

/// Relative tolerance, |a − b| ≤ tol·|b|, plus the half-unit of the 10th decimal the spec's
/// vectors are rounded to (so an exact value printed as 0.0055738039 is not held to digits
/// the spec does not give); exactly 0 must be met to within `tol`.
pub fn assert_close(actual: f64, expected: f64, tol: f64) {
    let bound = if expected == 0.0 { tol } else { tol * expected.abs() + 5e-11 };
    assert!(
        (actual - expected).abs() <= bound,
        "expected {expected}, got {actual} (relative tolerance {tol})"
    );
}

/// [`assert_close`] element-wise.
pub fn assert_all_close(actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert_close(*a, *e, tol);
    }
}
