//! Saving: the editor's head (its name, undo, redo, shortcuts, save, run),
//! the review of the changes before a save, and what to do when someone
//! saved meanwhile (merge their changes into these, or reload theirs).

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use xene_api::paths::{self, with_query};
use xene_api::run::Run;
use xene_api::workflows::Applied as Saved;
use xene_core::draft::EditorLayout;

use super::doc::{Dialog, Doc};
use super::{Loaded, VersionText, current_version};
use crate::api;

/// What a save answers: the version stored, with the text and layout
/// saved and why the layout was not kept (if it was not); or, when someone
/// saved meanwhile, their version.
type SaveOutcome =
    Result<Result<(Saved, String, EditorLayout, Option<String>), VersionText>, String>;

/// The state of saving one editor's document (signals only, so `Copy`).
#[derive(Clone, Copy)]
pub(super) struct Saving {
    doc: Doc,
    /// The current version this edit builds on (0: new).
    pub base: RwSignal<i64>,
    /// That version's text: the base of a three-way merge.
    pub base_source: RwSignal<String>,
    /// The text with nothing unsaved in it: as opened, saved or reloaded.
    clean: RwSignal<String>,
    /// The layout last saved.
    saved_layout: RwSignal<EditorLayout>,
    /// The workflow's name once it is stored.
    pub saved_name: RwSignal<Option<String>>,
    /// Fetches the current version, to review against or to find a conflict.
    open_review: Action<(), Result<(i64, VersionText), String>>,
    save: Action<(), SaveOutcome>,
    run: Action<(), Result<Run, String>>,
}

impl Saving {
    pub fn new(loaded: &Loaded, doc: Doc) -> Saving {
        let Doc {
            text,
            layout,
            good,
            pipeline,
            message,
            notice,
            dialog,
            ..
        } = doc;
        let navigate = use_navigate();
        let base = RwSignal::new(loaded.base);
        let base_source = RwSignal::new(loaded.base_source.clone());
        let clean = RwSignal::new(loaded.source.clone());
        let saved_layout = RwSignal::new(loaded.layout.clone());
        let saved_name = RwSignal::new(loaded.name.clone());
        let save_name = move || good.with(|d| d.name.clone());
        // The version a save builds on: the loaded one, unless the YAML now
        // names another workflow, which must then be new.
        let save_base = move || {
            if saved_name.get_untracked().as_deref() == Some(save_name().as_str()) {
                base.get_untracked()
            } else {
                0
            }
        };
        let open_review = Action::new(move |_: &()| {
            let name = save_name();
            let b = save_base();
            async move {
                let current = current_version(&name).await;
                match (b, current) {
                    // A new name nobody has taken.
                    (0, Err(_)) => Ok((0, VersionText::default())),
                    (b, current) => current.map(|c| (b, c)),
                }
            }
        });
        Effect::new(move |_| {
            if let Some(r) = open_review.value().get() {
                match r {
                    // Someone saved since this edit began: say so before
                    // anything else.
                    Ok((b, current)) if current.version != b => dialog.set(Dialog::Conflict {
                        version: current.version,
                        source: current.source,
                    }),
                    Ok((_, current)) => dialog.set(Dialog::Review {
                        current: current.source,
                    }),
                    Err(e) => message.set(Some(e)),
                }
            }
        });
        let save = Action::new(move |_: &()| {
            let body = text.get_untracked();
            let l = layout.get_untracked();
            let b = save_base();
            let name = save_name();
            async move {
                // A server busy validating others says when to ask again.
                let mut tries = 0;
                let answer = loop {
                    let path = with_query(paths::workflows(), [("base", Some(b.to_string()))]);
                    let answer = api::send("POST", path, Some(body.clone())).await;
                    match answer.as_ref().err().and_then(|e| busy_wait(e)) {
                        Some(seconds) if tries < 5 => {
                            tries += 1;
                            wait_ms(seconds * 1000).await;
                        }
                        _ => break answer,
                    }
                };
                let saved: Saved = match answer {
                    Ok(t) => serde_json::from_str(&t).map_err(|e| e.to_string())?,
                    Err(e) if e.contains("changed meanwhile") => {
                        return Ok(Err(current_version(&name).await?));
                    }
                    Err(e) => return Err(e),
                };
                // The version is stored: a layout that fails to store is a
                // warning, not a failed save.
                let placed = api::send(
                    "PUT",
                    paths::layout(&saved.name, saved.version),
                    Some(api::json(&l)),
                )
                .await
                .err();
                Ok(Ok((saved, body, l, placed)))
            }
        });
        Effect::new(move |_| {
            let Some(r) = save.value().get() else {
                return;
            };
            match r {
                Ok(Ok((saved, body, l, placed))) => {
                    base.set(saved.version);
                    clean.set(body.clone());
                    base_source.set(body);
                    saved_layout.set(l);
                    dialog.set(Dialog::Closed);
                    let mut note = format!("Saved {} version {}.", saved.name, saved.version);
                    for w in &saved.warnings {
                        note.push(' ');
                        note.push_str(w);
                    }
                    if let Some(e) = placed {
                        note.push_str(&format!(" The nodes' places were not kept: {e}"));
                    }
                    notice.set(Some(note));
                    message.set(None);
                    if saved_name.get_untracked().as_deref() != Some(saved.name.as_str()) {
                        saved_name.set(Some(saved.name.clone()));
                        // The address of what is now an existing workflow,
                        // without the router reloading the editor.
                        #[cfg(feature = "hydrate")]
                        if let Ok(history) = window().history() {
                            let _ = history.replace_state_with_url(
                                &wasm_bindgen::JsValue::NULL,
                                "",
                                Some(&format!("/workflows/{}/edit", paths::encode(&saved.name))),
                            );
                        }
                    }
                }
                Ok(Err(current)) => dialog.set(Dialog::Conflict {
                    version: current.version,
                    source: current.source,
                }),
                Err(e) => {
                    dialog.set(Dialog::Closed);
                    message.set(Some(e));
                }
            }
        });
        let run = Action::new(move |_: &()| {
            let name = saved_name.get_untracked().unwrap_or_default();
            let p = pipeline.get_untracked();
            async move { api::start_run(&name, &p, Default::default()).await }
        });
        let navigate_run = navigate.clone();
        Effect::new(move |_| match run.value().get() {
            Some(Ok(r)) => navigate_run(&format!("/runs/{}", r.id), Default::default()),
            Some(Err(e)) => message.set(Some(e)),
            None => {}
        });
        Saving {
            doc,
            base,
            base_source,
            clean,
            saved_layout,
            saved_name,
            open_review,
            save,
            run,
        }
    }

