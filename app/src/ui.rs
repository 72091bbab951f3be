//! Pieces every page uses: times in the reader's zone, statuses, the DAG
//! drawing, errors, loading and empty states, the copy button. Dates in
//! UTC and durations are `xene_core::time` and `xene_core::duration`.

use std::collections::BTreeMap;

use leptos::prelude::*;
use xene_core::layout::{Layout, NODE_HEIGHT, NODE_WIDTH};

pub mod code;
mod copy;
mod diff;

pub use copy::CopyButton;
pub use diff::diff_lines;
use xene_core::time::utc_text;

/// Whether the browser bundle has taken over the page (set by an effect,
/// which never runs on the server): what differs between the server's
/// render and the browser's (the user's time zone) waits for it.
#[derive(Clone, Copy)]
pub struct Hydrated(pub ReadSignal<bool>);

pub fn hydrated() -> bool {
    use_context::<Hydrated>().is_some_and(|h| h.0.get())
}

/// `hydrated` looked up now, for closures that run later (where the
/// context may not be reachable).
fn hydrated_signal() -> impl Fn() -> bool + Copy + Send + Sync + 'static {
    let h = use_context::<Hydrated>();
    move || h.is_some_and(|h| h.0.get())
}

/// The current time in UTC ms, ticking every second in the browser (for the
/// durations of what still runs); the render time on the server.
#[derive(Clone, Copy)]
pub struct Now(pub ReadSignal<i64>);

pub fn now() -> i64 {
    use_context::<Now>().map_or_else(now_ms, |n| n.0.get())
}

pub fn now_ms() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// Moves the focus to the element with this id.
pub fn focus(id: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(el) = document()
            .get_element_by_id(id)
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = el.focus();
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}

/// The time in the browser's zone, `2026-11-30 20:05:01`.
pub(crate) fn local_text(ms: i64) -> String {
    #[cfg(feature = "hydrate")]
    {
        let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            d.get_full_year(),
            d.get_month() + 1,
            d.get_date(),
            d.get_hours(),
            d.get_minutes(),
            d.get_seconds()
        )
    }
    #[cfg(not(feature = "hydrate"))]
    {
        utc_text(ms)
    }
}

/// `20:05:01.250` in the reader's zone (UTC before hydration), for log lines.
pub fn clock_text(ms: i64) -> String {
    let full = if hydrated() {
        local_text(ms)
    } else {
        utc_text(ms)
    };
    let clock = full.split(' ').nth(1).unwrap_or_default().to_string();
    format!("{clock}.{:03}", ms.rem_euclid(1000))
}

/// A moment: in the reader's zone once the page is interactive (UTC until
/// then, since the server cannot know the zone), UTC on hover.
#[component]
pub fn Time(ms: i64) -> impl IntoView {
    let utc = utc_text(ms);
    let shown = utc.clone();
    let hydrated = hydrated_signal();
    view! {
        <time datetime=utc.replacen(' ', "T", 1).replace(" UTC", "Z") title=utc>
            {move || if hydrated() { local_text(ms) } else { shown.clone() }}
        </time>
    }
}

/// A status in words and colour (never colour alone).
#[component]
pub fn Status(#[prop(into)] status: Signal<String>) -> impl IntoView {
    view! {
        <span class=move || format!("status status-{}", status.get()) data-status=move || status.get()>
            {move || status.get().replace('_', " ")}
        </span>
    }
}

/// What a list shows while it loads.
pub fn loading(what: &'static str) -> impl IntoView {
    view! { <p class="loading">{format!("Loading {what}…")}</p> }
}

/// An error where it happened.
#[component]
pub fn ErrorBox(#[prop(into)] message: String) -> impl IntoView {
    view! { <p class="error" role="alert">{message}</p> }
}

/// What a task looks like in a drawing: its status and the text under its
/// name (a duration, "waiting").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeState {
    pub status: String,
    pub detail: String,
}

