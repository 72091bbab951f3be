//! The YAML view: the text itself, with completion (as typed, or on
//! Ctrl+Space) and the list of faults, each a link to its line (and to its
//! task on the canvas).

use leptos::prelude::*;
use xene_core::draft;
use xene_core::parse::Diagnostic;

use super::doc::{Doc, Selection, use_doc};
#[cfg(feature = "hydrate")]
use crate::text::{byte_of_utf16, utf16_of_byte};

#[component]
pub(super) fn YamlView() -> impl IntoView {
    let doc = use_doc();
    let Doc {
        text,
        completions,
        good,
        yaml_fault,
        faults,
        pipeline,
        selected,
        secrets: secrets_for_complete,
        ..
    } = doc;
    let yaml_ref = NodeRef::<leptos::html::Textarea>::new();
    let refresh_completions = move |force: bool| {
        #[cfg(feature = "hydrate")]
        {
            let Some(ta) = yaml_ref.get_untracked() else {
                return;
            };
            let t = text.get_untracked();
            let caret = byte_of_utf16(&t, ta.selection_start().ok().flatten().unwrap_or(0));
            let at_word_end = t[caret..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == ']' || c == ',');
            let c = xene_core::complete::complete(
                &t,
                caret,
                &good.get_untracked(),
                &secrets_for_complete.get_value(),
            );
            let word = &t[c.start..caret];
            if at_word_end && (force || !word.is_empty()) && !c.items.is_empty() {
                completions.set((c.start, c.items, 0));
            } else {
                completions.set((0, Vec::new(), 0));
            }
        }
        let _ = (force, secrets_for_complete, yaml_ref);
    };
    let accept_completion = move |index: usize| {
        let (start, items, _) = completions.get_untracked();
        let Some(item) = items.get(index).cloned() else {
            return;
        };
        #[cfg(feature = "hydrate")]
        if let Some(ta) = yaml_ref.get_untracked() {
            let t = text.get_untracked();
            let caret = byte_of_utf16(&t, ta.selection_start().ok().flatten().unwrap_or(0));
            // The list may be older than the text (an undo): then it goes.
            if !(start <= caret && caret <= t.len() && t.is_char_boundary(start)) {
                completions.set((0, Vec::new(), 0));
                return;
            }
            let mut new = t.clone();
            new.replace_range(start..caret, &item);
            let at = utf16_of_byte(&new, start + item.len());
            doc.commit(new, doc.layout.get_untracked());
            // The value lands on the next frame; the caret after it.
            let ta2 = ta.clone();
            request_animation_frame(move || {
                let _ = ta2.set_selection_range(at, at);
                let _ = ta2.focus();
            });
        }
        let _ = (start, item);
        completions.set((0, Vec::new(), 0));
    };
    let on_yaml_input = move |ev: leptos::ev::Event| {
        doc.typed(event_target_value(&ev), js_now());
        refresh_completions(false);
    };
    let on_yaml_keydown = move |ev: leptos::ev::KeyboardEvent| {
        let open = completions.with_untracked(|c| !c.1.is_empty());
        let key = ev.key();
        if ev.ctrl_key() && key == " " {
            ev.prevent_default();
            refresh_completions(true);
            return;
        }
        if !open {
            return;
        }
        match key.as_str() {
            "ArrowDown" | "ArrowUp" => {
                ev.prevent_default();
                completions.update(|c| {
                    let n = c.1.len();
                    c.2 = if key == "ArrowDown" {
                        (c.2 + 1) % n
                    } else {
                        (c.2 + n - 1) % n
                    };
                });
            }
            "Enter" | "Tab" => {
                ev.prevent_default();
                let i = completions.with_untracked(|c| c.2);
                accept_completion(i);
            }
            "Escape" => {
                ev.prevent_default();
                ev.stop_propagation();
                completions.set((0, Vec::new(), 0));
            }
            "ArrowLeft" | "ArrowRight" | "Home" | "End" | "PageUp" | "PageDown" => {
                completions.set((0, Vec::new(), 0));
            }
            _ => {}
        }
    };
    let jump_to = move |d: Diagnostic| {
        if let Some((p, task)) = draft::fault_target(&d) {
            if good.with_untracked(|g| g.pipeline(&p).is_some()) {
                pipeline.set(p);
            }
            if let Some(t) = task {
                selected.set(Selection::Task(t));
            }
        }
        #[cfg(feature = "hydrate")]
        if let (Some(line), Some(ta)) = (d.line, yaml_ref.get_untracked()) {
            let t = text.get_untracked();
            let start: usize = t
                .split_inclusive('\n')
                .take(line.saturating_sub(1))
                .map(str::len)
                .sum();
            let start = start.min(t.len());
            let end = start + t[start..].find('\n').unwrap_or(t.len() - start);
            let _ = ta.focus();
            let _ = ta.set_selection_range(utf16_of_byte(&t, start), utf16_of_byte(&t, end));
        }
        let _ = d;
    };

    view! {
        <section class="yaml-pane card" aria-label="YAML">
            <h2><label for="editor-yaml">"YAML"</label></h2>
            <div class="yaml-wrap">
                <textarea
                    id="editor-yaml"
                    class="yaml mono"
                    node_ref=yaml_ref
                    spellcheck="false"
                    autocomplete="off"
                    aria-autocomplete="list"
                    aria-controls=move || completions.with(|c| (!c.1.is_empty()).then_some("editor-completions"))
                    prop:value=move || text.get()
                    on:input=on_yaml_input
                    on:keydown=on_yaml_keydown
                    on:blur=move |_| completions.set((0, Vec::new(), 0))
                ></textarea>
                <Show when=move || completions.with(|c| !c.1.is_empty())>
                    <ul id="editor-completions" class="completions" role="listbox" aria-label="Completions">
                        {move || {
                            let (_, items, active) = completions.get();
                            items
                                .into_iter()
                                .enumerate()
                                .map(|(i, item)| view! {
                                    <li
                                        role="option"
                                        aria-selected=(i == active).to_string()
                                        on:mousedown=move |ev| {
                                            ev.prevent_default();
                                            accept_completion(i);
                                        }
                                    >
                                        {item}
                                    </li>
                                })
                                .collect_view()
                        }}
                    </ul>
                </Show>
            </div>
            {move || yaml_fault.get().map(|f| view! { <p class="error yaml-fault" role="alert">{f}" (the canvas shows the last YAML that parsed)"</p> })}
            <Show when=move || yaml_fault.with(Option::is_none) && faults.with(|f| !f.is_empty())>
                <div class="faults">
                    <h3>"Faults"</h3>
                    <ul>
                        {move || faults.get().into_iter().map(|d| {
                            let shown = d.to_string();
                            view! {
                                <li><button class="link" on:click=move |_| jump_to(d.clone())>{shown}</button></li>
                            }
                        }).collect_view()}
                    </ul>
                </div>
            </Show>
        </section>
    }
    .into_any()
}

fn js_now() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}
