//! A line diff of two texts, as the workflow page's version diff and the
//! editor's review before saving show it.

use leptos::prelude::*;

/// A line diff of two texts, three lines of context around each change.
pub fn diff_lines(a: &str, b: &str, label: String) -> impl IntoView + use<> {
    let diff = similar::TextDiff::from_lines(a, b);
    let mut lines = Vec::new();
    for group in diff.grouped_ops(3) {
        lines.push(("hunk", "⋯\n".to_string()));
        for op in group {
            for change in diff.iter_changes(&op) {
                let (class, sign) = match change.tag() {
                    similar::ChangeTag::Delete => ("del", "-"),
                    similar::ChangeTag::Insert => ("ins", "+"),
                    similar::ChangeTag::Equal => ("same", " "),
                };
                let mut text = format!("{sign} {}", change.value());
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                lines.push((class, text));
            }
        }
    }
    view! {
        <pre class="diff" id="diff" aria-label=label>
            {lines
                .into_iter()
                .map(|(class, text)| view! { <span class=class>{text}</span> })
                .collect_view()}
        </pre>
    }
}
