//! `plan::Walk` against the rules the agent's executor has always followed
//! (the model of `agent/tests/integration/model.rs`, which checks the real
//! executor against the same rules): on random DAGs whose tasks are written
//! in any order, with random `if` conditions (on upstream statuses and
//! outputs, on params, combined, and some that do not parse), tasks an
//! earlier attempt completed, random outcomes, ready tasks ending in any
//! order, and a cancel at any point, every task ends with the status the
//! rules give, each once, never before its dependencies, and the run ends
//! with the status the rules give.

use std::collections::{BTreeMap, BTreeSet};

use xene_core::context::TaskResult;
use xene_core::plan::{Decision, Walk};
use xene_core::spec::Pipeline;
use xene_core::status::{RunStatus, TaskStatus};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const STATUSES: [TaskStatus; 5] = [
    TaskStatus::Success,
    TaskStatus::Error,
    TaskStatus::Skipped,
    TaskStatus::NotExecuted,
    TaskStatus::Cancelled,
];

/// A condition and how to evaluate it over statuses, outputs and params
/// (`None`: it does not parse).
#[derive(Debug, Clone)]
enum Cond {
    Status(usize, bool, TaskStatus),
    Output(usize, String),
    Param(bool, &'static str),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Broken,
}

struct Case {
    /// Task `i` depends only on tasks before it; its name is `names[i]`,
    /// so the file's order and the names' order are not the DAG's.
    names: Vec<String>,
    deps: Vec<Vec<usize>>,
    conditions: Vec<Option<Cond>>,
    /// How it ends when it runs, and what it writes.
    outcomes: Vec<(TaskStatus, Option<String>)>,
    /// Ended by an earlier attempt.
    completed: BTreeMap<usize, TaskResult>,
    param: &'static str,
}

impl Cond {
    fn text(&self, names: &[String]) -> String {
        match self {
            Cond::Status(t, eq, s) => {
                let op = if *eq { "==" } else { "!=" };
                format!("tasks.{}.status {op} '{}'", names[*t], s.as_str())
            }
            Cond::Output(t, v) => format!("tasks.{}.output == '{v}'", names[*t]),
            Cond::Param(eq, v) => {
                let op = if *eq { "==" } else { "!=" };
                format!("params.mode {op} '{v}'")
            }
            Cond::And(a, b) => format!("({}) && ({})", a.text(names), b.text(names)),
            Cond::Or(a, b) => format!("({}) || ({})", a.text(names), b.text(names)),
            Cond::Not(a) => format!("!({})", a.text(names)),
            Cond::Broken => format!("tasks.{}.status ==", names[0]),
        }
    }

    /// `None` when it does not parse.
    fn eval(&self, ended: &[Option<TaskResult>], param: &str) -> Option<bool> {
        Some(match self {
            Cond::Status(t, eq, s) => (ended[*t].as_ref()?.status == *s) == *eq,
            Cond::Output(t, v) => ended[*t].as_ref()?.output.as_deref().unwrap_or("") == v,
            Cond::Param(eq, v) => (param == *v) == *eq,
            Cond::And(a, b) => {
                let (a, b) = (a.eval(ended, param)?, b.eval(ended, param)?);
                a && b
            }
            Cond::Or(a, b) => {
                let (a, b) = (a.eval(ended, param)?, b.eval(ended, param)?);
                a || b
            }
            Cond::Not(a) => !a.eval(ended, param)?,
            Cond::Broken => return None,
        })
    }
}

fn upstream(deps: &[Vec<usize>], task: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut stack = deps[task].clone();
    while let Some(t) = stack.pop() {
        if seen.insert(t) {
            stack.extend(&deps[t]);
        }
    }
    seen
}

fn random_cond(rng: &mut Rng, up: &[usize], depth: usize) -> Cond {
    let pick = |rng: &mut Rng| up[rng.below(up.len())];
    match rng.below(if depth == 0 { 4 } else { 7 }) {
        0 | 1 => Cond::Status(pick(rng), rng.chance(50), STATUSES[rng.below(5)]),
        2 => Cond::Output(pick(rng), ["x", "y", ""][rng.below(3)].to_string()),
        3 => Cond::Param(rng.chance(50), ["a", "b"][rng.below(2)]),
        4 => Cond::And(
            Box::new(random_cond(rng, up, depth - 1)),
            Box::new(random_cond(rng, up, depth - 1)),
        ),
        5 => Cond::Or(
            Box::new(random_cond(rng, up, depth - 1)),
            Box::new(random_cond(rng, up, depth - 1)),
        ),
        _ => Cond::Not(Box::new(random_cond(rng, up, depth - 1))),
    }
}

fn random_case(rng: &mut Rng) -> Case {
    let n = 1 + rng.below(14);
    // Names in a shuffled order, so neither the file nor the names sort
    // the tasks as the DAG does.
    let mut labels: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        labels.swap(i, rng.below(i + 1));
    }
    let names: Vec<String> = labels.iter().map(|l| format!("t{l}")).collect();
    let mut deps = Vec::new();
    let mut conditions = Vec::new();
    let mut outcomes = Vec::new();
    let mut completed = BTreeMap::new();
    for i in 0..n {
        let mut d: Vec<usize> = if i == 0 {
            Vec::new()
        } else {
            (0..rng.below(4)).map(|_| rng.below(i)).collect()
        };
        d.sort_unstable();
        d.dedup();
        deps.push(d);
        let up: Vec<usize> = upstream(&deps, i).into_iter().collect();
        let condition = if up.is_empty() {
            rng.chance(20).then(|| Cond::Param(rng.chance(50), "a"))
        } else if rng.chance(5) {
            Some(Cond::Broken)
        } else {
            rng.chance(45).then(|| random_cond(rng, &up, 2))
        };
        conditions.push(condition);
        let status = [
            TaskStatus::Success,
            TaskStatus::Success,
            TaskStatus::Error,
            TaskStatus::Unknown,
        ][rng.below(4)];
        let output = [None, Some("x".to_string()), Some("y".to_string())][rng.below(3)].clone();
        outcomes.push((status, output));
        if rng.chance(10) {
            let status = STATUSES[rng.below(5)];
            completed.insert(
                i,
                TaskResult {
                    caches: Default::default(),
                    status,
                    output: Some("x".into()),
                },
            );
        }
    }
    Case {
        names,
        deps,
        conditions,
        outcomes,
        completed,
        param: ["a", "b"][rng.below(2)],
    }
}

