//! The shell runtime: each task attempt gets a fresh directory under the
//! run's directory; each step is `sh -e -c SCRIPT` in its own process group,
//! so a timeout or a cancel can kill everything the script started.
//!
//! A step's background processes end with the step (the group is killed once
//! `sh` exits): otherwise a forgotten `sleep 100 &` would hold the output
//! pipes open and hang the task.

use rustix::process::{Pid, Signal};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use xene_core::event::LogStream;

use super::{
    LogSink, MAX_LINE_BYTES, MAX_OUTPUT_BYTES, OUTPUT_FILE, Runtime, RuntimeError, StepCommand,
    StepOutcome, TaskContext, TaskSetup, output_from_bytes,
};

#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// Where run directories go; the system temp dir by default.
    pub root: PathBuf,
    /// Steps see the agent's own environment under theirs. True for a local
    /// run, where a user expects their `PATH` and tools.
    pub inherit_env: bool,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            root: std::env::temp_dir(),
            inherit_env: true,
        }
    }
}

pub struct ShellRuntime {
    config: ShellConfig,
}

impl ShellRuntime {
    pub fn new(config: ShellConfig) -> Self {
        Self { config }
    }

    fn run_dir(&self, run_id: &str) -> PathBuf {
        self.config.root.join(format!("xene-{}", safe_name(run_id)))
    }
}

impl Runtime for ShellRuntime {
    fn prepare<'a>(
        &'a self,
        setup: &'a TaskSetup,
    ) -> BoxFuture<'a, Result<Box<dyn TaskContext>, RuntimeError>> {
        async move {
            let dir = self.run_dir(&setup.run_id).join(format!(
                "{}-{}",
                safe_name(&setup.task),
                setup.attempt
            ));
            // A leftover from an earlier agent with the same run id must not
            // leak files into this attempt.
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| RuntimeError::io(format!("removing {}", dir.display()), e))?;
            }
            std::fs::create_dir_all(&dir)
                .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
            let context = ShellContext {
                output: dir.join(OUTPUT_FILE),
                dir: Some(dir),
                inherit_env: self.config.inherit_env,
            };
            Ok(Box::new(context) as Box<dyn TaskContext>)
        }
        .boxed()
    }

    fn sweep<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, ()> {
        async move {
            let dir = self.run_dir(run_id);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove run directory");
            }
        }
        .boxed()
    }
}

struct ShellContext {
    /// `None` once torn down.
    dir: Option<PathBuf>,
    output: PathBuf,
    inherit_env: bool,
}

impl ShellContext {
    fn dir(&self) -> &Path {
        self.dir.as_deref().expect("context used after teardown")
    }

    async fn run(
        &self,
        step: &StepCommand,
        sink: &LogSink<'_>,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> Result<StepOutcome, RuntimeError> {
        let dir = self.dir();
        let mut cmd = Command::new("sh");
        cmd.arg("-e")
            .arg("-c")
            .arg(&step.script)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if !self.inherit_env {
            cmd.env_clear();
            cmd.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        }
        cmd.envs(step.env.iter().map(|(k, v)| (k, v)));
        cmd.env("XENE_OUTPUT", &self.output);
        cmd.env("XENE_WORKSPACE", dir);

        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError::io("starting sh", e))?;
        let pgid = child
            .id()
            .expect("a child that was not waited for has an id");
        // Kills the group if this future is dropped half-way (its task was
        // aborted or panicked).
        let mut guard = GroupGuard { pgid, armed: true };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let wait = async {
            let (status, killed) = tokio::select! {
                status = child.wait() => (status, false),
                () = cancel.cancelled() => {
                    signal_group(pgid, Signal::TERM);
                    let status = match tokio::time::timeout(grace, child.wait()).await {
                        Ok(status) => status,
                        Err(_) => {
                            signal_group(pgid, Signal::KILL);
                            child.wait().await
                        }
                    };
                    (status, true)
                }
            };
            signal_group(pgid, Signal::KILL);
            (status, killed)
        };
        let ((status, killed), (), ()) = tokio::join!(
            wait,
            pump(stdout, LogStream::Stdout, sink),
            pump(stderr, LogStream::Stderr, sink),
        );
        guard.armed = false;
        let status = status.map_err(|e| RuntimeError::io("waiting for sh", e))?;
        Ok(StepOutcome {
            exit_code: exit_code(status),
            killed,
        })
    }
}

impl TaskContext for ShellContext {
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
        async move {
            let file = match std::fs::File::open(&self.output) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(RuntimeError::io("opening the output file", e)),
            };
            let mut bytes = Vec::new();
            file.take(MAX_OUTPUT_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| RuntimeError::io("reading the output file", e))?;
            output_from_bytes(bytes)
        }
        .boxed()
    }

    fn teardown(mut self: Box<Self>) -> BoxFuture<'static, Result<(), RuntimeError>> {
        let dir = self.dir.take();
        async move {
            if let Some(dir) = dir {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| RuntimeError::io(format!("removing {}", dir.display()), e))?;
            }
            Ok(())
        }
        .boxed()
    }
}

impl Drop for ShellContext {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, Signal::KILL);
        }
    }
}

/// Sends `signal` to every process in the group led by `pgid`.
fn signal_group(pgid: u32, signal: Signal) {
    // 0 or 1 would address our own group or every process we may signal.
    let Some(pgid) = i32::try_from(pgid)
        .ok()
        .filter(|&pgid| pgid > 1)
        .and_then(Pid::from_raw)
    else {
        return;
    };
    // ESRCH (the group is already gone) is fine to ignore.
    let _ = rustix::process::kill_process_group(pgid, signal);
}

async fn pump(stream: impl AsyncRead + Unpin, which: LogStream, sink: &LogSink<'_>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => sink.line(which, &line).await,
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

/// Keeps names usable as one path component (and as a Docker name).
pub(crate) fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
