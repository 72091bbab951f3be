//! A layered (Sugiyama-style) drawing of a pipeline's DAG, computed the same
//! way on the server and in the browser so that the server-rendered page
//! already shows the laid-out graph and hydration finds the same SVG.
//!
//! Steps: layers by longest path from the roots; a dummy node on every layer
//! a long edge crosses, so crossing reduction sees it; barycenter sweeps down
//! and up, keeping the order with the fewest crossings; integer coordinates
//! (left to right: one column per layer), so both sides print the same
//! numbers. Every loop is bounded: the sweeps run a fixed number of times and
//! are skipped for graphs too big for them to pay off.

use std::collections::BTreeMap;

/// A node's size and the gaps between them, in SVG user units.
pub const NODE_WIDTH: i32 = 168;
/// A node's height.
pub const NODE_HEIGHT: i32 = 44;
/// Between two columns (layers).
pub const GAP_X: i32 = 56;
/// Between two nodes of a column.
pub const GAP_Y: i32 = 18;
/// Around the drawing.
pub const MARGIN: i32 = 8;

/// Sweeps (down then up) of the crossing reduction.
const SWEEPS: usize = 12;
/// Above this many nodes and dummies, the sweeps are skipped: the order is
/// the input's, still a correct (if busier) drawing.
const MAX_SWEPT: usize = 4_000;

/// A placed node: one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBox {
    /// The task's name.
    pub name: String,
    /// Its column, from 0 (tasks with no dependency).
    pub layer: usize,
    /// Top-left corner.
    pub x: i32,
    /// Top-left corner.
    pub y: i32,
}

/// A placed edge: from a dependency to its dependant, as a polyline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgePath {
    /// The dependency.
    pub from: String,
    /// The task that waits for it.
    pub to: String,
    /// From the right middle of `from` to the left middle of `to`, through
    /// each dummy of the layers in between.
    pub points: Vec<(i32, i32)>,
}

/// The whole drawing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The drawing's size.
    pub width: i32,
    /// The drawing's size.
    pub height: i32,
    /// Every task once.
    pub nodes: Vec<NodeBox>,
    /// Every dependency edge once.
    pub edges: Vec<EdgePath>,
}

impl Layout {
    /// The SVG path (`d` attribute) of an edge: straight lines through its
    /// points, a horizontal arrow's worth of run at each end.
    pub fn path_data(edge: &EdgePath) -> String {
        let mut d = String::new();
        for (i, (x, y)) in edge.points.iter().enumerate() {
            d.push_str(if i == 0 { "M" } else { " L" });
            d.push_str(&format!("{x} {y}"));
        }
        d
    }
}

/// Which way the layers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Layers are columns, edges run left to right.
    #[default]
    LeftRight,
    /// Layers are rows, edges run top down.
    TopDown,
}

/// Lays out tasks left to right; see [`layout_in`].
pub fn layout<'a, S: AsRef<str> + 'a>(
    tasks: impl IntoIterator<Item = (&'a str, &'a [S])>,
) -> Layout {
    layout_in(tasks, Direction::LeftRight)
}

