//! The runs list (live, filtered, paged) and a run's page (its DAG coloured
//! by live task status, outputs, why it waits, re-run and cancel, logs).

pub mod logs;

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use serde::{Deserialize, Serialize};

use crate::api::{self, Run, RunDetail, enc};
use crate::ui::{Dag, ErrorBox, NodeState, Status, Time, duration_text, now};
use logs::{LogPane, LogStore};

const STATUSES: &[&str] = &[
    "queued",
    "starting_up",
    "running",
    "success",
    "error",
    "cancelled",
    "shutting_down",
    "unknown",
];
const TRIGGERS: &[&str] = &["manual", "webhook", "cron"];
const PAGE: usize = 25;

#[derive(Debug, Clone, Default, PartialEq)]
struct Filters {
    workflow: String,
    pipeline: String,
    status: String,
    trigger: String,
    cursor: String,
}

impl Filters {
    fn matches(&self, run: &Run) -> bool {
        (self.workflow.is_empty() || run.workflow == self.workflow)
            && (self.pipeline.is_empty() || run.pipeline == self.pipeline)
            && (self.status.is_empty() || run.status.as_str() == self.status)
            && (self.trigger.is_empty() || run.trigger == self.trigger)
    }

    fn api_path(&self) -> String {
        let mut path = format!("/api/v1/runs?limit={PAGE}");
        for (key, value) in [
            ("workflow", &self.workflow),
            ("pipeline", &self.pipeline),
            ("status", &self.status),
            ("trigger", &self.trigger),
            ("cursor", &self.cursor),
        ] {
            if !value.is_empty() {
                path.push_str(&format!("&{key}={}", enc(value)));
            }
        }
        path
    }

    /// This page's URL with another cursor.
    fn page_href(&self, cursor: &str) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("workflow", &self.workflow),
            ("pipeline", &self.pipeline),
            ("status", &self.status),
            ("trigger", &self.trigger),
        ] {
            if !value.is_empty() {
                parts.push(format!("{key}={}", enc(value)));
            }
        }
        if !cursor.is_empty() {
            parts.push(format!("cursor={}", enc(cursor)));
        }
        format!("/runs?{}", parts.join("&"))
    }
}

