//! The visual DAG editor: a canvas, a side panel and the YAML, one source of
//! truth (the text). Every gesture on the canvas or in the panel is an edit
//! of the text through `xene_core::draft`, which changes only the lines it
//! concerns; typing in the YAML view redraws the canvas from the text. A
//! text that does not parse leaves the canvas as it last was, with the
//! fault shown. Canvas, panel and YAML share one undo history.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use serde::{Deserialize, Serialize};
use xene_core::draft::{self, Draft, EditorLayout, Gesture, PipelineDraft};
use xene_core::edit::{self, Op, Seg, Yaml};
use xene_core::layout::{Direction, NODE_HEIGHT, NODE_WIDTH, layout_in};
use xene_core::parse::Diagnostic;

use crate::api::{self, enc};
#[cfg(feature = "hydrate")]
use crate::text::{byte_of_utf16, utf16_of_byte};
use crate::ui::{ErrorBox, Time};

/// Undo steps kept; the oldest go first.
const MAX_HISTORY: usize = 500;
/// Typing within this many milliseconds of the last keystroke is one undo step.
const TYPING_GROUP_MS: f64 = 1_000.0;
/// Undo keeps texts up to this many bytes in all.
const MAX_HISTORY_BYTES: usize = 32 << 20;

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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct VersionText {
    version: i64,
    source: String,
    layout: Option<EditorLayout>,
}

async fn load(name: Option<String>, version: Option<i64>) -> Result<Loaded, String> {
    let secrets: api::SecretList = api::get("/api/v1/secrets".into()).await.unwrap_or_default();
    let mut secrets: Vec<String> = secrets.secrets.into_iter().map(|s| s.name).collect();
    secrets.sort();
    secrets.dedup();
    let Some(name) = name else {
        return Ok(Loaded {
            source: draft::new_workflow("my-workflow"),
            secrets,
            ..Loaded::default()
        });
    };
    let current: VersionText = api::get(format!("/api/v1/workflows/{}", enc(&name))).await?;
    let edited = match version {
        Some(v) if v != current.version => {
            api::get::<VersionText>(format!("/api/v1/workflows/{}/versions/{v}", enc(&name)))
                .await?
        }
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
    let title = move || match name() {
        Some(n) => format!("Edit {n}"),
        None => "New workflow".to_string(),
    };
    view! {
        <Title text=title />
        <nav class="crumbs" aria-label="Breadcrumb">
            <a href="/workflows">"Workflows"</a>
            " / "
            {move || name().map(|n| view! { <a href=format!("/workflows/{}", enc(&n))>{n.clone()}</a> " / " })}
            <span aria-current="page">{move || if name().is_some() { "Edit" } else { "New workflow" }}</span>
        </nav>
        <Transition fallback=|| view! { <p class="loading">"Loading the editor…"</p> }>
            {move || {
                data.get()
                    .map(|r| match r {
                        Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                        Ok(loaded) => view! { <Editor loaded /> }.into_any(),
                    })
            }}
        </Transition>
    }
}

/// One undoable state.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    text: String,
    layout: EditorLayout,
}

/// What is selected on the canvas.
#[derive(Debug, Clone, PartialEq, Default)]
enum Selection {
    #[default]
    None,
    Task(String),
    Edge(String, String),
}

/// A pointer gesture under way.
#[derive(Debug, Clone, Default)]
enum Drag {
    #[default]
    Idle,
    /// Moving a node; the grab offset inside it.
    Node {
        name: String,
        dx: f64,
        dy: f64,
        moved: bool,
    },
    /// Drawing an edge from a node's handle.
    Connect { from: String },
    /// Moving the view.
    Pan { x: f64, y: f64, tx: f64, ty: f64 },
}

/// The view's pan and zoom.
#[derive(Debug, Clone, Copy, PartialEq)]
struct View {
    tx: f64,
    ty: f64,
    zoom: f64,
}

impl Default for View {
    fn default() -> Self {
        View {
            tx: 16.0,
            ty: 16.0,
            zoom: 1.0,
        }
    }
}

/// Where the layered layout puts a pipeline's tasks; the places the user
/// dragged them to are laid over this by the canvas.
fn auto_positions(p: &PipelineDraft, direction: Direction) -> BTreeMap<String, (i32, i32)> {
    layout_in(
        p.tasks
            .iter()
            .map(|t| (t.name.as_str(), t.depends_on.as_slice())),
        direction,
    )
    .nodes
    .into_iter()
    .map(|n| (n.name, (n.x, n.y)))
    .collect()
}

/// What the save dialog is showing.
#[derive(Debug, Clone, PartialEq)]
enum Dialog {
    Closed,
    /// The diff against the current version, before saving.
    Review {
        current: String,
    },
    /// Someone saved meanwhile.
    Conflict {
        version: i64,
        source: String,
    },
    /// The keyboard shortcuts.
    Help,
}

#[derive(Debug, Clone, Deserialize)]
struct Saved {
    name: String,
    version: i64,
    #[serde(default)]
    warnings: Vec<String>,
}

