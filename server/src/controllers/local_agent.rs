//! The built-in local agent: the executor, in-process, running the task
//! attempts the scheduler puts on it. It is an agent like any other to the
//! scheduler and the supervisor (a row in `agents`, leases renewed by
//! heartbeat), so `xene` alone runs workflows end to end on the embedded
//! default.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xene_agent::{AttemptRequest, Executor, ExecutorConfig};
use xene_core::event::RunEvent;
use xene_core::protocol::AttemptRef;

use super::Context;
use super::dispatch::{self, Link, PreparedAttempt};
use crate::config::Args;
use crate::storage::agents::{self, Registration};
use crate::storage::attempts::{self, HeldAttempt};
use crate::storage::events::{self, ApplyError, AttemptApplied};
use crate::storage::{StorageError, now_ms};
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
    /// Task attempts taken up, by id, with the token that stops them. An
    /// entry stays after its execution ends, until the attempt is no longer
    /// held here, so a `pass` that read the held attempts just before the
    /// end never starts the same attempt twice.
    running: Mutex<HashMap<i64, Execution>>,
    executions: TaskTracker,
    /// Makes this process's executor ids unique, so two servers (or a
    /// restart) never share a container label or a working directory.
    incarnation: String,
    /// Moves artifacts' bytes to and from an S3 store's presigned URLs.
    http: reqwest::Client,
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
        http: crate::files::channel::http_client(),
    });
    if let Err(e) = agent.join().await {
        tracing::error!(error = %e, "the built-in agent cannot register; it takes no tasks");
        return;
    }
    let _connected = agent.ctx.metrics.agent_connected("builtin");
    // Heartbeats on their own timer: a pass waits for the database like
    // any query, and a lease must never end on a healthy attempt because
    // passes were slow or rare.
    let beats = tokio::spawn(agent.clone().beat_until_shutdown());
    let wake = agent.ctx.db.news().builtin_agent();
    while agent.ctx.wait(&wake).await {
        if let Err(e) = agent.clone().pass().await {
            tracing::warn!(error = %e, "built-in agent pass failed; retrying at the next resync");
        }
    }
    // Shutting down is not cancelling: stop what runs (removing containers)
    // without recording it, so the attempts stay held and are taken up
    // again by this server when it restarts, or retried once their leases
    // end.
    for execution in agent.running.lock().unwrap().values() {
        execution.cancel.cancel();
    }
    agent.executions.close();
    if tokio::time::timeout(std::time::Duration::from_secs(30), agent.executions.wait())
        .await
        .is_err()
    {
        tracing::warn!("tasks of the built-in agent did not stop within 30 s");
    }
    // Stopped before going offline: a late heartbeat would bring it back.
    beats.abort();
    let _ = beats.await;
    let _ = agents::set_offline(&agent.ctx.db, &agent.config.id).await;
}

