//! One try of one task: prepare a context, fetch its needs and restore its
//! caches, run the steps in order (restoring the caches due after a step),
//! save its caches and publish its artifacts, run the `post` steps whatever
//! happened, read the output, and hand the context's teardown back to run
//! in the background.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xene_core::cache::{CacheHit, env_name};
use xene_core::event::RunEvent;
use xene_core::status::{StepStatus, TaskStatus};

use super::files::{Restored, Staging};
use super::report::StepReport;
use crate::mask::Masker;
use crate::runtime::{LogSink, Runtime, StepCommand, TaskContext, TaskSetup};

/// A task ready to run: templates rendered, environment merged.
pub(crate) struct TaskPlan {
    pub setup: TaskSetup,
    pub steps: Vec<StepCommand>,
    pub post: Vec<StepCommand>,
    pub timeout: Option<Duration>,
    /// Its artifacts and caches, when it has any.
    pub staging: Option<Staging>,
    /// The main steps some cache is restored right after (`after`).
    pub cache_after: BTreeSet<String>,
}

/// What one attempt runs with.
pub(crate) struct TaskEnv {
    pub runtime: Arc<dyn Runtime>,
    pub events: mpsc::Sender<RunEvent>,
    /// Fires on cancel only (timeouts use a child token).
    pub cancel: CancellationToken,
    pub kill_grace: Duration,
    /// The attempt's secret values, masked in output, outputs and errors.
    pub masker: Arc<Masker>,
}

pub(crate) struct AttemptResult {
    pub status: TaskStatus,
    pub output: Option<String>,
    pub error: Option<String>,
    pub steps: Vec<StepReport>,
    pub duration: Duration,
    /// What each restored cache found, by name.
    pub caches: BTreeMap<String, CacheHit>,
    /// The context's removal, under way: nothing after the task needs to
    /// wait for it, but whoever owns the attempt awaits it before its sweep.
    pub teardown: Option<JoinHandle<()>>,
}

/// How the main steps went, before `post`.
#[derive(Default)]
struct Progress {
    failed: bool,
    cancelled: bool,
    error: Option<String>,
}