    /// The workflow's name, as the YAML says.
    fn name(self) -> String {
        self.doc.good.with(|d| d.name.clone())
    }

    /// Whether there is anything to save.
    fn dirty(self) -> bool {
        let Saving {
            doc,
            base,
            base_source,
            saved_layout,
            ..
        } = self;
        doc.text.with(|t| base_source.with(|b| t != b))
            || doc.layout.with(|l| saved_layout.with(|s| l != s))
            || base.get() == 0
    }

    /// Whether leaving would lose an edit: the text or the places differ
    /// from what was opened, saved or reloaded.
    pub fn unsaved(self) -> bool {
        let Saving {
            doc,
            clean,
            saved_layout,
            ..
        } = self;
        doc.text.with(|t| clean.with(|c| t != c))
            || doc.layout.with(|l| saved_layout.with(|s| l != s))
    }

    /// Why the document cannot be saved as it is.
    pub fn blocked(self) -> Option<String> {
        let Doc {
            yaml_fault, faults, ..
        } = self.doc;
        if yaml_fault.with(Option::is_some) {
            Some("The YAML does not parse: fix it first.".to_string())
        } else {
            faults.with(|f| {
                (!f.is_empty()).then(|| {
                    format!(
                        "{} fault{} to fix before saving.",
                        f.len(),
                        if f.len() == 1 { "" } else { "s" }
                    )
                })
            })
        }
    }
}

/// The editor's head: the workflow's name, the version it builds on, and
/// the buttons that act on the whole document.
#[component]
pub(super) fn SaveBar(saving: Saving) -> impl IntoView {
    let me = crate::session::current_user();
    let can_edit = move || me().is_some_and(|m| m.can_edit());
    let Saving {
        doc,
        base,
        saved_name,
        open_review,
        save,
        run,
        ..
    } = saving;
    let Doc {
        undo,
        redo,
        dialog,
        pipeline,
        ..
    } = doc;
    let save_name = move || saving.name();
    let dirty = move || saving.dirty();
    let blocked = move || saving.blocked();
    view! {
        <div class="page-head">
            <h1>{move || {
                let n = save_name();
                if n.is_empty() { "New workflow".to_string() } else { n }
            }}</h1>
            <span class="muted">{move || match base.get() {
                0 => "not saved yet".to_string(),
                b => format!("editing from version {b}"),
            }}</span>
            <div class="actions">
                <button id="undo" on:click=move |_| doc.undo() disabled=move || undo.with(Vec::is_empty) title="Undo (Ctrl+Z)">"Undo"</button>
                <button id="redo" on:click=move |_| doc.redo() disabled=move || redo.with(Vec::is_empty) title="Redo (Ctrl+Shift+Z)">"Redo"</button>
                <button id="shortcuts" on:click=move |_| dialog.set(Dialog::Help) title="Keyboard shortcuts (?)">"Shortcuts"</button>
                <Show when=can_edit>
                    <button
                        class="primary save"
                        disabled=move || blocked().is_some() || !dirty() || save.pending().get()
                        title=move || blocked().unwrap_or_default()
                        on:click=move |_| { open_review.dispatch(()); }
                    >
                        "Save"
                    </button>
                    <Show when=move || saved_name.get().is_some() && !dirty()>
                        <button class="run" on:click=move |_| { run.dispatch(()); }>"Run " {move || pipeline.get()}</button>
                    </Show>
                </Show>
            </div>
        </div>
    }
    .into_any()
}

