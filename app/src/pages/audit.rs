//! The audit log, newest first, paged.

use leptos::prelude::*;
use leptos_meta::Title;
use xene_api::paths::{self, with_query};

use crate::api;
use crate::ui::{ErrorBox, Time, loading};

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let before = move || query.with(|q| q.get("before").unwrap_or_default());
    let page = Resource::new(before, |b| async move {
        let before = (!b.is_empty()).then_some(b);
        let path = with_query(
            paths::audit(),
            [("limit", Some("50".into())), ("before", before)],
        );
        api::get::<xene_api::access::AuditPage>(path).await
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
