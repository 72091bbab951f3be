//! Repository rules, checked as ordinary tests (rust-analyzer's "tidy"
//! habit): what ARCHITECTURE.md says each crate must never do, and the
//! documents that must stay equal to the code.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The names of the packages in `cargo tree`'s output for these arguments.
fn tree(args: &[&str]) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root())
        .args(["tree", "--locked", "--prefix", "none", "--format", "{p}"])
        .args(args)
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn assert_absent(args: &[&str], banned: &[&str]) {
    let packages = tree(args);
    assert!(
        packages.len() > 3,
        "cargo tree {args:?} listed almost nothing: {packages:?}"
    );
    let found: Vec<&&str> = banned
        .iter()
        .filter(|name| packages.iter().any(|p| p == *name))
        .collect();
    assert!(
        found.is_empty(),
        "cargo tree {args:?} contains {found:?}; see ARCHITECTURE.md"
    );
}

#[test]
fn core_has_no_io_crates_in_its_tree() {
    assert_absent(
        &["-p", "xene-core", "-e", "normal"],
        &["tokio", "sqlx", "axum", "bollard", "leptos", "hyper", "mio"],
    );
}

#[test]
fn the_agent_links_neither_sqlx_nor_leptos() {
    assert_absent(
        &["-p", "xene-agent", "-e", "normal"],
        &["sqlx", "sqlx-core", "leptos", "leptos_axum", "axum"],
    );
}

#[test]
fn xenectl_links_no_server_side_crate() {
    assert_absent(
        &["-p", "xenectl", "-e", "normal"],
        &[
            "xene-server",
            "xene-agent",
            "xene-app",
            "sqlx",
            "sqlx-core",
            "leptos",
            "axum",
            "bollard",
            "openssl",
            "aws-lc-rs",
        ],
    );
}

#[test]
fn the_hydrate_bundle_links_neither_tokio_nor_sqlx_nor_bollard() {
    assert_absent(
        &[
            "-p",
            "xene-app",
            "--target",
            "wasm32-unknown-unknown",
            "--features",
            "hydrate",
            "-e",
            "normal",
        ],
        &["tokio", "sqlx", "bollard", "mio", "leptos_axum"],
    );
}

/// Every `.rs` file of the workspace (not build output).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Files that may use `unsafe`, each with its reason.
const UNSAFE_ALLOWED: &[(&str, &str)] = &[
    (
        "server/benches/agents.rs",
        "raises the open-files limit and reads clock ticks for a benchmark",
    ),
    (
        "agent/src/runtime/shell.rs",
        "`pre_exec` (setsid in the forked child) is unsafe by contract; no safe API starts a session",
    ),
    (
        "agent/src/runtime/supervisor.rs",
        "the step supervisor: `pre_exec` in the child, process-wide credential changes (setgroups, setresgid, setresuid), signal masks and sigtimedwait, close_range: no safe API makes these process-wide calls",
    ),
    (
        "agent/src/runtime/supervisor/confine.rs",
        "installs the steps' seccomp filter: prctl takes a pointer to the BPF program",
    ),
    (
        "agent/tests/integration/sandbox.rs",
        "opens a pseudo-terminal (posix_openpt, grantpt, unlockpt, ptsname_r) for the test that steps cannot reach one",
    ),
];

#[test]
fn no_file_outside_the_allow_list_uses_unsafe() {
    // Spelled in two halves so this file does not match itself.
    let word = format!("{}{}", "un", "safe");
    let patterns = [
        format!("{word} {{"),
        format!("{word} fn"),
        format!("{word} impl"),
        format!("{word} extern"),
        format!("allow({word}_code)"),
        format!("{word}_code = \"allow\""),
    ];
    let root = root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let mut offenders = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if UNSAFE_ALLOWED
            .iter()
            .any(|(allowed, _)| *allowed == relative)
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if patterns.iter().any(|p| code.contains(p.as_str())) {
                offenders.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "`{word}` outside the allow-list (add a file to UNSAFE_ALLOWED with a reason only if there is no safe way):\n{}",
        offenders.join("\n")
    );
    // The workspace lint backs this up for everything the compiler sees.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(&format!("{word}_code = \"deny\"")));
}

#[test]
fn every_public_item_of_core_has_a_doc_comment() {
    // The compiler checks it: this test makes sure the check stays on.
    let lib = std::fs::read_to_string(root().join("core/src/lib.rs")).unwrap();
    assert!(
        lib.lines().any(|l| l.trim() == "#![deny(missing_docs)]"),
        "core/src/lib.rs must keep #![deny(missing_docs)]"
    );
}
