//! One harness for every gateway format: each adapter in the registry has a folder of fixtures
//! (`crates/ingest/tests/fixtures/<format>/`), and each fixture `X` sits beside
//! `X.expected.json`, the normalised exchanges and rejections it must produce. Every one is
//! decoded, compared, redacted, stored and read back. A new format is one file, one line in
//! the registry and a folder of fixtures (`EVALTAP_BLESS=1` writes the expected files once;
//! read them before committing).

use std::path::{Path, PathBuf};

use axum::http::HeaderMap;
use evaltap_ingest::formats::ADAPTERS;
use serde_json::{Value, json};

use crate::common::TempDir;

fn fixtures(format: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ingest/tests/fixtures").join(format);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("format `{format}` has no fixture folder {}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|p| !p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    files.sort();
    files
}

fn expected_path(fixture: &Path) -> PathBuf {
    let name = fixture.file_stem().expect("name").to_string_lossy().into_owned();
    fixture.with_file_name(format!("{name}.expected.json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registered_format_decodes_its_fixtures_to_the_expected_exchanges_and_stores_them() {
    let mut dir = TempDir::new("format-harness");
    let store = evaltap_store::Store::connect(&dir.database_url()).await.expect("store");
    let redactor = evaltap_core::redact::Redactor::new(true, &[]).expect("redactor");
    let bless = std::env::var_os("EVALTAP_BLESS").is_some();
    let mut checked = 0;
    for adapter in ADAPTERS {
        let files = fixtures(adapter.name());
        assert!(!files.is_empty(), "format `{}` has no fixtures", adapter.name());
        let mut produced = 0;
        for fixture in files {
            let body = std::fs::read(&fixture).expect("fixture");
            let decoded = adapter
                .decode(&body, &HeaderMap::new())
                .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
            let actual = json!({
                "exchanges": decoded.exchanges.iter().map(|(i, e)| json!({"index": i, "exchange": e})).collect::<Vec<_>>(),
                "rejected": decoded.rejected.iter().map(|r| json!({"index": r.index, "reason": r.reason})).collect::<Vec<_>>(),
            });
            let expected_file = expected_path(&fixture);
            if bless {
                std::fs::write(&expected_file, serde_json::to_string_pretty(&actual).expect("json") + "\n")
                    .expect("write expected");
            }
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(&expected_file).unwrap_or_else(|e| {
                    panic!("{}: {e} (EVALTAP_BLESS=1 writes it)", expected_file.display())
                }))
                .expect("expected JSON");
            assert_eq!(
                actual,
                expected,
                "{} decodes differently from {}",
                fixture.display(),
                expected_file.display()
            );
            produced += decoded.exchanges.len();

            // Redacted (what the door does with `redact = true`), stored, read back unchanged.
            let source = format!("{}-{checked}", adapter.name());
            let mut exchanges: Vec<_> = decoded.exchanges.into_iter().map(|(_, e)| e).collect();
            for exchange in &mut exchanges {
                redactor.redact_exchange(exchange);
            }
            store.insert_exchanges(&source, &exchanges).await.expect("stored");
            let mut stored = store.recent_exchanges(Some(&source), 1000).await.expect("read back");
            stored.sort_by_key(|s| exchanges.iter().position(|e| e == &s.exchange));
            let stored: Vec<_> = stored.into_iter().map(|s| s.exchange).collect();
            let unique: Vec<_> = exchanges.iter().fold(Vec::new(), |mut seen, e| {
                if !seen.iter().any(|s: &evaltap_core::Exchange| s.dedup_key() == e.dedup_key()) {
                    seen.push(e.clone());
                }
                seen
            });
            assert_eq!(stored, unique, "{}: stored and read back", fixture.display());
            checked += 1;
        }
        assert!(produced > 0, "no fixture of `{}` produces an exchange", adapter.name());
    }
    assert!(checked >= ADAPTERS.len(), "{checked} fixtures");
}

/// The README's gateway table covers every registered format: its endpoint is there.
#[test]
fn the_readme_says_where_every_registered_format_posts() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for adapter in ADAPTERS {
        let endpoint = match adapter.name() {
            "native" => "/v1/mirror".to_string(),
            "otlp" => "/v1/traces".to_string(),
            name => format!("<url>/v1/mirror/{name}"),
        };
        assert!(
            readme.contains(&endpoint),
            "the README does not say where `{}` posts ({endpoint})",
            adapter.name()
        );
    }
}
