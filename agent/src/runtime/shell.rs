//! The shell runtime: each task attempt gets a fresh directory under the
//! run's directory; each step is `sh -e -c SCRIPT` in its own session (and so
//! its own process group), so a timeout or a cancel can kill everything the
//! script started.
//!
//! A step's background processes end with the step (the group is killed once
//! `sh` exits): otherwise a forgotten `sleep 100 &` would hold the output
//! pipes open and hang the task. A process that leaves the group and the
//! session (`setsid`) is found by the step's `XENE_STEP_ID`, which it
//! inherits: it is killed when the step times out or is cancelled, or when
//! it still holds the step's output after `sh` exits; and the step stops
//! reading its output soon after `sh` exits, whatever holds it open.
//!
//! With a [`Sandbox`] (the steps of a server's built-in agent), each step
//! runs under its own supervisor process instead (see
//! [`super::supervisor`]): another user when the server is root, a clean
//! environment, Landlock around the workspace, and every process of the step
//! killed when `sh` ends or the server dies. Without one, only the Docker
//! runtime contains a hostile script completely.

use rustix::process::{Pid, Signal};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use xene_core::event::LogStream;

use super::sandbox::Sandbox;
use super::{
    LogSink, MAX_OUTPUT_BYTES, OUTPUT_FILE, Runtime, RuntimeError, StepCommand, StepOutcome,
    TaskContext, TaskSetup, Workspace, output_from_bytes,
};

/// How long the pipes of a step may stay open after its `sh` ended before
/// the step stops reading them: a process that escaped the kill holds them.
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// How much longer than the grace a sandboxed step gets before this process
/// kills its group. Its supervisor ends the step first and, until it exits,
/// is only sent TERM: killing it while it kills the step's tree would hand
/// what is left to init. This is the last resort for a supervisor that
/// hangs, well past the time it takes to kill even a deep tree.
const SUPERVISOR_SLACK: Duration = Duration::from_secs(30);

/// The tmp dir of a sandboxed step's workspace: `DIR.tmp`.
fn tmp_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    dir.with_file_name(name)
}

/// The artifact spool beside an attempt's directory (`xene-<ctx>.files`,
/// as the executor names it), swept with it.
fn spool_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".files");
    dir.with_file_name(name)
}

#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// Where run directories go; the system temp dir by default.
    pub root: PathBuf,
    /// Steps see the agent's own environment under theirs. True for a local
    /// run, where a user expects their `PATH` and tools; false for a
    /// server's agents, whose environment holds their credentials: steps
    /// then get [`super::CLEAN_PATH`], `HOME` set to their workspace, `LANG`, and
    /// their own variables.
    pub inherit_env: bool,
    /// Run each step under a supervisor, sandboxed (which implies a clean
    /// environment).
    pub sandbox: Option<Sandbox>,
}

/// A work directory for the shell runtime outside any data or state
/// directory (which hold databases and credentials):
/// `$TMPDIR/NAME-UID`, created private (0700) and refused when it is not
/// this user's own directory.
pub fn private_work_root(name: &str) -> std::io::Result<PathBuf> {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let root = std::env::temp_dir().join(format!("{name}-{uid}"));
    ensure_private_dir(&root)?;
    Ok(root)
}

/// Creates `dir` (mode 0700) unless it exists; either way it must be a real
/// directory (not a link) owned by this user and closed to others, since a
/// shared temp dir lets anyone create it first.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // Recursive: a minimal image (`FROM scratch`) may have no /tmp yet.
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let me = std::fs::metadata("/proc/self")?.uid();
    if !meta.is_dir() || meta.uid() != me {
        return Err(std::io::Error::other(format!(
            "{} is not a directory of this user",
            dir.display()
        )));
    }
    // Passing through (0711) is allowed: sandboxed steps that run as
    // another user need it to reach their workspace (`Sandbox::open_to_steps`).
    if meta.mode() & 0o066 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            root: std::env::temp_dir(),
            inherit_env: true,
            sandbox: None,
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

    /// The attempt's own directory, straight under the root: removing it
    /// (and its `.tmp` sibling) leaves nothing of the attempt behind.
    fn attempt_dir(&self, setup: &TaskSetup) -> PathBuf {
        self.config
            .root
            .join(format!("xene-{}", safe_name(&setup.context)))
    }
}

