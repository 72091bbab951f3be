//! A button that copies a text shown once (a token, a command).

use leptos::prelude::*;

/// Copies its text to the clipboard (once the page is interactive).
#[component]
pub fn CopyButton(text: String) -> impl IntoView {
    let (copied, set_copied) = signal(false);
    view! {
        <button type="button" class="copy" on:click=move |_| {
            #[cfg(feature = "hydrate")]
            {
                let clipboard = window().navigator().clipboard();
                let _ = clipboard.write_text(&text);
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = &text;
            set_copied.set(true);
        }>
            {move || if copied.get() { "Copied" } else { "Copy" }}
        </button>
    }
}
