//! The built-in local agent: the executor, in-process, taking runs the
//! scheduler puts on it. It is an agent like any other to the scheduler and
//! the supervisor (a row in `agents`, leases renewed by heartbeat), so
//! `xene` alone runs workflows end to end on the embedded default.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xene_agent::{Executor, ExecutorConfig, RunRequest};
use xene_core::event::RunEvent;

use super::Context;
use super::dispatch::{self, Link, Prepared};
use crate::config::Args;
use crate::storage::agents::{self, Registration};
use crate::storage::events::{self, Applied};
use crate::storage::runs::{self, Run};
use crate::storage::{StorageError, placement};
use xene_agent::runtime::sandbox::{LEFTOVER_DEADLINE, Sandbox, SandboxError, supervisor_uids};

#[derive(Debug, Clone)]
pub struct LocalAgentConfig {
    pub id: String,
    pub capacity: i64,
    pub labels: BTreeMap<String, String>,
    /// Run tasks without an image as processes on this machine.
    pub allow_shell: bool,
    /// Where shell tasks get their working directories: outside the data
    /// directory, which holds the database.
    pub work_dir: std::path::PathBuf,
    /// Limits of each task's container, and the engine to use.
    pub docker: xene_agent::runtime::docker::DockerConfig,
    /// How shell steps are kept from the server (see `sandbox_for`).
    pub sandbox: Option<Sandbox>,
}

impl LocalAgentConfig {
    pub fn new(id: String, capacity: i64, allow_shell: bool, work_dir: std::path::PathBuf) -> Self {
        let labels = BTreeMap::from([
            ("builtin".to_string(), "true".to_string()),
            ("os".to_string(), std::env::consts::OS.to_string()),
            ("arch".to_string(), std::env::consts::ARCH.to_string()),
        ]);
        Self {
            id,
            capacity,
            labels,
            allow_shell,
            work_dir,
            docker: Default::default(),
            sandbox: None,
        }
    }

    /// `$TMPDIR/xene-UID`, created private: never beside the database.
    pub fn default_work_dir() -> std::path::PathBuf {
        xene_agent::runtime::shell::private_work_root("xene")
            .unwrap_or_else(|_| std::env::temp_dir().join("xene-work"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalAgentError {
    // The cause inside the message (not as a source) so that it comes
    // before what to do.
    #[error(
        "shell tasks on the built-in agent are on (--local-agent-shell), but their sandbox cannot be set up: {0}. \
         Without it, every editor's steps could read this server's secrets. Turn shell tasks off \
         (--local-agent-shell no) and run tasks in Docker or on remote agents, or fix the cause"
    )]
    Sandbox(SandboxError),
    #[error(
        "steps that a previous server on this data directory started are still alive after SIGKILL \
         (pids {0:?}); a retried run would run beside them. See what holds them \
         (`ps -o pid,stat,cmd -p PID`), end them, and start again"
    )]
    Leftovers(Vec<u32>),
    #[error(
        "shell tasks on the built-in agent are on (--local-agent-shell), but secrets were given on the \
         command line, which every process on this machine (a step too) can read in /proc: {0}. \
         Give them in the environment or a file instead, or turn shell tasks off (--local-agent-shell no)"
    )]
    SecretFlags(String),
}

impl From<SandboxError> for LocalAgentError {
    fn from(e: SandboxError) -> Self {
        Self::Sandbox(e)
    }
}

/// The built-in agent's config from the flags, once the steps that a
/// previous server on this data directory left are gone. Before any
/// controller starts: a run retried while its old steps still run would
/// run twice at once.
pub async fn configure(args: &Args) -> Result<Option<LocalAgentConfig>, LocalAgentError> {
    // Canonical: the same directory always gives the same owner.
    let data_dir = std::fs::canonicalize(args.data_dir())
        .or_else(|_| std::path::absolute(args.data_dir()))
        .unwrap_or_else(|_| args.data_dir());
    // Marks this server's supervisors (on their command line), so its next
    // start finds those a crash left.
    let owner = format!("{}@{}", args.local_agent_id(), data_dir.display());
    let leftover_owner = owner.clone();
    let ended = tokio::task::spawn_blocking(move || {
        xene_agent::runtime::supervisor::end_leftovers(
            &leftover_owner,
            &supervisor_uids(),
            LEFTOVER_DEADLINE,
        )
    })
    .await
    .expect("the leftover sweep does not panic");
    match ended {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            supervisors = n,
            "ended the steps a previous server on this data directory left running"
        ),
        Err(alive) => return Err(LocalAgentError::Leftovers(alive)),
    }
    if args.no_local_agent {
        return Ok(None);
    }
    let mut config = LocalAgentConfig::new(
        args.local_agent_id(),
        args.local_agent_capacity,
        args.local_agent_shell(),
        LocalAgentConfig::default_work_dir(),
    );
    config.docker.limits = args.container_limits();
    if config.allow_shell && !args.secrets_in_argv.is_empty() {
        return Err(LocalAgentError::SecretFlags(
            args.secrets_in_argv.join("; "),
        ));
    }
    if config.allow_shell {
        config.sandbox = Some(sandbox_for(args, owner, &data_dir, &config.work_dir).await?);
    }
    Ok(Some(config))
}