impl Runtime for ShellRuntime {
    fn prepare<'a>(
        &'a self,
        setup: &'a TaskSetup,
    ) -> BoxFuture<'a, Result<Box<dyn TaskContext>, RuntimeError>> {
        async move {
            let dir = self.attempt_dir(setup);
            // A leftover from an earlier agent with the same run id must not
            // leak files into this attempt.
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| RuntimeError::io(format!("removing {}", dir.display()), e))?;
            }
            std::fs::create_dir_all(&dir)
                .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
            let sandbox = self.config.sandbox.clone();
            // Beside the workspace, so the workspace starts empty.
            let tmp = sandbox.as_ref().map(|_| tmp_of(&dir));
            if let (Some(sandbox), Some(tmp)) = (&sandbox, &tmp) {
                let prepared = (|| {
                    if tmp.exists() {
                        std::fs::remove_dir_all(tmp)?;
                    }
                    std::fs::create_dir(tmp)?;
                    sandbox.open_to_steps(&self.config.root)?;
                    sandbox.give_to_steps(&dir)?;
                    sandbox.give_to_steps(tmp)
                })();
                prepared.map_err(|e| {
                    RuntimeError::io(
                        format!("preparing {} for a sandboxed step", dir.display()),
                        e,
                    )
                })?;
            }
            let context = ShellContext {
                output: dir.join(OUTPUT_FILE),
                dir: Some(dir),
                tmp,
                inherit_env: self.config.inherit_env,
                sandbox,
            };
            Ok(Box::new(context) as Box<dyn TaskContext>)
        }
        .boxed()
    }

    fn sweep<'a>(&'a self, setup: &'a TaskSetup) -> BoxFuture<'a, ()> {
        async move {
            let dir = self.attempt_dir(setup);
            // A killed agent's spool too: it holds a whole artifact.
            for dir in [tmp_of(&dir), spool_of(&dir), dir] {
                if let Err(e) = std::fs::remove_dir_all(&dir)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a task's directory");
                }
            }
        }
        .boxed()
    }
}

struct ShellContext {
    /// `None` once torn down.
    dir: Option<PathBuf>,
    /// The `TMPDIR` of sandboxed steps.
    tmp: Option<PathBuf>,
    output: PathBuf,
    inherit_env: bool,
    sandbox: Option<Sandbox>,
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
        let step_id = step_id();
        let mut cmd = match (&self.sandbox, &self.tmp) {
            (Some(sandbox), Some(tmp)) => {
                let spec = super::supervisor::Spec {
                    workspace: dir.to_path_buf(),
                    tmp: tmp.clone(),
                    writable: sandbox.writable.clone(),
                    user: sandbox.user,
                    grace_ms: grace.as_millis() as u64,
                    parent: std::process::id(),
                    script: step.script.clone(),
                };
                let mut cmd = Command::new(&sandbox.exe);
                cmd.args(super::supervisor::args(&sandbox.owner, &spec));
                cmd
            }
            _ => {
                let mut cmd = Command::new("sh");
                cmd.arg("-e").arg("-c").arg(&step.script);
                cmd
            }
        };
        // The supervisor kills what is left after the grace itself; this
        // process only steps in when the supervisor does not.
        let grace = if self.sandbox.is_some() {
            grace + SUPERVISOR_SLACK
        } else {
            grace
        };
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        start_session(&mut cmd, self.sandbox.is_none());
        if !self.inherit_env || self.sandbox.is_some() {
            cmd.env_clear();
            cmd.env("PATH", super::CLEAN_PATH);
            cmd.env("HOME", dir);
            cmd.env("LANG", "C.UTF-8");
        }
        cmd.envs(step.env.iter().map(|(k, v)| (k, v)));
        cmd.env("XENE_OUTPUT", &self.output);
        cmd.env("XENE_WORKSPACE", dir);
        cmd.env(STEP_ID_VAR, &step_id);

