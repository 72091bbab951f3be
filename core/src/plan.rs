//! What a run's tasks do once their dependencies have ended, decided the
//! same way wherever a run is walked: by the server over stored rows, by the
//! agent for one task attempt, and by `xene-agent run` in memory ([`Walk`]).
//!
//! - [`verdict`]: does a task whose dependencies have all ended run, or end
//!   skipped, not executed, or failed (a condition that does not parse)?
//! - [`run_status`]: a run's status once every task has ended.
//! - [`reads`]: which upstream results a task needs (what the server sends
//!   with a task attempt).
//! - [`render_task`]: a task's templates rendered into what a runtime runs.

mod walk;

use std::collections::{BTreeMap, BTreeSet};

use crate::condition::Condition;
use crate::context::{EvalContext, TaskResult};
use crate::protocol::SecretValue;
use crate::spec::{Step, Task};
use crate::status::{RunStatus, TaskStatus};
use crate::template;

pub use walk::{Decision, Walk};

/// What becomes of a task whose dependencies have all ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It runs.
    Run,
    /// Its `if` is false: it ends `skipped`.
    Skip,
    /// A dependency did not succeed (and it has no `if`), or the run is
    /// cancelled: it ends `not_executed`.
    NotExecuted,
    /// It cannot be decided (its `if` does not parse): it ends `error` with
    /// this message.
    Fail(String),
}

impl Verdict {
    /// The status a task that does not run ends with, and why; `None` for
    /// [`Verdict::Run`].
    pub fn ending(&self) -> Option<(TaskStatus, Option<String>)> {
        match self {
            Verdict::Run => None,
            Verdict::Skip => Some((TaskStatus::Skipped, None)),
            Verdict::NotExecuted => Some((TaskStatus::NotExecuted, None)),
            Verdict::Fail(error) => Some((TaskStatus::Error, Some(error.clone()))),
        }
    }
}

/// Decides a task once everything it depends on has ended. With an `if`
/// (`condition`), the condition alone decides, evaluated against `results`
/// (the ended tasks it may read) and `params`; without one, the task runs
/// when every dependency succeeded. A cancelled run starts nothing more.
/// A dependency missing from `results` counts as one that did not succeed.
pub fn verdict(
    condition: Option<&str>,
    dependencies: &[String],
    results: &BTreeMap<String, TaskResult>,
    params: &BTreeMap<String, String>,
    cancelled: bool,
) -> Verdict {
    if cancelled {
        return Verdict::NotExecuted;
    }
    match condition {
        Some(text) => match Condition::parse(text) {
            Ok(condition) => {
                let ctx = EvalContext {
                    tasks: results,
                    params,
                };
                if condition.eval(&ctx) {
                    Verdict::Run
                } else {
                    Verdict::Skip
                }
            }
            Err(e) => Verdict::Fail(format!("condition: {e}")),
        },
        None => {
            let all_succeeded = dependencies.iter().all(|d| {
                results
                    .get(d)
                    .is_some_and(|r| r.status == TaskStatus::Success)
            });
            if all_succeeded {
                Verdict::Run
            } else {
                Verdict::NotExecuted
            }
        }
    }
}

/// A run's status once every task has ended: cancelled if the run was,
/// else success when every task succeeded or was skipped, else error when
/// a task failed, else unknown when a task was lost with its agent (nobody
/// knows how it went), else error.
pub fn run_status(statuses: impl IntoIterator<Item = TaskStatus>, cancelled: bool) -> RunStatus {
    if cancelled {
        return RunStatus::Cancelled;
    }
    let (mut fine, mut failed, mut lost) = (true, false, false);
    for status in statuses {
        fine &= matches!(status, TaskStatus::Success | TaskStatus::Skipped);
        failed |= status == TaskStatus::Error;
        lost |= status == TaskStatus::Unknown;
    }
    if fine {
        RunStatus::Success
    } else if lost && !failed {
        RunStatus::Unknown
    } else {
        RunStatus::Error
    }
}

/// The upstream tasks whose results `task` reads: its `depends_on` and
/// every task its templates (image, env, scripts, step env, cache keys and
/// restore keys) and its `if` name. Validation makes sure each is upstream, so all have ended when the
/// task is decided; a template or condition that does not parse reads
/// nothing (the task fails on it anyway).
pub fn reads(task: &Task) -> BTreeSet<String> {
    let mut reads: BTreeSet<String> = output_reads(task);
    // The image and the cache keys are rendered by the agent before any
    // step runs (they need the results, not the steps' XENE_OUTPUT_*).
    let image = task.image.iter().map(String::as_str);
    let keys = task
        .caches
        .iter()
        .flat_map(|c| std::iter::once(&c.key).chain(&c.restore_keys))
        .map(String::as_str);
    for text in image.chain(keys) {
        reads.extend(task_references(text));
    }
    if let Some(condition) = task
        .condition
        .as_deref()
        .and_then(|c| Condition::parse(c).ok())
    {
        reads.extend(
            condition
                .references()
                .iter()
                .filter_map(|r| r.task().map(str::to_string)),
        );
    }
    reads
}

