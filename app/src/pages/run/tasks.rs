//! The task list beside the log: each task's status, time and agent, a
//! retried task said so with a link to each attempt's log, its output,
//! error and steps.

use leptos::prelude::*;
use xene_api::paths::encode;
use xene_api::run::{RunDetail, TaskAttempt, TaskRun};
use xene_core::duration::human;

use crate::ui::Status;

/// How many times a task was tried: its attempts that started (not one
/// that waits for its backoff or an agent, nor one lost before it ran), or
/// its attempt number for a run placed whole (no attempts listed).
pub fn tries(task: &TaskRun) -> i64 {
    if task.attempts.is_empty() {
        return task.attempt.max(1);
    }
    (task
        .attempts
        .iter()
        .filter(|a| a.started_at.is_some())
        .count() as i64)
        .max(1)
}

/// A task's attempts, when there was more than one (or one that waits):
/// where each ran and how it ended, each a link to its log.
#[component]
fn Attempts(run_id: i64, task: String, attempts: Vec<TaskAttempt>) -> impl IntoView {
    let worth_showing = attempts.len() > 1 || attempts.iter().any(|a| a.status == "ready");
    worth_showing.then(|| view! {
        <ul class="attempts small">
            {attempts.into_iter().map(|a| {
                let href = format!("/runs/{run_id}?task={}&attempt={}", encode(&task), a.number);
                view! {
                    <li data-attempt=a.number>
                        <a href=href>"attempt " {a.number}</a> " "
                        <Status status=a.status.clone() />
                        {a.agent_id.map(|agent| view! { <span class="muted">" on " <span class="mono">{agent}</span></span> })}
                        {a.error.map(|e| view! { <span class="muted">" — " {e}</span> })}
                    </li>
                }
            }).collect_view()}
        </ul>
    })
}

#[component]
pub fn TaskList(run_id: i64, detail: RwSignal<RunDetail>) -> impl IntoView {
    view! {
        <section class="card tasks">
            <h2 class="visually-hidden">"Task details"</h2>
            <ul class="task-list">
                {move || detail.with(|d| d.tasks.clone()).into_iter().map(|task| {
                    let name = task.name.clone();
                    let tried = tries(&task);
                    view! {
                        <li data-task=name.clone()>
                            <div class="task-head">
                                <a href=format!("/runs/{run_id}?task={}", encode(&name))><strong>{name.clone()}</strong></a>
                                " " <Status status=task.status.as_str().to_string() />
                                {task.duration_ms.map(|ms| view! { <span class="muted">" " {human(ms)}</span> })}
                                {(tried > 1).then(|| view! {
                                    " " <span class="retried" title="How many times this task ran; its attempts are listed below">
                                        {format!("retried: {tried} attempts")}
                                    </span>
                                })}
                                {task.agent_id.clone().map(|a| view! { <span class="muted task-agent">" on " <span class="mono">{a}</span></span> })}
                            </div>
                            <Attempts run_id task=name.clone() attempts=task.attempts.clone() />
                            {task.output.clone().filter(|o| !o.is_empty()).map(|o| view! {
                                <div class="output"><span class="muted">"output: "</span><code>{o}</code></div>
                            })}
                            {task.error.clone().map(|e| view! { <div class="error small">{e}</div> })}
                            <ul class="steps">
                                {task.steps.iter().map(|s| {
                                    let href = format!("/runs/{run_id}?task={}&step={}", encode(&name), encode(&s.name));
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
    }
}
