//! A run's page: its DAG coloured by live task status, outputs, why it
//! waits, re-run and cancel, and the log pane (`logs`).

pub mod logs;

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use xene_api::feed::RunFeed;
use xene_api::paths::{self, encode};
use xene_api::run::{Run, RunDetail, TaskAttempt};
use xene_core::duration::human;

use crate::api;
use crate::ui::{Dag, ErrorBox, NodeState, Status, Time, now};
use logs::{LogPane, LogStore};

/// The run with its tasks: their `depends_on` draw the graph.
async fn run_data(id: String) -> Result<RunDetail, String> {
    let id: i64 = id
        .parse()
        .map_err(|_| format!("{id:?} is not a run number"))?;
    api::get(paths::run(id)).await
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
                        Ok(d) => view! { <RunView detail=d /> }.into_any(),
                    })
            }}
        </Transition>
    }
}

/// A task's attempts, when there was more than one (or one that waits):
/// where each ran and how it ended.
#[component]
fn Attempts(attempts: Vec<TaskAttempt>) -> impl IntoView {
    let worth_showing = attempts.len() > 1 || attempts.iter().any(|a| a.status == "ready");
    worth_showing.then(|| view! {
        <ul class="attempts small">
            {attempts.into_iter().map(|a| view! {
                <li data-attempt=a.number>
                    "attempt " {a.number} " "
                    <Status status=a.status.clone() />
                    {a.agent_id.map(|agent| view! { <span class="muted">" on " <span class="mono">{agent}</span></span> })}
                    {a.error.map(|e| view! { <span class="muted">" — " {e}</span> })}
                </li>
            }).collect_view()}
        </ul>
    })
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
                    (
                        task.name.clone(),
                        NodeState {
                            status: task.status.as_str().to_string(),
                            detail: ms.map(human).unwrap_or_default(),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>()
        })
    });
    let href = Callback::new(move |task: String| format!("/runs/{run_id}?task={}", encode(&task)));
    let run = move || detail.with(|d| d.run.clone());
    let me = crate::session::current_user();
    let navigate = use_navigate();
    let cancel = Action::new(move |_: &()| async move {
        api::send("POST", paths::run_cancel(run_id), None).await
    });
    let rerun = Action::new(move |r: &Run| {
        let r = r.clone();
        async move { api::start_run(&r.workflow, &r.pipeline, r.params).await }
    });
    Effect::new(move |_| {
        if let Some(Ok(new)) = rerun.value().get() {
            navigate(&format!("/runs/{}", new.id), Default::default());
        }
    });
    let waiting = move || {
        let r = run();
        (!r.is_finished() && r.started_at.is_none())
            .then(|| r.scheduler_reason.clone())
            .flatten()
    };
    view! {
        <div class="page-head">
            <h1>
                "Run #" {run_id} " "
                <Status status=Signal::derive(move || run().status.as_str().to_string()) />
            </h1>
            <div class="actions">
                <Show when=move || me().is_some_and(|m| m.can_edit())>
                    <Show when=move || !run().is_finished()>
                        <button
                            id="cancel-run"
                            class="danger"
                            on:click=move |_| {
                                cancel.dispatch(());
                            }
                            disabled=move || cancel.pending().get() || run().cancel_requested
                        >
                            {move || if run().cancel_requested { "Cancelling…" } else { "Cancel" }}
                        </button>
                    </Show>
                    <button id="rerun" on:click=move |_| {
                        rerun.dispatch(run());
                    }>"Re-run"</button>
                </Show>
            </div>
        </div>
        {move || cancel.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
        {move || rerun.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
        <dl class="facts card">
            <div><dt>"Pipeline"</dt><dd>
                <a href=move || format!("/workflows/{}", encode(&run().workflow))>{move || run().workflow}</a>
                " / " {move || run().pipeline} " (v" {move || run().version} ")"
            </dd></div>
            <div><dt>"Trigger"</dt><dd>{move || run().trigger}</dd></div>
            <div><dt>"Requested"</dt><dd><Time ms=detail.get_untracked().run.requested_at /></dd></div>
            <div><dt>"Duration"</dt><dd>{move || run().duration_ms(now()).map(human).unwrap_or_else(|| "not started".into())}</dd></div>
            <div><dt>"Agents"</dt><dd id="run-agents">{move || {
                let r = run();
                let agents = if r.agents.is_empty() { r.agent.into_iter().collect() } else { r.agents };
                if agents.is_empty() { "none yet".to_string() } else { agents.join(", ") }
            }}</dd></div>
            // A run placed whole on one agent was retried whole; a run placed
            // task by task retries its tasks (their attempts, below).
            {move || run().agent.is_some().then(|| view! {
                <div><dt>"Attempt"</dt><dd>{move || format!("{} of {}", run().attempt.max(1), run().max_attempts.max(1))}</dd></div>
            })}
            {move || {
                let params = run().params;
                (!params.is_empty()).then(|| view! {
                    <div><dt>"Params"</dt><dd>{params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")}</dd></div>
                })
            }}
        </dl>
        {move || waiting().map(|reason| view! {
            <p class="notice card" id="waiting" role="status"><strong>"Waiting: "</strong>{reason}</p>
        })}
        {move || run().error.map(|e| view! { <ErrorBox message=e /> })}
        <section class="card">
            <h2>"Tasks"</h2>
            <Dag layout=layout states href=href selected=selected_task label=format!("The tasks of run {run_id}, coloured by status") />
        </section>
        <div class="run-body">
            <section class="card tasks">
                <h2 class="visually-hidden">"Task details"</h2>
                <ul class="task-list">
                    {move || detail.with(|d| d.tasks.clone()).into_iter().map(|task| {
                        let name = task.name.clone();
                        let steps = task.steps.clone();
                        let task_name = name.clone();
                        view! {
                            <li data-task=name.clone()>
                                <div class="task-head">
                                    <a href=format!("/runs/{run_id}?task={}", encode(&name))><strong>{name.clone()}</strong></a>
                                    " " <Status status=task.status.as_str().to_string() />
                                    {task.duration_ms.map(|ms| view! { <span class="muted">" " {human(ms)}</span> })}
                                    {task.agent_id.clone().map(|a| view! { <span class="muted task-agent">" on " <span class="mono">{a}</span></span> })}
                                </div>
                                <Attempts attempts=task.attempts.clone() />
                                {task.output.clone().filter(|o| !o.is_empty()).map(|o| view! {
                                    <div class="output"><span class="muted">"output: "</span><code>{o}</code></div>
                                })}
                                {task.error.clone().map(|e| view! { <div class="error small">{e}</div> })}
                                <ul class="steps">
                                    {steps.into_iter().map(|s| {
                                        let href = format!("/runs/{run_id}?task={}&step={}", encode(&task_name), encode(&s.name));
                                        view! {
                                            <li>
                                                <a href=href>{s.name.clone()}</a>
                                                " " <Status status=s.status.as_str().to_string() />
                                                {s.exit_code.filter(|c| *c != 0).map(|c| view! { <span class="muted">" exit " {c}</span> })}
                                                {s.duration_ms.map(|ms| view! { <span class="muted">" " {human(ms)}</span> })}
                                            </li>
                                        }
                                    }).collect_view()}
                                </ul>
                            </li>
                        }
                    }).collect_view()}
                </ul>
            </section>
            <LogPane run_id detail logs />
        </div>
    }
}
