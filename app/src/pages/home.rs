//! The landing page: what needs a look now, from one read of the API
//! (`GET /api/v1/dashboard`): runs stuck, running and queued, the latest
//! failures, and the agents online. Read again every few seconds while
//! the tab is shown, one read at a time; the page changes only when what
//! it shows does, so a reader's focus and place stay put.

use leptos::prelude::*;
use leptos_meta::Title;
use xene_api::dashboard::{Dashboard, RunBrief, RunGroup};
use xene_api::paths;
use xene_core::duration::human;

use crate::api;
use crate::ui::{ErrorBox, Status, Time, loading, now};

/// How often the page reads the dashboard again, in the browser.
#[cfg(feature = "hydrate")]
const REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

#[component]
pub fn HomePage() -> impl IntoView {
    // Whether a read is under way: the timer starts no other meanwhile.
    let reading = StoredValue::new(false);
    let data = Resource::new(
        || (),
        move |_| async move {
            let read = api::get::<Dashboard>(paths::dashboard()).await;
            let _ = reading.try_set_value(false);
            read
        },
    );
    // Here, not in the first-run card: what it says outlives the card,
    // which goes once there are workflows.
    let load = Action::new(move |_: &()| async move {
        let loaded = api::load_examples().await.map_err(api::error_text)?;
        data.refetch();
        Ok::<_, String>(loaded.len())
    });
    #[cfg(feature = "hydrate")]
    {
        let handle = set_interval_with_handle(
            move || {
                if reading.get_value() || document().hidden() {
                    return;
                }
                reading.set_value(true);
                data.refetch();
            },
            REFRESH,
        );
        on_cleanup(move || {
            if let Ok(h) = handle {
                h.clear();
            }
        });
    }
    view! {
        <Title text="Dashboard" />
        <div class="page-head"><h1>"Dashboard"</h1></div>
        {move || load.value().get().map(|r| match r {
            Err(e) => view! { <ErrorBox message=e /> }.into_any(),
            Ok(n) => view! {
                <p class="notice card" id="examples-loaded" role="status">
                    {format!("Loaded {n} example workflows. ")} <a href="/workflows">"See them"</a>
                </p>
            }.into_any(),
        })}
        <Transition fallback=|| loading("the dashboard")>
            {
                // Each read sets the resource anew, equal or not: the board
                // is built again only when the memo's value changes. Made
                // here, under the Transition, so the server waits for it.
                let shown = Memo::new(move |_| data.get());
                move || shown.get().map(|r| match r {
                    Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                    Ok(d) => view! { <Board d=d load=load /> }.into_any(),
                })
            }
        </Transition>
    }
}

#[component]
fn Board(d: Dashboard, load: Action<(), Result<usize, String>>) -> impl IntoView {
    let first_run = (d.workflows == 0).then(|| view! { <FirstRun load /> });
    let agents_note = match (d.agents_draining, d.agents_offline) {
        (0, 0) => String::new(),
        (0, off) => format!("{off} offline"),
        (dr, 0) => format!("{dr} draining"),
        (dr, off) => format!("{dr} draining, {off} offline"),
    };
    let stuck_hint = if d.stuck.count > 0 {
        "Nobody picked these up in time: no agent matches, or none has room."
    } else {
        ""
    };
    view! {
        {first_run}
        <ul class="tiles" id="dashboard-counts" aria-label="At a glance">
            <Tile id="count-running" count=d.running.count words="running" href="/runs?status=running" alert=false />
            <Tile id="count-queued" count=d.queued.count words="queued" href="/runs?status=queued" alert=false />
            <Tile id="count-stuck" count=d.stuck.count words="stuck" href="#stuck" alert={d.stuck.count > 0} />
            // An alert when no agent online can take work, all draining too.
            <Tile id="count-agents" count=d.agents_online words="agents online" href="/agents"
                alert={d.agents_online - d.agents_draining <= 0} />
        </ul>
        {(!agents_note.is_empty()).then(|| view! { <p class="hint agents-note">"Agents: " {agents_note}</p> })}
        <div class="board">
            // Always here: the stuck tile links to it.
            <Group id="stuck" title="Stuck" empty="Nothing waits past the pick-up timeout."
                hint=stuck_hint group=d.stuck />
            <Group id="running" title="Running" empty="Nothing is running." group=d.running hint="" />
            <Group id="queued" title="Queued" empty="Nothing waits for an agent." group=d.queued hint="" />
            <section class="card dash-group" id="failures" aria-labelledby="failures-title">
                <h2 id="failures-title">"Recent failures"</h2>
                {if d.failures.is_empty() {
                    view! { <p class="empty">"No run failed lately."</p> }.into_any()
                } else {
                    view! { <RunList runs=d.failures /> }.into_any()
                }}
                <p class="more"><a href="/runs?status=error">"Every failed run"</a></p>
            </section>
        </div>
    }
}

