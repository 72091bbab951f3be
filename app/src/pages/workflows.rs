//! The workflows list: each workflow's pipelines with their trigger, next
//! fire and last run, read in one call; and the first-run card.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use xene_api::paths::{self, encode};
use xene_api::workflows::{PipelineSummary, WorkflowList, WorkflowSummary};
use xene_core::duration::human;

use crate::api;
use crate::ui::{ErrorBox, Status, Time, now};

/// The example the first-run card offers to run: shell only, so it runs on
/// the built-in agent of a fresh server without Docker images.
const FIRST_EXAMPLE: (&str, &str) = ("fan-out-fan-in", "shards");

#[component]
pub fn WorkflowsPage() -> impl IntoView {
    let rows = Resource::new(
        || (),
        |_| async {
            api::get::<WorkflowList>(paths::workflows())
                .await
                .map(|list| list.workflows)
        },
    );
    let me = crate::session::current_user();
    let can_edit_list = move || me().is_some_and(|m| m.can_edit());
    let navigate = use_navigate();
    let load = Action::new(|_: &()| async { api::load_examples().await.map_err(api::error_text) });
    Effect::new(move |_| {
        if let Some(Ok(_)) = load.value().get() {
            rows.refetch();
        }
    });
    let run_first = Action::new(|_: &()| async {
        let (w, p) = FIRST_EXAMPLE;
        api::start_run(w, p, BTreeMap::new()).await
    });
    Effect::new(move |_| {
        if let Some(Ok(run)) = run_first.value().get() {
            navigate(&format!("/runs/{}", run.id), Default::default());
        }
    });
    view! {
        <Title text="Workflows" />
        <div class="page-head">
            <h1>"Workflows"</h1>
            <Transition>
                <Show when=can_edit_list>
                    <div class="actions">
                        <a class="button" id="new-workflow" href="/editor">"New workflow"</a>
                    </div>
                </Show>
            </Transition>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading workflows…"</p> }>
            {move || {
                rows.get()
                    .map(|result| match result {
                        Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                        Ok(rows) if rows.is_empty() => {
                            let can_edit = me().is_some_and(|m| m.can_edit());
                            view! {
                                <section class="card empty-state" id="first-run">
                                    <h2>"No workflows yet"</h2>
                                    <p>
                                        "A workflow is a YAML file of pipelines, each a DAG of tasks. Apply one with "
                                        <code>"xenectl apply -f FILE"</code> " or "
                                        <code>"POST /api/v1/workflows"</code> "."
                                    </p>
                                    {if can_edit {
                                        view! {
                                            <p>
                                                "Or start from the examples that ship with Xene: "
                                                <button
                                                    id="load-examples"
                                                    class="primary"
                                                    on:click=move |_| {
                                                        load.dispatch(());
                                                    }
                                                    disabled=move || load.pending().get()
                                                >
                                                    {move || {
                                                        if load.pending().get() {
                                                            "Loading the examples…"
                                                        } else {
                                                            "Load the example workflows"
                                                        }
                                                    }}
                                                </button>
                                            </p>
                                        }
                                            .into_any()
                                    } else {
                                        view! {
                                            <p>"Ask an editor or an admin to apply the first one."</p>
                                        }
                                            .into_any()
                                    }}
                                    {move || {
                                        load.value()
                                            .get()
                                            .and_then(|r| r.err())
                                            .map(|e| view! { <ErrorBox message=e /> })
                                    }}
                                </section>
                            }
                                .into_any()
                        }
                        Ok(rows) => {
                            let loaded = load.value().get().and_then(|r| r.ok());
                            view! {
                                {loaded
                                    .map(|names| {
                                        view! {
                                            <section class="card notice" id="examples-loaded">
                                                <p>
                                                    {format!("Loaded {} example workflows. ", names.len())}
                                                    "Run one and watch its tasks and logs live: "
                                                    <button
                                                        id="run-example"
                                                        class="primary"
                                                        on:click=move |_| {
                                                            run_first.dispatch(());
                                                        }
                                                    >
                                                        {format!("Run {}", FIRST_EXAMPLE.0)}
                                                    </button>
                                                </p>
                                                {move || {
                                                    run_first
                                                        .value()
                                                        .get()
                                                        .and_then(|r| r.err())
                                                        .map(|e| view! { <ErrorBox message=e /> })
                                                }}
                                            </section>
                                        }
                                    })}
                                <div class="table-wrap" tabindex={let narrow = crate::theme::narrow(); move || (!narrow.get()).then_some("0")} role="region" aria-label="Scrollable table">
                                    // One <tbody> per workflow: a card of its pipelines on a phone.
                                    <table class="list cards grouped" id="workflows">
                                        <thead>
                                            <tr>
                                                <th scope="col">"Workflow"</th>
                                                <th scope="col">"Pipeline"</th>
                                                <th scope="col">"Trigger"</th>
                                                <th scope="col">"Next fire"</th>
                                                <th scope="col">"Last run"</th>
                                                <th scope="col">"Duration"</th>
                                            </tr>
                                        </thead>
                                        {rows.into_iter().map(workflow_row).collect_view()}
                                    </table>
                                </div>
                            }
                                .into_any()
                        }
                    })
            }}
        </Transition>
    }
}

fn workflow_row(w: WorkflowSummary) -> impl IntoView {
    let href = format!("/workflows/{}", encode(&w.name));
    let span = w.summaries.len().max(1);
    let mut pipelines = w.summaries.into_iter();
    let first = pipelines.next();
    // A workflow without pipelines still gets its row of empty cells.
    let cells = |p: Option<PipelineSummary>| {
        let (name, trigger, next_fire, last) = match p {
            Some(p) => (p.name, p.trigger_text, p.next_fire, p.last_run),
            None => Default::default(),
        };
        view! {
            <td data-label="Pipeline">{name}</td>
            <td data-label="Trigger">{trigger}</td>
            <td data-label="Next fire" data-empty=next_fire.is_none().then_some("")>
                {match next_fire {
                    Some(ms) => view! { <Time ms /> }.into_any(),
                    None => view! { <span class="muted">"—"</span> }.into_any(),
                }}
            </td>
            <td data-label="Last run">
                {match last.clone() {
                    Some(run) => {
                        view! {
                            <a href=format!("/runs/{}", run.id)>
                                <Status status=run.status.as_str().to_string() />
                                " #"
                                {run.id}
                            </a>
                            " "
                            <Time ms=run.requested_at />
                        }
                            .into_any()
                    }
                    None => view! { <span class="muted">"never run"</span> }.into_any(),
                }}
            </td>
            <td data-label="Duration">
                {move || {
                    last.as_ref().and_then(|r| r.duration_ms(now())).map(human)
                }}
            </td>
        }
    };
    view! {
        <tbody data-workflow=w.name.clone()>
            <tr>
                <th scope="row" rowspan=span>
                    <a href=href>{w.name.clone()}</a>
                    <span class="muted">" v" {w.version}</span>
                    <div class="muted small">{w.description.clone()}</div>
                </th>
                {cells(first)}
            </tr>
            {pipelines.map(|p| view! { <tr>{cells(Some(p))}</tr> }).collect_view()}
        </tbody>
    }
}
