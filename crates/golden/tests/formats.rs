//! Imports from each tool's documented shape (fixture files), round trips through export where
//! both sides support it, and malformed files that import nothing.

use evaltap_golden::{Check, DatasetDir, FieldMap, Item, formats};

fn fixture(name: &str) -> (String, String) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    (path, text)
}

fn import(format: &str, name: &str) -> Vec<Item> {
    let (path, text) = fixture(name);
    assert_eq!(formats::detect(&path, &text), format, "detected format of {name}");
    formats::by_name(format).expect("format").import(&path, &text, &FieldMap::default()).expect("imports")
}

#[test]
fn langfuse_items_import_and_round_trip() {
    let items = import("langfuse", "langfuse.jsonl");
    assert_eq!(items.len(), 2);
    assert_eq!((items[0].id.as_str(), items[0].reference.as_deref()), ("lf-1", Some("36")));
    assert_eq!(items[0].metadata["area"], "math");
    assert_eq!(items[1].messages.len(), 2);
    assert_eq!(items[1].input_text(), "Capital of Norway?");
    let langfuse = formats::by_name("langfuse").expect("format");
    let exported = langfuse.export(&items).expect("exports");
    let back = langfuse.import("x.jsonl", &exported, &FieldMap::default()).expect("re-imports");
    assert_eq!(back, items);
}

#[test]
fn braintrust_records_import_with_list_tags() {
    let items = import("braintrust", "braintrust.jsonl");
    assert_eq!(items[0].reference.as_deref(), Some("positive"));
    assert_eq!(items[0].tags.get("regression").map(String::as_str), Some("true"));
    assert_eq!(items[1].input_text(), "What is 2 + 2? Reply with the number.");
}

#[test]
fn openai_evals_samples_keep_every_ideal() {
    let items = import("openai-evals", "openai_evals.jsonl");
    assert_eq!((items[0].id.as_str(), items[0].reference.as_deref()), ("line-1", Some("12")));
    assert_eq!(items[0].messages[0]["role"], "system");
    assert_eq!(items[1].reference.as_deref(), Some("red"));
    assert_eq!(items[1].metadata["references"], serde_json::json!(["red", "blue", "yellow"]));
}

#[test]
fn inspect_samples_import_and_malformed_ones_name_the_line() {
    let items = import("inspect", "inspect.jsonl");
    assert_eq!((items[0].id.as_str(), items[1].id.as_str()), ("1", "two"));
    assert_eq!(items[1].reference.as_deref(), Some("tac"));
    let (path, text) = fixture("malformed_inspect.jsonl");
    let err = formats::by_name("inspect")
        .expect("format")
        .import(&path, &text, &FieldMap::default())
        .expect_err("bad");
    assert!(err.to_string().ends_with("malformed_inspect.jsonl:2: input: is missing"), "{err}");
}

#[test]
fn promptfoo_yaml_csv_and_jsonl_tests_import_with_their_assertions() {
    let yaml = import("promptfoo", "promptfoo.yaml");
    assert_eq!((yaml[0].id.as_str(), yaml[0].reference.as_deref()), ("sum", Some("42")));
    assert!(matches!(yaml[0].checks.as_slice(), [Check::Regex { .. }]), "{:?}", yaml[0].checks);
    assert!(matches!(yaml[1].checks.as_slice(), [Check::JsonSchema { .. }]), "{:?}", yaml[1].checks);
    assert_eq!(yaml[1].metadata["promptfoo_asserts"][0]["type"], "llm-rubric");
    let csv = import("promptfoo", "promptfoo.csv");
    // The input column has another name: the only var is taken.
    assert_eq!(csv[0].input_text(), "What is 3 * 3? Reply with the number.");
    assert_eq!((csv[0].id.as_str(), csv[0].reference.as_deref()), ("nine", Some("9")));
    assert_eq!(csv[0].metadata["area"], "math");
    assert_eq!(csv[1].checks, [Check::Contains { value: "bonjour".into(), case_sensitive: false }]);
    let jsonl = import("promptfoo", "promptfoo.jsonl");
    assert_eq!(jsonl[0].reference.as_deref(), Some("2"));

    // Round trip: every field, checks included, comes back.
    let promptfoo = formats::by_name("promptfoo").expect("format");
    let mut all = yaml.clone();
    all.extend(csv);
    let exported = promptfoo.export(&all).expect("exports");
    let back = promptfoo.import("x.jsonl", &exported, &FieldMap::default()).expect("re-imports");
    assert_eq!(back, all);
}