#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let filters = Memo::new(move |_| {
        query.with(|q| {
            let get = |k: &str| q.get(k).unwrap_or_default();
            Filters {
                workflow: get("workflow"),
                pipeline: get("pipeline"),
                status: get("status"),
                trigger: get("trigger"),
                cursor: get("cursor"),
            }
        })
    });
    let page = Resource::new(
        move || filters.get(),
        |f| async move { api::get::<api::RunList>(f.api_path()).await },
    );
    // The rows as the feed updates them.
    let live: RwSignal<BTreeMap<i64, Run>> = RwSignal::new(BTreeMap::new());
    let (fresh, set_fresh) = signal(Vec::<Run>::new());
    Effect::new(move |_| {
        page.track();
        live.set(BTreeMap::new());
        set_fresh.set(Vec::new());
    });
    crate::live::follow(
        || "/api/v1/runs/feed".to_string(),
        move |message| match message.get("type").and_then(|t| t.as_str()) {
            Some("run") => {
                let Some(run) = message
                    .get("run")
                    .and_then(|r| serde_json::from_value::<Run>(r.clone()).ok())
                else {
                    return;
                };
                let known = page.with_untracked(|p| {
                    p.as_ref()
                        .and_then(|r| r.as_ref().ok())
                        .is_some_and(|l| l.runs.iter().any(|r| r.id == run.id))
                }) || fresh.with_untracked(|f| f.iter().any(|r| r.id == run.id));
                let f = filters.get_untracked();
                if known {
                    live.update(|l| {
                        l.insert(run.id, run);
                    });
                } else if f.cursor.is_empty() && f.matches(&run) {
                    set_fresh.update(|v| {
                        v.insert(0, run);
                        v.truncate(PAGE);
                    });
                }
            }
            Some("resync") => page.refetch(),
            _ => {}
        },
        || false,
    );
    let select = |name: &'static str, label: &'static str, options: &'static [&'static str]| {
        view! {
            <div class="field">
                <label for=format!("filter-{name}")>{label}</label>
                <select id=format!("filter-{name}") name=name>
                    <option value="">"any"</option>
                    {move || {
                        let current = filters.with(|f| match name {
                            "status" => f.status.clone(),
                            _ => f.trigger.clone(),
                        });
                        options
                            .iter()
                            .map(|o| {
                                view! {
                                    <option value=*o selected=current == *o>{o.replace('_', " ")}</option>
                                }
                            })
                            .collect_view()
                    }}
                </select>
            </div>
        }
    };
    view! {
        <Title text="Runs" />
        <div class="page-head">
            <h1>"Runs"</h1>
        </div>
        // A GET form: filters are part of the URL, and work without the wasm.
        <form method="get" class="filters card" action="/runs">
            <div class="field">
                <label for="filter-workflow">"Workflow"</label>
                <input id="filter-workflow" name="workflow" prop:value=move || filters.with(|f| f.workflow.clone()) />
            </div>
            <div class="field">
                <label for="filter-pipeline">"Pipeline"</label>
                <input id="filter-pipeline" name="pipeline" prop:value=move || filters.with(|f| f.pipeline.clone()) />
            </div>
            {select("status", "Status", STATUSES)}
            {select("trigger", "Trigger", TRIGGERS)}
            <button type="submit">"Filter"</button>
            <a href="/runs">"Clear"</a>
        </form>
        <Transition fallback=|| view! { <p class="loading">"Loading runs…"</p> }>
            {move || {
                page.get()
                    .map(|r| match r {
                        Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                        Ok(list) => {
                            let f = filters.get();
                            let mut runs: Vec<Run> = fresh.get();
                            runs.extend(list.runs.iter().filter(|r| !runs.iter().any(|x| x.id == r.id)).cloned().collect::<Vec<_>>());
                            // Runs the feed brought in since the page loaded pass the same filters.
                            runs.retain(|r| f.matches(r));
                            let next = list.next_cursor.clone();
                            if runs.is_empty() {
                                return view! {
                                    <section class="card empty-state" id="no-runs">
                                        <h2>"No runs here"</h2>
                                        <p>
                                            "Start one with the Run button of a pipeline on "
                                            <a href="/workflows">"the workflows page"</a>
                                            ", or clear the filters."
                                        </p>
                                    </section>
                                }
                                    .into_any();
                            }
                            view! {
                                <div class="table-wrap" tabindex="0" role="region" aria-label="Scrollable table">
                                    <table class="list" id="runs">
                                        <thead>
                                            <tr>
                                                <th scope="col">"Run"</th>
                                                <th scope="col">"Status"</th>
                                                <th scope="col">"Workflow / pipeline"</th>
                                                <th scope="col">"Trigger"</th>
                                                <th scope="col">"Requested"</th>
                                                <th scope="col">"Duration"</th>
                                            </tr>
                                        </thead>
                                        <tbody>
                                            {runs
                                                .into_iter()
                                                .map(|run| {
                                                    let id = run.id;
                                                    let current = Memo::new(move |_| {
                                                        live.with(|l| l.get(&id).cloned()).unwrap_or_else(|| run.clone())
                                                    });
                                                    view! {
                                                        <tr data-run=id>
                                                            <td><a href=format!("/runs/{id}")>"#" {id}</a></td>
                                                            <td><Status status=Signal::derive(move || current.get().status.as_str().to_string()) /></td>
                                                            <td>
                                                                {move || {
                                                                    let r = current.get();
                                                                    format!("{} / {}", r.workflow, r.pipeline)
                                                                }}
                                                            </td>
                                                            <td>{move || current.get().trigger}</td>
                                                            <td><Time ms=current.get_untracked().requested_at /></td>
                                                            <td>
                                                                {move || current.get().duration_ms(now()).map(duration_text)}
                                                            </td>
                                                        </tr>
                                                    }
                                                })
                                                .collect_view()}
                                        </tbody>
                                    </table>
                                </div>
                                <nav class="pager" aria-label="Pages">
                                    {(!f.cursor.is_empty()).then(|| view! { <a href=f.page_href("")>"Newest"</a> })}
                                    {next.map(|c| view! { <a href=f.page_href(&c) rel="next">"Older runs"</a> })}
                                </nav>
                            }
                                .into_any()
                        }
                    })
            }}
        </Transition>
    }
}

/// A run with the spec of its pipeline at the version it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunData {
    pub detail: RunDetail,
    pub pipeline: api::PipelineSpec,
}

