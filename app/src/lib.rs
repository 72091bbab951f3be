//! Xene's web UI: Leptos components and server functions. Built twice: with
//! `ssr` into the server, and with `hydrate` into the browser bundle (wasm32).

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    StaticSegment,
    components::{Route, Router, Routes},
};

pub mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

pub use pages::home::ServerStatus;

/// The name of the browser bundle's files under `/pkg` (`xene.js`, `xene_bg.wasm`, `xene.css`).
pub const BUNDLE_NAME: &str = "xene";

/// The HTML document around every page, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <HydrationScripts options />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="xene" href="/pkg/xene.css" />
        <Title text="Xene" />
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"Xene"</a>
                <SignOut />
            </header>
            <main>
                <Routes fallback=pages::NotFound>
                    <Route path=StaticSegment("") view=pages::Home />
                    <Route path=StaticSegment("signin") view=pages::SignIn />
                </Routes>
            </main>
        </Router>
    }
}

/// A plain form, so signing out works before (and without) the wasm; not
/// on the sign-in page, where nobody is signed in.
#[component]
fn SignOut() -> impl IntoView {
    let location = leptos_router::hooks::use_location();
    move || {
        (location.pathname.get() != "/signin").then(|| {
            view! {
                <form class="signout" method="post" action="/auth/logout">
                    <button type="submit">"Sign out"</button>
                </form>
            }
        })
    }
}

/// The browser bundle's entry point, called by the hydration script.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
