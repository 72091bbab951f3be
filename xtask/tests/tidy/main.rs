//! Repository rules, checked as ordinary tests (rust-analyzer's "tidy"
//! habit): what ARCHITECTURE.md says each crate must never do, and the
//! documents that must stay equal to the code. One module per rule.

use std::path::{Path, PathBuf};

mod api_bodies;
mod code_editor;
mod cycles;
mod deps;
mod links;
mod pages;
mod paths;
mod sizes;
mod unsafe_code;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Every `.rs` file of the workspace (not build output).
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
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

/// `file`'s path relative to the workspace root, with `/` separators.
pub fn relative(file: &Path) -> String {
    file.strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}
