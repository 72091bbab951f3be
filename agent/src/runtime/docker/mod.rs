//! The Docker runtime: one container per task attempt, kept alive by a
//! sleep-forever entrypoint, with a fresh volume at `/workspace` that its
//! steps share; each step is a `docker exec` of `sh -e -c SCRIPT`.
//!
//! Every container and volume carries the labels `xene.run=<run id>` (an
//! operator's handle on a run) and `xene.attempt=<context id>`, so
//! [`Runtime::sweep`] finds whatever a crash left of one task attempt. A
//! server's agent adds `xene.agent=<agent id>`: its next start removes
//! what a killed process left ([`DockerRuntime::sweep_owned`]), since the
//! server has placed those attempts again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateOptions};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use xene_core::event::LogStream;

use super::shell::safe_name;
use super::{
    LineBuffer, LogSink, MAX_OUTPUT_BYTES, OUTPUT_FILE, Runtime, RuntimeError, StepCommand,
    StepOutcome, TaskContext, TaskSetup, Workspace, output_from_bytes,
};

mod archive;

/// The label every container and volume of a run carries.
pub const RUN_LABEL: &str = "xene.run";
const TASK_LABEL: &str = "xene.task";
/// The label that tells one task attempt's container and volume apart
/// (the attempt's context id), for the sweep after it.
pub const ATTEMPT_LABEL: &str = "xene.attempt";
/// The label of the connected agent that made a container or volume.
pub const AGENT_LABEL: &str = "xene.agent";
pub const WORKSPACE: &str = "/workspace";

/// PID 1 of a task container: does nothing until the container is removed,
/// and exits at once on SIGTERM (a plain `sleep` as PID 1 would ignore it).
const KEEP_ALIVE: &str = "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done";

#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    /// The engine's address (`unix:///...`, `tcp://...`); `DOCKER_HOST` or
    /// the local socket when `None`.
    pub host: Option<String>,
    pub limits: ContainerLimits,
    /// The connected agent's id, labelled on all it creates; `None` for a
    /// local run and the server's built-in agent.
    pub owner: Option<String>,
}

/// What one task's container may use, so that one task cannot take the
/// machine from the others (and from the agent). 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContainerLimits {
    /// Bytes of memory; swap is not added on top.
    pub memory_bytes: u64,
    /// Processes and threads at once (a fork bomb stops there).
    pub pids: u64,
    /// CPUs, fractions allowed.
    pub cpus: f64,
}

/// The limits as command-line flags, the same for `xene-agent connect` and
/// for `xene`'s built-in agent. Unset CPUs take the default's.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainerLimitArgs {
    /// Memory of each task's container, like 512m or 4g (swap not added);
    /// 0 for no limit.
    #[arg(long = "docker-memory", env = "XENE_DOCKER_MEMORY", value_name = "SIZE", default_value = "2g", value_parser = parse_size)]
    pub memory: u64,
    /// Processes (and threads) at once in each task's container; 0 for no
    /// limit.
    #[arg(
        long = "docker-pids",
        env = "XENE_DOCKER_PIDS",
        value_name = "N",
        default_value_t = 1024
    )]
    pub pids: u64,
    /// CPUs of each task's container, fractions allowed; 0 for no limit
    /// [default: 2, or this machine's CPUs if fewer].
    #[arg(long = "docker-cpus", env = "XENE_DOCKER_CPUS", value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<f64>,
}

impl ContainerLimitArgs {
    /// The limits the flags ask for.
    pub fn limits(&self) -> ContainerLimits {
        ContainerLimits {
            memory_bytes: self.memory,
            pids: self.pids,
            cpus: self.cpus.unwrap_or_else(|| ContainerLimits::default().cpus),
        }
    }
}

impl Default for ContainerLimitArgs {
    fn default() -> Self {
        let d = ContainerLimits::default();
        Self {
            memory: d.memory_bytes,
            pids: d.pids,
            cpus: None,
        }
    }
}

impl Default for ContainerLimits {
    /// 2 GiB, 1,024 processes, 2 CPUs (or this machine's, if fewer: the
    /// engine refuses more CPUs than it has).
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            memory_bytes: 2 << 30,
            pids: 1024,
            cpus: cpus.min(2) as f64,
        }
    }
}

