//! A workflow's caches: the entries its tasks' caches saved (name, key,
//! files, size, last used, created), their bytes against the workflow's
//! cache quota, and deleting one (editors, asking first).

use leptos::prelude::*;
use xene_api::artifacts::size_text;
use xene_api::caches::{CacheEntry, CacheList};
use xene_api::paths;

use crate::api;
use crate::ui::{CopyButton, ErrorBox, Time};

/// Where the spec's documentation tells what caches are.
const DOCS: &str = "https://github.com/xene-run/xene/blob/main/docs/spec.md#caches";

/// The card. Read by the browser alone (effects never run on the server),
/// so the server and the browser both start from "Loading"; read again
/// after a delete.
#[component]
pub(super) fn Caches(workflow: String) -> impl IntoView {
    let list = RwSignal::new(None::<Result<CacheList, String>>);
    let asked = RwSignal::new(0u32);
    let path = paths::workflow_caches(&workflow);
    Effect::new(move |_| {
        let round = asked.get();
        let path = path.clone();
        leptos::task::spawn_local(async move {
            let answer = api::get::<CacheList>(path).await;
            // Only the latest answer is shown.
            if asked.get_untracked() == round {
                list.set(Some(answer));
            }
        });
    });
    let me = crate::session::current_user();
    let can_edit = Signal::derive(move || me().is_some_and(|m| m.can_edit()));
    let asking = RwSignal::new(None::<CacheEntry>);
    let delete = Action::new(move |id: &i64| {
        let path = paths::workflow_cache(&workflow, *id);
        async move {
            api::send("DELETE", path, None).await?;
            asking.set(None);
            asked.update(|n| *n += 1);
            focus("caches-title");
            Ok::<_, String>(())
        }
    });
    view! {
        <section class="card caches" id="caches" aria-labelledby="caches-title">
            <div class="section-head">
                <h2 id="caches-title" tabindex="-1">"Caches"</h2>
                {move || list.with(|l| match l {
                    Some(Ok(l)) => Some(usage(l)),
                    _ => None,
                })}
            </div>
            {move || match list.get() {
                None => view! { <p class="loading">"Loading the caches…"</p> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox message=format!("The caches cannot be read: {e}") /> }.into_any(),
                Some(Ok(l)) if l.entries.is_empty() => empty().into_any(),
                Some(Ok(l)) => table(l, can_edit, asking).into_any(),
            }}
            <Confirm asking delete />
        </section>
    }
}

/// `3 entries · 812.4 MiB of 10.0 GiB`, and a meter of the quota.
fn usage(l: &CacheList) -> impl IntoView + use<> {
    let count = match l.total {
        1 => "1 entry".to_string(),
        n => format!("{n} entries"),
    };
    let shown = (l.total > l.entries.len() as u64)
        .then(|| format!(" (the {} used last shown)", l.entries.len()));
    let of = if l.quota == 0 {
        " · saving caches is off (cache quota 0)".to_string()
    } else {
        format!(" · {} of {}", size_text(l.bytes), size_text(l.quota))
    };
    let meter = (l.quota > 0).then(|| {
        view! {
            <meter id="cache-meter" min="0" max=l.quota.to_string() value=l.bytes.to_string()
                aria-label="Cache bytes against the workflow's cache quota"></meter>
        }
    });
    view! {
        <span class="muted" id="cache-usage">{count} {shown} {of}</span>
        {meter}
    }
}

/// What a workflow without entries shows: what caches are.
fn empty() -> impl IntoView {
    view! {
        <p class="empty" id="no-caches">
            "No cache entries. A task's caches keep files (downloaded dependencies, build \
             output) from one run to the next under a key: a run restores the entry of its \
             key, or the newest one a restore key starts, and saves it when the key missed. "
            <a href=DOCS>"Caches in the spec"</a>
        </p>
    }
}

