//! A webhook pipeline's hook: its URL, its recent deliveries, and making
//! it or rotating its secret.

use leptos::prelude::*;
use xene_api::hooks::{DeliveryList, HookInfo, NewSecret};
use xene_api::paths;

use crate::api;
use crate::ui::{CopyButton, ErrorBox, Time};

/// A webhook pipeline's URL and its recent deliveries, accepted or refused,
/// each with why; editors make the hook or rotate its secret (shown once).
#[component]
pub(super) fn HookPanel(workflow: String, pipeline: String) -> impl IntoView {
    let hook_path = paths::pipeline_hook(&workflow, &pipeline);
    let get_path = hook_path.clone();
    // Fetched by the browser alone (the server renders "Loading"): made
    // inside what the page's resource renders, a server-side resource here
    // would be numbered in the order the fetches finish (see WorkflowPage).
    let hook = LocalResource::new(move || {
        let path = get_path.clone();
        async move {
            let hook = api::get::<HookInfo>(path).await.ok();
            let deliveries = match &hook {
                Some(h) => api::get::<DeliveryList>(paths::hook_deliveries(&h.id))
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
            let made = api::send_as::<NewSecret>("POST", path, Some(String::new())).await?;
            hook.refetch();
            Ok::<_, String>(made)
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
                        Some(h) => {
                            let url = h.url.clone().unwrap_or_else(|| format!("{}{}", origin(), h.path));
                            view! {
                                <p>"Deliveries are posted to this URL, signed with the hook's secret \
                                    (GitHub's X-Hub-Signature-256 or Standard Webhooks; in GitHub, \
                                    the content type application/json):"</p>
                                <p class="hook-address">
                                    <code class="hook-url">{url.clone()}</code>
                                    <CopyButton text=url />
                                </p>
                            }.into_any()
                        }
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
                        <pre class="hook-secret">{h.secret.clone()}</pre>
                    </div>
                }.into_any(),
            })}
        </div>
    }
}

/// This page's origin, `https://ci.example.com`: when the server has no
/// public URL to say so, a hook's URL as the browser reaches the server is
/// the best guess of the one to paste into a sender. Only the browser asks
/// (the hook loads there alone).
fn origin() -> String {
    #[cfg(feature = "hydrate")]
    {
        window().location().origin().unwrap_or_default()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        String::new()
    }
}

/// `text`, or `instead` when it is empty.
fn non_empty(text: &str, instead: &str) -> String {
    if text.is_empty() { instead } else { text }.to_string()
}
