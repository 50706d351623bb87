//! The SDK's modules import one way: no module reaches itself through its `use crate::`
//! lines (input → resolve → template, never back).

#[path = "../../../tests/support/imports.rs"]
mod imports;

#[test]
fn the_sdk_has_no_import_cycles() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports::graph(&src);
    assert!(
        graph["input"].contains("resolve"),
        "the graph is read: {graph:?}"
    );
    let cycles = imports::cycles(&graph);
    assert!(
        cycles.is_empty(),
        "modules that import each other: {cycles:?}"
    );
}
