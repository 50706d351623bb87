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
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The import graph of the crate whose sources are in `src`.
pub fn graph(src: &Path) -> Graph {
    let files = rust_files(src);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        // A `tests.rs` is a test module of its own.
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
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

/// The same graph with each module folded into its top-level one (`a::b` → `a`), for a
/// rule between a crate's stages rather than between its files.
pub fn top_level(graph: &Graph) -> Graph {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_string();
    let mut out = Graph::new();
    for (module, targets) in graph {
        let from = top(module);
        let entry = out.entry(from.clone()).or_default();
        entry.extend(targets.iter().map(|t| top(t)).filter(|t| *t != from));
    }
    out
}

/// Every group of modules that import each other (directly or around a loop), each as a
/// sorted list; empty when the graph has no cycle.
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
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

/// Every `.rs` file under `dir`.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
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

/// The `crate::…` and `super::…` paths of a file's code (use items and paths inline),
/// groups expanded (`use crate::{a::X, b};` → `crate::a::X`, `crate::b`), comments and
/// `#[cfg(test)] mod … { … }` blocks left out.
fn use_paths(text: &str) -> Vec<String> {
    let mut code = String::new();
    let mut lines = text.lines();
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
        // Comments name modules without importing them.
        code.push_str(without_comment(line));
        code.push('\n');
    }
    let mut out = Vec::new();
    for start in ["crate::", "super::"]
        .iter()
        .flat_map(|root| code.match_indices(root).map(|(i, _)| i))
    {
        // Only where a path starts: not `foo::super::`, not `mycrate::`.
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[start..];
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    end = i;
                    break;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                c if depth > 0 || c.is_alphanumeric() || c == '_' || c == ':' => {}
                _ => {
                    end = i;
                    break;
                }
            }
        }
        // `X as Y` becomes `X@Y` before the spaces go, so `as` inside names stays.
        let tree = rest[..end]
            .replace(" as ", "@")
            .replace(char::is_whitespace, "");
        expand("", tree.trim_end_matches(':'), &mut out);
    }
    out
}

/// A line up to its `//` comment; a `//` inside a string (`"http://…"`) is not one.
fn without_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (true, b'\\') => i += 1,
            (_, b'"') => in_string = !in_string,
            // `'"'` opens no string.
            (false, b'\'') if bytes.get(i + 1..i + 3) == Some(&b"\"'"[..]) => i += 2,
            (false, b'/') if bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
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
            ("b/tests.rs", "use crate::c;\n"),
            (
                "c.rs",
                "fn f() -> u8 { crate::base::N } // not crate::a\n\
                 #[cfg(test)]\nmod tests {\n    use crate::a::X;\n}\n",
            ),
            ("base.rs", ""),
        ]);
        let g = graph(&src);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(g["a"], names(&["b", "base", "c"]));
        assert_eq!(g["b::inner"], names(&["a"]));
        assert!(g["b"].is_empty(), "tests.rs does not count: {g:?}");
        assert_eq!(
            g["c"],
            names(&["base"]),
            "inline paths count, comments and tests not"
        );
        // Between files: a → b and b::inner → a, no cycle. Between stages: a ↔ b.
        assert!(cycles(&g).is_empty(), "{:?}", cycles(&g));
        assert_eq!(cycles(&top_level(&g)), [["a", "b"]]);

        let src = crate_with(&[
            ("lib.rs", ""),
            ("a.rs", "pub use crate::b::{\n    One,\n    Two,\n};\n"),
            ("b.rs", "use crate::c::Three;\n"),
            ("c.rs", "use crate::a;\n"),
            ("d.rs", "use crate::a::One;\n"),
        ]);
        assert_eq!(cycles(&graph(&src)), [["a", "b", "c"]]);
        std::fs::remove_dir_all(&src).unwrap();
    }

    #[test]
    fn reads_past_test_declarations_super_climbs_and_urls() {
        let src = crate_with(&[
            ("lib.rs", ""),
            // A test module declared, not inlined: the rest of the file still counts.
            ("q/mod.rs", "#[cfg(test)]\nmod tests;\n\nuse crate::x::Y;\n"),
            ("q/inner.rs", "use super::super::w::V;\n"),
            (
                "u.rs",
                "fn f() { let u = \"http://a\"; crate::z::f(); } // crate::x\n",
            ),
            ("w.rs", ""),
            ("x.rs", ""),
            ("z.rs", ""),
        ]);
        let g = graph(&src);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(g["q"], names(&["x"]), "{g:?}");
        assert_eq!(
            g["q::inner"],
            names(&["w"]),
            "a super:: climb out of q counts"
        );
        assert_eq!(
            g["u"],
            names(&["z"]),
            "code after a `//` inside a string counts"
        );
        std::fs::remove_dir_all(&src).unwrap();
    }
}