/// The sandbox of built-in shell steps, checked end to end: refused when
/// the server's secrets would be within the steps' reach or when a
/// sandboxed step cannot run here.
async fn sandbox_for(
    args: &Args,
    owner: String,
    data_dir: &std::path::Path,
    work_dir: &std::path::Path,
) -> Result<Sandbox, SandboxError> {
    // This very binary, even once an upgrade replaced or removed its file.
    let exe = args
        .local_agent_supervisor
        .clone()
        .unwrap_or_else(|| "/proc/self/exe".into());
    let sandbox = Sandbox::new(exe, owner, args.local_agent_shell_writable.clone())?;
    // Every file a secret of the server's may be in.
    let mut secrets = vec![data_dir.to_path_buf()];
    if let (crate::vault::KeySource::File(file), _) = args.secrets_key_source() {
        secrets.push(file);
    }
    if let Some(path) = args.database_url().strip_prefix("sqlite://") {
        secrets.push(path.split('?').next().unwrap_or(path).into());
    }
    secrets.extend(
        [
            &args.tls_key,
            &args.config,
            &args.access.oidc_client_secret_file,
            &args.metrics_token_file,
        ]
        .into_iter()
        .flatten()
        .cloned(),
    );
    for path in &secrets {
        sandbox.refuse_readable(path)?;
    }
    let probe = sandbox.clone();
    let work_dir = work_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        xene_agent::runtime::shell::ensure_private_dir(&work_dir).map_err(|source| {
            SandboxError::Io {
                dir: work_dir.clone(),
                source,
            }
        })?;
        probe
            .open_to_steps(&work_dir)
            .map_err(|source| SandboxError::Io {
                dir: work_dir.clone(),
                source,
            })?;
        probe.probe(&work_dir)
    })
    .await
    .expect("the sandbox check does not panic")?;
    Ok(sandbox)
}

/// The most events stored in one transaction.
const EVENT_BATCH: usize = 4096;

pub struct LocalAgent {
    ctx: Context,
    config: LocalAgentConfig,
    executor: Arc<Executor>,
    /// Run attempts taken up, with the token that stops them. An entry stays
    /// after its execution ends, until the run is no longer assigned here,
    /// so a `pass` that read the assignments just before the end never
    /// starts the same attempt twice.
    running: Mutex<HashMap<(i64, i64), Execution>>,
    executions: TaskTracker,
    /// Makes this process's executor run ids unique, so two servers (or a
    /// restart) never share a container label or a working directory.
    incarnation: String,
}

struct Execution {
    cancel: CancellationToken,
    done: bool,
}

