//! No import circles between modules. Within each crate, every `crate::…`
//! and `super::…` path a module names is an arrow to the module it reaches;
//! two sibling modules (children of one parent) whose arrows reach each
//! other, directly or around a ring, are a circle. Arrows between a module
//! and its own ancestors or descendants do not count: a parent declares its
//! children, and a child may use what its parent defines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::{relative, root};

/// The crates whose `src/` is walked.
const CRATES: &[&str] = &[
    "core", "api", "server", "agent", "app", "cli", "xtask", "testkit",
];

type Module = Vec<String>;

/// Every module file under `src`, by module path (the crate root is `[]`).
fn modules(src: &Path) -> BTreeMap<Module, std::path::PathBuf> {
    let mut files = Vec::new();
    crate::rust_files(src, &mut files);
    let mut out = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let last = parts.pop().unwrap();
        let stem = last.trim_end_matches(".rs");
        // `bin/` holds separate binaries with their own roots.
        if parts.first().is_some_and(|p| p == "bin") {
            continue;
        }
        if parts.is_empty() && (stem == "lib" || stem == "main") {
            out.insert(Vec::new(), file);
            continue;
        }
        if stem != "mod" {
            parts.push(stem.to_string());
        }
        // Tests may reach anywhere they need to.
        if parts.iter().any(|p| p == "tests") {
            continue;
        }
        out.insert(parts, file);
    }
    out
}

/// The code of a file before its unit tests, without `//` comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        out.push_str(line.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The paths written after `at` in `text` (`a::b::{c, d::e}` gives `a::b::c`
/// and `a::b::d::e`), each as segments.
fn paths_after(text: &str, at: usize) -> Vec<Vec<String>> {
    fn parse(
        chars: &[char],
        mut i: usize,
        prefix: Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) -> usize {
        let mut path = prefix;
        loop {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '{' {
                i += 1;
                loop {
                    i = parse(chars, i, path.clone(), out);
                    while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                        i += 1;
                    }
                    if i >= chars.len() || chars[i] == '}' {
                        return i + 1;
                    }
                }
            }
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            if i == start {
                out.push(path);
                return i;
            }
            path.push(chars[start..i].iter().collect());
            if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
                i += 2;
            } else {
                out.push(path);
                return i;
            }
        }
    }
    let chars: Vec<char> = text[at..].chars().collect();
    let mut out = Vec::new();
    parse(&chars, 0, Vec::new(), &mut out);
    out
}

/// The modules `module` names, resolved to the longest known module prefix.
fn arrows(
    module: &Module,
    text: &str,
    known: &BTreeMap<Module, std::path::PathBuf>,
) -> BTreeSet<Module> {
    let code = code(text);
    let mut out = BTreeSet::new();
    for (word, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut from = 0;
        while let Some(found) = code[from..].find(word) {
            let at = from + found;
            from = at + word.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
                continue;
            }
            for path in paths_after(&code, at + word.len()) {
                let mut full = base.clone();
                full.extend(path.into_iter().filter(|s| s != "self"));
                let target = (0..=full.len())
                    .rev()
                    .map(|n| full[..n].to_vec())
                    .find(|prefix| known.contains_key(prefix))
                    .unwrap_or_default();
                out.insert(target);
            }
        }
    }
    out
}

/// Circles among the children of each module, as rings of names.
fn circles(src: &Path) -> Vec<String> {
    let known = modules(src);
    // parent -> child -> siblings it reaches
    let mut graph: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).unwrap();
        for target in arrows(module, &text, &known) {
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // ancestor or descendant
            }
            graph
                .entry(module[..common].to_vec())
                .or_default()
                .entry(module[common].clone())
                .or_default()
                .insert(target[common].clone());
        }
    }
    let mut found = Vec::new();
    for (parent, edges) in &graph {
        // Depth-first search for a back edge, reporting the ring it closes.
        fn visit(
            node: &str,
            edges: &BTreeMap<String, BTreeSet<String>>,
            stack: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            rings: &mut BTreeSet<Vec<String>>,
        ) {
            if let Some(at) = stack.iter().position(|n| n == node) {
                let mut ring = stack[at..].to_vec();
                let least = (0..ring.len()).min_by_key(|&i| &ring[i]).unwrap();
                ring.rotate_left(least);
                rings.insert(ring);
                return;
            }
            if done.contains(node) {
                return;
            }
            stack.push(node.to_string());
            for next in edges.get(node).into_iter().flatten() {
                visit(next, edges, stack, done, rings);
            }
            stack.pop();
            done.insert(node.to_string());
        }
        let mut rings = BTreeSet::new();
        let mut done = BTreeSet::new();
        for node in edges.keys() {
            visit(node, edges, &mut Vec::new(), &mut done, &mut rings);
        }
        let at = if parent.is_empty() {
            "crate".to_string()
        } else {
            parent.join("::")
        };
        for ring in rings {
            found.push(format!("in {at}: {} -> {}", ring.join(" -> "), ring[0]));
        }
    }
    found
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut found = Vec::new();
    let mut walked = 0;
    for name in CRATES {
        let src = root().join(name).join("src");
        if src.is_dir() {
            walked += 1;
            found.extend(
                circles(&src)
                    .into_iter()
                    .map(|c| format!("{}: {c}", relative(&src))),
            );
        }
    }
    assert!(walked >= 6, "walked only {walked} crates");
    assert!(
        found.is_empty(),
        "import circles (move what both sides need to one home):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_walker_sees_a_circle_and_groups() {
    let dir = std::env::temp_dir().join(format!("xene-tidy-cycles-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "mod inner;\nuse crate::{b::{self, Thing}};\n",
    )
    .unwrap();
    std::fs::write(
        src.join("a/inner.rs"),
        "use super::super::c::f; // crate::b in a comment\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "fn g() { let _ = crate::c::f(); }\n").unwrap();
    std::fs::write(src.join("c.rs"), "fn f() { crate::a::inner::go() }\n").unwrap();
    let found = circles(&src);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0], "in crate: a -> b -> c -> a");
}
