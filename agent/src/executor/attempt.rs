//! One task attempt: what a server dispatches to an agent (and what
//! `xene-agent run` runs for each try of a task). Its templates are
//! rendered against the upstream results it was given, one try runs, and
//! its events say so: `TaskStarted`, the steps', `TaskFinished`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xene_core::cache;
use xene_core::context::{EvalContext, TaskResult};
use xene_core::event::RunEvent;
use xene_core::plan::{self, RenderedStep, TaskIds};
use xene_core::protocol::{SecretValue, TaskDispatch};
use xene_core::spec::Task;
use xene_core::status::TaskStatus;
use xene_core::template;

use super::Executor;
use super::files::{FileChannel, RenderedCache, Staging};
use super::report::TaskReport;
use super::task::{self, TaskEnv, TaskPlan, millis};
use crate::mask::Masker;
use crate::runtime::shell::safe_name;
use crate::runtime::{Runtime, RuntimeError, StepCommand, TaskSetup};

/// Who an attempt is, as its steps and its runtime see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptIds {
    /// `XENE_RUN_ID`: this execution of the run (for a server's run,
    /// `{run}-{attempt number}-{agent incarnation}`).
    pub run_id: String,
    /// The task's name (`XENE_TASK`).
    pub task: String,
    /// The attempt's number for this task, from 1 (`XENE_ATTEMPT`).
    pub number: u32,
    /// Unique to this attempt on this machine: it names the attempt's
    /// directory or container and volume (label `xene.attempt`), which the
    /// sweep after the attempt removes.
    pub context: String,
}

/// One try of one task, with everything it reads.
#[derive(Clone)]
pub struct AttemptRequest {
    pub ids: AttemptIds,
    /// The task's spec.
    pub spec: Task,
    /// The pipeline's `env`, not rendered yet.
    pub pipeline_env: BTreeMap<String, String>,
    /// The run's params, resolved (defaults applied).
    pub params: BTreeMap<String, String>,
    /// Secret values by name: the task gets those it names in `secrets`,
    /// and every value given here is masked in what the attempt reports.
    pub secrets: BTreeMap<String, SecretValue>,
    /// The results of the upstream tasks it reads (`core::plan::reads`).
    pub outputs: BTreeMap<String, TaskResult>,
    /// When set, the attempt waits for it after sending `TaskStarted` and
    /// before preparing its context (or for a cancel): the caller notifies
    /// it once the server acknowledged (stored) `TaskStarted`, so that
    /// a server never takes an attempt that started for one that did not
    /// (it places those again without using a retry).
    pub delivered: Option<Arc<Notify>>,
    /// How the attempt fetches its `needs` and publishes its `publish`;
    /// `None` fails a task that has either (a connected agent and the
    /// built-in agent set it; `xene-agent run` gives each try a local one).
    pub files: Option<Arc<dyn FileChannel>>,
    /// Whether the attempt may save its caches (the dispatch's
    /// `cache_save`; `xene-agent run` always may).
    pub cache_save: bool,
}

impl std::fmt::Debug for AttemptRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets print redacted by their own Debug.
        f.debug_struct("AttemptRequest")
            .field("ids", &self.ids)
            .field("spec", &self.spec)
            .field("pipeline_env", &self.pipeline_env)
            .field("params", &self.params)
            .field("secrets", &self.secrets)
            .field("outputs", &self.outputs)
            .field("delivered", &self.delivered.is_some())
            .field("files", &self.files.is_some())
            .field("cache_save", &self.cache_save)
            .finish()
    }
}

impl AttemptRequest {
    /// The request for a server's dispatch, on an agent whose process is
    /// told apart by `incarnation` (`new_run_id()` once per process): the
    /// `XENE_RUN_ID` is `{run}-{number}-{incarnation}`, and the context id
    /// names the server's attempt id. It does not wait for `TaskStarted` to
    /// be delivered until `delivered` is set.
    pub fn from_dispatch(dispatch: TaskDispatch, incarnation: &str) -> Self {
        let run_id = format!("{}-{}-{incarnation}", dispatch.run_id, dispatch.number);
        let context = format!("{run_id}-{}-a{}", dispatch.task, dispatch.attempt.id);
        Self {
            ids: AttemptIds {
                run_id,
                task: dispatch.task,
                number: dispatch.number,
                context,
            },
            spec: dispatch.spec,
            pipeline_env: dispatch.pipeline_env,
            params: dispatch.params,
            secrets: dispatch.secrets,
            outputs: dispatch.outputs,
            delivered: None,
            files: None,
            cache_save: dispatch.cache_save,
        }
    }
}

