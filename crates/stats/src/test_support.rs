//! Shared test data and tolerance checks.

/// Dataset D of the spec: differences of 1–10 judge scores, n = 12.
pub const D: [f64; 12] = [1., 0., -1., 1., 0., 1., 1., 0., 1., -1., 1., 1.];

/// |a − b| ≤ tol·max(|b|, 1): relative for large values, absolute near 0.
pub fn assert_close(actual: f64, expected: f64, tol: f64) {
    assert!(
        (actual - expected).abs() <= tol * expected.abs().max(1.0),
        "expected {expected}, got {actual} (tolerance {tol})"
    );
}

/// [`assert_close`] element-wise.
pub fn assert_all_close(actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert_close(*a, *e, tol);
    }
}
