//! The colour theme the reader chose: light, dark, or the system's setting.
//!
//! The choice lives in a cookie, not in local storage, because the server
//! must see it: the shell writes it on `<html>` as `data-theme` (and in
//! the `color-scheme` meta tag), so the first paint already has the chosen
//! colours, with no script before it (the page's CSP runs none without
//! the nonce) and no flash. The picker in the account menu changes the
//! attribute and the cookie at once; no request is needed.

use leptos::prelude::*;

/// The cookie's name. Not a secret and not `HttpOnly`: the page writes it.
pub const COOKIE: &str = "xene_theme";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Theme {
    /// Whatever the system prefers (`prefers-color-scheme`).
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub const ALL: [Theme; 3] = [Theme::System, Theme::Light, Theme::Dark];

    pub fn as_str(self) -> &'static str {
        match self {
            Theme::System => "system",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Theme::System => "System",
            Theme::Light => "Light",
            Theme::Dark => "Dark",
        }
    }

    pub fn parse(text: &str) -> Option<Theme> {
        Theme::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// `<html data-theme>`: none when the system decides.
    pub fn attribute(self) -> Option<&'static str> {
        match self {
            Theme::System => None,
            other => Some(other.as_str()),
        }
    }

    /// The `color-scheme` meta tag's content: what the browser may draw
    /// its own parts (scrollbars, form controls) in before the stylesheet.
    pub fn color_scheme(self) -> &'static str {
        match self {
            Theme::System => "light dark",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    /// The theme a `Cookie` header's value names; the system's when it
    /// names none or something unknown.
    pub fn from_cookie_header(header: &str) -> Theme {
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| Theme::parse(value.trim()))
            .unwrap_or_default()
    }

    /// The theme this page is drawn in: the request's cookie on the server,
    /// `<html>`'s attribute (which the server wrote) in the browser, so the
    /// picker renders the same on both sides.
    pub fn current() -> Theme {
        #[cfg(feature = "ssr")]
        {
            use_context::<http::request::Parts>()
                .map(|parts| {
                    parts
                        .headers
                        .get_all(http::header::COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .map(Theme::from_cookie_header)
                        .find(|t| *t != Theme::System)
                        .unwrap_or_default()
                })
                .unwrap_or_default()
        }
        #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
        {
            document()
                .document_element()
                .and_then(|root| root.get_attribute("data-theme"))
                .and_then(|value| Theme::parse(&value))
                .unwrap_or_default()
        }
        #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
        {
            Theme::System
        }
    }
}

/// Draws the page in `theme` now and remembers it for a year.
#[cfg(feature = "hydrate")]
fn apply(theme: Theme) {
    let document = document();
    if let Some(root) = document.document_element() {
        let _ = match theme.attribute() {
            Some(value) => root.set_attribute("data-theme", value),
            None => root.remove_attribute("data-theme"),
        };
    }
    let secure = if window().location().protocol().is_ok_and(|p| p == "https:") {
        "; Secure"
    } else {
        ""
    };
    let cookie = match theme.attribute() {
        Some(value) => format!("{COOKIE}={value}; Path=/; Max-Age=31536000; SameSite=Lax{secure}"),
        None => format!("{COOKIE}=; Path=/; Max-Age=0; SameSite=Lax{secure}"),
    };
    // `document.cookie`'s setter (web-sys has it only on `HtmlDocument`).
    let _ = js_sys::Reflect::set(
        &document,
        &wasm_bindgen::JsValue::from_str("cookie"),
        &wasm_bindgen::JsValue::from_str(&cookie),
    );
}

/// Whether the screen is a phone's: `style/main.css`'s 720 px rule, where
/// `table.cards` become cards that never scroll sideways (so their
/// `.table-wrap` is no tab stop). False on the server and until hydrated.
pub fn narrow() -> Signal<bool> {
    let narrow = RwSignal::new(false);
    // After hydration: the server's page is the wide one.
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;
        let Ok(Some(query)) = window().match_media("(max-width: 720px)") else {
            return;
        };
        narrow.set(query.matches());
        let q = query.clone();
        let on_change = Closure::<dyn Fn()>::new(move || narrow.set(q.matches()));
        let _ =
            query.add_event_listener_with_callback("change", on_change.as_ref().unchecked_ref());
        let kept = send_wrapper::SendWrapper::new((query, on_change));
        on_cleanup(move || {
            let (query, on_change) = &*kept;
            let _ = query
                .remove_event_listener_with_callback("change", on_change.as_ref().unchecked_ref());
        });
    });
    narrow.into()
}

/// Light, dark, or the system's setting, beside each other.
#[component]
pub fn ThemePicker() -> impl IntoView {
    let initial = Theme::current();
    view! {
        <div class="theme-picker">
            <label for="theme">"Theme"</label>
            <select
                id="theme"
                on:change=move |ev| {
                    let chosen = Theme::parse(&event_target_value(&ev));
                    #[cfg(feature = "hydrate")]
                    if let Some(theme) = chosen {
                        apply(theme);
                    }
                    #[cfg(not(feature = "hydrate"))]
                    let _ = chosen;
                }
            >
                {Theme::ALL
                    .into_iter()
                    .map(|theme| {
                        view! {
                            <option value=theme.as_str() selected=theme == initial>
                                {theme.label()}
                            </option>
                        }
                    })
                    .collect_view()}
            </select>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_header_names_the_theme() {
        assert_eq!(Theme::from_cookie_header("xene_theme=dark"), Theme::Dark);
        assert_eq!(
            Theme::from_cookie_header("xene_session=abc; xene_theme=light; other=1"),
            Theme::Light
        );
        assert_eq!(Theme::from_cookie_header("xene_session=abc"), Theme::System);
        // Anything else is the system's setting, never an attribute value.
        assert_eq!(
            Theme::from_cookie_header("xene_theme=\"><script>"),
            Theme::System
        );
        assert_eq!(
            Theme::from_cookie_header("not_xene_theme=dark"),
            Theme::System
        );
        assert_eq!(Theme::from_cookie_header(""), Theme::System);
    }

    #[test]
    fn only_a_chosen_theme_is_written_on_the_page() {
        assert_eq!(Theme::System.attribute(), None);
        assert_eq!(Theme::Dark.attribute(), Some("dark"));
        assert_eq!(Theme::Light.color_scheme(), "light");
        assert_eq!(Theme::System.color_scheme(), "light dark");
    }
}
