//! The task graph of one pipeline: topological order, dependencies,
//! dependants and upstream sets, by task name.
//!
//! Built with Kahn's algorithm; ties are broken by name so the order (and so
//! every log and snapshot that follows it) is stable.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::spec::Pipeline;

/// Why a pipeline's tasks do not form a DAG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// A `depends_on` names a task the pipeline does not have.
    #[error("task {task:?} depends on unknown task {dependency:?}")]
    UnknownDependency {
        /// The task with the bad dependency.
        task: String,
        /// The name it depends on.
        dependency: String,
    },
    /// The names along the cycle, first one repeated at the end; `a -> b`
    /// means `a` depends on `b`.
    #[error("cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// A pipeline's tasks in an order that respects their dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    order: Vec<String>,
    dependencies: BTreeMap<String, Vec<String>>,
    dependants: BTreeMap<String, Vec<String>>,
}

impl Dag {
    /// Fails on an unknown dependency or a cycle, which a pipeline that
    /// passed `parse_workflow` never has.
    pub fn new(pipeline: &Pipeline) -> Result<Dag, DagError> {
        Dag::from_edges(
            pipeline
                .tasks
                .iter()
                .map(|(name, task)| (name.as_str(), task.depends_on.as_slice())),
        )
    }

    /// `edges` gives each task with the tasks it depends on.
    pub fn from_edges<'a, S: AsRef<str> + 'a>(
        edges: impl IntoIterator<Item = (&'a str, &'a [S])>,
    ) -> Result<Dag, DagError> {
        let mut dependencies: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (task, deps) in edges {
            let mut list: Vec<String> = deps.iter().map(|d| d.as_ref().to_string()).collect();
            list.dedup();
            dependencies.insert(task.to_string(), list);
        }
        let mut dependants: BTreeMap<String, Vec<String>> = dependencies
            .keys()
            .map(|k| (k.clone(), Vec::new()))
            .collect();
        for (task, deps) in &dependencies {
            for dep in deps {
                let Some(list) = dependants.get_mut(dep) else {
                    return Err(DagError::UnknownDependency {
                        task: task.clone(),
                        dependency: dep.clone(),
                    });
                };
                list.push(task.clone());
            }
        }
        let remaining = kahn(&dependencies, &dependants);
        if !remaining.1.is_empty() {
            let cycles = cycles(&dependencies, remaining.1);
            return Err(DagError::Cycle(
                cycles.into_iter().next().unwrap_or_default(),
            ));
        }
        Ok(Dag {
            order: remaining.0,
            dependencies,
            dependants,
        })
    }

    /// Every task, each after all its dependencies.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// Whether the pipeline has a task named `task`.
    pub fn contains(&self, task: &str) -> bool {
        self.dependencies.contains_key(task)
    }

    /// Direct dependencies of `task`, as written; empty for an unknown task.
    pub fn dependencies(&self, task: &str) -> &[String] {
        self.dependencies.get(task).map_or(&[], Vec::as_slice)
    }

    /// Tasks that depend directly on `task`, by name.
    pub fn dependants(&self, task: &str) -> &[String] {
        self.dependants.get(task).map_or(&[], Vec::as_slice)
    }

