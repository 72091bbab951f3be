//! What happens during a pipeline run, as the executor reports it.
//!
//! The agent's executor sends these as they happen; a local run prints them,
//! and a server-connected agent will forward them (numbered) as protocol
//! events. They are wire types: add fields with `#[serde(default)]`, never
//! rename or remove one.

use serde::{Deserialize, Serialize};

use crate::status::{RunStatus, StepStatus, TaskStatus};

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
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
    RunStarted {
        run_id: String,
        pipeline: String,
    },
    TaskStarted {
        task: String,
        /// 1 for the first try, 2 for the first retry, ...
        attempt: u32,
    },
    StepStarted {
        task: String,
        step: String,
    },
    /// One line of a step's output, without its line ending. Secrets are
    /// already masked.
    Log {
        task: String,
        step: String,
        stream: LogStream,
        data: String,
    },
    StepFinished {
        task: String,
        step: String,
        status: StepStatus,
        /// The script's exit code; 128 + N when killed by signal N; `None`
        /// when it never ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        duration_ms: u64,
    },
    TaskFinished {
        task: String,
        status: TaskStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        duration_ms: u64,
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
    RunFinished {
        status: RunStatus,
        duration_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

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
