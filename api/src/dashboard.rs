//! `GET /api/v1/dashboard`: the landing page's one read. What needs a
//! person's eye now (runs running, queued and stuck, recent failures) and
//! the agents online, each list short and bounded.

use serde::{Deserialize, Serialize};
use xene_core::status::RunStatus;

/// The most runs each list of the dashboard holds.
pub const DASHBOARD_LIST: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dashboard {
    /// Runs starting, running or stopping, newest first.
    pub running: RunGroup,
    /// Runs waiting for an agent, oldest first.
    pub queued: RunGroup,
    /// Runs nobody picked up within the pick-up timeout (queued, or with a
    /// task ready for an agent since), oldest first.
    pub stuck: RunGroup,
    /// The latest runs that failed (`error` or `unknown`), newest first.
    pub failures: Vec<RunBrief>,
    /// Agents online, draining ones included: those not draining can take
    /// work now.
    pub agents_online: i64,
    /// Of those online, the ones draining (finishing their work, taking no
    /// more).
    pub agents_draining: i64,
    /// Agents that are not online (offline; revoked ones are not counted).
    pub agents_offline: i64,
    /// Workflows applied (and not deleted).
    pub workflows: i64,
}

/// Some runs of a kind, and how many there are in all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunGroup {
    /// How many there are (stuck runs are counted up to 100000).
    pub count: i64,
    /// At most 10 of them.
    pub runs: Vec<RunBrief>,
}

/// A run as a list shows it: no params, its error cut short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunBrief {
    pub id: i64,
    pub workflow: String,
    pub pipeline: String,
    pub version: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "running"))]
    pub status: RunStatus,
    /// `manual`, `webhook` or `cron`.
    pub trigger: String,
    /// UTC milliseconds.
    pub requested_at: i64,
    /// UTC milliseconds.
    pub started_at: Option<i64>,
    /// UTC milliseconds.
    pub finished_at: Option<i64>,
    /// Why it failed, at most 300 characters.
    pub error: Option<String>,
    /// The first task that failed, for a failed run.
    pub failed_task: Option<String>,
    /// Why it waits, when it does.
    pub scheduler_reason: Option<String>,
}
