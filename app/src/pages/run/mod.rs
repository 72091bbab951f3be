//! A run's page, made for reading logs: a short head (status, Cancel with
//! a confirmation, Run again), the run's facts on a line, its DAG coloured
//! by live task status, then the task list beside the log pane, which
//! takes the rest of the screen and has a full-screen view (`logs`).

mod actions;
mod artifacts;
#[cfg(feature = "hydrate")]
mod fit;
mod log_rows;
pub mod log_store;
pub mod logs;
mod tasks;

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use xene_api::feed::RunFeed;
use xene_api::paths::{self, encode};
use xene_api::run::{Run, RunDetail};
use xene_core::duration::human;

use crate::api;
use crate::not_found::Missing;
use crate::ui::{Dag, ErrorBox, NodeState, Status, Time, now};
use actions::{CancelButton, CancelConfirm, RunAgain};
use artifacts::{Artifacts, PinButton};
use log_store::LogStore;
use logs::LogPane;
use tasks::{TaskList, tries};

/// The run with its tasks (their `depends_on` draw the graph); `None` when
/// there is no such run.
async fn run_data(id: String) -> Result<Option<RunDetail>, String> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    api::get_shown(paths::run(id)).await
}

#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let data = Resource::new(id, run_data);
    view! {
        <Title text=move || format!("Run #{}", id()) />
        <nav class="crumbs" aria-label="Breadcrumb">
            <a href="/runs">"Runs"</a>
            " / "
            <span aria-current="page">"#" {id}</span>
        </nav>
        <Transition fallback=|| view! { <p class="loading">"Loading the run…"</p> }>
            {move || {
                data.get()
                    .map(|r| match r {
                        Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                        Ok(None) => view! { <Missing what=format!("There is no run #{}.", id()) /> }.into_any(),
                        Ok(Some(d)) => view! { <RunView detail=d /> }.into_any(),
                    })
            }}
        </Transition>
    }
}

