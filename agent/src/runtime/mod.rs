//! Where steps run. A runtime prepares one context per task attempt (a
//! container with a workspace volume, or a fresh directory), runs the task's
//! steps in it one after another, hands back what the steps wrote to
//! `$XENE_OUTPUT`, and removes it all again.
//!
//! The executor only sees the [`Runtime`] and [`TaskContext`] traits; each
//! runtime is a module with its config and its driver.

pub mod docker;
pub mod sandbox;
pub mod shell;
mod streams;
pub mod supervisor;

use std::path::Path;
use std::time::Duration;

use crate::mask::{Carry, Masker};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xene_core::event::{LogStream, RunEvent};

/// The most a task may write to `$XENE_OUTPUT`; more fails the task rather
/// than passing on a silently truncated value.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Longer lines are cut into pieces of this size, so a stream without line
/// breaks cannot take all memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The `PATH` of a shell step with a clean environment (sandboxed or not).
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The name of the output file inside a task's workspace.
pub const OUTPUT_FILE: &str = ".xene-output";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("docker: {0}")]
    Docker(String),
    #[error("image {image:?} is not present locally and could not be pulled: {reason}")]
    ImageMissing { image: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("output is larger than {} KiB", MAX_OUTPUT_BYTES / 1024)]
    OutputTooLarge,
    #[error("$XENE_OUTPUT is not a regular file (a link, a FIFO or a device is not read)")]
    OutputNotAFile,
    #[error("the shell runtime is not allowed on this agent (task has no image)")]
    ShellNotAllowed,
    #[error("{0} is not in the workspace")]
    NotInWorkspace(String),
}

impl RuntimeError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// What a runtime needs to know to set up one attempt of a task.
#[derive(Debug, Clone)]
pub struct TaskSetup {
    /// `XENE_RUN_ID`: the execution of the run the attempt belongs to.
    pub run_id: String,
    pub task: String,
    pub attempt: u32,
    /// Unique to this attempt on this machine: it names the attempt's
    /// directory or container and volume (and labels them `xene.attempt`),
    /// so that [`Runtime::sweep`] removes this attempt's leftovers only.
    pub context: String,
    /// The image (templates already rendered); `None` on the shell runtime.
    pub image: Option<String>,
}

/// One step to run in a prepared context.
#[derive(Debug, Clone)]
pub struct StepCommand {
    pub name: String,
    /// The script, run as `sh -e -c SCRIPT`.
    pub script: String,
    /// The step's whole environment as the spec sees it; the runtime adds
    /// `XENE_OUTPUT` and `XENE_WORKSPACE`, which only it knows.
    pub env: Vec<(String, String)>,
}

/// How a step's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOutcome {
    /// The exit code; 128 + N when killed by signal N.
    pub exit_code: i32,
    /// True when the step was stopped because `cancel` fired.
    pub killed: bool,
}

/// Where a step's output lines go: the run's event channel, tagged with the
/// task and step, secrets masked.
pub struct LogSink<'a> {
    pub events: &'a mpsc::Sender<RunEvent>,
    pub task: &'a str,
    pub step: &'a str,
    /// The run's secret values, replaced by `***` in every line.
    pub masker: &'a Masker,
}

impl LogSink<'_> {
    pub async fn line(&self, stream: LogStream, bytes: &[u8]) {
        self.line_after(stream, bytes, &mut Carry::default()).await;
    }

    /// A line of a stream, masked with what the stream's earlier lines
    /// left in `carry` (base64 wrapped over lines).
    async fn line_after(&self, stream: LogStream, bytes: &[u8], carry: &mut Carry) {
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let data = String::from_utf8_lossy(&self.masker.mask_line(bytes, carry)).into_owned();
        // A closed receiver means nobody listens any more; the run goes on.
        let _ = self
            .events
            .send(RunEvent::Log {
                task: self.task.to_string(),
                step: self.step.to_string(),
                stream,
                data,
            })
            .await;
    }
}

/// Splits chunks of output into lines, keeping a partial last line until
/// the next chunk or the end.
#[derive(Default)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
    carry: Carry,
}

impl LineBuffer {
    pub(crate) async fn push(&mut self, chunk: &[u8], stream: LogStream, sink: &LogSink<'_>) {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if self.pending.is_empty() {
                sink.line_after(stream, &rest[..end], &mut self.carry).await;
            } else {
                self.pending.extend_from_slice(&rest[..end]);
                let line = std::mem::take(&mut self.pending);
                sink.line_after(stream, &line, &mut self.carry).await;
            }
            rest = &rest[end + 1..];
        }
        self.pending.extend_from_slice(rest);
        // A chunk may hold more than one piece's worth (the partial line
        // before it plus a whole read): cut until less than a piece is left.
        while self.pending.len() >= MAX_LINE_BYTES {
            self.carry = Carry::default();
            if sink.masker.is_empty() {
                let rest = self.pending.split_off(MAX_LINE_BYTES);
                let piece = std::mem::replace(&mut self.pending, rest);
                sink.line(stream, &piece).await;
                continue;
            }
            // An over-long line goes out in pieces; a secret value must not
            // be cut in two by that, or neither half would be masked.
            let masked = sink.masker.mask_bytes(&self.pending).into_owned();
            let cut = sink.masker.safe_cut(&masked).min(MAX_LINE_BYTES);
            if cut == 0 {
                break;
            }
            sink.line(stream, &masked[..cut]).await;
            self.pending = masked[cut..].to_vec();
        }
    }

    pub(crate) async fn finish(&mut self, stream: LogStream, sink: &LogSink<'_>) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            sink.line_after(stream, &line, &mut self.carry).await;
        }
    }
}

