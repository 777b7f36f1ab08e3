//! Deterministic sampling: the same exchange always samples the same way, so a gateway that
//! re-delivers a payload neither doubles nor loses it.

use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Stable 64-bit hash of JSON values. serde_json's maps are ordered (BTreeMap without the
/// `preserve_order` feature), so key order in the input does not change the hash.
pub fn content_hash(values: &[&Value]) -> u64 {
    let mut bytes = Vec::new();
    for value in values {
        // Serializing a Value cannot fail: it has no non-string keys.
        bytes.extend_from_slice(value.to_string().as_bytes());
        bytes.push(0);
    }
    xxh3_64_with_seed(&bytes, 0)
}

/// Maps a key to a uniform number in [0, 1).
pub fn unit_hash(salt: &str, key: &str) -> f64 {
    let mut bytes = Vec::with_capacity(salt.len() + key.len() + 1);
    bytes.extend_from_slice(salt.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(key.as_bytes());
    // 53 high bits give an exactly representable f64 in [0, 1).
    (xxh3_64_with_seed(&bytes, 0x5eed) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether an exchange with this key is kept at `rate` (0 keeps none, 1 keeps all).
pub fn keep(source: &str, key: &str, rate: f64) -> bool {
    rate >= 1.0 || unit_hash(source, key) < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_deterministic_and_close_to_rate() {
        let kept = (0..10_000).filter(|i| keep("prod", &format!("k{i}"), 0.3)).count();
        // 3σ of a binomial(10000, 0.3) is ≈ 137.
        assert!((2863..=3137).contains(&kept), "kept {kept}");
        let again = (0..10_000).filter(|i| keep("prod", &format!("k{i}"), 0.3)).count();
        assert_eq!(kept, again);
    }

    #[test]
    fn hash_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).expect("json");
        assert_eq!(content_hash(&[&a]), content_hash(&[&b]));
    }
}
