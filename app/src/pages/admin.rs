//! Agents, API tokens, users and roles, and the audit log.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{self, enc};
use crate::ui::{ErrorBox, Time};

fn loading(what: &'static str) -> impl IntoView {
    view! { <p class="loading">{format!("Loading {what}…")}</p> }
}

#[component]
pub fn AgentsPage() -> impl IntoView {
    let agents = Resource::new(
        || (),
        |_| api::get::<api::AgentList>("/api/v1/agents".into()),
    );
    let runs = Resource::new(
        || (),
        |_| api::get::<api::RunList>("/api/v1/runs?status=running&limit=100".into()),
    );
    let me = crate::session::current_user();
    let is_admin = move || me().is_some_and(|m| m.is_admin());
    let join = Action::new(|_: &()| async {
        let text = api::send(
            "POST",
            "/api/v1/agents/join-tokens".into(),
            Some("{}".into()),
        )
        .await?;
        serde_json::from_str::<api::JoinToken>(&text).map_err(|e| e.to_string())
    });
    let revoke = Action::new(move |id: &String| {
        let id = id.clone();
        async move {
            api::send("DELETE", format!("/api/v1/agents/{}", enc(&id)), None).await?;
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
                <p>"Run the install command on the machine that should take runs. It carries a join token for one agent, valid for a short while."</p>
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
                        <div class="table-wrap" tabindex="0" role="region" aria-label="Scrollable table">
                        <table class="list" id="agents">
                            <thead><tr>
                                <th scope="col">"Agent"</th><th scope="col">"State"</th><th scope="col">"Labels"</th>
                                <th scope="col">"Load"</th><th scope="col">"Last heartbeat"</th><th scope="col">"Version"</th>
                                <th scope="col">"Running"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th>
                            </tr></thead>
                            <tbody>
                            {list.agents.into_iter().map(|a| {
                                let mine: Vec<i64> = running.iter().filter(|r| r.agent.as_deref() == Some(a.id.as_str())).map(|r| r.id).collect();
                                let id = a.id.clone();
                                let revocable = !a.builtin && a.state != "revoked";
                                let labels = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
                                view! {
                                    <tr data-agent=a.id.clone()>
                                        <th scope="row">{a.name.clone()} {a.builtin.then_some(" (built-in)")}<div class="muted small mono">{a.id.clone()}</div></th>
                                        <td><span class=format!("status status-{}", a.state)>{a.state.clone()}</span></td>
                                        <td class="mono small">{labels}<div class="muted">{a.runtimes.join(", ")}</div></td>
                                        <td>{format!("{} / {}", a.running, a.capacity)}</td>
                                        <td><Time ms=a.last_seen_at /></td>
                                        <td class="mono">{a.version.clone()}</td>
                                        <td>{mine.into_iter().map(|id| view! { <a href=format!("/runs/{id}")>"#" {id}</a> " " }).collect_view()}</td>
                                        <td>
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

/// Copies its text to the clipboard (once the page is interactive).
#[component]
fn CopyButton(text: String) -> impl IntoView {
    let (copied, set_copied) = signal(false);
    view! {
        <button type="button" class="copy" on:click=move |_| {
            #[cfg(feature = "hydrate")]
            {
                let clipboard = window().navigator().clipboard();
                let _ = clipboard.write_text(&text);
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = &text;
            set_copied.set(true);
        }>
            {move || if copied.get() { "Copied" } else { "Copy" }}
        </button>
    }
}

#[component]
pub fn TokensPage() -> impl IntoView {
    let tokens = Resource::new(
        || (),
        |_| api::get::<api::TokenList>("/api/v1/tokens".into()),
    );
    let name = RwSignal::new(String::new());
    let role = RwSignal::new(String::new());
    let create = Action::new(move |body: &String| {
        let body = body.clone();
        async move {
            let text = api::send("POST", "/api/v1/tokens".into(), Some(body)).await?;
            tokens.refetch();
            serde_json::from_str::<api::NewToken>(&text).map_err(|e| e.to_string())
        }
    });
    let revoke = Action::new(move |id: &String| {
        let id = id.clone();
        async move {
            api::send("DELETE", format!("/api/v1/tokens/{}", enc(&id)), None).await?;
            tokens.refetch();
            Ok::<_, String>(())
        }
    });
    view! {
        <Title text="API tokens" />
        <div class="page-head"><h1>"API tokens"</h1></div>
        <section class="card">
            <h2>"New token"</h2>
            <p class="hint">"For scripts and " <code>"xenectl"</code> ". A token never does more than your own role allows."</p>
            <form class="inline-form" on:submit=move |e| {
                e.prevent_default();
                let mut body = serde_json::json!({ "name": name.get_untracked() });
                if !role.get_untracked().is_empty() {
                    body["role"] = serde_json::json!(role.get_untracked());
                }
                create.dispatch(body.to_string());
            }>
                <div class="field">
                    <label for="token-name">"Name"</label>
                    <input id="token-name" required prop:value=move || name.get() on:input=move |e| name.set(event_target_value(&e)) />
                </div>
                <div class="field">
                    <label for="token-role">"Role"</label>
                    <select id="token-role" on:change=move |e| role.set(event_target_value(&e))>
                        <option value="">"my role"</option>
                        <option value="viewer">"viewer"</option>
                        <option value="editor">"editor"</option>
                        <option value="admin">"admin"</option>
                    </select>
                </div>
                <button type="submit" class="primary" id="create-token">"Create"</button>
            </form>
            {move || create.value().get().map(|r| match r {
                Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                Ok(t) => view! {
                    <div class="copy-box notice">
                        <p><strong>"Copy this token now: it is shown only once."</strong></p>
                        <pre id="new-token">{t.token.clone()}</pre>
                        <CopyButton text=t.token.clone() />
                    </div>
                }.into_any(),
            })}
        </section>
        {move || revoke.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
        <Transition fallback=|| loading("tokens")>
            {move || tokens.get().map(|r| match r {
                Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                Ok(list) if list.tokens.is_empty() => view! {
                    <p class="empty card" id="no-tokens">"You have no API tokens. Create one above to use the API or xenectl."</p>
                }.into_any(),
                Ok(list) => view! {
                    <div class="table-wrap" tabindex="0" role="region" aria-label="Scrollable table">
                    <table class="list" id="tokens">
                        <thead><tr>
                            <th scope="col">"Name"</th><th scope="col">"Role"</th><th scope="col">"Created"</th>
                            <th scope="col">"Last used"</th><th scope="col">"Expires"</th><th scope="col">"State"</th>
                            <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                        </tr></thead>
                        <tbody>
                        {list.tokens.into_iter().map(|t| {
                            let id = t.id.clone();
                            let revoked = t.revoked_at.is_some();
                            view! {
                                <tr data-token=t.name.clone()>
                                    <th scope="row">{t.name.clone()}</th>
                                    <td>{t.role.clone()}</td>
                                    <td><Time ms=t.created_at /></td>
                                    <td>{match t.last_used_at { Some(ms) => view! { <Time ms /> }.into_any(), None => view! { <span class="muted">"never"</span> }.into_any() }}</td>
                                    <td>{match t.expires_at { Some(ms) => view! { <Time ms /> }.into_any(), None => view! { <span class="muted">"never"</span> }.into_any() }}</td>
                                    <td class="token-state">{if revoked { "revoked" } else { "active" }}</td>
                                    <td>{(!revoked).then(|| view! {
                                        <button class="danger revoke" on:click=move |_| { revoke.dispatch(id.clone()); }>"Revoke"</button>
                                    })}</td>
                                </tr>
                            }
                        }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                }.into_any(),
            })}
        </Transition>
    }
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let users = Resource::new(|| (), |_| api::get::<api::UserList>("/api/v1/users".into()));
    let change = Action::new(move |(id, body): &(String, String)| {
        let (id, body) = (id.clone(), body.clone());
        async move {
            api::send("PATCH", format!("/api/v1/users/{}", enc(&id)), Some(body)).await?;
            users.refetch();
            Ok::<_, String>(())
        }
    });
    view! {
        <Title text="Users" />
        <div class="page-head"><h1>"Users and roles"</h1></div>
        <p class="hint">"Viewers read; editors also apply workflows and start and cancel runs; admins also manage agents, people and the audit log."</p>
        {move || change.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
        <Transition fallback=|| loading("users")>
            {move || users.get().map(|r| match r {
                Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                Ok(list) => view! {
                    <div class="table-wrap" tabindex="0" role="region" aria-label="Scrollable table">
                    <table class="list" id="users">
                        <thead><tr><th scope="col">"User"</th><th scope="col">"Role"</th><th scope="col">"Last sign-in"</th><th scope="col">"State"</th></tr></thead>
                        <tbody>
                        {list.users.into_iter().map(|u| {
                            let id = u.id.clone();
                            let id2 = u.id.clone();
                            let disabled = u.disabled;
                            let select_id = format!("role-{}", u.id);
                            view! {
                                <tr>
                                    <th scope="row">{if u.name.is_empty() { u.email.clone() } else { u.name.clone() }}<div class="muted small">{u.email.clone()}</div></th>
                                    <td>
                                        <label class="visually-hidden" for=select_id.clone()>"Role"</label>
                                        <select id=select_id on:change=move |e| {
                                            let body = serde_json::json!({ "role": event_target_value(&e) }).to_string();
                                            change.dispatch((id.clone(), body));
                                        }>
                                            {["viewer", "editor", "admin"].into_iter().map(|r| view! { <option value=r selected=u.role == r>{r}</option> }).collect_view()}
                                        </select>
                                    </td>
                                    <td>{u.last_sign_in.map(|ms| view! { <Time ms /> })}</td>
                                    <td>
                                        <button on:click=move |_| {
                                            let body = serde_json::json!({ "disabled": !disabled }).to_string();
                                            change.dispatch((id2.clone(), body));
                                        }>{if disabled { "Enable" } else { "Disable" }}</button>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                }.into_any(),
            })}
        </Transition>
    }
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let before = move || query.with(|q| q.get("before").unwrap_or_default());
    let page = Resource::new(before, |b| async move {
        let path = if b.is_empty() {
            "/api/v1/audit?limit=50".to_string()
        } else {
            format!("/api/v1/audit?limit=50&before={}", enc(&b))
        };
        api::get::<api::AuditPage>(path).await
    });
    view! {
        <Title text="Audit log" />
        <div class="page-head"><h1>"Audit log"</h1></div>
        <Transition fallback=|| loading("the audit log")>
            {move || page.get().map(|r| match r {
                Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                Ok(p) if p.entries.is_empty() => view! { <p class="empty card">"Nothing recorded yet."</p> }.into_any(),
                Ok(p) => view! {
                    <div class="table-wrap" tabindex="0" role="region" aria-label="Scrollable table">
                    <table class="list" id="audit">
                        <thead><tr><th scope="col">"When"</th><th scope="col">"Who"</th><th scope="col">"Action"</th><th scope="col">"Target"</th><th scope="col">"Detail"</th><th scope="col">"From"</th></tr></thead>
                        <tbody>
                        {p.entries.into_iter().map(|e| view! {
                            <tr>
                                <td><Time ms=e.at /></td>
                                <td>{e.actor}</td>
                                <td class="mono">{e.action}</td>
                                <td class="mono">{e.target}</td>
                                <td class="small">{e.detail}</td>
                                <td class="mono small">{e.remote}</td>
                            </tr>
                        }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                    <nav class="pager" aria-label="Pages">
                        {p.next_before.map(|b| view! { <a href=format!("/audit?before={b}") rel="next">"Older entries"</a> })}
                    </nav>
                }.into_any(),
            })}
        </Transition>
    }
}
