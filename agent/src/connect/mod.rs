//! The server-connected agent: get a credential (join once), then hold one
//! WebSocket to the server for as long as the agent runs, reconnecting with
//! backoff whenever it drops. Task attempts and their unacknowledged events
//! live across connections in [`attempts::Attempts`].

pub mod attempts;
pub mod batch;
pub mod blobs;
pub mod files;
pub mod join;
pub mod session;
pub mod transport;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::runtime::docker::DockerConfig;
use crate::runtime::shell::{ShellConfig, ensure_private_dir, private_work_root};
use crate::{Executor, ExecutorConfig};
use attempts::Attempts;
use join::{Credential, JoinError};
use session::{SessionConfig, SessionEnd};
use transport::{Endpoint, TlsOptions, TransportError};

#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// `https://HOST[:PORT][/PREFIX]`.
    pub server: String,
    /// Used only when no credential for `server` is stored.
    pub join_token: Option<String>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Most task attempts at once.
    pub capacity: u32,
    /// Tasks without an image may run on this machine's shell.
    pub allow_shell: bool,
    /// Holds the credential and the shell runtime's work directories.
    pub state_dir: PathBuf,
    pub tls: TlsOptions,
    /// Plain `http://`/`ws://` to a host that is not this machine.
    pub allow_insecure: bool,
    /// The shell runtime's task directories; `None` for
    /// [`private_work_root`]`("xene-agent")`. Never inside `state_dir`.
    pub work_dir: Option<PathBuf>,
    pub docker: DockerConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    JoinRefused(JoinError),
    #[error("{0}")]
    State(JoinError),
    #[error("{0}; join again with a new token")]
    Unauthorized(TransportError),
    #[error("the server revoked this agent's credential; join again with a new token")]
    Revoked,
    /// The server closed with code 4000: it speaks another protocol version.
    #[error("the server refused this agent: {0}")]
    Unsupported(String),
}

impl ConnectError {
    /// True when the agent's credential is no longer accepted (exit 3), as
    /// opposed to a wrong setting (exit 2).
    pub fn is_revoked(&self) -> bool {
        matches!(self, Self::Unauthorized(_) | Self::Revoked)
    }
}

/// The state directory to use when none is given: `/var/lib/xene-agent` for
/// root, else under `$XDG_STATE_HOME` or `~/.local/state`.
pub fn default_state_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    // `/proc/self` belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if root {
        return PathBuf::from("/var/lib/xene-agent");
    }
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return Path::new(&state).join("xene-agent");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    Path::new(&home).join(".local/state/xene-agent")
}

/// This machine's name, the default agent name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "xene-agent".into())
}

/// Runs the agent until `shutdown` fires (then stops its task attempts
/// without reporting their ends, and waits a little for the events already
/// sent to be acknowledged) or a fatal
/// error: a revoked credential, or a server that does not speak this
/// agent's protocol (reconnecting would never help).
pub async fn run(config: ConnectConfig, shutdown: CancellationToken) -> Result<(), ConnectError> {
    let endpoint = Endpoint::parse(&config.server, config.allow_insecure)
        .map_err(|e| ConnectError::Invalid(e.to_string()))?;
    let tls = if endpoint.tls {
        Some(transport::tls_config(&config.tls).map_err(|e| ConnectError::Invalid(e.to_string()))?)
    } else {
        None
    };
    // Steps work outside the state dir, so the credential is not a `..`
    // away from their working directory. Only the shell runtime uses it (a
    // Docker-only agent may have no writable temp dir at all).
    let work_dir = match &config.work_dir {
        Some(dir) if dir.starts_with(&config.state_dir) => {
            return Err(ConnectError::Invalid(format!(
                "the work directory {} is inside the state directory {}, which holds the credential",
                dir.display(),
                config.state_dir.display()
            )));
        }
        Some(dir) if config.allow_shell => ensure_private_dir(dir).map(|()| dir.clone()),
        None if config.allow_shell => private_work_root("xene-agent"),
        Some(dir) => Ok(dir.clone()),
        None => Ok(std::env::temp_dir()),
    }
    .map_err(|e| ConnectError::Invalid(format!("work directory: {e}")))?;
    let mut random = Random::seeded();
    let Some(credential) =
        credential(&config, &endpoint, tls.as_ref(), &shutdown, &mut random).await?
    else {
        return Ok(());
    };
    tracing::info!(
        agent_id = credential.agent_id,
        server = endpoint.server,
        "agent starting"
    );

    let executor = Executor::new(ExecutorConfig {
        allow_shell: config.allow_shell,
        shell: ShellConfig {
            root: work_dir,
            // The agent's environment holds its own secrets (the join token
            // among them); steps get a clean one.
            inherit_env: false,
            sandbox: None,
        },
        docker: DockerConfig {
            owner: Some(credential.agent_id.clone()),
            ..config.docker.clone()
        },
        ..ExecutorConfig::default()
    });
    // Before any attempt: whatever carries this agent's label now was left
    // by a killed process of it.
    if tokio::time::timeout(Duration::from_secs(60), executor.sweep_leftovers())
        .await
        .is_err()
    {
        tracing::warn!("the sweep of an earlier run's containers did not end in time");
    }
    let kill_grace = ExecutorConfig::default().kill_grace;
    let http = blobs::BlobHttp::new(&endpoint, tls.as_ref(), &config.tls, config.allow_insecure)
        .map_err(|e| ConnectError::Invalid(e.to_string()))?;
    let mut attempts =
        Attempts::new(Arc::new(executor), config.capacity as usize).with_http(Arc::new(http));
    let mut runtimes = vec!["docker".to_string()];
    if config.allow_shell {
        runtimes.push("shell".into());
    }
    let session_config = SessionConfig {
        labels: config.labels.clone(),
        runtimes,
        capacity: config.capacity,
        welcome_timeout: Duration::from_secs(30),
        shutdown_grace: kill_grace + Duration::from_secs(10),
    };

    let mut failures = 0u32;
    loop {
        if shutdown.is_cancelled() {
            return wind_down(&mut attempts, session_config.shutdown_grace).await;
        }
        match transport::open(&endpoint, tls.as_ref(), &credential.credential).await {
            Ok((sink, stream)) => {
                let metrics = &crate::metrics::METRICS;
                metrics.connects.inc();
                metrics.connected.set(1);
                let end = session::run(&session_config, &mut attempts, sink, stream, &shutdown)
                    .instrument(tracing::info_span!(
                        "agent_session",
                        agent_id = %credential.agent_id
                    ))
                    .await;
                metrics.connected.set(0);
                metrics.disconnects.inc();
                match end {
                    SessionEnd::Shutdown => return Ok(()),
                    SessionEnd::Revoked => return Err(ConnectError::Revoked),
                    SessionEnd::Unsupported(reason) => {
                        // Attempts held from before the server changed
                        // can no longer be reported: end them cleanly.
                        wind_down(&mut attempts, session_config.shutdown_grace).await?;
                        return Err(ConnectError::Unsupported(reason));
                    }
                    SessionEnd::Lost { welcomed, reason } => {
                        if welcomed {
                            failures = 0;
                        }
                        tracing::warn!(reason, "disconnected from the server");
                    }
                }
            }
            Err(e @ TransportError::Unauthorized(_)) => return Err(ConnectError::Unauthorized(e)),
            Err(e @ TransportError::Config(_)) => return Err(ConnectError::Invalid(e.to_string())),
            Err(e) => tracing::warn!(error = %e, "cannot connect to the server"),
        }
        let wait = backoff(failures, &mut random);
        failures = failures.saturating_add(1);
        tracing::info!(wait_ms = wait.as_millis() as u64, "reconnecting");
        idle(&mut attempts, wait, &shutdown).await;
    }
}

