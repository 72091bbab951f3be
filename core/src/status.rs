//! Statuses of runs, tasks and steps, shared by the server, the agent and the UI.

use serde::{Deserialize, Serialize};

/// Where the scheduler has put a pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerStatus {
    /// Placed on an agent.
    Scheduled,
    /// Waiting: no agent fits (the reason says why).
    NotScheduled,
}

/// The status of a pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Requested, waiting for an agent.
    Queued,
    /// Placed on an agent, which has not started it yet.
    StartingUp,
    /// Its agent is executing it.
    Running,
    /// Every task succeeded (or was skipped).
    Success,
    /// A task failed, or the run could not execute.
    Error,
    /// Cancelled by a person.
    Cancelled,
    /// Its agent is stopping it.
    ShuttingDown,
    /// Its agent went silent and its lease ended.
    Unknown,
}

impl RunStatus {
    /// True for the statuses a run never leaves.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Error | Self::Cancelled)
    }

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::StartingUp => "starting_up",
            Self::Running => "running",
            Self::Success => "success",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
            Self::ShuttingDown => "shutting_down",
            Self::Unknown => "unknown",
        }
    }
}

/// The status of a task within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for its dependencies.
    Pending,
    /// Its steps are running.
    Running,
    /// Every step succeeded.
    Success,
    /// A step failed, or the task could not run.
    Error,
    /// A dependency failed or was not executed, or the run was cancelled first.
    NotExecuted,
    /// Its `if` condition was false.
    Skipped,
    /// The run was cancelled while it ran.
    Cancelled,
    /// It was running when its run ended without news from its agent.
    Unknown,
}

impl TaskStatus {
    /// True once the task has ended, however.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Error => "error",
            Self::NotExecuted => "not_executed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }
}

/// The status of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Waiting for the steps before it.
    Pending,
    /// Its script is running.
    Running,
    /// Its script exited with 0.
    Success,
    /// Its script failed.
    Error,
    /// A step before it failed.
    NotExecuted,
    /// The run was cancelled while it ran.
    Cancelled,
    /// It was running when its run ended without news from its agent.
    Unknown,
}

impl StepStatus {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Error => "error",
            Self::NotExecuted => "not_executed",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }
}

/// The error of parsing a status from its snake_case name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

macro_rules! from_str_by_name {
    ($($ty:ty => [$($variant:ident),*]),*) => {$(
        impl std::str::FromStr for $ty {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s == Self::$variant.as_str() { return Ok(Self::$variant); })*
                Err(UnknownStatus(s.to_string()))
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $ty {
            /// Every value (the API document lists them as an enum).
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];
        }
    )*};
}

from_str_by_name! {
    RunStatus => [Queued, StartingUp, Running, Success, Error, Cancelled, ShuttingDown, Unknown],
    TaskStatus => [Pending, Running, Success, Error, NotExecuted, Skipped, Cancelled, Unknown],
    StepStatus => [Pending, Running, Success, Error, NotExecuted, Cancelled, Unknown]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for status in [
            RunStatus::Queued,
            RunStatus::StartingUp,
            RunStatus::ShuttingDown,
            RunStatus::Unknown,
        ] {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for status in [TaskStatus::NotExecuted, TaskStatus::Skipped] {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(
            "bogus".parse::<StepStatus>(),
            Err(UnknownStatus("bogus".into()))
        );
    }
}
