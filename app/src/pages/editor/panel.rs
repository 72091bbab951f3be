//! The side panel: the selected task's fields (`task_panel`), the selected
//! dependency, or, with nothing selected, the pipeline's fields and the
//! workflow's name. Every field edits the text through the document.

use leptos::prelude::*;
use xene_core::draft::{self, Gesture};
use xene_core::edit::{Op, Seg, Yaml};

use super::doc::{Doc, Selection, use_doc};
use super::fields::{Field, lines_map, map_lines, text_of};
use super::task_panel::TaskPanel;
use xene_api::paths;
use xene_api::workflows::NextFires;

use crate::api;
use crate::ui::Time;

/// What the panel shows, for what is selected.
#[component]
pub(super) fn Properties() -> impl IntoView {
    let doc = use_doc();
    let Doc {
        good_tree,
        faults,
        pipeline,
        current,
        selected,
        secrets,
        ..
    } = doc;
    let gesture = move |g| doc.gesture(g);
    let remove_selected = move || doc.remove_selected();
    let secrets_panel = secrets.get_value();
    // The panel is rebuilt when the selection changes, not on every edit
    // (a rebuild would take the focus from the field being filled).
    let selected_exists = Memo::new(move |_| match selected.get() {
        Selection::Task(t) => current.with(|p| p.task(&t).is_some()),
        _ => false,
    });
    view! {
        <aside class="panel card" aria-label="Properties">
            {move || match selected.get() {
                Selection::Task(t) if selected_exists.get() => view! {
                    <TaskPanel
                        pipeline=pipeline.get()
                        task=t
                        tree=good_tree
                        draft=current
                        secrets=secrets_panel.clone()
                        on_gesture=Callback::new(move |g| { gesture(g); })
                        on_op=Callback::new(move |op: Op| doc.apply(&op))
                        faults
                    />
                }.into_any(),
                Selection::Edge(from, to) => view! {
                    <h2>"Dependency"</h2>
                    <p><code>{to.clone()}</code>" waits for "<code>{from.clone()}</code>"."</p>
                    <button on:click=move |_| remove_selected()>"Remove it"</button>
                }.into_any(),
                _ => view! {
                    <PipelinePanel
                        pipeline=pipeline.get()
                        tree=good_tree
                        on_gesture=Callback::new(move |g| { gesture(g); })
                        on_op=Callback::new(move |op: Op| doc.apply(&op))
                    />
                }.into_any(),
            }}
        </aside>
    }
    .into_any()
}

