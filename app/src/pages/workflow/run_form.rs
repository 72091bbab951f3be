//! Starting a run from a pipeline's card: one click for a pipeline without
//! params, else the form its Run button opens, one typed field per param.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use xene_core::params::{Param, ParamType, resolve};

use crate::api;
use crate::ui::{ErrorBox, focus};

/// Starts a run and, once it is queued, opens its page.
fn start_action(
    workflow: String,
    pipeline: String,
) -> Action<BTreeMap<String, String>, Result<i64, api::Refused>> {
    let navigate = use_navigate();
    let start = Action::new(move |params: &BTreeMap<String, String>| {
        let (workflow, pipeline, params) = (workflow.clone(), pipeline.clone(), params.clone());
        async move {
            api::start_run_checked(&workflow, &pipeline, params)
                .await
                .map(|run| run.id)
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(id)) = start.value().get() {
            navigate(&format!("/runs/{id}"), Default::default());
        }
    });
    start
}

/// The Run button of a pipeline without params: nothing to ask, so one
/// click starts the run and opens it.
#[component]
pub(super) fn RunNow(workflow: String, pipeline: String) -> impl IntoView {
    let title = format!("Starts a run of {pipeline} now: it has no params to ask for");
    let start = start_action(workflow, pipeline);
    view! {
        <button
            class="primary run-button"
            title=title
            disabled=move || start.pending().get()
            on:click=move |_| {
                start.dispatch(BTreeMap::new());
            }
        >
            {move || if start.pending().get() { "Starting…" } else { "Run" }}
        </button>
        {move || {
            start
                .value()
                .get()
                .and_then(|r| r.err())
                .map(|e| view! { <div class="run-now-error"><ErrorBox message=e.error /></div> })
        }}
    }
}

/// The form a Run button opens: one field per param, typed as the param
/// is (a switch, a select, a number field, a text field), its default
/// filled in, required ones marked. Values are checked by the server's own
/// rules before they are sent, each fault shown at its field.
#[component]
pub(super) fn RunForm(
    workflow: String,
    pipeline: String,
    params: Vec<(String, Param)>,
) -> impl IntoView {
    let start = start_action(workflow, pipeline.clone());
    let values: Vec<(String, RwSignal<String>)> = params
        .iter()
        .map(|(name, p)| (name.clone(), RwSignal::new(initial(p))))
        .collect();
    let faults = RwSignal::new(BTreeMap::<String, String>::new());
    let declared: BTreeMap<String, Param> = params.iter().cloned().collect();
    let field_id = {
        let pipeline = pipeline.clone();
        move |name: &str| format!("param-{pipeline}-{name}")
    };
    let submit = {
        let (values, field_id) = (values.clone(), field_id.clone());
        move || {
            let given: BTreeMap<String, String> = values
                .iter()
                .map(|(n, v)| (n.clone(), v.get_untracked()))
                .collect();
            match resolve(&declared, &given) {
                Ok(_) => {
                    faults.set(BTreeMap::new());
                    start.dispatch(given);
                }
                Err(found) => {
                    let found: BTreeMap<String, String> =
                        found.into_iter().map(|f| (f.param, f.message)).collect();
                    if let Some(first) = found.keys().next() {
                        focus(&field_id(first));
                    }
                    faults.set(found);
                }
            }
        }
    };
    // The server checks again, and may find what this page could not (the
    // workflow changed since it was loaded): its faults go to their fields
    // too, and its error shows alone only when it names no field.
    Effect::new({
        let field_id = field_id.clone();
        move |_| {
            if let Some(Err(refused)) = start.value().get()
                && !refused.faults.is_empty()
            {
                let found: BTreeMap<String, String> = refused
                    .faults
                    .into_iter()
                    .map(|f| (f.param, f.message))
                    .collect();
                if let Some(first) = found.keys().next() {
                    focus(&field_id(first));
                }
                faults.set(found);
            }
        }
    });
    let fields = params
        .into_iter()
        .zip(values)
        .map(|((name, param), (_, value))| {
            let id = field_id(&name);
            view! { <ParamField id=id name=name param=param value=value faults=faults /> }
        })
        .collect_view();
    let summary = move || {
        faults.with(|f| {
            (!f.is_empty()).then(|| {
                let names: Vec<&str> = f.keys().map(String::as_str).collect();
                format!("Not started: fix {}.", names.join(", "))
            })
        })
    };
    view! {
        <form
            class="run-form"
            novalidate=true
            aria-label=format!("Run pipeline {pipeline}")
            on:submit=move |e| {
                e.prevent_default();
                submit();
            }
        >
            <div class="run-fields">{fields}</div>
            <div class="run-form-actions">
                <button type="submit" class="primary start-run" disabled=move || start.pending().get()>
                    {move || if start.pending().get() { "Starting…" } else { "Start the run" }}
                </button>
                <p class="form-faults" role="alert">{summary}</p>
            </div>
            {move || {
                start
                    .value()
                    .get()
                    .and_then(|r| r.err())
                    .filter(|e| e.faults.is_empty())
                    .map(|e| view! { <ErrorBox message=e.error /> })
            }}
        </form>
    }
}