async fn run_data(id: String) -> Result<RunData, String> {
    let id: i64 = id
        .parse()
        .map_err(|_| format!("{id:?} is not a run number"))?;
    let detail: RunDetail = api::get(format!("/api/v1/runs/{id}")).await?;
    #[derive(Deserialize)]
    struct Version {
        spec: api::WorkflowSpec,
    }
    let version: Version = api::get(format!(
        "/api/v1/workflows/{}/versions/{}",
        enc(&detail.run.workflow),
        detail.run.version
    ))
    .await?;
    let pipeline = version
        .spec
        .pipelines
        .get(&detail.run.pipeline)
        .cloned()
        .unwrap_or_default();
    Ok(RunData { detail, pipeline })
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
                        Ok(d) => view! { <RunView data=d /> }.into_any(),
                    })
            }}
        </Transition>
    }
}

#[component]
fn RunView(data: RunData) -> impl IntoView {
    let run_id = data.detail.run.id;
    let detail = RwSignal::new(data.detail);
    let logs = RwSignal::new(LogStore::default());
    let ended = RwSignal::new(false);
    crate::live::follow(
        move || {
            format!(
                "/api/v1/runs/{run_id}/events?after={}",
                logs.with_untracked(|l| l.cursor)
            )
        },
        move |message| match message.get("type").and_then(|t| t.as_str()) {
            Some("run") => {
                if let Some(d) = message
                    .get("run")
                    .and_then(|r| serde_json::from_value::<RunDetail>(r.clone()).ok())
                {
                    detail.set(d);
                }
            }
            Some("log") => logs.update(|l| l.absorb(&message)),
            Some("end") => {
                ended.set(true);
                logs.update(|l| l.ended = true);
            }
            _ => {}
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
                            detail: ms.map(duration_text).unwrap_or_default(),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>()
        })
    });
    let layout = data.pipeline.layout();
    let href = Callback::new(move |task: String| format!("/runs/{run_id}?task={}", enc(&task)));
    let run = move || detail.with(|d| d.run.clone());
    let me = crate::session::current_user();
    let navigate = use_navigate();
    let cancel = Action::new(move |_: &()| async move {
        api::send("POST", format!("/api/v1/runs/{run_id}/cancel"), None).await
    });
    let rerun = Action::new(move |r: &Run| {
        let r = r.clone();
        async move {
            let body = serde_json::json!({ "params": r.params }).to_string();
            let text = api::send(
                "POST",
                format!(
                    "/api/v1/workflows/{}/pipelines/{}/runs",
                    enc(&r.workflow),
                    enc(&r.pipeline)
                ),
                Some(body),
            )
            .await?;
            serde_json::from_str::<Run>(&text).map_err(|e| e.to_string())
        }
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
                <a href=move || format!("/workflows/{}", enc(&run().workflow))>{move || run().workflow}</a>
                " / " {move || run().pipeline} " (v" {move || run().version} ")"
            </dd></div>
            <div><dt>"Trigger"</dt><dd>{move || run().trigger}</dd></div>
            <div><dt>"Requested"</dt><dd><Time ms=detail.get_untracked().run.requested_at /></dd></div>
            <div><dt>"Duration"</dt><dd>{move || run().duration_ms(now()).map(duration_text).unwrap_or_else(|| "not started".into())}</dd></div>
            <div><dt>"Agent"</dt><dd>{move || run().agent.unwrap_or_else(|| "none yet".into())}</dd></div>
            <div><dt>"Attempt"</dt><dd>{move || format!("{} of {}", run().attempt.max(1), run().max_attempts.max(1))}</dd></div>
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
                                    <a href=format!("/runs/{run_id}?task={}", enc(&name))><strong>{name.clone()}</strong></a>
                                    " " <Status status=task.status.as_str().to_string() />
                                    {task.duration_ms.map(|ms| view! { <span class="muted">" " {duration_text(ms)}</span> })}
                                </div>
                                {task.output.clone().filter(|o| !o.is_empty()).map(|o| view! {
                                    <div class="output"><span class="muted">"output: "</span><code>{o}</code></div>
                                })}
                                {task.error.clone().map(|e| view! { <div class="error small">{e}</div> })}
                                <ul class="steps">
                                    {steps.into_iter().map(|s| {
                                        let href = format!("/runs/{run_id}?task={}&step={}", enc(&task_name), enc(&s.name));
                                        view! {
                                            <li>
                                                <a href=href>{s.name.clone()}</a>
                                                " " <Status status=s.status.as_str().to_string() />
                                                {s.exit_code.filter(|c| *c != 0).map(|c| view! { <span class="muted">" exit " {c}</span> })}
                                                {s.duration_ms.map(|ms| view! { <span class="muted">" " {duration_text(ms)}</span> })}
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