/// One count, linking to the list it counts.
#[component]
fn Tile(
    id: &'static str,
    count: i64,
    words: &'static str,
    href: &'static str,
    alert: bool,
) -> impl IntoView {
    view! {
        <li class="tile" class:alert=alert id=id>
            <a href=href>
                <span class="count">{count_text(count)}</span>
                <span class="words">{words}</span>
            </a>
        </li>
    }
}

/// `1,234`: counts people read at a glance.
fn count_text(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[component]
fn Group(
    id: &'static str,
    title: &'static str,
    empty: &'static str,
    hint: &'static str,
    group: RunGroup,
) -> impl IntoView {
    let shown = group.runs.len() as i64;
    let more = (group.count > shown).then(|| {
        view! { <p class="more muted small">{format!("and {} more", count_text(group.count - shown))}</p> }
    });
    let title_id = format!("{id}-title");
    let labelled_by = title_id.clone();
    view! {
        <section class="card dash-group" id=id aria-labelledby=labelled_by>
            <h2 id=title_id>{title} " " <span class="muted small">{format!("({})", count_text(group.count))}</span></h2>
            {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
            {if group.runs.is_empty() {
                view! { <p class="empty">{empty}</p> }.into_any()
            } else {
                view! { <RunList runs=group.runs /> }.into_any()
            }}
            {more}
        </section>
    }
}

#[component]
fn RunList(runs: Vec<RunBrief>) -> impl IntoView {
    view! {
        <ul class="dash-runs">
            {runs.into_iter().map(|r| view! { <RunItem run=r /> }).collect_view()}
        </ul>
    }
}

/// A run in a line: number, workflow and pipeline, status, when, and why
/// it failed or waits.
#[component]
fn RunItem(run: RunBrief) -> impl IntoView {
    let href = format!("/runs/{}", run.id);
    let started = run.started_at;
    let finished = run.finished_at;
    let age = move || match (started, finished) {
        (Some(s), Some(f)) => human(f - s),
        (Some(s), None) => human((now() - s).max(0)),
        (None, _) => String::new(),
    };
    let why = run
        .error
        .clone()
        .or(run.failed_task.as_ref().map(|t| format!("task {t} failed")))
        .or(run.scheduler_reason.clone());
    view! {
        <li data-run=run.id>
            <a class="run-link" href=href>
                <span class="mono">"#" {run.id}</span> " "
                <span class="name">{run.workflow.clone()} " / " {run.pipeline.clone()}</span>
            </a>
            " "
            <Status status=run.status.as_str().to_string() />
            " "
            <span class="muted small when"><Time ms=finished.unwrap_or(run.requested_at) /></span>
            {move || {
                let age = age();
                (!age.is_empty()).then(|| view! { <span class="muted small">" · " {age}</span> })
            }}
            {why.map(|w| view! { <div class="why small">{w}</div> })}
        </li>
    }
}

/// For a server with no workflow yet: where to begin, and the examples.
#[component]
fn FirstRun(load: Action<(), Result<usize, String>>) -> impl IntoView {
    let me = crate::session::current_user();
    view! {
        <section class="card empty-state" id="first-run">
            <h2>"No workflows yet"</h2>
            <p>
                "A workflow is a YAML file of pipelines, each a DAG of tasks. Write one in the "
                <a href="/editor">"editor"</a> ", or apply one with " <code>"xenectl apply -f FILE"</code> "."
            </p>
            <Transition>
                {move || me().is_some_and(|m| m.can_edit()).then(|| view! {
                    <p>
                        "Or start from the examples that ship with Xene: "
                        <button id="load-examples" class="primary" disabled=move || load.pending().get()
                            on:click=move |_| { load.dispatch(()); }>
                            {move || if load.pending().get() { "Loading the examples…" } else { "Load the example workflows" }}
                        </button>
                    </p>
                })}
            </Transition>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_with_thousands_separators() {
        assert_eq!(count_text(0), "0");
        assert_eq!(count_text(999), "999");
        assert_eq!(count_text(1000), "1,000");
        assert_eq!(count_text(1234567), "1,234,567");
    }
}
