//! The page budget counts the code editor's script (`code.js`) only for
//! the lazy groups `xtask/src/site.rs` lists in `CODE_EDITOR_GROUPS`: every
//! page that shows a `CodeEditor` (or a `CodeField`, which holds one) must
//! be in one of them, or its size would be printed, and checked, without
//! the script it loads.

use std::collections::BTreeMap;

use crate::{relative, root, rust_files};

/// Each page module's lazy group, from the `lazy_groups!` table of
/// `app/src/pages.rs` (`group(Enum) { Route => module::Page, }`).
fn groups_of_modules() -> BTreeMap<String, String> {
    let pages = std::fs::read_to_string(root().join("app/src/pages.rs")).unwrap();
    let table = &pages[pages
        .find("lazy_groups! {")
        .expect("pages.rs has the table")..];
    let mut group = String::new();
    let mut out = BTreeMap::new();
    let mut depth = 1;
    for line in table.lines().skip(1) {
        let line = line.trim();
        if line.ends_with('{') && line.contains('(') {
            group = line[..line.find('(').unwrap()].trim().to_string();
        } else if let Some((_, page)) = line.split_once("=>") {
            let module = page.trim().split("::").next().unwrap().to_string();
            out.insert(module, group.clone());
        }
        depth += line.matches('{').count();
        depth -= line.matches('}').count();
        if depth == 0 {
            break;
        }
    }
    assert!(!out.is_empty(), "no page found in the lazy_groups! table");
    out
}

/// The groups `site.rs` counts `code.js` for.
fn counted_groups() -> Vec<String> {
    let site = std::fs::read_to_string(root().join("xtask/src/site.rs")).unwrap();
    let at = site
        .find("CODE_EDITOR_GROUPS: &[&str] = &[")
        .expect("site.rs lists CODE_EDITOR_GROUPS");
    let list = &site[at..];
    let list = &list[list.find("= &[").unwrap() + 4..list.find("];").unwrap()];
    list.split(',')
        .map(|g| g.trim().trim_matches('"').to_string())
        .filter(|g| !g.is_empty())
        .collect()
}

#[test]
fn every_page_with_a_code_editor_counts_its_script() {
    let groups = groups_of_modules();
    let counted = counted_groups();
    let mut files = Vec::new();
    rust_files(&root().join("app/src"), &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let path = relative(&file);
        if path == "app/src/ui/code.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // A `CodeField` holds a `CodeEditor` too.
        if !text.contains("<CodeEditor") && !text.contains("<CodeField") {
            continue;
        }
        let module = path
            .strip_prefix("app/src/pages/")
            .and_then(|p| p.split(['/', '.']).next());
        match module.and_then(|m| groups.get(m)) {
            Some(group) if counted.contains(group) => {}
            Some(group) => wrong.push(format!(
                "{path}: its group `{group}` is not in CODE_EDITOR_GROUPS (xtask/src/site.rs)"
            )),
            None => wrong.push(format!(
                "{path}: a code editor outside a page of app/src/pages/ (its size would not be counted)"
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
