use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// What the server says about itself when asked from the home page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub version: String,
    pub database: String,
}

/// Asks the server for its version and whether its database answers.
#[server]
pub async fn check_server() -> Result<ServerStatus, ServerFnError> {
    let probe = use_context::<crate::ssr::StatusProbe>()
        .ok_or_else(|| ServerFnError::new("the server gave the UI no status probe"))?;
    probe.status().await.map_err(ServerFnError::new)
}

#[component]
pub fn Home() -> impl IntoView {
    // Effects never run during server rendering, so this flag flips only once
    // the browser bundle has hydrated the page: tests and people can tell.
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));

    let check = Action::new(|_: &()| check_server());
    let result = move || match check.value().get() {
        None if check.pending().get() => "Asking the server…".to_string(),
        None => String::new(),
        Some(Ok(s)) => format!(
            "Xene {} is up; its {} database answers.",
            s.version, s.database
        ),
        Some(Err(e)) => format!("The server did not answer: {e}"),
    };

    view! {
        <leptos_meta::Title text="Xene" />
        <section class="card">
            <h1>"Xene"</h1>
            <p>
                "A distributed workflow runner: a DAG of tasks in Docker containers, "
                "scheduled on agents, with live logs."
            </p>
            <p class="hydration" data-hydrated=move || hydrated.get().to_string()>
                {move || if hydrated.get() { "Interactive" } else { "Loading…" }}
            </p>
            <button id="check-server" on:click=move |_| { check.dispatch(()); }>
                "Check the server"
            </button>
            <p id="server-status" role="status">{result}</p>
            <p>
                "Start with the " <a href="/workflows">"workflows"</a> ", or follow the "
                <a href="/runs">"runs"</a> " as they happen."
            </p>
        </section>
    }
}