#[component]
fn RunView(detail: RunDetail) -> impl IntoView {
    let run_id = detail.run.id;
    // The graph's shape is the version's: it does not change as the run does.
    let layout = xene_core::layout::layout(
        detail
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), t.depends_on.as_slice())),
    );
    let detail = RwSignal::new(detail);
    let logs = RwSignal::new(LogStore::default());
    let ended = RwSignal::new(false);
    crate::live::follow(
        move || paths::run_events(run_id, Some(logs.with_untracked(|l| l.cursor))),
        move |message: RunFeed| match message {
            RunFeed::Run { run } => detail.set(run),
            RunFeed::Log(chunk) => logs.update(|l| l.absorb(&chunk)),
            RunFeed::End => {
                ended.set(true);
                logs.update(|l| l.ended = true);
            }
        },
        move || ended.get_untracked(),
    );

    let query = use_query_map();
    let selected_task = Signal::derive(move || query.with(|q| q.get("task")));
    // Opened on a task's log (a link to it), the page is for reading it:
    // the graph starts folded. Choosing another task brings its log into
    // view.
    let graph_open = query.with_untracked(|q| q.get("task").is_none());
    #[cfg(feature = "hydrate")]
    Effect::new(move |before: Option<Option<String>>| {
        let task = selected_task.get();
        if before.is_some_and(|b| b != task)
            && let Some(pane) = document().query_selector(".log-pane").ok().flatten()
        {
            pane.scroll_into_view();
        }
        task
    });
    let states = Signal::derive(move || {
        let t = now();
        detail.with(|d| {
            d.tasks
                .iter()
                .map(|task| {
                    let ms = task.duration_ms.or_else(|| {
                        task.started_at
                            .map(|s| task.finished_at.unwrap_or(t).max(s) - s)
                    });
                    let mut shown = ms.map(human).unwrap_or_default();
                    let tried = tries(task);
                    if tried > 1 {
                        shown = format!("{shown} · {tried} attempts");
                    }
                    (
                        task.name.clone(),
                        NodeState {
                            status: task.status.as_str().to_string(),
                            detail: shown,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>()
        })
    });
    let href = Callback::new(move |task: String| format!("/runs/{run_id}?task={}", encode(&task)));
    let run = Signal::derive(move || detail.with(|d| d.run.clone()));
    let me = crate::session::current_user();
    let confirming = RwSignal::new(false);
    let again_error = RwSignal::new(None::<String>);
    let waiting = move || {
        let r = run.get();
        (!r.is_finished() && r.started_at.is_none())
            .then(|| r.scheduler_reason.clone())
            .flatten()
    };
    view! {
        <div class="run-page">
            <div class="page-head">
                // Where the focus goes once the run is cancelled.
                <h1 id="run-title" tabindex="-1">
                    "Run #" {run_id} " "
                    <Status status=Signal::derive(move || run.get().status.as_str().to_string()) />
                </h1>
                <div class="actions">
                    <Show when=move || me().is_some_and(|m| m.can_edit())>
                        <CancelButton run open=confirming />
                        <RunAgain run error=again_error />
                        <PinButton run_id detail />
                    </Show>
                </div>
            </div>
            <CancelConfirm run open=confirming />
            {move || again_error.get().map(|e| view! { <ErrorBox message=e /> })}
            <Facts run />
            {move || waiting().map(|reason| view! {
                <p class="notice card" id="waiting" role="status"><strong>"Waiting: "</strong>{reason}</p>
            })}
            {move || run.get().error.map(|e| view! { <ErrorBox message=e /> })}
            <details class="card graph" open=graph_open on:toggle=move |_| fit_log()>
                <summary>"Graph"</summary>
                <Dag layout=layout states href=href selected=selected_task label=format!("The tasks of run {run_id}, coloured by status") />
            </details>
            <Artifacts run_id detail open=graph_open />
            <div class="run-body">
                <TaskList run_id detail />
                <LogPane run_id detail logs />
            </div>
        </div>
    }
}

/// Sizes the log box anew: what is above it moved.
fn fit_log() {
    #[cfg(feature = "hydrate")]
    fit::fit_log();
}

/// The run's facts, on one line where it fits.
#[component]
fn Facts(run: Signal<Run>) -> impl IntoView {
    let requested = run.with_untracked(|r| r.requested_at);
    view! {
        <dl class="facts run-facts">
            <div><dt>"Pipeline"</dt><dd>
                <a href=move || format!("/workflows/{}", encode(&run.get().workflow))>{move || run.get().workflow}</a>
                " / " {move || run.get().pipeline} " (v" {move || run.get().version} ")"
            </dd></div>
            <div><dt>"Trigger"</dt><dd>{move || run.get().trigger}</dd></div>
            <div><dt>"Requested"</dt><dd><Time ms=requested /></dd></div>
            <div><dt>"Duration"</dt><dd>{move || run.get().duration_ms(now()).map(human).unwrap_or_else(|| "not started".into())}</dd></div>
            <div><dt>"Agents"</dt><dd id="run-agents">{move || {
                let r = run.get();
                let agents = if r.agents.is_empty() { r.agent.into_iter().collect() } else { r.agents };
                if agents.is_empty() { "none yet".to_string() } else { agents.join(", ") }
            }}</dd></div>
            // A run placed whole on one agent was retried whole; a run placed
            // task by task retries its tasks (their attempts, in the list).
            {move || run.get().agent.is_some().then(|| view! {
                <div><dt>"Run attempt"</dt><dd title="A run placed whole on one agent is tried again whole">
                    {move || format!("{} of {}", run.get().attempt.max(1), run.get().max_attempts.max(1))}
                </dd></div>
            })}
            {move || {
                let params = run.get().params;
                (!params.is_empty()).then(|| view! {
                    <div><dt>"Params"</dt><dd>{params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")}</dd></div>
                })
            }}
        </dl>
    }
}
