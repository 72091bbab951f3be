//! No page of the web UI imports another: what two pages share lives in
//! `app/src/ui`, `app/src/api` or another module beside `pages`, so a page
//! can change (or go) without reaching into its neighbours. A page may be a
//! folder of its own modules (`pages/editor/`), which use each other freely.

use crate::{relative, root, rust_files};

/// The page a path names, where `file` (under `app/src/pages/`) reaches
/// another page: `crate::pages::…` naming another page, `super::…` in a
/// page's top file, or `super::super::…` below it.
fn foreign_page(file: &str, text: &str) -> Option<String> {
    let inside = file.strip_prefix("app/src/pages/")?;
    let own = inside.split('/').next()?.trim_end_matches(".rs");
    // In a page's top file, `super` is `pages`: a folder page's `mod.rs`
    // is its top file as much as a one-file page is.
    let top_file =
        !inside.contains('/') || inside.matches('/').count() == 1 && inside.ends_with("/mod.rs");
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        // `crate::pages::x`, or `pages::x` after a `use crate::pages;`.
        if let Some((_, rest)) = code.split_once("pages::") {
            let page: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if page != own {
                return Some(line.trim().to_string());
            }
        }
        // `use super::*;` in a page's tests is the page itself.
        let up = code.contains("super::super::")
            || (top_file && code.contains("super::") && !code.contains("use super::*;"));
        if up {
            return Some(line.trim().to_string());
        }
    }
    None
}

#[test]
fn no_page_imports_another() {
    let mut files = Vec::new();
    rust_files(&root().join("app/src/pages"), &mut files);
    let found: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let name = relative(f);
            let text = std::fs::read_to_string(f).unwrap();
            foreign_page(&name, &text).map(|line| format!("{name}: {line}"))
        })
        .collect();
    assert!(files.len() > 5, "no pages under app/src/pages");
    assert!(
        found.is_empty(),
        "a page imports another:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_rule_sees_an_import_of_another_page() {
    let editor = "app/src/pages/editor/save.rs";
    assert!(foreign_page(editor, "use crate::pages::workflows::diff_lines;").is_some());
    assert!(foreign_page(editor, "use super::super::runs::Thing;").is_some());
    assert!(foreign_page(editor, "use super::doc::Doc;").is_none());
    assert!(foreign_page(editor, "use crate::pages::editor::doc::Doc;").is_none());
    assert!(foreign_page("app/src/pages/runs.rs", "use super::logs::LogPane;").is_some());
    assert!(foreign_page("app/src/pages/runs.rs", "    use super::*;").is_none());
    assert!(foreign_page("app/src/pages/runs.rs", "use logs::LogPane;").is_none());
    let folder_top = "app/src/pages/editor/mod.rs";
    assert!(foreign_page(folder_top, "use super::workflows::X;").is_some());
    assert!(foreign_page(folder_top, "use super::*;").is_none());
    assert!(foreign_page(folder_top, "mod doc;\nuse doc::Doc;").is_none());
    assert!(foreign_page(editor, "use crate::pages;\nfn f() { pages::runs::g() }").is_some());
}