impl Case {
    fn pipeline(&self) -> Pipeline {
        let mut tasks = serde_json::Map::new();
        // Last task first: the file's order is not the DAG's either.
        for i in (0..self.names.len()).rev() {
            let mut task = serde_json::json!({
                "depends_on": self.deps[i].iter().map(|&d| self.names[d].clone()).collect::<Vec<_>>(),
                "steps": [{"name": "s", "run": "true"}],
            });
            if let Some(c) = &self.conditions[i] {
                task["if"] = c.text(&self.names).into();
            }
            tasks.insert(self.names[i].clone(), task);
        }
        serde_json::from_value(serde_json::json!({
            "trigger": {"type": "manual"},
            "params": {"mode": {"default": "a"}},
            "tasks": tasks,
        }))
        .expect("a pipeline")
    }

    /// The rules, in the DAG's order: a completed task keeps its result; a
    /// task with `if` runs iff it holds (one that does not parse ends
    /// `error`), else `skipped`; one without runs iff every dependency
    /// succeeded, else `not_executed`; one that runs ends as its outcome.
    fn model(&self) -> Vec<(TaskResult, bool)> {
        let mut ended: Vec<Option<TaskResult>> = Vec::new();
        let mut ran = Vec::new();
        for i in 0..self.names.len() {
            if let Some(done) = self.completed.get(&i) {
                ended.push(Some(done.clone()));
                ran.push(false);
                continue;
            }
            let (runs, otherwise) = match &self.conditions[i] {
                Some(c) => match c.eval(&ended, self.param) {
                    Some(holds) => (holds, TaskStatus::Skipped),
                    None => (false, TaskStatus::Error),
                },
                None => (
                    self.deps[i]
                        .iter()
                        .all(|&d| ended[d].as_ref().unwrap().status == TaskStatus::Success),
                    TaskStatus::NotExecuted,
                ),
            };
            let result = if runs {
                let (status, output) = self.outcomes[i].clone();
                TaskResult {
                    caches: Default::default(),
                    status,
                    output,
                }
            } else {
                TaskResult {
                    caches: Default::default(),
                    status: otherwise,
                    output: None,
                }
            };
            ended.push(Some(result));
            ran.push(runs);
        }
        ended.into_iter().map(Option::unwrap).zip(ran).collect()
    }
}

