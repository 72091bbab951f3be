//! The log pane's place in the window: its box sized from where it starts
//! (what is above it changes: the graph open or folded, a notice, tabs),
//! and the full-screen view made modal.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

/// Marks the elements this module made inert, so leaving full screen
/// gives back only those.
const MARK: &str = "data-log-inert";

/// Tells the CSS where the log box starts on the page (`--log-top`), so it
/// ends at the bottom of the window when the page is scrolled to the top.
pub fn fit_log() {
    let doc = document();
    let (Some(pane), Some(scroll)) = (
        doc.query_selector(".log-pane").ok().flatten(),
        doc.query_selector(".log-pane .log-scroll").ok().flatten(),
    ) else {
        return;
    };
    let top = scroll.get_bounding_client_rect().top() + window().scroll_y().unwrap_or(0.0);
    let _ = pane.set_attribute("style", &format!("--log-top:{}px", top.round()));
}

/// Makes everything but the log pane inert (or gives it back): the
/// siblings of the pane and of each of its ancestors up to the body.
pub fn set_inert(on: bool) {
    let mut node = document().query_selector(".log-pane").ok().flatten();
    // Bounded by the depth of the page.
    while let Some(el) = node {
        if el.tag_name().eq_ignore_ascii_case("body") {
            break;
        }
        let parent = el.parent_element();
        let mut sibling = parent.as_ref().and_then(|p| p.first_element_child());
        while let Some(s) = sibling {
            if s != el {
                if on && !s.has_attribute("inert") {
                    let _ = s.set_attribute("inert", "");
                    let _ = s.set_attribute(MARK, "");
                } else if !on && s.has_attribute(MARK) {
                    let _ = s.remove_attribute("inert");
                    let _ = s.remove_attribute(MARK);
                }
            }
            sibling = s.next_element_sibling();
        }
        node = parent;
    }
}

/// Moves the focus to the first element `css` finds.
pub fn focus(css: &str) {
    if let Some(el) = document()
        .query_selector(css)
        .ok()
        .flatten()
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = el.focus();
    }
}
