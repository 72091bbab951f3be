//! A whole pipeline run in this process (`xene-agent run`): the DAG walked
//! with `core::plan::Walk`, each task run as attempts (`run_attempt`'s
//! code) up to its retries, with the backoff between them, at most `limit`
//! tasks at once.
//!
//! The loop only wakes when a task ends or the run is cancelled; there is
//! no polling.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use xene_core::context::TaskResult;
use xene_core::event::RunEvent;
use xene_core::plan::{self, Decision, Walk};
use xene_core::status::TaskStatus;

use super::attempt::{AttemptIds, AttemptRequest};
use super::files::{FileChannel, LocalStore};
use super::report::TaskReport;
use super::task::millis;
use super::{Executor, RunRequest};
use crate::mask::Masker;
use crate::runtime::shell::safe_name;
use crate::runtime::{Runtime, TaskSetup};

/// One run's walk under way.
pub(super) struct RunLoop<'a> {
    executor: &'a Executor,
    request: &'a RunRequest,
    walk: Walk,
    ready: VecDeque<String>,
    reports: BTreeMap<String, TaskReport>,
    events: mpsc::Sender<RunEvent>,
    cancel: CancellationToken,
    /// Every secret value of the run, masked in all it reports.
    masker: Arc<Masker>,
    /// Context removals under way; the run waits for them all.
    cleanups: JoinSet<()>,
    /// The run's artifacts and caches, when a task publishes, needs or
    /// caches some: a directory store of this run, removed at its end
    /// (cache entries serve the run's later tasks, not later runs).
    store: Option<Arc<LocalStore>>,
}

/// What a task's tries hand back: the last try's report, and the removal
/// of every try's context, under way.
type Tries = (TaskReport, Vec<JoinHandle<()>>);

impl<'a> RunLoop<'a> {
    pub(super) fn new(
        executor: &'a Executor,
        request: &'a RunRequest,
        walk: Walk,
        events: mpsc::Sender<RunEvent>,
        cancel: CancellationToken,
    ) -> Self {
        let masker = Masker::new(
            request
                .secrets
                .values()
                .map(xene_core::protocol::SecretValue::expose),
        );
        let store = request
            .pipeline
            .tasks
            .values()
            .any(|t| !t.publish.is_empty() || !t.needs.is_empty() || !t.caches.is_empty())
            .then(|| {
                let dir = executor
                    .config
                    .shell
                    .root
                    .join(format!("xene-{}.artifacts", safe_name(&request.run_id)));
                LocalStore::for_run(dir)
                    .map_err(|e| tracing::warn!(error = %e, "cannot make the run's artifact store"))
                    .ok()
            })
            .flatten();
        Self {
            executor,
            request,
            walk,
            ready: VecDeque::new(),
            reports: BTreeMap::new(),
            events,
            cancel,
            masker: Arc::new(masker),
            cleanups: JoinSet::new(),
            store,
        }
    }

    /// Walks the run to its end and waits for every context's removal.
    /// Returns every task's report and the walk (its results).
    pub(super) async fn run(mut self, limit: usize) -> (BTreeMap<String, TaskReport>, Walk) {
        let start = self.walk.start(self.cancel.is_cancelled());
        self.take(start).await;
        let mut running: JoinSet<Tries> = JoinSet::new();
        let mut running_ids: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            while running.len() < limit {
                let Some(next) = self.ready.pop_front() else {
                    break;
                };
                if self.cancel.is_cancelled() {
                    let report = TaskReport::not_started(TaskStatus::NotExecuted, None);
                    self.end(next, report).await;
                    continue;
                }
                let tries = self.tries(&next);
                // Spawned tasks do not inherit the span they start in: the
                // task's span names its run's as its parent.
                let span = tracing::info_span!("task", task = next.as_str());
                let handle = running.spawn(tracing::Instrument::instrument(
                    async move {
                        let tries = tries.await;
                        tracing::info!(
                            status = %tries.0.status,
                            duration_ms = tries.0.duration_ms,
                            "task finished"
                        );
                        tries
                    },
                    span,
                ));
                running_ids.insert(handle.id(), next);
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            let (task, report) = match joined {
                Ok((id, (report, cleanups))) => {
                    for cleanup in cleanups {
                        self.cleanups.spawn(async move {
                            let _ = cleanup.await;
                        });
                    }
                    let task = running_ids.remove(&id).expect("spawned tasks are known");
                    (task, report)
                }
                Err(e) => {
                    let task = running_ids
                        .remove(&e.id())
                        .expect("spawned tasks are known");
                    self.sweep_after_panic(&task);
                    let error = format!("internal error: the task's runner failed: {e}");
                    (
                        task,
                        TaskReport::not_started(TaskStatus::Error, Some(error)),
                    )
                }
            };
            self.finished(task, report).await;
        }
        while self.cleanups.join_next().await.is_some() {}
        if let Some(store) = self.store.clone() {
            // Removing a large store takes a while: off the async workers.
            if let Err(e) = tokio::task::spawn_blocking(move || store.remove()).await {
                tracing::warn!(error = %e, "could not remove the artifact store");
            }
        }
        // Tasks an earlier attempt finished: their results stand.
        for (task, result) in self.walk.results() {
            if !self.reports.contains_key(task) {
                let report = TaskReport {
                    output: result.output.clone(),
                    ..TaskReport::not_started(result.status, None)
                };
                self.reports.insert(task.clone(), report);
            }
        }
        (self.reports, self.walk)
    }

