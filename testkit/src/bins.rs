//! The workspace's binaries that belong to another package than the test
//! at hand: cargo hands a test only its own package's binaries.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The target directory cargo builds into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Has cargo build `bin` of `package`, for `target` when given.
pub fn build(package: &str, bin: &str, target: Option<&str>) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--package", package, "--bin", bin]);
    if let Some(target) = target {
        cmd.args(["--target", target]);
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building {bin} {target:?} failed");
}

/// Has cargo build `xene-agent`, for `target` when given.
pub fn build_agent(target: Option<&str>) {
    build("xene-agent", "xene-agent", target);
}

/// The debug `xene-agent` binary: `cargo nextest run --workspace` (what
/// `cargo xtask test` runs) builds it beside the tests; a run of one
/// package alone builds it here when it is missing. `XENE_AGENT_BIN`
/// overrides.
pub fn agent_binary() -> PathBuf {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND
        .get_or_init(|| debug_binary("XENE_AGENT_BIN", "xene-agent", "xene-agent"))
        .clone()
}

/// The debug `xene` binary, found or built as [`agent_binary`] is.
/// `XENE_BIN` overrides.
pub fn xene_binary() -> PathBuf {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND
        .get_or_init(|| debug_binary("XENE_BIN", "xene-server", "xene"))
        .clone()
}

fn debug_binary(variable: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let path = target_dir().join("debug").join(bin);
    if !path.is_file() {
        build(package, bin, None);
    }
    path
}
