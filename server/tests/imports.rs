//! The import graph of `server/src`'s top-level modules has no cycle, and data moves one
//! way: intake → queue → pipeline → report. Reads the `crate::…` paths of every file
//! (leaving out `#[cfg(test)]` modules); `STACKGATE_SRC` points it at another tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and test modules (they sit at the end of a file,
/// or in a `tests.rs` of their own).
fn code(path: &Path) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.contains("mod ")) {
            break;
        }
        // Comments name modules without importing them.
        let code = line.split("//").next().unwrap_or("");
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The top-level modules named after `crate::`, in paths and in `use crate::{…}` groups.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first segment of each item.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => {
                        out.insert(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let entry = g.entry(top.clone()).or_default();
        entry.extend(imports(&code(&f)).into_iter().filter(|m| *m != top));
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn src() -> PathBuf {
    std::env::var_os("STACKGATE_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

fn show(g: &Graph) -> String {
    g.iter()
        .map(|(k, v)| format!("{k} -> {}", v.iter().cloned().collect::<Vec<_>>().join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_top_level_modules_import_each_other_without_cycles() {
    let g = graph(&src());
    assert!(g.len() > 5, "no modules read from {}", src().display());
    let found = cycles(&g);
    assert!(
        found.is_empty(),
        "import cycles between top-level modules: {}\n{}",
        found
            .iter()
            .map(|c| c.join(" ↔ "))
            .collect::<Vec<_>>()
            .join("; "),
        show(&g)
    );
}

#[test]
fn data_moves_one_way_through_the_stages() {
    let g = graph(&src());
    let imports = |m: &str| g.get(m).cloned().unwrap_or_default();
    let wrong: Vec<String> = [
        (
            "report",
            &["pipeline", "intake", "api", "workers", "app"][..],
        ),
        (
            "queue",
            &["pipeline", "report", "intake", "api", "workers", "app"][..],
        ),
        ("pipeline", &["intake", "api", "workers", "app", "cli"][..]),
    ]
    .iter()
    .flat_map(|(m, never)| {
        let has = imports(m);
        never
            .iter()
            .filter(move |n| has.contains(**n))
            .map(move |n| format!("{m} imports {n}"))
    })
    .chain(
        g.iter()
            .filter(|(m, deps)| deps.contains("app") && !["cli", "fuzz"].contains(&m.as_str()))
            .map(|(m, _)| format!("{m} imports app (only the CLI and the fuzz harness may)")),
    )
    .collect();
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), show(&g));
    // The queue sees only typed names, configuration and plain types.
    let queue: Vec<String> = imports("queue")
        .into_iter()
        .filter(|m| !["domain", "config"].contains(&m.as_str()))
        .collect();
    assert!(queue.is_empty(), "queue imports {queue:?}");
}

#[test]
fn the_reader_sees_use_groups_and_paths() {
    let code = "use crate::{a, b::c, d::{e, f}};\nfn x() { crate::g::h(); }\n";
    let got: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(got, ["a", "b", "d", "g"]);
    let mut g = Graph::new();
    g.entry("x".into()).or_default().insert("y".into());
    g.entry("y".into()).or_default().insert("z".into());
    g.entry("z".into()).or_default().insert("x".into());
    assert_eq!(cycles(&g), [vec!["x", "y", "z"]]);
}
