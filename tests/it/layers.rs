//! No import cycles between the crate's top-level modules (issue 29,
//! item 5): each `crate::x` a module's code names (in `use` lists too) is
//! an arrow from it to `x`; the arrows must form no cycle, so every layer
//! can be read, tested and changed knowing only those below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let first = rel.components().next().expect("a component");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read file");
            let to = edges.entry(module.clone()).or_default();
            for target in named_modules(&text) {
                if target != module {
                    to.insert(target);
                }
            }
        }
    }
    edges
}

/// The top-level modules `text` names as `crate::x` or in `crate::{x, y}`,
/// outside comments.
fn named_modules(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::B, c}`: each top-level name of the group
                // (a group spread over lines is read from `text` below).
                let body = group.split('}').next().unwrap_or("");
                for item in body.split(',') {
                    let name = ident(item.trim());
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name = ident(rest);
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    // `use crate::{` groups that span lines.
    let mut rest = text;
    while let Some(at) = rest.find("use crate::{") {
        rest = &rest[at + "use crate::{".len()..];
        let mut depth = 1;
        let mut item = String::new();
        for c in rest.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                break;
            }
            if depth == 1 && c == ',' {
                let name = ident(item.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
                item.clear();
            } else if depth == 1 {
                item.push(c);
            }
        }
        let name = ident(item.trim());
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out.retain(|m| m != "self" && m != "super");
    out
}

/// Every cycle's modules (strongly connected components of two or more).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Reachability by depth-first search from each module: small graph.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(m) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|m| (m, reach(m))).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for (m, r) in &reaches {
        let mut scc: Vec<String> = r
            .iter()
            .filter(|o| *o != *m && reaches.get(o).is_some_and(|back| back.contains(*m)))
            .cloned()
            .collect();
        if !scc.is_empty() {
            scc.push((*m).clone());
            scc.sort();
            found.insert(scc);
        }
    }
    found.into_iter().collect()
}

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(edges.len() > 10, "read the crate's modules: {edges:?}");
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "import cycles between top-level modules: {found:?}\n(edges: {edges:#?})"
    );
}

#[test]
fn metrics_is_a_leaf() {
    // Each subsystem registers and records its own families; `metrics`
    // itself knows none of them.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    let from = edges.get("metrics").expect("a metrics module");
    assert!(from.is_empty(), "metrics imports {from:?}");
    let users: Vec<&String> = edges
        .iter()
        .filter(|(_, to)| to.contains("metrics"))
        .map(|(from, _)| from)
        .collect();
    assert!(users.len() >= 5, "subsystems register their own: {users:?}");
}

#[test]
fn the_check_finds_a_cycle_and_grouped_imports() {
    let named = named_modules(
        "use crate::{\n    audit::X,\n    store::{A, B},\n};\nlet x = crate::metrics::m(); // crate::ignored\n",
    );
    let want: BTreeSet<String> = ["audit", "store", "metrics"].map(String::from).into();
    assert_eq!(named, want);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.insert("a".into(), ["b".to_owned()].into());
    edges.insert("b".into(), ["c".to_owned()].into());
    edges.insert("c".into(), ["a".to_owned()].into());
    edges.insert("d".into(), ["a".to_owned()].into());
    assert_eq!(cycles(&edges), [["a", "b", "c"].map(String::from).to_vec()]);
}
