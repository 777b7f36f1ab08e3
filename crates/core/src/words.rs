//! Numbers as people read them in every screen evaltap prints: "1 item", "2 items", and times
//! to the second.

/// `n` and the noun, plural unless `n` is 1: `count(1, "pair")` is "1 pair". Nouns whose plural
/// is not `+s` are given as `"singular|plural"`.
pub fn count(n: u64, noun: &str) -> String {
    let (singular, plural) = match noun.split_once('|') {
        Some((singular, plural)) => (singular.to_string(), plural.to_string()),
        None => (noun.to_string(), format!("{noun}s")),
    };
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// An RFC 3339 time as `2026-12-06 10:04:31 UTC` (no fractions of a second); text that is not
/// such a time comes back unchanged.
pub fn when(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(time) => time.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(count(1, "item"), "1 item");
        assert_eq!(count(0, "pair"), "0 pairs");
        assert_eq!(count(2, "analysis|analyses"), "2 analyses");
        assert_eq!(count(1, "analysis|analyses"), "1 analysis");
    }

    #[test]
    fn times_drop_their_fractions() {
        assert_eq!(when("2026-12-06T10:04:31.123456789Z"), "2026-12-06 10:04:31 UTC");
        assert_eq!(when("2026-12-06T11:04:31+01:00"), "2026-12-06 10:04:31 UTC");
        assert_eq!(when("never"), "never");
    }
}
