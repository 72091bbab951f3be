//! What a finished run looks like: the executor's return value, and the
//! shape of `xene-agent run --json`.

use std::collections::BTreeMap;

use serde::Serialize;
use xene_core::cache::CacheHit;
use xene_core::status::{RunStatus, StepStatus, TaskStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline: String,
    pub status: RunStatus,
    pub duration_ms: u64,
    pub tasks: BTreeMap<String, TaskReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskReport {
    pub status: TaskStatus,
    /// How many times it started; 0 when it never did.
    pub attempts: u32,
    /// From its first start to its end, retries and their waits included.
    pub duration_ms: u64,
    pub output: Option<String>,
    /// Why it failed, when a step's exit code does not say it all.
    pub error: Option<String>,
    /// The steps of its last attempt, `post` steps last.
    pub steps: Vec<StepReport>,
    /// What each cache's restore found in its last attempt, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub caches: BTreeMap<String, CacheHit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub name: String,
    pub status: StepStatus,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub post: bool,
}

impl TaskReport {
    /// A task that never started.
    pub(crate) fn not_started(status: TaskStatus, error: Option<String>) -> Self {
        Self {
            status,
            attempts: 0,
            duration_ms: 0,
            output: None,
            error,
            steps: Vec::new(),
            caches: BTreeMap::new(),
        }
    }
}
