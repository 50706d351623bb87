//! The module import graph of a crate's `src/`, read from its `use crate::…` and
//! `use super::…` lines, and the cycles in it. Std only, so that any crate's tests can
//! include it: `#[path = ".../tests/support/imports.rs"] mod imports;`.
//!
//! A module is a file (`a.rs` or `a/mod.rs` is `a`, `a/b.rs` is `a::b`; `lib.rs` and
//! `main.rs` are the root, which is left out: it only declares and re-exports). An edge runs
//! from a file to the longest module its path names. A `#[cfg(test)] mod …` block is
//! skipped: tests may import upstream.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it imports (the root and itself left out).
pub fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(src);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .filter_map(|f| Some((module_of(src, f)?, f.clone())))
        .collect();
    let known: BTreeSet<&str> = modules.keys().map(String::as_str).collect();
    modules
        .iter()
        .map(|(module, file)| {
            let text =
                std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let mut targets = BTreeSet::new();
            for path in use_paths(&text) {
                if let Some(target) = target(module, &path, &known)
                    && target != *module
                {
                    targets.insert(target);
                }
            }
            (module.clone(), targets)
        })
        .collect()
}

/// Every group of modules that import each other (directly or around a loop), each as a
/// sorted list; empty when the graph has no cycle.
pub fn cycles(src: &Path) -> Vec<Vec<String>> {
    let graph = graph(src);
    // Two modules are in one cycle when each reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (m, from_m) in &reaches {
        if !from_m.contains(*m) || out.iter().any(|c| c.contains(m)) {
            continue;
        }
        let group = from_m
            .iter()
            .filter(|o| reaches.get(o).is_some_and(|r| r.contains(*m)))
            .cloned()
            .collect();
        out.push(group);
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// `a/b.rs` → `a::b`, `a/mod.rs` → `a`; `None` for the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.is_empty() || (parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main")) {
        return None;
    }
    Some(parts.join("::"))
}

/// The paths of a file's `use` items outside test modules, groups expanded:
/// `use crate::{a::X, b};` → `crate::a::X`, `crate::b`.
fn use_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    let mut after_cfg_test = false;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            after_cfg_test = true;
            continue;
        }
        if after_cfg_test && trimmed.starts_with("mod ") && trimmed.ends_with('{') {
            // Skip to the brace that closes it, at the same indentation.
            let close = format!("{}}}", &line[..line.len() - trimmed.len()]);
            for inner in lines.by_ref() {
                if inner == close {
                    break;
                }
            }
            after_cfg_test = false;
            continue;
        }
        after_cfg_test = false;
        let item = trimmed
            .strip_prefix("pub ")
            .or_else(|| trimmed.strip_prefix("pub(crate) "))
            .unwrap_or(trimmed);
        let Some(rest) = item.strip_prefix("use ") else {
            continue;
        };
        let mut statement = rest.to_string();
        while !statement.contains(';') {
            match lines.next() {
                Some(more) => statement.push_str(more.trim()),
                None => break,
            }
        }
        let statement = statement.split(';').next().unwrap_or_default();
        // `X as Y` becomes `X@Y` before the spaces go, so `as` inside names stays.
        let statement = statement
            .replace(" as ", "@")
            .replace(char::is_whitespace, "");
        expand("", &statement, &mut out);
    }
    out
}

/// Expands one use tree (without spaces) under `prefix`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let Some(open) = tree.find('{') else {
        let path = tree.split('@').next().unwrap_or(tree);
        out.push(format!("{prefix}{path}"));
        return;
    };
    let head = format!("{prefix}{}", &tree[..open]);
    let inner = tree[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&tree[open + 1..]);
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&head, &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        expand(&head, &inner[start..], out);
    }
}

/// The module a use path names from `module`, if it is one of `known`.
fn target(module: &str, path: &str, known: &BTreeSet<&str>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = match segments.first() {
        Some(&"crate") => {
            segments.remove(0);
            Vec::new()
        }
        Some(&"super") => {
            // `super` of a file module is its parent module.
            let mut base: Vec<&str> = module.split("::").collect();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
            base
        }
        _ => return None,
    };
    base.extend(segments);
    (1..=base.len())
        .rev()
        .map(|n| base[..n].join("::"))
        .find(|m| known.contains(m.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "imports-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn finds_a_cycle_through_groups_super_and_nested_modules() {
        let src = crate_with(&[
            ("lib.rs", "pub mod a;\npub mod b;\npub use a::X;\n"),
            ("a.rs", "use crate::{b::{self, Y as Z}, c, base::Class};\n"),
            ("b/mod.rs", "pub mod inner;\n"),
            ("b/inner.rs", "use super::super::a::X;\n"),
            (
                "c.rs",
                "#[cfg(test)]\nmod tests {\n    use crate::a::X;\n}\n",
            ),
            ("base.rs", ""),
        ]);
        let g = graph(&src);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(g["a"], names(&["b", "base", "c"]));
        assert_eq!(g["b::inner"], names(&["a"]));
        assert!(g["c"].is_empty(), "test modules do not count: {g:?}");
        // a → b only; b::inner → a is no cycle with a's import of b itself.
        assert!(cycles(&src).is_empty(), "{:?}", cycles(&src));

        let src = crate_with(&[
            ("lib.rs", ""),
            ("a.rs", "pub use crate::b::{\n    One,\n    Two,\n};\n"),
            ("b.rs", "use crate::c::Three;\n"),
            ("c.rs", "use crate::a;\n"),
            ("d.rs", "use crate::a::One;\n"),
        ]);
        assert_eq!(cycles(&src), [["a", "b", "c"]]);
        std::fs::remove_dir_all(&src).unwrap();
    }
}