fn table(
    l: CacheList,
    can_edit: Signal<bool>,
    asking: RwSignal<Option<CacheEntry>>,
) -> impl IntoView {
    view! {
        <div class="table-wrap" tabindex="0" role="region" aria-label="Cache entries">
            <table class="list cards" id="cache-entries">
                <thead><tr>
                    <th scope="col">"Cache"</th>
                    <th scope="col">"Key"</th>
                    <th scope="col">"Files"</th>
                    <th scope="col">"Size"</th>
                    <th scope="col">"Last used"</th>
                    <th scope="col">"Created"</th>
                    <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                </tr></thead>
                <tbody>
                    {l.entries.into_iter().map(|c| {
                        let entry = c.clone();
                        view! {
                            <tr data-cache=c.id.to_string()>
                                <th scope="row"><code>{c.name.clone()}</code></th>
                                <td data-label="Key">
                                    <code class="cache-key">{c.key.clone()}</code>
                                    " " <CopyButton text=c.key.clone() />
                                </td>
                                <td data-label="Files">{c.files}</td>
                                <td data-label="Size">{size_text(c.bytes)}</td>
                                <td data-label="Last used"><Time ms=c.used_at /></td>
                                <td data-label="Created"><Time ms=c.created_at /></td>
                                <td class="actions">
                                    <Show when=move || can_edit.get()>
                                        {
                                            let entry = entry.clone();
                                            let id = entry.id;
                                            view! {
                                                <button
                                                    type="button"
                                                    class="danger"
                                                    id=format!("delete-cache-{}", entry.id)
                                                    aria-controls="cache-confirm"
                                                    aria-expanded=move || {
                                                        (asking.with(|a| a.as_ref().map(|c| c.id)) == Some(id)).to_string()
                                                    }
                                                    aria-label=format!("Delete cache {} {}", entry.name, entry.key)
                                                    on:click=move |_| asking.set(Some(entry.clone()))
                                                >
                                                    "Delete"
                                                </button>
                                            }
                                        }
                                    </Show>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// Asks before deleting an entry, saying what deleting does; the safe
/// answer has the focus, and Escape gives it too.
#[component]
fn Confirm(
    asking: RwSignal<Option<CacheEntry>>,
    delete: Action<i64, Result<(), String>>,
) -> impl IntoView {
    // A failed delete's error belongs to the entry it was asked for.
    Effect::new(move |_| {
        asking.track();
        delete.value().set(None);
    });
    let keep = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if let Some(button) = keep.get() {
            let _ = button.focus();
        }
    });
    let close = move || {
        if let Some(c) = asking.get_untracked() {
            focus(&format!("delete-cache-{}", c.id));
        }
        asking.set(None);
    };
    move || {
        asking.get().map(|c| {
            let id = c.id;
            view! {
                <div
                    class="confirm"
                    id="cache-confirm"
                    role="alertdialog"
                    aria-labelledby="cache-confirm-title"
                    aria-describedby="cache-confirm-what"
                    on:keydown=move |e: leptos::ev::KeyboardEvent| {
                        if e.key() == "Escape" {
                            close();
                        }
                    }
                >
                    <h3 id="cache-confirm-title">{format!("Delete cache {}?", c.name)}</h3>
                    <p id="cache-confirm-what">
                        {format!("Its entry {} ({}) goes from the store; the next run that asks for this key misses and saves it again.", c.key, size_text(c.bytes))}
                    </p>
                    <div class="actions">
                        <button
                            type="button"
                            class="danger"
                            id="confirm-cache-delete"
                            disabled=move || delete.pending().get()
                            on:click=move |_| {
                                delete.dispatch(id);
                            }
                        >
                            {format!("Delete {}", c.name)}
                        </button>
                        <button type="button" id="keep-cache" node_ref=keep on:click=move |_| close()>
                            "Keep it"
                        </button>
                    </div>
                    {move || delete.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorBox message=e /> })}
                </div>
            }
        })
    }
}

/// Moves the focus to the element of this id (once the page is interactive).
fn focus(id: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(el) = document()
            .get_element_by_id(id)
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = el.focus();
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}