pub(crate) async fn run_attempt(plan: &TaskPlan, env: &TaskEnv) -> AttemptResult {
    let started = Instant::now();
    let task = plan.setup.task.as_str();
    let mut steps: Vec<StepReport> = plan
        .steps
        .iter()
        .map(|s| not_executed(&s.name, false))
        .chain(plan.post.iter().map(|s| not_executed(&s.name, true)))
        .collect();

    // The timeout covers setup and the main steps; a child token lets it
    // kill what runs without cancelling the run.
    let attempt_cancel = env.cancel.child_token();
    let mut progress = Progress::default();
    let mut context: Option<Box<dyn TaskContext>> = None;
    // The caches restored so far: every step after a restore sees it.
    let mut restored: Vec<Restored> = Vec::new();
    let main = async {
        let prepared = tokio::select! {
            prepared = env.runtime.prepare(&plan.setup) => prepared,
            () = attempt_cancel.cancelled() => {
                // Whatever prepare had created is found by the attempt's sweep.
                progress.failed = true;
                progress.cancelled = env.cancel.is_cancelled();
                return;
            }
        };
        let mut ctx = match prepared {
            Ok(ctx) => ctx,
            Err(e) => {
                progress.failed = true;
                progress.error = Some(e.to_string());
                return;
            }
        };
        // Needs and caches restored before it log under the first step.
        let first = plan.steps.first().map(|s| s.name.as_str());
        if let Some(staging) = plan.staging.as_ref().filter(|s| s.has_needs()) {
            let mut lines = Vec::new();
            let fetched = tokio::select! {
                fetched = staging.fetch(ctx.as_mut(), &mut lines) => Some(fetched),
                () = attempt_cancel.cancelled() => None,
            };
            let error = fetched.as_ref().and_then(|f| f.as_ref().err());
            log_lines(env, task, first, &lines, error).await;
            match fetched {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    progress.failed = true;
                    progress.error = Some(e);
                }
                None => {
                    progress.failed = true;
                    progress.cancelled = env.cancel.is_cancelled();
                }
            }
        }
        if !progress.failed
            && let Some(staging) = plan.staging.as_ref().filter(|s| s.has_caches())
        {
            let at = Restore::Before(first);
            restore(
                staging,
                ctx.as_mut(),
                at,
                env,
                task,
                &attempt_cancel,
                &mut restored,
            )
            .await;
        }
        let steps_to_run = if progress.failed || attempt_cancel.is_cancelled() {
            0
        } else {
            plan.steps.len()
        };
        for (step, report) in plan.steps.iter().zip(steps.iter_mut()).take(steps_to_run) {
            run_step(
                ctx.as_mut(),
                &with_caches(step, &restored),
                report,
                task,
                env,
                &attempt_cancel,
                &mut progress,
            )
            .await;
            if progress.failed {
                break;
            }
            if plan.cache_after.contains(&step.name)
                && let Some(staging) = &plan.staging
            {
                let at = Restore::After(&step.name);
                restore(
                    staging,
                    ctx.as_mut(),
                    at,
                    env,
                    task,
                    &attempt_cancel,
                    &mut restored,
                )
                .await;
            }
        }
        if attempt_cancel.is_cancelled() && !progress.failed {
            // Cancelled (or timed out) while a cache was restored.
            progress.failed = true;
            progress.cancelled = env.cancel.is_cancelled();
        }
        context = Some(ctx);
    };
    let timed_out = with_timeout(main, plan.timeout, &attempt_cancel).await;
    if timed_out && !env.cancel.is_cancelled() {
        progress.failed = true;
        progress.error = Some(format!(
            "timed out after {}",
            xene_core::duration::format(plan.timeout.unwrap_or_default())
        ));
    }
    if env.cancel.is_cancelled() {
        progress.cancelled = true;
    }

    let mut output = None;
    let mut teardown = None;
    if let Some(mut ctx) = context {
        let mut staged = Vec::new();
        // The log lines go with the last main step that ran; when none
        // did (a need could not be fetched), there is nothing to publish.
        let ran = steps[..plan.steps.len()]
            .iter()
            .rfind(|s| s.status != StepStatus::NotExecuted)
            .map(|s| s.name.clone());
        if !progress.failed
            && !progress.cancelled
            && let Some(staging) = plan.staging.as_ref().filter(|s| s.has_caches())
        {
            let step = ran.as_deref().or(steps.first().map(|s| s.name.as_str()));
            save(
                staging,
                ctx.as_mut(),
                env,
                task,
                step,
                &restored,
                &mut progress,
            )
            .await;
        }
        if !progress.cancelled
            && (ran.is_some() || plan.steps.is_empty())
            && let Some(staging) = &plan.staging
        {
            publish(
                staging,
                ctx.as_mut(),
                env,
                task,
                ran.as_deref().or(steps.first().map(|s| s.name.as_str())),
                &mut progress,
                &mut staged,
            )
            .await;
        }
        if !progress.cancelled {
            // Post steps see every cache: one never restored as a miss.
            let mut seen = restored.clone();
            if let Some(staging) = &plan.staging {
                seen.extend(staging.not_restored(&restored));
            }
            run_post(ctx.as_mut(), plan, env, &seen, &mut steps, &mut progress).await;
        }
        match ctx.read_output().await {
            Ok(read) => output = read,
            Err(e) if !progress.failed => {
                progress.failed = true;
                progress.error = Some(e.to_string());
            }
            Err(_) => {}
        }
        if progress.failed && !staged.is_empty() {
            // Staged, then the attempt failed (a later artifact, a post
            // step, the output): the server publishes only the `when:
            // always` artifacts of a failed attempt.
            let line = format!(
                "dropped staged {}: the task failed after they were staged (only `when: always` artifacts are kept from a failed attempt)",
                staged.join(", ")
            );
            let step = ran.as_deref().or(steps.first().map(|s| s.name.as_str()));
            log_lines(env, task, step, &[line], None).await;
        }
        // Removing a container takes a while and nothing after this task
        // needs to wait for it.
        let removal = ctx.teardown();
        let task_name = task.to_string();
        teardown = Some(tokio::spawn(async move {
            if let Err(e) = removal.await {
                tracing::warn!(task = task_name, error = %e, "could not remove a task's context");
            }
        }));
    }

    for report in steps.iter().filter(|s| s.status == StepStatus::NotExecuted) {
        send(env, step_finished(task, report)).await;
    }
    let status = if progress.cancelled {
        TaskStatus::Cancelled
    } else if progress.failed {
        TaskStatus::Error
    } else {
        TaskStatus::Success
    };
    AttemptResult {
        status,
        output,
        error: progress.error,
        steps,
        duration: started.elapsed(),
        caches: restored.iter().map(|r| (r.name.clone(), r.hit)).collect(),
        teardown,
    }
}

