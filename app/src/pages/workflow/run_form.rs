//! The form a pipeline's Run button opens.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use xene_core::params::{Param, ParamType};

use crate::api;
use crate::ui::ErrorBox;

/// The form a Run button opens: one field per param, its default filled in.
#[component]
pub(super) fn RunForm(
    workflow: String,
    pipeline: String,
    params: Vec<(String, Param)>,
) -> impl IntoView {
    let navigate = use_navigate();
    let values: Vec<(String, RwSignal<String>)> = params
        .iter()
        .map(|(name, p)| {
            let default = p.default.clone().unwrap_or_default();
            (name.clone(), RwSignal::new(default))
        })
        .collect();
    let for_submit = values.clone();
    let target = (workflow, pipeline.clone());
    let start = Action::new(move |params: &BTreeMap<String, String>| {
        let ((workflow, pipeline), params) = (target.clone(), params.clone());
        async move { api::start_run(&workflow, &pipeline, params).await }
    });
    Effect::new(move |_| {
        if let Some(Ok(run)) = start.value().get() {
            navigate(&format!("/runs/{}", run.id), Default::default());
        }
    });
    let fields = params
        .into_iter()
        .zip(values)
        .map(|((name, p), (_, value))| {
            let id = format!("param-{pipeline}-{name}");
            let default = p.default.clone().unwrap_or_default();
            let input = if p.options.is_empty() {
                let kind = match p.kind {
                    ParamType::Number => "number",
                    _ => "text",
                };
                view! {
                    <input
                        id=id.clone()
                        name=name.clone()
                        type=kind
                        prop:value=move || value.get()
                        on:input=move |e| value.set(event_target_value(&e))
                    />
                }
                    .into_any()
            } else {
                view! {
                    <select id=id.clone() name=name.clone() on:change=move |e| value.set(event_target_value(&e))>
                        {p.options
                            .iter()
                            .map(|c| {
                                let selected = *c == default;
                                view! { <option value=c.clone() selected=selected>{c.clone()}</option> }
                            })
                            .collect_view()}
                    </select>
                }
                    .into_any()
            };
            view! {
                <div class="field">
                    <label for=id>{name.clone()}</label>
                    {input}
                    {(!p.description.is_empty()).then(|| view! { <span class="hint">{p.description.clone()}</span> })}
                </div>
            }
        })
        .collect_view();
    view! {
        <form
            class="run-form"
            on:submit=move |e| {
                e.prevent_default();
                let params: BTreeMap<String, String> = for_submit
                    .iter()
                    .map(|(n, v)| (n.clone(), v.get_untracked()))
                    .collect();
                start.dispatch(params);
            }
        >
            {fields}
            <button type="submit" class="primary start-run" disabled=move || start.pending().get()>
                {move || if start.pending().get() { "Starting…" } else { "Start the run" }}
            </button>
            {move || start.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
        </form>
    }
}
