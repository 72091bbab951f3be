//! Runs one pipeline run: walks the DAG, starts each task once its
//! dependencies have finished (up to the concurrency limit), decides from
//! their statuses and its `if` whether it runs, and reports every change as
//! a [`RunEvent`].
//!
//! Scheduling is event-driven: the loop only wakes when a task finishes or
//! the run is cancelled; there is no polling.

mod report;
mod task;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xene_core::condition::Condition;
use xene_core::context::{EvalContext, TaskResult};
use xene_core::dag::{Dag, DagError};
use xene_core::event::RunEvent;
use xene_core::protocol::SecretValue;
use xene_core::spec::{Pipeline, Step};
use xene_core::status::{RunStatus, TaskStatus};
use xene_core::template;

pub use report::{RunReport, StepReport, TaskReport};
use task::{TaskEnv, TaskPlan, millis, run_task};

use crate::mask::Masker;
use crate::runtime::docker::{DockerConfig, DockerRuntime};
use crate::runtime::shell::{ShellConfig, ShellRuntime};
use crate::runtime::{Runtime, RuntimeError, StepCommand, TaskSetup};

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Whether tasks without an image may run on this machine's shell.
    /// True for a local run; a server-connected agent needs a flag for it.
    pub allow_shell: bool,
    /// Most tasks running at once; overrides the pipeline's `concurrency`.
    /// `None`: the pipeline's, else [`default_concurrency`].
    pub concurrency: Option<usize>,
    /// How long a step has between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    pub shell: ShellConfig,
    pub docker: DockerConfig,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            allow_shell: true,
            concurrency: None,
            kill_grace: Duration::from_secs(5),
            shell: ShellConfig::default(),
            docker: DockerConfig::default(),
        }
    }
}

/// Twice the CPUs, at least 4: tasks mostly wait on processes, containers
/// and the network rather than compute.
pub fn default_concurrency() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus * 2).max(4)
}

/// A fresh, practically unique run id (time and process based).
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}{:04x}",
        nanos & 0xffff_ffff_ffff,
        std::process::id() & 0xffff
    )
}

/// One run to execute.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub run_id: String,
    pub pipeline_name: String,
    pub pipeline: Pipeline,
    /// Values for the pipeline's params; the rest take their defaults.
    pub params: BTreeMap<String, String>,
    /// Secret values by name; a task gets those it lists in `secrets`.
    pub secrets: BTreeMap<String, SecretValue>,
    /// Tasks an earlier attempt of this run finished (a run resumed after
    /// its agent was lost): they are not run again, and dependants see
    /// their results.
    pub completed: BTreeMap<String, TaskResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("invalid pipeline: {0}")]
    InvalidPipeline(#[from] DagError),
    #[error("invalid params: {0}")]
    InvalidParams(String),
}

pub struct Executor {
    config: ExecutorConfig,
    shell: Arc<ShellRuntime>,
    docker: Arc<DockerRuntime>,
}

impl Executor {
    pub fn new(config: ExecutorConfig) -> Self {
        Self {
            shell: Arc::new(ShellRuntime::new(config.shell.clone())),
            docker: Arc::new(DockerRuntime::new(config.docker.clone())),
            config,
        }
    }

