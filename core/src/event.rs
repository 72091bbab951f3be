//! What happens during a pipeline run, as the executor reports it.
//!
//! The agent's executor sends these as they happen; a local run prints them,
//! and a server-connected agent will forward them (numbered) as protocol
//! events. They are wire types: add fields with `#[serde(default)]`, never
//! rename or remove one.

use serde::{Deserialize, Serialize};

use crate::cache::CacheHit;
use crate::status::{RunStatus, StepStatus, TaskStatus};

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The step's standard output.
    Stdout,
    /// The step's standard error.
    Stderr,
}

/// One state change or log line of a run, in the order it happened.
///
/// Within one task the order is `TaskStarted`, then per step `StepStarted`,
/// `Log`* and `StepFinished`, then `TaskFinished`; a retried task repeats
/// this with the next `attempt` (the failed attempt's `TaskFinished` has
/// `retry_in_ms`). A task that never started (skipped, not
/// executed) has only a `TaskFinished` with `attempt` 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    /// The executor took up the run.
    RunStarted {
        /// The executor's id of this execution.
        run_id: String,
        /// The pipeline's name.
        pipeline: String,
    },
    /// A task's attempt started.
    TaskStarted {
        /// The task's name.
        task: String,
        /// 1 for the first try, 2 for the first retry, ...
        attempt: u32,
    },
    /// A step started.
    StepStarted {
        /// The task's name.
        task: String,
        /// The step's name.
        step: String,
    },
    /// One line of a step's output, without its line ending. Secrets are
    /// already masked.
    Log {
        /// The task's name.
        task: String,
        /// The step's name.
        step: String,
        /// Which stream the line came from.
        stream: LogStream,
        /// The line.
        data: String,
    },
    /// Consecutive lines of one step's output, each ending in `\n`: what a
    /// transport sends in place of many `Log` events (see `RunEvent::absorb`),
    /// so a step that prints fast costs a message and a row per batch, not
    /// per line.
    Logs {
        /// The task's name.
        task: String,
        /// The step's name.
        step: String,
        /// Which stream the lines came from.
        stream: LogStream,
        /// The lines, each ending in `\n`.
        data: String,
    },
    /// A step ended.
    StepFinished {
        /// The task's name.
        task: String,
        /// The step's name.
        step: String,
        /// How it ended.
        status: StepStatus,
        /// The script's exit code; 128 + N when killed by signal N; `None`
        /// when it never ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// How long it ran.
        duration_ms: u64,
    },
    /// A task's attempt ended (or the task never started).
    TaskFinished {
        /// The task's name.
        task: String,
        /// How it ended.
        status: TaskStatus,
        /// What its steps wrote to `$XENE_OUTPUT`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// How long this attempt ran.
        duration_ms: u64,
        /// Which attempt: 1 for the first, 0 when it never started.
        attempt: u32,
        /// Why the task failed when it is not just a step's exit code (image
        /// missing, timeout, template error, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Set when this attempt failed and the task will start again after
        /// this many milliseconds; the task is not finished yet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    /// A cache's restore ended (sent right after it, before the steps that
    /// see it).
    CacheRestored {
        /// The task's name.
        task: String,
        /// The cache's name.
        cache: String,
        /// What the restore found.
        hit: CacheHit,
        /// The matched entry's key; the full key on a miss.
        key: String,
    },
    /// The run ended; nothing follows.
    RunFinished {
        /// How it ended.
        status: RunStatus,
        /// How long it ran.
        duration_ms: u64,
    },
}

impl RunEvent {
    /// Merges `next` into this event when both are output of the same step
    /// and stream and the lines fit in `max_bytes`; a `Log` becomes `Logs`.
    /// Returns whether `next` was taken.
    pub fn absorb(&mut self, next: &RunEvent, max_bytes: usize) -> bool {
        let (Some(mine), Some(theirs)) = (self.output(), next.output()) else {
            return false;
        };
        // Nothing changes unless `next` fits: same step and stream, and size.
        let grown = mine.data.len()
            + usize::from(mine.single)
            + theirs.data.len()
            + usize::from(theirs.single);
        if (mine.task, mine.step, mine.stream) != (theirs.task, theirs.step, theirs.stream)
            || grown > max_bytes
        {
            return false;
        }
        let (ndata, nline) = (theirs.data, theirs.single);
        if let RunEvent::Log {
            task,
            step,
            stream,
            data,
        } = self
        {
            let mut lines = std::mem::take(data);
            lines.push('\n');
            *self = RunEvent::Logs {
                task: std::mem::take(task),
                step: std::mem::take(step),
                stream: *stream,
                data: lines,
            };
        }
        let RunEvent::Logs { data, .. } = self else {
            return false;
        };
        data.push_str(ndata);
        if nline {
            data.push('\n');
        }
        true
    }
}

/// A view of an output event (`Log` or `Logs`).
struct Output<'a> {
    task: &'a str,
    step: &'a str,
    stream: LogStream,
    data: &'a str,
    /// A `Log`: one line without its ending.
    single: bool,
}

impl RunEvent {
    fn output(&self) -> Option<Output<'_>> {
        match self {
            RunEvent::Log {
                task,
                step,
                stream,
                data,
            } => Some(Output {
                task,
                step,
                stream: *stream,
                data,
                single: true,
            }),
            RunEvent::Logs {
                task,
                step,
                stream,
                data,
            } => Some(Output {
                task,
                step,
                stream: *stream,
                data,
                single: false,
            }),
            _ => None,
        }
    }
}

/// Merges runs of output events in place (see `RunEvent::absorb`).
pub fn coalesce(events: Vec<RunEvent>, max_bytes: usize) -> Vec<RunEvent> {
    let mut out: Vec<RunEvent> = Vec::with_capacity(events.len());
    for event in events {
        if let Some(last) = out.last_mut()
            && matches!(last, RunEvent::Log { .. } | RunEvent::Logs { .. })
            && last.absorb(&event, max_bytes)
        {
            continue;
        }
        out.push(event);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: &str, data: &str) -> RunEvent {
        RunEvent::Log {
            task: "t".into(),
            step: step.into(),
            stream: LogStream::Stdout,
            data: data.into(),
        }
    }

    #[test]
    fn lines_of_one_step_coalesce_up_to_a_size() {
        let events = vec![
            line("a", "1"),
            line("a", "2"),
            line("b", "3"),
            line("b", "4"),
            line("b", "5"),
        ];
        let merged = coalesce(events, 4);
        let data: Vec<&str> = merged
            .iter()
            .map(|e| match e {
                RunEvent::Logs { data, .. } => data.as_str(),
                RunEvent::Log { data, .. } => data.as_str(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(data, ["1\n2\n", "3\n4\n", "5"]);
    }

    #[test]
    fn events_are_tagged_by_type() {
        let event = RunEvent::Log {
            task: "build".into(),
            step: "compile".into(),
            stream: LogStream::Stderr,
            data: "warning".into(),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"type":"log","task":"build","step":"compile","stream":"stderr","data":"warning"}"#
        );
        assert_eq!(serde_json::from_str::<RunEvent>(&json).unwrap(), event);
    }
}