impl LocalAgent {
    async fn join(&self) -> Result<(), StorageError> {
        let mut runtimes = vec!["docker".to_string()];
        if self.config.allow_shell {
            runtimes.push("shell".to_string());
        }
        // This process just started, so it executes nothing: attempts still
        // held under this agent's name died with the previous process (runs
        // placed whole, from before task placement, are the readiness
        // controller's: `runs::end_model_1_leases`). End the attempts'
        // leases and deal with them here and now: left to the supervisor
        // (whose lease the dead process may hold for a while), the first
        // `pass` would take them up again as the same attempt, numbering
        // events from 0 again, so that the new events would be taken for
        // resent ones and dropped. Before registering: once registered, an
        // attempt placed here would be new, and ending its lease would lose
        // it.
        attempts::end_leases_of(&self.ctx.db, &self.config.id).await?;
        attempts::expire_leases(&self.ctx.db, now_ms()).await?;
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

    /// Writes the agent's heartbeat and renews its leases five times a
    /// lease (as a remote agent's heartbeats do), until shutdown: two
    /// writes per beat, never per task.
    async fn beat_until_shutdown(self: Arc<Self>) {
        let lease = self.ctx.timings.run_lease;
        let every = (lease / 5).max(std::time::Duration::from_millis(20));
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = timer.tick() => {}
                _ = self.ctx.shutdown.cancelled() => return,
            }
            if let Err(e) = self.beat(lease).await {
                tracing::warn!(error = %e, "the built-in agent's heartbeat failed; trying again");
            }
        }
    }

    async fn beat(&self, lease: std::time::Duration) -> Result<(), StorageError> {
        let db = &self.ctx.db;
        agents::heartbeat(db, &self.config.id).await?;
        let lease_ms = lease.as_millis() as i64;
        attempts::renew_for_agents(db, std::slice::from_ref(&self.config.id), lease_ms).await?;
        Ok(())
    }

    async fn pass(self: Arc<Self>) -> Result<(), StorageError> {
        let db = &self.ctx.db;
        let held = attempts::held_by(db, &self.config.id).await?;
        let mut lost = Vec::new();
        {
            let mut running = self.running.lock().unwrap();
            for attempt in &held {
                match running.get(&attempt.id) {
                    // Its execution ended without its outcome stored: its
                    // lease ends, and the supervisor deals with it.
                    Some(execution) if execution.done => lost.push(attempt.id),
                    Some(execution) if attempt.cancel_requested => execution.cancel.cancel(),
                    Some(_) => {}
                    // Started by another process under this name (one that
                    // died after this one joined): lost with it.
                    None if attempt.started => lost.push(attempt.id),
                    None => {
                        let cancel = CancellationToken::new();
                        if attempt.cancel_requested {
                            cancel.cancel();
                        }
                        running.insert(
                            attempt.id,
                            Execution {
                                cancel: cancel.clone(),
                                done: false,
                            },
                        );
                        // The attempt's task inside its run, as a remote
                        // agent's spans are, in the run's trace.
                        let run_span = tracing::info_span!(
                            "run",
                            run_id = attempt.run_id,
                            workflow = tracing::field::Empty,
                            pipeline = tracing::field::Empty,
                            agent_id = %self.config.id,
                        );
                        self.ctx.metrics.run_traces.adopt(attempt.run_id, &run_span);
                        let span = tracing::info_span!(
                            parent: &run_span,
                            "task",
                            task = %attempt.task,
                            attempt = attempt.number,
                        );
                        self.executions.spawn(tracing::Instrument::instrument(
                            self.clone().execute(attempt.clone(), cancel, run_span),
                            span,
                        ));
                    }
                }
            }
            // Held here but no longer ours (finished, or expired after a
            // lost lease): forget what ended, stop what still runs.
            running.retain(|id, execution| {
                if held.iter().any(|a| a.id == *id) {
                    return true;
                }
                execution.cancel.cancel();
                !execution.done
            });
        }
        for id in lost {
            attempts::end_lease(db, id, &self.config.id).await?;
        }
        Ok(())
    }

    async fn execute(
        self: Arc<Self>,
        attempt: HeldAttempt,
        cancel: CancellationToken,
        run_span: tracing::Span,
    ) {
        let id = attempt.id;
        if let Err(e) = self.execute_inner(attempt, cancel, run_span).await {
            tracing::error!(attempt = id, error = %e, "the built-in agent could not record a task");
        }
        if let Some(execution) = self.running.lock().unwrap().get_mut(&id) {
            execution.done = true;
        }
        // Its slot is free: the next pass forgets it.
        self.ctx.db.news().agent_has_work(Some(&self.config.id));
    }

    async fn execute_inner(
        &self,
        attempt: HeldAttempt,
        cancel: CancellationToken,
        run_span: tracing::Span,
    ) -> Result<(), StorageError> {
        // In process: every output it reads comes inline.
        let dispatch = match dispatch::prepare_attempt(
            &self.ctx,
            &attempt,
            Link::BuiltIn,
            usize::MAX,
        )
        .await?
        {
            PreparedAttempt::Send(dispatch) => *dispatch,
            PreparedAttempt::Failed(_) => return Ok(()),
        };
        run_span.record("workflow", dispatch.workflow.as_str());
        run_span.record("pipeline", dispatch.pipeline_name.as_str());
        let mut request = AttemptRequest::from_dispatch(dispatch, &self.incarnation);
        request.files = Some(crate::files::channel::for_attempt(
            &super::files_service(&self.ctx),
            &self.config.id,
            AttemptRef { id: attempt.id },
            &self.http,
        ));
        // Its steps start once `TaskStarted` is stored, never before: a
        // server killed in between must not leave a task that ran looking
        // never started (placed again without a retry, it would run twice).
        let delivered = Arc::new(tokio::sync::Notify::new());
        request.delivered = Some(delivered.clone());
        let mut started_stored = false;
        // Room for a burst of lines, taken in one transaction: a step that
        // floods its output costs a transaction per few thousand lines, and
        // a quiet one still gets each line stored at once.
        let (tx, mut rx) = mpsc::channel::<RunEvent>(EVENT_BATCH);
        let executor = self.executor.clone();
        let exec_cancel = cancel.clone();
        let handle = tokio::spawn(tracing::Instrument::in_current_span(async move {
            executor.run_attempt(request, tx, exec_cancel).await
        }));
        let r = AttemptRef { id: attempt.id };
        let mut seq = 0u64;
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        while rx.recv_many(&mut batch, EVENT_BATCH).await > 0 {
            if self.ctx.shutdown.is_cancelled() {
                // What the executor reports while stopping for a shutdown is
                // not the attempt's outcome: drop it and let it clean up.
                batch.clear();
                continue;
            }
            // Lines of one step travel as one event, so a step that prints
            // fast costs a row per batch, not per line.
            batch = xene_core::event::coalesce(std::mem::take(&mut batch), 64 * 1024);
            let started = std::time::Instant::now();
            let applied = self.apply(r, seq, &batch).await;
            self.ctx.metrics.observe_event_apply(started.elapsed());
            match applied {
                Some(applied) if applied.stale => cancel.cancel(),
                Some(applied) => {
                    if !started_stored {
                        started_stored = true;
                        delivered.notify_one();
                    }
                    // Events already stored (a retry after an error that
                    // committed after all) are a prefix of the batch.
                    let fresh = &batch[batch.len() - applied.new.min(batch.len())..];
                    super::observe_applied(&self.ctx, attempt.run_id, fresh, &applied).await;
                }
                // Shutting down, or events the store refuses: what is not
                // stored is resent by nobody, and the lease decides.
                None => {
                    // Nothing ran yet when its start could not be stored:
                    // nothing may.
                    if !started_stored {
                        cancel.cancel();
                    }
                    batch.clear();
                    continue;
                }
            }
            seq += batch.len() as u64;
            batch.clear();
        }
        match handle.await {
            Ok(report) => {
                tracing::info!(
                    status = %report.status,
                    duration_ms = report.duration_ms,
                    "task finished"
                );
                Ok(())
            }
            Err(_) if self.ctx.shutdown.is_cancelled() => Ok(()),
            Err(e) => {
                attempts::fail(
                    &self.ctx.db,
                    attempt.id,
                    &format!("the executor crashed: {e}"),
                )
                .await
            }
        }
    }

    /// Stores a batch of events, trying again while the database refuses
    /// (busy, restarting): giving up would leave the attempt half-recorded
    /// while its executor goes on. `None` when the server shuts down first,
    /// or when the events themselves are refused (a bug: logged).
    async fn apply(
        &self,
        attempt: AttemptRef,
        seq: u64,
        batch: &[RunEvent],
    ) -> Option<AttemptApplied> {
        let mut wait = std::time::Duration::from_millis(50);
        loop {
            match events::apply_attempt(&self.ctx.db, attempt, &self.config.id, seq, batch).await {
                Ok(applied) => return Some(applied),
                Err(ApplyError::Storage(e)) => {
                    tracing::warn!(attempt = attempt.id, error = %e, "cannot store events; trying again")
                }
                Err(refused) => {
                    tracing::error!(attempt = attempt.id, error = %refused, "the executor reported events its attempt may not carry");
                    return None;
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
