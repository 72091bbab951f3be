//! A workflow's page: each pipeline's DAG, trigger and Run button or form
//! (`run_form`), a webhook pipeline's hook (`hook`), its versions with a
//! diff between any two (`versions`), its cache entries (`caches`), and
//! deleting it (`delete`).

mod caches;
mod delete;
mod hook;
mod run_form;
mod versions;

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use xene_api::artifacts::{ArtifactUsage, size_text};
use xene_api::paths::{self, encode};
use xene_api::workflows::{
    PipelineState, VersionList, VersionSummary, WorkflowDetail, WorkflowVersion, trigger_text,
};
use xene_core::params::Param;
use xene_core::spec::{Pipeline, Task, Trigger};

use crate::api;
use crate::not_found::Missing;
use crate::ui::{Dag, ErrorBox, NodeState, Time};
use caches::Caches;
use delete::{DeleteButton, DeleteConfirm};
use hook::HookPanel;
use run_form::{RunForm, RunNow};
use versions::Versions;

/// The workflow, its versions, and what its runs' artifacts hold against
/// its quota (`None` from a server without artifacts).
type WorkflowData = (WorkflowDetail, Vec<VersionSummary>, Option<ArtifactUsage>);

/// `None` when there is no such workflow (the page answers 404).
async fn workflow_data(name: String) -> Result<Option<WorkflowData>, String> {
    let Some(detail) = api::get_shown::<WorkflowDetail>(paths::workflow(&name)).await? else {
        return Ok(None);
    };
    let versions: VersionList = api::get(paths::versions(&name)).await?;
    let usage = api::get::<ArtifactUsage>(paths::workflow_artifacts(&name))
        .await
        .ok();
    Ok(Some((detail, versions.versions, usage)))
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
                        Ok(None) => view! { <Missing what=format!("There is no workflow named {:?}.", name()) /> }.into_any(),
                        Ok(Some(d)) => workflow_view(d, diff).into_any(),
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
    let versions: VersionList = api::get(paths::versions(&name)).await?;
    let current = versions
        .versions
        .iter()
        .map(|v| v.version)
        .max()
        .unwrap_or(1);
    let previous = version_before(&versions.versions, current);
    let (from, to) = (from.unwrap_or(previous), to.unwrap_or(current));
    let get = |v: i64| api::get::<WorkflowVersion>(paths::version(&name, v));
    let a = get(from).await?;
    let b = get(to).await?;
    Ok((from, to, a.source, b.source))
}

pub(crate) type Diff = Resource<Result<(i64, i64, String, String), String>>;

/// A version number from the query (`?from=1&to=3`).
pub(crate) fn version_param(query: &leptos_router::params::ParamsMap, key: &str) -> Option<i64> {
    query.get(key).and_then(|v| v.parse::<i64>().ok())
}

/// The version the diff starts from by default: the one before `current`
/// (or `current` itself, the first).
pub(crate) fn version_before(versions: &[VersionSummary], current: i64) -> i64 {
    versions
        .iter()
        .map(|v| v.version)
        .filter(|v| *v < current)
        .max()
        .unwrap_or(current)
}