impl ContainerLimits {
    fn apply(&self, host: &mut HostConfig) {
        if self.memory_bytes > 0 {
            let bytes = i64::try_from(self.memory_bytes).unwrap_or(i64::MAX);
            host.memory = Some(bytes);
            host.memory_swap = Some(bytes);
        }
        if self.pids > 0 {
            host.pids_limit = Some(i64::try_from(self.pids).unwrap_or(i64::MAX));
        }
        if self.cpus > 0.0 {
            host.nano_cpus = Some((self.cpus * 1e9) as i64);
        }
    }
}

/// A number of CPUs like `1.5`, for flags; 0 for no limit. Docker itself
/// refuses less than a hundredth of a CPU, when the container starts.
pub fn parse_cpus(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(cpus) if cpus == 0.0 || (0.01..=1024.0).contains(&cpus) => Ok(cpus),
        Ok(cpus) if cpus.is_finite() && cpus > 0.0 => Err(format!(
            "{text:?} CPUs: Docker takes 0.01 to the machine's CPUs (0 for no limit)"
        )),
        _ => Err(format!("{text:?} is not a number of CPUs like 1.5")),
    }
}

/// `512m`, `2g`, `1048576` (bytes), `0` (no limit): a Docker-style size.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{text:?} is not a size like 512m or 2g")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 512m or 2g"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

pub struct DockerRuntime {
    config: DockerConfig,
    /// Connected on first use, so a shell-only run never needs an engine.
    client: OnceCell<Result<Docker, String>>,
    /// Images already seen locally; saves an inspect per task.
    present: Mutex<HashSet<String>>,
}

impl DockerRuntime {
    pub fn new(config: DockerConfig) -> Self {
        Self {
            config,
            client: OnceCell::new(),
            present: Mutex::new(HashSet::new()),
        }
    }

    /// The engine client, with the API version negotiated (the engine may be
    /// older than bollard's default).
    pub async fn client(&self) -> Result<Docker, RuntimeError> {
        let client = self
            .client
            .get_or_init(|| async {
                connect(self.config.host.as_deref()).await.map_err(|e| {
                    tracing::warn!(error = %e, "cannot reach the Docker engine");
                    "cannot reach the engine (the agent's log says why)".to_string()
                })
            })
            .await;
        client.clone().map_err(RuntimeError::Docker)
    }

    async fn ensure_image(&self, docker: &Docker, image: &str) -> Result<(), RuntimeError> {
        if self
            .present
            .lock()
            .expect("image cache lock")
            .contains(image)
        {
            return Ok(());
        }
        match docker.inspect_image(image).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                let options = CreateImageOptionsBuilder::new().from_image(image).build();
                docker
                    .create_image(Some(options), None, None)
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| {
                        tracing::warn!(image, error = %e, "pulling an image failed");
                        RuntimeError::ImageMissing {
                            image: image.to_string(),
                            reason: "the pull failed (the agent's log says why)".into(),
                        }
                    })?;
            }
            Err(e) => return Err(docker_error(e)),
        }
        self.present
            .lock()
            .expect("image cache lock")
            .insert(image.to_string());
        Ok(())
    }
}