/// Lays out tasks given as `(name, dependencies)`. Unknown dependencies are
/// ignored; a cycle (which a validated pipeline never has) puts its tasks
/// after the rest instead of looping.
pub fn layout_in<'a, S: AsRef<str> + 'a>(
    tasks: impl IntoIterator<Item = (&'a str, &'a [S])>,
    direction: Direction,
) -> Layout {
    // Names in a stable order; indices from here on.
    let deps: BTreeMap<&str, Vec<&str>> = tasks
        .into_iter()
        .map(|(name, deps)| (name, deps.iter().map(|d| d.as_ref()).collect()))
        .collect();
    let names: Vec<&str> = deps.keys().copied().collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let n = names.len();
    if n == 0 {
        return Layout {
            width: 2 * MARGIN,
            height: 2 * MARGIN,
            ..Layout::default()
        };
    }
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for (to, list) in &deps {
        let mut seen = Vec::new();
        for from in list {
            if let Some(&f) = index.get(from)
                && f != index[to]
                && !seen.contains(&f)
            {
                seen.push(f);
                edges.push((f, index[to]));
            }
        }
    }

    let layer_of = layers(n, &edges);
    let layer_count = layer_of.iter().max().map_or(1, |m| m + 1);

    // Real nodes are 0..n; dummies follow. `chains` keeps, per edge, the
    // vertices it passes through in order.
    let mut vertex_layer: Vec<usize> = layer_of.clone();
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(edges.len());
    let mut links: Vec<(usize, usize)> = Vec::new();
    for &(f, t) in &edges {
        let (lf, lt) = (layer_of[f], layer_of[t]);
        let mut chain = vec![f];
        // An edge against the layering (only in a cycle) is drawn straight.
        if lt > lf + 1 {
            for l in lf + 1..lt {
                vertex_layer.push(l);
                chain.push(vertex_layer.len() - 1);
            }
        }
        chain.push(t);
        for pair in chain.windows(2) {
            links.push((pair[0], pair[1]));
        }
        chains.push(chain);
    }

    let mut order: Vec<Vec<usize>> = vec![Vec::new(); layer_count];
    for (v, &l) in vertex_layer.iter().enumerate() {
        order[l].push(v);
    }
    if vertex_layer.len() <= MAX_SWEPT {
        reduce_crossings(&mut order, &vertex_layer, &links);
    }

    // Coordinates: each layer centred on the longest. Along a layer, nodes
    // are NODE_HEIGHT + GAP_Y apart in columns and NODE_WIDTH + GAP_Y in rows.
    let top_down = direction == Direction::TopDown;
    let (across, along) = if top_down {
        (NODE_WIDTH, NODE_HEIGHT)
    } else {
        (NODE_HEIGHT, NODE_WIDTH)
    };
    let longest = order.iter().map(Vec::len).max().unwrap_or(1) as i32;
    let extent = longest * across + (longest - 1).max(0) * GAP_Y;
    let mut pos: Vec<(i32, i32)> = vec![(0, 0); vertex_layer.len()];
    for (l, members) in order.iter().enumerate() {
        let size = members.len() as i32;
        let layer_extent = size * across + (size - 1).max(0) * GAP_Y;
        let first = MARGIN + (extent - layer_extent) / 2;
        for (i, &v) in members.iter().enumerate() {
            let depth = MARGIN + l as i32 * (along + GAP_X);
            let offset = first + i as i32 * (across + GAP_Y);
            pos[v] = if top_down {
                (offset, depth)
            } else {
                (depth, offset)
            };
        }
    }

    let nodes = (0..n)
        .map(|v| NodeBox {
            name: names[v].to_string(),
            layer: layer_of[v],
            x: pos[v].0,
            y: pos[v].1,
        })
        .collect();
    let (out_at, in_at, mid_at) = if top_down {
        (
            (NODE_WIDTH / 2, NODE_HEIGHT),
            (NODE_WIDTH / 2, 0),
            (NODE_WIDTH / 2, NODE_HEIGHT / 2),
        )
    } else {
        (
            (NODE_WIDTH, NODE_HEIGHT / 2),
            (0, NODE_HEIGHT / 2),
            (NODE_WIDTH / 2, NODE_HEIGHT / 2),
        )
    };
    let edges = edges
        .iter()
        .zip(&chains)
        .map(|(&(f, t), chain)| {
            let mut points = vec![(pos[f].0 + out_at.0, pos[f].1 + out_at.1)];
            for &d in &chain[1..chain.len() - 1] {
                // A dummy is a point in the middle of its slot.
                points.push((pos[d].0 + mid_at.0, pos[d].1 + mid_at.1));
            }
            points.push((pos[t].0 + in_at.0, pos[t].1 + in_at.1));
            EdgePath {
                from: names[f].to_string(),
                to: names[t].to_string(),
                points,
            }
        })
        .collect();
    let depth = 2 * MARGIN + layer_count as i32 * along + (layer_count as i32 - 1).max(0) * GAP_X;
    let breadth = extent + 2 * MARGIN;
    let (width, height) = if top_down {
        (breadth, depth)
    } else {
        (depth, breadth)
    };
    Layout {
        width,
        height,
        nodes,
        edges,
    }
}