    /// The tries of one task, to be spawned: each an attempt, the next
    /// after the spec's backoff while the last failed and retries are left.
    fn tries(&self, task: &str) -> impl Future<Output = Tries> + Send + 'static {
        let spec = self.request.pipeline.tasks[task].clone();
        let reads = plan::reads(&spec);
        let results = self.walk.results();
        let outputs = reads
            .into_iter()
            .filter_map(|name| {
                let result = results.get(&name)?.clone();
                Some((name, result))
            })
            .collect();
        let retries = spec.retries;
        let mut request = AttemptRequest {
            ids: AttemptIds {
                run_id: self.request.run_id.clone(),
                task: task.to_string(),
                number: 1,
                context: String::new(),
            },
            spec,
            pipeline_env: self.request.pipeline.env.clone(),
            params: self.walk.params().clone(),
            secrets: self.request.secrets.clone(),
            outputs,
            delivered: None,
            files: None,
            // The run's own store: nothing to say no but the spec.
            cache_save: true,
        };
        let store = self.store.clone();
        let executor = self.executor.clone();
        let masker = self.masker.clone();
        let events = self.events.clone();
        let cancel = self.cancel.clone();
        async move {
            let started = Instant::now();
            let tries = retries.count.saturating_add(1);
            let mut cleanups = Vec::new();
            let mut number = 1;
            loop {
                request.ids.number = number;
                request.ids.context = context(&request.ids.run_id, &request.ids.task, number);
                let retry_in = (number < tries).then(|| retries.delay(number));
                // Each try stages its own artifacts, published as it ends.
                let channel = store.as_ref().map(|store| store.channel(&request.spec));
                request.files = channel
                    .clone()
                    .map(|channel| channel as Arc<dyn FileChannel>);
                let (report, cleanup) = executor
                    .attempt(
                        &request,
                        masker.clone(),
                        events.clone(),
                        cancel.clone(),
                        retry_in,
                    )
                    .await;
                cleanups.extend(cleanup);
                if let Some(channel) = channel {
                    channel.finish(report.status == TaskStatus::Success);
                }
                let report = TaskReport {
                    duration_ms: millis(started.elapsed()),
                    ..report
                };
                // As `attempt()` decides: a cancel that came as the try
                // failed ends the task with the try's own status, which its
                // `TaskFinished` already said.
                let retry = retry_in.filter(|_| {
                    report.status == TaskStatus::Error
                        && report.attempts > 0
                        && !cancel.is_cancelled()
                });
                let Some(delay) = retry else {
                    return (report, cleanups);
                };
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        let report = TaskReport { status: TaskStatus::Cancelled, ..report };
                        return (report, cleanups);
                    }
                    () = tokio::time::sleep(delay) => {}
                }
                number += 1;
            }
        }
    }

    /// Records a task that ended and decides what waited on it.
    async fn finished(&mut self, task: String, report: TaskReport) {
        let result = TaskResult {
            caches: report.caches.clone(),
            status: report.status,
            output: report.output.clone(),
        };
        self.reports.insert(task.clone(), report);
        let decisions = self.walk.finish(&task, result, self.cancel.is_cancelled());
        self.take(decisions).await;
    }

    /// Ends a task that never started (its only event is `TaskFinished`)
    /// and decides what waited on it.
    async fn end(&mut self, task: String, report: TaskReport) {
        self.send_ended(&task, &report).await;
        self.finished(task, report).await;
    }

    /// Queues the tasks the walk says to run, and reports those it ended.
    async fn take(&mut self, decisions: Vec<Decision>) {
        for decision in decisions {
            match decision {
                Decision::Run(task) => self.ready.push_back(task),
                Decision::End {
                    task,
                    status,
                    error,
                } => {
                    let error = error.map(|e| self.masker.mask(&e).into_owned());
                    let report = TaskReport::not_started(status, error);
                    self.send_ended(&task, &report).await;
                    self.reports.insert(task, report);
                }
            }
        }
    }

    async fn send_ended(&self, task: &str, report: &TaskReport) {
        let _ = self
            .events
            .send(RunEvent::TaskFinished {
                task: task.to_string(),
                status: report.status,
                output: None,
                duration_ms: 0,
                attempt: 0,
                error: report.error.clone(),
                retry_in_ms: None,
            })
            .await;
    }

    /// A task's runner panicked: what any of its tries left is removed.
    fn sweep_after_panic(&mut self, task: &str) {
        let spec = &self.request.pipeline.tasks[task];
        // Bounded: a panic is a bug, and this only tidies up after it.
        let tries = spec.retries.count.saturating_add(1).min(64);
        let runtime: Arc<dyn Runtime> = match spec.image {
            Some(_) => self.executor.docker.clone(),
            None => self.executor.shell.clone(),
        };
        let run_id = self.request.run_id.clone();
        let task = task.to_string();
        self.cleanups.spawn(async move {
            for number in 1..=tries {
                let setup = TaskSetup {
                    run_id: run_id.clone(),
                    task: task.clone(),
                    attempt: number,
                    context: context(&run_id, &task, number),
                    image: None,
                };
                runtime.sweep(&setup).await;
            }
        });
    }
}

/// A local attempt's context id: unique within the run's id.
fn context(run_id: &str, task: &str, number: u32) -> String {
    format!("{run_id}-{task}-{number}")
}
