//! The workflows list and a workflow's page: each pipeline's DAG, its
//! versions with a diff between any two, and the Run form.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use serde::{Deserialize, Serialize};

use crate::api::{self, Run, enc};
use crate::ui::{Dag, ErrorBox, NodeState, Status, Time, diff_lines, duration_text, now};

/// A pipeline in the list: its trigger and its last run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineRow {
    pub name: String,
    pub trigger: String,
    /// A cron pipeline's next fire (UTC ms).
    pub next_fire: Option<i64>,
    pub last_run: Option<Run>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRow {
    pub name: String,
    pub description: String,
    pub version: i64,
    pub updated_at: i64,
    pub pipelines: Vec<PipelineRow>,
}

/// Workflows read with each pipeline's trigger and last run, on the server
/// in one round trip (the API has them per workflow and per pipeline).
#[server]
pub async fn workflow_rows() -> Result<Vec<WorkflowRow>, ServerFnError> {
    // Past this many, the list shows names and versions only.
    const DETAILED: usize = 100;
    let list: api::WorkflowList = api::get("/api/v1/workflows".into())
        .await
        .map_err(ServerFnError::new)?;
    let mut rows = Vec::new();
    for (i, w) in list.workflows.into_iter().enumerate() {
        let mut row = WorkflowRow {
            name: w.name.clone(),
            description: w.description.clone(),
            version: w.version,
            updated_at: w.updated_at,
            pipelines: w
                .pipelines
                .iter()
                .map(|p| PipelineRow {
                    name: p.clone(),
                    ..PipelineRow::default()
                })
                .collect(),
        };
        if i < DETAILED {
            let detail: api::WorkflowDetail =
                api::get(format!("/api/v1/workflows/{}", enc(&w.name)))
                    .await
                    .map_err(ServerFnError::new)?;
            for p in &mut row.pipelines {
                p.trigger = detail
                    .spec
                    .pipelines
                    .get(&p.name)
                    .map(|s| s.trigger_text())
                    .unwrap_or_default();
                p.next_fire = detail
                    .pipelines
                    .iter()
                    .find(|s| s.name == p.name)
                    .and_then(|s| s.next_fires.first().copied());
                let runs: api::RunList = api::get(format!(
                    "/api/v1/runs?workflow={}&pipeline={}&limit=1",
                    enc(&w.name),
                    enc(&p.name)
                ))
                .await
                .map_err(ServerFnError::new)?;
                p.last_run = runs.runs.into_iter().next();
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The example the first-run card offers to run: shell only, so it runs on
/// the built-in agent of a fresh server without Docker images.
const FIRST_EXAMPLE: (&str, &str) = ("fan-out-fan-in", "shards");

#[component]
pub fn WorkflowsPage() -> impl IntoView {
    let rows = Resource::new(
        || (),
        |_| async { workflow_rows().await.map_err(api::error_text) },
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
        let text = api::send(
            "POST",
            format!("/api/v1/workflows/{}/pipelines/{}/runs", enc(w), enc(p)),
            None,
        )
        .await?;
        serde_json::from_str::<Run>(&text).map_err(|e| e.to_string())
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
                                <div class="table-wrap" tabindex="0" role="region" aria-label="Scrollable table">
                                    <table class="list" id="workflows">
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
                                        <tbody>
                                            {rows.into_iter().map(workflow_row).collect_view()}
                                        </tbody>
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

fn workflow_row(w: WorkflowRow) -> impl IntoView {
    let href = format!("/workflows/{}", enc(&w.name));
    let span = w.pipelines.len().max(1);
    let mut pipelines = w.pipelines.into_iter();
    let first = pipelines.next();
    let cells = |p: Option<PipelineRow>| {
        let p = p.unwrap_or_default();
        let last = p.last_run.clone();
        view! {
            <td>{p.name.clone()}</td>
            <td>{p.trigger.clone()}</td>
            <td>
                {match p.next_fire {
                    Some(ms) => view! { <Time ms /> }.into_any(),
                    None => view! { <span class="muted">"—"</span> }.into_any(),
                }}
            </td>
            <td>
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
            <td>
                {move || {
                    last.as_ref().and_then(|r| r.duration_ms(now())).map(duration_text)
                }}
            </td>
        }
    };
    view! {
        <tr>
            <th scope="row" rowspan=span>
                <a href=href>{w.name.clone()}</a>
                <span class="muted">" v" {w.version}</span>
                <div class="muted small">{w.description.clone()}</div>
            </th>
            {cells(first)}
        </tr>
        {pipelines.map(|p| view! { <tr>{cells(Some(p))}</tr> }).collect_view()}
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WorkflowData {
    detail: api::WorkflowDetail,
    versions: Vec<api::VersionSummary>,
}

async fn workflow_data(name: String) -> Result<WorkflowData, String> {
    let detail: api::WorkflowDetail = api::get(format!("/api/v1/workflows/{}", enc(&name))).await?;
    let versions: api::VersionList =
        api::get(format!("/api/v1/workflows/{}/versions", enc(&name))).await?;
    Ok(WorkflowData {
        detail,
        versions: versions.versions,
    })
}

#[component]
pub fn WorkflowPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.with(|p| p.get("name").unwrap_or_default());
    let data = Resource::new(name, workflow_data);
    // Made here, with the page, not inside what `data` renders: a resource
    // made while another one resolves gets its number in whatever order
    // the server's fetches finish, and the browser would then hydrate it
    // with another resource's value.
    let query = use_query_map();
    let pick = move |key: &str| query.with(|q| version_param(q, key));
    let diff = Resource::new(
        move || (name(), pick("from"), pick("to")),
        |(name, from, to)| version_diff(name, from, to),
    );
    view! {
        <Title text=name />
        <nav class="crumbs" aria-label="Breadcrumb">
            <a href="/workflows">"Workflows"</a>
            " / "
            <span aria-current="page">{name}</span>
        </nav>
        <Transition fallback=|| view! { <p class="loading">"Loading the workflow…"</p> }>
            {move || {
                data.get()
                    .map(|r| match r {
                        Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                        Ok(d) => workflow_view(d, diff).into_any(),
                    })
            }}
        </Transition>
    }
}

/// Two versions' sources for the diff: `from` (default: the version before
/// the current one) and `to` (default: the current one).
async fn version_diff(
    name: String,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(i64, i64, String, String), String> {
    let versions: api::VersionList =
        api::get(format!("/api/v1/workflows/{}/versions", enc(&name))).await?;
    let current = versions
        .versions
        .iter()
        .map(|v| v.version)
        .max()
        .unwrap_or(1);
    let previous = version_before(&versions.versions, current);
    let (from, to) = (from.unwrap_or(previous), to.unwrap_or(current));
    let get = |v: i64| {
        api::get::<api::WorkflowVersion>(format!("/api/v1/workflows/{}/versions/{v}", enc(&name)))
    };
    let a = get(from).await?;
    let b = get(to).await?;
    Ok((from, to, a.source, b.source))
}

type Diff = Resource<Result<(i64, i64, String, String), String>>;

/// A version number from the query (`?from=1&to=3`).
fn version_param(query: &leptos_router::params::ParamsMap, key: &str) -> Option<i64> {
    query.get(key).and_then(|v| v.parse::<i64>().ok())
}

/// The version the diff starts from by default: the one before `current`
/// (or `current` itself, the first).
fn version_before(versions: &[api::VersionSummary], current: i64) -> i64 {
    versions
        .iter()
        .map(|v| v.version)
        .filter(|v| *v < current)
        .max()
        .unwrap_or(current)
}

fn workflow_view(d: WorkflowData, diff: Diff) -> impl IntoView {
    let detail = d.detail;
    let me = crate::session::current_user();
    let can_edit = move || me().is_some_and(|m| m.can_edit());
    let edit_href = format!("/workflows/{}/edit", enc(&detail.name));
    let name = detail.name.clone();
    let pipelines = detail
        .spec
        .pipelines
        .clone()
        .into_iter()
        .map(|(pname, spec)| {
            let state = detail
                .pipelines
                .iter()
                .find(|p| p.name == pname)
                .cloned()
                .unwrap_or_default();
            view! { <PipelineCard workflow=name.clone() name=pname spec state /> }
        })
        .collect_view();
    view! {
        <div class="page-head">
            <h1>{detail.name.clone()}</h1>
            <span class="muted">"version " {detail.version} ", applied " <Time ms=detail.created_at /></span>
            <Show when=can_edit>
                <div class="actions">
                    <a class="button" id="edit-workflow" href=edit_href.clone()>"Edit"</a>
                </div>
            </Show>
        </div>
        {(!detail.spec.description.is_empty()).then(|| view! { <p>{detail.spec.description.clone()}</p> })}
        {approval(&detail)}
        {pipelines}
        <Versions versions=d.versions current=detail.version diff />
        <details class="card">
            <summary>"Source of version " {detail.version}</summary>
            <pre class="source">{detail.source.clone()}</pre>
        </details>
    }
}

#[component]
fn PipelineCard(
    workflow: String,
    name: String,
    spec: api::PipelineSpec,
    state: api::PipelineState,
) -> impl IntoView {
    let layout = spec.layout();
    let summaries: BTreeMap<String, NodeState> = spec
        .tasks
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                NodeState {
                    status: String::new(),
                    detail: t.summary(),
                },
            )
        })
        .collect();
    let form_name = name.clone();
    let (hook_workflow, hook_pipeline) = (workflow.clone(), name.clone());
    let me = crate::session::current_user();
    let can_edit = move || me().is_some_and(|m| m.can_edit());
    let (form_open, set_form_open) = signal(false);
    let params = spec.params();
    let trigger = spec.trigger_text();
    let label = format!("The tasks of pipeline {name} and their dependencies");
    let run_href = format!("/runs?workflow={}&pipeline={}", enc(&workflow), enc(&name));
    view! {
        <section class="card pipeline" data-pipeline=name.clone()>
            <div class="section-head">
                <h2>{name.clone()}</h2>
                <span class="muted">"trigger: " {trigger}</span>
                {state
                    .scheduler_reason
                    .clone()
                    .map(|r| view! { <span class="muted">" · " {r}</span> })}
                <a href=run_href>"Runs"</a>
                <Show when=can_edit>
                    <button
                        class="primary run-button"
                        aria-expanded=move || form_open.get().to_string()
                        on:click=move |_| set_form_open.update(|o| *o = !*o)
                    >
                        "Run"
                    </button>
                </Show>
            </div>
            {(!state.next_fires.is_empty()).then(|| view! {
                <p class="next-fires">"Next fires: "
                    {state.next_fires.iter().take(3).map(|ms| view! { <Time ms=*ms /> " " }).collect_view()}
                </p>
            })}
            <Show when=move || form_open.get()>
                <RunForm workflow=workflow.clone() pipeline=form_name.clone() params=params.clone() />
            </Show>
            <Dag layout=layout.clone() states=Signal::derive(move || summaries.clone()) label=label.clone() />
            {(state.trigger == "webhook").then(|| view! { <HookPanel workflow=hook_workflow.clone() pipeline=hook_pipeline.clone() /> })}
        </section>
    }
}

/// The form a Run button opens: one field per param, its default filled in.
#[component]
fn RunForm(workflow: String, pipeline: String, params: Vec<api::Param>) -> impl IntoView {
    let navigate = use_navigate();
    let values: Vec<(String, RwSignal<String>)> = params
        .iter()
        .map(|p| (p.name.clone(), RwSignal::new(p.default.clone())))
        .collect();
    let path = format!(
        "/api/v1/workflows/{}/pipelines/{}/runs",
        enc(&workflow),
        enc(&pipeline)
    );
    let for_submit = values.clone();
    let start = Action::new(move |body: &String| {
        let path = path.clone();
        let body = body.clone();
        async move {
            let text = api::send("POST", path, Some(body)).await?;
            serde_json::from_str::<Run>(&text).map_err(|e| e.to_string())
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(run)) = start.value().get() {
            navigate(&format!("/runs/{}", run.id), Default::default());
        }
    });
    let fields = params
        .into_iter()
        .zip(values)
        .map(|(p, (_, value))| {
            let id = format!("param-{}-{}", pipeline, p.name);
            let input = if p.choices.is_empty() {
                let kind = match p.kind.as_str() {
                    "number" | "integer" => "number",
                    _ => "text",
                };
                view! {
                    <input
                        id=id.clone()
                        name=p.name.clone()
                        type=kind
                        prop:value=move || value.get()
                        on:input=move |e| value.set(event_target_value(&e))
                    />
                }
                    .into_any()
            } else {
                view! {
                    <select id=id.clone() name=p.name.clone() on:change=move |e| value.set(event_target_value(&e))>
                        {p.choices
                            .iter()
                            .map(|c| {
                                let selected = *c == p.default;
                                view! { <option value=c.clone() selected=selected>{c.clone()}</option> }
                            })
                            .collect_view()}
                    </select>
                }
                    .into_any()
            };
            view! {
                <div class="field">
                    <label for=id>{p.name.clone()}</label>
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
                let body = serde_json::json!({ "params": params }).to_string();
                start.dispatch(body);
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

/// The versions, and a diff between any two (`?from=1&to=3`).
/// Whether this version may have the protected secrets it names.
fn approval(d: &api::WorkflowDetail) -> Option<impl IntoView + use<>> {
    let names = (!d.protected_secrets.is_empty()).then(|| d.protected_secrets.join(", "))?;
    let (v, w) = (d.version, &d.name);
    let text = match &d.approved_by {
        Some(by) => format!("Uses protected secrets {names}: approved by {by}."),
        None => format!(
            "Uses protected secrets {names}: its runs are refused until an admin approves version {v} (xenectl approve {w} --version {v})."
        ),
    };
    Some(view! { <p class="card" id="approval">{text}</p> })
}

#[component]
fn Versions(versions: Vec<api::VersionSummary>, current: i64, diff: Diff) -> impl IntoView {
    let query = use_query_map();
    let pick =
        move |key: &str, default: i64| query.with(|q| version_param(q, key).unwrap_or(default));
    let previous = version_before(&versions, current);
    let options = move |selected: i64| {
        versions
            .iter()
            .map(|v| {
                view! {
                    <option value=v.version selected=v.version == selected>
                        {format!("v{}", v.version)}
                    </option>
                }
            })
            .collect_view()
    };
    let (from_options, to_options) = (options.clone(), options);
    view! {
        <section class="card versions">
            <h2>"Versions"</h2>
            // A GET form: picking versions is a link, so it works without the
            // wasm and the diff has its own URL.
            <form method="get" class="diff-pick">
                <label for="diff-from">"Compare"</label>
                <select id="diff-from" name="from">{move || from_options(pick("from", previous))}</select>
                <label for="diff-to">"with"</label>
                <select id="diff-to" name="to">{move || to_options(pick("to", current))}</select>
                <button type="submit">"Show the diff"</button>
            </form>
            <Transition fallback=|| view! { <p class="loading">"Loading the diff…"</p> }>
                {move || {
                    diff.get()
                        .map(|r| match r {
                            Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                            Ok((from, to, a, b)) => diff_view(from, to, &a, &b).into_any(),
                        })
                }}
            </Transition>
        </section>
    }
}

fn diff_view(from: i64, to: i64, a: &str, b: &str) -> impl IntoView {
    if a == b {
        return view! {
            <p class="muted" id="diff">{format!("v{from} and v{to} are the same.")}</p>
        }
        .into_any();
    }
    diff_lines(a, b, format!("Changes from v{from} to v{to}")).into_any()
}

/// A webhook pipeline's URL and its recent deliveries, accepted or refused,
/// each with why; editors make the hook or rotate its secret (shown once).
#[component]
fn HookPanel(workflow: String, pipeline: String) -> impl IntoView {
    let hook_path = format!(
        "/api/v1/workflows/{}/pipelines/{}/hook",
        enc(&workflow),
        enc(&pipeline)
    );
    let get_path = hook_path.clone();
    // Fetched by the browser alone (the server renders "Loading"): made
    // inside what the page's resource renders, a server-side resource here
    // would be numbered in the order the fetches finish (see WorkflowPage).
    let hook = LocalResource::new(move || {
        let path = get_path.clone();
        async move {
            let hook = api::get::<api::Hook>(path).await.ok();
            let deliveries = match &hook {
                Some(h) => api::get::<api::DeliveryList>(format!(
                    "/api/v1/hooks/{}/deliveries",
                    enc(&h.id)
                ))
                .await
                .map(|d| d.deliveries)
                .unwrap_or_default(),
                None => Vec::new(),
            };
            (hook, deliveries)
        }
    });
    let rotate = Action::new(move |_: &()| {
        let path = hook_path.clone();
        async move {
            let text = api::send("POST", path, Some(String::new())).await?;
            hook.refetch();
            serde_json::from_str::<api::Hook>(&text).map_err(|e| e.to_string())
        }
    });
    let me = crate::session::current_user();
    let can_edit = move || me().is_some_and(|m| m.can_edit());
    view! {
        <div class="hook">
            <h3>"Webhook"</h3>
            // Not a Transition: the server renders "Loading" (a local
            // resource never loads there), and so does the browser until
            // its fetch is back, so hydration finds what the server sent.
            {move || match hook.get() {
                None => view! { <p class="loading">"Loading the hook…"</p> }.into_any(),
                Some((h, deliveries)) => view! {
                    {match h.clone() {
                        Some(h) => view! {
                            <p>"Deliveries go to " <code class="hook-url">{h.path.clone()}</code>
                               " on this server, signed with the hook's secret (GitHub's X-Hub-Signature-256 or Standard Webhooks)."</p>
                        }.into_any(),
                        None => view! { <p class="muted">"No hook yet: make one to get its URL and secret."</p> }.into_any(),
                    }}
                    {move || can_edit().then(|| view! {
                        <button class="rotate-hook" on:click=move |_| { rotate.dispatch(()); }>
                            {if h.is_some() { "Rotate the secret" } else { "Make a hook" }}
                        </button>
                    })}
                    {if deliveries.is_empty() {
                        view! { <p class="muted">"No deliveries yet."</p> }.into_any()
                    } else {
                        view! {
                            <div class="table-wrap" tabindex="0" role="region" aria-label="Recent deliveries">
                            <table class="list deliveries">
                                <thead><tr>
                                    <th scope="col">"Received"</th><th scope="col">"Scheme"</th><th scope="col">"Answer"</th>
                                    <th scope="col">"Why"</th><th scope="col">"Run"</th>
                                </tr></thead>
                                <tbody>
                                {deliveries.into_iter().map(|d| view! {
                                    <tr data-accepted=d.accepted.to_string()>
                                        <td><Time ms=d.received_at /></td>
                                        // Never an empty text: the browser drops it
                                        // from the server's HTML, and hydration
                                        // then finds no text node where it wants one.
                                        <td>{non_empty(&d.scheme, "none")}</td>
                                        <td>{d.http_status}</td>
                                        <td>{non_empty(&d.reason, "—")}</td>
                                        <td>{d.run_id.map(|id| view! { <a href=format!("/runs/{id}")>{format!("#{id}")}</a> })}</td>
                                    </tr>
                                }).collect_view()}
                                </tbody>
                            </table>
                            </div>
                        }.into_any()
                    }}
                }.into_any(),
            }}
            {move || rotate.value().get().map(|r| match r {
                Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                Ok(h) => view! {
                    <div class="copy-box notice">
                        <p><strong>"Copy this secret now: it is shown only once."</strong></p>
                        <pre class="hook-secret">{h.secret.clone().unwrap_or_default()}</pre>
                    </div>
                }.into_any(),
            })}
        </div>
    }
}

/// `text`, or `instead` when it is empty.
fn non_empty(text: &str, instead: &str) -> String {
    if text.is_empty() { instead } else { text }.to_string()
}
