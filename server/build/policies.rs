//! Which guests `server/build.rs` builds, from the workspace manifest's
//! `[workspace.metadata.stackgate]`: `policies` (folders under `policies/`, embedded as the
//! defaults in that order) and `test-guests` (paths, for the sandbox tests only). Also
//! compiled into a test (tests/policy_gate.rs), so it uses only std and `toml`.

use std::path::{Path, PathBuf};

/// One crate to build for wasm32.
#[derive(Debug, PartialEq)]
pub struct Guest {
    /// The policy's name (its folder's name), as findings and configuration name it.
    pub name: String,
    /// The package name, for `cargo build -p`.
    pub krate: String,
    pub dir: PathBuf,
}

#[derive(Debug)]
pub struct Registry {
    pub policies: Vec<Guest>,
    pub test_guests: Vec<Guest>,
    /// Crates under `policies/` (besides the SDK) that `policies` does not list: built and
    /// tested as workspace members, but not embedded.
    pub unlisted: Vec<String>,
}

pub fn read(workspace: &Path) -> Result<Registry, String> {
    let manifest = workspace.join("Cargo.toml");
    let doc = parse(&manifest)?;
    let meta = doc
        .get("workspace")
        .and_then(|w| w.get("metadata"))
        .and_then(|m| m.get("stackgate"))
        .ok_or_else(|| format!("{}: no [workspace.metadata.stackgate]", manifest.display()))?;
    let list = |key: &str| -> Result<Vec<String>, String> {
        let items = meta
            .get(key)
            .and_then(toml::Value::as_array)
            .ok_or_else(|| {
                format!(
                    "{}: [workspace.metadata.stackgate] {key} must be a list",
                    manifest.display()
                )
            })?;
        items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    format!("{}: {key} must hold strings, got {v}", manifest.display())
                })
            })
            .collect()
    };
    let names = list("policies")?;
    let mut policies = Vec::new();
    for name in &names {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid || name == "sdk" {
            return Err(format!(
                "{}: policy {name:?} must be a folder name under policies/ (a-z, 0-9, -)",
                manifest.display()
            ));
        }
        if policies.iter().any(|p: &Guest| &p.name == name) {
            return Err(format!(
                "{}: policy {name:?} is listed twice",
                manifest.display()
            ));
        }
        policies.push(guest(name, &workspace.join("policies").join(name))?);
    }
    let mut test_guests = Vec::new();
    for path in list("test-guests")? {
        let dir = workspace.join(&path);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{}: test guest {path:?} has no name", manifest.display()))?;
        test_guests.push(guest(&name, &dir)?);
    }
    let mut unlisted = Vec::new();
    let folders = std::fs::read_dir(workspace.join("policies"))
        .map_err(|e| format!("{}/policies: {e}", workspace.display()))?;
    for entry in folders.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "sdk" && entry.path().join("Cargo.toml").is_file() && !names.contains(&name) {
            unlisted.push(name);
        }
    }
    unlisted.sort();
    Ok(Registry {
        policies,
        test_guests,
        unlisted,
    })
}

fn guest(name: &str, dir: &Path) -> Result<Guest, String> {
    let manifest = dir.join("Cargo.toml");
    let krate = parse(&manifest)?
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no [package] name", manifest.display()))?;
    Ok(Guest {
        name: name.to_string(),
        krate,
        dir: dir.to_path_buf(),
    })
}

fn parse(manifest: &Path) -> Result<toml::Table, String> {
    let text =
        std::fs::read_to_string(manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("{}: {e}", manifest.display()))
}
