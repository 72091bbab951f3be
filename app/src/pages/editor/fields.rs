//! What the panels' fields share: a text field that edits one value, and
//! the text a field shows for a value of the tree.

use leptos::prelude::*;
use xene_core::edit::Yaml;

/// `KEY=VALUE` lines of a mapping of strings.
pub(super) fn map_lines(value: Option<&Yaml>) -> String {
    value
        .and_then(Yaml::as_map)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A mapping from `KEY=VALUE` lines; `None` when empty.
pub(super) fn lines_map(text: &str) -> Option<Yaml> {
    let entries: Vec<(String, Yaml)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Yaml::str(v)),
            None => (l.trim().to_string(), Yaml::str("")),
        })
        .collect();
    (!entries.is_empty()).then_some(Yaml::Map(entries))
}

pub(super) fn text_of(tree: Option<&Yaml>) -> String {
    tree.and_then(Yaml::as_str).unwrap_or_default().to_string()
}

/// A text field that edits one value when it changes (on blur or Enter).
#[component]
pub(super) fn Field(
    #[prop(into)] id: String,
    #[prop(into)] label: String,
    #[prop(into)] value: Signal<String>,
    on_change: Callback<String>,
    #[prop(optional, into)] placeholder: String,
    #[prop(optional)] multiline: bool,
    #[prop(optional, into)] hint: String,
) -> impl IntoView {
    let input = if multiline {
        view! {
            <textarea id=id.clone() class="mono" spellcheck="false" placeholder=placeholder
                prop:value=move || value.get()
                on:change=move |ev| on_change.run(event_target_value(&ev))
            ></textarea>
        }
        .into_any()
    } else {
        view! {
            <input id=id.clone() placeholder=placeholder
                prop:value=move || value.get()
                on:change=move |ev| on_change.run(event_target_value(&ev))
            />
        }
        .into_any()
    };
    view! {
        <div class="field">
            <label for=id>{label}</label>
            {input}
            {(!hint.is_empty()).then(|| view! { <span class="hint">{hint}</span> })}
        </div>
    }
}
