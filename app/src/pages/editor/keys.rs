//! The keyboard shortcuts (undo, redo, delete, help, close), and the
//! dialog that lists them.

use leptos::prelude::*;

use super::doc::{Dialog, Doc, Selection, use_doc};

/// Listens for the shortcuts as long as the editor is shown.
pub(super) fn listen(doc: Doc) {
    let Doc {
        dialog, selected, ..
    } = doc;
    let step_history = move |back: bool| {
        if back { doc.undo() } else { doc.redo() }
    };
    let remove_selected = move || doc.remove_selected();
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        let key = ev.key();
        let ctrl = ev.ctrl_key() || ev.meta_key();
        let typing = {
            #[cfg(feature = "hydrate")]
            {
                use wasm_bindgen::JsCast;
                ev.target()
                    .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                    .map(|e| matches!(e.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"))
                    .unwrap_or(false)
            }
            #[cfg(not(feature = "hydrate"))]
            false
        };
        if ctrl && (key == "z" || key == "Z") {
            ev.prevent_default();
            step_history(!ev.shift_key());
        } else if ctrl && key == "y" {
            ev.prevent_default();
            step_history(false);
        } else if typing {
        } else if key == "Delete" || key == "Backspace" {
            ev.prevent_default();
            remove_selected();
        } else if key == "?" {
            dialog.set(Dialog::Help);
        } else if key == "Escape" {
            dialog.set(Dialog::Closed);
            selected.set(Selection::None);
        }
    };

    // On the window: the shortcuts work wherever the focus is, even on a
    // button that just became disabled.
    let keys = leptos::leptos_dom::helpers::window_event_listener(leptos::ev::keydown, on_keydown);
    on_cleanup(move || keys.remove());
}

/// The list of shortcuts.
#[component]
pub(super) fn Help() -> impl IntoView {
    let dialog = use_doc().dialog;
    view! {
        <div class="dialog card" role="dialog" aria-modal="true" aria-labelledby="help-title">
            <h2 id="help-title">"Keyboard shortcuts"</h2>
            <dl class="shortcuts">
                <dt><kbd>"Ctrl+Z"</kbd></dt><dd>"undo, on the canvas and in the YAML"</dd>
                <dt><kbd>"Ctrl+Shift+Z"</kbd>" or "<kbd>"Ctrl+Y"</kbd></dt><dd>"redo"</dd>
                <dt><kbd>"Delete"</kbd></dt><dd>"remove the selected task or dependency"</dd>
                <dt><kbd>"Enter"</kbd></dt><dd>"select the focused task"</dd>
                <dt><kbd>"F2"</kbd>" or double-click"</dt><dd>"rename the focused task"</dd>
                <dt>"Add task"</dt><dd>"add a task after the selected one, its name ready to type"</dd>
                <dt>"double-click the canvas"</dt><dd>"add a task there"</dd>
                <dt>"drag from a task's dot"</dt><dd>"make another task wait for it"</dd>
                <dt><kbd>"Ctrl+Space"</kbd></dt><dd>"complete in the YAML"</dd>
                <dt><kbd>"Ctrl"</kbd>" + wheel"</dt><dd>"zoom"</dd>
                <dt><kbd>"?"</kbd></dt><dd>"this list"</dd>
                <dt><kbd>"Escape"</kbd></dt><dd>"close, deselect"</dd>
            </dl>
            <button on:click=move |_| dialog.set(Dialog::Closed)>"Close"</button>
        </div>
    }
    .into_any()
}