/// Walks `case`, ending ready tasks in a random order; the run is
/// cancelled after `cancel_after` tasks have ended, if given. Returns each
/// task's status, whether it ran, and how many tasks had ended when it
/// was decided.
fn walk(
    case: &Case,
    rng: &mut Rng,
    cancel_after: Option<usize>,
) -> BTreeMap<String, (TaskStatus, bool, usize)> {
    let index: BTreeMap<&str, usize> = case
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let completed = case
        .completed
        .iter()
        .map(|(&i, r)| (case.names[i].clone(), r.clone()))
        .collect();
    let params = BTreeMap::from([("mode".to_string(), case.param.to_string())]);
    let mut walk = Walk::new(&case.pipeline(), params, completed).expect("a DAG");
    let mut seen: BTreeMap<String, (TaskStatus, bool, usize)> = BTreeMap::new();
    let mut ended: BTreeSet<usize> = case.completed.keys().copied().collect();
    let mut ready: Vec<String> = Vec::new();
    let mut finished = 0;
    let mut cancelled = cancel_after == Some(0);
    let take = |decisions: Vec<Decision>,
                finished: usize,
                ready: &mut Vec<String>,
                ended: &mut BTreeSet<usize>,
                seen: &mut BTreeMap<String, (TaskStatus, bool, usize)>| {
        for d in decisions {
            let (task, status, ran) = match d {
                Decision::Run(task) => (task, TaskStatus::Running, true),
                Decision::End {
                    task,
                    status,
                    error,
                } => {
                    assert_eq!(error.is_some(), status == TaskStatus::Error, "{task}");
                    (task, status, false)
                }
            };
            let i = index[task.as_str()];
            for d in &case.deps[i] {
                assert!(
                    ended.contains(d),
                    "{task} decided before its dependency {}",
                    case.names[*d]
                );
            }
            assert!(
                !case.completed.contains_key(&i),
                "completed {task} decided again"
            );
            assert!(
                seen.insert(task.clone(), (status, ran, finished)).is_none(),
                "{task} decided twice"
            );
            if ran {
                ready.push(task);
            } else {
                ended.insert(i);
            }
        }
    };
    let start = walk.start(cancelled);
    take(start, finished, &mut ready, &mut ended, &mut seen);
    while !ready.is_empty() {
        let task = ready.swap_remove(rng.below(ready.len()));
        let i = index[task.as_str()];
        let (status, output) = case.outcomes[i].clone();
        ended.insert(i);
        seen.get_mut(&task).unwrap().0 = status;
        finished += 1;
        if cancel_after == Some(finished) {
            cancelled = true;
        }
        let next = walk.finish(
            &task,
            TaskResult {
                caches: Default::default(),
                status,
                output,
            },
            cancelled,
        );
        take(next, finished, &mut ready, &mut ended, &mut seen);
    }
    assert!(walk.is_done(), "every task ends");
    for (&i, r) in &case.completed {
        seen.insert(case.names[i].clone(), (r.status, false, 0));
    }
    assert_eq!(seen.len(), case.names.len());
    for (name, &(status, _, _)) in &seen {
        assert_eq!(walk.results()[name].status, status, "{name}");
    }
    let want = if cancelled {
        RunStatus::Cancelled
    } else if seen
        .values()
        .all(|(s, _, _)| matches!(s, TaskStatus::Success | TaskStatus::Skipped))
    {
        RunStatus::Success
    } else if seen.values().any(|(s, _, _)| *s == TaskStatus::Unknown)
        && !seen.values().any(|(s, _, _)| *s == TaskStatus::Error)
    {
        // Lost with its agent, and nothing failed: nobody knows how it went.
        RunStatus::Unknown
    } else {
        RunStatus::Error
    };
    assert_eq!(walk.run_status(cancelled), want);
    seen
}

#[test]
fn a_walk_ends_every_task_as_the_rules_say_in_any_order() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..3_000 {
        let case = random_case(&mut rng);
        let model = case.model();
        let seen = walk(&case, &mut rng, None);
        for (i, (want, ran)) in model.iter().enumerate() {
            let (status, did_run, _) = seen[&case.names[i]];
            assert_eq!(
                (status, did_run),
                (want.status, *ran),
                "round {round}: task {} of {:#?}",
                case.names[i],
                case.pipeline()
            );
        }
    }
}

#[test]
fn after_a_cancel_a_walk_starts_nothing_more() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..2_000 {
        let case = random_case(&mut rng);
        let model = case.model();
        let cancel_after = rng.below(case.names.len() + 1);
        let seen = walk(&case, &mut rng, Some(cancel_after));
        for (i, (want, ran)) in model.iter().enumerate() {
            let (status, did_run, decided_at) = seen[&case.names[i]];
            let context = || {
                format!(
                    "round {round}: task {} of {:#?}",
                    case.names[i],
                    case.pipeline()
                )
            };
            if case.completed.contains_key(&i) {
                assert_eq!(status, want.status, "{}", context());
            } else if decided_at < cancel_after {
                // Decided before the cancel: as without one.
                assert_eq!((status, did_run), (want.status, *ran), "{}", context());
            } else {
                assert_eq!(
                    (status, did_run),
                    (TaskStatus::NotExecuted, false),
                    "{}",
                    context()
                );
            }
        }
    }
}
