//! What an editor may do with a run from its page: cancel it, once they
//! confirmed it, and run it again, on the same version of its workflow
//! (what it ran, as GitHub's re-run does) or on the latest.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use xene_api::paths;
use xene_api::run::Run;

use crate::api;
use crate::ui::{ErrorBox, focus};

/// The Cancel button: it only asks.
#[component]
pub fn CancelButton(run: Signal<Run>, open: RwSignal<bool>) -> impl IntoView {
    view! {
        <Show when=move || !run.with(Run::is_finished)>
            <button
                id="cancel-run"
                class="danger"
                aria-expanded=move || open.get().to_string()
                aria-controls="cancel-confirm"
                on:click=move |_| open.set(true)
                disabled=move || run.with(|r| r.cancel_requested)
            >
                {move || if run.with(|r| r.cancel_requested) { "Cancelling…" } else { "Cancel" }}
            </button>
        </Show>
    }
}

/// Asks before cancelling, saying what it does; the safe answer has the
/// focus, and Escape gives it too.
#[component]
pub fn CancelConfirm(run: Signal<Run>, open: RwSignal<bool>) -> impl IntoView {
    let id = run.with_untracked(|r| r.id);
    let cancel =
        Action::new(
            move |_: &()| async move { api::send("POST", paths::run_cancel(id), None).await },
        );
    // Done: the question goes and the focus with it to the run's title,
    // which shows the status.
    Effect::new(move |_| {
        if let Some(Ok(_)) = cancel.value().get() {
            open.set(false);
            focus("run-title");
        }
    });
    // Asked again, the question starts clean: no error of an earlier try.
    Effect::new(move |_| {
        if open.get() {
            cancel.value().set(None);
        }
    });
    let keep = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if let Some(button) = keep.get() {
            let _ = button.focus();
        }
    });
    let close = move || {
        open.set(false);
        focus("cancel-run");
    };
    view! {
        <Show when=move || open.get() && !run.with(Run::is_finished)>
            <div
                class="card confirm"
                id="cancel-confirm"
                role="alertdialog"
                aria-labelledby="cancel-title"
                aria-describedby="cancel-what"
                on:keydown=move |e: leptos::ev::KeyboardEvent| {
                    if e.key() == "Escape" {
                        close();
                    }
                }
            >
                <h2 id="cancel-title">{format!("Cancel run #{id}?")}</h2>
                <p id="cancel-what">
                    "Its running steps are stopped (their post steps still run) and its \
                     tasks that have not started never will. This cannot be undone; Run again \
                     starts a new run."
                </p>
                <div class="actions">
                    <button
                        type="button"
                        class="danger"
                        id="confirm-cancel"
                        disabled=move || cancel.pending().get()
                        on:click=move |_| {
                            cancel.dispatch(());
                        }
                    >
                        "Cancel the run"
                    </button>
                    <button type="button" id="keep-running" node_ref=keep on:click=move |_| close()>
                        "Keep it running"
                    </button>
                </div>
                {move || cancel.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
            </div>
        </Show>
    }
}

/// "Run again": a new run of the same pipeline with the same params, on
/// the run's version; beside it, the same on the workflow's latest version.
#[component]
pub fn RunAgain(run: Signal<Run>, error: RwSignal<Option<String>>) -> impl IntoView {
    let navigate = use_navigate();
    let again = Action::new(move |(r, latest): &(Run, bool)| {
        let r = r.clone();
        let version = (!*latest).then_some(r.version);
        async move { api::start_run_at(&r.workflow, &r.pipeline, r.params, version).await }
    });
    Effect::new(move |_| match again.value().get() {
        Some(Ok(new)) => navigate(&format!("/runs/{}", new.id), Default::default()),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let version = move || run.with(|r| r.version);
    view! {
        <button
            id="rerun"
            title=move || format!("A new run of version {} with the same params", version())
            disabled=move || again.pending().get()
            on:click=move |_| {
                again.dispatch((run.get_untracked(), false));
            }
        >
            "Run again"
        </button>
        <button
            id="rerun-latest"
            class="link"
            title="A new run with the same params, on the workflow's latest version"
            disabled=move || again.pending().get()
            on:click=move |_| {
                again.dispatch((run.get_untracked(), true));
            }
        >
            "on the latest version"
        </button>
    }
}