        let what = if self.sandbox.is_some() {
            "starting the step's supervisor"
        } else {
            "starting sh"
        };
        let mut child = cmd.spawn().map_err(|e| RuntimeError::io(what, e))?;
        let pgid = child
            .id()
            .expect("a child that was not waited for has an id");
        // Kills the step if this future is dropped half-way (its task was
        // aborted or panicked).
        let mut guard = GroupGuard {
            pgid,
            step_id: step_id.clone(),
            armed: true,
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let wait = async {
            let (status, killed) = tokio::select! {
                status = child.wait() => (status, false),
                () = cancel.cancelled() => {
                    signal_group(pgid, Signal::TERM);
                    let status = match timeout(grace, child.wait()).await {
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
        // One loop reads both pipes: lines keep the order they were read in
        // (see `streams`).
        let pumps = super::streams::pump(stdout, stderr, sink);
        tokio::pin!(wait, pumps);
        let mut pumped = false;
        let (status, killed) = loop {
            tokio::select! {
                ended = &mut wait => break ended,
                _ = &mut pumps, if !pumped => pumped = true,
            }
        };
        // Whatever left the group and the session but kept the step's id
        // ends with a stopped step.
        if killed {
            sweep(pgid, &step_id).await;
        }
        if !pumped && timeout(PIPE_GRACE, &mut pumps).await.is_err() {
            // `sh` is gone but its pipes are still open: held by a process
            // that escaped the group.
            sweep(pgid, &step_id).await;
            if timeout(PIPE_GRACE, &mut pumps).await.is_err() {
                sink.line(
                    LogStream::Stderr,
                    b"xene: a process this step started still holds its output open; no longer reading it",
                )
                .await;
            }
        }
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
            match read_regular_file(&self.output, MAX_OUTPUT_BYTES as u64 + 1).await? {
                Some(bytes) => output_from_bytes(bytes),
                None => Ok(None),
            }
        }
        .boxed()
    }

    fn teardown(mut self: Box<Self>) -> BoxFuture<'static, Result<(), RuntimeError>> {
        let dir = self.dir.take();
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_dir_all(tmp);
        }
        async move {
            if let Some(dir) = dir {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| RuntimeError::io(format!("removing {}", dir.display()), e))?;
            }
            Ok(())
        }
        .boxed()
    }

    fn workspace(&self) -> Workspace<'_> {
        Workspace::Dir {
            root: self.dir(),
            owner: self.sandbox.as_ref().and_then(|s| s.user),
        }
    }
}

impl Drop for ShellContext {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_dir_all(tmp);
        }
    }
}

/// Up to `limit` bytes of the file at `path`, `None` when there is none.
/// The steps choose what is there: a FIFO would block an ordinary open
/// (and a reader) forever, and a link could point at any file the agent
/// may read, so the file is opened without blocking or following a link,
/// and only a regular file is read.
pub(crate) async fn read_regular_file(
    path: &Path,
    limit: u64,
) -> Result<Option<Vec<u8>>, RuntimeError> {
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            (rustix::fs::OFlags::NONBLOCK
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::NOCTTY)
                .bits() as i32,
        )
        .open(path)
        .await;
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(RuntimeError::OutputNotAFile);
        }
        Err(e) => return Err(RuntimeError::io("opening the output file", e)),
    };
    let meta = file
        .metadata()
        .await
        .map_err(|e| RuntimeError::io("reading the output file", e))?;
    if !meta.is_file() {
        return Err(RuntimeError::OutputNotAFile);
    }
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| RuntimeError::io("reading the output file", e))?;
    Ok(Some(bytes))
}

/// The variable that marks every process of one step.
const STEP_ID_VAR: &str = "XENE_STEP_ID";