#[component]
fn Editor(loaded: Loaded) -> impl IntoView {
    let me = crate::session::current_user();
    let can_edit = move || me().is_some_and(|m| m.can_edit());
    let navigate = use_navigate();

    let text = RwSignal::new(loaded.source.clone());
    let layout = RwSignal::new(loaded.layout.clone());
    let base = RwSignal::new(loaded.base);
    let base_source = RwSignal::new(loaded.base_source.clone());
    let saved_layout = RwSignal::new(loaded.layout.clone());
    let saved_name = RwSignal::new(loaded.name.clone());
    let secrets = loaded.secrets.clone();
    let undo: RwSignal<Vec<Snapshot>> = RwSignal::new(Vec::new());
    let redo: RwSignal<Vec<Snapshot>> = RwSignal::new(Vec::new());
    let last_typing = StoredValue::new(0.0f64);
    let selected = RwSignal::new(Selection::None);
    let message: RwSignal<Option<String>> = RwSignal::new(None);
    let notice: RwSignal<Option<String>> = RwSignal::new(None);
    let dialog = RwSignal::new(Dialog::Closed);
    let view_state = RwSignal::new(View::default());
    let drag = StoredValue::new(Drag::Idle);
    let moving: RwSignal<Option<(String, i32, i32)>> = RwSignal::new(None);
    let pointer = RwSignal::new((0.0f64, 0.0f64));
    let connecting: RwSignal<Option<String>> = RwSignal::new(None);
    let cycle_hint: RwSignal<Option<String>> = RwSignal::new(None);
    let renaming: RwSignal<Option<String>> = RwSignal::new(None);
    // Completion in the YAML view: where the word starts, the choices, the
    // highlighted one.
    let completions: RwSignal<(usize, Vec<String>, usize)> = RwSignal::new((0, Vec::new(), 0));
    let svg_ref = NodeRef::<leptos::svg::Svg>::new();
    let yaml_ref = NodeRef::<leptos::html::Textarea>::new();

    // The draft of the last text that parsed: the canvas keeps it while
    // the YAML has a fault.
    let initial = Draft::read(&loaded.source).unwrap_or_default();
    let good = RwSignal::new(initial.clone());
    let good_tree = RwSignal::new(edit::tree(&loaded.source).ok());
    // One parse of the YAML per change, shared by the canvas and the fault.
    let parsed = Memo::new(move |_| text.with(|t| edit::tree(t).map_err(|e| e.0)));
    let yaml_fault = Memo::new(move |_| parsed.with(|p| p.as_ref().err().cloned()));
    Effect::new(move |_| {
        if let Ok(tree) = parsed.get() {
            good.set(Draft::from_tree(&tree));
            good_tree.set(Some(tree));
        }
    });
    let faults: Memo<Vec<Diagnostic>> = Memo::new(move |_| {
        text.with(|t| match xene_core::parse_workflow(t) {
            Ok(_) => Vec::new(),
            Err(d) => d.0,
        })
    });
    let pipeline = RwSignal::new(
        initial
            .pipelines
            .first()
            .map(|p| p.name.clone())
            .unwrap_or_else(|| "main".into()),
    );
    // A pipeline renamed or removed in the YAML: show the first one.
    Effect::new(move |_| {
        let d = good.get();
        let current = pipeline.get_untracked();
        if d.pipeline(&current).is_none()
            && let Some(first) = d.pipelines.first()
        {
            pipeline.set(first.name.clone());
        }
    });
    let current = Memo::new(move |_| {
        let p = pipeline.get();
        good.with(|d| d.pipeline(&p).cloned().unwrap_or_default())
    });
    // The layered layout only when the graph or the direction changes, not
    // on every move of a dragged node.
    let direction = Memo::new(move |_| layout.with(|l| l.direction));
    let auto = Memo::new(move |_| {
        let p = current.get();
        auto_positions(&p, direction.get())
    });
    let places = Memo::new(move |_| {
        let m = moving.get();
        let p = pipeline.get();
        let mut at = auto.get();
        layout.with(|l| {
            if let Some(placed) = l.positions.get(&p) {
                for (name, xy) in at.iter_mut() {
                    if let Some(v) = placed.get(name) {
                        *xy = *v;
                    }
                }
            }
        });
        if let Some((name, x, y)) = m
            && let Some(xy) = at.get_mut(&name)
        {
            *xy = (x, y);
        }
        at
    });

    // One history for everything.
    let commit = move |new_text: String, new_layout: EditorLayout| {
        let old = Snapshot {
            text: text.get_untracked(),
            layout: layout.get_untracked(),
        };
        if old.text == new_text && old.layout == new_layout {
            return;
        }
        undo.update(|u| {
            u.push(old);
            // Bounded in steps and in bytes: a 1 MiB spec keeps fewer.
            let mut bytes: usize = u.iter().map(|s| s.text.len()).sum();
            while u.len() > MAX_HISTORY || (bytes > MAX_HISTORY_BYTES && u.len() > 1) {
                bytes -= u.remove(0).text.len();
            }
        });
        redo.set(Vec::new());
        last_typing.set_value(0.0);
        completions.set((0, Vec::new(), 0));
        text.set(new_text);
        layout.set(new_layout);
    };
    let gesture = move |g: Gesture| match draft::apply(&text.get_untracked(), &g) {
        Ok(t) => {
            message.set(None);
            // A placed node keeps its place under its new name, and goes
            // with its task.
            let mut l = layout.get_untracked();
            match &g {
                Gesture::RenameTask { pipeline, from, to } => {
                    if let Some(m) = l.positions.get_mut(pipeline)
                        && let Some(at) = m.remove(from)
                    {
                        m.insert(to.clone(), at);
                    }
                }
                Gesture::RemoveTask { pipeline, name } => {
                    if let Some(m) = l.positions.get_mut(pipeline) {
                        m.remove(name);
                    }
                }
                _ => {}
            }
            commit(t, l);
            // The selection follows its task.
            match &g {
                Gesture::RenameTask { from, to, .. }
                    if selected.get_untracked() == Selection::Task(from.clone()) =>
                {
                    selected.set(Selection::Task(to.clone()))
                }
                Gesture::RemoveTask { name, .. }
                    if selected.get_untracked() == Selection::Task(name.clone()) =>
                {
                    selected.set(Selection::None)
                }
                _ => {}
            }
            true
        }
        Err(e) => {
            message.set(Some(e.0));
            false
        }
    };
    let step_history = move |back: bool| {
        let (from, to) = if back { (undo, redo) } else { (redo, undo) };
        let Some(snap) = from.try_update(|s| s.pop()).flatten() else {
            return;
        };
        to.update(|s| {
            s.push(Snapshot {
                text: text.get_untracked(),
                layout: layout.get_untracked(),
            })
        });
        last_typing.set_value(0.0);
        completions.set((0, Vec::new(), 0));
        text.set(snap.text);
        layout.set(snap.layout);
    };
    let remove_selected = move || match selected.get_untracked() {
        Selection::Task(name) => {
            if gesture(Gesture::RemoveTask {
                pipeline: pipeline.get_untracked(),
                name,
            }) {
                selected.set(Selection::None);
            }
        }
        Selection::Edge(from, to) => {
            if gesture(Gesture::Disconnect {
                pipeline: pipeline.get_untracked(),
                from,
                to,
            }) {
                selected.set(Selection::None);
            }
        }
        Selection::None => {}
    };
    let add_task_at = move |at: Option<(i32, i32)>| {
        let p = current.get_untracked();
        let name = p.fresh_name("task");
        if gesture(Gesture::AddTask {
            pipeline: p.name.clone(),
            name: name.clone(),
        }) {
            if let Some((x, y)) = at {
                let mut l = layout.get_untracked();
                l.positions
                    .entry(p.name.clone())
                    .or_default()
                    .insert(name.clone(), (x, y));
                // The position belongs to the same undo step as the task.
                layout.set(l);
            }
            selected.set(Selection::Task(name));
        }
    };

    // Pointer position in drawing units.
    let to_canvas = move |client_x: f64, client_y: f64| -> (f64, f64) {
        #[cfg(feature = "hydrate")]
        {
            let v = view_state.get_untracked();
            if let Some(svg) = svg_ref.get_untracked() {
                let r = svg.get_bounding_client_rect();
                return (
                    (client_x - r.left() - v.tx) / v.zoom,
                    (client_y - r.top() - v.ty) / v.zoom,
                );
            }
        }
        let _ = (view_state, svg_ref);
        (client_x, client_y)
    };
    let task_at = move |x: f64, y: f64| -> Option<String> {
        places.with_untracked(|ps| {
            ps.iter()
                .find(|(_, (nx, ny))| {
                    x >= *nx as f64
                        && x <= (*nx + NODE_WIDTH) as f64
                        && y >= *ny as f64
                        && y <= (*ny + NODE_HEIGHT) as f64
                })
                .map(|(n, _)| n.clone())
        })
    };
    let capture = move |_id: i32| {
        #[cfg(feature = "hydrate")]
        if let Some(svg) = svg_ref.get_untracked() {
            let _ = svg.set_pointer_capture(_id);
        }
    };
    // A panel field commits on change, which a browser fires when the field
    // loses focus: let it, before the selection (and the panel) changes.
    let commit_focused_field = move || {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            if let Some(el) = document()
                .active_element()
                .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
            {
                let _ = el.blur();
            }
        }
    };
    let on_pointerdown_bg = move |ev: leptos::ev::PointerEvent| {
        if ev.button() != 0 {
            return;
        }
        commit_focused_field();
        let v = view_state.get_untracked();
        drag.set_value(Drag::Pan {
            x: ev.client_x() as f64,
            y: ev.client_y() as f64,
            tx: v.tx,
            ty: v.ty,
        });
        selected.set(Selection::None);
        capture(ev.pointer_id());
    };
    let on_pointermove = move |ev: leptos::ev::PointerEvent| {
        let (cx, cy) = (ev.client_x() as f64, ev.client_y() as f64);
        match drag.get_value() {
            Drag::Idle => {}
            Drag::Pan { x, y, tx, ty } => view_state.update(|v| {
                v.tx = tx + cx - x;
                v.ty = ty + cy - y;
            }),
            Drag::Node { name, dx, dy, .. } => {
                let (x, y) = to_canvas(cx, cy);
                moving.set(Some((
                    name.clone(),
                    (x - dx).round() as i32,
                    (y - dy).round() as i32,
                )));
                drag.set_value(Drag::Node {
                    name,
                    dx,
                    dy,
                    moved: true,
                });
            }
            Drag::Connect { from } => {
                let (x, y) = to_canvas(cx, cy);
                pointer.set((x, y));
                let hint = task_at(x, y).and_then(|to| {
                    current
                        .with_untracked(|p| p.cycle_if_connected(&from, &to))
                        .map(|c| format!("refused, a cycle: {}", c.join(" -> ")))
                });
                cycle_hint.set(hint);
            }
        }
    };
    let on_pointerup = move |_: leptos::ev::PointerEvent| {
        // Where the last move left the pointer: an `up` may come without
        // coordinates of its own (synthesised input does that).
        let (x, y) = pointer.get_untracked();
        match drag.get_value() {
            Drag::Node { name, moved, .. } => {
                if moved && let Some((_, nx, ny)) = moving.get_untracked() {
                    let mut l = layout.get_untracked();
                    l.positions
                        .entry(pipeline.get_untracked())
                        .or_default()
                        .insert(name, (nx, ny));
                    commit(text.get_untracked(), l);
                }
                moving.set(None);
            }
            Drag::Connect { from } => {
                if let Some(to) = task_at(x, y) {
                    gesture(Gesture::Connect {
                        pipeline: pipeline.get_untracked(),
                        from,
                        to,
                    });
                }
                connecting.set(None);
                cycle_hint.set(None);
            }
            Drag::Pan { .. } | Drag::Idle => {}
        }
        drag.set_value(Drag::Idle);
    };
    let zoom_by = move |factor: f64| {
        view_state.update(|v| v.zoom = (v.zoom * factor).clamp(0.2, 3.0));
    };
    let fit = move || {
        let ps = places.get_untracked();
        if ps.is_empty() {
            view_state.set(View::default());
            return;
        }
        let (mut x0, mut y0, mut x1, mut y1) = (i32::MAX, i32::MAX, i32::MIN, i32::MIN);
        for (x, y) in ps.values() {
            x0 = x0.min(*x);
            y0 = y0.min(*y);
            x1 = x1.max(x + NODE_WIDTH);
            y1 = y1.max(y + NODE_HEIGHT);
        }
        #[allow(unused_mut)]
        let (mut w, mut h) = (800.0, 420.0);
        #[cfg(feature = "hydrate")]
        if let Some(svg) = svg_ref.get_untracked() {
            let r = svg.get_bounding_client_rect();
            (w, h) = (r.width(), r.height());
        }
        let zoom = ((w - 32.0) / (x1 - x0) as f64)
            .min((h - 32.0) / (y1 - y0) as f64)
            .clamp(0.2, 1.5);
        view_state.set(View {
            tx: 16.0 - x0 as f64 * zoom,
            ty: 16.0 - y0 as f64 * zoom,
            zoom,
        });
    };

    // Keyboard: undo, redo, delete, help.
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

    let nodes = move || {
        let p = current.get();
        let ps = places.get();
        let fault_tasks: Vec<String> = faults.with(|f| {
            f.iter()
                .filter_map(draft::fault_target)
                .filter(|(pl, _)| *pl == p.name)
                .filter_map(|(_, t)| t)
                .collect()
        });
        let dir = layout.with(|l| l.direction);
        p.tasks
            .iter()
            .map(|t| {
                let (x, y) = ps.get(&t.name).copied().unwrap_or_default();
                let name = t.name.clone();
                let steps = match t.steps {
                    1 => "1 step".to_string(),
                    n => format!("{n} steps"),
                };
                let runtime = t.image.clone().unwrap_or_else(|| "shell".into());
                let runtime = runtime.rsplit('/').next().unwrap_or(&runtime).to_string();
                let detail = format!("{steps} · {runtime}");
                let faulty = fault_tasks.contains(&t.name);
                let (n1, n2, n3, n4) = (name.clone(), name.clone(), name.clone(), name.clone());
                let is_selected = move || selected.get() == Selection::Task(n1.clone());
                let (hx, hy) = match dir {
                    Direction::LeftRight => (x + NODE_WIDTH, y + NODE_HEIGHT / 2),
                    Direction::TopDown => (x + NODE_WIDTH / 2, y + NODE_HEIGHT),
                };
                let shown = if name.chars().count() > 20 {
                    format!("{}…", name.chars().take(19).collect::<String>())
                } else {
                    name.clone()
                };
                view! {
                    <g
                        class=move || format!(
                            "node{}{}",
                            if is_selected() { " selected" } else { "" },
                            if faulty { " faulty" } else { "" },
                        )
                        data-task=name.clone()
                        tabindex="0"
                        role="button"
                        aria-label=format!("task {name}{}", if faulty { ", has faults" } else { "" })
                        on:pointerdown=move |ev: leptos::ev::PointerEvent| {
                            if ev.button() != 0 {
                                return;
                            }
                            ev.stop_propagation();
                            commit_focused_field();
                            let (px, py) = to_canvas(ev.client_x() as f64, ev.client_y() as f64);
                            selected.set(Selection::Task(n2.clone()));
                            drag.set_value(Drag::Node {
                                name: n2.clone(),
                                dx: px - x as f64,
                                dy: py - y as f64,
                                moved: false,
                            });
                            capture(ev.pointer_id());
                        }
                        on:dblclick=move |ev| {
                            ev.stop_propagation();
                            renaming.set(Some(n3.clone()));
                        }
                        on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                            if ev.key() == "Enter" {
                                selected.set(Selection::Task(n4.clone()));
                            } else if ev.key() == "F2" {
                                renaming.set(Some(n4.clone()));
                            }
                        }
                    >
                        <title>{name.clone()}</title>
                        <rect x=x y=y width=NODE_WIDTH height=NODE_HEIGHT rx="6" />
                        <text class="name" x=x + 10 y=y + 18>{shown}</text>
                        <text class="detail" x=x + 10 y=y + 35>{detail}</text>
                        {faulty.then(|| view! { <text class="badge" x=x + NODE_WIDTH - 16 y=y + 18>"!"</text> })}
                        <circle
                            class="handle"
                            data-handle=name.clone()
                            cx=hx
                            cy=hy
                            r="7"
                            on:pointerdown={
                                let from = name.clone();
                                move |ev: leptos::ev::PointerEvent| {
                                    ev.stop_propagation();
                                    let p = to_canvas(ev.client_x() as f64, ev.client_y() as f64);
                                    pointer.set(p);
                                    connecting.set(Some(from.clone()));
                                    drag.set_value(Drag::Connect { from: from.clone() });
                                    capture(ev.pointer_id());
                                }
                            }
                        >
                            <title>{format!("drag to a task that waits for {name}")}</title>
                        </circle>
                    </g>
                }
            })
            .collect_view()
    };
    let edges = move || {
        let p = current.get();
        let ps = places.get();
        let dir = layout.with(|l| l.direction);
        let mut out = Vec::new();
        for t in &p.tasks {
            for d in &t.depends_on {
                let (Some(&(fx, fy)), Some(&(tx, ty))) = (ps.get(d), ps.get(&t.name)) else {
                    continue;
                };
                let (sx, sy, ex, ey, c1, c2) = match dir {
                    Direction::LeftRight => {
                        let (sx, sy) = (fx + NODE_WIDTH, fy + NODE_HEIGHT / 2);
                        let (ex, ey) = (tx, ty + NODE_HEIGHT / 2);
                        let bend = ((ex - sx).abs() / 2).max(30);
                        (sx, sy, ex, ey, (sx + bend, sy), (ex - bend, ey))
                    }
                    Direction::TopDown => {
                        let (sx, sy) = (fx + NODE_WIDTH / 2, fy + NODE_HEIGHT);
                        let (ex, ey) = (tx + NODE_WIDTH / 2, ty);
                        let bend = ((ey - sy).abs() / 2).max(30);
                        (sx, sy, ex, ey, (sx, sy + bend), (ex, ey - bend))
                    }
                };
                let path = format!("M{sx} {sy} C{} {} {} {} {ex} {ey}", c1.0, c1.1, c2.0, c2.1);
                let (from, to) = (d.clone(), t.name.clone());
                let (f1, t1, f2, t2) = (from.clone(), to.clone(), from.clone(), to.clone());
                let is_selected = move || selected.get() == Selection::Edge(f1.clone(), t1.clone());
                let (mx, my) = ((sx + ex) / 2, (sy + ey) / 2);
                out.push(view! {
                    <g class=move || if is_selected() { "edge-group selected" } else { "edge-group" }
                        data-edge=format!("{from}->{to}")>
                        <path class="edge" d=path.clone() marker-end="url(#editor-arrow)" />
                        <path
                            class="edge-hit"
                            d=path
                            on:pointerdown=move |ev: leptos::ev::PointerEvent| {
                                ev.stop_propagation();
                                selected.set(Selection::Edge(f2.clone(), t2.clone()));
                            }
                        />
                        <g
                            class="insert"
                            role="button"
                            tabindex="0"
                            aria-label=format!("insert a task between {from} and {to}")
                            on:pointerdown=move |ev: leptos::ev::PointerEvent| ev.stop_propagation()
                            on:click={
                                let (from, to) = (from.clone(), to.clone());
                                move |_| {
                                    let p = current.get_untracked();
                                    let name = p.fresh_name("task");
                                    if gesture(Gesture::InsertBetween {
                                        pipeline: p.name.clone(),
                                        from: from.clone(),
                                        to: to.clone(),
                                        name: name.clone(),
                                    }) {
                                        selected.set(Selection::Task(name));
                                    }
                                }
                            }
                        >
                            <circle cx=mx cy=my r="9" />
                            <text x=mx y=my + 4>"+"</text>
                        </g>
                    </g>
                });
            }
        }
        out.collect_view()
    };
    let preview_line = move || {
        let from = connecting.get()?;
        let ps = places.get();
        let &(fx, fy) = ps.get(&from)?;
        let (px, py) = pointer.get();
        let (sx, sy) = match layout.with(|l| l.direction) {
            Direction::LeftRight => (fx + NODE_WIDTH, fy + NODE_HEIGHT / 2),
            Direction::TopDown => (fx + NODE_WIDTH / 2, fy + NODE_HEIGHT),
        };
        let refused = cycle_hint.get().is_some();
        Some(view! {
            <line class=if refused { "connecting refused" } else { "connecting" } x1=sx y1=sy x2=px y2=py />
        })
    };

    // The in-place rename box over a node.
    // Made once per rename (moving or zooming only moves it), focused and
    // selected when it appears, finished once: by Enter, Escape or leaving.
    let rename_ref = NodeRef::<leptos::html::Input>::new();
    let rename_done = StoredValue::new(false);
    Effect::new(move |_| {
        if let Some(input) = rename_ref.get() {
            let _ = input.focus();
            input.select();
        }
    });
    let rename_box = move || {
        let name = renaming.get()?;
        rename_done.set_value(false);
        let at = name.clone();
        let style = move || {
            let (x, y) = places.with(|p| p.get(&at).copied()).unwrap_or_default();
            let v = view_state.get();
            format!(
                "left: {}px; top: {}px; width: {}px",
                v.tx + x as f64 * v.zoom,
                v.ty + y as f64 * v.zoom,
                NODE_WIDTH as f64 * v.zoom
            )
        };
        let old = name.clone();
        let done = move |value: Option<String>| {
            if rename_done.get_value() {
                return;
            }
            rename_done.set_value(true);
            renaming.set(None);
            if let Some(value) = value.map(|v| v.trim().to_string())
                && value != old
            {
                gesture(Gesture::RenameTask {
                    pipeline: pipeline.get_untracked(),
                    from: old.clone(),
                    to: value,
                });
            }
        };
        let done_key = done.clone();
        Some(view! {
            <input
                class="rename"
                node_ref=rename_ref
                style=style
                aria-label=format!("new name for task {name}")
                value=name.clone()
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Enter" {
                        done_key(Some(event_target_value(&ev)));
                    } else if ev.key() == "Escape" {
                        done_key(None);
                    }
                }
                on:blur=move |ev| done(Some(event_target_value(&ev)))
            />
        })
    };

    let tabs = move || {
        let d = good.get();
        d.pipelines
            .iter()
            .map(|p| {
                let name = p.name.clone();
                let n1 = name.clone();
                let active = move || pipeline.get() == n1;
                let n2 = name.clone();
                view! {
                    <button
                        role="tab"
                        class="tab"
                        aria-selected=move || active().to_string()
                        on:click=move |_| {
                            pipeline.set(n2.clone());
                            selected.set(Selection::None);
                        }
                    >
                        {name.clone()}
                        <span class="muted">" · " {p.trigger.clone()}</span>
                    </button>
                }
            })
            .collect_view()
    };
    let add_pipeline = move |_| {
        let d = good.get_untracked();
        let name = (1..=d.pipelines.len() + 1)
            .map(|i| {
                if i == 1 {
                    "pipeline".to_string()
                } else {
                    format!("pipeline-{i}")
                }
            })
            .find(|n| d.pipeline(n).is_none())
            .unwrap_or_default();
        let op = Op::Set {
            path: vec![Seg::key("pipelines"), Seg::key(&name)],
            value: Yaml::Map(vec![
                ("trigger".into(), Yaml::str("manual")),
                ("tasks".into(), Yaml::Map(Vec::new())),
            ]),
        };
        match edit::apply(&text.get_untracked(), &op) {
            Ok(t) => {
                commit(t, layout.get_untracked());
                pipeline.set(name);
            }
            Err(e) => message.set(Some(e.0)),
        }
    };

    // The YAML view and its completion.
    let secrets_for_complete = StoredValue::new(secrets.clone());
    let refresh_completions = move |force: bool| {
        #[cfg(feature = "hydrate")]
        {
            let Some(ta) = yaml_ref.get_untracked() else {
                return;
            };
            let t = text.get_untracked();
            let caret = byte_of_utf16(&t, ta.selection_start().ok().flatten().unwrap_or(0));
            let at_word_end = t[caret..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == ']' || c == ',');
            let c = xene_core::complete::complete(
                &t,
                caret,
                &good.get_untracked(),
                &secrets_for_complete.get_value(),
            );
            let word = &t[c.start..caret];
            if at_word_end && (force || !word.is_empty()) && !c.items.is_empty() {
                completions.set((c.start, c.items, 0));
            } else {
                completions.set((0, Vec::new(), 0));
            }
        }
        let _ = (force, secrets_for_complete, yaml_ref);
    };
    let accept_completion = move |index: usize| {
        let (start, items, _) = completions.get_untracked();
        let Some(item) = items.get(index).cloned() else {
            return;
        };
        #[cfg(feature = "hydrate")]
        if let Some(ta) = yaml_ref.get_untracked() {
            let t = text.get_untracked();
            let caret = byte_of_utf16(&t, ta.selection_start().ok().flatten().unwrap_or(0));
            // The list may be older than the text (an undo): then it goes.
            if !(start <= caret && caret <= t.len() && t.is_char_boundary(start)) {
                completions.set((0, Vec::new(), 0));
                return;
            }
            let mut new = t.clone();
            new.replace_range(start..caret, &item);
            let at = utf16_of_byte(&new, start + item.len());
            commit(new, layout.get_untracked());
            // The value lands on the next frame; the caret after it.
            let ta2 = ta.clone();
            request_animation_frame(move || {
                let _ = ta2.set_selection_range(at, at);
                let _ = ta2.focus();
            });
        }
        let _ = (start, item);
        completions.set((0, Vec::new(), 0));
    };
    let on_yaml_input = move |ev: leptos::ev::Event| {
        let value = event_target_value(&ev);
        let now = js_now();
        let grouped = now - last_typing.get_value() < TYPING_GROUP_MS;
        if grouped {
            // Part of the same burst of typing: one undo step.
            redo.set(Vec::new());
            text.set(value);
        } else {
            commit(value, layout.get_untracked());
        }
        last_typing.set_value(now);
        refresh_completions(false);
    };
    let on_yaml_keydown = move |ev: leptos::ev::KeyboardEvent| {
        let open = completions.with_untracked(|c| !c.1.is_empty());
        let key = ev.key();
        if ev.ctrl_key() && key == " " {
            ev.prevent_default();
            refresh_completions(true);
            return;
        }
        if !open {
            return;
        }
        match key.as_str() {
            "ArrowDown" | "ArrowUp" => {
                ev.prevent_default();
                completions.update(|c| {
                    let n = c.1.len();
                    c.2 = if key == "ArrowDown" {
                        (c.2 + 1) % n
                    } else {
                        (c.2 + n - 1) % n
                    };
                });
            }
            "Enter" | "Tab" => {
                ev.prevent_default();
                let i = completions.with_untracked(|c| c.2);
                accept_completion(i);
            }
            "Escape" => {
                ev.prevent_default();
                ev.stop_propagation();
                completions.set((0, Vec::new(), 0));
            }
            "ArrowLeft" | "ArrowRight" | "Home" | "End" | "PageUp" | "PageDown" => {
                completions.set((0, Vec::new(), 0));
            }
            _ => {}
        }
    };
    let jump_to = move |d: Diagnostic| {
        if let Some((p, task)) = draft::fault_target(&d) {
            if good.with_untracked(|g| g.pipeline(&p).is_some()) {
                pipeline.set(p);
            }
            if let Some(t) = task {
                selected.set(Selection::Task(t));
            }
        }
        #[cfg(feature = "hydrate")]
        if let (Some(line), Some(ta)) = (d.line, yaml_ref.get_untracked()) {
            let t = text.get_untracked();
            let start: usize = t
                .split_inclusive('\n')
                .take(line.saturating_sub(1))
                .map(str::len)
                .sum();
            let start = start.min(t.len());
            let end = start + t[start..].find('\n').unwrap_or(t.len() - start);
            let _ = ta.focus();
            let _ = ta.set_selection_range(utf16_of_byte(&t, start), utf16_of_byte(&t, end));
        }
        let _ = d;
    };

    // Saving.
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
            let current =
                api::get::<VersionText>(format!("/api/v1/workflows/{}", enc(&name))).await;
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
                let answer = api::send(
                    "POST",
                    format!("/api/v1/workflows?base={b}"),
                    Some(body.clone()),
                )
                .await;
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
                    let current: VersionText =
                        api::get(format!("/api/v1/workflows/{}", enc(&name))).await?;
                    return Ok(Err(current));
                }
                Err(e) => return Err(e),
            };
            // The version is stored: a layout that fails to store is a
            // warning, not a failed save.
            let placed = api::send(
                "PUT",
                format!(
                    "/api/v1/workflows/{}/versions/{}/layout",
                    enc(&saved.name),
                    saved.version
                ),
                Some(serde_json::to_string(&l).expect("layouts serialize")),
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
                            Some(&format!("/workflows/{}/edit", enc(&saved.name))),
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
        async move {
            let t = api::send(
                "POST",
                format!(
                    "/api/v1/workflows/{}/pipelines/{}/runs",
                    enc(&name),
                    enc(&p)
                ),
                Some("{}".into()),
            )
            .await?;
            serde_json::from_str::<api::Run>(&t).map_err(|e| e.to_string())
        }
    });
    let navigate_run = navigate.clone();
    Effect::new(move |_| match run.value().get() {
        Some(Ok(r)) => navigate_run(&format!("/runs/{}", r.id), Default::default()),
        Some(Err(e)) => message.set(Some(e)),
        None => {}
    });
    // The panel is rebuilt when the selection changes, not on every edit
    // (a rebuild would take the focus from the field being filled).
    let selected_exists = Memo::new(move |_| match selected.get() {
        Selection::Task(t) => current.with(|p| p.task(&t).is_some()),
        _ => false,
    });
    let dirty = move || {
        text.with(|t| base_source.with(|b| t != b))
            || layout.with(|l| saved_layout.with(|s| l != s))
            || base.get() == 0
    };
    let blocked = move || {
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
    };

    let secrets_panel = secrets.clone();
    view! {
                <div class="editor">
        {view! {
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
                            <button id="undo" on:click=move |_| step_history(true) disabled=move || undo.with(Vec::is_empty) title="Undo (Ctrl+Z)">"Undo"</button>
                            <button id="redo" on:click=move |_| step_history(false) disabled=move || redo.with(Vec::is_empty) title="Redo (Ctrl+Shift+Z)">"Redo"</button>
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
        }.into_any()}
                    {move || notice.get().map(|n| view! { <p class="notice" role="status">{n}</p> })}
                    {move || message.get().map(|m| view! { <p class="error" role="alert">{m}</p> })}
                    <div class="editor-grid">
        {view! {
                        <section class="canvas-pane card" aria-label="Canvas">
                            <div class="tabs">
    <div class="tablist" role="tablist" aria-label="Pipelines">{tabs}</div>
    <button class="tab add" on:click=add_pipeline title="Add a pipeline">"+ pipeline"</button>
                            </div>
                            <div class="toolbar">
                                <button id="add-task" on:click=move |_| add_task_at(None)>"Add task"</button>
                                <button
                                    id="direction"
                                    on:click=move |_| {
                                        let mut l = layout.get_untracked();
                                        l.direction = match l.direction {
                                            Direction::LeftRight => Direction::TopDown,
                                            Direction::TopDown => Direction::LeftRight,
                                        };
                                        commit(text.get_untracked(), l);
                                    }
                                    aria-label="Switch between top-down and left-right"
                                >
                                    {move || match layout.with(|l| l.direction) {
                                        Direction::LeftRight => "Left to right",
                                        Direction::TopDown => "Top down",
                                    }}
                                </button>
                                <button
                                    id="auto-layout"
                                    on:click=move |_| {
                                        let mut l = layout.get_untracked();
                                        l.positions.remove(&pipeline.get_untracked());
                                        commit(text.get_untracked(), l);
                                    }
                                    title="Forget where nodes were dragged"
                                >
                                    "Auto layout"
                                </button>
                                <button on:click=move |_| zoom_by(1.2) aria-label="Zoom in">"+"</button>
                                <button on:click=move |_| zoom_by(1.0 / 1.2) aria-label="Zoom out">"−"</button>
                                <button id="fit" on:click=move |_| fit()>"Fit"</button>
                                <span id="drag-hint" class="hint" role="status">{move || cycle_hint.get()}</span>
                            </div>
                            <div class="canvas-wrap">
                                <svg
                                    node_ref=svg_ref
                                    class="canvas"
                                    role="group"
                                    aria-label=move || format!("The tasks of pipeline {}", pipeline.get())
                                    on:pointerdown=on_pointerdown_bg
                                    on:pointermove=on_pointermove
                                    on:pointerup=on_pointerup
                                    on:dblclick=move |ev: leptos::ev::MouseEvent| {
                                        let (x, y) = to_canvas(ev.client_x() as f64, ev.client_y() as f64);
                                        add_task_at(Some((x as i32 - NODE_WIDTH / 2, y as i32 - NODE_HEIGHT / 2)));
                                    }
                                    on:wheel=move |ev: leptos::ev::WheelEvent| {
                                        if ev.ctrl_key() || ev.meta_key() {
                                            ev.prevent_default();
                                            zoom_by(if ev.delta_y() < 0.0 { 1.1 } else { 1.0 / 1.1 });
                                        }
                                    }
                                >
                                    <defs>
                                        <marker id="editor-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                                            <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" />
                                        </marker>
                                    </defs>
                                    <g transform=move || {
                                        let v = view_state.get();
                                        format!("translate({} {}) scale({})", v.tx, v.ty, v.zoom)
                                    }>
                                        {edges}
                                        {nodes}
                                        {preview_line}
                                    </g>
                                </svg>
                                {rename_box}
                                <Show when=move || current.with(|p| p.tasks.is_empty())>
                                    <p class="canvas-empty">"No tasks yet: press Add task, or double-click the canvas."</p>
                                </Show>
                            </div>
                        </section>
        }.into_any()}
                        <aside class="panel card" aria-label="Properties">
                            {move || match selected.get() {
                                Selection::Task(t) if selected_exists.get() => view! {
                                    <TaskPanel
                                        pipeline=pipeline.get()
                                        task=t
                                        tree=good_tree
                                        draft=current
                                        secrets=secrets_panel.clone()
                                        on_gesture=Callback::new(move |g| { gesture(g); })
                                        on_op=Callback::new(move |op: Op| {
                                            match edit::apply(&text.get_untracked(), &op) {
                                                Ok(t) => commit(t, layout.get_untracked()),
                                                Err(e) => message.set(Some(e.0)),
                                            }
                                        })
                                        faults
                                    />
                                }.into_any(),
                                Selection::Edge(from, to) => view! {
                                    <h2>"Dependency"</h2>
                                    <p><code>{to.clone()}</code>" waits for "<code>{from.clone()}</code>"."</p>
                                    <button on:click=move |_| remove_selected()>"Remove it"</button>
                                }.into_any(),
                                _ => view! {
                                    <PipelinePanel
                                        pipeline=pipeline.get()
                                        tree=good_tree
                                        on_gesture=Callback::new(move |g| { gesture(g); })
                                        on_op=Callback::new(move |op: Op| {
                                            match edit::apply(&text.get_untracked(), &op) {
                                                Ok(t) => commit(t, layout.get_untracked()),
                                                Err(e) => message.set(Some(e.0)),
                                            }
                                        })
                                    />
                                }.into_any(),
                            }}
                        </aside>
        {view! {
                        <section class="yaml-pane card" aria-label="YAML">
                            <h2><label for="editor-yaml">"YAML"</label></h2>
                            <div class="yaml-wrap">
                                <textarea
                                    id="editor-yaml"
                                    class="yaml mono"
                                    node_ref=yaml_ref
                                    spellcheck="false"
                                    autocomplete="off"
                                    aria-autocomplete="list"
                                    aria-controls=move || completions.with(|c| (!c.1.is_empty()).then_some("editor-completions"))
                                    prop:value=move || text.get()
                                    on:input=on_yaml_input
                                    on:keydown=on_yaml_keydown
                                    on:blur=move |_| completions.set((0, Vec::new(), 0))
                                ></textarea>
                                <Show when=move || completions.with(|c| !c.1.is_empty())>
                                    <ul id="editor-completions" class="completions" role="listbox" aria-label="Completions">
                                        {move || {
                                            let (_, items, active) = completions.get();
                                            items
                                                .into_iter()
                                                .enumerate()
                                                .map(|(i, item)| view! {
                                                    <li
                                                        role="option"
                                                        aria-selected=(i == active).to_string()
                                                        on:mousedown=move |ev| {
                                                            ev.prevent_default();
                                                            accept_completion(i);
                                                        }
                                                    >
                                                        {item}
                                                    </li>
                                                })
                                                .collect_view()
                                        }}
                                    </ul>
                                </Show>
                            </div>
                            {move || yaml_fault.get().map(|f| view! { <p class="error yaml-fault" role="alert">{f}" (the canvas shows the last YAML that parsed)"</p> })}
                            <Show when=move || yaml_fault.with(Option::is_none) && faults.with(|f| !f.is_empty())>
                                <div class="faults">
                                    <h3>"Faults"</h3>
                                    <ul>
                                        {move || faults.get().into_iter().map(|d| {
                                            let shown = d.to_string();
                                            view! {
                                                <li><button class="link" on:click=move |_| jump_to(d.clone())>{shown}</button></li>
                                            }
                                        }).collect_view()}
                                    </ul>
                                </div>
                            </Show>
                        </section>
        }.into_any()}
                    </div>
                    {move || match dialog.get() {
                        Dialog::Closed => None,
                        Dialog::Help => Some(view! {
                            <div class="dialog card" role="dialog" aria-modal="true" aria-labelledby="help-title">
                                <h2 id="help-title">"Keyboard shortcuts"</h2>
                                <dl class="shortcuts">
                                    <dt><kbd>"Ctrl+Z"</kbd></dt><dd>"undo, on the canvas and in the YAML"</dd>
                                    <dt><kbd>"Ctrl+Shift+Z"</kbd>" or "<kbd>"Ctrl+Y"</kbd></dt><dd>"redo"</dd>
                                    <dt><kbd>"Delete"</kbd></dt><dd>"remove the selected task or dependency"</dd>
                                    <dt><kbd>"Enter"</kbd></dt><dd>"select the focused task"</dd>
                                    <dt><kbd>"F2"</kbd>" or double-click"</dt><dd>"rename the focused task"</dd>
                                    <dt>"double-click the canvas"</dt><dd>"add a task there"</dd>
                                    <dt>"drag from a task's dot"</dt><dd>"make another task wait for it"</dd>
                                    <dt><kbd>"Ctrl+Space"</kbd></dt><dd>"complete in the YAML"</dd>
                                    <dt><kbd>"Ctrl"</kbd>" + wheel"</dt><dd>"zoom"</dd>
                                    <dt><kbd>"?"</kbd></dt><dd>"this list"</dd>
                                    <dt><kbd>"Escape"</kbd></dt><dd>"close, deselect"</dd>
                                </dl>
                                <button on:click=move |_| dialog.set(Dialog::Closed)>"Close"</button>
                            </div>
                        }.into_any()),
                        Dialog::Review { current } => {
                            let diff = crate::ui::diff_lines(&current, &text.get_untracked(), "Changes to save".into());
                            Some(view! {
                                <div class="dialog card" role="dialog" aria-modal="true" aria-labelledby="review-title">
                                    <h2 id="review-title">{if current.is_empty() { "Save the new workflow".to_string() } else { format!("Changes against version {}", base.get_untracked()) }}</h2>
                                    {diff}
                                    <div class="actions">
                                        <button class="primary confirm-save" on:click=move |_| { save.dispatch(()); } disabled=move || save.pending().get()>"Save version"</button>
                                        <button on:click=move |_| dialog.set(Dialog::Closed)>"Keep editing"</button>
                                    </div>
                                </div>
                            }.into_any())
                        }
                        Dialog::Conflict { version, source } => {
                            let theirs = source.clone();
                            let theirs_reload = source.clone();
                            Some(view! {
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
                                            dialog.set(Dialog::Closed);
                                            notice.set(Some(format!("Reloaded version {version}; Undo brings your edit back.")));
                                        }>"Reload theirs"</button>
                                        <button on:click=move |_| dialog.set(Dialog::Closed)>"Cancel"</button>
                                    </div>
                                </div>
                            }.into_any())
                        }
                    }}
                </div>
            }
}