fn workflow_view((detail, versions, usage): WorkflowData, diff: Diff) -> impl IntoView {
    let states = detail.pipelines;
    let detail = detail.current;
    let me = crate::session::current_user();
    let can_edit = move || me().is_some_and(|m| m.can_edit());
    let edit_href = format!("/workflows/{}/edit", encode(&detail.name));
    let name = detail.name.clone();
    let pipelines = detail
        .spec
        .pipelines
        .clone()
        .into_iter()
        .map(|(pname, spec)| {
            let state = states.iter().find(|p| p.name == pname).cloned();
            view! { <PipelineCard workflow=name.clone() name=pname spec state /> }
        })
        .collect_view();
    let deleting = RwSignal::new(false);
    view! {
        <div class="page-head">
            <h1>{detail.name.clone()}</h1>
            <span class="muted">"version " {detail.version} ", applied " <Time ms=detail.created_at /></span>
            {usage.map(|u| view! {
                <span class="muted" id="artifact-usage" title="What its runs' artifacts hold; a pinned run keeps its own past retention">
                    "artifacts: " {size_text(u.bytes)}
                    {u.quota.map(|q| format!(" of {}", size_text(q)))}
                </span>
            })}
            <Show when=can_edit>
                <div class="actions">
                    <a class="button" id="edit-workflow" href=edit_href.clone()>"Edit"</a>
                    <DeleteButton open=deleting />
                </div>
            </Show>
        </div>
        <DeleteConfirm name=detail.name.clone() open=deleting />
        {(!detail.spec.description.is_empty()).then(|| view! { <p>{detail.spec.description.clone()}</p> })}
        {approval(&detail)}
        {pipelines}
        <Caches workflow=detail.name.clone() />
        <Versions versions current=detail.version diff />
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
    spec: Pipeline,
    state: Option<PipelineState>,
) -> impl IntoView {
    let layout = xene_core::layout::layout(
        spec.tasks
            .iter()
            .map(|(name, task)| (name.as_str(), task.depends_on.as_slice())),
    );
    let summaries: BTreeMap<String, NodeState> = spec
        .tasks
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                NodeState {
                    status: String::new(),
                    detail: task_summary(t),
                },
            )
        })
        .collect();
    let form_name = name.clone();
    let (hook_workflow, hook_pipeline) = (workflow.clone(), name.clone());
    let me = crate::session::current_user();
    let can_edit = move || me().is_some_and(|m| m.can_edit());
    let (form_open, set_form_open) = signal(false);
    let params: Vec<(String, Param)> = spec.params.clone().into_iter().collect();
    let (no_params, now_workflow, now_pipeline) =
        (params.is_empty(), workflow.clone(), name.clone());
    let trigger = trigger_text(&spec.trigger);
    let webhook = spec.trigger == Trigger::Webhook;
    let (reason, next_fires) = state
        .map(|s| (s.scheduler_reason, s.next_fires))
        .unwrap_or_default();
    let label = format!("The tasks of pipeline {name} and their dependencies");
    let run_href = format!(
        "/runs?workflow={}&pipeline={}",
        encode(&workflow),
        encode(&name)
    );
    view! {
        <section class="card pipeline" data-pipeline=name.clone()>
            <div class="section-head">
                <h2>{name.clone()}</h2>
                <span class="muted">"trigger: " {trigger}</span>
                {reason.map(|r| view! { <span class="muted">" · " {r}</span> })}
                <a href=run_href>"Runs"</a>
                <Show when=can_edit>
                    {if no_params {
                        view! { <RunNow workflow=now_workflow.clone() pipeline=now_pipeline.clone() /> }.into_any()
                    } else {
                        view! {
                            <button
                                class="primary run-button"
                                aria-expanded=move || form_open.get().to_string()
                                on:click=move |_| set_form_open.update(|o| *o = !*o)
                            >
                                "Run"
                            </button>
                        }
                        .into_any()
                    }}
                </Show>
            </div>
            {(!next_fires.is_empty()).then(|| view! {
                <p class="next-fires">"Next fires: "
                    {next_fires.iter().take(3).map(|ms| view! { <Time ms=*ms /> " " }).collect_view()}
                </p>
            })}
            <Show when=move || form_open.get()>
                <RunForm workflow=workflow.clone() pipeline=form_name.clone() params=params.clone() />
            </Show>
            <Dag layout=layout.clone() states=Signal::derive(move || summaries.clone()) label=label.clone() />
            {webhook.then(|| view! { <HookPanel workflow=hook_workflow.clone() pipeline=hook_pipeline.clone() /> })}
        </section>
    }
}

/// `2 steps · alpine:3`, under a task's name in a drawing.
fn task_summary(task: &Task) -> String {
    let steps = match task.steps.len() {
        1 => "1 step".to_string(),
        n => format!("{n} steps"),
    };
    let runtime = task.image.as_deref().unwrap_or("shell");
    let runtime = runtime.rsplit('/').next().unwrap_or(runtime);
    format!("{steps} · {runtime}")
}

/// Whether this version may have the protected secrets it names.
fn approval(d: &WorkflowVersion) -> Option<impl IntoView + use<>> {
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
