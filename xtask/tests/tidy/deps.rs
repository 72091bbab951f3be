//! The crates each crate must never link (ARCHITECTURE.md).

use std::process::Command;

use crate::root;

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

#[test]
fn the_testkit_links_neither_the_server_nor_the_agent() {
    // The server's and the agent's tests depend on it: a dependency back
    // would build each of them twice.
    assert_absent(
        &["-p", "xene-testkit", "-e", "normal"],
        &["xene-server", "xene-agent", "xene-app"],
    );
}
