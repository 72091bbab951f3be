//! The documents' relative links resolve: every `[text](path)` and
//! `![alt](path)` of the README, CONTRIBUTING.md, ARCHITECTURE.md,
//! agent/README.md and docs/*.md names a file or folder that exists, and a
//! `#anchor` names a heading of its page. And the README stays a front door.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::{relative, root};

/// The README is a front door; the manual lives in docs/.
const README_MAX_LINES: usize = 150;

fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files: Vec<PathBuf> = [
        "README.md",
        "CONTRIBUTING.md",
        "ARCHITECTURE.md",
        "agent/README.md",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The text outside fenced code blocks and inline code spans, line by line:
/// links and headings there are examples, not links.
fn prose(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            lines.push(String::new());
            continue;
        }
        if fenced {
            lines.push(String::new());
            continue;
        }
        // Drop what is between backticks (an odd one out keeps the rest).
        let parts: Vec<&str> = line.split('`').collect();
        let kept = if parts.len() % 2 == 1 {
            parts
                .iter()
                .step_by(2)
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            line.to_string()
        };
        lines.push(kept);
    }
    lines
}

/// Every link target of the prose, with its line number.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in prose(text).iter().enumerate() {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find([')', ' ']).unwrap_or(rest.len());
            found.push((n + 1, rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    found
}

/// GitHub's anchors for a page's headings: lower case, punctuation dropped,
/// spaces as dashes, `-1`, `-2`... for repeats.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for line in prose(&text.replace('`', "")) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut repeat = 0;
        while seen.contains(&anchor) {
            repeat += 1;
            anchor = format!("{slug}-{repeat}");
        }
        seen.insert(anchor);
    }
    seen
}

fn check(file: &Path, text: &str) -> Vec<String> {
    let mut broken = Vec::new();
    let dir = file.parent().unwrap();
    for (line, target) in links(text) {
        if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let at = format!("{}:{line}: {target}", relative(file));
        let linked = dir.join(path);
        let page = if path.is_empty() {
            text.to_string()
        } else if !linked.exists() {
            broken.push(format!("{at}: no such file"));
            continue;
        } else if linked.extension().is_some_and(|e| e == "md") {
            std::fs::read_to_string(&linked).unwrap()
        } else {
            continue;
        };
        if let Some(anchor) = anchor
            && !anchors(&page).contains(anchor)
        {
            broken.push(format!("{at}: no heading with that anchor"));
        }
    }
    broken
}

#[test]
fn relative_links_in_the_docs_resolve() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        checked += links(&text).len();
        broken.extend(check(&file, &text));
    }
    assert!(
        checked > 20,
        "found only {checked} links: is the parser right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_stays_a_front_door() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines, at most {} allowed: move the manual's part to docs/",
        README_MAX_LINES - 1
    );
}

#[test]
fn the_link_checker_sees_broken_links_and_anchors() {
    let file = root().join("docs/example.md");
    let text = "# A page\n\n## Its `second` part\n\n[ok](#its-second-part) [ok](spec.md#limits) \
                [bad](#nowhere) [bad](missing.md)\n```\n[ignored](in-a-fence.md)\n```\n\
                `[ignored](in-code.md)` ![bad](images/missing.png)\n";
    let broken = check(&file, text);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("#nowhere"), "{broken:#?}");
    assert!(broken[1].contains("missing.md"), "{broken:#?}");
    assert!(broken[2].contains("images/missing.png"), "{broken:#?}");
}