pub async fn run(ctx: Context, config: LocalAgentConfig) {
    let mut executor_config = ExecutorConfig {
        allow_shell: config.allow_shell,
        docker: config.docker.clone(),
        ..Default::default()
    };
    executor_config.shell.root = config.work_dir.clone();
    // The server's environment holds its own secrets (database URL, TLS
    // key paths): steps get a clean one.
    executor_config.shell.inherit_env = false;
    executor_config.shell.sandbox = config.sandbox.clone();
    if let Err(e) = xene_agent::runtime::shell::ensure_private_dir(&config.work_dir) {
        tracing::error!(dir = %config.work_dir.display(), error = %e, "cannot create the built-in agent's work directory");
    }
    let executor = Arc::new(Executor::new(executor_config));
    let agent = Arc::new(LocalAgent {
        ctx,
        config,
        executor,
        running: Mutex::new(HashMap::new()),
        executions: TaskTracker::new(),
        incarnation: xene_agent::new_run_id(),
    });
    if let Err(e) = agent.join().await {
        tracing::error!(error = %e, "the built-in agent cannot register; it takes no runs");
        return;
    }
    let _connected = agent.ctx.metrics.agent_connected("builtin");
    let wake = agent.ctx.db.news().builtin_agent();
    while agent.ctx.wait(&wake).await {
        if let Err(e) = agent.clone().pass().await {
            tracing::warn!(error = %e, "built-in agent pass failed; retrying at the next resync");
        }
    }
    // Shutting down is not cancelling: stop what runs (removing containers)
    // without recording it, so the runs stay held and are taken up again by
    // this server when it restarts, or by another once their leases end.
    for execution in agent.running.lock().unwrap().values() {
        execution.cancel.cancel();
    }
    agent.executions.close();
    if tokio::time::timeout(std::time::Duration::from_secs(30), agent.executions.wait())
        .await
        .is_err()
    {
        tracing::warn!("runs of the built-in agent did not stop within 30 s");
    }
    let _ = agents::set_offline(&agent.ctx.db, &agent.config.id).await;
}

