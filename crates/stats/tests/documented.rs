//! `docs/statistics.md` lists the reference values the statistics are checked against: every
//! vector it lists has a unit test named after its number, so the document cannot promise a
//! check that does not exist.

use std::collections::BTreeSet;
use std::path::Path;

fn numbers(spec: &str) -> Vec<u32> {
    // `9`, `4–8`, `23–24`, `9_to_12`, `23_and_24`
    let spec = spec.replace('–', "_to_");
    if let Some((a, b)) = spec.split_once("_to_") {
        let (a, b) = (a.parse::<u32>().unwrap_or(0), b.parse::<u32>().unwrap_or(0));
        return (a..=b).collect();
    }
    if let Some((a, b)) = spec.split_once("_and_") {
        return [a, b].iter().filter_map(|n| n.parse().ok()).collect();
    }
    spec.parse().into_iter().collect()
}

#[test]
fn every_documented_reference_value_has_its_unit_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../../docs/statistics.md")).expect("docs/statistics.md");
    let table = doc.split("## 8. Reference values").nth(1).expect("the reference-values section");
    let documented: BTreeSet<u32> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|rest| rest.split(" |").next())
        .flat_map(|cell| numbers(cell.trim()))
        .collect();
    assert_eq!(documented, (1..=34).collect::<BTreeSet<u32>>(), "the document lists vectors 1 to 34");
    let mut tested = BTreeSet::new();
    // Every source file under src/, folders included (a module's tests may sit in its folder).
    let mut folders = vec![root.join("src")];
    let mut files = Vec::new();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    for path in files {
        let source = std::fs::read_to_string(&path).expect("source");
        for name in source.split("fn spec_vector").skip(1) {
            let name = name.trim_start_matches('s').trim_start_matches('_');
            let spec: String = name
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '_' || c.is_ascii_lowercase())
                .collect();
            // `9_to_12_mcnemar` → `9_to_12`; `2_paired_t` → `2`.
            let mut parts = spec.split('_').peekable();
            let mut head = parts.next().unwrap_or_default().to_string();
            if let (Some(joiner), Some(_)) = (parts.next(), parts.peek())
                && (joiner == "to" || joiner == "and")
            {
                head = format!("{head}_{joiner}_{}", parts.next().unwrap_or_default());
            }
            tested.extend(numbers(&head));
        }
    }
    let missing: Vec<&u32> = documented.difference(&tested).collect();
    assert!(missing.is_empty(), "documented without a unit test: {missing:?}");
}
