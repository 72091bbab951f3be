//! The executor against a model (STYLE.md item 15): random DAGs of shell
//! tasks that succeed or fail, some with a `post` step, some with an `if` on
//! a dependency's status, under a random concurrency limit. The workflow is
//! written as YAML, so it goes through the parser too, and run with the real
//! executor and real processes; every task's status, the run's status, the
//! reports and the order of events must be what the spec's rules predict.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use tokio_util::sync::CancellationToken;
use xene_agent::ExecutorConfig;
use xene_core::event::RunEvent;
use xene_core::status::{RunStatus, StepStatus, TaskStatus};

use crate::util::{self, Run, run_with};

/// Most tasks in a case.
const MAX_TASKS: usize = 12;
/// Most dependencies of one task: denser DAGs mostly end `not_executed`
/// after the first failure, which tells less.
const MAX_DEPS: usize = 4;

/// The statuses a condition may compare with: the spec's list.
const STATUSES: [TaskStatus; 5] = [
    TaskStatus::Success,
    TaskStatus::Error,
    TaskStatus::Skipped,
    TaskStatus::NotExecuted,
    TaskStatus::Cancelled,
];

#[derive(Debug, Clone)]
struct Case {
    concurrency: usize,
    /// Task `i` is named `t{i}` and depends only on tasks before it.
    tasks: Vec<Task>,
}

#[derive(Debug, Clone)]
struct Task {
    depends_on: Vec<usize>,
    /// Its one step is `true`, else `false`.
    succeeds: bool,
    /// A post step, `true` or `false`.
    post: Option<bool>,
    condition: Option<Condition>,
}

/// `tasks.t{on}.status == 'status'` (or `!=`), `on` one of the task's
/// dependencies.
#[derive(Debug, Clone)]
struct Condition {
    on: usize,
    equal: bool,
    status: TaskStatus,
}

impl Condition {
    fn text(&self) -> String {
        let op = if self.equal { "==" } else { "!=" };
        format!("tasks.t{}.status {op} '{}'", self.on, self.status.as_str())
    }

    fn holds(&self, statuses: &[TaskStatus]) -> bool {
        (statuses[self.on] == self.status) == self.equal
    }
}

/// A task as generated: its dependencies and the one its condition reads
/// are indices reduced to the tasks before it, so that shrinking (fewer
/// tasks, fewer dependencies, smaller indices) keeps every DAG valid.
type RawTask = (
    Vec<Index>,
    bool,
    Option<bool>,
    Option<(Index, bool, TaskStatus)>,
);

fn raw_task() -> impl Strategy<Value = RawTask> {
    (
        prop::collection::vec(any::<Index>(), 0..=MAX_DEPS),
        prop::bool::weighted(0.75),
        prop::option::of(prop::bool::weighted(0.75)),
        prop::option::weighted(0.4, (any::<Index>(), any::<bool>(), select(&STATUSES[..]))),
    )
}

fn resolve(i: usize, (deps, succeeds, post, condition): RawTask) -> Task {
    let mut depends_on: Vec<usize> = if i == 0 {
        Vec::new()
    } else {
        deps.iter().map(|d| d.index(i)).collect()
    };
    depends_on.sort_unstable();
    depends_on.dedup();
    let condition = condition
        .filter(|_| !depends_on.is_empty())
        .map(|(on, equal, status)| Condition {
            on: depends_on[on.index(depends_on.len())],
            equal,
            status,
        });
    Task {
        depends_on,
        succeeds,
        post,
        condition,
    }
}

fn case() -> impl Strategy<Value = Case> {
    let tasks = prop::collection::vec(raw_task(), 1..=MAX_TASKS);
    (1..=4usize, tasks).prop_map(|(concurrency, tasks)| Case {
        concurrency,
        tasks: tasks
            .into_iter()
            .enumerate()
            .map(|(i, raw)| resolve(i, raw))
            .collect(),
    })
}

fn script(succeeds: bool) -> &'static str {
    if succeeds { "'true'" } else { "'false'" }
}

impl Case {
    fn yaml(&self) -> String {
        let mut yaml = String::from("name: model\npipelines:\n  p:\n    tasks:\n");
        // Last task first: the file's order is not the DAG's.
        for (i, task) in self.tasks.iter().enumerate().rev() {
            yaml += &format!("      t{i}:\n");
            if !task.depends_on.is_empty() {
                let names: Vec<String> = task.depends_on.iter().map(|d| format!("t{d}")).collect();
                yaml += &format!("        depends_on: [{}]\n", names.join(", "));
            }
            if let Some(condition) = &task.condition {
                yaml += &format!("        if: \"{}\"\n", condition.text());
            }
            yaml += &format!("        steps: [{}]\n", script(task.succeeds));
            if let Some(post) = task.post {
                yaml += &format!("        post: [{}]\n", script(post));
            }
        }
        yaml
    }

