//! What templates and conditions can see while a run is under way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cache::CacheHit;
use crate::status::TaskStatus;

/// The outcome of a finished task, as dependants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// How the task ended.
    pub status: TaskStatus,
    /// What its steps wrote to `$XENE_OUTPUT`, trailing newline trimmed.
    pub output: Option<String>,
    /// What each of its caches' restore found, by cache name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caches: BTreeMap<String, CacheHit>,
}

/// The values `{{ ... }}` templates and `if` conditions are evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    /// The tasks that finished so far, by name.
    pub tasks: &'a BTreeMap<String, TaskResult>,
    /// The run's parameters, defaults already applied.
    pub params: &'a BTreeMap<String, String>,
}