/// The stored credential, else one got by joining (retried while the server
/// is unreachable). `None` when shut down before it was got.
async fn credential(
    config: &ConnectConfig,
    endpoint: &Endpoint,
    tls: Option<&Arc<ClientConfig>>,
    shutdown: &CancellationToken,
    random: &mut Random,
) -> Result<Option<Credential>, ConnectError> {
    if let Some(credential) =
        join::load(&config.state_dir, &endpoint.server).map_err(ConnectError::State)?
    {
        return Ok(Some(credential));
    }
    let Some(token) = config.join_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(ConnectError::Invalid(format!(
            "no credential in {} for {}: give a join token (--join-token or XENE_JOIN_TOKEN)",
            config.state_dir.display(),
            endpoint.server
        )));
    };
    let mut failures = 0;
    loop {
        match join::join(endpoint, tls, token, &config.name).await {
            Ok(credential) => {
                join::store(&config.state_dir, &credential).map_err(ConnectError::State)?;
                tracing::info!(agent_id = credential.agent_id, "joined the server");
                return Ok(Some(credential));
            }
            Err(e @ JoinError::Refused { .. }) => return Err(ConnectError::JoinRefused(e)),
            Err(JoinError::Transport(e @ TransportError::Config(_))) => {
                return Err(ConnectError::Invalid(e.to_string()));
            }
            Err(e) => tracing::warn!(error = %e, "cannot join yet"),
        }
        let wait = backoff(failures, random);
        failures += 1;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
}

/// Waits `wait` between connections; attempts go on meanwhile, and their events
/// are kept for the next connection.
async fn idle(attempts: &mut Attempts, wait: Duration, shutdown: &CancellationToken) {
    let sleep = tokio::time::sleep(wait);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return,
            () = shutdown.cancelled() => return,
            report = attempts.next_report() => attempts.apply(report),
        }
    }
}

/// Shut down while disconnected: stop the attempts and wait for their
/// executors to clean up; their last events cannot be delivered.
async fn wind_down(attempts: &mut Attempts, grace: Duration) -> Result<(), ConnectError> {
    attempts.quit_all();
    if tokio::time::timeout(grace, attempts.finish_all())
        .await
        .is_err()
    {
        tracing::warn!("attempts did not end in time");
    }
    Ok(())
}

/// Exponential backoff with full jitter: a random wait of up to 0.5 s, 1 s,
/// 2 s, ... and at most 30 s, so agents that lost the same server do not
/// all come back at once.
pub fn backoff(failures: u32, random: &mut Random) -> Duration {
    let ceiling_ms = (500u64 << failures.min(16)).min(30_000);
    Duration::from_millis(random.next_u64() % (ceiling_ms + 1))
}

/// A small xorshift generator for jitter; not for anything secret.
pub struct Random(u64);

impl Random {
    pub fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let mut random = Random::seeded();
        for failures in 0..40 {
            let ceiling = Duration::from_millis((500u64 << failures.min(16)).min(30_000));
            assert!(backoff(failures, &mut random) <= ceiling);
        }
        let waits: std::collections::HashSet<_> =
            (0..20).map(|_| backoff(10, &mut random)).collect();
        assert!(waits.len() > 1, "waits are random");
    }
}
