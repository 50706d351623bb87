//! Builds the default policies from `policies/` to wasm32 and wraps each core module into a
//! component, so the binary embeds policies built from this very source tree. No `.wasm` is
//! ever committed. Which ones: the workspace manifest's `[workspace.metadata.stackgate]`
//! (see build/policies.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[path = "build/policies.rs"]
mod policies;

fn main() {
    if let Err(e) = build() {
        // A build script can only say why by panicking.
        panic!("\n\nstackgate: building the embedded policies failed:\n{e}\n");
    }
}

fn build() -> Result<(), String> {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let workspace = manifest
        .parent()
        .ok_or("server/ has no parent folder")?
        .to_path_buf();
    let registry = policies::read(&workspace)?;
    println!("cargo:rerun-if-changed=../policies");
    println!("cargo:rerun-if-changed=../Cargo.toml");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    for guest in &registry.test_guests {
        println!("cargo:rerun-if-changed={}", guest.dir.display());
    }
    for name in &registry.unlisted {
        println!(
            "cargo:warning=policies/{name} is not embedded: add \"{name}\" to [workspace.metadata.stackgate] policies in Cargo.toml"
        );
    }
    println!("cargo:rerun-if-env-changed=STACKGATE_POLICY_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=STACKGATE_POLICY_TARGET_TOOLCHAIN");

    // A target dir of its own: the outer cargo holds the lock on the main one. Shared by
    // every profile so that `cargo build`, `test` and `clippy` build the guests only once.
    let target_dir = match std::env::var_os("STACKGATE_POLICY_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"))
            .join("policy-wasm"),
    };
    // `cargo +nightly fuzz` builds the host with a nightly that may lack the wasm target:
    // STACKGATE_POLICY_TARGET_TOOLCHAIN (e.g. `stable`) builds the guests with another toolchain.
    let mut cmd = match std::env::var("STACKGATE_POLICY_TARGET_TOOLCHAIN") {
        Ok(toolchain) => {
            let mut c = Command::new("rustup");
            c.args(["run", &toolchain, "cargo"]);
            c.env_remove("RUSTC").env_remove("RUSTUP_TOOLCHAIN");
            c
        }
        Err(_) => Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())),
    };
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for guest in registry.policies.iter().chain(&registry.test_guests) {
        cmd.args(["-p", &guest.krate]);
    }
    // Flags meant for the host build (coverage, clippy's wrapper) must not reach the guest.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo for the policies: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("wasm32-unknown-unknown")
            && stderr.contains("target may not be installed")
        {
            "\nhint: run `rustup target add wasm32-unknown-unknown` (deploy/local/setup.sh does)"
        } else {
            ""
        };
        return Err(format!("{stderr}{hint}"));
    }

    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let mut table = String::from("/// (name, sha256 of the component, component bytes)\n");
    table.push_str("pub const EMBEDDED: &[(&str, &str, &[u8])] = &[\n");
    for policies::Guest { name, krate, .. } in &registry.policies {
        let core = target_dir
            .join("wasm32-unknown-unknown/release")
            .join(format!("{}.wasm", krate.replace('-', "_")));
        let component = componentize(&core)?;
        let digest = hex::encode(Sha256::digest(&component));
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::write(&dest, &component).map_err(|e| format!("{}: {e}", dest.display()))?;
        table.push_str(&format!(
            "    ({name:?}, {digest:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.wasm\"))),\n"
        ));
    }
    table.push_str("];\n");
    for policies::Guest { name, krate, .. } in &registry.test_guests {
        let core = target_dir
            .join("wasm32-unknown-unknown/release")
            .join(format!("{}.wasm", krate.replace('-', "_")));
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::write(&dest, componentize(&core)?)
            .map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    table.push_str(
        "/// Test-only guests (see tests/doubles/hostile-guest), by file path.\n#[doc(hidden)]\npub const TEST_GUEST_DIR: &str = env!(\"OUT_DIR\");\n",
    );
    let generated = out_dir.join("embedded_policies.rs");
    std::fs::write(&generated, table).map_err(|e| format!("{}: {e}", generated.display()))?;
    Ok(())
}

fn componentize(core: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(core).map_err(|e| format!("{}: {e}", core.display()))?;
    wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|enc| enc.validate(true).encode())
        .map_err(|e| format!("{}: not a valid policy module: {e:#}", core.display()))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}
