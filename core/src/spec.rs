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

/// A DAG of tasks started by its trigger; the server places a run's tasks
/// one by one on agents (see `placement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    /// What starts it.
    #[serde(default)]
    pub trigger: Trigger,
    /// Agent labels that must all match for an agent to take any of the
    /// pipeline's tasks; a task's own `selector` is merged over it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Whether a run's tasks may go to different agents.
    #[serde(default, skip_serializing_if = "is_default")]
    pub placement: Placement,
    /// Parameters a run may set, with their types and defaults;
    /// `{{ params.NAME }}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Param>,
    /// Environment variables of every task's steps.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Most tasks of one run running at once, across every agent; `None`
    /// is no limit beyond the agents' capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Which runs may save caches, by the kind of trigger that started them.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cache_save: CacheSave,
    /// The tasks, by name.
    pub tasks: BTreeMap<String, Task>,
}

impl Pipeline {
    /// The labels an agent needs to run `task`: the pipeline's `selector`
    /// with the task's merged over it (the task wins per key).
    pub fn task_selector(&self, task: &Task) -> BTreeMap<String, String> {
        let mut merged = self.selector.clone();
        merged.extend(task.selector.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged
    }
}

/// Where a run's tasks go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Each task goes to any agent that fits it, least loaded first.
    #[default]
    Spread,
    /// Every task of a run goes to the agent that took its first task (for
    /// tasks that share files or a Docker image built on one host).
    Together,
}

impl Placement {
    /// The word a spec writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Spread => "spread",
            Placement::Together => "together",
        }
    }
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
    /// Agent labels this task needs, over the pipeline's `selector` (see
    /// `Pipeline::task_selector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
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
    /// The artifacts it publishes for the tasks downstream of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
    /// The artifacts of upstream tasks put in its workspace before its
    /// first step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Need>,
    /// Directories kept across runs of the workflow, restored before its
    /// first step (or after a named step) and saved after it succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<Cache>,
}

/// A cache a task restores and saves (see `cache`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cache {
    /// Unique within its task (`[A-Za-z0-9_-]`, at most 64).
    pub name: String,
    /// A template (params, upstream outputs), rendered on the agent.
    pub key: String,
    /// Globs whose files' contents are hashed into the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hash_files: Vec<String>,
    /// Prefixes (templates) tried in order when `key` has no entry; the
    /// newest entry starting with one is restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_keys: Vec<String>,
    /// Relative paths or globs of what the entry holds.
    pub paths: Vec<String>,
    /// Restore right after this main step, not before the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Which runs of a pipeline may save caches, per kind of trigger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSave {
    /// Runs a person started.
    #[serde(default, skip_serializing_if = "is_default")]
    pub manual: SaveMode,
    /// Runs a webhook started.
    #[serde(default, skip_serializing_if = "is_default")]
    pub webhook: SaveMode,
    /// Runs a schedule started.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cron: SaveMode,
}

impl CacheSave {
    /// Whether a run started by `trigger` (a run's trigger: `manual`,
    /// `webhook`, `cron`) may save caches; any other trigger (a rerun, the
    /// API) counts as manual.
    pub fn allows(&self, trigger: &str) -> bool {
        let mode = match trigger {
            "webhook" => self.webhook,
            "cron" => self.cron,
            _ => self.manual,
        };
        mode == SaveMode::Always
    }
}

/// Whether runs save caches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaveMode {
    /// They do.
    #[default]
    Always,
    /// They never do.
    Never,
}

impl SaveMode {
    /// The word a spec writes.
    pub fn as_str(self) -> &'static str {
        match self {
            SaveMode::Always => "always",
            SaveMode::Never => "never",
        }
    }
}

/// An artifact a task publishes: the files its `paths` match in the
/// workspace, each stored relative to its path's base (see
/// `artifact::Glob::base`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// Unique across the pipeline's tasks.
    pub name: String,
    /// Relative paths or globs (`path:` in the spec is one of them).
    pub paths: Vec<String>,
    /// A path that matches nothing is not an error.
    #[serde(default, skip_serializing_if = "is_default")]
    pub optional: bool,
    /// Which ends of the task publish it.
    #[serde(default, skip_serializing_if = "is_default")]
    pub when: PublishWhen,
}

/// Which ends of a task publish its artifact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishWhen {
    /// Only a successful attempt.
    #[default]
    Success,
    /// A failed attempt too (reports of failed tests); never a cancelled one.
    Always,
}