fn js_now() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}

/// The params a task's templates and conditions read.
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

fn collect_params(value: &Yaml, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Yaml::Scalar(text, _) => {
            if let Ok(refs) = xene_core::template::references(text) {
                for r in refs {
                    if let xene_core::template::Reference::Param(p) = r {
                        out.insert(p);
                    }
                }
            }
            // Conditions name params without braces.
            for word in
                text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                if let Some(p) = word.strip_prefix("params.")
                    && !p.is_empty()
                {
                    out.insert(p.to_string());
                }
            }
        }
        Yaml::Seq(items) => items.iter().for_each(|i| collect_params(i, out)),
        Yaml::Map(entries) => entries.iter().for_each(|(_, v)| collect_params(v, out)),
    }
}

/// `KEY=VALUE` lines of a mapping of strings.
fn map_lines(value: Option<&Yaml>) -> String {
    value
        .and_then(Yaml::as_map)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A mapping from `KEY=VALUE` lines; `None` when empty.
fn lines_map(text: &str) -> Option<Yaml> {
    let entries: Vec<(String, Yaml)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Yaml::str(v)),
            None => (l.trim().to_string(), Yaml::str("")),
        })
        .collect();
    (!entries.is_empty()).then_some(Yaml::Map(entries))
}

fn text_of(tree: Option<&Yaml>) -> String {
    tree.and_then(Yaml::as_str).unwrap_or_default().to_string()
}