    /// The spec's rules: a task without `if` runs when all its dependencies
    /// succeeded, else it is `not_executed`; a task with `if` runs iff the
    /// condition holds once its dependencies have finished, else it is
    /// `skipped`; a task that runs succeeds iff its step and its post step
    /// do. Returns each task's status and whether it ran.
    fn model(&self) -> Vec<(TaskStatus, bool)> {
        let mut statuses: Vec<TaskStatus> = Vec::new();
        let mut ran = Vec::new();
        for task in &self.tasks {
            let runs = match &task.condition {
                Some(condition) => condition.holds(&statuses),
                None => task
                    .depends_on
                    .iter()
                    .all(|&d| statuses[d] == TaskStatus::Success),
            };
            let status = if !runs {
                if task.condition.is_some() {
                    TaskStatus::Skipped
                } else {
                    TaskStatus::NotExecuted
                }
            } else if task.succeeds && task.post != Some(false) {
                TaskStatus::Success
            } else {
                TaskStatus::Error
            };
            statuses.push(status);
            ran.push(runs);
        }
        statuses.into_iter().zip(ran).collect()
    }
}

fn step_status(succeeds: bool) -> StepStatus {
    if succeeds {
        StepStatus::Success
    } else {
        StepStatus::Error
    }
}

/// Compares one run with the model; the messages carry the YAML.
fn check(case: &Case, yaml: &str, run: &Run) -> Result<(), TestCaseError> {
    let expected = case.model();
    let run_status = if expected
        .iter()
        .all(|(s, _)| matches!(s, TaskStatus::Success | TaskStatus::Skipped))
    {
        RunStatus::Success
    } else {
        RunStatus::Error
    };
    prop_assert_eq!(run.report.status, run_status, "run status of\n{}", yaml);
    let names: BTreeSet<String> = (0..case.tasks.len()).map(|i| format!("t{i}")).collect();
    let reported: BTreeSet<String> = run.report.tasks.keys().cloned().collect();
    prop_assert_eq!(&reported, &names, "tasks reported for\n{}", yaml);

    // Positions of each task's events.
    let mut started: BTreeMap<&str, Vec<(usize, u32)>> = BTreeMap::new();
    let mut finished: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut running = BTreeSet::new();
    for (position, event) in run.events.iter().enumerate() {
        match event {
            RunEvent::TaskStarted { task, attempt } => {
                started.entry(task).or_default().push((position, *attempt));
                running.insert(task.as_str());
                prop_assert!(
                    running.len() <= case.concurrency,
                    "more than {} tasks running at event {} of\n{}\n{:#?}",
                    case.concurrency,
                    position,
                    yaml,
                    run.events
                );
            }
            RunEvent::TaskFinished {
                task,
                status,
                attempt,
                retry_in_ms,
                ..
            } => {
                let i: usize = task[1..].parse().expect("tasks are t{i}");
                let (expected_status, ran) = expected[i];
                prop_assert_eq!(*status, expected_status, "{} in\n{}", task, yaml);
                prop_assert_eq!(*attempt, u32::from(ran), "{} attempt in\n{}", task, yaml);
                prop_assert_eq!(*retry_in_ms, None, "{} in\n{}", task, yaml);
                finished.entry(task).or_default().push(position);
                running.remove(task.as_str());
            }
            _ => {}
        }
    }
    prop_assert!(
        matches!(run.events.last(), Some(RunEvent::RunFinished { status, .. }) if *status == run_status),
        "last event of\n{}\n{:#?}",
        yaml,
        run.events.last()
    );

    for (i, (task, &(status, ran))) in case.tasks.iter().zip(&expected).enumerate() {
        let name = format!("t{i}");
        let report = run.task(&name);
        prop_assert_eq!(report.status, status, "{} in\n{}", name, yaml);
        prop_assert_eq!(
            report.attempts,
            u32::from(ran),
            "{} attempts in\n{}",
            name,
            yaml
        );
        let mut steps = Vec::new();
        if ran {
            steps.push((step_status(task.succeeds), false));
            steps.extend(task.post.map(|post| (step_status(post), true)));
        }
        let reported: Vec<(StepStatus, bool)> =
            report.steps.iter().map(|s| (s.status, s.post)).collect();
        prop_assert_eq!(reported, steps, "{} steps in\n{}", name, yaml);

        let finishes = finished.get(name.as_str()).cloned().unwrap_or_default();
        prop_assert_eq!(finishes.len(), 1, "TaskFinished of {} in\n{}", name, yaml);
        let starts = started.get(name.as_str()).cloned().unwrap_or_default();
        let expected_starts = if ran { vec![1] } else { vec![] };
        let attempts: Vec<u32> = starts.iter().map(|&(_, attempt)| attempt).collect();
        prop_assert_eq!(
            attempts,
            expected_starts,
            "TaskStarted of {} in\n{}",
            name,
            yaml
        );
        // Nothing of a task happens before all its dependencies finished.
        let first = starts
            .first()
            .map_or(finishes[0], |&(position, _)| position);
        for &dep in &task.depends_on {
            let dep_finished = finished[format!("t{dep}").as_str()][0];
            prop_assert!(
                dep_finished < first,
                "{} began (event {}) before its dependency t{} finished (event {}) in\n{}",
                name,
                first,
                dep,
                dep_finished,
                yaml
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_executor_agrees_with_the_model(case in case()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let yaml = case.yaml();
        let config = ExecutorConfig {
            concurrency: Some(case.concurrency),
            ..util::config()
        };
        let run = runtime.block_on(run_with(
            &yaml,
            config,
            BTreeMap::new(),
            CancellationToken::new(),
            |_| {},
        ));
        check(&case, &yaml, &run)?;
    }
}