impl PublishWhen {
    /// The word a spec writes.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishWhen::Success => "success",
            PublishWhen::Always => "always",
        }
    }
}

/// An artifact a task needs from a task upstream of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// The artifact's name.
    pub name: String,
    /// The directory, relative to the workspace, its files are put under;
    /// "" for the workspace itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
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
            selector: BTreeMap::new(),
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
            publish: Vec::new(),
            needs: Vec::new(),
            caches: Vec::new(),
        };
        let json = serde_json::to_string(&task).unwrap();
        assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), task);
    }

    /// Caches and `cache_save` travel to agents and into storage as JSON:
    /// what is set comes back, defaults stay out.
    #[test]
    fn caches_and_cache_save_round_trip_and_defaults_stay_out() {
        let w = crate::parse::parse_workflow(
            "name: w\npipelines:\n  p:\n    cache_save: {cron: never}\n    tasks:\n      t:\n        caches:\n          - {name: a, key: k, paths: [x]}\n          - {name: b, key: k, paths: [x, y], hash_files: [f], restore_keys: [k-, ''], after: s}\n        steps: [{name: s, run: make}]\n      u:\n        steps: [make]\n",
        );
        // An empty restore key is refused like an empty key.
        assert!(w.is_err());
        let w = crate::parse::parse_workflow(
            "name: w\npipelines:\n  p:\n    cache_save: {cron: never}\n    tasks:\n      t:\n        caches:\n          - {name: a, key: k, paths: [x]}\n          - {name: b, key: k, paths: [x, y], hash_files: [f], restore_keys: [k-, j], after: s}\n        steps: [{name: s, run: make}]\n      u:\n        steps: [make]\n",
        )
        .unwrap();
        let p = &w.pipelines["p"];
        assert_eq!(
            p.cache_save,
            CacheSave {
                cron: SaveMode::Never,
                ..CacheSave::default()
            }
        );
        assert!(p.cache_save.allows("manual") && p.cache_save.allows("webhook"));
        assert!(!p.cache_save.allows("cron"));
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(json["cache_save"], serde_json::json!({"cron": "never"}));
        assert_eq!(
            json["tasks"]["t"]["caches"][0],
            serde_json::json!({"name": "a", "key": "k", "paths": ["x"]})
        );
        assert!(json["tasks"]["u"].get("caches").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<Pipeline>(json).unwrap(), *p);
        // Every combination of modes comes back as it went.
        let modes = [SaveMode::Always, SaveMode::Never];
        for i in 0..8 {
            let save = CacheSave {
                manual: modes[i & 1],
                webhook: modes[(i >> 1) & 1],
                cron: modes[(i >> 2) & 1],
            };
            let json = serde_json::to_string(&save).unwrap();
            assert_eq!(json.matches("never").count(), i.count_ones() as usize);
            assert_eq!(serde_json::from_str::<CacheSave>(&json).unwrap(), save);
            for (kind, mode) in [
                ("manual", save.manual),
                ("webhook", save.webhook),
                ("cron", save.cron),
            ] {
                assert_eq!(save.allows(kind), mode == SaveMode::Always, "{kind} {json}");
            }
        }
        // A trigger other than the three counts as manual.
        let never = CacheSave {
            manual: SaveMode::Never,
            ..CacheSave::default()
        };
        assert!(!never.allows("api"));
    }

    #[test]
    fn a_task_selector_wins_over_the_pipeline_per_key() {
        let w = crate::parse::parse_workflow(
            "name: w\npipelines:\n  p:\n    selector: {os: linux, arch: amd64}\n    tasks:\n      t:\n        selector: {arch: arm64, gpu: \"yes\"}\n        steps: [make]\n      u:\n        steps: [make]\n",
        )
        .unwrap();
        let p = &w.pipelines["p"];
        let pairs = |m: BTreeMap<String, String>| m.into_iter().collect::<Vec<_>>();
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            pairs(p.task_selector(&p.tasks["t"])),
            [s("arch", "arm64"), s("gpu", "yes"), s("os", "linux")]
        );
        assert_eq!(
            pairs(p.task_selector(&p.tasks["u"])),
            [s("arch", "amd64"), s("os", "linux")]
        );
        assert_eq!(p.placement, Placement::Spread);
        // Defaults stay out of what is stored and sent.
        let json = serde_json::to_value(p).unwrap();
        assert!(json.get("placement").is_none(), "{json}");
        assert!(json["tasks"]["u"].get("selector").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<Pipeline>(json).unwrap(), *p);
    }
}
