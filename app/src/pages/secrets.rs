//! Secrets: their names and scopes for everyone signed in; admins create,
//! replace and delete them. A value goes to the server once and is never
//! shown again, here or anywhere.

use leptos::prelude::*;
use leptos_meta::Title;

use xene_api::paths::{self, encode};
use xene_api::secrets::{SecretInfo, SecretList, SecretValueRequest};
use xene_api::workflows::WorkflowList;
use xene_core::access::Role;

use crate::api;
use crate::ui::{ErrorBox, Time};

fn path(name: &str, workflow: &str) -> String {
    paths::secret(name, (!workflow.is_empty()).then_some(workflow))
}

#[component]
pub fn SecretsPage() -> impl IntoView {
    let secrets = Resource::new(|| (), |_| api::get::<SecretList>(paths::secrets(None)));
    let me = crate::session::current_user();
    // The scopes a secret can have: global, or one of the workflows. Only
    // an admin's form offers them: nobody else's page reads the list.
    let user = use_context::<crate::session::CurrentUser>();
    let workflows = Resource::new(
        || (),
        move |_| async move {
            let admin = match user {
                Some(user) => user.0.await.is_ok_and(|m| m.role == Role::Admin),
                None => false,
            };
            if !admin {
                return Ok(None);
            }
            api::get::<WorkflowList>(paths::workflows()).await.map(Some)
        },
    );
    let is_admin = move || me().is_some_and(|m| m.role == Role::Admin);
    let name = RwSignal::new(String::new());
    let workflow = RwSignal::new(String::new());
    let value = RwSignal::new(String::new());
    let save = Action::new(move |(name, workflow, value): &(String, String, String)| {
        let (name, workflow) = (name.clone(), workflow.clone());
        let body = api::json(&SecretValueRequest {
            value: Some(value.clone()),
            protected: None,
            allow: None,
        });
        async move {
            let saved =
                api::send_as::<SecretInfo>("PUT", path(&name, &workflow), Some(body)).await?;
            secrets.refetch();
            Ok::<_, String>(saved)
        }
    });
    let delete = Action::new(move |(name, workflow): &(String, String)| {
        let target = path(name, workflow);
        async move {
            api::send("DELETE", target, None).await?;
            secrets.refetch();
            Ok::<_, String>(())
        }
    });
    view! {
        <Title text="Secrets" />
        <div class="page-head"><h1>"Secrets"</h1></div>
        <p class="hint">
            "Tasks name the secrets they need (" <code>"secrets: [DEPLOY_TOKEN]"</code>
            "); each reaches only those tasks' steps, as an environment variable, and is masked as "
            <code>"***"</code> " in their logs. A workflow's own secret wins over a global one of the same name."
        </p>
        // The signed-in user is a resource: read inside a Transition, as
        // the top bar does, so the server's and the browser's pages agree.
        <Transition>
            {move || if is_admin() {
                view! {
                    <section class="card">
                        <h2>"Set a secret"</h2>
                        <p class="hint">"Setting an existing name replaces its value. Values are encrypted at rest and never shown again."</p>
                        <form class="secret-form" on:submit=move |e| {
                            e.prevent_default();
                            save.dispatch((name.get_untracked(), workflow.get_untracked(), value.get_untracked()));
                            // The value leaves the page with the request.
                            value.set(String::new());
                        }>
                            <div class="field">
                                <label for="secret-name">"Name"</label>
                                <input id="secret-name" required autocomplete="off" spellcheck="false"
                                    pattern="[A-Za-z_][A-Za-z0-9_]*" title="Letters, digits and _, not starting with a digit"
                                    prop:value=move || name.get() on:input=move |e| name.set(event_target_value(&e)) />
                            </div>
                            <div class="field">
                                <label for="secret-workflow">"For"</label>
                                <select id="secret-workflow" on:change=move |e| workflow.set(event_target_value(&e))>
                                    <option value="" selected=move || workflow.get().is_empty()>"Every workflow (global)"</option>
                                    {move || workflows.get().and_then(|r| r.ok().flatten()).map(|list| {
                                        list.workflows.into_iter().map(|w| {
                                            let name = w.name.clone();
                                            view! {
                                                <option value=w.name.clone() selected=move || workflow.get() == name>
                                                    {format!("Workflow {}", w.name)}
                                                </option>
                                            }
                                        }).collect_view()
                                    })}
                                </select>
                            </div>
                            <div class="field wide">
                                <label for="secret-value">"Value"</label>
                                <textarea id="secret-value" required rows="3" autocomplete="off" spellcheck="false"
                                    prop:value=move || value.get() on:input=move |e| value.set(event_target_value(&e))></textarea>
                            </div>
                            <button type="submit" class="primary" id="save-secret">"Save"</button>
                        </form>
                        {move || save.value().get().map(|r| match r {
                            Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                            Ok(s) => view! {
                                <p class="notice" id="secret-saved" role="status">
                                    {format!("Saved {}{}.", s.name, s.workflow.map(|w| format!(" for workflow {w}")).unwrap_or_default())}
                                </p>
                            }.into_any(),
                        })}
                    </section>
                }.into_any()
            } else {
                view! { <p class="hint">"Only admins create, replace and delete secrets."</p> }.into_any()
            }}
        </Transition>
        {move || delete.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading secrets…"</p> }>
            {move || secrets.get().map(|r| match r {
                Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                Ok(list) if list.secrets.is_empty() => view! {
                    <p class="empty card" id="no-secrets">"No secrets yet. An admin sets one above, or with "
                        <code>"xenectl secrets set NAME"</code> "."</p>
                }.into_any(),
                Ok(list) => view! {
                    <div class="table-wrap" tabindex="0" role="region" aria-label="Scrollable table">
                    <table class="list cards" id="secrets">
                        <thead><tr>
                            <th scope="col">"Name"</th><th scope="col">"Workflow"</th>
                            <th scope="col">"Updated by"</th><th scope="col">"Updated"</th>
                            <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                        </tr></thead>
                        <tbody>
                        {list.secrets.into_iter().map(|s| {
                            let key = (s.name.clone(), s.workflow.clone().unwrap_or_default());
                            view! {
                                <tr data-secret=s.name.clone()>
                                    <th scope="row"><code>{s.name.clone()}</code></th>
                                    <td data-label="Workflow">{match s.workflow.clone() {
                                        Some(w) => {
                                            let href = format!("/workflows/{}", encode(&w));
                                            view! { <a href=href>{w}</a> }.into_any()
                                        }
                                        None => view! { <span class="muted">"global"</span> }.into_any(),
                                    }}</td>
                                    <td data-label="Updated by">{match s.updater.clone() {
                                        Some(p) => view! {
                                            <span title=p.email.clone()>{p.shown().to_string()}</span>
                                        }.into_any(),
                                        None => view! { <span class="mono">{s.updated_by.clone()}</span> }.into_any(),
                                    }}</td>
                                    <td data-label="Updated"><Time ms=s.updated_at /></td>
                                    <td class="actions">{move || is_admin().then(|| {
                                        let key = key.clone();
                                        view! {
                                            <button class="danger delete-secret" on:click=move |_| { delete.dispatch(key.clone()); }>"Delete"</button>
                                        }
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
