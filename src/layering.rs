//! A test that keeps ARCHITECTURE.md's boundary rule true: no import cycle between the
//! top-level modules listed in [`CHECKED`]. It reads `src/` and counts a `crate::<module>`
//! path anywhere in a file as an import, which over-counts (docs too) and so only errs on the
//! strict side.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every top-level module but the leaves that import nothing of ours.
const CHECKED: &[&str] = &[
    "router",
    "body",
    "admin",
    "proxy",
    "error",
    "metering",
    "upstream",
    "upload",
    "route",
    "config",
    "state",
    "store",
    "auth",
    "report",
    "server",
    "cli",
    "connections",
    "limits",
    "metrics",
    "access",
];

fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(rel) = path.strip_prefix(src) else {
                continue;
            };
            let Some(first) = rel.iter().next().and_then(|c| c.to_str()) else {
                continue;
            };
            let module = first.trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (at, _) in text.match_indices("crate::") {
                let dep: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if dep != module {
                    edges.entry(module.clone()).or_default().insert(dep);
                }
            }
        }
    }
    edges
}

/// A path from `from` back to `from` through checked modules, if there is one.
fn cycle_through(from: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last()?.clone();
        for next in edges.get(&last).into_iter().flatten() {
            if !CHECKED.contains(&next.as_str()) {
                continue;
            }
            if next == from {
                return Some([path.clone(), vec![next.clone()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push([path.clone(), vec![next.clone()]].concat());
            }
        }
    }
    None
}

#[test]
fn no_import_cycles_between_checked_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    assert!(
        edges.contains_key("proxy"),
        "src/ not found at {}",
        src.display()
    );
    for module in CHECKED {
        if let Some(cycle) = cycle_through(module, &edges) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
