//! Statuses of runs, tasks and steps, shared by the server, the agent and the UI.

use serde::{Deserialize, Serialize};

/// Where the scheduler has put a pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerStatus {
    Scheduled,
    NotScheduled,
}

/// The status of a pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Requested, waiting for an agent.
    Queued,
    StartingUp,
    Running,
    Success,
    Error,
    Cancelled,
    ShuttingDown,
    /// Its agent went silent and its lease ended.
    Unknown,
}

impl RunStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Error | Self::Cancelled)
    }

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
    Pending,
    Running,
    Success,
    Error,
    /// A dependency failed or was not executed, or the run was cancelled first.
    NotExecuted,
    /// Its `if` condition was false.
    Skipped,
    Cancelled,
}

impl TaskStatus {
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Error => "error",
            Self::NotExecuted => "not_executed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The status of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Success,
    Error,
    NotExecuted,
    Cancelled,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Error => "error",
            Self::NotExecuted => "not_executed",
            Self::Cancelled => "cancelled",
        }
    }
}