/// A pipeline's DAG as SVG, laid out by `xene_core::layout` (the same
/// numbers on the server and in the browser). Each task links to `href`.
#[component]
pub fn Dag(
    layout: Layout,
    #[prop(into)] states: Signal<BTreeMap<String, NodeState>>,
    #[prop(optional, into)] href: Option<Callback<String, String>>,
    #[prop(optional, into)] selected: Option<Signal<Option<String>>>,
    #[prop(into)] label: String,
) -> impl IntoView {
    if layout.nodes.is_empty() {
        return view! { <p class="empty">"This pipeline has no tasks."</p> }.into_any();
    }
    let width = layout.width;
    let height = layout.height;
    let edges = layout
        .edges
        .iter()
        .map(|e| {
            let d = Layout::path_data(e);
            view! { <path class="edge" d=d marker-end="url(#arrow)" /> }
        })
        .collect_view();
    let nodes = layout
        .nodes
        .iter()
        .map(|n| {
            let name = n.name.clone();
            let (x, y) = (n.x, n.y);
            let for_status = name.clone();
            let for_detail = name.clone();
            let for_selected = name.clone();
            let status = move || {
                states.with(|s| {
                    s.get(&for_status)
                        .map(|s| s.status.clone())
                        .unwrap_or_default()
                })
            };
            let detail = move || {
                states.with(|s| {
                    s.get(&for_detail)
                        .map(|s| s.detail.clone())
                        .unwrap_or_default()
                })
            };
            let is_selected =
                move || selected.is_some_and(|s| s.get().as_deref() == Some(for_selected.as_str()));
            let shown = if name.chars().count() > 20 {
                format!("{}…", name.chars().take(19).collect::<String>())
            } else {
                name.clone()
            };
            let status_for_class = status.clone();
            let class = move || {
                let s = status_for_class();
                format!(
                    "node status-{}{}",
                    if s.is_empty() { "none".into() } else { s },
                    if is_selected() { " selected" } else { "" }
                )
            };
            // Not an SVG <a>: the view macro would build it as an HTML
            // anchor in the browser. A focusable group that navigates, and
            // the task list's plain links for reading without the wasm.
            let target = href.map(|h| h.run(name.clone()));
            let focusable = target.as_ref().map(|_| "0");
            let role = target.as_ref().map(|_| "link");
            let aria = target.as_ref().map(|_| format!("task {name}"));
            let (for_click, for_key) = (target.clone(), target);
            let navigate_click = leptos_router::hooks::use_navigate();
            let navigate_key = leptos_router::hooks::use_navigate();
            view! {
                <g
                    class=class
                    data-task=name.clone()
                    tabindex=focusable
                    role=role
                    aria-label=aria
                    on:click=move |_| {
                        if let Some(to) = &for_click {
                            navigate_click(to, Default::default());
                        }
                    }
                    on:keydown=move |e| {
                        if e.key() == "Enter"
                            && let Some(to) = &for_key
                        {
                            navigate_key(to, Default::default());
                        }
                    }
                >
                    <title>{name.clone()}</title>
                    <rect x=x y=y width=NODE_WIDTH height=NODE_HEIGHT rx="6" />
                    <text class="name" x=x + 10 y=y + 18>{shown}</text>
                    <text class="detail" x=x + 10 y=y + 35>
                        {move || {
                            let s = status();
                            let d = detail();
                            match (s.is_empty(), d.is_empty()) {
                                (true, _) => d,
                                (false, true) => s.replace('_', " "),
                                (false, false) => format!("{} · {d}", s.replace('_', " ")),
                            }
                        }}
                    </text>
                </g>
            }
        })
        .collect_view();
    view! {
        <div class="dag" role="group" aria-label=label tabindex="0">
            <svg
                viewBox=format!("0 0 {width} {height}")
                width=width
                height=height
                xmlns="http://www.w3.org/2000/svg"
            >
                <defs>
                    <marker
                        id="arrow"
                        viewBox="0 0 10 10"
                        refX="10"
                        refY="5"
                        markerWidth="7"
                        markerHeight="7"
                        orient="auto-start-reverse"
                    >
                        <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" />
                    </marker>
                </defs>
                {edges}
                {nodes}
            </svg>
        </div>
    }
    .into_any()
}
