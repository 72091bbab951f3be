//! The one "not found" page: the router's fallback for a path no page
//! serves, and what a page shows when its object does not exist (a run
//! number nobody ran, a workflow nobody applied). Rendered on the server,
//! it answers HTTP 404.

use leptos::prelude::*;

/// For a path no page serves.
#[component]
pub fn NotFound() -> impl IntoView {
    view! { <Missing what="There is no page here." /> }
}

/// For a page whose object does not exist: `what` says which.
#[component]
pub fn Missing(#[prop(into)] what: String) -> impl IntoView {
    crate::api::answer_not_found();
    view! {
        <leptos_meta::Title text="Not found" />
        <section class="card not-found" id="not-found">
            <h1>"Not found"</h1>
            <p>{what} " " <a href="/">"Back to the start."</a></p>
        </section>
    }
}