impl DockerRuntime {
    /// Removes every container and volume labelled with this agent's id.
    /// Called once at start, before any attempt: what carries the label
    /// then belongs to an earlier process of the agent (killed with its
    /// steps' containers still up), whose attempts the server has placed
    /// again. Nothing to do without an owner or an engine.
    pub async fn sweep_owned(&self) {
        let Some(owner) = &self.config.owner else {
            return;
        };
        // Its own connection: an engine down now (a shell-only agent's)
        // must not stay down for the attempts' cached client.
        let Ok(docker) = connect(self.config.host.as_deref()).await else {
            tracing::debug!("no Docker engine: nothing to sweep");
            return;
        };
        let filters = HashMap::from([("label", vec![format!("{AGENT_LABEL}={owner}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        if let Ok(containers) = docker.list_containers(Some(options)).await {
            for id in containers.into_iter().filter_map(|c| c.id) {
                tracing::warn!(container = %id, "removing a container an earlier run of this agent left");
                let _ = remove_container(&docker, &id).await;
            }
        }
        let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
        if let Ok(volumes) = docker.list_volumes(Some(options)).await {
            for volume in volumes.volumes.unwrap_or_default() {
                tracing::warn!(volume = %volume.name, "removing a volume an earlier run of this agent left");
                let _ = remove_volume(&docker, &volume.name).await;
            }
        }
    }
}

impl Runtime for DockerRuntime {
    fn prepare<'a>(
        &'a self,
        setup: &'a TaskSetup,
    ) -> BoxFuture<'a, Result<Box<dyn TaskContext>, RuntimeError>> {
        async move {
            let image = setup.image.as_deref().expect("docker tasks have an image");
            let docker = self.client().await?;
            self.ensure_image(&docker, image).await?;

            let name = format!("xene-{}", safe_name(&setup.context));
            let mut labels = HashMap::from([
                (RUN_LABEL.to_string(), setup.run_id.clone()),
                (TASK_LABEL.to_string(), setup.task.clone()),
                (ATTEMPT_LABEL.to_string(), setup.context.clone()),
            ]);
            if let Some(owner) = &self.config.owner {
                labels.insert(AGENT_LABEL.to_string(), owner.clone());
            }
            // Built before anything exists, so that any failure below tears
            // down exactly what was created.
            let mut context = DockerContext {
                docker: docker.clone(),
                container: None,
                volume: None,
                torn_down: false,
            };
            let created = async {
                docker
                    .create_volume(VolumeCreateOptions {
                        name: Some(name.clone()),
                        labels: Some(labels.clone()),
                        ..Default::default()
                    })
                    .await
                    .map_err(docker_error)?;
                context.volume = Some(name.clone());

                let body = ContainerCreateBody {
                    image: Some(image.to_string()),
                    entrypoint: Some(vec!["sh".into(), "-c".into(), KEEP_ALIVE.into()]),
                    cmd: Some(Vec::new()),
                    working_dir: Some(WORKSPACE.into()),
                    labels: Some(labels),
                    host_config: Some({
                        let mut host = HostConfig {
                            binds: Some(vec![format!("{name}:{WORKSPACE}")]),
                            ..Default::default()
                        };
                        self.config.limits.apply(&mut host);
                        host
                    }),
                    ..Default::default()
                };
                let options = CreateContainerOptionsBuilder::new().name(&name).build();
                let created = docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(docker_error)?;
                context.container = Some(created.id.clone());
                docker
                    .start_container(
                        &created.id,
                        None::<bollard::query_parameters::StartContainerOptions>,
                    )
                    .await
                    .map_err(docker_error)?;
                Ok::<(), RuntimeError>(())
            }
            .await;
            match created {
                Ok(()) => Ok(Box::new(context) as Box<dyn TaskContext>),
                Err(e) => {
                    if let Err(cleanup) = Box::new(context).teardown().await {
                        tracing::warn!(error = %cleanup, "cleanup after a failed prepare");
                    }
                    Err(e)
                }
            }
        }
        .boxed()
    }

    fn sweep<'a>(&'a self, setup: &'a TaskSetup) -> BoxFuture<'a, ()> {
        async move {
            // Only an agent that used Docker has anything to sweep.
            let Some(Ok(docker)) = self.client.get() else {
                return;
            };
            let filters =
                HashMap::from([("label", vec![format!("{ATTEMPT_LABEL}={}", setup.context)])]);
            let options = ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build();
            if let Ok(containers) = docker.list_containers(Some(options)).await {
                for id in containers.into_iter().filter_map(|c| c.id) {
                    tracing::warn!(container = %id, "removing a leftover container");
                    let _ = remove_container(docker, &id).await;
                }
            }
            let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
            if let Ok(volumes) = docker.list_volumes(Some(options)).await {
                for volume in volumes.volumes.unwrap_or_default() {
                    tracing::warn!(volume = %volume.name, "removing a leftover volume");
                    let _ = remove_volume(docker, &volume.name).await;
                }
            }
        }
        .boxed()
    }
}

struct DockerContext {
    docker: Docker,
    container: Option<String>,
    volume: Option<String>,
    torn_down: bool,
}

impl DockerContext {
    fn container(&self) -> &str {
        self.container
            .as_deref()
            .expect("a prepared context has a container")
    }

    async fn run(
        &self,
        step: &StepCommand,
        sink: &LogSink<'_>,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> Result<StepOutcome, RuntimeError> {
        let mut env: Vec<String> = step.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(format!("XENE_OUTPUT={WORKSPACE}/{OUTPUT_FILE}"));
        env.push(format!("XENE_WORKSPACE={WORKSPACE}"));
        let exec = self
            .docker
            .create_exec(
                self.container(),
                CreateExecOptions {
                    cmd: Some(vec![
                        "sh".to_string(),
                        "-e".into(),
                        "-c".into(),
                        step.script.clone(),
                    ]),
                    env: Some(env),
                    working_dir: Some(WORKSPACE.to_string()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(docker_error)?;
        let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(docker_error)?
        else {
            return Err(RuntimeError::Docker(
                "the engine detached an attached exec".into(),
            ));
        };

        // Docker cannot kill an exec, so the killer signals every process in
        // the container but PID 1 (`kill -1` spares init and itself).
        let killer = async {
            cancel.cancelled().await;
            self.signal_all("TERM").await;
            tokio::time::sleep(grace).await;
            self.signal_all("KILL").await;
            futures::future::pending::<()>().await;
        };
        tokio::pin!(killer);
        let mut stdout = LineBuffer::default();
        let mut stderr = LineBuffer::default();
        loop {
            tokio::select! {
                item = output.next() => match item {
                    Some(Ok(LogOutput::StdOut { message })) => {
                        stdout.push(&message, LogStream::Stdout, sink).await;
                    }
                    Some(Ok(LogOutput::StdErr { message })) => {
                        stderr.push(&message, LogStream::Stderr, sink).await;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(docker_error(e)),
                    None => break,
                },
                () = &mut killer => {}
            }
        }
        stdout.finish(LogStream::Stdout, sink).await;
        stderr.finish(LogStream::Stderr, sink).await;

        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(docker_error)?;
        let exit_code = inspect.exit_code.unwrap_or(-1);
        Ok(StepOutcome {
            exit_code: i32::try_from(exit_code).unwrap_or(-1),
            killed: cancel.is_cancelled(),
        })
    }

    async fn signal_all(&self, signal: &str) {
        let result = async {
            let exec = self
                .docker
                .create_exec(
                    self.container(),
                    CreateExecOptions {
                        cmd: Some(vec![
                            "sh".to_string(),
                            "-c".into(),
                            format!("kill -{signal} -1"),
                        ]),
                        ..Default::default()
                    },
                )
                .await?;
            self.docker
                .start_exec(
                    &exec.id,
                    Some(StartExecOptions {
                        detach: true,
                        ..Default::default()
                    }),
                )
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not signal a step's processes");
        }
    }

    async fn download_output(&self) -> Result<Option<String>, RuntimeError> {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(&format!("{WORKSPACE}/{OUTPUT_FILE}"))
            .build();
        let mut archive = self
            .docker
            .download_from_container(self.container(), Some(options));
        let mut bytes = Vec::new();
        while let Some(chunk) = archive.next().await {
            match chunk {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(docker_error(e)),
            }
            // Headers and padding take a few KiB at most.
            if bytes.len() > MAX_OUTPUT_BYTES + 16 * 1024 {
                return Err(RuntimeError::OutputTooLarge);
            }
        }
        match first_file_in_tar(&bytes) {
            Some(TarEntry::File(content)) => output_from_bytes(content.to_vec()),
            Some(TarEntry::Other) => Err(RuntimeError::OutputNotAFile),
            None => Err(RuntimeError::Docker("unreadable output archive".into())),
        }
    }
}

impl TaskContext for DockerContext {
    fn exec<'a>(
        &'a mut self,
        step: &'a StepCommand,
        sink: &'a LogSink<'a>,
        cancel: &'a CancellationToken,
        grace: Duration,
    ) -> BoxFuture<'a, Result<StepOutcome, RuntimeError>> {
        self.run(step, sink, cancel, grace).boxed()
    }

    fn read_output(&mut self) -> BoxFuture<'_, Result<Option<String>, RuntimeError>> {
        self.download_output().boxed()
    }

    fn teardown(mut self: Box<Self>) -> BoxFuture<'static, Result<(), RuntimeError>> {
        self.torn_down = true;
        let docker = self.docker.clone();
        let container = self.container.take();
        let volume = self.volume.take();
        remove_all(docker, container, volume).boxed()
    }

    fn workspace(&self) -> Workspace<'_> {
        Workspace::Archive(self)
    }
}

impl Drop for DockerContext {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        // Dropped without teardown: its task panicked or was aborted. Clean
        // up in the background; the attempt's sweep catches the rest.
        let (container, volume) = (self.container.take(), self.volume.take());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(remove_all(self.docker.clone(), container, volume));
        }
    }
}

