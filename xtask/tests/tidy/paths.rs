//! No module reaches into another crate by file path: `#[path]` across a
//! crate boundary compiles one file into two crates, where it drifts in
//! silence (unused in one, `allow(dead_code)` to hush it). Shared test
//! code lives in the `xene-testkit` crate instead.

use std::path::{Component, Path, PathBuf};

use crate::{relative, root, rust_files};

#[test]
fn no_path_attribute_leaves_its_crate() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    // Spelled in two halves so this file does not match itself.
    let attribute = format!("#[{} = ", "path");
    let mut offenders = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let home = crate_dir(&file, &root);
        for (n, line) in text.lines().enumerate() {
            let Some(rest) = line.trim_start().strip_prefix(attribute.as_str()) else {
                continue;
            };
            let target = rest.trim_start_matches('"').split('"').next().unwrap_or("");
            let resolved = normalize(&file.parent().unwrap().join(target));
            if !resolved.starts_with(&home) {
                offenders.push(format!(
                    "{}:{}: {} (leaves {})",
                    relative(&file),
                    n + 1,
                    line.trim(),
                    relative(&home.join("Cargo.toml"))
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "`#[path]` reaching into another crate (put the shared code in testkit/ and depend on it):\n{}",
        offenders.join("\n")
    );
}

/// The directory of the crate `file` belongs to: the nearest one above it
/// with a `Cargo.toml`.
fn crate_dir(file: &Path, root: &Path) -> PathBuf {
    let mut dir = file.parent().unwrap();
    while !dir.join("Cargo.toml").is_file() && dir != root {
        dir = dir.parent().unwrap();
    }
    dir.to_path_buf()
}

/// `path` with its `.` and `..` resolved by text (the target may not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn a_path_into_a_sibling_crate_is_found() {
    let root = root();
    let file = root.join("cli/tests/cli/util.rs");
    let home = crate_dir(&file, &root);
    assert_eq!(home, root.join("cli"));
    let target = normalize(
        &file
            .parent()
            .unwrap()
            .join("../../../server/tests/support/x.rs"),
    );
    assert!(!target.starts_with(&home), "{}", target.display());
    let inside = normalize(&file.parent().unwrap().join("../support/x.rs"));
    assert!(inside.starts_with(&home), "{}", inside.display());
}