impl Executor {
    /// Runs one try of one task to its end: renders its templates, sends
    /// `TaskStarted { attempt: number }` before its context is prepared (and
    /// waits for `request.delivered`, when set), then its steps' events,
    /// and `TaskFinished` (`retry_in_ms` is never
    /// set: whoever placed the attempt decides retries). A task that cannot
    /// start (a template that does not render, a missing secret, no shell
    /// allowed) sends only `TaskFinished { attempt: 0, status: error }`.
    ///
    /// `cancel` kills what runs and skips the `post` steps; the attempt then
    /// ends `cancelled`. It returns once the attempt's context is removed
    /// and swept, so nothing of it is left; a closed `events` receiver does
    /// not stop it.
    pub async fn run_attempt(
        &self,
        request: AttemptRequest,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> TaskReport {
        let masker = Arc::new(Masker::new(
            request.secrets.values().map(SecretValue::expose),
        ));
        let (report, cleanup) = self.attempt(&request, masker, events, cancel, None).await;
        if let Some(cleanup) = cleanup {
            let _ = cleanup.await;
        }
        report
    }

    /// One attempt, its context's removal and sweep left running in the
    /// returned handle. `retry_in`: when this try fails (not cancelled),
    /// the caller tries again after that long, and `TaskFinished` says so.
    pub(crate) async fn attempt(
        &self,
        request: &AttemptRequest,
        masker: Arc<Masker>,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
        retry_in: Option<Duration>,
    ) -> (TaskReport, Option<JoinHandle<()>>) {
        let ids = &request.ids;
        let (plan, runtime) = match self.plan(request) {
            Ok(planned) => planned,
            Err(error) => {
                let error = masker.mask(&error).into_owned();
                let _ = events
                    .send(RunEvent::TaskFinished {
                        task: ids.task.clone(),
                        status: TaskStatus::Error,
                        output: None,
                        duration_ms: 0,
                        attempt: 0,
                        error: Some(error.clone()),
                        retry_in_ms: None,
                    })
                    .await;
                return (
                    TaskReport::not_started(TaskStatus::Error, Some(error)),
                    None,
                );
            }
        };
        let env = TaskEnv {
            runtime: runtime.clone(),
            events,
            cancel,
            kill_grace: self.config.kill_grace,
            masker,
        };
        task::send(
            &env,
            RunEvent::TaskStarted {
                task: ids.task.clone(),
                attempt: ids.number,
            },
        )
        .await;
        if let Some(delivered) = &request.delivered {
            // A cancel meanwhile ends the attempt before anything ran.
            tokio::select! {
                () = delivered.notified() => {}
                () = env.cancel.cancelled() => {}
            }
        }
        let mut result = task::run_attempt(&plan, &env).await;
        env.masker.mask_option(&mut result.output);
        env.masker.mask_option(&mut result.error);
        let retry_in =
            retry_in.filter(|_| result.status == TaskStatus::Error && !env.cancel.is_cancelled());
        task::send(
            &env,
            RunEvent::TaskFinished {
                task: ids.task.clone(),
                status: result.status,
                output: result.output.clone(),
                duration_ms: millis(result.duration),
                attempt: ids.number,
                error: result.error.clone(),
                retry_in_ms: retry_in.map(millis),
            },
        )
        .await;

        // Removing the context takes a while (a container) and nothing
        // after the task waits for it; the sweep after it removes what a
        // cancelled prepare or a panic left.
        let teardown = result.teardown.take();
        let setup = plan.setup;
        // The spool is under the shell's root whatever the runtime, so no
        // runtime's sweep knows it for a container; a publish killed while
        // it read out of one leaves it behind otherwise.
        let spool = spool_dir(&self.config.shell.root, &ids.context);
        let cleanup = tokio::spawn(async move {
            if let Some(teardown) = teardown {
                let _ = teardown.await;
            }
            runtime.sweep(&setup).await;
            let removed =
                tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&spool) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err((spool, e)),
                    _ => Ok(()),
                });
            if let Ok(Err((spool, e))) = removed.await {
                tracing::warn!(dir = %spool.display(), error = %e, "could not remove an attempt's artifact spool");
            }
        });
        let report = TaskReport {
            status: result.status,
            attempts: ids.number,
            duration_ms: millis(result.duration),
            output: result.output,
            error: result.error,
            steps: result.steps,
            caches: result.caches,
        };
        (report, Some(cleanup))
    }

    /// The attempt's artifacts and caches, `None` when it has none; an
    /// error when it has some and no channel to stage them with.
    fn staging(
        &self,
        request: &AttemptRequest,
        caches: Vec<RenderedCache>,
    ) -> Result<Option<Staging>, String> {
        let spec = &request.spec;
        if spec.needs.is_empty() && spec.publish.is_empty() && caches.is_empty() {
            return Ok(None);
        }
        let Some(channel) = request.files.clone() else {
            let what = if caches.is_empty() {
                "publishes or needs artifacts"
            } else {
                "has caches"
            };
            return Err(format!(
                "this task {what}, and this agent has no server to stage them with"
            ));
        };
        let spool = spool_dir(&self.config.shell.root, &request.ids.context);
        Ok(Some(Staging::new(
            channel,
            spec.needs.clone(),
            spec.publish.clone(),
            caches,
            request.cache_save,
            spool,
        )))
    }

    /// Chooses the runtime and renders the task; an error here fails the
    /// task before it starts.
    fn plan(&self, request: &AttemptRequest) -> Result<(TaskPlan, Arc<dyn Runtime>), String> {
        let spec = &request.spec;
        let runtime: Arc<dyn Runtime> = match spec.image {
            Some(_) => self.docker.clone(),
            None if self.config.allow_shell => self.shell.clone(),
            None => return Err(RuntimeError::ShellNotAllowed.to_string()),
        };
        let ctx = EvalContext {
            tasks: &request.outputs,
            params: &request.params,
        };
        let ids = TaskIds {
            run_id: &request.ids.run_id,
            task: &request.ids.task,
            attempt: request.ids.number,
        };
        let rendered = plan::render_task(&request.pipeline_env, spec, &ctx, &request.secrets, ids)?;
        let command = |step: RenderedStep| StepCommand {
            name: step.name,
            script: step.script,
            env: step.env.into_iter().collect(),
        };
        let plan = TaskPlan {
            setup: TaskSetup {
                run_id: request.ids.run_id.clone(),
                task: request.ids.task.clone(),
                attempt: request.ids.number,
                context: request.ids.context.clone(),
                image: rendered.image,
            },
            steps: rendered.steps.into_iter().map(command).collect(),
            post: rendered.post.into_iter().map(command).collect(),
            timeout: spec.timeout,
            staging: self.staging(request, render_caches(spec, &ctx)?)?,
            cache_after: spec.caches.iter().filter_map(|c| c.after.clone()).collect(),
        };
        Ok((plan, runtime))
    }
}

