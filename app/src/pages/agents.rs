//! The agents: their state, load and the tasks they hold, adding one (an
//! install command with a join token), draining and revoking one.

use leptos::prelude::*;
use leptos_meta::Title;
use xene_api::agents::{AgentList, AgentState, JoinToken, JoinTokenRequest};
use xene_api::paths::{self, encode, with_query};
use xene_api::run::RunList;
use xene_core::access::Role;

use crate::api;
use crate::ui::{CopyButton, ErrorBox, Time, loading};

#[component]
pub fn AgentsPage() -> impl IntoView {
    let agents = Resource::new(|| (), |_| api::get::<AgentList>(paths::agents()));
    let runs = Resource::new(
        || (),
        |_| {
            api::get::<RunList>(with_query(
                paths::runs(),
                [
                    ("status", Some("running".into())),
                    ("limit", Some("100".into())),
                ],
            ))
        },
    );
    let me = crate::session::current_user();
    let is_admin = move || me().is_some_and(|m| m.role == Role::Admin);
    let join = Action::new(|_: &()| async {
        let body = JoinTokenRequest::default();
        api::send_as::<JoinToken>("POST", paths::join_tokens(), Some(api::json(&body))).await
    });
    // (agent id, drain it: true; take it back: false)
    let drain = Action::new(move |(id, on): &(String, bool)| {
        let (id, on) = (id.clone(), *on);
        async move {
            let method = if on { "POST" } else { "DELETE" };
            api::send(method, paths::agent_drain(&id), None).await?;
            agents.refetch();
            Ok::<_, String>(())
        }
    });
    let revoke = Action::new(move |id: &String| {
        let id = id.clone();
        async move {
            api::send("DELETE", paths::agent(&id), None).await?;
            agents.refetch();
            Ok::<_, String>(())
        }
    });
    view! {
        <Title text="Agents" />
        <div class="page-head"><h1>"Agents"</h1></div>
        // Inside a Transition: the signed-in user is a resource, read on the
        // server before the page is sent and again once hydrated.
        <Transition>
            {move || is_admin().then(|| view! {
            <section class="card" id="join">
                <h2>"Add an agent"</h2>
                <p>"Run the install command on the machine that should take tasks. It carries a join token for one agent, valid for a short while."</p>
                <button id="new-join-token" class="primary" on:click=move |_| { join.dispatch(()); }>
                    "Make an install command"
                </button>
                {move || join.value().get().map(|r| match r {
                    Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                    Ok(t) => match t.install_command.clone() {
                        Some(command) => view! {
                            <div class="copy-box">
                                <pre id="install-command">{command.clone()}</pre>
                                <CopyButton text=command />
                                <p class="hint">"Valid until " <Time ms=t.expires_at /> "."</p>
                            </div>
                        }.into_any(),
                        // Plain HTTP beyond loopback: no `curl | sh`, the token and why.
                        None => view! {
                            <div class="copy-box notice">
                                <pre id="join-token">{t.token.clone()}</pre>
                                <CopyButton text=t.token.clone() />
                                <p class="hint">{t.install_note.clone().unwrap_or_default()}</p>
                            </div>
                        }.into_any(),
                    }
                })}
            </section>
            })}
        </Transition>
        {move || revoke.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
        {move || drain.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
        <Transition fallback=|| loading("agents")>
            {move || agents.get().map(|r| match r {
                Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                Ok(list) if list.agents.is_empty() => view! {
                    <section class="card empty-state"><h2>"No agents"</h2>
                    <p>"Agents run the pipelines. Make an install command above (admins) and run it on a machine with Docker."</p></section>
                }.into_any(),
                Ok(list) => {
                    let running = runs.get().and_then(|r| r.ok()).map(|r| r.runs).unwrap_or_default();
                    view! {
                        <div class="table-wrap" tabindex={let narrow = crate::theme::narrow(); move || (!narrow.get()).then_some("0")} role="region" aria-label="Scrollable table">
                        <table class="list cards" id="agents">
                            <thead><tr>
                                <th scope="col">"Agent"</th><th scope="col">"State"</th><th scope="col">"Labels"</th>
                                <th scope="col">"Load"</th><th scope="col">"Last heartbeat"</th><th scope="col">"Version"</th>
                                <th scope="col">"Holds"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th>
                            </tr></thead>
                            <tbody>
                            {list.agents.into_iter().map(|a| {
                                let mine: Vec<i64> = running.iter().filter(|r| r.agent.as_deref() == Some(a.id.as_str())).map(|r| r.id).collect();
                                let id = a.id.clone();
                                let drain_id = a.id.clone();
                                let revocable = !a.builtin && a.state != AgentState::Revoked;
                                let drainable = a.state != AgentState::Revoked;
                                let draining = a.draining;
                                // A draining agent that holds nothing may be stopped.
                                let drain_state = match (a.draining, a.drained()) {
                                    (false, _) => None,
                                    (true, true) => Some(("drained", "status status-drained")),
                                    (true, false) => Some(("draining", "status status-shutting_down")),
                                };
                                let held = a.held.clone();
                                let labels = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
                                view! {
                                    <tr data-agent=a.id.clone()>
                                        <th scope="row">{a.name.clone()} {a.builtin.then_some(" (built-in)")}<div class="muted small mono">{a.id.clone()}</div></th>
                                        <td data-label="State">
                                            <span class=format!("status status-{}", a.state)>{a.state.as_str()}</span>
                                            {drain_state.map(|(text, class)| view! { <div class=format!("drain {class}")>{text}</div> })}
                                        </td>
                                        <td data-label="Labels" class="mono small">{labels}<div class="muted">{a.runtimes.join(", ")}</div></td>
                                        <td data-label="Load">{format!("{} / {}", a.running, a.capacity)}</td>
                                        <td data-label="Last heartbeat"><Time ms=a.last_seen_at /></td>
                                        <td data-label="Version" class="mono">{a.version.clone()}</td>
                                        <td data-label="Holds" class="held">
                                            {held.into_iter().map(|h| {
                                                let href = format!("/runs/{}?task={}", h.run_id, encode(&h.task));
                                                let attempt = (h.number > 1).then(|| format!(" (attempt {})", h.number));
                                                view! { <div><a href=href>"#" {h.run_id} " " {h.task.clone()}</a> {attempt}</div> }
                                            }).collect_view()}
                                            // Runs placed whole on it (before task placement).
                                            {mine.into_iter().map(|id| view! { <a href=format!("/runs/{id}")>"#" {id}</a> " " }).collect_view()}
                                        </td>
                                        <td class="actions">
                                            <Show when=move || is_admin() && drainable>
                                                {
                                                    let id = drain_id.clone();
                                                    view! {
                                                        <button class="drain" on:click=move |_| { drain.dispatch((id.clone(), !draining)); }>
                                                            {if draining { "Undrain" } else { "Drain" }}
                                                        </button>
                                                    }
                                                }
                                            </Show>
                                            <Show when=move || is_admin() && revocable>
                                                {
                                                    let id = id.clone();
                                                    view! { <button class="danger" on:click=move |_| { revoke.dispatch(id.clone()); }>"Revoke"</button> }
                                                }
                                            </Show>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                            </tbody>
                        </table>
                        </div>
                    }.into_any()
                }
            })}
        </Transition>
    }
}
