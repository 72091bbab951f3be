//! What the canvas draws: the tasks as nodes (with the handle an edge is
//! drawn from), the dependencies as edges (with the button that inserts a
//! task between), the edge being drawn, the in-place rename box, and the
//! pipelines' tabs.

use leptos::prelude::*;
use xene_core::draft::{self, Gesture};
use xene_core::layout::{Direction, NODE_HEIGHT, NODE_WIDTH};

use super::canvas_state::{CanvasState, Drag, commit_focused_field};
use super::doc::{Doc, Selection, use_doc};

/// The shown pipeline's tasks.
#[component]
pub(super) fn Nodes(state: CanvasState) -> impl IntoView {
    let Doc {
        layout,
        current,
        faults,
        selected,
        ..
    } = use_doc();
    let CanvasState {
        drag,
        pointer,
        connecting,
        renaming,
        places,
        ..
    } = state;
    let to_canvas = move |x: f64, y: f64| state.to_canvas(x, y);
    let capture = move |id: i32| state.capture(id);
    move || {
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
    }
}

/// The shown pipeline's dependencies.
#[component]
pub(super) fn Edges(state: CanvasState) -> impl IntoView {
    let doc = use_doc();
    let Doc {
        layout,
        current,
        selected,
        ..
    } = doc;
    let places = state.places;
    let gesture = move |g| doc.gesture(g);
    move || {
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
    }
}

/// The edge being drawn, from its task to the pointer.
#[component]
pub(super) fn PreviewLine(state: CanvasState) -> impl IntoView {
    let layout = use_doc().layout;
    let CanvasState {
        pointer,
        connecting,
        cycle_hint,
        places,
        ..
    } = state;
    move || {
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
    }
}

/// The in-place rename box over a node.
/// Made once per rename (moving or zooming only moves it), focused and
/// selected when it appears, finished once: by Enter, Escape or leaving.
#[component]
pub(super) fn RenameBox(state: CanvasState) -> impl IntoView {
    let doc = use_doc();
    let pipeline = doc.pipeline;
    let gesture = move |g| doc.gesture(g);
    let CanvasState {
        view_state,
        renaming,
        places,
        ..
    } = state;
    let rename_ref = NodeRef::<leptos::html::Input>::new();
    let rename_done = StoredValue::new(false);
    Effect::new(move |_| {
        if let Some(input) = rename_ref.get() {
            let _ = input.focus();
            input.select();
        }
    });
    move || {
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
        let name_key = name.clone();
        Some(view! {
            <input
                class="rename"
                node_ref=rename_ref
                style=style
                aria-label=format!("new name for task {name}")
                value=name.clone()
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    // Finished from the keyboard: the focus goes to the task
                    // (by its new name), not to the page's start.
                    if ev.key() == "Enter" {
                        let value = event_target_value(&ev);
                        done_key(Some(value.clone()));
                        focus_task(value.trim().to_string());
                    } else if ev.key() == "Escape" {
                        done_key(None);
                        focus_task(name_key.clone());
                    }
                }
                on:blur=move |ev| done(Some(event_target_value(&ev)))
            />
        })
    }
}

/// Focuses task `name`'s node once the canvas has drawn it.
fn focus_task(name: String) {
    #[cfg(feature = "hydrate")]
    request_animation_frame(move || {
        use wasm_bindgen::JsCast;
        let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
        let node = document()
            .query_selector(&format!("svg.canvas g.node[data-task=\"{quoted}\"]"))
            .ok()
            .flatten();
        // An SVG element: `focus` through JS, as web_sys has it on HTML ones.
        if let Some(node) = node
            && let Ok(focus) = js_sys::Reflect::get(&node, &"focus".into())
            && let Some(focus) = focus.dyn_ref::<js_sys::Function>()
        {
            let _ = focus.call0(&node);
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = name;
}

/// A tab for each pipeline.
#[component]
pub(super) fn PipelineTabs() -> impl IntoView {
    let Doc {
        good,
        pipeline,
        selected,
        ..
    } = use_doc();
    move || {
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
    }
}
