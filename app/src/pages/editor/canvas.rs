//! The canvas: the shown pipeline's tasks and dependencies, drawn where the
//! layered layout or the user put them. Pointer gestures (drag a node, draw
//! an edge from a node's handle, pan, zoom, double-click a node to rename
//! it or the background to add one) become gestures on the document; the
//! drawing itself is in `graph`.

use leptos::prelude::*;
use xene_core::draft::{EditorLayout, Gesture};
use xene_core::edit::{self, Op, Seg, Yaml};
use xene_core::layout::{Direction, GAP_X, GAP_Y, NODE_HEIGHT, NODE_WIDTH};

use super::canvas_state::{CanvasState, Drag, View, commit_focused_field};
use super::doc::{Doc, Selection, use_doc};
use super::graph::{Edges, Nodes, PipelineTabs, PreviewLine, RenameBox};

/// The canvas pane: pipeline tabs, toolbar, the drawing and its rename box.
#[component]
pub(super) fn Canvas() -> impl IntoView {
    let doc = use_doc();
    let Doc {
        text,
        layout,
        good,
        pipeline,
        current,
        selected,
        message,
        ..
    } = doc;
    let state = CanvasState::new(doc);
    let CanvasState {
        view_state,
        drag,
        moving,
        pointer,
        connecting,
        cycle_hint,
        renaming,
        places,
        svg_ref,
    } = state;
    let to_canvas = move |x: f64, y: f64| state.to_canvas(x, y);
    let task_at = move |x: f64, y: f64| state.task_at(x, y);
    let capture = move |id: i32| state.capture(id);
    let commit = move |t: String, l: EditorLayout| doc.commit(t, l);
    let gesture = move |g| doc.gesture(g);
    // Beside a placed task, where no other node is: the next layer's side.
    let beside = move |task: &str| -> Option<(i32, i32)> {
        let p = pipeline.get_untracked();
        let (x, y) = layout.with_untracked(|l| l.positions.get(&p)?.get(task).copied())?;
        let dir = layout.with_untracked(|l| l.direction);
        let (mut nx, mut ny) = match dir {
            Direction::LeftRight => (x + NODE_WIDTH + GAP_X, y),
            Direction::TopDown => (x, y + NODE_HEIGHT + GAP_X),
        };
        let taken = places.get_untracked();
        for _ in 0..64 {
            let free = taken
                .values()
                .all(|(ox, oy)| (ox - nx).abs() >= NODE_WIDTH || (oy - ny).abs() >= NODE_HEIGHT);
            if free {
                break;
            }
            match dir {
                Direction::LeftRight => ny += NODE_HEIGHT + GAP_Y,
                Direction::TopDown => nx += NODE_WIDTH + GAP_Y,
            }
        }
        Some((nx, ny))
    };
    // A new task goes after the selected one, waiting for it; its name is
    // open for typing at once.
    let add_task_at = move |at: Option<(i32, i32)>| {
        let after = match selected.get_untracked() {
            Selection::Task(t) if current.with_untracked(|p| p.task(&t).is_some()) => Some(t),
            _ => None,
        };
        let at = at.or_else(|| after.as_deref().and_then(beside));
        if let Some(name) = doc.add_task(after, at) {
            renaming.set(Some(name));
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
    // A drawing larger than the canvas (a phone's) is fitted to it once,
    // when it is first drawn.
    let fitted = StoredValue::new(false);
    Effect::new(move |_| {
        let ps = places.get();
        #[cfg(feature = "hydrate")]
        if !fitted.get_value()
            && !ps.is_empty()
            && let Some(svg) = svg_ref.get()
        {
            fitted.set_value(true);
            let r = svg.get_bounding_client_rect();
            let v = view_state.get_untracked();
            let (x1, y1) = ps.values().fold((0, 0), |(a, b), (x, y)| {
                (a.max(x + NODE_WIDTH), b.max(y + NODE_HEIGHT))
            });
            if v.tx + x1 as f64 * v.zoom > r.width() || v.ty + y1 as f64 * v.zoom > r.height() {
                fit();
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ps, fitted);
    });

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

    view! {
        <section class="canvas-pane card" aria-label="Canvas">
            <div class="tabs">
    <div class="tablist" role="tablist" aria-label="Pipelines"><PipelineTabs /></div>
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
                        // A node's clicks come here while the canvas holds the
                        // pointer: on a node, rename it.
                        let (x, y) = to_canvas(ev.client_x() as f64, ev.client_y() as f64);
                        if let Some(task) = task_at(x, y) {
                            renaming.set(Some(task));
                            return;
                        }
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
                        <Edges state />
                        <Nodes state />
                        <PreviewLine state />
                    </g>
                </svg>
                <RenameBox state />
                // Over the drawing, so that it never moves what is dragged.
                <p id="drag-hint" class="canvas-status" role="status">{move || cycle_hint.get()}</p>
                <Show when=move || current.with(|p| p.tasks.is_empty())>
                    <p class="canvas-empty">"No tasks yet: press Add task, or double-click the canvas."</p>
                </Show>
            </div>
        </section>
    }
    .into_any()
}