/// Where a restore happens: before the first step (its lines under that
/// step), or right after a main step (under it).
#[derive(Clone, Copy)]
enum Restore<'a> {
    Before(Option<&'a str>),
    After(&'a str),
}

/// Restores the caches due at `at` (a restore never fails the task: the
/// staging turns an error into a warning and a miss), says what each found
/// in the log and by `CacheRestored`, and adds them to `restored`. A cancel
/// (or the timeout) meanwhile leaves `cancel` fired for the caller to see.
async fn restore(
    staging: &Staging,
    ctx: &mut dyn TaskContext,
    at: Restore<'_>,
    env: &TaskEnv,
    task: &str,
    cancel: &CancellationToken,
    restored: &mut Vec<Restored>,
) {
    let (after, step) = match at {
        Restore::Before(first) => (None, first),
        Restore::After(step) => (Some(step), Some(step)),
    };
    let mut lines = Vec::new();
    // The restore stops soon at a cancel, and is waited for: nothing of
    // it may still write into the workspace once the task ends.
    let done = staging.restore(ctx, after, &mut lines, cancel).await;
    let done = (!cancel.is_cancelled()).then_some(done);
    log_lines(env, task, step, &lines, None).await;
    for cache in done.iter().flatten() {
        send(
            env,
            RunEvent::CacheRestored {
                task: task.to_string(),
                cache: cache.name.clone(),
                hit: cache.hit,
                key: env.masker.mask(shown_key(cache)).into_owned(),
            },
        )
        .await;
    }
    restored.extend(done.into_iter().flatten());
}

/// The key steps and events name: the entry found, else the full key.
fn shown_key(cache: &Restored) -> &str {
    cache.matched.as_deref().unwrap_or(&cache.key)
}

/// `step` with what each restore found in its environment:
/// `XENE_CACHE_<NAME>` (`hit`, `partial`, `miss`) and `XENE_CACHE_<NAME>_KEY`.
fn with_caches(step: &StepCommand, restored: &[Restored]) -> StepCommand {
    let mut step = step.clone();
    for cache in restored {
        let name = env_name(&cache.name);
        let key_name = format!("{name}_KEY");
        step.env.retain(|(key, _)| *key != name && *key != key_name);
        step.env.push((key_name, shown_key(cache).to_string()));
        step.env.push((name, cache.hit.as_str().to_string()));
    }
    step
}

/// Saves the caches whose restore did not hit, after the main steps
/// succeeded (a save never fails the task: it says why in the log); a
/// cancel meanwhile ends the attempt cancelled.
async fn save(
    staging: &Staging,
    ctx: &mut dyn TaskContext,
    env: &TaskEnv,
    task: &str,
    step: Option<&str>,
    restored: &[Restored],
    progress: &mut Progress,
) {
    let mut lines = Vec::new();
    let saved = tokio::select! {
        () = staging.save(ctx, restored, &mut lines) => true,
        () = env.cancel.cancelled() => false,
    };
    log_lines(env, task, step, &lines, None).await;
    if !saved {
        progress.cancelled = true;
    }
}

/// Stages what the main steps' end calls for (never after a cancel,
/// which ends it half-way); a failure fails the task. `staged` gets the
/// names staged that a failure of the attempt drops (not `when: always`).
async fn publish(
    staging: &Staging,
    ctx: &mut dyn TaskContext,
    env: &TaskEnv,
    task: &str,
    step: Option<&str>,
    progress: &mut Progress,
    staged: &mut Vec<String>,
) {
    let mut lines = Vec::new();
    let published = tokio::select! {
        published = staging.publish(ctx, !progress.failed, &mut lines, staged) => Some(published),
        () = env.cancel.cancelled() => None,
    };
    let error = published.as_ref().and_then(|p| p.as_ref().err());
    log_lines(env, task, step, &lines, error).await;
    match published {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            progress.failed = true;
            progress.error.get_or_insert(e);
        }
        None => progress.cancelled = true,
    }
}

