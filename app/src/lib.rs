//! Xene's web UI: Leptos components and server functions. Built twice: with
//! `ssr` into the server, and with `hydrate` into the browser bundle (wasm32).
//!
//! Every page reads the REST API (`api`), server-rendered first so that
//! reading works before the wasm loads, then kept live by the API's feeds
//! (`live`). Each object has its own URL: `/workflows/NAME`, `/runs/ID`
//! (`?task=T&step=S#L10-L20` for a log line range).

#![recursion_limit = "256"]

use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::{
    Lazy, SsrMode, StaticSegment,
    components::{Route, Router, Routes},
    path,
};

pub mod api;
pub mod live;
pub mod not_found;
pub mod pages;
pub mod session;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod text;
pub mod theme;
mod topbar;
pub mod ui;

use topbar::TopBar;

/// The name of the browser bundle's files under `/pkg` (`xene.js`,
/// `xene_bg.wasm`, `xene.css`, beside the splitter's loader and pieces).
pub const BUNDLE_NAME: &str = "xene";

/// The name the bundle is served under: the fingerprinted folder `cargo
/// xtask site` names in `pkg/bundle-name` (`xene-HASH/xene`, cached for a
/// year), else the plain one.
#[cfg(feature = "ssr")]
pub fn bundle_name(site_root: &std::path::Path) -> String {
    std::fs::read_to_string(site_root.join("pkg/bundle-name"))
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| {
            n.strip_prefix("xene-")
                .and_then(|n| n.strip_suffix("/xene"))
                .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .unwrap_or_else(|| BUNDLE_NAME.to_string())
}

/// The HTML document around every page, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    set_content_security_policy();
    // The reader's theme, written here so the first paint has it (no script).
    let theme = theme::Theme::current();
    view! {
        <!DOCTYPE html>
        <html lang="en" data-theme=theme.attribute()>
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content=theme.color_scheme() />
                <link rel="stylesheet" href=format!("/pkg/{}.css", options.output_name) />
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

/// The page's Content-Security-Policy: scripts only from this origin or
/// carrying this response's nonce (Leptos puts it on the hydration scripts
/// it writes), WebAssembly compiled from this origin's bundle, and no
/// framing. An injected `<script>` that escaped escaping would still not
/// run: it cannot know the nonce. Style sheets likewise: this origin's, or
/// a `<style>` with the nonce (the code editor's); only `style` attributes
/// are free.
#[cfg(feature = "ssr")]
fn set_content_security_policy() {
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; style-src-attr 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));
    provide_context(ui::Hydrated(hydrated));
    let (now, set_now) = signal(ui::now_ms());
    provide_context(ui::Now(now));
    #[cfg(feature = "hydrate")]
    {
        let handle = set_interval_with_handle(
            move || set_now.set(ui::now_ms()),
            std::time::Duration::from_secs(1),
        );
        on_cleanup(move || {
            if let Ok(h) = handle {
                h.clear();
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = set_now;
    let me = Resource::new(
        || (),
        |_| api::get::<xene_api::access::Me>(xene_api::paths::me()),
    );
    provide_context(session::CurrentUser(me));

    view! {
        <Title formatter=|text: String| {
            if text.is_empty() || text == "Xene" { "Xene".to_string() } else { format!("{text} · Xene") }
        } />
        <Router>
            <a class="skip" href="#main">"Skip to content"</a>
            <TopBar />
            // Effects never run during server rendering, so this flips only
            // once the browser bundle has hydrated the page: tests and people
            // can tell.
            <main id="main" tabindex="-1" data-hydrated=move || hydrated.get().to_string()>
                <Routes fallback=pages::NotFound>
                    // The dashboard: what needs a look now.
                    <Route path=StaticSegment("") ssr=SsrMode::Async view={Lazy::<pages::HomeRoute>::new()} />
                    <Route path=StaticSegment("signin") ssr=SsrMode::Async view=pages::SignIn />
                    <Route path=path!("/workflows") ssr=SsrMode::Async view={Lazy::<pages::WorkflowsRoute>::new()} />
                    <Route path=path!("/workflows/:name") ssr=SsrMode::Async view={Lazy::<pages::WorkflowRoute>::new()} />
                    <Route path=path!("/workflows/:name/edit") ssr=SsrMode::Async view={Lazy::<pages::EditorRoute>::new()} />
                    <Route path=path!("/editor") ssr=SsrMode::Async view={Lazy::<pages::EditorRoute>::new()} />
                    <Route path=path!("/runs") ssr=SsrMode::Async view={Lazy::<pages::RunsRoute>::new()} />
                    <Route path=path!("/runs/:id") ssr=SsrMode::Async view={Lazy::<pages::RunRoute>::new()} />
                    <Route path=path!("/agents") ssr=SsrMode::Async view={Lazy::<pages::AgentsRoute>::new()} />
                    <Route path=path!("/tokens") ssr=SsrMode::Async view={Lazy::<pages::TokensRoute>::new()} />
                    <Route path=path!("/secrets") ssr=SsrMode::Async view={Lazy::<pages::SecretsRoute>::new()} />
                    <Route path=path!("/users") ssr=SsrMode::Async view={Lazy::<pages::UsersRoute>::new()} />
                    <Route path=path!("/audit") ssr=SsrMode::Async view={Lazy::<pages::AuditRoute>::new()} />
                </Routes>
            </main>
        </Router>
    }
}

/// The browser bundle's entry point, called by the hydration script. The
/// page's own piece of the bundle is loaded first (see `pages::preload`);
/// the page is marked interactive, for tests and measurements, once it is
/// hydrated.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    wasm_bindgen_futures::spawn_local(async {
        let path = window().location().pathname().unwrap_or_default();
        pages::preload(&path).await;
        leptos::mount::hydrate_body(App);
        let window = window();
        let _ = js_sys::Reflect::set(
            &window,
            &wasm_bindgen::JsValue::from_str("__xene_hydrated_at"),
            &wasm_bindgen::JsValue::from_f64(js_sys::Date::now()),
        );
        let _ = js_sys::Reflect::set(
            &window,
            &wasm_bindgen::JsValue::from_str("__xene_hydrated"),
            &wasm_bindgen::JsValue::TRUE,
        );
    });
}