    /// Tasks with no dependencies, by name.
    pub fn roots(&self) -> Vec<&str> {
        self.dependencies
            .iter()
            .filter(|(_, d)| d.is_empty())
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// Every task `task` depends on, directly or not.
    pub fn upstream(&self, task: &str) -> BTreeSet<String> {
        upstream(&self.dependencies, task)
    }

    /// Every task that depends on `task`, directly or not: what a failure of
    /// `task` can leave not executed.
    pub fn downstream(&self, task: &str) -> BTreeSet<String> {
        upstream(&self.dependants, task)
    }
}

/// The transitive closure of `edges` from `start`, `start` excluded unless a
/// cycle leads back to it. Safe on cyclic graphs, for validation.
pub(crate) fn upstream<S: AsRef<str>>(
    edges: &BTreeMap<String, Vec<S>>,
    start: &str,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = edges
        .get(start)
        .map(|d| d.iter().map(AsRef::as_ref).collect())
        .unwrap_or_default();
    while let Some(t) = stack.pop() {
        if seen.insert(t.to_string())
            && let Some(deps) = edges.get(t)
        {
            stack.extend(deps.iter().map(AsRef::as_ref));
        }
    }
    seen
}

/// Which tasks are upstream of which, for validation: one bit set per task,
/// built once in topological order. (An upstream set walked afresh for each
/// task cost time in the square of a long chain's length.)
pub(crate) struct Reach {
    index: HashMap<String, usize>,
    /// `None` for a task on or behind a cycle, whose upstream is not told.
    sets: Vec<Option<Vec<u64>>>,
    /// The tasks Kahn's algorithm cannot order: those on or behind a cycle.
    pub(crate) unordered: BTreeSet<String>,
}

impl Reach {
    /// Every dependency must be a task of `dependencies`.
    pub(crate) fn new(dependencies: &BTreeMap<String, Vec<String>>) -> Reach {
        let index: HashMap<String, usize> = dependencies
            .keys()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect();
        let words = dependencies.len().div_ceil(64);
        let mut sets: Vec<Option<Vec<u64>>> = vec![None; dependencies.len()];
        let (order, unordered) = kahn(dependencies, &dependants_of(dependencies));
        for task in &order {
            let mut set = vec![0u64; words];
            for dep in &dependencies[task] {
                let d = index[dep];
                set[d / 64] |= 1 << (d % 64);
                let above = sets[d]
                    .as_ref()
                    .expect("a dependency comes first in the order");
                for (w, a) in set.iter_mut().zip(above) {
                    *w |= a;
                }
            }
            sets[index[task]] = Some(set);
        }
        Reach {
            index,
            sets,
            unordered,
        }
    }

    /// Whether `other` is upstream of `task`; `None` when either is unknown
    /// or `task` is on or behind a cycle.
    pub(crate) fn is_upstream(&self, task: &str, other: &str) -> Option<bool> {
        let set = self.sets[*self.index.get(task)?].as_ref()?;
        let o = *self.index.get(other)?;
        Some(set[o / 64] & (1 << (o % 64)) != 0)
    }
}

fn dependants_of(dependencies: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    let mut dependants: BTreeMap<String, Vec<String>> = dependencies
        .keys()
        .map(|k| (k.clone(), Vec::new()))
        .collect();
    for (task, deps) in dependencies {
        for dep in deps {
            dependants
                .get_mut(dep)
                .expect("a dependency is a task")
                .push(task.clone());
        }
    }
    dependants
}

/// The order Kahn's algorithm finds, and the tasks left over (on or behind a cycle).
fn kahn(
    dependencies: &BTreeMap<String, Vec<String>>,
    dependants: &BTreeMap<String, Vec<String>>,
) -> (Vec<String>, BTreeSet<String>) {
    let mut waiting: BTreeMap<&str, usize> = dependencies
        .iter()
        .map(|(t, d)| (t.as_str(), d.len()))
        .collect();
    let mut ready: BTreeSet<&str> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(t, _)| *t)
        .collect();
    let mut order = Vec::with_capacity(dependencies.len());
    while let Some(task) = ready.pop_first() {
        waiting.remove(task);
        order.push(task.to_string());
        for next in &dependants[task] {
            let n = waiting
                .get_mut(next.as_str())
                .expect("a dependant is a task");
            *n -= 1;
            if *n == 0 {
                ready.insert(next);
            }
        }
    }
    (order, waiting.keys().map(|t| t.to_string()).collect())
}