/// A text field that edits one value when it changes (on blur or Enter).
#[component]
fn Field(
    #[prop(into)] id: String,
    #[prop(into)] label: String,
    #[prop(into)] value: Signal<String>,
    on_change: Callback<String>,
    #[prop(optional, into)] placeholder: String,
    #[prop(optional)] multiline: bool,
    #[prop(optional, into)] hint: String,
) -> impl IntoView {
    let input = if multiline {
        view! {
            <textarea id=id.clone() class="mono" spellcheck="false" placeholder=placeholder
                prop:value=move || value.get()
                on:change=move |ev| on_change.run(event_target_value(&ev))
            ></textarea>
        }
        .into_any()
    } else {
        view! {
            <input id=id.clone() placeholder=placeholder
                prop:value=move || value.get()
                on:change=move |ev| on_change.run(event_target_value(&ev))
            />
        }
        .into_any()
    };
    view! {
        <div class="field">
            <label for=id>{label}</label>
            {input}
            {(!hint.is_empty()).then(|| view! { <span class="hint">{hint}</span> })}
        </div>
    }
}

/// Every field of one task.
#[component]
fn TaskPanel(
    pipeline: String,
    task: String,
    tree: RwSignal<Option<Yaml>>,
    draft: Memo<PipelineDraft>,
    secrets: Vec<String>,
    on_gesture: Callback<Gesture>,
    on_op: Callback<Op>,
    faults: Memo<Vec<Diagnostic>>,
) -> impl IntoView {
    let path = draft::task_path(&pipeline, &task, None);
    // This task's faults, where its fields are.
    let mine = {
        let (pipeline, task) = (pipeline.clone(), task.clone());
        move || {
            faults.with(|f| {
                f.iter()
                    .filter(|d| {
                        draft::fault_target(d).is_some_and(|(p, t)| {
                            p == pipeline && t.as_deref() == Some(task.as_str())
                        })
                    })
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
            })
        }
    };
    // The params its templates read.
    let params_used = {
        let path = path.clone();
        move || {
            let mut used = std::collections::BTreeSet::new();
            tree.with(|t| {
                if let Some(task) = t.as_ref().and_then(|t| t.get(&path)) {
                    collect_params(task, &mut used);
                }
            });
            used.into_iter().collect::<Vec<_>>().join(", ")
        }
    };
    let field = {
        let path = path.clone();
        move |name: &'static str| {
            let mut p = path.clone();
            p.push(Seg::key(name));
            Signal::derive(move || tree.with(|t| t.as_ref().and_then(|t| t.get(&p).cloned())))
        }
    };
    let set = {
        let (pipeline, task) = (pipeline.clone(), task.clone());
        move |name: &'static str, value: Option<Yaml>| {
            on_gesture.run(Gesture::SetTaskField {
                pipeline: pipeline.clone(),
                task: task.clone(),
                field: name.into(),
                value,
            })
        }
    };
    let scalar_field = {
        let set = set.clone();
        move |name: &'static str| {
            let set = set.clone();
            Callback::new(move |v: String| {
                set(name, (!v.trim().is_empty()).then(|| Yaml::str(v.trim())))
            })
        }
    };
    let image = field("image");
    let cond = field("if");
    let timeout = field("timeout");
    let retries = field("retries");
    let env = field("env");
    let secrets_now = field("secrets");
    let id = |f: &str| format!("task-{f}");
    let rename = {
        let (pipeline, task) = (pipeline.clone(), task.clone());
        Callback::new(move |to: String| {
            on_gesture.run(Gesture::RenameTask {
                pipeline: pipeline.clone(),
                from: task.clone(),
                to: to.trim().to_string(),
            })
        })
    };
    let name_value = Signal::derive({
        let task = task.clone();
        move || task.clone()
    });
    let set_retries = {
        let set = set.clone();
        move |count: Option<String>, backoff: Option<String>| {
            let now = retries.get_untracked();
            let count = count
                .unwrap_or_else(|| text_of(now.as_ref().and_then(|r| r.get(&[Seg::key("count")]))));
            let backoff = backoff.unwrap_or_else(|| {
                text_of(now.as_ref().and_then(|r| r.get(&[Seg::key("backoff")])))
            });
            let mut entries = Vec::new();
            if let Ok(n) = count.trim().parse::<i64>() {
                entries.push(("count".to_string(), Yaml::int(n)));
            }
            if !backoff.trim().is_empty() {
                entries.push(("backoff".to_string(), Yaml::str(backoff.trim())));
            }
            set(
                "retries",
                (!entries.is_empty()).then_some(Yaml::Map(entries)),
            )
        }
    };
    let set_retries2 = set_retries.clone();
    // Dependencies as checkboxes: the keyboard's way to draw edges.
    let deps = {
        let (pipeline, task) = (pipeline.clone(), task.clone());
        move || {
            let p = draft.get();
            let mine = p
                .task(&task)
                .map(|t| t.depends_on.clone())
                .unwrap_or_default();
            p.tasks
                .iter()
                .filter(|t| t.name != task)
                .map(|t| {
                    let other = t.name.clone();
                    let checked = mine.contains(&other);
                    let (pl, me, o) = (pipeline.clone(), task.clone(), other.clone());
                    view! {
                        <label class="check">
                            <input type="checkbox" checked=checked on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                on_gesture.run(if on {
                                    Gesture::Connect { pipeline: pl.clone(), from: o.clone(), to: me.clone() }
                                } else {
                                    Gesture::Disconnect { pipeline: pl.clone(), from: o.clone(), to: me.clone() }
                                });
                            } />
                            {other}
                        </label>
                    }
                })
                .collect_view()
        }
    };
    let secret_boxes = {
        let set = set.clone();
        move || {
            let named: Vec<String> = match secrets_now.get() {
                Some(Yaml::Seq(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            };
            let mut all = secrets.clone();
            all.extend(named.iter().cloned());
            all.sort();
            all.dedup();
            if all.is_empty() {
                return view! { <p class="muted">"No secrets in the store yet."</p> }.into_any();
            }
            all.into_iter()
                .map(|s| {
                    let checked = named.contains(&s);
                    let (named, s2, set) = (named.clone(), s.clone(), set.clone());
                    view! {
                        <label class="check">
                            <input type="checkbox" checked=checked on:change=move |ev| {
                                let mut list = named.clone();
                                if event_target_checked(&ev) {
                                    list.push(s2.clone());
                                } else {
                                    list.retain(|x| *x != s2);
                                }
                                set("secrets", (!list.is_empty()).then(|| Yaml::strs(&list)));
                            } />
                            <code>{s}</code>
                        </label>
                    }
                })
                .collect_view()
                .into_any()
        }
    };
    let set_env = set.clone();
    view! {
        <h2>"Task " <code>{task.clone()}</code></h2>
        {move || {
            let m = mine();
            (!m.is_empty()).then(|| view! {
                <ul class="task-faults error" role="alert">
                    {m.into_iter().map(|f| view! { <li>{f}</li> }).collect_view()}
                </ul>
            })
        }}
        <p class="muted params-used">"Params used: " {move || {
            let p = params_used();
            if p.is_empty() { "none".to_string() } else { p }
        }}</p>
        <Field id=id("name") label="Name" value=name_value on_change=rename />
        <Field id=id("image") label="Image" value=Signal::derive(move || text_of(image.get().as_ref()))
            on_change=scalar_field("image") placeholder="none: steps run as processes on the agent" />
        <fieldset>
            <legend>"Waits for"</legend>
            {deps}
        </fieldset>
        <Field id=id("if") label="Runs if" value=Signal::derive(move || text_of(cond.get().as_ref()))
            on_change=scalar_field("if") placeholder="tasks.build.status == 'success'" />
        <Field id=id("timeout") label="Timeout" value=Signal::derive(move || text_of(timeout.get().as_ref()))
            on_change=scalar_field("timeout") placeholder="10m" />
        <div class="row">
            <Field id=id("retries") label="Retries" value=Signal::derive(move || text_of(retries.get().as_ref().and_then(|r| r.get(&[Seg::key("count")]))))
                on_change=Callback::new(move |v| set_retries(Some(v), None)) placeholder="0" />
            <Field id=id("backoff") label="Backoff" value=Signal::derive(move || text_of(retries.get().as_ref().and_then(|r| r.get(&[Seg::key("backoff")]))))
                on_change=Callback::new(move |v| set_retries2(None, Some(v))) placeholder="10s" />
        </div>
        <Field id=id("env") label="Environment" multiline=true hint="KEY=VALUE, one per line"
            value=Signal::derive(move || map_lines(env.get().as_ref()))
            on_change=Callback::new(move |v: String| set_env("env", lines_map(&v))) />
        <fieldset>
            <legend>"Secrets"</legend>
            {secret_boxes}
        </fieldset>
        <Steps list="steps" title="Steps" path=draft::task_path(&pipeline, &task, Some("steps")) field=field("steps") set=set.clone() on_op />
        <Steps list="post" title="Post steps (always run)" path=draft::task_path(&pipeline, &task, Some("post")) field=field("post") set=set.clone() on_op />
    }
}

/// A task's `steps` or `post`: each step's name and script.
#[component]
fn Steps<F>(
    list: &'static str,
    title: &'static str,
    /// The list's own path, for edits of one step's field.
    path: Vec<Seg>,
    field: Signal<Option<Yaml>>,
    set: F,
    on_op: Callback<Op>,
) -> impl IntoView
where
    F: Fn(&'static str, Option<Yaml>) + Clone + Send + Sync + 'static,
{
    let steps = move || match field.get() {
        Some(Yaml::Seq(items)) => items,
        _ => Vec::new(),
    };
    let count = Memo::new(move |_| steps().len());
    let write = {
        let set = set.clone();
        move |items: Vec<Yaml>| set(list, (!items.is_empty()).then_some(Yaml::Seq(items)))
    };
    let rows = {
        let write = write.clone();
        move || {
            (0..count.get())
                .map(|i| {
                    let get = move |key: &'static str| {
                        Signal::derive(move || {
                            let s = steps();
                            match s.get(i) {
                                // A step written as a plain string is its script.
                                Some(Yaml::Scalar(t, _)) if key == "run" => t.clone(),
                                st => text_of(st.and_then(|st| st.get(&[Seg::key(key)]))),
                            }
                        })
                    };
                    let update = {
                        let write = write.clone();
                        let path = path.clone();
                        move |key: &'static str, value: String| {
                            let mut items = steps();
                            let mut at = path.clone();
                            at.push(Seg::Index(i));
                            at.push(Seg::key(key));
                            match items.get(i) {
                                // One field of one step: only its lines change.
                                Some(Yaml::Map(_)) if value.is_empty() && key == "name" => {
                                    on_op.run(Op::Remove { path: at });
                                    return;
                                }
                                Some(Yaml::Map(_)) => {
                                    on_op.run(Op::Set { path: at, value: Yaml::str(value) });
                                    return;
                                }
                                Some(Yaml::Scalar(..)) => {
                                    items[i] = Yaml::Map(vec![("run".into(), Yaml::str(""))]);
                                }
                                _ => return,
                            }
                            let Some(Yaml::Map(entries)) = items.get_mut(i) else {
                                return;
                            };
                            match (entries.iter().position(|(k, _)| k == key), value.is_empty() && key == "name") {
                                (Some(p), true) => {
                                    entries.remove(p);
                                }
                                (Some(p), false) => entries[p].1 = Yaml::str(value),
                                (None, true) => {}
                                (None, false) => entries.insert(0, (key.to_string(), Yaml::str(value))),
                            }
                            write(items);
                        }
                    };
                    let (u1, u2) = (update.clone(), update);
                    let remove = {
                        let write = write.clone();
                        move |_| {
                            let mut items = steps();
                            if i < items.len() {
                                items.remove(i);
                            }
                            write(items);
                        }
                    };
                    view! {
                        <div class="step">
                            <Field id=format!("{list}-{i}-name") label=format!("Step {} name", i + 1) value=get("name")
                                on_change=Callback::new(move |v: String| u1("name", v.trim().to_string())) placeholder="optional" />
                            <Field id=format!("{list}-{i}-run") label="Script" multiline=true value=get("run")
                                on_change=Callback::new(move |v: String| {
                                    let v = if v.contains('\n') && !v.ends_with('\n') { format!("{v}\n") } else { v };
                                    u2("run", v)
                                }) />
                            <button class="remove-step" on:click=remove>"Remove step " {i + 1}</button>
                        </div>
                    }
                })
                .collect_view()
        }
    };
    let add = move |_| {
        let mut items = steps();
        items.push(Yaml::Map(vec![("run".into(), Yaml::str("echo hello"))]));
        write(items);
    };
    view! {
        <fieldset class="steps">
            <legend>{title}</legend>
            {rows}
            <button class="add-step" on:click=add>"Add a step"</button>
        </fieldset>
    }
}