/// The task's caches with their key and restore keys rendered as env
/// values are (params, upstream outputs); a template that does not render,
/// or renders to a key a server would refuse, fails the task as an env
/// value's does.
fn render_caches(spec: &Task, ctx: &EvalContext) -> Result<Vec<RenderedCache>, String> {
    // What the key will be once its files' hash is appended, for the check.
    let hashed = "0".repeat(cache::HASH_HEX);
    spec.caches
        .iter()
        .map(|c| {
            let render = |what: &str, text: &str, hash: Option<&str>| {
                let what = format!("cache {} {what}", c.name);
                let text = template::render(text, ctx).map_err(|e| format!("{what}: {e}"))?;
                cache::check_key(&cache::full_key(&text, hash))
                    .map_err(|e| format!("{what}: {e}"))?;
                Ok::<_, String>(text)
            };
            let hash = (!c.hash_files.is_empty()).then_some(hashed.as_str());
            Ok(RenderedCache {
                name: c.name.clone(),
                key: render("key", &c.key, hash)?,
                hash_files: c.hash_files.clone(),
                restore_keys: c
                    .restore_keys
                    .iter()
                    .map(|k| render("restore key", k, None))
                    .collect::<Result<_, _>>()?,
                paths: c.paths.clone(),
                after: c.after.clone(),
            })
        })
        .collect()
}

/// The artifact spool of the attempt `context`: beside its shell directory
/// (`xene-<ctx>`), which the shell's sweep removes with it.
fn spool_dir(root: &Path, context: &str) -> PathBuf {
    root.join(format!("xene-{}.files", safe_name(context)))
}
