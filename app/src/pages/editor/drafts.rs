//! Unsaved work is never lost: while an edit differs from what was opened
//! or saved, a draft of it (text, places, and the version it builds on) is
//! kept in the browser's local storage, one per workflow; the editor offers
//! it back when it opens again, and asks before a link in the app, a reload
//! or closing the tab leaves an edit unsaved.

use leptos::prelude::*;
use xene_core::draft::EditorLayout;

use super::doc::{Doc, use_doc};
use super::save::Saving;
use crate::session::current_user;
use crate::ui::{Time, now_ms};

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

/// Every draft's key starts so: signing out forgets them all.
const PREFIX: &str = "xene.draft.";

/// Where user `user`'s draft of a workflow (`None`: a new one) is kept:
/// per user, so a shared browser never hands one person's unsaved text
/// to the next.
fn key(user: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{PREFIX}{user}.workflow.{n}"),
        None => format!("{PREFIX}{user}.new"),
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

/// Whether the draft is kept: not when too large or storage is full (then
/// nothing is, not even an older draft of the same workflow).
fn write(key: &str, kept: &Kept) -> bool {
    let stored = encode(kept);
    #[cfg(feature = "hydrate")]
    if let Some(s) = storage()
        && !SIGNING_OUT.load(std::sync::atomic::Ordering::Relaxed)
    {
        if stored.len() <= MAX_DRAFT_BYTES && s.set_item(key, &stored).is_ok() {
            return true;
        }
        let _ = s.remove_item(key);
    }
    let _ = (key, stored, MAX_DRAFT_BYTES);
    false
}

fn forget(key: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(s) = storage() {
        let _ = s.remove_item(key);
    }
    let _ = key;
}

/// Set on signing out: the editor's last write as the page goes would
/// otherwise keep a draft again.
static SIGNING_OUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Forgets every draft in this browser, anyone's: on signing out.
pub fn forget_all() {
    SIGNING_OUT.store(true, std::sync::atomic::Ordering::Relaxed);
    #[cfg(feature = "hydrate")]
    if let Some(s) = storage() {
        let keys: Vec<String> = (0..s.length().unwrap_or(0))
            .filter_map(|i| s.key(i).ok().flatten())
            .filter(|k| k.starts_with(PREFIX))
            .collect();
        for k in keys {
            let _ = s.remove_item(&k);
        }
    }
}

/// The draft an earlier visit left, and the key it was read from.
pub(super) type Offer = RwSignal<Option<(String, Kept)>>;

/// How long typing pauses before the draft is written: not the whole text
/// at every keystroke. Before the page may go, it is written at once.
const WRITE_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// One editor's draft keeping (signals and stored values only, so `Copy`).
#[derive(Clone, Copy)]
struct Keeper {
    doc: Doc,
    saving: Saving,
    offer: Offer,
    /// The signed-in user's id, once known: no draft before.
    user: Signal<Option<String>>,
    /// The write waiting for typing to pause: its timer, key and draft.
    pending: StoredValue<Option<(TimeoutHandle, String, Kept)>>,
    /// The key last written: a first save moves a new workflow's draft.
    written: StoredValue<Option<String>>,
    /// Whether the last write kept the draft.
    kept: StoredValue<bool>,
}

impl Keeper {
    fn key(self) -> Option<String> {
        let user = self.user.get()?;
        Some(key(&user, self.saving.saved_name.get().as_deref()))
    }

    /// What would be kept now, if anything is unsaved.
    fn draft(self) -> Option<Kept> {
        let Keeper { doc, saving, .. } = self;
        saving.unsaved().then(|| Kept {
            text: doc.text.get(),
            layout: doc.layout.get(),
            base: saving.base.get(),
            base_source: saving.base_source.get(),
            at: now_ms(),
        })
    }

    /// Stops the write waiting for typing to pause, and answers it.
    fn cancel_pending(self) -> Option<(String, Kept)> {
        let (timer, k, kept) = self.pending.try_update_value(Option::take).flatten()?;
        timer.clear();
        Some((k, kept))
    }

    fn write_now(self, k: String, kept: &Kept) {
        self.cancel_pending();
        self.kept.set_value(write(&k, kept));
        self.written.set_value(Some(k));
    }

    /// Brings the stored draft up to what is on screen; `later`: after
    /// typing pauses. Answers whether leaving now keeps the edit.
    fn update(self, later: bool) -> bool {
        let Some(k) = self.key() else {
            return !self.saving.unsaved();
        };
        let offered = self.offer.get();
        let draft = self.draft();
        // Until the offer is answered, its draft stays, unless there is a
        // newer edit to keep (the offered one is held in the offer).
        if draft.is_none()
            && let Some((offered, kept)) = offered
        {
            if self.written.get_value().is_some() {
                self.write_now(offered, &kept);
                self.written.set_value(None);
            }
            return true;
        }
        if let Some(old) = self.written.get_value()
            && old != k
        {
            forget(&old);
        }
        match draft {
            Some(kept) if later => {
                self.cancel_pending();
                self.written.set_value(Some(k.clone()));
                let timer = set_timeout_with_handle(
                    move || {
                        if let Some((k, kept)) = self
                            .pending
                            .try_update_value(Option::take)
                            .flatten()
                            .map(|(_, k, kept)| (k, kept))
                        {
                            self.kept.set_value(write(&k, &kept));
                        }
                    },
                    WRITE_AFTER,
                );
                match timer {
                    Ok(timer) => self.pending.set_value(Some((timer, k, kept))),
                    Err(_) => self.kept.set_value(write(&k, &kept)),
                }
                true
            }
            Some(kept) => {
                self.write_now(k, &kept);
                self.kept.get_value()
            }
            None => {
                self.cancel_pending();
                forget(&k);
                self.written.set_value(None);
                true
            }
        }
    }

    /// Writes the draft at once and asks whether to leave it.
    #[cfg(feature = "hydrate")]
    fn ask_to_leave(self) -> bool {
        let kept = untrack(|| self.update(false));
        let question = if kept {
            "This workflow has unsaved changes. Leave the editor? \
             They stay as a draft in this browser."
        } else {
            "This workflow has unsaved changes this browser cannot keep as a \
             draft (too large, or its storage is full). Leave the editor and \
             lose them?"
        };
        window().confirm_with_message(question).unwrap_or(true)
    }
}

/// Keeps the editor's draft up to date, and answers the draft an earlier
/// visit left, when it differs from what the page opened with.
pub(super) fn keep(doc: Doc, saving: Saving) -> Offer {
    let offer: Offer = RwSignal::new(None);
    let me = current_user();
    let keeper = Keeper {
        doc,
        saving,
        offer,
        user: Signal::derive(move || me().map(|me| me.user.id)),
        pending: StoredValue::new(None),
        written: StoredValue::new(None),
        kept: StoredValue::new(true),
    };
    let checked = StoredValue::new(false);
    Effect::new(move |_| {
        let Some(k) = keeper.key() else {
            return;
        };
        if !checked.get_value() {
            checked.set_value(true);
            let opened = (doc.text.get_untracked(), doc.layout.get_untracked());
            match read(&k) {
                Some(kept) if (kept.text.as_str(), &kept.layout) != (&opened.0[..], &opened.1) => {
                    offer.set(Some((k, kept)));
                }
                Some(_) => forget(&k),
                None => {}
            }
        }
        keeper.update(true);
    });
    // Leaving the editor without a question (the Run button): what waits
    // is written now.
    on_cleanup(move || {
        if let Some((k, kept)) = keeper.cancel_pending() {
            write(&k, &kept);
        }
    });
    warn_before_leaving(keeper);
    offer
}

/// Asks before the page goes while an edit is unsaved: a link in the app
/// (before the router follows it), a reload, closing the tab. (Back and
/// Forward within the app do not ask yet.)
fn warn_before_leaving(keeper: Keeper) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;
        let unsaved = move || untrack(|| keeper.saving.unsaved());
        let unload = Closure::<dyn Fn(web_sys::Event)>::new(move |ev: web_sys::Event| {
            // A field applies its text when it loses the focus: apply what
            // is being typed before deciding.
            let focused = document()
                .active_element()
                .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
            if let Some(el) = &focused {
                let _ = el.blur();
            }
            if unsaved() {
                untrack(|| keeper.update(false));
                ev.prevent_default();
                // What older browsers need to ask.
                let _ = js_sys::Reflect::set(&ev, &"returnValue".into(), &"".into());
            }
            if let Some(el) = focused
                && el.is_connected()
            {
                let _ = el.focus();
            }
        });
        let click = Closure::<dyn Fn(web_sys::MouseEvent)>::new(move |ev: web_sys::MouseEvent| {
            if !unsaved()
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
            // A link within this page (the skip link) leaves nothing.
            let without_hash = |url: String| url.split('#').next().unwrap_or_default().to_string();
            let to = js_sys::Reflect::get(&link, &"href".into())
                .ok()
                .and_then(|h| h.as_string());
            let from = window().location().href().ok();
            if let (Some(to), Some(from)) = (to, from)
                && without_hash(to) == without_hash(from)
            {
                return;
            }
            if !keeper.ask_to_leave() {
                ev.prevent_default();
                ev.stop_immediate_propagation();
            }
        });
        let w = window();
        let _ = w.add_event_listener_with_callback("beforeunload", unload.as_ref().unchecked_ref());
        // Captured on the window: before the router's own listeners see them.
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
    let _ = keeper;
}

/// The draft an earlier visit left: restore it (one undo step) or let it go.
#[component]
pub(super) fn DraftOffer(offer: Offer, saving: Saving) -> impl IntoView {
    let doc = use_doc();
    let restore = move |_| {
        let Some((_, kept)) = offer.get_untracked() else {
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
    // Forgets the offered draft; edits made meanwhile are kept anew.
    let discard = move |_| {
        if let Some((k, _)) = offer.get_untracked() {
            forget(&k);
        }
        offer.set(None);
    };
    move || {
        offer.get().map(|(_, kept)| {
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