impl LocalAgent {
    async fn join(&self) -> Result<(), StorageError> {
        let mut runtimes = vec!["docker".to_string()];
        if self.config.allow_shell {
            runtimes.push("shell".to_string());
        }
        // This process just started, so it executes nothing: runs still held
        // under this agent's name died with the previous process. End their
        // leases and requeue them here and now: left to the supervisor
        // (whose lease the dead process may hold for a while), the first
        // `pass` would renew them and execute them again as the same
        // attempt, numbering events from 0 again, so that the new events
        // would be taken for resent ones and dropped. Before registering:
        // once registered, a run placed here would be new, and ending its
        // lease would lose it.
        placement::end_leases_of(&self.ctx.db, &self.config.id).await?;
        runs::expire_leases(&self.ctx.db).await?;
        agents::register(
            &self.ctx.db,
            &Registration {
                id: self.config.id.clone(),
                name: self.config.id.clone(),
                builtin: true,
                labels: self.config.labels.clone(),
                runtimes,
                capacity: self.config.capacity,
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        )
        .await?;
        Ok(())
    }

    async fn pass(self: Arc<Self>) -> Result<(), StorageError> {
        agents::heartbeat(&self.ctx.db, &self.config.id).await?;
        // Only attempts still executing keep their leases: one whose
        // execution ended without its outcome stored lets its lease run out,
        // and the supervisor retries it as a new attempt.
        let live: Vec<(i64, i64)> = {
            let running = self.running.lock().unwrap();
            running
                .iter()
                .filter(|(_, e)| !e.done)
                .map(|(key, _)| *key)
                .collect()
        };
        let lease_ms = self.ctx.timings.run_lease.as_millis() as i64;
        for (id, attempt) in live {
            placement::renew_lease(&self.ctx.db, id, attempt, &self.config.id, lease_ms).await?;
        }
        let assigned = placement::assigned_to(&self.ctx.db, &self.config.id).await?;
        let mut running = self.running.lock().unwrap();
        for run in &assigned {
            match running.get(&(run.id, run.attempt)) {
                Some(execution) if run.cancel_requested => execution.cancel.cancel(),
                Some(_) => {}
                None => {
                    let cancel = CancellationToken::new();
                    if run.cancel_requested {
                        cancel.cancel();
                    }
                    running.insert(
                        (run.id, run.attempt),
                        Execution {
                            cancel: cancel.clone(),
                            done: false,
                        },
                    );
                    let span = tracing::info_span!(
                        "run",
                        run_id = run.id,
                        attempt = run.attempt,
                        workflow = %run.workflow,
                        pipeline = %run.pipeline,
                        agent_id = %self.config.id,
                    );
                    self.ctx.metrics.run_traces.adopt(run.id, &span);
                    self.executions.spawn(tracing::Instrument::instrument(
                        self.clone().execute(run.clone(), cancel),
                        span,
                    ));
                }
            }
        }
        // Held here but no longer ours (finished, or reassigned after a lost
        // lease): forget what ended, stop what still runs.
        running.retain(|key, execution| {
            if assigned.iter().any(|r| (r.id, r.attempt) == *key) {
                return true;
            }
            execution.cancel.cancel();
            !execution.done
        });
        Ok(())
    }

    async fn execute(self: Arc<Self>, run: Run, cancel: CancellationToken) {
        let key = (run.id, run.attempt);
        if let Err(e) = self.execute_inner(run, cancel).await {
            tracing::error!(run = key.0, error = %e, "the built-in agent could not record a run");
        }
        if let Some(execution) = self.running.lock().unwrap().get_mut(&key) {
            execution.done = true;
        }
    }

    async fn execute_inner(&self, run: Run, cancel: CancellationToken) -> Result<(), StorageError> {
        let db = &self.ctx.db;
        let dispatch = match dispatch::prepare(&self.ctx, &run, Link::BuiltIn).await? {
            Prepared::Send(dispatch) => *dispatch,
            Prepared::Failed(_) => return Ok(()),
        };
        let request = RunRequest {
            run_id: format!("{}-{}-{}", run.id, run.attempt, self.incarnation),
            pipeline_name: dispatch.pipeline_name,
            pipeline: dispatch.pipeline,
            params: dispatch.params,
            secrets: dispatch.secrets,
            completed: dispatch.completed,
        };
        // Room for a burst of lines, taken in one transaction: a step that
        // floods its output costs a transaction per few thousand lines, and
        // a quiet one still gets each line stored at once.
        let (tx, mut rx) = mpsc::channel::<RunEvent>(EVENT_BATCH);
        let executor = self.executor.clone();
        let exec_cancel = cancel.clone();
        let handle = tokio::spawn(tracing::Instrument::in_current_span(async move {
            executor.run(request, tx, exec_cancel).await
        }));
        let mut seq = 0i64;
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        while rx.recv_many(&mut batch, EVENT_BATCH).await > 0 {
            if self.ctx.shutdown.is_cancelled() {
                // What the executor reports while stopping for a shutdown is
                // not the run's outcome: drop it and let the executor clean up.
                batch.clear();
                continue;
            }
            // Lines of one step travel as one event, so a step that prints
            // fast costs a row per batch, not per line.
            batch = xene_core::event::coalesce(std::mem::take(&mut batch), 64 * 1024);
            let started = std::time::Instant::now();
            let applied = self.apply(&run, seq, &batch).await;
            self.ctx.metrics.observe_event_apply(started.elapsed());
            match applied {
                Some(Applied::Ok { new }) => {
                    // Events already stored (a retry after an error that
                    // committed after all) are a prefix of the batch.
                    let fresh = &batch[batch.len() - (new as usize).min(batch.len())..];
                    self.ctx.metrics.observe_events(db, run.id, fresh).await;
                }
                Some(Applied::Stale) => cancel.cancel(),
                // Shutting down: what is not stored is resent by nobody, but
                // the run is taken up again from what is.
                None => {
                    batch.clear();
                    continue;
                }
            }
            seq += batch.len() as i64;
            batch.clear();
        }
        match handle.await {
            Ok(_) if self.ctx.shutdown.is_cancelled() => Ok(()),
            Ok(Ok(_report)) => Ok(()),
            Ok(Err(e)) => fail(db, &run, &e.to_string()).await,
            Err(e) => fail(db, &run, &format!("the executor crashed: {e}")).await,
        }
    }
}

impl LocalAgent {
    /// Stores a batch of events, trying again while the database refuses
    /// (busy, restarting): giving up would leave the run half-recorded while
    /// its executor goes on. `None` when the server shuts down first.
    async fn apply(&self, run: &Run, seq: i64, batch: &[RunEvent]) -> Option<Applied> {
        let mut wait = std::time::Duration::from_millis(50);
        loop {
            match events::apply(
                &self.ctx.db,
                run.id,
                run.attempt,
                &self.config.id,
                seq,
                batch,
            )
            .await
            {
                Ok(applied) => return Some(applied),
                Err(e) => {
                    tracing::warn!(run = run.id, error = %e, "cannot store events; trying again")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.ctx.shutdown.cancelled() => return None,
            }
            wait = (wait * 2).min(std::time::Duration::from_secs(5));
        }
    }
}

/// Ends a run that could not execute at all.
async fn fail(db: &crate::storage::Db, run: &Run, reason: &str) -> Result<(), StorageError> {
    runs::fail_attempt(db, run.id, run.attempt, reason).await
}