/// Unique per step within this machine: the process id, time and a counter.
fn step_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The step starts its own session, so that it leaves the agent's
/// controlling terminal and its processes can be told by their session.
///
/// With `die_with_parent`, the step's `sh` is killed when the agent dies:
/// a killed agent's attempt runs again elsewhere, and a step that went on
/// here would run it twice. (A sandboxed step's supervisor watches its
/// parent itself, and kills every process below it.)
#[allow(unsafe_code)]
fn start_session(cmd: &mut Command, die_with_parent: bool) {
    let parent = rustix::process::getpid();
    // SAFETY: setsid(2), prctl(2) and getppid(2) are async-signal-safe
    // system calls that touch no memory of the parent; setsid cannot fail
    // in a freshly forked child, which leads no group.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setsid()?;
            if die_with_parent {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                // The agent died between the fork and the request.
                if rustix::process::getppid() != Some(parent) {
                    return Err(std::io::Error::other("the agent is gone"));
                }
            }
            Ok(())
        });
    }
}

/// Kills, with SIGKILL, every process of this user in the step's session or
/// carrying its id, until none is left (a process may fork while it is
/// looked for). Reads `/proc`, so off the async workers.
async fn sweep(session: u32, step_id: &str) {
    let marker = format!("{STEP_ID_VAR}={step_id}");
    let _ = tokio::task::spawn_blocking(move || sweep_now(session, &marker)).await;
}

fn sweep_now(session: u32, marker: &str) {
    let me = std::process::id();
    for _ in 0..10 {
        let found = step_processes(session, marker.as_bytes(), me);
        if found.is_empty() {
            return;
        }
        for pid in found {
            signal_process(pid, Signal::KILL);
        }
    }
}

/// Pids in session `session` or whose initial environment holds `marker`.
fn step_processes(session: u32, marker: &[u8], me: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = entry.path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // After the command name in parentheses: state, ppid, pgrp, session.
        let Some(fields) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = fields.split_whitespace();
        let state = fields.next();
        if state == Some("Z") {
            continue;
        }
        let sid = fields.nth(2).and_then(|s| s.parse::<u32>().ok());
        if sid == Some(session) {
            found.push(pid);
            continue;
        }
        // Others' processes are unreadable here, which is as well.
        if let Ok(environ) = std::fs::read(dir.join("environ"))
            && environ.split(|&b| b == 0).any(|var| var == marker)
        {
            found.push(pid);
        }
    }
    found
}

struct GroupGuard {
    pgid: u32,
    step_id: String,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, Signal::KILL);
            sweep_now(self.pgid, &format!("{STEP_ID_VAR}={}", self.step_id));
        }
    }
}

fn signal_process(pid: u32, signal: Signal) {
    // 0 or 1 would address our own group or init.
    let Some(pid) = i32::try_from(pid)
        .ok()
        .filter(|&pid| pid > 1)
        .and_then(Pid::from_raw)
    else {
        return;
    };
    // ESRCH (already gone) is fine to ignore.
    let _ = rustix::process::kill_process(pid, signal);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep after an attempt removes its directory, its temp dir and
    /// its artifact spool, and nothing of another attempt.
    #[tokio::test]
    async fn the_sweep_takes_an_attempts_spool_too() {
        let root = tempfile::tempdir().unwrap();
        let runtime = ShellRuntime::new(ShellConfig {
            root: root.path().to_path_buf(),
            inherit_env: false,
            sandbox: None,
        });
        for dir in [
            "xene-ctx",
            "xene-ctx.tmp",
            "xene-ctx.files",
            "xene-other.files",
        ] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
            std::fs::write(root.path().join(dir).join("f"), "f").unwrap();
        }
        let setup = TaskSetup {
            run_id: "r".into(),
            task: "t".into(),
            attempt: 1,
            context: "ctx".into(),
            image: None,
        };
        runtime.sweep(&setup).await;
        let left: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["xene-other.files"]);
    }
}
