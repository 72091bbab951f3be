//! A workflow's caches: the entries its tasks' caches saved (name, key
//! with a copy button, files, size, last used, created), their bytes
//! against the workflow's cache quota, and deleting one (editors, asking
//! first).
//!
//! The card is written as HTML text with one click handler for its
//! buttons, not as a tree of components: that tree cost the workflow page
//! ~20 KB gzipped (every element's type gets its own rendering code),
//! three times what the page's ceiling left for it. It looks and works
//! like the other tables, copy buttons and questions (same classes, the
//! question's focus on "Keep it", Escape). It is the app's one
//! `set_inner_html`: every value written into it goes through `esc`.

use leptos::prelude::*;
use xene_api::artifacts::size_text;
use xene_api::caches::{CacheEntry, CacheList};
use xene_api::paths;

use crate::api;
use crate::ui::focus;

/// Where the spec's documentation tells what caches are.
const DOCS: &str = "https://github.com/xene-run/xene/blob/main/docs/spec.md#caches";

/// What the card shows besides the list: the entry a Delete asked about,
/// and what became of deleting it.
#[derive(Clone, Default, PartialEq)]
struct Asking {
    id: Option<i64>,
    busy: bool,
    error: Option<String>,
}

/// The card's state: the list once read, and the question.
#[derive(Default)]
struct State {
    list: Option<Result<CacheList, String>>,
    asking: Asking,
}

/// The card. Read by the browser alone, after the page is interactive,
/// so the server and the browser both start from "Loading"; read again
/// after a delete. Its body is written whole each time the state changes.
#[component]
pub(super) fn Caches(workflow: String) -> impl IntoView {
    let me = crate::session::current_user();
    let state = StoredValue::new(State::default());
    let workflow = StoredValue::new(workflow);
    let paint = move || {
        let edit = me().is_some_and(|m| m.can_edit());
        let html = state.with_value(|s| match &s.list {
            None => r#"<p class="loading">Loading the caches…</p>"#.to_string(),
            Some(Err(e)) => format!(
                r#"<p class="error" role="alert">The caches cannot be read: {}</p>"#,
                esc(e)
            ),
            Some(Ok(l)) => card_html(l, edit, &s.asking, crate::ui::local_text),
        });
        write_body(&html);
    };
    let load = move || {
        let Some(name) = workflow.try_get_value() else {
            return;
        };
        let path = paths::workflow_caches(&name);
        leptos::task::spawn_local(async move {
            let answer = api::get::<CacheList>(path).await;
            // Not when the card is gone (another workflow's page may show
            // its own under the same id by now).
            if state.try_update_value(|s| s.list = Some(answer)).is_some() {
                paint();
            }
        });
    };
    #[cfg(feature = "hydrate")]
    load();
    let ask = move |asking: Asking| {
        if state.try_update_value(|s| s.asking = asking).is_some() {
            paint();
        }
    };
    let delete = move |id: i64| {
        let path = paths::workflow_cache(&workflow.get_value(), id);
        ask(Asking {
            id: Some(id),
            busy: true,
            error: None,
        });
        leptos::task::spawn_local(async move {
            // A 404: evicted or deleted elsewhere, as good as deleted.
            let error = match api::api_call("DELETE".into(), path, None).await {
                Ok((s, _)) if s < 300 || s == 404 => None,
                Ok((s, body)) => Some(
                    serde_json::from_str::<xene_api::error::ErrorBody>(&body)
                        .map_or_else(|_| format!("the server answered {s}"), |b| b.error),
                ),
                Err(e) => Some(api::error_text(e)),
            };
            // The row goes at once; the answer moves the question only
            // while it is still this entry's.
            let Some(asked) = state.try_update_value(|s| {
                if let (None, Some(Ok(l))) = (&error, &mut s.list) {
                    if let Some(c) = l.entries.iter().find(|c| c.id == id) {
                        l.total = l.total.saturating_sub(1);
                        l.bytes = l.bytes.saturating_sub(c.bytes);
                    }
                    l.entries.retain(|c| c.id != id);
                }
                s.asking.id == Some(id)
            }) else {
                return;
            };
            if asked {
                let focus_on = if error.is_some() {
                    "keep-cache"
                } else {
                    "caches-title"
                };
                ask(Asking {
                    id: error.is_some().then_some(id),
                    busy: false,
                    error,
                });
                focus(focus_on);
            } else {
                paint();
            }
            load();
        });
    };
    let close = move || {
        if let Some(id) = state.with_value(|s| (!s.asking.busy).then_some(s.asking.id)?) {
            ask(Asking::default());
            focus(&format!("delete-cache-{id}"));
        }
    };
    let click = move |ev: leptos::ev::MouseEvent| match clicked(&ev) {
        Some(Click::Delete(id)) => {
            ask(Asking {
                id: Some(id),
                ..Asking::default()
            });
            focus("keep-cache");
        }
        // Not twice, nor kept, while a delete is under way.
        Some(Click::Confirm(id)) if !state.with_value(|s| s.asking.busy) => delete(id),
        Some(Click::Keep) => close(),
        _ => {}
    };
    view! {
        <section class="card caches" id="caches" aria-labelledby="caches-title">
            <h2 id="caches-title" tabindex="-1">"Caches"</h2>
            <div
                id="caches-body"
                on:click=click
                on:keydown=move |e: leptos::ev::KeyboardEvent| {
                    if e.key() == "Escape" {
                        close();
                    }
                }
            >
                <p class="loading">"Loading the caches…"</p>
            </div>
        </section>
    }
}

