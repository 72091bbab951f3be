//! Users and their roles: changing a role, disabling a user.

use leptos::prelude::*;
use leptos_meta::Title;
use xene_api::access::{UserChange, UserList};
use xene_api::paths;
use xene_core::access::Role;

use crate::api;
use crate::ui::{ErrorBox, Time, loading};

#[component]
pub fn UsersPage() -> impl IntoView {
    let users = Resource::new(|| (), |_| api::get::<UserList>(paths::users()));
    let change = Action::new(move |(id, body): &(String, String)| {
        let (id, body) = (id.clone(), body.clone());
        async move {
            api::send("PATCH", paths::user(&id), Some(body)).await?;
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
                                            let body = api::json(&UserChange {
                                                role: event_target_value(&e).parse::<Role>().ok(),
                                                disabled: None,
                                            });
                                            change.dispatch((id.clone(), body));
                                        }>
                                            {["viewer", "editor", "admin"].into_iter().map(|r| view! { <option value=r selected=u.role.as_str() == r>{r}</option> }).collect_view()}
                                        </select>
                                    </td>
                                    <td>{u.last_sign_in.map(|ms| view! { <Time ms /> })}</td>
                                    <td>
                                        <button on:click=move |_| {
                                            let body = api::json(&UserChange {
                                                role: None,
                                                disabled: Some(!disabled),
                                            });
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
