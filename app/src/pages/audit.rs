//! The audit log, newest first, paged, filtered by kind of action and by
//! person. People are shown by name and email, never by id.

use leptos::prelude::*;
use leptos_meta::Title;
use xene_api::access::{AuditEntry, AuditPage, UserList};
use xene_api::paths::{self, encode, with_query};

use crate::api;
use crate::ui::{ErrorBox, Time, loading};

/// The kinds of action the log records, as the filter offers them: the
/// part of an action's name before its dot, and what it is in words.
const KINDS: &[(&str, &str)] = &[
    ("workflow", "Workflows applied, approved, deleted"),
    ("run", "Runs started, cancelled, pinned"),
    ("cache", "Caches deleted"),
    ("secret", "Secrets"),
    ("hook", "Webhooks"),
    ("sign_in", "Sign-ins"),
    ("token", "API tokens"),
    ("user", "Users' roles"),
    ("invite", "Invites"),
    ("agent", "Agents"),
    ("join_token", "Agent join tokens"),
];

/// The URL of the log with these filters and page.
fn href(action: &str, actor: &str, before: Option<i64>) -> String {
    let mut params = Vec::new();
    for (name, value) in [("action", action), ("actor", actor)] {
        if !value.is_empty() {
            params.push(format!("{name}={}", encode(value)));
        }
    }
    if let Some(b) = before {
        params.push(format!("before={b}"));
    }
    if params.is_empty() {
        "/audit".into()
    } else {
        format!("/audit?{}", params.join("&"))
    }
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let filters = move || {
        query.with(|q| {
            (
                q.get("action").unwrap_or_default(),
                q.get("actor").unwrap_or_default(),
                q.get("before").unwrap_or_default(),
            )
        })
    };
    let page = Resource::new(filters, |(action, actor, before)| async move {
        let some = |v: String| (!v.is_empty()).then_some(v);
        let path = with_query(
            paths::audit(),
            [
                ("limit", Some("50".into())),
                ("before", some(before)),
                ("action", some(action)),
                ("actor", some(actor)),
            ],
        );
        api::get::<AuditPage>(path).await
    });
    // For the person filter: who is there to pick.
    let users = Resource::new(|| (), |_| api::get::<UserList>(paths::users()));
    view! {
        <Title text="Audit log" />
        <div class="page-head"><h1>"Audit log"</h1></div>
        // A plain GET form: filtering works before (and without) the wasm.
        <form class="card audit-filters" method="get" action="/audit" id="audit-filters">
            <div class="field">
                <label for="audit-action">"What"</label>
                <select id="audit-action" name="action">
                    <option value="" selected=move || filters().0.is_empty()>"Everything"</option>
                    {KINDS.iter().map(|(kind, words)| view! {
                        <option value=*kind selected=move || filters().0 == *kind>{*words}</option>
                    }).collect_view()}
                </select>
            </div>
            <Transition>
                {move || users.get().and_then(|r| r.ok()).map(|list| view! {
                    <div class="field">
                        <label for="audit-actor">"Who"</label>
                        <select id="audit-actor" name="actor">
                            <option value="" selected=move || filters().1.is_empty()>"Anyone"</option>
                            {list.users.into_iter().map(|u| {
                                let id = u.id.clone();
                                let words = if u.name.is_empty() { u.email.clone() } else { format!("{} ({})", u.name, u.email) };
                                view! { <option value=u.id selected=move || filters().1 == id>{words}</option> }
                            }).collect_view()}
                        </select>
                    </div>
                })}
            </Transition>
            <button type="submit" id="audit-filter">"Filter"</button>
        </form>
        <Transition fallback=|| loading("the audit log")>
            {move || page.get().map(|r| match r {
                Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                Ok(p) if p.entries.is_empty() => view! { <p class="empty card">"Nothing recorded here."</p> }.into_any(),
                Ok(p) => {
                    let (action, actor, _) = filters();
                    view! {
                        <div class="table-wrap" tabindex="0" role="region" aria-label="Audit entries">
                        <table class="list cards" id="audit">
                            <thead><tr>
                                <th scope="col" class="when">"When"</th><th scope="col" class="who">"Who"</th>
                                <th scope="col" class="action">"Action"</th><th scope="col">"Target"</th>
                                <th scope="col">"Detail"</th><th scope="col" class="from">"From"</th>
                            </tr></thead>
                            <tbody>
                            {p.entries.into_iter().map(|e| view! { <Entry entry=e /> }).collect_view()}
                            </tbody>
                        </table>
                        </div>
                        <nav class="pager" aria-label="Pages">
                            {p.next_before.map(|b| view! { <a href=href(&action, &actor, Some(b)) rel="next">"Older entries"</a> })}
                        </nav>
                    }.into_any()
                }
            })}
        </Transition>
    }
}

/// One entry: its actor as a person when the server knows them.
#[component]
fn Entry(entry: AuditEntry) -> impl IntoView {
    let who = match (&entry.who, entry.actor.as_str()) {
        (Some(person), _) => view! {
            <span class="person">{person.shown().to_string()}</span>
            {(!person.name.trim().is_empty()).then(|| view! { <span class="muted small email">{person.email.clone()}</span> })}
        }
        .into_any(),
        (None, "anonymous") => view! { <span class="muted">"someone not signed in"</span> }.into_any(),
        (None, "xene") => view! { <span class="muted">"Xene itself"</span> }.into_any(),
        (None, actor) => match actor.strip_prefix("agent:") {
            Some(agent) => view! { <span>"agent " <span class="mono">{agent.to_string()}</span></span> }.into_any(),
            None => view! { <span class="mono">{actor.to_string()}</span> }.into_any(),
        },
    };
    let action = entry.action.clone();
    let target = match entry.target_person {
        Some(person) => {
            view! { <span title=person.email.clone()>{person.shown().to_string()}</span> }
                .into_any()
        }
        None => view! { <span class="mono">{entry.target}</span> }.into_any(),
    };
    view! {
        <tr data-action=action>
            <th scope="row" class="when"><Time ms=entry.at /></th>
            <td data-label="Who" class="who">{who}</td>
            <td data-label="Action" class="mono action">{entry.action}</td>
            <td data-label="Target" class="target">{target}</td>
            <td data-label="Detail" class="small detail">{entry.detail}</td>
            <td data-label="From" class="mono small from">{entry.remote}</td>
        </tr>
    }
}
