//! Runs task attempts, and whole pipeline runs made of them.
//!
//! - [`Executor::run_attempt`]: one try of one task, as a server dispatches
//!   it (`attempt`);
//! - [`Executor::run`]: a whole run in this process (`xene-agent run`):
//!   the DAG walked with `core::plan::Walk`, each task's tries up to its
//!   retries, up to the concurrency limit (`run`).
//!
//! Every change is reported as a [`RunEvent`].

mod attempt;
pub mod files;
mod report;
mod run;
mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xene_core::context::TaskResult;
use xene_core::dag::DagError;
use xene_core::event::RunEvent;
use xene_core::plan::Walk;
use xene_core::protocol::SecretValue;
use xene_core::spec::Pipeline;

pub use attempt::{AttemptIds, AttemptRequest};
pub use files::FileChannel;
pub use report::{RunReport, StepReport, TaskReport};
use task::millis;

use crate::runtime::docker::{DockerConfig, DockerRuntime};
use crate::runtime::shell::{ShellConfig, ShellRuntime};

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

/// Runs attempts and runs. Cloning is cheap and shares the runtimes.
#[derive(Clone)]
pub struct Executor {
    config: Arc<ExecutorConfig>,
    shell: Arc<ShellRuntime>,
    docker: Arc<DockerRuntime>,
}

impl Executor {
    pub fn new(config: ExecutorConfig) -> Self {
        Self {
            shell: Arc::new(ShellRuntime::new(config.shell.clone())),
            docker: Arc::new(DockerRuntime::new(config.docker.clone())),
            config: Arc::new(config),
        }
    }

    /// Removes what an earlier process of this connected agent left in
    /// Docker (see [`DockerRuntime::sweep_owned`]).
    pub async fn sweep_leftovers(&self) {
        self.docker.sweep_owned().await;
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
        xene_core::dag::Dag::new(&request.pipeline)?;
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
        let walk = Walk::new(&request.pipeline, params, request.completed.clone())?;
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
        let (reports, walk) =
            run::RunLoop::new(self, &request, walk, events.clone(), cancel.clone())
                .run(limit)
                .await;
        let status = walk.run_status(cancel.is_cancelled());
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
