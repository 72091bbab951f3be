//! Workflows: applying one, the list (with each pipeline's trigger, next
//! fire and last run, so a page asks once), a workflow's versions and
//! their approval for protected secrets, and when a cron line fires.

use serde::{Deserialize, Serialize};
use xene_core::draft::EditorLayout;
use xene_core::spec::{Trigger, Workflow};
use xene_core::status::RunStatus;

/// The result of applying a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Applied {
    pub name: String,
    pub version: i64,
    /// False when the spec was the same as the current version's.
    pub changed: bool,
    /// What is stored but will not work yet, like secrets the tasks name
    /// that do not exist (runs of such a pipeline are refused until they do).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowSummary {
    pub name: String,
    pub description: String,
    pub version: i64,
    pub pipelines: Vec<String>,
    /// Each pipeline, in the order of `pipelines`: its trigger, next fire
    /// and last run.
    // Default: empty from a server older than this field; this server
    // always sends it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub summaries: Vec<PipelineSummary>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A pipeline in the workflows list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineSummary {
    pub name: String,
    /// What starts it: `manual`, `webhook` or `cron`.
    pub trigger: String,
    /// The trigger in words: `manual`, `webhook`, `cron 0 3 * * * (UTC)`.
    pub trigger_text: String,
    /// A cron pipeline's next fire (UTC ms).
    pub next_fire: Option<i64>,
    /// Its latest run, if it ever ran.
    pub last_run: Option<LastRun>,
}

/// A pipeline's latest run, as much as a list shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastRun {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: RunStatus,
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl LastRun {
    /// How long it ran (so far, given `now`, UTC ms), in ms.
    pub fn duration_ms(&self, now: i64) -> Option<i64> {
        let start = self.started_at?;
        Some(self.finished_at.unwrap_or(now).max(start) - start)
    }
}

/// What starts a pipeline, in one word: `manual`, `webhook` or `cron`.
pub fn trigger_kind(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::Manual => "manual",
        Trigger::Webhook => "webhook",
        Trigger::Cron { .. } => "cron",
    }
}

/// The trigger in words: `manual`, `webhook`, `cron 0 3 * * * (UTC)`.
pub fn trigger_text(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Cron {
            schedule, timezone, ..
        } => format!("cron {schedule} ({})", timezone.as_deref().unwrap_or("UTC")),
        other => trigger_kind(other).to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowDetail {
    #[serde(flatten)]
    pub current: WorkflowVersion,
    pub pipelines: Vec<PipelineState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowVersion {
    pub name: String,
    pub version: i64,
    /// The validated spec, as JSON.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub spec: Workflow,
    /// The text that was applied.
    pub source: String,
    pub created_at: i64,
    /// Where the visual editor placed tasks; carried over from version to
    /// version.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub layout: Option<EditorLayout>,
    /// The admin who approved this version for protected secrets (storing
    /// it as an admin approves it); absent while nobody has.
    pub approved_by: Option<String>,
    /// When it was approved, UTC ms.
    pub approved_at: Option<i64>,
    /// The protected secrets its pipelines use: its runs need the approval.
    pub protected_secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineState {
    pub name: String,
    pub trigger: String,
    /// `scheduled` or `not_scheduled`: the scheduler's latest decision.
    pub scheduler_status: String,
    pub scheduler_reason: Option<String>,
    /// A cron pipeline's next fire times (UTC ms), the soonest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_fires: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionList {
    pub versions: Vec<VersionSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionSummary {
    pub version: i64,
    pub created_at: i64,
}

/// A version's approval, and the protected secrets it uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approved {
    pub name: String,
    pub version: i64,
    pub approved_by: String,
    /// UTC ms.
    pub approved_at: i64,
    /// False when an admin had approved it before: that approval stands.
    pub changed: bool,
    pub protected_secrets: Vec<String>,
    /// What whoever starts a run of it still chooses, such as an image
    /// or env taken from a param in a task with protected secrets
    /// (accepted with `accept_run_time_choices`).
    pub warnings: Vec<String>,
}

/// A withdrawn approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revoked {
    pub name: String,
    pub version: i64,
    /// False when the version was not approved.
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NextFires {
    /// UTC milliseconds, the soonest first.
    pub fires: Vec<i64>,
}