/// The diff against the current version, before saving.
#[component]
pub(super) fn Review(saving: Saving, current: String) -> impl IntoView {
    let Saving {
        doc, base, save, ..
    } = saving;
    let Doc { text, dialog, .. } = doc;
    let diff = crate::ui::diff_lines(&current, &text.get_untracked(), "Changes to save".into());
    view! {
            <div class="dialog card" role="dialog" aria-modal="true" aria-labelledby="review-title">
                <h2 id="review-title">{if current.is_empty() { "Save the new workflow".to_string() } else { format!("Changes against version {}", base.get_untracked()) }}</h2>
                {diff}
                <div class="actions">
                    <button class="primary confirm-save" on:click=move |_| { save.dispatch(()); } disabled=move || save.pending().get()>"Save version"</button>
                    <button on:click=move |_| dialog.set(Dialog::Closed)>"Keep editing"</button>
                </div>
            </div>
        }.into_any()
}

/// Someone saved a version since this edit began: merge, reload or cancel.
#[component]
pub(super) fn Conflict(saving: Saving, version: i64, source: String) -> impl IntoView {
    let Saving {
        doc,
        base,
        base_source,
        clean: clean_text,
        ..
    } = saving;
    let Doc {
        text,
        layout,
        notice,
        dialog,
        ..
    } = doc;
    let commit = move |t: String, l| doc.commit(t, l);
    let theirs = source.clone();
    let theirs_reload = source.clone();
    view! {
            <div class="dialog card conflict" role="alertdialog" aria-modal="true" aria-labelledby="conflict-title">
                <h2 id="conflict-title">"Changed by someone else"</h2>
                <p>{format!(
                    "Version {version} was saved while you edited version {}. Nothing was overwritten.",
                    base.get_untracked()
                )}</p>
                <div class="actions">
                    <button class="primary merge" on:click=move |_| {
                        let (merged, clean) = xene_core::merge::merge3(&base_source.get_untracked(), &text.get_untracked(), &theirs);
                        commit(merged, layout.get_untracked());
                        base.set(version);
                        base_source.set(theirs.clone());
                        clean_text.set(theirs.clone());
                        dialog.set(Dialog::Closed);
                        notice.set(Some(if clean {
                            format!("Merged with version {version}: review, then save.")
                        } else {
                            format!("Merged with version {version}, with conflicts marked <<<<<<< in the YAML: resolve them, then save.")
                        }));
                    }>"Merge their changes"</button>
                    <button class="reload" on:click=move |_| {
                        commit(theirs_reload.clone(), layout.get_untracked());
                        base.set(version);
                        base_source.set(theirs_reload.clone());
                        clean_text.set(theirs_reload.clone());
                        dialog.set(Dialog::Closed);
                        notice.set(Some(format!("Reloaded version {version}; Undo brings your edit back.")));
                    }>"Reload theirs"</button>
                    <button on:click=move |_| dialog.set(Dialog::Closed)>"Cancel"</button>
                </div>
            </div>
        }.into_any()
}

/// The seconds a busy server asked to wait ("... try again in N s"), 1 to 10.
fn busy_wait(error: &str) -> Option<i32> {
    let rest = error.rsplit_once("try again in ")?.1;
    let seconds: i32 = rest.strip_suffix(" s")?.parse().ok()?;
    Some(seconds.clamp(1, 10))
}

/// Waits in the browser; actions never run on the server.
async fn wait_ms(ms: i32) {
    #[cfg(feature = "hydrate")]
    {
        // The browser has one thread: the timer's future only claims Send.
        struct OneThread(send_wrapper::SendWrapper<wasm_bindgen_futures::JsFuture>);
        impl std::future::Future for OneThread {
            type Output = ();
            fn poll(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<()> {
                std::pin::Pin::new(&mut *self.0).poll(cx).map(|_| ())
            }
        }
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        });
        OneThread(send_wrapper::SendWrapper::new(promise.into())).await;
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = ms;
}
