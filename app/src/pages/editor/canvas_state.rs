//! The canvas's own state, shared by the canvas pane and what it draws:
//! pan and zoom, the pointer gesture under way, the node being dragged, and
//! where each task is drawn.

use std::collections::BTreeMap;

use leptos::prelude::*;
use xene_core::draft::PipelineDraft;
use xene_core::layout::{Direction, NODE_HEIGHT, NODE_WIDTH, layout_in};

use super::doc::Doc;

/// A pointer gesture under way.
#[derive(Debug, Clone, Default)]
pub(super) enum Drag {
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
pub(super) struct View {
    pub tx: f64,
    pub ty: f64,
    pub zoom: f64,
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

/// The canvas's own state, shared by its parts (signals only, so `Copy`).
#[derive(Clone, Copy)]
pub(super) struct CanvasState {
    /// The view's pan and zoom.
    pub view_state: RwSignal<View>,
    /// The pointer gesture under way.
    pub drag: StoredValue<Drag>,
    /// A node being dragged, where it is now (drawn there, stored on release).
    pub moving: RwSignal<Option<(String, i32, i32)>>,
    /// The pointer, in drawing units, while an edge is drawn.
    pub pointer: RwSignal<(f64, f64)>,
    /// The task an edge being drawn starts from.
    pub connecting: RwSignal<Option<String>>,
    /// Why the edge being drawn would be refused.
    pub cycle_hint: RwSignal<Option<String>>,
    /// The task whose in-place rename box is open.
    pub renaming: RwSignal<Option<String>>,
    /// Where each task of the shown pipeline is drawn.
    pub places: Memo<BTreeMap<String, (i32, i32)>>,
    pub svg_ref: NodeRef<leptos::svg::Svg>,
}

impl CanvasState {
    pub fn new(doc: Doc) -> Self {
        let Doc {
            layout,
            pipeline,
            current,
            ..
        } = doc;
        let moving: RwSignal<Option<(String, i32, i32)>> = RwSignal::new(None);
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

        CanvasState {
            view_state: RwSignal::new(View::default()),
            drag: StoredValue::new(Drag::Idle),
            moving,
            pointer: RwSignal::new((0.0, 0.0)),
            connecting: RwSignal::new(None),
            cycle_hint: RwSignal::new(None),
            renaming: RwSignal::new(None),
            places,
            svg_ref: NodeRef::new(),
        }
    }

    /// Pointer position in drawing units.
    pub fn to_canvas(self, client_x: f64, client_y: f64) -> (f64, f64) {
        #[cfg(feature = "hydrate")]
        {
            let v = self.view_state.get_untracked();
            if let Some(svg) = self.svg_ref.get_untracked() {
                let r = svg.get_bounding_client_rect();
                return (
                    (client_x - r.left() - v.tx) / v.zoom,
                    (client_y - r.top() - v.ty) / v.zoom,
                );
            }
        }
        (client_x, client_y)
    }

    /// The task drawn at a point of the drawing.
    pub fn task_at(self, x: f64, y: f64) -> Option<String> {
        self.places.with_untracked(|ps| {
            ps.iter()
                .find(|(_, (nx, ny))| {
                    x >= *nx as f64
                        && x <= (*nx + NODE_WIDTH) as f64
                        && y >= *ny as f64
                        && y <= (*ny + NODE_HEIGHT) as f64
                })
                .map(|(n, _)| n.clone())
        })
    }

    /// Keeps the pointer's moves coming to the canvas while it drags.
    pub fn capture(self, _id: i32) {
        #[cfg(feature = "hydrate")]
        if let Some(svg) = self.svg_ref.get_untracked() {
            let _ = svg.set_pointer_capture(_id);
        }
    }
}

// A panel field commits on change, which a browser fires when the field
// loses focus: let it, before the selection (and the panel) changes.
pub(super) fn commit_focused_field() {
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
}
