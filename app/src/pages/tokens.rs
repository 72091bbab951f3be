//! API tokens: one's own, making and revoking them.

use leptos::prelude::*;
use leptos_meta::Title;
use xene_api::access::{NewToken, TokenList, TokenRequest};
use xene_api::paths;
use xene_core::access::Role;

use crate::api;
use crate::ui::{CopyButton, ErrorBox, Time, loading};

#[component]
pub fn TokensPage() -> impl IntoView {
    let tokens = Resource::new(|| (), |_| api::get::<TokenList>(paths::tokens()));
    let name = RwSignal::new(String::new());
    let role = RwSignal::new(String::new());
    let create = Action::new(move |body: &String| {
        let body = body.clone();
        async move {
            let made = api::send_as::<NewToken>("POST", paths::tokens(), Some(body)).await?;
            tokens.refetch();
            Ok::<_, String>(made)
        }
    });
    let revoke = Action::new(move |id: &String| {
        let id = id.clone();
        async move {
            api::send("DELETE", paths::token(&id), None).await?;
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
                // "my role" is the empty value: no role, the creator's.
                let body = TokenRequest {
                    name: name.get_untracked(),
                    role: role.get_untracked().parse::<Role>().ok(),
                    expires_in: None,
                };
                create.dispatch(api::json(&body));
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
                                    <td>{t.role.as_str()}</td>
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