    /// Runs `request` to its end (or until `cancel` fires, when it kills
    /// what runs, removes every context and reports `Cancelled`). Events go
    /// to `events` as they happen; a closed receiver does not stop the run.
    pub async fn run(
        &self,
        request: RunRequest,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> Result<RunReport, ExecutorError> {
        let dag = Dag::new(&request.pipeline)?;
        let params = xene_core::params::resolve(&request.pipeline.params, &request.params)
            .map_err(|faults| {
                ExecutorError::InvalidParams(
                    faults
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        let limit = self
            .config
            .concurrency
            .or(request.pipeline.concurrency.map(|c| c as usize))
            .unwrap_or_else(default_concurrency)
            .max(1);

        let started = Instant::now();
        let _ = events
            .send(RunEvent::RunStarted {
                run_id: request.run_id.clone(),
                pipeline: request.pipeline_name.clone(),
            })
            .await;
        let (cleanups, mut pending_cleanups) = mpsc::unbounded_channel();
        let mut run = Scheduler::new(self, &request, &dag, params, events.clone(), cancel.clone());
        run.run(limit, cleanups).await;
        let reports = run.reports;
        // Every sender is gone with the scheduler's tasks, so this ends.
        while let Some(cleanup) = pending_cleanups.recv().await {
            let _ = cleanup.await;
        }

        // Contexts are removed by their tasks; this catches what a panic or
        // an interrupted setup left.
        self.shell.sweep(&request.run_id).await;
        self.docker.sweep(&request.run_id).await;

        let status = if cancel.is_cancelled() {
            RunStatus::Cancelled
        } else if reports
            .values()
            .all(|t| matches!(t.status, TaskStatus::Success | TaskStatus::Skipped))
        {
            RunStatus::Success
        } else {
            RunStatus::Error
        };
        let duration_ms = millis(started.elapsed());
        let _ = events
            .send(RunEvent::RunFinished {
                status,
                duration_ms,
            })
            .await;
        Ok(RunReport {
            run_id: request.run_id,
            pipeline: request.pipeline_name,
            status,
            duration_ms,
            tasks: reports,
        })
    }
}

/// The state of one run's DAG walk. Tasks are numbered in topological order.
struct Scheduler<'a> {
    executor: &'a Executor,
    request: &'a RunRequest,
    names: Vec<&'a str>,
    dependencies: Vec<Vec<usize>>,
    dependants: Vec<Vec<usize>>,
    /// Dependencies not finished yet, per task.
    waiting: Vec<usize>,
    ready: VecDeque<usize>,
    params: BTreeMap<String, String>,
    /// Finished tasks as templates and conditions see them.
    results: BTreeMap<String, TaskResult>,
    reports: BTreeMap<String, TaskReport>,
    events: mpsc::Sender<RunEvent>,
    cancel: CancellationToken,
    /// Every secret value of the run, masked in all it reports.
    masker: Arc<Masker>,
}

impl<'a> Scheduler<'a> {
    fn new(
        executor: &'a Executor,
        request: &'a RunRequest,
        dag: &'a Dag,
        params: BTreeMap<String, String>,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> Self {
        let names: Vec<&str> = dag.order().iter().map(String::as_str).collect();
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let dependencies: Vec<Vec<usize>> = names
            .iter()
            .map(|n| {
                dag.dependencies(n)
                    .iter()
                    .map(|d| index[d.as_str()])
                    .collect()
            })
            .collect();
        let mut dependants = vec![Vec::new(); names.len()];
        for (task, deps) in dependencies.iter().enumerate() {
            for &dep in deps {
                dependants[dep].push(task);
            }
        }
        let waiting = dependencies.iter().map(Vec::len).collect();
        Self {
            executor,
            request,
            names,
            dependencies,
            dependants,
            waiting,
            ready: VecDeque::new(),
            params,
            results: BTreeMap::new(),
            reports: BTreeMap::new(),
            events,
            cancel,
            masker: Arc::new(Masker::new(
                request.secrets.values().map(SecretValue::expose),
            )),
        }
    }

    async fn run(
        &mut self,
        limit: usize,
        cleanups: mpsc::UnboundedSender<tokio::task::JoinHandle<()>>,
    ) {
        let roots: Vec<usize> = (0..self.names.len())
            .filter(|&i| self.waiting[i] == 0)
            .collect();
        for root in roots {
            self.decide(root).await;
        }
        let mut running: JoinSet<TaskReport> = JoinSet::new();
        let mut running_ids: HashMap<tokio::task::Id, usize> = HashMap::new();
        loop {
            while running.len() < limit {
                let Some(next) = self.ready.pop_front() else {
                    break;
                };
                if self.cancel.is_cancelled() {
                    self.finish(next, TaskReport::not_started(TaskStatus::NotExecuted, None))
                        .await;
                    continue;
                }
                match self.plan(next) {
                    Ok((plan, runtime)) => {
                        let env = TaskEnv {
                            runtime,
                            events: self.events.clone(),
                            cancel: self.cancel.clone(),
                            kill_grace: self.executor.config.kill_grace,
                            cleanups: cleanups.clone(),
                            masker: self.masker.clone(),
                        };
                        // Spawned tasks do not inherit the span they start
                        // in: the task's span names its run's as its parent.
                        let span = tracing::info_span!("task", task = self.names[next]);
                        let handle = running.spawn(tracing::Instrument::instrument(
                            async move {
                                let report = run_task(plan, env).await;
                                tracing::info!(
                                    status = %report.status,
                                    duration_ms = report.duration_ms,
                                    "task finished"
                                );
                                report
                            },
                            span,
                        ));
                        running_ids.insert(handle.id(), next);
                    }
                    Err(error) => {
                        let report = TaskReport::not_started(TaskStatus::Error, Some(error));
                        self.finish(next, report).await;
                    }
                }
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            let (index, report) = match joined {
                Ok((id, report)) => (
                    running_ids.remove(&id).expect("spawned tasks are known"),
                    report,
                ),
                Err(e) => {
                    let index = running_ids
                        .remove(&e.id())
                        .expect("spawned tasks are known");
                    let error = format!("internal error: the task's runner failed: {e}");
                    (
                        index,
                        TaskReport::not_started(TaskStatus::Error, Some(error)),
                    )
                }
            };
            self.record(index, report);
            self.release(index).await;
        }
    }

    /// Called once all of `task`'s dependencies have finished: queues it,
    /// or finishes it as skipped / not executed.
    async fn decide(&mut self, task: usize) {
        let mut pending = vec![task];
        while let Some(task) = pending.pop() {
            // Finished by an earlier attempt of this run: its result stands,
            // and was reported then.
            if let Some(done) = self.request.completed.get(self.names[task]) {
                let report = TaskReport {
                    output: done.output.clone(),
                    ..TaskReport::not_started(done.status, None)
                };
                self.record(task, report);
                pending.extend(self.unblock(task));
                continue;
            }
            let status = self.verdict(task);
            match status {
                None => self.ready.push_back(task),
                Some((status, error)) => {
                    self.finish_quietly(task, TaskReport::not_started(status, error))
                        .await;
                    pending.extend(self.unblock(task));
                }
            }
        }
    }

    /// `None` when the task should run, else the status it ends with.
    fn verdict(&self, task: usize) -> Option<(TaskStatus, Option<String>)> {
        if self.cancel.is_cancelled() {
            return Some((TaskStatus::NotExecuted, None));
        }
        let spec = &self.request.pipeline.tasks[self.names[task]];
        match &spec.condition {
            Some(text) => match Condition::parse(text) {
                Ok(condition) => {
                    let ctx = EvalContext {
                        tasks: &self.results,
                        params: &self.params,
                    };
                    (!condition.eval(&ctx)).then_some((TaskStatus::Skipped, None))
                }
                Err(e) => Some((TaskStatus::Error, Some(format!("condition: {e}")))),
            },
            None => {
                let all_succeeded = self.dependencies[task]
                    .iter()
                    .all(|&d| self.results[self.names[d]].status == TaskStatus::Success);
                (!all_succeeded).then_some((TaskStatus::NotExecuted, None))
            }
        }
    }

    /// Records a finished task and decides the dependants it unblocked.
    async fn finish(&mut self, task: usize, report: TaskReport) {
        self.finish_quietly(task, report).await;
        self.release(task).await;
    }

    async fn release(&mut self, task: usize) {
        for dependant in self.unblock(task) {
            self.decide(dependant).await;
        }
    }

    /// Records a task that never started, with its only event.
    async fn finish_quietly(&mut self, task: usize, report: TaskReport) {
        self.send_finished(task, &report).await;
        self.record(task, report);
    }

    async fn send_finished(&self, task: usize, report: &TaskReport) {
        let _ = self
            .events
            .send(RunEvent::TaskFinished {
                task: self.names[task].to_string(),
                status: report.status,
                output: None,
                duration_ms: 0,
                attempt: 0,
                error: report
                    .error
                    .as_deref()
                    .map(|e| self.masker.mask(e).into_owned()),
                retry_in_ms: None,
            })
            .await;
    }

    fn record(&mut self, task: usize, report: TaskReport) {
        let name = self.names[task].to_string();
        self.results.insert(
            name.clone(),
            TaskResult {
                status: report.status,
                output: report.output.clone(),
            },
        );
        self.reports.insert(name, report);
    }

    /// The dependants of `task` that have no unfinished dependency left.
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

    /// Renders a task's templates against the finished tasks and merges its
    /// environment; an error here fails the task before it starts.
    fn plan(&self, task: usize) -> Result<(TaskPlan, Arc<dyn Runtime>), String> {
        let name = self.names[task];
        let pipeline = &self.request.pipeline;
        let spec = &pipeline.tasks[name];
        let ctx = EvalContext {
            tasks: &self.results,
            params: &self.params,
        };
        let render = |what: &str, text: &str| {
            template::render(text, &ctx).map_err(|e| format!("{what}: {e}"))
        };

        let image = spec
            .image
            .as_deref()
            .map(|i| render("image", i))
            .transpose()?;
        let runtime: Arc<dyn Runtime> = match image {
            Some(_) => self.executor.docker.clone(),
            None if self.executor.config.allow_shell => self.executor.shell.clone(),
            None => return Err(RuntimeError::ShellNotAllowed.to_string()),
        };

        let mut base = BTreeMap::new();
        for (key, value) in pipeline.env.iter().chain(&spec.env) {
            base.insert(key.clone(), render(&format!("env {key}"), value)?);
        }
        let mut secrets = BTreeMap::new();
        for secret in &spec.secrets {
            let value = self
                .request
                .secrets
                .get(secret)
                .ok_or_else(|| format!("secret {secret:?} was not provided"))?;
            secrets.insert(secret.clone(), value.expose().to_string());
        }
        // Values from outside the spec reach scripts only as variables: the
        // run's params, and the outputs of the tasks this one depends on or
        // reads (upstream, so finished; a bound set, not every output).
        let mut data = BTreeMap::new();
        for (param, value) in self.params.iter() {
            data.insert(template::param_var(param), value.clone());
        }
        let mut upstream: Vec<&str> = spec.depends_on.iter().map(String::as_str).collect();
        let texts = spec.steps.iter().chain(&spec.post).flat_map(|s| {
            std::iter::once(s.run.as_str()).chain(s.env.values().map(String::as_str))
        });
        let read: Vec<template::Reference> = texts
            .chain(spec.env.values().map(String::as_str))
            .flat_map(|t| template::references(t).unwrap_or_default())
            .collect();
        upstream.extend(read.iter().filter_map(template::Reference::task));
        for task in upstream {
            // Set even when empty, so nothing of the agent's own
            // environment can stand in for a missing output.
            if let Some(result) = self.results.get(task) {
                data.insert(
                    template::output_var(task),
                    result.output.clone().unwrap_or_default(),
                );
            }
        }
        let command = |step: &Step| -> Result<StepCommand, String> {
            let mut env = base.clone();
            for (key, value) in &step.env {
                env.insert(
                    key.clone(),
                    render(&format!("step {} env {key}", step.name), value)?,
                );
            }
            env.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
            env.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
            env.insert("XENE_RUN_ID".into(), self.request.run_id.clone());
            env.insert("XENE_TASK".into(), name.to_string());
            env.insert("XENE_STEP".into(), step.name.clone());
            Ok(StepCommand {
                name: step.name.clone(),
                script: template::render_script(&step.run, &ctx)
                    .map_err(|e| format!("step {}: {e}", step.name))?,
                env: env.into_iter().collect(),
            })
        };
        let plan = TaskPlan {
            setup: TaskSetup {
                run_id: self.request.run_id.clone(),
                task: name.to_string(),
                attempt: 1,
                image,
            },
            steps: spec.steps.iter().map(command).collect::<Result<_, _>>()?,
            post: spec.post.iter().map(command).collect::<Result<_, _>>()?,
            timeout: spec.timeout,
            retries: spec.retries,
        };
        Ok((plan, runtime))
    }
}
