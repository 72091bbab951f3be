//! A workflow's versions, and a diff between any two (`?from=1&to=3`).

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use xene_api::workflows::VersionSummary;

use super::{Diff, version_before, version_param};
use crate::ui::{ErrorBox, diff_lines};

#[component]
pub(super) fn Versions(versions: Vec<VersionSummary>, current: i64, diff: Diff) -> impl IntoView {
    let query = use_query_map();
    let pick =
        move |key: &str, default: i64| query.with(|q| version_param(q, key).unwrap_or(default));
    let previous = version_before(&versions, current);
    let options = move |selected: i64| {
        versions
            .iter()
            .map(|v| {
                view! {
                    <option value=v.version selected=v.version == selected>
                        {format!("v{}", v.version)}
                    </option>
                }
            })
            .collect_view()
    };
    let (from_options, to_options) = (options.clone(), options);
    view! {
        <section class="card versions">
            <h2>"Versions"</h2>
            // A GET form: picking versions is a link, so it works without the
            // wasm and the diff has its own URL.
            <form method="get" class="diff-pick">
                <label for="diff-from">"Compare"</label>
                <select id="diff-from" name="from">{move || from_options(pick("from", previous))}</select>
                <label for="diff-to">"with"</label>
                <select id="diff-to" name="to">{move || to_options(pick("to", current))}</select>
                <button type="submit">"Show the diff"</button>
            </form>
            <Transition fallback=|| view! { <p class="loading">"Loading the diff…"</p> }>
                {move || {
                    diff.get()
                        .map(|r| match r {
                            Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                            Ok((from, to, a, b)) => diff_view(from, to, &a, &b).into_any(),
                        })
                }}
            </Transition>
        </section>
    }
}

fn diff_view(from: i64, to: i64, a: &str, b: &str) -> impl IntoView {
    if a == b {
        return view! {
            <p class="muted" id="diff">{format!("v{from} and v{to} are the same.")}</p>
        }
        .into_any();
    }
    diff_lines(a, b, format!("Changes from v{from} to v{to}")).into_any()
}
