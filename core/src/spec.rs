//! The validated workflow spec: what a YAML file means once every check has
//! passed. Parsing and validation (with YAML paths and lines) build these
//! values; nothing else should construct them from user input.
//!
//! Maps keyed by name (pipelines, tasks, env) are `BTreeMap`s so iteration,
//! serialization and diagnostics come out in a stable order.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A named workflow: one or more pipelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub pipelines: BTreeMap<String, Pipeline>,
}

/// A DAG of tasks started by its trigger; one run of it goes to one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    #[serde(default)]
    pub trigger: Trigger,
    /// Agent labels that must all match for an agent to take a run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Parameters a run may set, with their defaults; `{{ params.NAME }}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Most tasks running at once within one run; `None` leaves it to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    pub tasks: BTreeMap<String, Task>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    #[default]
    Manual,
    Webhook,
    Cron {
        /// The 5-field cron line as written; validated by `cron::Schedule`.
        schedule: String,
        /// An IANA time zone name; `UTC` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
}

/// The unit the DAG connects: one context (a container with one workspace,
/// or one working directory on the shell runtime) shared by its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Run in this Docker image; `None` means the shell runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    pub steps: Vec<Step>,
    /// Steps run after `steps` whatever happened (cleanup, upload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<Step>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Names of secrets injected as environment variables of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Retries::is_none")]
    pub retries: Retries,
    /// The condition as written, parsed into `condition`.
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub run: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// How often a failed task is tried again, and how long to wait first.
/// The wait doubles after each attempt, starting at `backoff`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retries {
    pub count: u32,
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

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&crate::duration::format(*d)),
            None => s.serialize_none(),
        }
    }

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
