//! Unsaved work is never lost: while an edit differs from what was opened
//! or saved, a draft of it (text, places, and the version it builds on) is
//! kept in the browser's local storage, one per workflow; the editor offers
//! it back when it opens again, and asks before a link in the app, a reload
//! or closing the tab leaves an edit unsaved.

use leptos::prelude::*;
use xene_core::draft::EditorLayout;

use super::doc::{Doc, use_doc};
use super::save::Saving;
use crate::ui::Time;

/// Drafts longer than this are not kept: local storage holds a few MiB for
/// the whole site.
const MAX_DRAFT_BYTES: usize = 1 << 20;

/// What is kept of an unsaved edit.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Kept {
    pub text: String,
    pub layout: EditorLayout,
    /// The version the edit builds on (0: a new workflow), and its text,
    /// the base of a merge when someone saved since.
    pub base: i64,
    pub base_source: String,
    /// When it was kept, in ms since the epoch.
    pub at: i64,
}

/// Where the draft of a workflow (`None`: a new one) is kept.
fn key(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("xene.draft.workflow.{n}"),
        None => "xene.draft.new".to_string(),
    }
}

fn encode(kept: &Kept) -> String {
    serde_json::json!({
        "text": kept.text,
        "layout": kept.layout,
        "base": kept.base,
        "base_source": kept.base_source,
        "at": kept.at,
    })
    .to_string()
}

/// A kept draft; `None` for anything else (an older or damaged entry).
fn decode(stored: &str) -> Option<Kept> {
    let v: serde_json::Value = serde_json::from_str(stored).ok()?;
    Some(Kept {
        text: v.get("text")?.as_str()?.to_string(),
        layout: serde_json::from_value(v.get("layout")?.clone()).ok()?,
        base: v.get("base")?.as_i64()?,
        base_source: v.get("base_source")?.as_str()?.to_string(),
        at: v.get("at")?.as_i64()?,
    })
}

#[cfg(feature = "hydrate")]
fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

fn read(key: &str) -> Option<Kept> {
    #[cfg(feature = "hydrate")]
    {
        decode(&storage()?.get_item(key).ok()??)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (key, decode);
        None
    }
}

fn write(key: &str, kept: &Kept) {
    let stored = encode(kept);
    #[cfg(feature = "hydrate")]
    if let Some(s) = storage() {
        // Too large, or storage full: the warning before leaving remains.
        if stored.len() > MAX_DRAFT_BYTES || s.set_item(key, &stored).is_err() {
            let _ = s.remove_item(key);
        }
    }
    let _ = (key, stored, MAX_DRAFT_BYTES);
}

fn forget(key: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(s) = storage() {
        let _ = s.remove_item(key);
    }
    let _ = key;
}

fn now_ms() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0
    }
}

/// Keeps the editor's draft up to date, and answers the draft an earlier
/// visit left, when it differs from what the page opened with.
pub(super) fn keep(doc: Doc, saving: Saving) -> RwSignal<Option<Kept>> {
    let offer: RwSignal<Option<Kept>> = RwSignal::new(None);
    // The key last written: a first save moves the draft of a new workflow.
    let written = StoredValue::new(None::<String>);
    let checked = StoredValue::new(false);
    Effect::new(move |_| {
        let name = saving.saved_name.get();
        let k = key(name.as_deref());
        if !checked.get_value() {
            checked.set_value(true);
            let opened = (doc.text.get_untracked(), doc.layout.get_untracked());
            match read(&k) {
                Some(kept) if (kept.text.as_str(), &kept.layout) != (&opened.0[..], &opened.1) => {
                    offer.set(Some(kept));
                }
                Some(_) => forget(&k),
                None => {}
            }
        }
        let unsaved = saving.unsaved();
        // Until the offer is answered, the draft stays as it was.
        if offer.with(Option::is_some) {
            return;
        }
        if let Some(old) = written.get_value()
            && old != k
        {
            forget(&old);
        }
        if unsaved {
            let kept = Kept {
                text: doc.text.get(),
                layout: doc.layout.get(),
                base: saving.base.get(),
                base_source: saving.base_source.get(),
                at: now_ms(),
            };
            write(&k, &kept);
            written.set_value(Some(k));
        } else {
            forget(&k);
            written.set_value(None);
        }
    });
    warn_before_leaving(Signal::derive(move || saving.unsaved()));
    offer
}

