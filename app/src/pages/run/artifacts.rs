//! A run's artifacts: what each task published (name, files, size, a
//! one-file artifact's hash with a copy button), with downloads (one file
//! as it is, several as a tar; each file of those on its own too), and the
//! Pin toggle that keeps them past retention.

use leptos::prelude::*;
use xene_api::artifacts::{ArtifactInfo, RunArtifacts, short_digest, size_text};
use xene_api::paths;
use xene_api::run::RunDetail;

use crate::api;
use crate::ui::{CopyButton, ErrorBox};

/// The most files of one artifact listed on the page; its tar has them all.
const FILES_SHOWN: usize = 50;

/// The section, once the run has artifacts; read again as its tasks end
/// (a task's artifacts are published as it ends).
#[component]
pub fn Artifacts(run_id: i64, detail: RwSignal<RunDetail>, open: bool) -> impl IntoView {
    let ended = Memo::new(move |_| {
        detail.with(|d| d.tasks.iter().filter(|t| t.finished_at.is_some()).count())
    });
    // Fetched by the browser alone (effects never run on the server): the
    // server renders nothing here, and the browser too until its answer is
    // back, so hydration matches. The table is not a lazy piece of the
    // bundle: a piece of its own split every chunk the other pages share
    // and made each of them ~10 KB heavier gzipped.
    let slot = RwSignal::new_local(None::<AnyView>);
    let shown = RwSignal::new(false);
    Effect::new(move |_| {
        let asked_at = ended.get();
        leptos::task::spawn_local(async move {
            let view = match api::get::<RunArtifacts>(paths::run_artifacts(run_id)).await {
                Ok(list) if list.artifacts.is_empty() => None,
                Ok(list) => Some(table(run_id, list, open)),
                Err(e) => Some(
                    view! { <ErrorBox message=format!("The artifacts cannot be read: {e}") /> }
                        .into_any(),
                ),
            };
            // Answers may come back out of order: only the latest one's is
            // shown.
            if ended.get_untracked() != asked_at {
                return;
            }
            shown.set(view.is_some());
            slot.set(view);
        });
    });
    // Once shown, the log box below starts lower.
    Effect::new(move |_| {
        if shown.get() {
            super::fit_log();
        }
    });
    move || {
        slot.track();
        slot.try_update_untracked(Option::take).flatten()
    }
}

/// The artifacts' table.
fn table(run_id: i64, list: RunArtifacts, open: bool) -> AnyView {
    let count = list.artifacts.len();
    let bytes: u64 = list.artifacts.iter().map(|a| a.bytes).sum();
    view! {
        <details class="card artifacts" id="artifacts" open=open on:toggle=move |_| super::fit_log()>
            <summary>
                <h2>"Artifacts"</h2>
                <span class="muted">{format!(" {count} {}, {}", if count == 1 { "artifact" } else { "artifacts" }, size_text(bytes))}</span>
            </summary>
            <div class="table-wrap">
                <table class="list cards">
                    <thead><tr>
                        <th scope="col">"Artifact"</th>
                        <th scope="col">"Task"</th>
                        <th scope="col">"Files"</th>
                        <th scope="col">"Size"</th>
                        <th scope="col">"Hash"</th>
                        <th scope="col"><span class="visually-hidden">"Download"</span></th>
                    </tr></thead>
                    <tbody>
                        {list.artifacts.into_iter().map(|a| view! { <Row run_id a /> }).collect_view()}
                    </tbody>
                </table>
            </div>
        </details>
    }
    .into_any()
}

/// One artifact: a row of the table.
#[component]
fn Row(run_id: i64, a: ArtifactInfo) -> impl IntoView {
    let href = paths::artifact(run_id, &a.name, None);
    let single = a.single_file().cloned();
    let what = if single.is_some() {
        "Download"
    } else {
        "Download (tar)"
    };
    let label = format!("Download {}", a.name);
    let files = match &single {
        Some(file) => view! { <code class="artifact-path">{file.path.clone()}</code> }.into_any(),
        None => view! { <Files run_id a=a.clone() /> }.into_any(),
    };
    view! {
        <tr data-artifact=a.name.clone()>
            <th scope="row"><code>{a.name.clone()}</code></th>
            <td data-label="Task">{a.task.clone()}</td>
            <td data-label="Files">{files}</td>
            <td data-label="Size">{size_text(a.bytes)}</td>
            <td data-label="Hash">
                {match single {
                    Some(file) => view! {
                        <span class="digest">
                            <code title=file.digest.clone()>{short_digest(&file.digest).to_string()}</code>
                            " " <CopyButton text=file.digest.clone() />
                        </span>
                    }.into_any(),
                    None => view! { <span class="muted">"per file"</span> }.into_any(),
                }}
            </td>
            <td class="actions"><a href=href download aria-label=label>{what}</a></td>
        </tr>
    }
}

/// A many-file artifact's files, folded: each with its size, hash and
/// download.
#[component]
fn Files(run_id: i64, a: ArtifactInfo) -> impl IntoView {
    let more = a
        .files
        .saturating_sub(a.entries.len().min(FILES_SHOWN) as u64);
    view! {
        <details class="artifact-files">
            <summary>{format!("{} files", a.files)}</summary>
            <ul>
                {a.entries.iter().take(FILES_SHOWN).map(|f| {
                    let href = paths::artifact(run_id, &a.name, Some(&f.path));
                    view! {
                        <li>
                            <a href=href download><code>{f.path.clone()}</code></a>
                            <span class="muted">{format!(" {} · ", size_text(f.size))}</span>
                            <code class="muted" title=f.digest.clone()>{short_digest(&f.digest).to_string()}</code>
                        </li>
                    }
                }).collect_view()}
            </ul>
            {(more > 0).then(|| view! { <p class="muted small">{format!("and {more} more, in the tar")}</p> })}
        </details>
    }
}

/// Pin or unpin the run (editors): a pinned run keeps its artifacts
/// whatever the retention.
#[component]
pub fn PinButton(run_id: i64, detail: RwSignal<RunDetail>) -> impl IntoView {
    let pinned = Memo::new(move |_| detail.with(|d| d.run.pinned));
    // The answer (a `Pinned`) is not read: the request says what it is.
    let toggle = Action::new(move |on: &bool| {
        let (on, method) = (*on, if *on { "PUT" } else { "DELETE" });
        async move {
            api::send(method, paths::run_pin(run_id), None)
                .await
                .map(|_| on)
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(on)) = toggle.value().get() {
            detail.update(|d| d.run.pinned = on);
        }
    });
    view! {
        <button
            id="pin-run"
            type="button"
            aria-pressed=move || pinned.get().to_string()
            title="A pinned run keeps its artifacts whatever the retention"
            disabled=move || toggle.pending().get()
            on:click=move |_| {
                toggle.dispatch(!pinned.get_untracked());
            }
        >
            {move || if pinned.get() { "Pinned" } else { "Pin" }}
        </button>
        {move || toggle.value().get().and_then(Result::err).map(|e| view! {
            <span class="error small" role="alert">{e}</span>
        })}
    }
}