/// One param's field: its name (and "required"), the input its type
/// calls for, its description, and its fault once the form was checked.
#[component]
fn ParamField(
    id: String,
    name: String,
    param: Param,
    value: RwSignal<String>,
    faults: RwSignal<BTreeMap<String, String>>,
) -> impl IntoView {
    let (hint_id, fault_id) = (format!("{id}-hint"), format!("{id}-fault"));
    let described = if param.description.is_empty() {
        fault_id.clone()
    } else {
        format!("{hint_id} {fault_id}")
    };
    let fault = {
        let name = name.clone();
        move || faults.with(|f| f.get(&name).cloned())
    };
    let invalid = {
        let fault = fault.clone();
        move || fault().is_some().to_string()
    };
    // Editing a field takes its fault away until the next check.
    let set = {
        let name = name.clone();
        move |v: String| {
            value.set(v);
            faults.update(|f| {
                f.remove(&name);
            });
        }
    };
    let required = param.required;
    let input = match param.kind {
        ParamType::Boolean => view! {
            <input
                id=id.clone()
                name=name.clone()
                type="checkbox"
                role="switch"
                class="switch"
                aria-describedby=described.clone()
                aria-invalid=invalid.clone()
                prop:checked=move || value.get() == "true"
                on:change=move |e| set(event_target_checked(&e).to_string())
            />
            <span class="switch-state" aria-hidden="true">{move || value.get()}</span>
        }
        .into_any(),
        ParamType::Choice => {
            let default = param.default.clone();
            let options = param
                .options
                .iter()
                .map(|o| view! { <option value=o.clone() selected=Some(o) == default.as_ref()>{o.clone()}</option> })
                .collect_view();
            view! {
                <select
                    id=id.clone()
                    name=name.clone()
                    required=required
                    aria-describedby=described.clone()
                    aria-invalid=invalid.clone()
                    on:change=move |e| set(event_target_value(&e))
                >
                    {default.is_none().then(|| view! { <option value="" selected=true>"Choose…"</option> })}
                    {options}
                </select>
            }
            .into_any()
        }
        // A number is typed as text (with a number keypad on phones): a
        // browser's number field reads as empty while what is typed is not
        // a number yet ("-", "1e"), and the check below says what is wrong.
        // The value is written once: the field owns it from then on.
        ParamType::Number | ParamType::String => {
            let number = param.kind == ParamType::Number;
            view! {
                <input
                    id=id.clone()
                    name=name.clone()
                    type="text"
                    inputmode=number.then_some("decimal")
                    required=required
                    aria-describedby=described.clone()
                    aria-invalid=invalid.clone()
                    prop:value=value.get_untracked()
                    on:input=move |e| set(event_target_value(&e))
                />
            }
            .into_any()
        }
    };
    let (has_fault, no_fault) = (fault.clone(), fault.clone());
    view! {
        <div class="field" class:has-fault=move || has_fault().is_some() data-kind=param.kind.to_string()>
            <label for=id>
                {name.clone()}
                {required.then(|| view! { " " <span class="required">"required"</span> })}
            </label>
            <div class="field-input">{input}</div>
            {(!param.description.is_empty()).then(|| view! { <span class="hint" id=hint_id>{param.description.clone()}</span> })}
            <p class="field-fault" id=fault_id hidden=move || no_fault().is_none()>{fault}</p>
        </div>
    }
}

/// A field's first value: the param's default; a boolean without one is
/// false, as its switch shows it (else "required" could only be met by
/// switching it on and off again).
fn initial(param: &Param) -> String {
    match &param.default {
        Some(default) => default.clone(),
        None if param.kind == ParamType::Boolean => "false".into(),
        None => String::new(),
    }
}
