//! The door's defaults the README states are the ones a configuration that leaves them out
//! gets: change either and this fails.

use evaltap_core::Config;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README.md")
}

#[test]
fn the_door_defaults_the_readme_states_are_the_configuration_s() {
    let config: Config = toml::from_str("").expect("an empty configuration reads");
    let readme = readme();
    let stated = [
        (config.max_connections.to_string(), "`max_connections` (768", "768"),
        (config.header_read_timeout_secs.to_string(), "`header_read_timeout_secs` (10 s)", "10"),
        (config.ingest_body_timeout_secs.to_string(), "`ingest_body_timeout_secs` (30 s)", "30"),
        ((config.max_body_bytes / (1024 * 1024)).to_string(), "`max_body_bytes` (16 MiB)", "16"),
        (evaltap_core::exchange::MAX_JSON_DEPTH.to_string(), "nested deeper than 64 levels", "64"),
    ];
    for (actual, phrase, documented) in stated {
        assert!(readme.contains(phrase), "the README no longer says {phrase:?}");
        assert_eq!(actual, documented, "{phrase:?}: the configuration's default is {actual}");
    }
    // Batch mode's.
    let worker = &config.worker;
    let batch = [
        (worker.batch_max_requests.to_string(), "`[worker] batch_max_requests` (1,000 unless set)", "1000"),
        (worker.batch_wait_secs.to_string(), "`batch_wait_secs` (60 s)", "60"),
        (worker.batch_poll_secs.to_string(), "`batch_poll_secs` (30 s)", "30"),
        (evaltap_core::config::DEFAULT_BATCH_DISCOUNT.to_string(), "`batch_discount` (0.5 unless", "0.5"),
    ];
    for (actual, phrase, documented) in batch {
        assert!(readme.contains(phrase), "the README no longer says {phrase:?}");
        assert_eq!(actual, documented, "{phrase:?}: the configuration's default is {actual}");
    }
    // The body limit is a whole number of MiB.
    assert_eq!(config.max_body_bytes % (1024 * 1024), 0);
    assert!(readme.contains("(500,000 unless set"), "the README no longer states max_body_values");
    assert_eq!(config.max_body_values, 500_000);
    // `Config::default()` (what code that builds a configuration gets) agrees with the file's.
    let built = Config::default();
    assert_eq!(
        (built.max_connections, built.header_read_timeout_secs, built.ingest_body_timeout_secs),
        (config.max_connections, config.header_read_timeout_secs, config.ingest_body_timeout_secs)
    );
    assert_eq!(
        (built.max_body_bytes, built.max_body_values),
        (config.max_body_bytes, config.max_body_values)
    );
}