/// Longest path from the roots (Kahn's order); tasks left in a cycle go
/// one layer after everything else.
fn layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(f, t) in edges {
        indegree[t] += 1;
        out[f].push(t);
    }
    let mut layer = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    let mut done = vec![false; n];
    while let Some(v) = ready.pop() {
        done[v] = true;
        for &t in &out[v] {
            layer[t] = layer[t].max(layer[v] + 1);
            indegree[t] -= 1;
            if indegree[t] == 0 {
                ready.push(t);
            }
        }
    }
    let last = (0..n)
        .filter(|&v| done[v])
        .map(|v| layer[v])
        .max()
        .unwrap_or(0);
    for v in 0..n {
        if !done[v] {
            layer[v] = last + 1;
        }
    }
    layer
}

/// Barycenter sweeps; keeps the best order seen.
fn reduce_crossings(order: &mut [Vec<usize>], vertex_layer: &[usize], links: &[(usize, usize)]) {
    let count = vertex_layer.len();
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); count];
    for &(a, b) in links {
        // Links go from a lower layer to a higher one, except in cycles.
        let (a, b) = if vertex_layer[a] <= vertex_layer[b] {
            (a, b)
        } else {
            (b, a)
        };
        down[a].push(b);
        up[b].push(a);
    }
    let mut best = order.to_vec();
    let mut best_crossings = crossings(order, &down);
    let mut position = vec![0usize; count];
    for sweep in 0..SWEEPS {
        if best_crossings == 0 {
            break;
        }
        let downward = sweep % 2 == 0;
        let layer_ids: Vec<usize> = if downward {
            (1..order.len()).collect()
        } else {
            (0..order.len().saturating_sub(1)).rev().collect()
        };
        for l in layer_ids {
            let neighbour = if downward { l - 1 } else { l + 1 };
            for (i, &v) in order[neighbour].iter().enumerate() {
                position[v] = i;
            }
            let adjacent = if downward { &up } else { &down };
            let mut keyed: Vec<(usize, usize, usize)> = order[l]
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let around = &adjacent[v];
                    // Scaled by 1000 to stay in integers; a vertex with no
                    // neighbour keeps its place.
                    let key = if around.is_empty() {
                        i * 1000
                    } else {
                        around.iter().map(|&u| position[u] * 1000).sum::<usize>() / around.len()
                    };
                    (key, i, v)
                })
                .collect();
            keyed.sort();
            order[l] = keyed.into_iter().map(|(_, _, v)| v).collect();
        }
        let c = crossings(order, &down);
        if c < best_crossings {
            best_crossings = c;
            best = order.to_vec();
        }
    }
    order.clone_from_slice(&best);
}

