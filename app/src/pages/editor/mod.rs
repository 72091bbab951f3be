//! The visual DAG editor: a canvas, a side panel and the YAML, one source of
//! truth (the text). Every gesture on the canvas or in the panel is an edit
//! of the text through `xene_core::draft`, which changes only the lines it
//! concerns; typing in the YAML view redraws the canvas from the text. A
//! text that does not parse leaves the canvas as it last was, with the
//! fault shown. Canvas, panel and YAML share one undo history.
//!
//! The parts share one document ([`doc::Doc`]: the text, layout, history,
//! parse, pipeline shown and selection), provided through context:
//! `canvas`, `canvas_state` and `graph` draw and edit the DAG; `yaml` is the
//! text view; `panel`, `task_panel` and `fields` the side panel; `save` the
//! head, the review and the conflict dialog; `drafts` the unsaved work kept
//! in the browser and the warning before leaving it; `keys` the shortcuts.

mod canvas;
mod canvas_state;
mod doc;
mod drafts;
mod fields;
mod graph;
mod keys;
mod panel;
mod save;
mod task_panel;
mod yaml;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use serde::{Deserialize, Serialize};
use xene_core::draft::{self, EditorLayout};

use xene_api::paths::{self, encode};
use xene_api::secrets::SecretList;
use xene_api::workflows::{WorkflowDetail, WorkflowVersion};

use crate::api;
use crate::ui::ErrorBox;
use canvas::Canvas;
use doc::{Dialog, Doc};
use drafts::DraftOffer;
use keys::Help;
use panel::Properties;
use save::{Conflict, Review, SaveBar, Saving};
use yaml::YamlView;

pub use drafts::forget_all as forget_drafts;

/// What the page opens with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Loaded {
    /// The workflow's name; `None` for a new one.
    pub name: Option<String>,
    /// The current version this edit starts from (0: new).
    pub base: i64,
    /// The base version's text, for a three-way merge.
    pub base_source: String,
    /// The text to edit (of `?version=N`, or of the current version).
    pub source: String,
    /// Which version `source` is.
    pub version: i64,
    /// The drawing's placed nodes.
    pub layout: EditorLayout,
    /// The names in the secret store, for the panel and completion.
    pub secrets: Vec<String>,
}

/// A stored version, as much as the editor keeps of it.
#[derive(Debug, Clone, Default)]
struct VersionText {
    version: i64,
    source: String,
    layout: Option<EditorLayout>,
}

impl From<WorkflowVersion> for VersionText {
    fn from(v: WorkflowVersion) -> Self {
        Self {
            version: v.version,
            source: v.source,
            layout: v.layout,
        }
    }
}

/// The current version of workflow `name`.
async fn current_version(name: &str) -> Result<VersionText, String> {
    let detail: WorkflowDetail = api::get(paths::workflow(name)).await?;
    Ok(detail.current.into())
}

async fn load(name: Option<String>, version: Option<i64>) -> Result<Loaded, String> {
    let secrets = api::get::<SecretList>(paths::secrets(None))
        .await
        .map(|list| list.secrets)
        .unwrap_or_default();
    let mut secrets: Vec<String> = secrets.into_iter().map(|s| s.name).collect();
    secrets.sort();
    secrets.dedup();
    let Some(name) = name else {
        return Ok(Loaded {
            source: draft::new_workflow("my-workflow"),
            secrets,
            ..Loaded::default()
        });
    };
    let current = current_version(&name).await?;
    let edited = match version {
        Some(v) if v != current.version => api::get::<WorkflowVersion>(paths::version(&name, v))
            .await?
            .into(),
        _ => current.clone(),
    };
    Ok(Loaded {
        name: Some(name),
        base: current.version,
        base_source: current.source,
        source: edited.source,
        version: edited.version,
        layout: edited.layout.or(current.layout).unwrap_or_default(),
        secrets,
    })
}

/// `/editor` (a new workflow) and `/workflows/NAME/edit[?version=N]`.
#[component]
pub fn EditorPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let name = move || params.with(|p| p.get("name"));
    let version = move || query.with(|q| q.get("version").and_then(|v| v.parse::<i64>().ok()));
    let data = Resource::new(move || (name(), version()), |(n, v)| load(n, v));
    // The stored workflow the editor shows: its first save names a new one
    // without the router reloading the editor.
    let saved: RwSignal<Option<String>> = RwSignal::new(None);
    let shown = move || saved.get().or_else(name);
    let title = move || match shown() {
        Some(n) => format!("Edit {n}"),
        None => "New workflow".to_string(),
    };
    view! {
        <Title text=title />
        <nav class="crumbs" aria-label="Breadcrumb">
            <a href="/workflows">"Workflows"</a>
            " / "
            {move || shown().map(|n| view! { <a href=format!("/workflows/{}", encode(&n))>{n.clone()}</a> " / " })}
            <span aria-current="page">{move || if shown().is_some() { "Edit" } else { "New workflow" }}</span>
        </nav>
        <Transition fallback=|| view! { <p class="loading">"Loading the editor…"</p> }>
            {move || {
                data.get()
                    .map(|r| match r {
                        Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                        Ok(loaded) => view! { <Editor loaded saved /> }.into_any(),
                    })
            }}
        </Transition>
    }
}

/// The editor of one loaded text: the parts around their shared document.
/// `saved` follows the name the workflow is stored under.
#[component]
fn Editor(loaded: Loaded, saved: RwSignal<Option<String>>) -> impl IntoView {
    let doc = Doc::new(&loaded);
    provide_context(doc);
    let saving = Saving::new(&loaded, doc);
    keys::listen(doc);
    let offer = drafts::keep(doc, saving);
    Effect::new(move |_| saved.set(saving.saved_name.get()));
    let Doc {
        notice,
        message,
        dialog,
        ..
    } = doc;
    view! {
        <div class="editor">
            <SaveBar saving />
            <DraftOffer offer saving />
            // Two lines of its own: what appears here never moves the canvas.
            <div class="editor-status">
                {move || match (message.get(), notice.get()) {
                    (Some(m), _) => view! { <p class="error" role="alert">{m}</p> }.into_any(),
                    (None, Some(n)) => view! { <p class="notice" role="status">{n}</p> }.into_any(),
                    (None, None) => ().into_any(),
                }}
                {move || saving.blocked().map(|why| view! {
                    <p id="save-refused" class="refused">"Cannot save: " {why}</p>
                })}
            </div>
            <div class="editor-grid">
                <Canvas />
                <Properties />
                <YamlView />
            </div>
            {move || match dialog.get() {
                Dialog::Closed => None,
                Dialog::Help => Some(view! { <Help /> }.into_any()),
                Dialog::Review { current } => Some(view! { <Review saving current /> }.into_any()),
                Dialog::Conflict { version, source } => {
                    Some(view! { <Conflict saving version source /> }.into_any())
                }
            }}
        </div>
    }
}
