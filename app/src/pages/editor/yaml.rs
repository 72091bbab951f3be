//! The YAML view: the text in a code editor (`ui::code`: line numbers,
//! colours, each fault marked at its line, completion as typed or on
//! Ctrl+Space, search), and the list of faults, each a link to its line
//! (and to its task on the canvas).

use leptos::prelude::*;
use xene_core::complete::Completions;
use xene_core::draft;
use xene_core::parse::Diagnostic;

use super::doc::{Doc, Selection, use_doc};
use crate::ui::code::{self, CodeEditor};

/// The id of the YAML's text.
const TEXT_ID: &str = "editor-yaml";

#[component]
pub(super) fn YamlView() -> impl IntoView {
    let doc = use_doc();
    let Doc {
        text,
        good,
        yaml_fault,
        faults,
        pipeline,
        selected,
        secrets,
        ..
    } = doc;
    let complete = Callback::new(move |(t, caret): (String, usize)| {
        // Mid-word, a choice would split the word: nothing is offered.
        let at_word_end = t
            .get(caret..)
            .and_then(|rest| rest.chars().next())
            .is_none_or(|c| c.is_whitespace() || c == ']' || c == ',');
        if !at_word_end {
            return Completions::default();
        }
        good.with_untracked(|g| xene_core::complete::complete(&t, caret, g, &secrets.get_value()))
    });
    let marks = Signal::derive(move || {
        faults.with(|list| {
            list.iter()
                .filter_map(|d| Some((u32::try_from(d.line?).ok()?, d.to_string())))
                .collect::<Vec<_>>()
        })
    });
    let jump_to = move |d: Diagnostic| {
        if let Some((p, task)) = draft::fault_target(&d) {
            if good.with_untracked(|g| g.pipeline(&p).is_some()) {
                pipeline.set(p);
            }
            if let Some(t) = task {
                selected.set(Selection::Task(t));
            }
        }
        if let Some(line) = d.line.and_then(|l| u32::try_from(l).ok()) {
            code::select_line(TEXT_ID, line);
        }
    };

    view! {
        <section class="yaml-pane card" aria-label="YAML">
            <h2><label for=TEXT_ID>"YAML"</label></h2>
            <CodeEditor
                text
                faults=marks
                language="yaml"
                complete=complete
                label="YAML"
                rows=24
                id=TEXT_ID
                on_input=Callback::new(move |t: String| doc.typed(t, crate::ui::now_ms() as f64))
            />
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