/// The pipeline's own fields, and the workflow's name.
#[component]
fn PipelinePanel(
    pipeline: String,
    tree: RwSignal<Option<Yaml>>,
    on_gesture: Callback<Gesture>,
    on_op: Callback<Op>,
) -> impl IntoView {
    let at = {
        let pipeline = pipeline.clone();
        move |field: &'static str| {
            let path = draft::pipeline_path(&pipeline, field);
            Signal::derive(move || tree.with(|t| t.as_ref().and_then(|t| t.get(&path).cloned())))
        }
    };
    let set = {
        let pipeline = pipeline.clone();
        move |field: &'static str, value: Option<Yaml>| {
            on_gesture.run(Gesture::SetPipelineField {
                pipeline: pipeline.clone(),
                field: field.into(),
                value,
            })
        }
    };
    let trigger = at("trigger");
    let kind = Signal::derive(move || match trigger.get() {
        Some(Yaml::Map(_)) => "cron".to_string(),
        Some(t) => t.as_str().unwrap_or("manual").to_string(),
        None => "manual".to_string(),
    });
    let cron_field = move |key: &'static str| {
        Signal::derive(move || {
            text_of(trigger.get().as_ref().and_then(|t| t.get(&[Seg::key(key)])))
        })
    };
    let schedule = cron_field("cron");
    let zone = cron_field("timezone");
    let set_trigger = set.clone();
    let set_cron = {
        let set = set.clone();
        move |key: &'static str, value: String| {
            let mut entries: Vec<(String, Yaml)> = trigger
                .get_untracked()
                .and_then(|t| t.as_map().map(<[_]>::to_vec))
                .unwrap_or_default();
            entries.retain(|(k, _)| k != key);
            if !value.trim().is_empty() {
                let v = (key.to_string(), Yaml::str(value.trim()));
                if key == "cron" {
                    entries.insert(0, v);
                } else {
                    entries.push(v);
                }
            }
            set("trigger", Some(Yaml::Map(entries)))
        }
    };
    let set_cron2 = set_cron.clone();
    let fires = Resource::new(
        move || (schedule.get(), zone.get()),
        |(line, zone)| async move {
            if line.is_empty() {
                return Ok(Vec::new());
            }
            let mut path = format!("/api/v1/cron/next?schedule={}", enc(&line));
            if !zone.is_empty() {
                path.push_str(&format!("&timezone={}", enc(&zone)));
            }
            #[derive(Deserialize)]
            struct Fires {
                fires: Vec<i64>,
            }
            api::get::<Fires>(path).await.map(|f| f.fires)
        },
    );
    let env = at("env");
    let selector = at("selector");
    let concurrency = at("concurrency");
    let params = at("params");
    let (set_env, set_sel, set_conc) = (set.clone(), set.clone(), set.clone());
    let name_path = vec![Seg::key("name")];
    let workflow_name =
        Signal::derive(move || tree.with(|t| text_of(t.as_ref().and_then(|t| t.get(&name_path)))));
    let param_rows = {
        let set = set.clone();
        move || {
            let entries: Vec<(String, Yaml)> = params
                .get()
                .and_then(|p| p.as_map().map(<[_]>::to_vec))
                .unwrap_or_default();
            entries
                .iter()
                .enumerate()
                .map(|(i, (name, value))| {
                    let typed = value.as_map().is_some();
                    let kind = if typed {
                        text_of(value.get(&[Seg::key("type")]))
                    } else {
                        "string".into()
                    };
                    let default = if typed {
                        text_of(value.get(&[Seg::key("default")]))
                    } else {
                        text_of(Some(value))
                    };
                    let required = value
                        .get(&[Seg::key("required")])
                        .and_then(Yaml::as_str)
                        .is_some_and(|r| r == "true");
                    let write = {
                        let (entries, set, name) = (entries.clone(), set.clone(), name.clone());
                        move |kind: String, default: String, required: bool| {
                            let mut entries = entries.clone();
                            let mut fields = vec![("type".to_string(), Yaml::str(kind))];
                            if !default.is_empty() {
                                fields.push(("default".into(), Yaml::str(default)));
                            }
                            if required {
                                fields.push(("required".into(), Yaml::Scalar("true".into(), xene_core::yaml::ScalarKind::Bool)));
                            }
                            entries[i] = (name.clone(), Yaml::Map(fields));
                            set("params", Some(Yaml::Map(entries)));
                        }
                    };
                    let (w1, w2, w3) = (write.clone(), write.clone(), write);
                    let (k1, k2, d1, d2) = (kind.clone(), kind.clone(), default.clone(), default.clone());
                    let remove = {
                        let (entries, set) = (entries.clone(), set.clone());
                        move |_| {
                            let mut entries = entries.clone();
                            entries.remove(i);
                            set("params", (!entries.is_empty()).then_some(Yaml::Map(entries)));
                        }
                    };
                    view! {
                        <div class="param row">
                            <code>{name.clone()}</code>
                            <label class="visually-hidden" for=format!("param-type-{i}")>{format!("type of {name}")}</label>
                            <select id=format!("param-type-{i}") on:change=move |ev| w1(event_target_value(&ev), d1.clone(), required)>
                                {["string", "number", "boolean", "choice"].into_iter().map(|t| view! {
                                    <option value=t selected=t == kind>{t}</option>
                                }).collect_view()}
                            </select>
                            <label class="visually-hidden" for=format!("param-default-{i}")>{format!("default of {name}")}</label>
                            <input id=format!("param-default-{i}") placeholder="default" value=default.clone()
                                on:change=move |ev| w2(k1.clone(), event_target_value(&ev), required) />
                            <label class="check">
                                <input type="checkbox" checked=required on:change=move |ev| w3(k2.clone(), d2.clone(), event_target_checked(&ev)) />
                                "required"
                            </label>
                            <button on:click=remove aria-label=format!("remove param {name}")>"×"</button>
                        </div>
                    }
                })
                .collect_view()
        }
    };
    let new_param = NodeRef::<leptos::html::Input>::new();
    let add_param = {
        let set = set.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            #[cfg(feature = "hydrate")]
            {
                let Some(input) = new_param.get_untracked() else {
                    return;
                };
                let name = input.value().trim().to_string();
                if name.is_empty() {
                    return;
                }
                let mut entries: Vec<(String, Yaml)> = params
                    .get_untracked()
                    .and_then(|p| p.as_map().map(<[_]>::to_vec))
                    .unwrap_or_default();
                if entries.iter().any(|(n, _)| *n == name) {
                    return;
                }
                entries.push((name, Yaml::Map(vec![("type".into(), Yaml::str("string"))])));
                set("params", Some(Yaml::Map(entries)));
                input.set_value("");
            }
            let _ = (&set, new_param);
        }
    };
    let rename_workflow = Callback::new(move |v: String| {
        on_op.run(Op::Set {
            path: vec![Seg::key("name")],
            value: Yaml::str(v.trim()),
        })
    });
    view! {
        <h2>"Pipeline " <code>{pipeline.clone()}</code></h2>
        <Field id="workflow-name" label="Workflow name" value=workflow_name on_change=rename_workflow />
        <div class="field">
            <label for="pipeline-trigger">"Trigger"</label>
            <select id="pipeline-trigger" on:change=move |ev| {
                let v = event_target_value(&ev);
                set_trigger("trigger", Some(if v == "cron" {
                    Yaml::Map(vec![("cron".into(), Yaml::str("0 * * * *"))])
                } else {
                    Yaml::str(v)
                }));
            }>
                {["manual", "webhook", "cron"].into_iter().map(|t| view! {
                    <option value=t selected=move || kind.get() == t>{t}</option>
                }).collect_view()}
            </select>
        </div>
        <Show when=move || kind.get() == "cron">
            <div class="row">
                <Field id="pipeline-cron" label="Cron line" value=schedule
                    on_change=Callback::new({ let s = set_cron.clone(); move |v| s("cron", v) }) placeholder="0 3 * * *" />
                <Field id="pipeline-timezone" label="Time zone" value=zone
                    on_change=Callback::new({ let s = set_cron2.clone(); move |v| s("timezone", v) }) placeholder="UTC" />
            </div>
            <div class="next-fires" aria-live="polite">
                <Transition>
                    {move || fires.get().map(|r| match r {
                        Ok(list) if !list.is_empty() => view! {
                            <p>"Next fires: " {list.into_iter().map(|ms| view! { <Time ms /> " " }).collect_view()}</p>
                        }.into_any(),
                        Ok(_) => ().into_any(),
                        Err(e) => view! { <p class="error">{e}</p> }.into_any(),
                    })}
                </Transition>
            </div>
        </Show>
        <Field id="pipeline-selector" label="Agent selector" multiline=true hint="label=value, one per line"
            value=Signal::derive(move || map_lines(selector.get().as_ref()))
            on_change=Callback::new(move |v: String| set_sel("selector", lines_map(&v))) />
        <Field id="pipeline-env" label="Environment" multiline=true hint="KEY=VALUE, one per line"
            value=Signal::derive(move || map_lines(env.get().as_ref()))
            on_change=Callback::new(move |v: String| set_env("env", lines_map(&v))) />
        <Field id="pipeline-concurrency" label="Concurrency" placeholder="unlimited"
            value=Signal::derive(move || text_of(concurrency.get().as_ref()))
            on_change=Callback::new(move |v: String| {
                let v = v.trim().to_string();
                // Not a number: written as typed, and the check says why.
                set_conc("concurrency", (!v.is_empty()).then(|| v.parse::<i64>().map(Yaml::int).unwrap_or_else(|_| Yaml::str(v))))
            }) />
        <fieldset>
            <legend>"Params"</legend>
            {param_rows}
            <form class="row" on:submit=add_param>
                <label class="visually-hidden" for="param-name">"New param name"</label>
                <input id="param-name" node_ref=new_param placeholder="new param name" />
                <button type="submit">"Add param"</button>
            </form>
        </fieldset>
        <p class="muted">"Select a task to edit it; select nothing for the pipeline."</p>
    }
}
