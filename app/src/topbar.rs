//! The bar at the top of every page: the brand, the main navigation and
//! the account menu (who is signed in, the theme, signing out).

use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_location};
use xene_core::access::Role;

use crate::session;
use crate::theme::ThemePicker;

/// Navigation and the account menu; nothing but the name on the sign-in page.
#[component]
pub fn TopBar() -> impl IntoView {
    let location = use_location();
    let user = use_context::<session::CurrentUser>().expect("App provides the user");
    let signin = move || location.pathname.get() == "/signin";
    let nav = NodeRef::<leptos::html::Nav>::new();
    let menu = NodeRef::<leptos::html::Details>::new();
    // After each navigation: the menu closes, and on a phone, where the
    // links scroll sideways in one row, the current page's link is in view.
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        location.pathname.track();
        request_animation_frame(move || {
            close_menu(menu);
            if let Some(nav) = nav.get_untracked() {
                show_current_link(&nav);
            }
        });
    });
    // A click outside the open menu closes it, as a menu's would.
    #[cfg(feature = "hydrate")]
    let _ = window_event_listener(leptos::ev::click, move |ev| {
        let target = ev
            .target()
            .and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::Node>(t).ok());
        if let Some(m) = menu.get_untracked()
            && !m.contains(target.as_ref())
        {
            close_menu(menu);
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (nav, menu);
    view! {
        <header class="topbar">
            <a class="brand" href="/">"Xene"</a>
            <Show when=move || !signin()>
                <nav aria-label="Main" node_ref=nav>
                    <A href="/workflows">"Workflows"</A>
                    <A href="/runs">"Runs"</A>
                    <A href="/agents">"Agents"</A>
                    <A href="/secrets">"Secrets"</A>
                    <A href="/tokens">"Tokens"</A>
                    <Transition>
                        {move || {
                            user.get()
                                .filter(|me| me.role == Role::Admin)
                                .map(|_| {
                                    view! {
                                        <A href="/users">"Users"</A>
                                        <A href="/audit">"Audit"</A>
                                    }
                                })
                        }}
                    </Transition>
                </nav>
                <details
                    class="account"
                    node_ref=menu
                    on:keydown=move |ev| {
                        // Escape here is the menu's: the page's own shortcuts
                        // (the editor's deselects its task) must not see it.
                        if ev.key() == "Escape" {
                            ev.stop_propagation();
                            close_menu(menu);
                        }
                    }
                >
                    <summary>
                        <Transition fallback=|| view! { <span class="user">"Account"</span> }>
                            {move || match user.get() {
                                Some(me) => {
                                    let shown = if me.user.name.is_empty() {
                                        me.user.email.clone()
                                    } else {
                                        me.user.name.clone()
                                    };
                                    view! {
                                        <span class="user" title=me.user.email.clone()>{shown}</span>
                                        <span class="role" data-role=me.role.as_str()>{me.role.as_str()}</span>
                                    }
                                        .into_any()
                                }
                                None => view! { <span class="user">"Account"</span> }.into_any(),
                            }}
                        </Transition>
                    </summary>
                    <div class="account-menu">
                        <Transition>
                            {move || {
                                user.get()
                                    .filter(|me| !me.user.email.is_empty())
                                    .map(|me| view! { <p class="email">{me.user.email}</p> })
                            }}
                        </Transition>
                        <ThemePicker />
                        // A plain form, so signing out works before (and without) the wasm.
                        // Signing out forgets the editor's drafts: a shared browser never
                        // hands one person's unsaved text to the next.
                        <form class="signout" method="post" action="/auth/logout" on:submit=|_| crate::pages::editor::forget_drafts()>
                            <button type="submit">"Sign out"</button>
                        </form>
                    </div>
                </details>
            </Show>
        </header>
    }
}

/// Closes the account menu, focus back on its button if it was inside.
fn close_menu(menu: NodeRef<leptos::html::Details>) {
    #[cfg(feature = "hydrate")]
    if let Some(menu) = menu.get_untracked()
        && menu.has_attribute("open")
    {
        let focused: Option<web_sys::Node> = document().active_element().map(Into::into);
        let had_focus = menu.contains(focused.as_ref());
        let _ = menu.remove_attribute("open");
        if had_focus
            && let Ok(Some(summary)) = menu.query_selector("summary")
            && let Ok(summary) = wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(summary)
        {
            let _ = summary.focus();
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = menu;
}

/// Scrolls the navigation row so that the current page's link shows whole.
#[cfg(feature = "hydrate")]
fn show_current_link(nav: &web_sys::HtmlElement) {
    let Ok(Some(link)) = nav.query_selector("[aria-current=\"page\"]") else {
        return;
    };
    // In the row's own coordinates: where the link starts and ends.
    let (row, at) = (
        nav.get_bounding_client_rect(),
        link.get_bounding_client_rect(),
    );
    let left = nav.scroll_left();
    let start = left + (at.left() - row.left()) as i32;
    let end = start + at.width().ceil() as i32;
    let width = nav.client_width();
    if start < left {
        nav.set_scroll_left(start);
    } else if end > left + width {
        nav.set_scroll_left(end - width);
    }
}