/// One cycle per knot among `remaining` (the tasks Kahn's algorithm could not
/// order), each starting at its smallest name. Every remaining task has a
/// dependency that is also remaining, so walking dependencies always loops.
///
/// Linear in the edges among `remaining` (the walks aside): positions on the
/// walk are looked up, not searched, and tasks left behind a reported cycle
/// are peeled off by counting their remaining dependencies, not by
/// rescanning every remaining task after each cycle.
pub(crate) fn cycles(
    dependencies: &BTreeMap<String, Vec<String>>,
    mut remaining: BTreeSet<String>,
) -> Vec<Vec<String>> {
    // Remaining dependencies of each remaining task, and who waits on whom.
    let mut pending: HashMap<&str, usize> = HashMap::new();
    let mut waiting_on: HashMap<&str, Vec<&str>> = HashMap::new();
    for task in &remaining {
        let (task, deps) = dependencies
            .get_key_value(task)
            .expect("a remaining task is a task");
        let mut n = 0;
        for dep in deps.iter().filter(|d| remaining.contains(*d)) {
            n += 1;
            waiting_on
                .entry(dep.as_str())
                .or_default()
                .push(task.as_str());
        }
        pending.insert(task.as_str(), n);
    }
    let mut found = Vec::new();
    while let Some(start) = remaining.first().cloned() {
        let mut path: Vec<String> = vec![start.clone()];
        let mut on_path: HashMap<String, usize> = HashMap::from([(start, 0)]);
        let cycle = loop {
            let last = path.last().expect("path is never empty");
            let next = dependencies[last]
                .iter()
                .filter(|d| remaining.contains(*d))
                .min()
                .expect("a remaining task has a remaining dependency")
                .clone();
            if let Some(&at) = on_path.get(&next) {
                break path[at..].to_vec();
            }
            on_path.insert(next.clone(), path.len());
            path.push(next);
        };
        // Drop the cycle, then the tasks that were only behind it.
        let mut freed: Vec<&str> = Vec::new();
        for t in &cycle {
            let (t, _) = dependencies.get_key_value(t).expect("a task");
            if remaining.remove(t.as_str()) {
                freed.push(t.as_str());
            }
        }
        while let Some(t) = freed.pop() {
            for &w in waiting_on.get(t).map_or(&[][..], Vec::as_slice) {
                let n = pending.get_mut(w).expect("a waiting task is counted");
                *n -= 1;
                if *n == 0 && remaining.remove(w) {
                    freed.push(w);
                }
            }
        }
        let smallest = cycle
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| *t)
            .map_or(0, |(i, _)| i);
        let mut rotated: Vec<String> = cycle[smallest..]
            .iter()
            .chain(&cycle[..smallest])
            .cloned()
            .collect();
        rotated.push(rotated[0].clone());
        found.push(rotated);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag(edges: &[(&str, &[&str])]) -> Result<Dag, DagError> {
        Dag::from_edges(edges.iter().map(|(t, d)| (*t, *d)))
    }

    #[test]
    fn orders_topologically_with_stable_ties() {
        let d = dag(&[
            ("test", &["build"]),
            ("build", &[]),
            ("lint", &[]),
            ("deploy", &["test", "lint"]),
        ])
        .unwrap();
        assert_eq!(d.order(), ["build", "lint", "test", "deploy"]);
        assert_eq!(d.roots(), ["build", "lint"]);
        assert_eq!(d.dependencies("deploy"), ["test", "lint"]);
        assert_eq!(d.dependants("build"), ["test"]);
        assert_eq!(
            d.upstream("deploy"),
            BTreeSet::from(["build".into(), "lint".into(), "test".into()])
        );
        assert_eq!(
            d.downstream("build"),
            BTreeSet::from(["deploy".into(), "test".into()])
        );
        assert!(d.upstream("build").is_empty());
    }

    #[test]
    fn finds_cycles() {
        let err = dag(&[
            ("a", &["c"]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("d", &["a"]),
            ("e", &[]),
        ])
        .unwrap_err();
        assert_eq!(err.to_string(), "cycle: a -> c -> b -> a");
        assert_eq!(
            dag(&[("a", &["a"])]).unwrap_err().to_string(),
            "cycle: a -> a"
        );
    }

    #[test]
    fn finds_every_knot() {
        let deps: BTreeMap<String, Vec<String>> =
            [("a", "b"), ("b", "a"), ("c", "d"), ("d", "c"), ("e", "a")]
                .iter()
                .map(|(t, d)| (t.to_string(), vec![d.to_string()]))
                .collect();
        let remaining = deps.keys().cloned().collect();
        let found: Vec<String> = cycles(&deps, remaining)
            .iter()
            .map(|c| c.join(" -> "))
            .collect();
        assert_eq!(found, ["a -> b -> a", "c -> d -> c"]);
    }

    #[test]
    fn rejects_unknown_dependencies() {
        assert_eq!(
            dag(&[("a", &["x"])]).unwrap_err(),
            DagError::UnknownDependency {
                task: "a".into(),
                dependency: "x".into()
            }
        );
    }
}