/// The tasks whose output reaches `task`'s steps as `XENE_OUTPUT_*`
/// variables: its `depends_on` and the tasks its scripts and env read.
fn output_reads(task: &Task) -> BTreeSet<String> {
    let mut reads: BTreeSet<String> = task.depends_on.iter().cloned().collect();
    let texts =
        task.steps.iter().chain(&task.post).flat_map(|s| {
            std::iter::once(s.run.as_str()).chain(s.env.values().map(String::as_str))
        });
    for text in texts.chain(task.env.values().map(String::as_str)) {
        reads.extend(task_references(text));
    }
    reads
}

fn task_references(text: &str) -> impl Iterator<Item = String> {
    template::references(text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.task().map(str::to_string))
}

/// Who runs a task, as its steps see it in `XENE_*` variables.
#[derive(Debug, Clone, Copy)]
pub struct TaskIds<'a> {
    /// `XENE_RUN_ID`: the executor's id of this execution.
    pub run_id: &'a str,
    /// `XENE_TASK`: the task's name.
    pub task: &'a str,
    /// `XENE_ATTEMPT`: the attempt's number, from 1.
    pub attempt: u32,
}

/// A task with its templates rendered: what a runtime runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedTask {
    /// The image, rendered; `None` means the shell runtime.
    pub image: Option<String>,
    /// The steps, in order.
    pub steps: Vec<RenderedStep>,
    /// The `post` steps, in order.
    pub post: Vec<RenderedStep>,
}

/// One step ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedStep {
    /// The step's name.
    pub name: String,
    /// The script, its templates turned into variable references.
    pub script: String,
    /// Its whole environment: the pipeline's and the task's env, the step's,
    /// the task's secrets, `XENE_PARAM_*`, `XENE_OUTPUT_*` and the ids.
    pub env: BTreeMap<String, String>,
}

/// Renders `task`'s templates against `ctx` (the ended tasks it reads and
/// the run's params) and merges each step's environment. `secrets` must
/// hold every secret the task names. An error here fails the task before
/// it starts; the message says what did not render.
pub fn render_task(
    pipeline_env: &BTreeMap<String, String>,
    task: &Task,
    ctx: &EvalContext,
    secrets: &BTreeMap<String, SecretValue>,
    ids: TaskIds,
) -> Result<RenderedTask, String> {
    let render =
        |what: &str, text: &str| template::render(text, ctx).map_err(|e| format!("{what}: {e}"));

    let image = task
        .image
        .as_deref()
        .map(|i| render("image", i))
        .transpose()?;
    let mut base = BTreeMap::new();
    for (key, value) in pipeline_env.iter().chain(&task.env) {
        base.insert(key.clone(), render(&format!("env {key}"), value)?);
    }
    let mut values = BTreeMap::new();
    for secret in &task.secrets {
        let value = secrets
            .get(secret)
            .ok_or_else(|| format!("secret {secret:?} was not provided"))?;
        values.insert(secret.clone(), value.expose().to_string());
    }
    // Values from outside the spec reach scripts only as variables: the
    // run's params, and the outputs of the tasks this one depends on or
    // reads (upstream, so ended; a bound set, not every output).
    let mut data = BTreeMap::new();
    for (param, value) in ctx.params {
        data.insert(template::param_var(param), value.clone());
    }
    for upstream in output_reads(task) {
        // Set even when empty, so nothing of the agent's own environment
        // can stand in for a missing output.
        if let Some(result) = ctx.tasks.get(&upstream) {
            data.insert(
                template::output_var(&upstream),
                result.output.clone().unwrap_or_default(),
            );
        }
    }
    let step = |step: &Step| -> Result<RenderedStep, String> {
        let mut env = base.clone();
        for (key, value) in &step.env {
            env.insert(
                key.clone(),
                render(&format!("step {} env {key}", step.name), value)?,
            );
        }
        env.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert("XENE_RUN_ID".into(), ids.run_id.to_string());
        env.insert("XENE_ATTEMPT".into(), ids.attempt.to_string());
        env.insert("XENE_TASK".into(), ids.task.to_string());
        env.insert("XENE_STEP".into(), step.name.clone());
        Ok(RenderedStep {
            name: step.name.clone(),
            script: template::render_script(&step.run, ctx)
                .map_err(|e| format!("step {}: {e}", step.name))?,
            env,
        })
    };
    Ok(RenderedTask {
        image,
        steps: task.steps.iter().map(step).collect::<Result<_, _>>()?,
        post: task.post.iter().map(step).collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests;