#[test]
fn field_maps_rename_source_columns() {
    let text = "{\"uid\": \"q1\", \"question\": \"Why?\", \"answer\": \"Because.\"}\n";
    let map =
        FieldMap::parse(&["id=uid".into(), "input=question".into(), "reference=answer".into()]).expect("map");
    let items = formats::by_name("inspect").expect("format").import("m.jsonl", text, &map).expect("imports");
    assert_eq!((items[0].id.as_str(), items[0].input_text().as_str()), ("q1", "Why?"));
    assert_eq!(items[0].reference.as_deref(), Some("Because."));
    assert!(FieldMap::parse(&["answer".into()]).is_err());
    assert!(FieldMap::parse(&["colour=x".into()]).is_err());
}

#[test]
fn a_failed_import_leaves_the_dataset_file_unchanged() {
    let dir = std::env::temp_dir().join(format!("evaltap-golden-{}", std::process::id()));
    let datasets = DatasetDir::new(&dir);
    let first = vec![Item::from_input("a", "What is 1 + 1?")];
    datasets.write("keep", &first).expect("write");
    let before = std::fs::read(datasets.path("keep").expect("path")).expect("read");
    let (path, text) = fixture("malformed_inspect.jsonl");
    let result = formats::by_name("inspect")
        .expect("format")
        .import(&path, &text, &FieldMap::default())
        .and_then(|items| datasets.append("keep", items));
    assert!(result.is_err());
    // A duplicate id is refused whole too.
    assert!(datasets.append("keep", vec![Item::from_input("b", "x"), Item::from_input("a", "y")]).is_err());
    assert_eq!(std::fs::read(datasets.path("keep").expect("path")).expect("read"), before);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_import_says_what_each_field_became_and_what_it_skipped() {
    // Langfuse's Python SDK writes `expected_output`; an object reference is kept as JSON text.
    let text = "{\"id\": \"a\", \"input\": \"Give JSON\", \"expected_output\": {\"ok\": true}, \"trace_id\": \"t1\"}\n";
    assert_eq!(formats::detect("x.jsonl", text), "langfuse");
    let mut notes = evaltap_golden::ImportNotes::default();
    let items = formats::by_name("langfuse")
        .expect("format")
        .import_noting("x.jsonl", text, &FieldMap::default(), &mut notes)
        .expect("imports");
    assert_eq!(items[0].reference.as_deref(), Some("{\"ok\":true}"));
    let lines = notes.lines();
    assert!(
        lines.contains(
            &"mapped expected_output → reference (an object: kept as its JSON text) (1 record)".to_string()
        ),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("skipped trace_id: not a field this format reads")),
        "{lines:?}"
    );
    // A Langfuse file read as Braintrust: its references are skipped, and said to be.
    let (path, text) = fixture("langfuse.jsonl");
    let mut notes = evaltap_golden::ImportNotes::default();
    let items = formats::by_name("braintrust")
        .expect("format")
        .import_noting(&path, &text, &FieldMap::default(), &mut notes)
        .expect("imports");
    assert!(items.iter().all(|i| i.reference.is_none()));
    assert!(notes.skipped.contains_key("expectedOutput"), "{notes:?}");
    // promptfoo's model-graded assertions are kept, not run — and said so.
    let (path, text) = fixture("promptfoo.yaml");
    let mut notes = evaltap_golden::ImportNotes::default();
    formats::by_name("promptfoo")
        .expect("format")
        .import_noting(&path, &text, &FieldMap::default(), &mut notes)
        .expect("imports");
    assert!(
        notes.skipped.get("assert llm-rubric").is_some_and(|(why, n)| why.contains("not run") && *n == 1),
        "{notes:?}"
    );
}

#[test]
fn promptfoo_exports_checks_as_assertions_promptfoo_runs() {
    let mut item = Item::from_input("q", "Reply in JSON");
    item.reference = Some("{\"a\": 1}".into());
    item.checks = vec![
        Check::Contains { value: "a".into(), case_sensitive: true },
        Check::Contains { value: "A".into(), case_sensitive: false },
        Check::Regex { pattern: "^\\{".into() },
        Check::JsonValid,
        Check::MaxLength { chars: 80 },
        Check::Equals { value: None, trim: true, case_sensitive: true, unicode: true },
    ];
    let promptfoo = formats::by_name("promptfoo").expect("format");
    let exported = promptfoo.export(std::slice::from_ref(&item)).expect("exports");
    let test: serde_json::Value = serde_json::from_str(exported.trim()).expect("json");
    let types: Vec<&str> = test["assert"]
        .as_array()
        .expect("asserts")
        .iter()
        .map(|a| a["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["contains", "icontains", "regex", "is-json", "javascript", "equals"]);
    assert_eq!(test["assert"][4]["value"], "output.length <= 80");
    assert_eq!(test["assert"][5]["value"], "{\"a\": 1}", "equals against the reference");
    // Back in, the same checks, not twice as many.
    let back = promptfoo.import("x.jsonl", &exported, &FieldMap::default()).expect("re-imports");
    assert_eq!(back[0].checks, item.checks);
}