/// The staging's lines in the task's log, and its error on stderr, under
/// `step` (events name one of the task's steps).
async fn log_lines(
    env: &TaskEnv,
    task: &str,
    step: Option<&str>,
    lines: &[String],
    error: Option<&String>,
) {
    use xene_core::event::LogStream;
    let Some(step) = step else {
        return;
    };
    let lines = lines.iter().map(|line| (LogStream::Stdout, line));
    for (stream, line) in lines.chain(error.map(|e| (LogStream::Stderr, e))) {
        send(
            env,
            RunEvent::Log {
                task: task.to_string(),
                step: step.to_string(),
                stream,
                data: env.masker.mask(line).into_owned(),
            },
        )
        .await;
    }
}

/// Runs `post` steps, each whatever the others did, under a timeout of
/// their own (the task's may be what ended the main steps).
async fn run_post(
    ctx: &mut dyn TaskContext,
    plan: &TaskPlan,
    env: &TaskEnv,
    restored: &[Restored],
    steps: &mut [StepReport],
    progress: &mut Progress,
) {
    if plan.post.is_empty() {
        return;
    }
    let post_cancel = env.cancel.child_token();
    let task = plan.setup.task.as_str();
    let reports = &mut steps[plan.steps.len()..];
    let post = async {
        for (step, report) in plan.post.iter().zip(reports.iter_mut()) {
            let mut post_progress = Progress::default();
            run_step(
                ctx,
                &with_caches(step, restored),
                report,
                task,
                env,
                &post_cancel,
                &mut post_progress,
            )
            .await;
            if post_progress.failed {
                progress.failed = true;
                progress.error = progress.error.take().or(post_progress.error);
            }
            if post_progress.cancelled {
                progress.cancelled = true;
                break;
            }
        }
    };
    if with_timeout(post, plan.timeout, &post_cancel).await && !env.cancel.is_cancelled() {
        progress.failed = true;
        progress
            .error
            .get_or_insert_with(|| "post steps timed out".into());
    }
}

async fn run_step(
    ctx: &mut dyn TaskContext,
    step: &StepCommand,
    report: &mut StepReport,
    task: &str,
    env: &TaskEnv,
    cancel: &CancellationToken,
    progress: &mut Progress,
) {
    if cancel.is_cancelled() {
        progress.failed = true;
        progress.cancelled = env.cancel.is_cancelled();
        return;
    }
    send(
        env,
        RunEvent::StepStarted {
            task: task.to_string(),
            step: step.name.clone(),
        },
    )
    .await;
    let started = Instant::now();
    let sink = LogSink {
        events: &env.events,
        task,
        step: &step.name,
        masker: &env.masker,
    };
    let outcome = ctx.exec(step, &sink, cancel, env.kill_grace).await;
    report.duration_ms = millis(started.elapsed());
    match outcome {
        Ok(outcome) => {
            report.exit_code = Some(outcome.exit_code);
            report.status = if outcome.killed && env.cancel.is_cancelled() {
                progress.cancelled = true;
                StepStatus::Cancelled
            } else if outcome.exit_code == 0 && !outcome.killed {
                StepStatus::Success
            } else {
                StepStatus::Error
            };
        }
        Err(e) => {
            report.status = StepStatus::Error;
            progress.error = Some(format!("step {:?}: {e}", step.name));
        }
    }
    if report.status != StepStatus::Success {
        progress.failed = true;
    }
    send(env, step_finished(task, report)).await;
}

/// Runs `work` to its end; if `timeout` passes first, fires `cancel` (which
/// `work` obeys by killing what it runs) and still waits for it. True when
/// the timeout fired.
async fn with_timeout(
    work: impl Future<Output = ()>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> bool {
    let Some(timeout) = timeout else {
        work.await;
        return false;
    };
    tokio::pin!(work);
    tokio::select! {
        () = &mut work => false,
        () = tokio::time::sleep(timeout) => {
            cancel.cancel();
            work.await;
            true
        }
    }
}

fn not_executed(name: &str, post: bool) -> StepReport {
    StepReport {
        name: name.to_string(),
        status: StepStatus::NotExecuted,
        exit_code: None,
        duration_ms: 0,
        post,
    }
}

fn step_finished(task: &str, report: &StepReport) -> RunEvent {
    RunEvent::StepFinished {
        task: task.to_string(),
        step: report.name.clone(),
        status: report.status,
        exit_code: report.exit_code,
        duration_ms: report.duration_ms,
    }
}

pub(crate) async fn send(env: &TaskEnv, event: RunEvent) {
    // Nobody listening is no reason to stop a run.
    let _ = env.events.send(event).await;
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