/// Asks before the page goes while an edit is unsaved: a link in the app
/// (before the router follows it), a reload, closing the tab.
fn warn_before_leaving(unsaved: Signal<bool>) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;
        let unload = Closure::<dyn Fn(web_sys::Event)>::new(move |ev: web_sys::Event| {
            if unsaved.get_untracked() {
                ev.prevent_default();
                // What older browsers need to ask.
                let _ = js_sys::Reflect::set(&ev, &"returnValue".into(), &"".into());
            }
        });
        let click = Closure::<dyn Fn(web_sys::MouseEvent)>::new(move |ev: web_sys::MouseEvent| {
            if !unsaved.get_untracked()
                || ev.default_prevented()
                || ev.button() != 0
                || ev.ctrl_key()
                || ev.meta_key()
                || ev.shift_key()
                || ev.alt_key()
            {
                return;
            }
            let link = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .and_then(|el| el.closest("a[href]").ok().flatten());
            let Some(link) = link else {
                return;
            };
            // A new tab or a download leaves the edit where it is.
            if link.get_attribute("target").is_some_and(|t| t != "_self")
                || link.has_attribute("download")
            {
                return;
            }
            let leave = window()
                .confirm_with_message(
                    "This workflow has unsaved changes. Leave the editor? \
                     They stay as a draft in this browser.",
                )
                .unwrap_or(true);
            if !leave {
                ev.prevent_default();
                ev.stop_immediate_propagation();
            }
        });
        let w = window();
        let _ = w.add_event_listener_with_callback("beforeunload", unload.as_ref().unchecked_ref());
        // Captured on the window: before the router's own listener sees it.
        let _ = w.add_event_listener_with_callback_and_bool(
            "click",
            click.as_ref().unchecked_ref(),
            true,
        );
        let held = send_wrapper::SendWrapper::new((unload, click));
        on_cleanup(move || {
            let (unload, click) = held.take();
            let w = window();
            let _ = w.remove_event_listener_with_callback(
                "beforeunload",
                unload.as_ref().unchecked_ref(),
            );
            let _ = w.remove_event_listener_with_callback_and_bool(
                "click",
                click.as_ref().unchecked_ref(),
                true,
            );
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = unsaved;
}

/// The draft an earlier visit left: restore it (one undo step) or let it go.
#[component]
pub(super) fn DraftOffer(offer: RwSignal<Option<Kept>>, saving: Saving) -> impl IntoView {
    let doc = use_doc();
    let restore = move |_| {
        let Some(kept) = offer.get_untracked() else {
            return;
        };
        // Built on a version older than the one opened: saving it asks to
        // merge with what was saved since, never overwrites it.
        if kept.base != 0 && kept.base != saving.base.get_untracked() {
            saving.base.set(kept.base);
            saving.base_source.set(kept.base_source.clone());
        }
        offer.set(None);
        doc.commit(kept.text, kept.layout);
        doc.notice.set(Some(
            "Restored the unsaved changes; Undo goes back to the saved version.".into(),
        ));
    };
    let discard = move |_| {
        forget(&key(saving.saved_name.get_untracked().as_deref()));
        offer.set(None);
    };
    move || {
        offer.get().map(|kept| {
            let older = kept.base != 0 && kept.base != saving.base.get_untracked();
            view! {
                <div id="draft-offer" class="draft-offer" role="alert">
                    <p>
                        "Unsaved changes from " <Time ms=kept.at /> " are kept in this browser"
                        {older.then(|| format!(", made on version {}", kept.base))} "."
                    </p>
                    <button id="draft-restore" class="primary" on:click=restore>"Restore them"</button>
                    <button id="draft-discard" on:click=discard>"Discard them"</button>
                </div>
            }
        })
    }
}
