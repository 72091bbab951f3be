//! The validated workflow spec: what a YAML file means once every check has
//! passed. Parsing and validation (with YAML paths and lines) build these
//! values; nothing else should construct them from user input.
//!
//! Maps keyed by name (pipelines, tasks, env) are `BTreeMap`s so iteration,
//! serialization and diagnostics come out in a stable order.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::params::{Param, ParamType};

/// A named workflow: one or more pipelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    /// Unique per server.
    pub name: String,
    /// For people; may be empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The pipelines, by name.
    pub pipelines: BTreeMap<String, Pipeline>,
}

/// A DAG of tasks started by its trigger; one run of it goes to one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    /// What starts it.
    #[serde(default)]
    pub trigger: Trigger,
    /// Agent labels that must all match for an agent to take a run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Parameters a run may set, with their types and defaults;
    /// `{{ params.NAME }}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Param>,
    /// Environment variables of every task's steps.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Most tasks running at once within one run; `None` leaves it to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The tasks, by name.
    pub tasks: BTreeMap<String, Task>,
}

/// What starts a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    /// A person, through the UI, the API or the CLI.
    #[default]
    Manual,
    /// A signed HTTP request to the pipeline's webhook URL.
    Webhook,
    /// A schedule.
    Cron {
        /// The 5-field cron line as written; validated by `cron::Schedule`.
        schedule: String,
        /// An IANA time zone name; `UTC` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
        /// What happens to fires missed while no server ran.
        #[serde(default, skip_serializing_if = "is_default")]
        catchup: Catchup,
        /// What a fire does while an earlier run of the pipeline is unfinished.
        #[serde(default, skip_serializing_if = "is_default")]
        overlap: Overlap,
    },
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Fires missed while no server ran (or the pipeline's cron was off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Catchup {
    /// The latest missed fire runs once, whatever number were missed.
    #[default]
    Latest,
    /// Missed fires are dropped; the next one on time runs.
    Skip,
}

/// What a cron fire does while a run of its pipeline has not finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Starts another run beside it.
    Allow,
    /// Starts nothing; the fire is recorded as skipped.
    #[default]
    Skip,
    /// Queues a run that starts when the earlier ones have finished (at
    /// most one waits: later fires while one waits are skipped).
    Queue,
}

/// The unit the DAG connects: one context (a container with one workspace,
/// or one working directory on the shell runtime) shared by its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Run in this Docker image; `None` means the shell runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Tasks that must succeed before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The steps, run in order.
    pub steps: Vec<Step>,
    /// Steps run after `steps` whatever happened (cleanup, upload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<Step>,
    /// Environment variables of the task's steps (over the pipeline's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Names of secrets injected as environment variables of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The longest the task may run; it is killed after that.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// How often, and how soon, a failed task starts again.
    #[serde(default, skip_serializing_if = "Retries::is_none")]
    pub retries: Retries,
    /// The condition as written, parsed into `condition`.
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// A shell script run in its task's context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Unique within its task.
    pub name: String,
    /// The script, run with `sh -e -c`.
    pub run: String,
    /// Environment variables of this step (over the task's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// How often a failed task is tried again, and how long to wait first.
/// The wait doubles after each attempt, starting at `backoff`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retries {
    /// How many more times a failed task starts (0: never).
    pub count: u32,
    /// The wait before each retry.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub backoff: Option<Duration>,
}

impl Retries {
    /// Nothing to say: serialization leaves it out. A backoff without a
    /// count is kept, or a spec would not come back as it went.
    pub fn is_none(&self) -> bool {
        self.count == 0 && self.backoff.is_none()
    }

    /// The wait before attempt `attempt` (1 is the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.backoff.unwrap_or(Duration::from_secs(1));
        base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
    }
}

/// Durations travel as the same text a user writes (`90s`, `1h30m`, `250ms`).
pub mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes an optional duration as text like `90s`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&crate::duration::format(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional duration from text like `90s`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| crate::duration::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing the protocol decoder: `retries: {count: 0, backoff:
    /// 5s}` lost its backoff on the way to an agent, so the pipeline an
    /// agent ran was not the one dispatched.
    #[test]
    fn retries_with_a_backoff_and_no_count_survive_json() {
        let retries = Retries {
            count: 0,
            backoff: Some(Duration::from_secs(5)),
        };
        let task = Task {
            image: None,
            depends_on: Vec::new(),
            steps: vec![Step {
                name: "s".into(),
                run: "true".into(),
                env: BTreeMap::new(),
            }],
            post: Vec::new(),
            env: BTreeMap::new(),
            secrets: Vec::new(),
            timeout: None,
            retries,
            condition: None,
        };
        let json = serde_json::to_string(&task).unwrap();
        assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), task);
    }
}
