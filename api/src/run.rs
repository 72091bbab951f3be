//! Runs: a run as the API shows it, with its tasks and steps (a run's live
//! feed carries it too), the runs list, starting and cancelling a run, and
//! a page of its log lines.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use xene_core::status::{RunStatus, StepStatus, TaskStatus};

/// A run of a pipeline, without its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    /// Its id.
    pub id: i64,
    /// Its workflow.
    pub workflow: String,
    /// The workflow version it runs.
    pub version: i64,
    /// The pipeline it runs.
    pub pipeline: String,
    /// The values of the pipeline's params.
    pub params: BTreeMap<String, String>,
    /// What started it: `manual`, `webhook` or `cron`.
    pub trigger: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    /// Its status.
    pub status: RunStatus,
    /// Whether the scheduler placed it: `not_scheduled` or `scheduled`.
    pub scheduler_status: String,
    /// Why it waits, when it does: which agent selector, which capacity.
    pub scheduler_reason: Option<String>,
    /// The agent it is placed on, for a run placed whole on one agent
    /// (before task placement); see `agents`.
    pub agent: Option<String>,
    /// The agents that hold or ran its tasks, in order of id (for a run
    /// placed whole: its agent).
    // Default: absent from a server older than this field.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub agents: Vec<String>,
    /// Its attempt, from 1.
    pub attempt: i64,
    /// How many attempts it may take.
    pub max_attempts: i64,
    /// Someone asked to cancel it.
    pub cancel_requested: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When it was requested (UTC ms).
    pub requested_at: i64,
    /// When it was placed on an agent (UTC ms).
    pub scheduled_at: Option<i64>,
    /// When it started (UTC ms).
    pub started_at: Option<i64>,
    /// When it ended (UTC ms).
    pub finished_at: Option<i64>,
    /// When its agent's lease on it ends unless renewed (UTC ms).
    pub lease_expires_at: Option<i64>,
    /// Why the trigger started it: a cron run's fire (and whether it was
    /// caught up or waited behind an earlier run), a webhook's scheme.
    pub trigger_reason: Option<String>,
    /// A cron run's fire time (UTC ms).
    pub fired_at: Option<i64>,
    /// Pinned by someone: its artifacts are kept whatever the retention.
    // Default: absent from a server older than pins.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub pinned: bool,
}

/// A task of a run: its status, output and steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskRun {
    /// The task's name.
    pub name: String,
    /// Its status.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: TaskStatus,
    /// Its attempt, from 1.
    pub attempt: i64,
    /// The tasks of the run it waits for (from the version's spec), so
    /// the run alone draws its graph.
    // Default: empty from a server older than this field; this server
    // always sends it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub depends_on: Vec<String>,
    /// What it wrote to `$XENE_OUTPUT`.
    pub output: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When it started (UTC ms).
    pub started_at: Option<i64>,
    /// When it ended (UTC ms).
    pub finished_at: Option<i64>,
    /// How long it took, once ended.
    pub duration_ms: Option<i64>,
    /// The agent of its latest attempt placed; for a run placed whole on
    /// one agent (before task placement), the run's agent once the task
    /// started.
    // Default: absent from a server older than this field.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Its attempts, oldest first: each dispatch of the task to an agent.
    /// Empty for a run placed whole on one agent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub attempts: Vec<TaskAttempt>,
    /// Its steps, in order (`post` steps last).
    pub steps: Vec<StepRun>,
}

/// Every status a task attempt may have, in order of its life.
pub const ATTEMPT_STATUSES: [&str; 7] = [
    "ready",
    "placed",
    "running",
    "success",
    "error",
    "cancelled",
    "unknown",
];

/// One attempt of a task: a dispatch to one agent, which runs the task's
/// steps once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskAttempt {
    /// 1, 2, ... within the task.
    pub number: i64,
    /// The agent it was placed on; none while it waits for one.
    pub agent_id: Option<String>,
    /// `ready` (waiting for an agent), `placed`, `running`, `success`,
    /// `error`, `cancelled` or `unknown` (its agent went silent); see
    /// `ATTEMPT_STATUSES`.
    pub status: String,
    /// When it started on its agent (UTC ms).
    pub started_at: Option<i64>,
    /// When it ended (UTC ms).
    pub finished_at: Option<i64>,
    /// Why it failed or ended, or why it waits for an agent.
    pub error: Option<String>,
}

/// A step of a task's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepRun {
    /// The step's name.
    pub name: String,
    /// True for `post` steps, which run whatever happened.
    pub post: bool,
    /// Its status.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: StepStatus,
    /// Its exit code, once ended.
    pub exit_code: Option<i64>,
    /// When it started (UTC ms).
    pub started_at: Option<i64>,
    /// When it ended (UTC ms).
    pub finished_at: Option<i64>,
    /// How long it took, once ended.
    pub duration_ms: Option<i64>,
}

/// A run with its tasks (what `GET /api/v1/runs/{id}` and a run's feed carry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// Its tasks, pending ones included.
    pub tasks: Vec<TaskRun>,
}

impl Run {
    /// True once it can change no more.
    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }

    /// How long it ran (so far, given `now`, UTC ms), in ms.
    pub fn duration_ms(&self, now: i64) -> Option<i64> {
        let start = self.started_at?;
        Some(self.finished_at.unwrap_or(now).max(start) - start)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunList {
    pub runs: Vec<Run>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What a manual run may set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// Values for the pipeline's declared params (strings, numbers or
    /// booleans); the rest keep their defaults.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, Object>))]
    pub params: BTreeMap<String, serde_json::Value>,
    /// The workflow version to run, one of this workflow's (a run's
    /// `version`, to run it again as it was); absent: the current one.
    // Left out when absent, so a server older than this field, which
    // refuses unknown fields, still takes the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelResponse {
    pub id: i64,
    /// `cancelled` when it had not started; `cancelling` while its agent stops it.
    pub status: String,
}

/// One line of a step's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// The chunk this line came in: resume after the page's `next_offset`.
    pub offset: i64,
    pub attempt: i64,
    pub task: String,
    pub step: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub data: String,
    /// UTC milliseconds.
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `after` to continue.
    pub next_offset: i64,
}
