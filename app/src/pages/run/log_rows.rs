//! One row of the log pane: a line's number (a link to it), its time on
//! demand, and its text in its ANSI colours; a section's title line is a
//! button that folds the section. A line written to stderr is marked.

use leptos::prelude::*;
use xene_core::ansi::{self, Style};

use super::log_store::Line;

/// What a row shows.
pub struct RowData {
    pub line: usize,
    pub raw: String,
    pub at: i64,
    pub style: Style,
    pub stderr: bool,
    /// For a section's title line: whether it is collapsed.
    pub section: Option<bool>,
    pub selected: bool,
    pub hit: bool,
    pub current: bool,
    pub times: bool,
}

impl RowData {
    pub fn new(index: usize, line: Line) -> Self {
        Self {
            line: index,
            raw: line.raw,
            at: line.at,
            style: line.style,
            stderr: line.stderr,
            section: None,
            selected: false,
            hit: false,
            current: false,
            times: false,
        }
    }
}

pub fn row_view(
    r: RowData,
    on_number: impl Fn(usize, bool) + Copy + Send + Sync + 'static,
    toggle: impl Fn(usize) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let line = r.line;
    let n = line + 1;
    let mut style = r.style;
    let text_view = match r.section {
        Some(closed) => {
            let title = ansi::plain(&r.raw)
                .trim_start()
                .trim_start_matches("::group::")
                .to_string();
            view! {
                <button
                    class="section-toggle"
                    aria-expanded=(!closed).to_string()
                    on:click=move |_| toggle(line)
                >
                    {if closed { "▸ " } else { "▾ " }}
                    {title}
                </button>
            }
            .into_any()
        }
        None => ansi::parse_line(&r.raw, &mut style)
            .into_iter()
            .map(|span| {
                if span.style.is_plain() {
                    view! { <span>{span.text}</span> }.into_any()
                } else {
                    let (class, css) = span.style.css();
                    view! { <span class=class style=css>{span.text}</span> }.into_any()
                }
            })
            .collect_view()
            .into_any(),
    };
    let mut class = String::from("log-line");
    for (on, name) in [
        (r.selected, " selected"),
        (r.hit, " hit"),
        (r.current, " current"),
        (r.section.is_some(), " section"),
        (r.stderr, " stderr"),
    ] {
        if on {
            class.push_str(name);
        }
    }
    let label = if r.stderr {
        format!("Line {n}, stderr")
    } else {
        format!("Line {n}")
    };
    view! {
        <div class=class id=format!("L{n}") data-line=n>
            <a
                class="ln"
                href=format!("#L{n}")
                aria-label=label
                on:click=move |e| {
                    e.prevent_default();
                    on_number(line, e.shift_key());
                }
            >
                {n}
            </a>
            {r.times.then(|| view! { <span class="ts">{crate::ui::clock_text(r.at)}</span> })}
            <span class="txt">{text_view}</span>
        </div>
    }
}
