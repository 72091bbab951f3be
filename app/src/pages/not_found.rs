use leptos::prelude::*;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <leptos_meta::Title text="Not found" />
        <section class="card">
            <h1>"Not found"</h1>
            <p>"There is no page here. " <a href="/">"Back to the start."</a></p>
        </section>
    }
}