async fn remove_all(
    docker: Docker,
    container: Option<String>,
    volume: Option<String>,
) -> Result<(), RuntimeError> {
    // The volume cannot go while a container uses it, so the container first;
    // both are attempted whatever the first one did.
    let container = match container {
        Some(id) => remove_container(&docker, &id).await,
        None => Ok(()),
    };
    let volume = match volume {
        Some(name) => remove_volume(&docker, &name).await,
        None => Ok(()),
    };
    container.and(volume)
}

/// A client of the engine at `host` (`DOCKER_HOST` or the local socket
/// when `None`), with the API version negotiated.
async fn connect(host: Option<&str>) -> Result<Docker, DockerError> {
    let docker = match host {
        Some(host) if host.starts_with("unix://") => {
            Docker::connect_with_unix(host, 120, bollard::API_DEFAULT_VERSION)
        }
        Some(host) => Docker::connect_with_http(host, 120, bollard::API_DEFAULT_VERSION),
        None => Docker::connect_with_local_defaults(),
    }?;
    docker.negotiate_version().await
}

async fn remove_container(docker: &Docker, id: &str) -> Result<(), RuntimeError> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Err(e) if !is_not_found(&e) => Err(docker_error(e)),
        _ => Ok(()),
    }
}

async fn remove_volume(docker: &Docker, name: &str) -> Result<(), RuntimeError> {
    let options = RemoveVolumeOptionsBuilder::new().force(true).build();
    match docker.remove_volume(name, Some(options)).await {
        Err(e) if !is_not_found(&e) => Err(docker_error(e)),
        _ => Ok(()),
    }
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The engine's own words go to the agent's log only: they may name hosts,
/// paths and internals that the people reading a run need not see.
fn docker_error(e: DockerError) -> RuntimeError {
    tracing::warn!(error = %e, "docker engine error");
    let message = match &e {
        DockerError::DockerResponseServerError { status_code, .. } => match status_code {
            400 => "the engine refused the request (the container's settings or limits?)",
            404 => "the engine lost an object of this task (removed from outside?)",
            409 => "the engine reported a conflict with an existing object",
            _ => "the engine failed",
        },
        _ => "the connection to the engine failed",
    };
    RuntimeError::Docker(format!("{message}; the agent's log says more"))
}

enum TarEntry<'a> {
    File(&'a [u8]),
    /// A link, a FIFO, a device, a directory: not read.
    Other,
}

/// The first entry of a tar archive past any PAX or GNU extension headers
/// (the engine's archive of one file may put them before it).
fn first_file_in_tar(archive: &[u8]) -> Option<TarEntry<'_>> {
    let mut rest = archive;
    while rest.len() >= 512 {
        let header = &rest[..512];
        if header.iter().all(|&b| b == 0) {
            return None;
        }
        let size_field = std::str::from_utf8(&header[124..136]).ok()?;
        let size =
            usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .ok()?;
        let body = rest.get(512..512 + size)?;
        match header[156] {
            b'0' | b'\0' => return Some(TarEntry::File(body)),
            b'x' | b'g' | b'L' | b'K' => {}
            _ => return Some(TarEntry::Other),
        }
        let padded = size.div_ceil(512) * 512;
        rest = rest.get(512 + padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: usize, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{size:011o}\0");
        h[124..136].copy_from_slice(size.as_bytes());
        h[156] = kind;
        h
    }

    #[test]
    fn finds_the_file_after_a_pax_header() {
        let mut tar = header("PaxHeaders/x", 20, b'x');
        tar.extend(vec![b'p'; 20]);
        tar.resize(1024, 0);
        tar.extend(header(".xene-output", 6, b'0'));
        tar.extend(b"hello\n");
        tar.resize(2048, 0);
        tar.extend(vec![0u8; 1024]);
        assert!(matches!(
            first_file_in_tar(&tar),
            Some(TarEntry::File(b"hello\n"))
        ));
        let mut fifo = header(".xene-output", 0, b'6');
        fifo.resize(2048, 0);
        assert!(matches!(first_file_in_tar(&fifo), Some(TarEntry::Other)));
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_cpus("1.5"), Ok(1.5));
        assert_eq!(parse_cpus("0"), Ok(0.0));
        assert_eq!(parse_cpus("0.01"), Ok(0.01));
        assert!(
            parse_cpus("-1").is_err() && parse_cpus("NaN").is_err() && parse_cpus("inf").is_err()
        );
        // Docker would refuse these only when a container starts.
        assert!(parse_cpus("0.001").is_err() && parse_cpus("1e6").is_err());
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
        assert!(parse_size("2x").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999t").is_err());
    }
}
