//! Deleting a workflow from its page, once the user confirmed it.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use xene_api::paths;

use crate::api;
use crate::ui::ErrorBox;

/// The Delete button of the page's head; it only opens the confirmation.
#[component]
pub(super) fn DeleteButton(open: RwSignal<bool>) -> impl IntoView {
    view! {
        <button
            type="button"
            class="danger"
            id="delete-workflow"
            aria-expanded=move || open.get().to_string()
            aria-controls="delete-confirm"
            on:click=move |_| open.set(true)
        >
            "Delete"
        </button>
    }
}

/// Asks before deleting, saying what deleting does; the safe answer has
/// the focus, and Escape gives it too.
#[component]
pub(super) fn DeleteConfirm(name: String, open: RwSignal<bool>) -> impl IntoView {
    let navigate = use_navigate();
    let delete = Action::new({
        let name = name.clone();
        move |_: &()| {
            let path = paths::workflow(&name);
            async move { api::send("DELETE", path, None).await.map(|_| ()) }
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(())) = delete.value().get() {
            navigate("/workflows", Default::default());
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
        focus_delete_button();
    };
    view! {
        <Show when=move || open.get()>
            <div
                class="card confirm"
                id="delete-confirm"
                role="alertdialog"
                aria-labelledby="delete-title"
                aria-describedby="delete-what"
                on:keydown=move |e: leptos::ev::KeyboardEvent| {
                    if e.key() == "Escape" {
                        close();
                    }
                }
            >
                <h2 id="delete-title">{format!("Delete workflow {name}?")}</h2>
                <p id="delete-what">
                    "It takes no new runs, and its cron and webhook triggers stop. Its past runs, \
                     their logs and its versions stay; applying a workflow of this name again \
                     brings it back as a new version."
                </p>
                <div class="actions">
                    <button
                        type="button"
                        class="danger"
                        id="confirm-delete"
                        disabled=move || delete.pending().get()
                        on:click=move |_| {
                            delete.dispatch(());
                        }
                    >
                        {format!("Delete {name}")}
                    </button>
                    <button type="button" id="keep-workflow" node_ref=keep on:click=move |_| close()>
                        "Keep it"
                    </button>
                </div>
                {move || delete.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
            </div>
        </Show>
    }
}

/// Gives the focus back to the Delete button once the question is gone.
fn focus_delete_button() {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(el) = document()
            .get_element_by_id("delete-workflow")
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = el.focus();
        }
    }
}