/// Edge crossings between every pair of adjacent layers.
fn crossings(order: &[Vec<usize>], down: &[Vec<usize>]) -> usize {
    let mut position = vec![0usize; down.len()];
    for column in order {
        for (i, &v) in column.iter().enumerate() {
            position[v] = i;
        }
    }
    let mut total = 0;
    for column in order {
        let mut ends: Vec<(usize, usize)> = Vec::new();
        for (i, &v) in column.iter().enumerate() {
            for &w in &down[v] {
                ends.push((i, position[w]));
            }
        }
        ends.sort();
        // Inversions of the far ends: quadratic, but the caller bounds
        // the graph's size.
        for a in 0..ends.len() {
            for b in a + 1..ends.len() {
                if ends[a].0 < ends[b].0 && ends[a].1 > ends[b].1 {
                    total += 1;
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lay(tasks: &[(&str, &[&str])]) -> Layout {
        layout(tasks.iter().map(|(n, d)| (*n, *d)))
    }

    fn node<'a>(l: &'a Layout, name: &str) -> &'a NodeBox {
        l.nodes.iter().find(|n| n.name == name).unwrap()
    }

    #[test]
    fn empty_pipeline_is_an_empty_drawing() {
        let l = lay(&[]);
        assert!(l.nodes.is_empty() && l.edges.is_empty());
        assert!(l.width > 0 && l.height > 0);
    }

    #[test]
    fn layers_follow_the_longest_path() {
        let l = lay(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &["a", "c"])]);
        assert_eq!(node(&l, "a").layer, 0);
        assert_eq!(node(&l, "b").layer, 1);
        assert_eq!(node(&l, "c").layer, 2);
        assert_eq!(node(&l, "d").layer, 3);
        // a -> d spans three layers: two bends through dummies.
        let long = l
            .edges
            .iter()
            .find(|e| e.from == "a" && e.to == "d")
            .unwrap();
        assert_eq!(long.points.len(), 4);
        // Every edge goes left to right.
        for e in &l.edges {
            assert!(e.points.windows(2).all(|p| p[0].0 < p[1].0), "{e:?}");
        }
    }

    #[test]
    fn nodes_never_overlap_and_fit_the_drawing() {
        let l = lay(&[
            ("fetch", &[]),
            ("lint", &["fetch"]),
            ("build", &["fetch"]),
            ("test-1", &["build"]),
            ("test-2", &["build"]),
            ("test-3", &["build"]),
            ("package", &["test-1", "test-2", "test-3", "lint"]),
        ]);
        for a in &l.nodes {
            assert!(a.x >= 0 && a.y >= 0);
            assert!(a.x + NODE_WIDTH <= l.width && a.y + NODE_HEIGHT <= l.height);
            for b in &l.nodes {
                if a.name != b.name {
                    let apart = a.x + NODE_WIDTH <= b.x
                        || b.x + NODE_WIDTH <= a.x
                        || a.y + NODE_HEIGHT <= b.y
                        || b.y + NODE_HEIGHT <= a.y;
                    assert!(apart, "{a:?} overlaps {b:?}");
                }
            }
        }
        assert_eq!(l.edges.len(), 9);
    }

    #[test]
    fn crossing_reduction_untangles_a_twisted_pair() {
        // In name order the second layer is [x, y] but x hangs off b and y
        // off a: a straight drawing puts y first.
        let tasks: &[(&str, &[&str])] = &[("a", &[]), ("b", &[]), ("x", &["b"]), ("y", &["a"])];
        let l = lay(tasks);
        let mut order = vec![vec![0, 1], vec![2, 3]];
        let mut down = vec![Vec::new(); 4];
        down[0].push(3);
        down[1].push(2);
        assert_eq!(crossings(&order, &down), 1);
        order[1].swap(0, 1);
        assert_eq!(crossings(&order, &down), 0);
        assert!(node(&l, "y").y < node(&l, "x").y, "{l:?}");
    }

    #[test]
    fn same_input_same_drawing() {
        let tasks: &[(&str, &[&str])] =
            &[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])];
        assert_eq!(lay(tasks), lay(tasks));
    }

    #[test]
    fn cycles_and_unknown_dependencies_do_not_hang() {
        let l = lay(&[("a", &["b"]), ("b", &["a"]), ("c", &["nope"])]);
        assert_eq!(l.nodes.len(), 3);
        assert_eq!(node(&l, "c").layer, 0);
        assert!(node(&l, "a").layer > 0);
    }

    #[test]
    fn a_big_graph_is_laid_out_quickly_and_bounded() {
        // 60 layers of 20 tasks, each depending on two of the layer before.
        let names: Vec<String> = (0..1200).map(|i| format!("t{i:04}")).collect();
        let deps: Vec<Vec<String>> = (0..1200)
            .map(|i| {
                if i < 20 {
                    vec![]
                } else {
                    vec![
                        names[i - 20].clone(),
                        names[i - 20 + (i * 7) % 20 - (i % 20)].clone(),
                    ]
                }
            })
            .collect();
        let l = layout(
            names
                .iter()
                .zip(&deps)
                .map(|(n, d)| (n.as_str(), d.as_slice())),
        );
        assert_eq!(l.nodes.len(), 1200);
        assert_eq!(l.nodes.iter().map(|n| n.layer).max(), Some(59));
    }
}