/// What a click in the card asked for (clicks reach it in the browser
/// alone).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
enum Click {
    Delete(i64),
    Confirm(i64),
    Keep,
}

/// The button a click landed on, by its `data-` attribute; a copy button
/// copies its text at once and says so, as `ui::CopyButton` does.
fn clicked(ev: &leptos::ev::MouseEvent) -> Option<Click> {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let button = ev
            .target()?
            .dyn_into::<web_sys::Element>()
            .ok()?
            .closest("button")
            .ok()??;
        if let Some(text) = button.get_attribute("data-copy") {
            let _ = window().navigator().clipboard().write_text(&text);
            button.set_text_content(Some("Copied"));
            return None;
        }
        let id = |name: &str| button.get_attribute(name)?.parse::<i64>().ok();
        if let Some(id) = id("data-delete") {
            return Some(Click::Delete(id));
        }
        if let Some(id) = id("data-confirm") {
            return Some(Click::Confirm(id));
        }
        button.has_attribute("data-keep").then_some(Click::Keep)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = ev;
        None
    }
}

/// Writes the card's body, the focus staying on the element of its id
/// when the new body has one.
fn write_body(html: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(body) = document().get_element_by_id("caches-body") {
        let had = document().active_element().map(|e| e.id());
        body.set_inner_html(html);
        if let Some(id) = had {
            focus(&id);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = html;
}

/// The card below its title: usage, then the entries (or what caches are),
/// then the question a Delete asked. `time` writes a moment as the page
/// shows it.
fn card_html(l: &CacheList, edit: bool, asking: &Asking, time: fn(i64) -> String) -> String {
    let mut out = usage_html(l);
    if l.entries.is_empty() {
        out.push_str(&format!(
            "<p class=\"empty\" id=\"no-caches\">No cache entries. A task's caches keep files \
             (downloaded dependencies, build output) from one run to the next under a key: a run \
             restores the entry of its key, or the newest one a restore key starts, and saves it \
             when the key missed. <a href=\"{DOCS}\">Caches in the spec</a></p>"
        ));
    } else {
        out.push_str(
            "<div class=\"table-wrap\" tabindex=\"0\" role=\"region\" aria-label=\"Cache entries\">\
             <table class=\"list cards\" id=\"cache-entries\"><thead><tr>\
             <th scope=\"col\">Cache</th><th scope=\"col\">Key</th><th scope=\"col\">Files</th>\
             <th scope=\"col\">Size</th><th scope=\"col\">Last used</th><th scope=\"col\">Created</th>\
             <th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead><tbody>",
        );
        for c in &l.entries {
            out.push_str(&row_html(c, edit, asking.id == Some(c.id), time));
        }
        out.push_str("</tbody></table></div>");
    }
    if let Some(c) = l.entries.iter().find(|c| Some(c.id) == asking.id) {
        out.push_str(&confirm_html(c, asking));
    }
    out
}

/// `3 entries · 812.4 MiB of 10.0 GiB`, and a meter of the quota.
fn usage_html(l: &CacheList) -> String {
    let count = match l.total {
        1 => "1 entry".to_string(),
        n => format!("{n} entries"),
    };
    let shown = l.entries.len();
    let shown = if l.total > shown as u64 {
        format!(" (the {shown} used last shown)")
    } else {
        String::new()
    };
    if l.quota == 0 {
        return format!(
            "<p class=\"muted\" id=\"cache-usage\">{count}{shown} · saving caches is off (cache quota 0)</p>"
        );
    }
    format!(
        "<p class=\"muted\" id=\"cache-usage\">{count}{shown} · {} of {} \
         <meter min=\"0\" max=\"{}\" value=\"{}\" aria-label=\"Cache bytes against the workflow's cache quota\"></meter></p>",
        size_text(l.bytes),
        size_text(l.quota),
        l.quota,
        l.bytes
    )
}

fn row_html(c: &CacheEntry, edit: bool, asked: bool, time: fn(i64) -> String) -> String {
    let (name, key) = (esc(&c.name), esc(&c.key));
    let delete = if edit {
        format!(
            "<button type=\"button\" class=\"danger\" id=\"delete-cache-{id}\" data-delete=\"{id}\" \
             aria-controls=\"cache-confirm\" aria-expanded=\"{asked}\" \
             aria-label=\"Delete cache {name} {key}\">Delete</button>",
            id = c.id
        )
    } else {
        String::new()
    };
    format!(
        "<tr data-cache=\"{}\"><th scope=\"row\"><code>{name}</code></th>\
         <td data-label=\"Key\"><code class=\"cache-key\"><bdi>{key}</bdi></code> \
         <button type=\"button\" class=\"copy\" data-copy=\"{key}\" aria-label=\"Copy key {key}\">Copy</button></td>\
         <td data-label=\"Files\">{}</td><td data-label=\"Size\">{}</td>\
         <td data-label=\"Last used\">{}</td><td data-label=\"Created\">{}</td>\
         <td class=\"actions\">{delete}</td></tr>",
        c.id,
        c.files,
        size_text(c.bytes),
        time_html(c.used_at, time),
        time_html(c.created_at, time),
    )
}

/// A moment as `ui::Time` shows it: the page's zone, UTC on hover.
fn time_html(ms: i64, time: fn(i64) -> String) -> String {
    let utc = xene_core::time::utc_text(ms);
    let iso = utc.replacen(' ', "T", 1).replace(" UTC", "Z");
    format!(
        "<time datetime=\"{iso}\" title=\"{utc}\">{}</time>",
        time(ms)
    )
}

/// Asks before deleting an entry, saying what deleting does.
fn confirm_html(c: &CacheEntry, asking: &Asking) -> String {
    let name = esc(&c.name);
    let error = asking
        .error
        .as_deref()
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    // aria-disabled, not disabled: the focus stays on the button.
    let busy = if asking.busy {
        " aria-disabled=\"true\""
    } else {
        ""
    };
    format!(
        "<div class=\"confirm\" id=\"cache-confirm\" role=\"alertdialog\" \
         aria-labelledby=\"cache-confirm-title\" aria-describedby=\"cache-confirm-what\">\
         <h3 id=\"cache-confirm-title\">Delete cache {name}?</h3>\
         <p id=\"cache-confirm-what\">Its entry <bdi>{}</bdi> ({}) goes from the store; the next run that \
         asks for this key misses and saves it again.</p><div class=\"actions\">\
         <button type=\"button\" class=\"danger\" id=\"confirm-cache-delete\" data-confirm=\"{}\"{busy}>Delete {name}</button>\
         <button type=\"button\" id=\"keep-cache\" data-keep{busy}>Keep it</button></div>{error}</div>",
        esc(&c.key),
        size_text(c.bytes),
        c.id,
    )
}

/// Text made safe inside HTML elements and quoted attributes.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, name: &str, key: &str) -> CacheEntry {
        CacheEntry {
            id,
            name: name.into(),
            key: key.into(),
            files: 3,
            bytes: 2048,
            created_at: 0,
            used_at: 0,
        }
    }

    #[test]
    fn a_key_never_becomes_markup() {
        let key = r#"k"><img src=x onerror=alert(1)>&'"#;
        let list = CacheList {
            entries: vec![entry(7, "deps", key)],
            total: 1,
            bytes: 2048,
            quota: 1 << 20,
        };
        let asking = Asking {
            id: Some(7),
            busy: false,
            error: Some("<b>no</b>".into()),
        };
        let html = card_html(&list, true, &asking, |_| "now".into());
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("data-copy=\"k&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;&#39;\"")
        );
        assert!(html.contains("id=\"cache-confirm\""));
        assert!(html.contains("aria-expanded=\"true\""));
        assert!(html.contains("aria-label=\"Copy key k&quot;"), "{html}");
        assert!(html.contains("<bdi>k&quot;"), "{html}");
        let busy = Asking {
            busy: true,
            ..asking
        };
        let html = card_html(&list, true, &busy, |_| "now".into());
        assert!(html.contains("data-keep aria-disabled=\"true\""), "{html}");
    }

    #[test]
    fn viewers_get_no_delete_and_usage_reads_against_the_quota() {
        let list = CacheList {
            entries: vec![entry(1, "deps", "deps-v1")],
            total: 3,
            bytes: 2048,
            quota: 64 << 20,
        };
        let html = card_html(&list, false, &Asking::default(), |_| "now".into());
        assert!(!html.contains("data-delete"), "{html}");
        assert!(
            html.contains("3 entries (the 1 used last shown) · 2.0 KiB of 64.0 MiB"),
            "{html}"
        );
        let off = CacheList { quota: 0, ..list };
        assert!(
            card_html(&off, false, &Asking::default(), |_| "now".into())
                .contains("saving caches is off")
        );
        let empty = CacheList {
            entries: vec![],
            total: 0,
            bytes: 0,
            quota: 1,
        };
        assert!(card_html(&empty, true, &Asking::default(), |_| "now".into()).contains(DOCS));
    }
}