/// The pipeline's own fields, and the workflow's name.
#[component]
pub(super) fn PipelinePanel(
    pipeline: String,
    tree: RwSignal<Option<Yaml>>,
    on_gesture: Callback<Gesture>,
    on_op: Callback<Op>,
) -> impl IntoView {
    let at = {
        let pipeline = pipeline.clone();
        move |field: &'static str| {
            let path = draft::pipeline_path(&pipeline, field);
            Signal::derive(move || tree.with(|t| t.as_ref().and_then(|t| t.get(&path).cloned())))
        }
    };
    let set = {
        let pipeline = pipeline.clone();
        move |field: &'static str, value: Option<Yaml>| {
            on_gesture.run(Gesture::SetPipelineField {
                pipeline: pipeline.clone(),
                field: field.into(),
                value,
            })
        }
    };
    let trigger = at("trigger");
    let kind = Signal::derive(move || match trigger.get() {
        Some(Yaml::Map(_)) => "cron".to_string(),
        Some(t) => t.as_str().unwrap_or("manual").to_string(),
        None => "manual".to_string(),
    });
    let cron_field = move |key: &'static str| {
        Signal::derive(move || {
            text_of(trigger.get().as_ref().and_then(|t| t.get(&[Seg::key(key)])))
        })
    };
    let schedule = cron_field("cron");
    let zone = cron_field("timezone");
    let set_trigger = set.clone();
    let set_cron = {
        let set = set.clone();
        move |key: &'static str, value: String| {
            let mut entries: Vec<(String, Yaml)> = trigger
                .get_untracked()
                .and_then(|t| t.as_map().map(<[_]>::to_vec))
                .unwrap_or_default();
            entries.retain(|(k, _)| k != key);
            if !value.trim().is_empty() {
                let v = (key.to_string(), Yaml::str(value.trim()));
                if key == "cron" {
                    entries.insert(0, v);
                } else {
                    entries.push(v);
                }
            }
            set("trigger", Some(Yaml::Map(entries)))
        }
    };
    let set_cron2 = set_cron.clone();
    let fires = Resource::new(
        move || (schedule.get(), zone.get()),
        |(line, zone)| async move {
            if line.is_empty() {
                return Ok(Vec::new());
            }
            let zone = (!zone.is_empty()).then_some(zone.as_str());
            let path = paths::cron_next(&line, zone, None);
            api::get::<NextFires>(path).await.map(|f| f.fires)
        },
    );
    let env = at("env");
    let selector = at("selector");
    let concurrency = at("concurrency");
    let placement = at("placement");
    let params = at("params");
    let (set_env, set_sel, set_conc, set_place) =
        (set.clone(), set.clone(), set.clone(), set.clone());
    let name_path = vec![Seg::key("name")];
    let workflow_name =
        Signal::derive(move || tree.with(|t| text_of(t.as_ref().and_then(|t| t.get(&name_path)))));
    let param_rows = {
        let set = set.clone();
        move || {
            let entries: Vec<(String, Yaml)> = params
                .get()
                .and_then(|p| p.as_map().map(<[_]>::to_vec))
                .unwrap_or_default();
            entries
                .iter()
                .enumerate()
                .map(|(i, (name, value))| {
                    let typed = value.as_map().is_some();
                    let kind = if typed {
                        text_of(value.get(&[Seg::key("type")]))
                    } else {
                        "string".into()
                    };
                    let default = if typed {
                        text_of(value.get(&[Seg::key("default")]))
                    } else {
                        text_of(Some(value))
                    };
                    let required = value
                        .get(&[Seg::key("required")])
                        .and_then(Yaml::as_str)
                        .is_some_and(|r| r == "true");
                    let write = {
                        let (entries, set, name) = (entries.clone(), set.clone(), name.clone());
                        move |kind: String, default: String, required: bool| {
                            let mut entries = entries.clone();
                            let mut fields = vec![("type".to_string(), Yaml::str(kind))];
                            if !default.is_empty() {
                                fields.push(("default".into(), Yaml::str(default)));
                            }
                            if required {
                                fields.push(("required".into(), Yaml::Scalar("true".into(), xene_core::yaml::ScalarKind::Bool)));
                            }
                            entries[i] = (name.clone(), Yaml::Map(fields));
                            set("params", Some(Yaml::Map(entries)));
                        }
                    };
                    let (w1, w2, w3) = (write.clone(), write.clone(), write);
                    let (k1, k2, d1, d2) = (kind.clone(), kind.clone(), default.clone(), default.clone());
                    let remove = {
                        let (entries, set) = (entries.clone(), set.clone());
                        move |_| {
                            let mut entries = entries.clone();
                            entries.remove(i);
                            set("params", (!entries.is_empty()).then_some(Yaml::Map(entries)));
                        }
                    };
                    view! {
                        <div class="param row">
                            <code>{name.clone()}</code>
                            <label class="visually-hidden" for=format!("param-type-{i}")>{format!("type of {name}")}</label>
                            <select id=format!("param-type-{i}") on:change=move |ev| w1(event_target_value(&ev), d1.clone(), required)>
                                {["string", "number", "boolean", "choice"].into_iter().map(|t| view! {
                                    <option value=t selected=t == kind>{t}</option>
                                }).collect_view()}
                            </select>
                            <label class="visually-hidden" for=format!("param-default-{i}")>{format!("default of {name}")}</label>
                            <input id=format!("param-default-{i}") placeholder="default" value=default.clone()
                                on:change=move |ev| w2(k1.clone(), event_target_value(&ev), required) />
                            <label class="check">
                                <input type="checkbox" checked=required on:change=move |ev| w3(k2.clone(), d2.clone(), event_target_checked(&ev)) />
                                "required"
                            </label>
                            <button on:click=remove aria-label=format!("remove param {name}")>"×"</button>
                        </div>
                    }
                })
                .collect_view()
        }
    };
    let new_param = NodeRef::<leptos::html::Input>::new();
    let add_param = {
        let set = set.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            #[cfg(feature = "hydrate")]
            {
                let Some(input) = new_param.get_untracked() else {
                    return;
                };
                let name = input.value().trim().to_string();
                if name.is_empty() {
                    return;
                }
                let mut entries: Vec<(String, Yaml)> = params
                    .get_untracked()
                    .and_then(|p| p.as_map().map(<[_]>::to_vec))
                    .unwrap_or_default();
                if entries.iter().any(|(n, _)| *n == name) {
                    return;
                }
                entries.push((name, Yaml::Map(vec![("type".into(), Yaml::str("string"))])));
                set("params", Some(Yaml::Map(entries)));
                input.set_value("");
            }
            let _ = (&set, new_param);
        }
    };
    let rename_workflow = Callback::new(move |v: String| {
        on_op.run(Op::Set {
            path: vec![Seg::key("name")],
            value: Yaml::str(v.trim()),
        })
    });
    view! {
        <h2>"Pipeline " <code>{pipeline.clone()}</code></h2>
        <Field id="workflow-name" label="Workflow name" value=workflow_name on_change=rename_workflow />
        <div class="field">
            <label for="pipeline-trigger">"Trigger"</label>
            <select id="pipeline-trigger" on:change=move |ev| {
                let v = event_target_value(&ev);
                set_trigger("trigger", Some(if v == "cron" {
                    Yaml::Map(vec![("cron".into(), Yaml::str("0 * * * *"))])
                } else {
                    Yaml::str(v)
                }));
            }>
                {["manual", "webhook", "cron"].into_iter().map(|t| view! {
                    <option value=t selected=move || kind.get() == t>{t}</option>
                }).collect_view()}
            </select>
        </div>
        <Show when=move || kind.get() == "cron">
            <div class="row">
                <Field id="pipeline-cron" label="Cron line" value=schedule
                    on_change=Callback::new({ let s = set_cron.clone(); move |v| s("cron", v) }) placeholder="0 3 * * *" />
                <Field id="pipeline-timezone" label="Time zone" value=zone
                    on_change=Callback::new({ let s = set_cron2.clone(); move |v| s("timezone", v) }) placeholder="UTC" />
            </div>
            <div class="next-fires" aria-live="polite">
                <Transition>
                    {move || fires.get().map(|r| match r {
                        Ok(list) if !list.is_empty() => view! {
                            <p>"Next fires: " {list.into_iter().map(|ms| view! { <Time ms /> " " }).collect_view()}</p>
                        }.into_any(),
                        Ok(_) => ().into_any(),
                        Err(e) => view! { <p class="error">{e}</p> }.into_any(),
                    })}
                </Transition>
            </div>
        </Show>
        <Field id="pipeline-selector" label="Agent selector" multiline=true hint="label=value, one per line"
            value=Signal::derive(move || map_lines(selector.get().as_ref()))
            on_change=Callback::new(move |v: String| set_sel("selector", lines_map(&v))) />
        <div class="field">
            <label for="pipeline-placement">"Placement"</label>
            <select id="pipeline-placement" on:change=move |ev| {
                let v = event_target_value(&ev);
                // Spread is the default: written only when asked for.
                set_place("placement", (v != "spread").then(|| Yaml::str(v)));
            }>
                {[("spread", "spread: each task on any agent that fits"), ("together", "together: a run's tasks on one agent")]
                    .into_iter()
                    .map(|(value, text)| view! {
                        <option value=value selected=move || text_of(placement.get().as_ref()).as_str() == value
                            || (value == "spread" && placement.get().is_none())>{text}</option>
                    })
                    .collect_view()}
            </select>
        </div>
        <Field id="pipeline-env" label="Environment" multiline=true hint="KEY=VALUE, one per line"
            value=Signal::derive(move || map_lines(env.get().as_ref()))
            on_change=Callback::new(move |v: String| set_env("env", lines_map(&v))) />
        <Field id="pipeline-concurrency" label="Concurrency" placeholder="unlimited"
            value=Signal::derive(move || text_of(concurrency.get().as_ref()))
            on_change=Callback::new(move |v: String| {
                let v = v.trim().to_string();
                // Not a number: written as typed, and the check says why.
                set_conc("concurrency", (!v.is_empty()).then(|| v.parse::<i64>().map(Yaml::int).unwrap_or_else(|_| Yaml::str(v))))
            }) />
        <fieldset>
            <legend>"Params"</legend>
            {param_rows}
            <form class="row" on:submit=add_param>
                <label class="visually-hidden" for="param-name">"New param name"</label>
                <input id="param-name" node_ref=new_param placeholder="new param name" />
                <button type="submit">"Add param"</button>
            </form>
        </fieldset>
        <p class="muted">"Select a task to edit it; select nothing for the pipeline."</p>
    }
}
