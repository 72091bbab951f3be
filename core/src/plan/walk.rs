//! A run's DAG walked in memory: which tasks may start, and which end
//! without running, as tasks end. `xene-agent run` drives its run with it,
//! and tests use it as the reference for the server's stored walk.

use std::collections::{BTreeMap, HashMap};

use super::verdict;
use crate::context::TaskResult;
use crate::dag::{Dag, DagError};
use crate::spec::Pipeline;
use crate::status::{RunStatus, TaskStatus};

/// What the walk decided about a task whose dependencies have all ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it; report its end with [`Walk::finish`].
    Run(String),
    /// It ended without running (skipped, not executed, or a condition
    /// that does not parse); the walk has recorded it already.
    End {
        /// The task.
        task: String,
        /// `skipped`, `not_executed` or `error`.
        status: TaskStatus,
        /// Why, for `error`.
        error: Option<String>,
    },
}

/// The state of one run's DAG walk. Tasks are numbered in the DAG's
/// topological order; each is decided once, when its last dependency ends.
#[derive(Debug, Clone)]
pub struct Walk {
    names: Vec<String>,
    conditions: Vec<Option<String>>,
    dependencies: Vec<Vec<String>>,
    dependants: Vec<Vec<usize>>,
    /// Dependencies not ended yet, per task.
    waiting: Vec<usize>,
    params: BTreeMap<String, String>,
    /// Ended tasks as templates and conditions see them.
    results: BTreeMap<String, TaskResult>,
    /// Ended by an earlier attempt of the run: recorded, never decided.
    completed: BTreeMap<String, TaskResult>,
    index: HashMap<String, usize>,
}

impl Walk {
    /// A walk of `pipeline` with its resolved `params`, where the tasks in
    /// `completed` ended before (a resumed run): they are not run again
    /// and dependants see their results. Fails as [`Dag::new`] does.
    pub fn new(
        pipeline: &Pipeline,
        params: BTreeMap<String, String>,
        completed: BTreeMap<String, TaskResult>,
    ) -> Result<Walk, DagError> {
        let dag = Dag::new(pipeline)?;
        let names: Vec<String> = dag.order().to_vec();
        let index: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let dependencies: Vec<Vec<String>> =
            names.iter().map(|n| dag.dependencies(n).to_vec()).collect();
        let mut dependants = vec![Vec::new(); names.len()];
        for (task, deps) in dependencies.iter().enumerate() {
            for dep in deps {
                dependants[index[dep]].push(task);
            }
        }
        let waiting = dependencies.iter().map(Vec::len).collect();
        let conditions = names
            .iter()
            .map(|n| pipeline.tasks[n].condition.clone())
            .collect();
        Ok(Walk {
            names,
            conditions,
            dependencies,
            dependants,
            waiting,
            params,
            results: BTreeMap::new(),
            completed,
            index,
        })
    }

    /// Decides the tasks without dependencies (and what their ends, and
    /// completed tasks, decide in turn). Call once, first.
    pub fn start(&mut self, cancelled: bool) -> Vec<Decision> {
        let roots: Vec<usize> = (0..self.names.len())
            .filter(|&i| self.waiting[i] == 0)
            .collect();
        let mut decisions = Vec::new();
        for root in roots {
            self.decide(root, cancelled, &mut decisions);
        }
        decisions
    }

    /// Records that `task` (one the walk said to run) ended with `result`,
    /// and decides the dependants that were waiting only on it, in order.
    /// An unknown task, or one already ended, decides nothing.
    pub fn finish(&mut self, task: &str, result: TaskResult, cancelled: bool) -> Vec<Decision> {
        let mut decisions = Vec::new();
        let Some(&i) = self.index.get(task) else {
            return decisions;
        };
        if self.results.contains_key(task) {
            return decisions;
        }
        self.results.insert(task.to_string(), result);
        for dependant in self.unblock(i) {
            self.decide(dependant, cancelled, &mut decisions);
        }
        decisions
    }

    /// The ended tasks' results, by name.
    pub fn results(&self) -> &BTreeMap<String, TaskResult> {
        &self.results
    }

    /// The run's resolved params.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }

    /// The number of tasks in the run.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the run has no task (a pipeline always has one).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether every task has ended.
    pub fn is_done(&self) -> bool {
        self.results.len() == self.names.len()
    }

    /// The run's status from the ended tasks (see [`super::run_status`]).
    pub fn run_status(&self, cancelled: bool) -> RunStatus {
        super::run_status(self.results.values().map(|r| r.status), cancelled)
    }

    /// Called once all of `task`'s dependencies have ended: it runs, or
    /// ends without running and decides what waited on it.
    fn decide(&mut self, task: usize, cancelled: bool, decisions: &mut Vec<Decision>) {
        let mut pending = vec![task];
        while let Some(task) = pending.pop() {
            let name = self.names[task].clone();
            // Ended in an earlier attempt of the run: its result stands,
            // and was reported then.
            if let Some(done) = self.completed.get(&name) {
                self.results.insert(name, done.clone());
                pending.extend(self.unblock(task));
                continue;
            }
            let verdict = verdict(
                self.conditions[task].as_deref(),
                &self.dependencies[task],
                &self.results,
                &self.params,
                cancelled,
            );
            match verdict.ending() {
                None => decisions.push(Decision::Run(name)),
                Some((status, error)) => {
                    self.results.insert(
                        name.clone(),
                        TaskResult {
                            caches: Default::default(),
                            status,
                            output: None,
                        },
                    );
                    decisions.push(Decision::End {
                        task: name,
                        status,
                        error,
                    });
                    pending.extend(self.unblock(task));
                }
            }
        }
    }

    /// The dependants of `task` that have no dependency left to end.
    fn unblock(&mut self, task: usize) -> Vec<usize> {
        let mut unblocked = Vec::new();
        for &dependant in &self.dependants[task] {
            self.waiting[dependant] -= 1;
            if self.waiting[dependant] == 0 {
                unblocked.push(dependant);
            }
        }
        unblocked
    }
}