/// Sets up contexts for task attempts.
pub trait Runtime: Send + Sync {
    fn prepare<'a>(
        &'a self,
        setup: &'a TaskSetup,
    ) -> BoxFuture<'a, Result<Box<dyn TaskContext>, RuntimeError>>;

    /// Removes whatever an attempt may have left behind (a context whose
    /// teardown never ran because its task panicked, was dropped, or was
    /// cancelled in the middle of `prepare`). Other attempts of the same run,
    /// which may still run, are left alone.
    fn sweep<'a>(&'a self, setup: &'a TaskSetup) -> BoxFuture<'a, ()>;
}

/// One prepared context: a container or a directory that a task's steps
/// share, in order.
pub trait TaskContext: Send {
    /// Runs one step to its end, or until `cancel` fires: then its processes
    /// get SIGTERM, and SIGKILL after `grace`.
    fn exec<'a>(
        &'a mut self,
        step: &'a StepCommand,
        sink: &'a LogSink<'a>,
        cancel: &'a CancellationToken,
        grace: Duration,
    ) -> BoxFuture<'a, Result<StepOutcome, RuntimeError>>;

    /// What the steps wrote to `$XENE_OUTPUT`, trailing newline trimmed;
    /// `None` when they wrote nothing.
    fn read_output(&mut self) -> BoxFuture<'_, Result<Option<String>, RuntimeError>>;

    /// Removes the context. Must be called; a context dropped without it
    /// cleans up in the background as well as it can.
    fn teardown(self: Box<Self>) -> BoxFuture<'static, Result<(), RuntimeError>>;

    /// How artifacts reach the workspace (fetched into it before the first
    /// step, collected from it after the main steps).
    fn workspace(&self) -> Workspace<'_>;
}

/// A context's workspace, as the staging of artifacts reaches it.
pub enum Workspace<'a> {
    /// A directory of this machine. What is placed in it is given to
    /// `owner` (uid, gid) when set: the steps' user, when they run as
    /// another one.
    Dir {
        root: &'a Path,
        owner: Option<(u32, u32)>,
    },
    /// Reached only through tar archives (a container's volume).
    Archive(&'a dyn WorkspaceArchive),
}

/// Tar archives in and out of a workspace that is not a directory here.
pub trait WorkspaceArchive: Sync {
    /// A tar archive of `path` (relative to the workspace, "" for all of
    /// it): its entries are named from `path`'s last component, links are
    /// not followed. [`RuntimeError::NotInWorkspace`] when it does not exist.
    fn export<'a>(&'a self, path: &'a str) -> BoxStream<'a, Result<Bytes, RuntimeError>>;

    /// Extracts the tar `archive` (entry names relative to the workspace)
    /// into the workspace, owned by the steps' user.
    fn import(
        &self,
        archive: BoxStream<'static, Result<Bytes, std::io::Error>>,
    ) -> BoxFuture<'_, Result<(), RuntimeError>>;
}

/// Turns the raw bytes of an output file into the task's output.
pub(crate) fn output_from_bytes(mut bytes: Vec<u8>) -> Result<Option<String>, RuntimeError> {
    if bytes.len() > MAX_OUTPUT_BYTES {
        return Err(RuntimeError::OutputTooLarge);
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No piece is longer than `MAX_LINE_BYTES`, however the output comes:
    /// a partial line followed by a whole read is cut in more than one.
    #[tokio::test]
    async fn no_piece_of_a_long_line_passes_the_limit() {
        for secret in [None, Some("a-secret-value")] {
            let masker = Masker::new(secret);
            let (tx, mut rx) = mpsc::channel(64);
            let sink = LogSink {
                events: &tx,
                task: "t",
                step: "s",
                masker: &masker,
            };
            let mut buffer = LineBuffer::default();
            let partial = vec![b'x'; MAX_LINE_BYTES - 1];
            let read = vec![b'y'; 2 * MAX_LINE_BYTES + 10];
            buffer.push(&partial, LogStream::Stdout, &sink).await;
            buffer.push(&read, LogStream::Stdout, &sink).await;
            buffer.finish(LogStream::Stdout, &sink).await;
            drop(tx);
            let mut total = 0;
            while let Some(RunEvent::Log { data, .. }) = rx.recv().await {
                assert!(
                    data.len() <= MAX_LINE_BYTES,
                    "{} bytes, secret {secret:?}",
                    data.len()
                );
                total += data.len();
            }
            assert_eq!(total, partial.len() + read.len(), "secret {secret:?}");
        }
    }

    /// A line longer than `MAX_LINE_BYTES` goes out in pieces; a value that
    /// straddles a cut is still masked, whatever the chunking.
    #[tokio::test]
    async fn a_value_across_a_forced_cut_is_masked() {
        let secret = "straddling-secret-value";
        let masker = Masker::new([secret]);
        for lead in [MAX_LINE_BYTES - 5, MAX_LINE_BYTES - 1, MAX_LINE_BYTES] {
            let (tx, mut rx) = mpsc::channel(64);
            let sink = LogSink {
                events: &tx,
                task: "t",
                step: "s",
                masker: &masker,
            };
            let mut text = "x".repeat(lead).into_bytes();
            text.extend_from_slice(secret.as_bytes());
            text.extend_from_slice(b" tail\n");
            let mut buffer = LineBuffer::default();
            for chunk in text.chunks(7000) {
                buffer.push(chunk, LogStream::Stdout, &sink).await;
            }
            buffer.finish(LogStream::Stdout, &sink).await;
            drop(tx);
            let mut joined = String::new();
            while let Some(RunEvent::Log { data, .. }) = rx.recv().await {
                joined.push_str(&data);
            }
            assert!(!joined.contains("straddling"), "lead {lead}");
            assert!(joined.ends_with("*** tail"), "lead {lead}");
            assert_eq!(joined.len(), lead + "*** tail".len());
        }
    }
}
