//! The import graph of `server/src`'s top-level modules has no cycle, and data moves one
//! way: intake → queue → pipeline → report. The graph comes from the shared reader in
//! `tests/support/imports.rs` (its `use crate::`/`super::` lines and inline `crate::` paths,
//! `#[cfg(test)]` modules left out); `STACKGATE_SRC` points it at another tree.

use std::path::{Path, PathBuf};

#[path = "../../tests/support/imports.rs"]
mod imports;

use imports::Graph;

fn graph(src: &Path) -> Graph {
    imports::top_level(&imports::graph(src))
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
    let found = imports::cycles(&g);
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
fn no_file_imports_itself_around_a_loop() {
    let files = imports::graph(&src());
    let found = imports::cycles(&files);
    assert!(
        found.is_empty(),
        "files that import each other: {}",
        found
            .iter()
            .map(|c| c.join(" ↔ "))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn no_module_re_exports_another_modules_names() {
    // A `pub use crate::…` outside the root keeps an old path alive: importers should name
    // the item where it lives.
    let src = src();
    let shims: Vec<String> = imports::rust_files(&src)
        .iter()
        .filter(|f| f.parent() != Some(src.as_path()) || !f.ends_with("lib.rs"))
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let rel = f.strip_prefix(&src).unwrap_or(f).display().to_string();
            text.lines()
                .filter(|l| {
                    let l = l.trim_start();
                    l.starts_with("pub use crate::") || l.starts_with("pub use super::")
                })
                .map(|l| format!("{rel}: {}", l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        shims.is_empty(),
        "re-exports of other modules' names:\n{}",
        shims.join("\n")
    );
}
