//! From YAML (or JSON) text to a validated `spec::Workflow`, or every fault
//! found, each with its YAML path and line.
//!
//! One pass builds the spec while recording faults; a second checks what
//! needs the whole pipeline (dependencies, cycles, template and condition
//! references). Nothing is returned when any fault exists, so a
//! `spec::Workflow` in hand is always valid.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::cron;
use crate::dag;
use crate::duration;
use crate::params::{self, Param, ParamType};
use crate::spec::{Catchup, Overlap, Pipeline, Retries, Step, Task, Trigger, Workflow};
use crate::suggest::closest;
use crate::template::{self, Reference};
use crate::yaml::{self, Entry, Node, ScalarKind, Value};

/// Larger specs are refused before parsing.
pub const MAX_SPEC_BYTES: usize = 1 << 20;
/// Longest workflow, pipeline, task or step name.
pub const MAX_NAME_LEN: usize = 63;
/// The most retries a task may ask for.
pub const MAX_RETRIES: u32 = 10;
/// Most pipelines in one workflow.
pub const MAX_PIPELINES: usize = 100;
/// Most tasks in one pipeline.
pub const MAX_TASKS: usize = 1000;
/// Most steps in one task, `steps` and `post` together.
pub const MAX_STEPS: usize = 100;
/// Most entries in one task's `depends_on`.
pub const MAX_DEPENDENCIES: usize = 256;
/// Most `{{ }}` template expressions in one workflow.
pub const MAX_TEMPLATES: usize = 10_000;
/// Longest env var, param and secret name.
pub const MAX_ENV_NAME_LEN: usize = 128;
/// Most entries in one `env`, `params` or `selector` mapping, and secrets
/// in one task.
pub const MAX_ENV_VARS: usize = 256;
/// Faults past this many are counted, not listed: a spec with a fault on
/// every line would otherwise answer with a response larger than itself.
pub const MAX_DIAGNOSTICS: usize = 100;
/// "Did you mean" searches per spec; further unknown names get no hint, so
/// many unknown names against many candidates cannot cost their product.
const MAX_SUGGESTIONS: usize = 100;

// The fields each mapping accepts; the JSON Schema must list the same ones
// (a test checks).
/// The fields a workflow may have.
pub const WORKFLOW_FIELDS: &[&str] = &["name", "description", "pipelines"];
/// The fields a pipeline may have.
pub const PIPELINE_FIELDS: &[&str] = &[
    "trigger",
    "selector",
    "params",
    "env",
    "concurrency",
    "tasks",
];
/// The fields of a param written as a mapping.
pub const PARAM_FIELDS: &[&str] = &[
    "type",
    "description",
    "default",
    "required",
    "options",
    "from",
];
/// The fields of a `cron` trigger.
pub const CRON_TRIGGER_FIELDS: &[&str] = &["cron", "timezone", "catchup", "overlap"];
/// The fields a task may have.
pub const TASK_FIELDS: &[&str] = &[
    "image",
    "depends_on",
    "if",
    "env",
    "secrets",
    "timeout",
    "retries",
    "steps",
    "post",
];
/// The fields of a task's `retries`.
pub const RETRIES_FIELDS: &[&str] = &["count", "backoff"];
/// The fields a step may have.
pub const STEP_FIELDS: &[&str] = &["name", "run", "env"];
/// The triggers written as a plain word.
pub const TRIGGER_WORDS: &[&str] = &["manual", "webhook"];

/// One fault in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Where in the YAML, like `pipelines.ci.tasks.test.depends_on[0]`;
    /// empty for the document as a whole.
    pub path: String,
    /// 1-based.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Every fault in a spec, in order of line; never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The faults, in order of line.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// How many faults there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none (a parsed spec never has that).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Parses and validates a workflow spec written in YAML or JSON.
pub fn parse_workflow(text: &str) -> Result<Workflow, Diagnostics> {
    let mut c = Checker::default();
    if text.len() > MAX_SPEC_BYTES {
        c.push(Diagnostic {
            path: String::new(),
            line: None,
            message: format!(
                "the spec is {} bytes, more than the limit of {MAX_SPEC_BYTES} (1 MiB)",
                text.len()
            ),
        });
        return Err(Diagnostics(c.diags));
    }
    let (root, yaml_errors) = yaml::parse(text);
    for e in yaml_errors {
        c.push(Diagnostic {
            path: e.path,
            line: Some(e.line),
            message: e.message,
        });
    }
    let workflow = match root {
        Some(root) => c.workflow(&root),
        None if c.diags.is_empty() => {
            c.push(Diagnostic {
                path: String::new(),
                line: None,
                message: "the spec is empty".into(),
            });
            None
        }
        None => None,
    };
    if c.diags.is_empty() {
        Ok(workflow.expect("a workflow is built whenever no fault is found"))
    } else {
        // Stable, so faults on one line keep the order they were found in.
        c.diags.sort_by_key(|d| d.line);
        if c.dropped > 0 {
            c.diags.push(Diagnostic {
                path: String::new(),
                line: None,
                message: format!(
                    "{} more faults not shown (only the first {MAX_DIAGNOSTICS} are)",
                    c.dropped
                ),
            });
        }
        Err(Diagnostics(c.diags))
    }
}

struct Checker {
    diags: Vec<Diagnostic>,
    /// Faults found past `MAX_DIAGNOSTICS`.
    dropped: usize,
    /// "Did you mean" searches left.
    suggestions: usize,
    /// Template expressions seen so far in the workflow.
    templates: usize,
}

impl Default for Checker {
    fn default() -> Self {
        Self {
            diags: Vec::new(),
            dropped: 0,
            suggestions: MAX_SUGGESTIONS,
            templates: 0,
        }
    }
}

/// The entries of a mapping whose keys were checked against a field list.
struct Fields<'n> {
    entries: &'n [Entry],
    line: usize,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }
}

/// A `{{ }}` template found while building a task, checked once the whole
/// pipeline is known.
struct TemplateSite {
    path: String,
    line: usize,
    text: String,
}

/// What the second pass needs about a task besides the spec itself.
#[derive(Default)]
struct TaskNotes {
    /// Each dependency with its index in `depends_on` and its line (its
    /// path is made only for a fault: a dense pipeline has 180,000).
    depends_on: Vec<(String, usize, usize)>,
    condition: Option<(Condition, String, usize)>,
    templates: Vec<TemplateSite>,
}

/// `path.key`. A long key is shortened: paths are for reading, and one
/// long key repeated in the path of every node below it would multiply the
/// memory a spec costs.
fn join(path: &str, key: &str) -> String {
    let key = shorten(key);
    if path.is_empty() {
        key.into_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Text quoted in a path or a message: past 128 characters, its first 64.
fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().nth(128).is_none() {
        return text.into();
    }
    let cut = text.char_indices().nth(64).map_or(text.len(), |(i, _)| i);
    format!("{}...", &text[..cut]).into()
}

/// Whether `s` can name a workflow, pipeline, task or step: lowercase
/// letters, digits, `-` and `_`, starting with a letter or digit.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Whether `s` can name an environment variable (and so a param or a
/// secret): letters, digits and `_`, not starting with a digit.
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Checker {
    fn push(&mut self, diagnostic: Diagnostic) {
        if self.diags.len() < MAX_DIAGNOSTICS {
            self.diags.push(diagnostic);
        } else {
            self.dropped += 1;
        }
    }

    fn error(&mut self, path: &str, line: usize, message: impl Into<String>) {
        self.push(Diagnostic {
            path: path.to_string(),
            line: Some(line),
            message: message.into(),
        });
    }

    /// `; did you mean "x"?` while the budget lasts, else nothing.
    fn did_you_mean<'a>(
        &mut self,
        word: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> String {
        match self.closest(word, candidates) {
            Some(c) => format!("; did you mean {c:?}?"),
            None => String::new(),
        }
    }

    fn closest<'a>(
        &mut self,
        word: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Option<&'a str> {
        if self.suggestions == 0 {
            return None;
        }
        self.suggestions -= 1;
        closest(word, candidates)
    }

    fn wrong_type(&mut self, path: &str, node: &Node, expected: &str) {
        self.error(
            path,
            node.line,
            format!("expected {expected}, found {}", node.describe()),
        );
    }

    /// A mapping with only `known` keys; unknown ones are reported (and ignored).
    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &str,
        known: &[&str],
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(path, node, what);
            return None;
        };
        for e in entries {
            if !known.contains(&e.key.as_str()) {
                let hint = match closest(&e.key, known.iter().copied()) {
                    Some(c) => format!("did you mean {c:?}?"),
                    None => format!("expected one of {}", known.join(", ")),
                };
                self.error(
                    &join(path, &e.key),
                    e.key_line,
                    format!("unknown field {:?}; {hint}", shorten(&e.key)),
                );
            }
        }
        Some(Fields {
            entries,
            line: node.line,
        })
    }

    fn required<'n>(&mut self, fields: &Fields<'n>, path: &str, key: &str) -> Option<&'n Node> {
        let node = fields.get(key);
        if node.is_none() {
            self.error(path, fields.line, format!("missing field {key:?}"));
        }
        node
    }

    /// A string; numbers and booleans must be quoted where a string is
    /// expected, so `name: 1.10` cannot silently become "1.1".
    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match node.as_scalar() {
            Some(s) if s.kind() == ScalarKind::String => Some(s.text.clone()),
            _ => {
                self.wrong_type(path, node, "a string");
                None
            }
        }
    }

    /// Env, params and selector values: any scalar but null, as written.
    fn scalar_text(&mut self, node: &Node, path: &str) -> Option<String> {
        match node.as_scalar() {
            Some(s) if s.kind() != ScalarKind::Null => Some(s.text.clone()),
            _ => {
                self.wrong_type(path, node, "a string, number or boolean");
                None
            }
        }
    }

    fn integer(&mut self, node: &Node, path: &str) -> Option<i64> {
        match node.as_scalar() {
            Some(s) if s.kind() == ScalarKind::Int => match s.text.parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        path,
                        node.line,
                        format!("{} is not a decimal integer in range", s.text),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(path, node, "an integer");
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let text = match node.as_scalar() {
            Some(s) if matches!(s.kind(), ScalarKind::String | ScalarKind::Int) => s.text.clone(),
            _ => {
                self.wrong_type(path, node, "a duration like 90s, 5m or 1h30m");
                return None;
            }
        };
        match duration::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(path, node.line, e.to_string());
                None
            }
        }
    }

    fn name(&mut self, name: &str, path: &str, line: usize, what: &str) {
        let shown = shorten(name);
        if !is_name(name) {
            self.error(
                path,
                line,
                format!(
                    "invalid {what} name {shown:?}: use lowercase letters, digits, \"-\" and \"_\", starting with a letter or digit"
                ),
            );
        } else if name.len() > MAX_NAME_LEN {
            self.error(
                path,
                line,
                format!("{what} name {shown:?} is longer than {MAX_NAME_LEN} characters"),
            );
        }
    }

    /// Whether `items` (entries, list items) are within `max`; reported at
    /// the first one past it.
    fn at_most(&mut self, count: usize, max: usize, path: &str, line: usize, what: &str) -> bool {
        if count > max {
            self.error(
                path,
                line,
                format!("{count} {what}, more than the limit of {max}"),
            );
            return false;
        }
        true
    }

    /// An env var, param or secret name.
    fn env_name(&mut self, name: &str, path: &str, line: usize, what: &str) -> bool {
        if !is_env_name(name) {
            self.error(
                path,
                line,
                format!(
                    "invalid {what} name {:?}: use letters, digits and \"_\", not starting with a digit",
                    shorten(name)
                ),
            );
            false
        } else if name.len() > MAX_ENV_NAME_LEN {
            self.error(
                path,
                line,
                format!(
                    "{what} name {:?} is longer than {MAX_ENV_NAME_LEN} characters",
                    shorten(name)
                ),
            );
            false
        } else {
            true
        }
    }

    /// A mapping of env var names (or param names) to scalar values.
    fn env(&mut self, node: &Node, path: &str, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Value::Map(entries) = &node.value else {
            self.wrong_type(path, node, &format!("a mapping of {what}s to values"));
            return out;
        };
        if !self.at_most(
            entries.len(),
            MAX_ENV_VARS,
            path,
            node.line,
            &format!("{what}s"),
        ) {
            return out;
        }
        for e in entries {
            let p = join(path, &e.key);
            self.env_name(&e.key, &p, e.key_line, what);
            if let Some(v) = self.scalar_text(&e.value, &p) {
                out.insert(e.key.clone(), v);
            }
        }
        out
    }

    fn workflow(&mut self, root: &Node) -> Option<Workflow> {
        let f = self.mapping(
            root,
            "",
            "a mapping with name and pipelines",
            WORKFLOW_FIELDS,
        )?;
        let name = self.required(&f, "", "name").and_then(|n| {
            let name = self.string(n, "name")?;
            self.name(&name, "name", n.line, "workflow");
            Some(name)
        });
        let description = f
            .get("description")
            .and_then(|n| self.string(n, "description"))
            .unwrap_or_default();
        let mut pipelines = BTreeMap::new();
        if let Some(node) = self.required(&f, "", "pipelines") {
            match &node.value {
                Value::Map(entries) if entries.is_empty() => self.error(
                    "pipelines",
                    node.line,
                    "no pipelines: a workflow needs at least one",
                ),
                Value::Map(entries)
                    if !self.at_most(
                        entries.len(),
                        MAX_PIPELINES,
                        "pipelines",
                        node.line,
                        "pipelines",
                    ) => {}
                Value::Map(entries) => {
                    for e in entries {
                        let path = join("pipelines", &e.key);
                        self.name(&e.key, &path, e.key_line, "pipeline");
                        if let Some(p) = self.pipeline(&e.value, &path) {
                            pipelines.insert(e.key.clone(), p);
                        }
                    }
                }
                _ => self.wrong_type(
                    "pipelines",
                    node,
                    "a mapping of pipeline names to pipelines",
                ),
            }
        }
        Some(Workflow {
            name: name?,
            description,
            pipelines,
        })
    }

    fn pipeline(&mut self, node: &Node, path: &str) -> Option<Pipeline> {
        let f = self.mapping(
            node,
            path,
            "a pipeline (a mapping with tasks)",
            PIPELINE_FIELDS,
        )?;
        let trigger = f.get("trigger").map_or(Some(Trigger::Manual), |n| {
            self.trigger(n, &join(path, "trigger"))
        });
        let selector = match f.get("selector") {
            Some(n) => self.selector(n, &join(path, "selector")),
            None => BTreeMap::new(),
        };
        let params = f
            .get("params")
            .map(|n| self.params(n, &join(path, "params")))
            .unwrap_or_default();
        if let (Some(Trigger::Cron { .. }), Some(n)) = (&trigger, f.get("params")) {
            // Nobody is there to give a cron fire a value.
            for (name, param) in &params {
                if param.required {
                    self.error(
                        &join(&join(path, "params"), name),
                        n.line,
                        format!("param {name:?} is required, but a cron trigger gives no values: give it a default"),
                    );
                }
            }
        }
        if !matches!(trigger, Some(Trigger::Webhook) | None)
            && let Some(n) = f.get("params")
        {
            for (name, param) in &params {
                if param.from.is_some() {
                    self.error(
                        &join(&join(path, "params"), name),
                        n.line,
                        format!("param {name:?} reads a webhook's body (from), but the pipeline's trigger is not webhook"),
                    );
                }
            }
        }
        self.shared_variables(
            params.keys().map(|k| (k.as_str(), template::param_var(k))),
            &join(path, "params"),
            f.get("params").map_or(0, |n| n.line),
            "params",
        );
        let env = f
            .get("env")
            .map(|n| self.env(n, &join(path, "env"), "env var"))
            .unwrap_or_default();
        let concurrency = f.get("concurrency").and_then(|n| {
            let p = join(path, "concurrency");
            let v = self.integer(n, &p)?;
            match u32::try_from(v) {
                Ok(v) if v >= 1 => Some(v),
                _ => {
                    self.error(
                        &p,
                        n.line,
                        format!("concurrency must be at least 1, found {v}"),
                    );
                    None
                }
            }
        });

        let mut tasks = BTreeMap::new();
        let mut notes = BTreeMap::new();
        let tasks_path = join(path, "tasks");
        // Past the limit the tasks are not read at all, and nothing that
        // needs them all (dependencies, cycles) is checked.
        let mut too_many = false;
        if let Some(node) = self.required(&f, path, "tasks") {
            match &node.value {
                Value::Map(entries) if entries.is_empty() => self.error(
                    &tasks_path,
                    node.line,
                    "no tasks: a pipeline needs at least one",
                ),
                Value::Map(entries)
                    if !self.at_most(entries.len(), MAX_TASKS, &tasks_path, node.line, "tasks") =>
                {
                    too_many = true;
                }
                Value::Map(entries) => {
                    for e in entries {
                        let p = join(&tasks_path, &e.key);
                        self.name(&e.key, &p, e.key_line, "task");
                        let mut n = TaskNotes::default();
                        if let Some(t) = self.task(&e.value, &p, &mut n) {
                            tasks.insert(e.key.clone(), t);
                        }
                        notes.insert(e.key.clone(), (n, e.key_line));
                    }
                }
                _ => self.wrong_type(&tasks_path, node, "a mapping of task names to tasks"),
            }
        }
        // Pipeline env is set before any task runs: it can read params only.
        let mut env_sites = Vec::new();
        if let Some(Value::Map(entries)) = f.get("env").map(|n| &n.value) {
            for e in entries {
                if let Some(s) = e.value.as_scalar() {
                    env_sites.push(TemplateSite {
                        path: join(&join(path, "env"), &e.key),
                        line: e.value.line,
                        text: s.text.clone(),
                    });
                }
            }
        }
        if !too_many {
            self.shared_variables(
                tasks.keys().map(|k| (k.as_str(), template::output_var(k))),
                &tasks_path,
                f.get("tasks").map_or(0, |n| n.line),
                "tasks",
            );
            self.cross_check(&notes, &params, &env_sites, path);
        }
        Some(Pipeline {
            trigger: trigger?,
            selector,
            params,
            env,
            concurrency,
            tasks,
        })
    }

    fn trigger(&mut self, node: &Node, path: &str) -> Option<Trigger> {
        if let Some(s) = node.as_scalar().filter(|s| s.kind() == ScalarKind::String) {
            return match s.text.as_str() {
                "manual" => Some(Trigger::Manual),
                "webhook" => Some(Trigger::Webhook),
                "cron" => {
                    self.error(
                        path,
                        node.line,
                        "a cron trigger needs a schedule: write {cron: \"0 3 * * *\"}",
                    );
                    None
                }
                other => {
                    let hint = match self.closest(other, TRIGGER_WORDS.iter().copied()) {
                        Some(c) => format!("did you mean {c:?}?"),
                        None => "expected manual, webhook or {cron: \"...\"}".into(),
                    };
                    self.error(
                        path,
                        node.line,
                        format!("unknown trigger {other:?}; {hint}"),
                    );
                    None
                }
            };
        }
        if !matches!(node.value, Value::Map(_)) {
            self.wrong_type(
                path,
                node,
                "manual, webhook or {cron: \"...\", timezone: \"...\"}",
            );
            return None;
        }
        let f = self.mapping(node, path, "", CRON_TRIGGER_FIELDS)?;
        let schedule = self.required(&f, path, "cron").and_then(|n| {
            let p = join(path, "cron");
            let s = self.string(n, &p)?;
            if let Err(e) = cron::Schedule::parse(&s) {
                self.error(&p, n.line, e.to_string());
            }
            Some(s)
        });
        let timezone = match f.get("timezone") {
            None => Some(None),
            Some(n) => {
                let p = join(path, "timezone");
                self.string(n, &p)
                    .and_then(|tz| match cron::check_timezone(&tz) {
                        Ok(()) => Some(Some(tz)),
                        Err(e) => {
                            self.error(&p, n.line, e.to_string());
                            None
                        }
                    })
            }
        };
        let catchup = match f.get("catchup") {
            None => Some(Catchup::default()),
            Some(n) => {
                let p = join(path, "catchup");
                self.string(n, &p).and_then(|w| match w.as_str() {
                    "latest" => Some(Catchup::Latest),
                    "skip" => Some(Catchup::Skip),
                    other => {
                        self.error(
                            &p,
                            n.line,
                            format!(
                                "unknown catchup {:?}; expected latest or skip",
                                shorten(other)
                            ),
                        );
                        None
                    }
                })
            }
        };
        let overlap = match f.get("overlap") {
            None => Some(Overlap::default()),
            Some(n) => {
                let p = join(path, "overlap");
                self.string(n, &p).and_then(|w| match w.as_str() {
                    "allow" => Some(Overlap::Allow),
                    "skip" => Some(Overlap::Skip),
                    "queue" => Some(Overlap::Queue),
                    other => {
                        self.error(
                            &p,
                            n.line,
                            format!(
                                "unknown overlap {:?}; expected allow, skip or queue",
                                shorten(other)
                            ),
                        );
                        None
                    }
                })
            }
        };
        Some(Trigger::Cron {
            schedule: schedule?,
            timezone: timezone?,
            catchup: catchup?,
            overlap: overlap?,
        })
    }

    /// Two names whose values would reach steps in one variable.
    fn shared_variables<'a>(
        &mut self,
        names: impl Iterator<Item = (&'a str, String)>,
        path: &str,
        line: usize,
        what: &str,
    ) {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (name, var) in names {
            if let Some(first) = seen.get(&var) {
                self.error(
                    path,
                    line,
                    format!(
                        "{what} {first:?} and {name:?} would both reach steps as ${var}: rename one"
                    ),
                );
            } else {
                seen.insert(var, name);
            }
        }
    }

    /// A pipeline's `params`: each a plain default, or a mapping with a type.
    fn params(&mut self, node: &Node, path: &str) -> BTreeMap<String, Param> {
        let mut out = BTreeMap::new();
        let Value::Map(entries) = &node.value else {
            self.wrong_type(
                path,
                node,
                "a mapping of param names to defaults or declarations",
            );
            return out;
        };
        if !self.at_most(entries.len(), MAX_ENV_VARS, path, node.line, "params") {
            return out;
        }
        for e in entries {
            let p = join(path, &e.key);
            self.env_name(&e.key, &p, e.key_line, "param");
            let param = if matches!(e.value.value, Value::Map(_)) {
                self.param(&e.value, &p)
            } else {
                self.scalar_text(&e.value, &p).map(Param::plain)
            };
            if let Some(param) = param {
                out.insert(e.key.clone(), param);
            }
        }
        out
    }

    fn param(&mut self, node: &Node, path: &str) -> Option<Param> {
        let f = self.mapping(node, path, "", PARAM_FIELDS)?;
        let mut ok = true;
        let kind = match f.get("type") {
            None => ParamType::String,
            Some(n) => {
                let p = join(path, "type");
                let name = self.string(n, &p)?;
                match ParamType::from_name(&name) {
                    Some(k) => k,
                    None => {
                        let hint = self.did_you_mean(&name, ParamType::NAMES.iter().copied());
                        let hint = if hint.is_empty() {
                            format!("; expected one of {}", ParamType::NAMES.join(", "))
                        } else {
                            hint
                        };
                        self.error(
                            &p,
                            n.line,
                            format!("unknown param type {:?}{hint}", shorten(&name)),
                        );
                        return None;
                    }
                }
            }
        };
        let description = f
            .get("description")
            .and_then(|n| self.string(n, &join(path, "description")))
            .unwrap_or_default();
        let required = match f.get("required") {
            None => false,
            Some(n) => match n.as_scalar() {
                Some(s) if s.kind() == ScalarKind::Bool => s.text == "true",
                _ => {
                    self.wrong_type(&join(path, "required"), n, "true or false");
                    ok = false;
                    false
                }
            },
        };
        let mut options = Vec::new();
        match (f.get("options"), kind) {
            (Some(n), ParamType::Choice) => {
                let p = join(path, "options");
                match &n.value {
                    Value::Seq(items) if !items.is_empty() => {
                        if self.at_most(items.len(), params::MAX_OPTIONS, &p, n.line, "options") {
                            for (i, item) in items.iter().enumerate() {
                                let ip = format!("{p}[{i}]");
                                if let Some(v) = self.scalar_text(item, &ip) {
                                    if options.contains(&v) {
                                        self.error(
                                            &ip,
                                            item.line,
                                            format!("option {:?} is listed twice", shorten(&v)),
                                        );
                                    }
                                    options.push(v);
                                }
                            }
                        }
                    }
                    _ => {
                        self.wrong_type(&p, n, "a non-empty list of options");
                        ok = false;
                    }
                }
            }
            (None, ParamType::Choice) => {
                self.error(
                    path,
                    f.line,
                    "a choice param needs options: write options: [a, b]",
                );
                ok = false;
            }
            (Some(n), _) => {
                self.error(
                    &join(path, "options"),
                    n.line,
                    format!("options are for choice params; this one is a {kind}"),
                );
                ok = false;
            }
            (None, _) => {}
        }
        let from = f.get("from").and_then(|n| {
            let p = join(path, "from");
            let text = self.string(n, &p)?;
            match params::parse_from(&text) {
                Ok(segs) => Some(segs),
                Err(e) => {
                    self.error(&p, n.line, e);
                    ok = false;
                    None
                }
            }
        });
        let mut param = Param {
            kind,
            default: None,
            required,
            description,
            options,
            from,
        };
        match (f.get("default"), required) {
            (Some(n), true) => {
                self.error(
                    &join(path, "default"),
                    n.line,
                    "a required param has no default: drop one of them",
                );
                ok = false;
            }
            (Some(n), false) => {
                let p = join(path, "default");
                if let Some(text) = self.scalar_text(n, &p) {
                    match param.check(&text) {
                        Ok(v) => param.default = Some(v),
                        Err(e) => {
                            // Options already faulted say enough.
                            if ok {
                                self.error(&p, n.line, format!("default {e}"));
                            }
                            ok = false;
                        }
                    }
                } else {
                    ok = false;
                }
            }
            (None, false) => {
                self.error(path, f.line, "a param needs a default or required: true");
                ok = false;
            }
            (None, true) => {}
        }
        ok.then_some(param)
    }

    fn selector(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Value::Map(entries) = &node.value else {
            self.wrong_type(path, node, "a mapping of agent labels to values");
            return out;
        };
        if !self.at_most(entries.len(), MAX_ENV_VARS, path, node.line, "labels") {
            return out;
        }
        for e in entries {
            if let Some(v) = self.scalar_text(&e.value, &join(path, &e.key)) {
                out.insert(e.key.clone(), v);
            }
        }
        out
    }

    fn task(&mut self, node: &Node, path: &str, notes: &mut TaskNotes) -> Option<Task> {
        let f = self.mapping(node, path, "a task (a mapping with steps)", TASK_FIELDS)?;
        let image = f.get("image").and_then(|n| {
            let p = join(path, "image");
            let image = self.string(n, &p)?;
            if image.trim().is_empty() {
                self.error(
                    &p,
                    n.line,
                    "empty image: remove the field to use the shell runtime",
                );
            }
            notes.templates.push(TemplateSite {
                path: p,
                line: n.line,
                text: image.clone(),
            });
            Some(image)
        });
        let mut depends_on = Vec::new();
        if let Some(n) = f.get("depends_on") {
            let p = join(path, "depends_on");
            match &n.value {
                Value::Seq(items)
                    if !self.at_most(items.len(), MAX_DEPENDENCIES, &p, n.line, "dependencies") => {
                }
                Value::Seq(items) => {
                    let mut seen = std::collections::HashSet::new();
                    depends_on.reserve_exact(items.len());
                    notes.depends_on.reserve_exact(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let ip = format!("{p}[{i}]");
                        let Some(dep) = self.string(item, &ip) else {
                            continue;
                        };
                        if !seen.insert(dep.clone()) {
                            self.error(
                                &ip,
                                item.line,
                                format!("duplicate dependency {:?}", shorten(&dep)),
                            );
                            continue;
                        }
                        depends_on.push(dep.clone());
                        notes.depends_on.push((dep, i, item.line));
                    }
                }
                Value::Scalar(s) if s.kind() == ScalarKind::String => self.error(
                    &p,
                    n.line,
                    format!(
                        "expected a list of task names, found a string; write [{}]",
                        s.text
                    ),
                ),
                _ => self.wrong_type(&p, n, "a list of task names"),
            }
        }
        let condition = f.get("if").and_then(|n| {
            let p = join(path, "if");
            // `if: false` is a plain boolean in YAML; take it as written.
            let text = match n.as_scalar() {
                Some(s) if s.kind() == ScalarKind::Bool => s.text.to_lowercase(),
                _ => self.string(n, &p)?,
            };
            match Condition::parse(&text) {
                Ok(c) => notes.condition = Some((c, p, n.line)),
                Err(e) => self.error(&p, n.line, e.to_string()),
            }
            Some(text)
        });
        let env = match f.get("env") {
            Some(n) => {
                let p = join(path, "env");
                self.templates_in_env(n, &p, notes);
                self.env(n, &p, "env var")
            }
            None => BTreeMap::new(),
        };
        let secrets = f
            .get("secrets")
            .map(|n| self.secrets(n, &join(path, "secrets")))
            .unwrap_or_default();
        let timeout = f.get("timeout").and_then(|n| {
            let p = join(path, "timeout");
            let d = self.duration(n, &p)?;
            if d.is_zero() {
                self.error(
                    &p,
                    n.line,
                    "timeout must be more than 0s: remove it for no timeout",
                );
            }
            Some(d)
        });
        let retries = f.get("retries").map_or(Retries::default(), |n| {
            self.retries(n, &join(path, "retries"))
        });

        let mut names = BTreeMap::new();
        let steps = match self.required(&f, path, "steps") {
            Some(n) => {
                let p = join(path, "steps");
                let steps = self.steps(n, &p, "step", &mut names, notes);
                if matches!(&n.value, Value::Seq(items) if items.is_empty()) {
                    self.error(&p, n.line, "no steps: a task needs at least one");
                }
                steps
            }
            None => Vec::new(),
        };
        let post = match f.get("post") {
            Some(n) => self.steps(n, &join(path, "post"), "post", &mut names, notes),
            None => Vec::new(),
        };
        Some(Task {
            image,
            depends_on,
            steps,
            post,
            env,
            secrets,
            timeout,
            retries,
            condition,
        })
    }

    fn templates_in_env(&mut self, node: &Node, path: &str, notes: &mut TaskNotes) {
        if let Value::Map(entries) = &node.value {
            for e in entries {
                if let Some(s) = e.value.as_scalar() {
                    notes.templates.push(TemplateSite {
                        path: join(path, &e.key),
                        line: e.value.line,
                        text: s.text.clone(),
                    });
                }
            }
        }
    }

    fn secrets(&mut self, node: &Node, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Value::Seq(items) = &node.value else {
            self.wrong_type(path, node, "a list of secret names");
            return out;
        };
        if !self.at_most(items.len(), MAX_ENV_VARS, path, node.line, "secrets") {
            return out;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let Some(name) = self.string(item, &p) else {
                continue;
            };
            if !self.env_name(&name, &p, item.line, "secret") {
                continue;
            }
            if name.starts_with("XENE_") {
                self.error(
                    &p,
                    item.line,
                    format!("secret name {name:?} starts with XENE_, which is Xene's own"),
                );
                continue;
            }
            if seen.insert(name.clone()) {
                out.push(name);
            } else {
                self.error(&p, item.line, format!("duplicate secret {name:?}"));
            }
        }
        out
    }

    fn retries(&mut self, node: &Node, path: &str) -> Retries {
        let (count_node, count_path, backoff) = if let Value::Map(_) = node.value {
            let Some(f) = self.mapping(node, path, "", RETRIES_FIELDS) else {
                return Retries::default();
            };
            let backoff = f
                .get("backoff")
                .and_then(|n| self.duration(n, &join(path, "backoff")));
            (
                self.required(&f, path, "count"),
                join(path, "count"),
                backoff,
            )
        } else {
            (Some(node), path.to_string(), None)
        };
        let count = count_node.and_then(|n| {
            let v = self.integer(n, &count_path)?;
            match u32::try_from(v) {
                Ok(v) if v <= MAX_RETRIES => Some(v),
                _ => {
                    self.error(
                        &count_path,
                        n.line,
                        format!("retries must be between 0 and {MAX_RETRIES}, found {v}"),
                    );
                    None
                }
            }
        });
        Retries {
            count: count.unwrap_or(0),
            backoff,
        }
    }

    /// `names` holds the step names seen so far in the task (steps and post
    /// share one namespace: logs are stored per step name), with their lines.
    fn steps(
        &mut self,
        node: &Node,
        path: &str,
        default_prefix: &str,
        names: &mut BTreeMap<String, usize>,
        notes: &mut TaskNotes,
    ) -> Vec<Step> {
        let mut out = Vec::new();
        let Value::Seq(items) = &node.value else {
            self.wrong_type(path, node, "a list of steps");
            return out;
        };
        if !self.at_most(
            names.len() + items.len(),
            MAX_STEPS,
            path,
            node.line,
            "steps in the task (steps and post together)",
        ) {
            return out;
        }
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let default_name = format!("{default_prefix}-{}", i + 1);
            let step = match &item.value {
                Value::Scalar(s) if s.kind() == ScalarKind::String => Some(Step {
                    name: default_name,
                    run: s.text.clone(),
                    env: BTreeMap::new(),
                }),
                Value::Map(_) => self.step(item, &p, default_name, notes),
                _ => {
                    self.wrong_type(&p, item, "a step (a script, or a mapping with run)");
                    None
                }
            };
            let Some(step) = step else { continue };
            // Point at the script itself, which is deeper in the mapping form.
            let (run_path, run_line) = match &item.value {
                Value::Map(entries) => {
                    let line = entries
                        .iter()
                        .find(|e| e.key == "run")
                        .map_or(item.line, |e| e.value.line);
                    (join(&p, "run"), line)
                }
                _ => (p.clone(), item.line),
            };
            if step.run.trim().is_empty() {
                self.error(&run_path, run_line, "empty run script");
            }
            if let Some(fault) = template::script_fault(&step.run) {
                self.error(&run_path, run_line, fault.to_string());
            }
            notes.templates.push(TemplateSite {
                path: run_path,
                line: run_line,
                text: step.run.clone(),
            });
            if let Some(first) = names.get(&step.name) {
                self.error(
                    &p,
                    item.line,
                    format!(
                        "duplicate step name {:?} (first at line {first})",
                        step.name
                    ),
                );
            } else {
                names.insert(step.name.clone(), item.line);
            }
            out.push(step);
        }
        out
    }

    fn step(
        &mut self,
        node: &Node,
        path: &str,
        default_name: String,
        notes: &mut TaskNotes,
    ) -> Option<Step> {
        let f = self.mapping(node, path, "a step", STEP_FIELDS)?;
        let name = match f.get("name") {
            Some(n) => {
                let p = join(path, "name");
                let name = self.string(n, &p)?;
                self.name(&name, &p, n.line, "step");
                name
            }
            None => default_name,
        };
        let run = self
            .required(&f, path, "run")
            .and_then(|n| self.string(n, &join(path, "run")));
        let env = match f.get("env") {
            Some(n) => {
                let p = join(path, "env");
                self.templates_in_env(n, &p, notes);
                self.env(n, &p, "env var")
            }
            None => BTreeMap::new(),
        };
        Some(Step {
            name,
            run: run?,
            env,
        })
    }

    /// Checks what needs the whole pipeline: dependencies, cycles, and the
    /// tasks and params that templates and conditions read.
    fn cross_check(
        &mut self,
        notes: &BTreeMap<String, (TaskNotes, usize)>,
        params: &BTreeMap<String, Param>,
        pipeline_env: &[TemplateSite],
        path: &str,
    ) {
        let task_names: Vec<&str> = notes.keys().map(String::as_str).collect();
        let dep_path = |task: &str, i: usize| {
            format!(
                "{}[{i}]",
                join(&join(&join(path, "tasks"), task), "depends_on")
            )
        };
        let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (task, (n, _)) in notes {
            let mut deps = Vec::with_capacity(n.depends_on.len());
            for (dep, i, line) in &n.depends_on {
                if dep == task {
                    let p = dep_path(task, *i);
                    self.error(&p, *line, format!("task {task:?} depends on itself"));
                } else if !notes.contains_key(dep) {
                    let hint = self.did_you_mean(dep, task_names.iter().copied());
                    let p = dep_path(task, *i);
                    self.error(&p, *line, format!("unknown task {:?}{hint}", shorten(dep)));
                } else {
                    deps.push(dep.clone());
                }
            }
            edges.insert(task.clone(), deps);
        }

        let reach = dag::Reach::new(&edges);
        if !reach.unordered.is_empty() {
            for cycle in dag::cycles(&edges, reach.unordered.clone()) {
                let (first, next) = (&cycle[0], &cycle[1]);
                let (p, line) = notes[first]
                    .0
                    .depends_on
                    .iter()
                    .find(|(d, _, _)| d == next)
                    .map(|(_, i, l)| (dep_path(first, *i), *l))
                    .expect("a cycle follows written dependencies");
                self.error(&p, line, format!("cycle: {}", cycle.join(" -> ")));
            }
        }

        for site in pipeline_env {
            for r in self.references(site) {
                match r {
                    Reference::Param(name) => self.check_param(&name, params, site, path),
                    Reference::TaskOutput(_) | Reference::TaskStatus(_) => self.error(
                        &site.path,
                        site.line,
                        "pipeline env is set before any task runs: it cannot read task outputs; move it to the task",
                    ),
                }
            }
        }
        for (task, (n, _)) in notes {
            let mut reads: Vec<(Reference, String, usize)> = Vec::new();
            for site in &n.templates {
                for r in self.references(site) {
                    reads.push((r, site.path.clone(), site.line));
                }
            }
            if let Some((c, p, line)) = &n.condition {
                reads.extend(c.references().into_iter().map(|r| (r, p.clone(), *line)));
            }
            for (r, p, line) in reads {
                match &r {
                    Reference::Param(name) => {
                        let site = TemplateSite {
                            path: p,
                            line,
                            text: String::new(),
                        };
                        self.check_param(name, params, &site, path);
                    }
                    Reference::TaskOutput(other) | Reference::TaskStatus(other) => {
                        if other == task {
                            self.error(
                                &p,
                                line,
                                format!("task {task:?} cannot read its own output or status"),
                            );
                        } else if !notes.contains_key(other) {
                            let hint = self.did_you_mean(other, task_names.iter().copied());
                            self.error(&p, line, format!("unknown task {other:?}{hint}"));
                        } else if reach.is_upstream(task, other) == Some(false) {
                            self.error(
                                &p,
                                line,
                                format!(
                                    "task {other:?} is not upstream of {task:?}, so it may not have finished: add it to depends_on"
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    fn references(&mut self, site: &TemplateSite) -> Vec<Reference> {
        match template::references(&site.text) {
            Ok(refs) => {
                let before = self.templates;
                self.templates += refs.len();
                if before <= MAX_TEMPLATES && self.templates > MAX_TEMPLATES {
                    self.error(
                        &site.path,
                        site.line,
                        format!("more than {MAX_TEMPLATES} template expressions in the workflow"),
                    );
                }
                refs
            }
            Err(e) => {
                self.error(&site.path, site.line, e.to_string());
                Vec::new()
            }
        }
    }

    fn check_param(
        &mut self,
        name: &str,
        params: &BTreeMap<String, Param>,
        site: &TemplateSite,
        pipeline: &str,
    ) {
        if !params.contains_key(name) {
            let hint = match self.closest(name, params.keys().map(String::as_str)) {
                Some(c) => format!("did you mean {c:?}?"),
                None => format!("declare it under {pipeline}.params"),
            };
            self.error(
                &site.path,
                site.line,
                format!("unknown param {name:?}; {hint}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_diagnostics_like_the_design() {
        let d = Diagnostic {
            path: "pipelines.build.tasks.test.depends_on[0]".into(),
            line: Some(14),
            message: "unknown task \"tset\"".into(),
        };
        assert_eq!(
            d.to_string(),
            "pipelines.build.tasks.test.depends_on[0]: unknown task \"tset\" (line 14)"
        );
        let all = Diagnostics(vec![
            d.clone(),
            Diagnostic {
                path: String::new(),
                line: None,
                message: "m".into(),
            },
        ]);
        assert_eq!(all.to_string(), format!("{d}\nm"));
        assert_eq!(
            serde_json::to_value(&all).unwrap(),
            serde_json::json!([
                {"path": "pipelines.build.tasks.test.depends_on[0]", "line": 14, "message": "unknown task \"tset\""},
                {"path": "", "line": null, "message": "m"}
            ])
        );
    }

    #[test]
    fn refuses_oversized_specs() {
        let text = format!("name: big\n# {}\n", "x".repeat(MAX_SPEC_BYTES));
        let err = parse_workflow(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the spec is 1048589 bytes, more than the limit of 1048576 (1 MiB)"
        );
    }

    #[test]
    fn accepts_steps_as_strings_and_numbers_as_env_values() {
        let w = parse_workflow("name: w\npipelines:\n  p:\n    env: {N: 1.10}\n    tasks:\n      t:\n        steps: [make, make test]\n")
            .unwrap();
        let p = &w.pipelines["p"];
        assert_eq!(p.env["N"], "1.10");
        let names: Vec<&str> = p.tasks["t"].steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["step-1", "step-2"]);
    }

    fn chain(tasks: usize, extra: &str) -> String {
        let mut text = String::from("name: w\npipelines:\n  p:\n    tasks:\n");
        for i in 0..tasks {
            text.push_str(&format!("      t{i}:\n"));
            if i > 0 {
                text.push_str(&format!("        depends_on: [t{}]\n", i - 1));
            }
            text.push_str("        steps: [\"echo {{ tasks.t0.output }}\"]\n");
        }
        text.push_str(extra);
        text
    }

    fn messages(text: &str) -> Vec<String> {
        parse_workflow(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Upstream sets were built afresh per task (a 5,000-task chain took 15 s
    /// in a debug build); the answers must stay the same with one pass.
    #[test]
    fn long_chains_check_upstream_reads() {
        let text = chain(MAX_TASKS, "");
        // t0 reads its own output: the only fault.
        assert_eq!(
            messages(&text),
            [
                "pipelines.p.tasks.t0.steps[0]: task \"t0\" cannot read its own output or status (line 6)"
            ]
        );
        let text = text.replace("tasks.t0.output", "tasks.t1.output").replacen(
            "t1:\n",
            "t1:\n        if: \"tasks.t998.status == 'success'\"\n",
            1,
        );
        let got = messages(&text);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[0].contains("task \"t1\" is not upstream of \"t0\""),
            "{got:?}"
        );
        assert!(
            got[1].contains("task \"t998\" is not upstream of \"t1\""),
            "{got:?}"
        );
        assert!(
            got[2].contains("task \"t1\" cannot read its own output"),
            "{got:?}"
        );
    }

    /// Reporting a long cycle searched the walk for each step and rescanned
    /// every remaining task after each cycle (a 3,000-task cycle: 14 s).
    #[test]
    fn long_cycles_are_reported_once() {
        let text = chain(MAX_TASKS, "").replace(
            "      t0:\n",
            &format!("      t0:\n        depends_on: [t{}]\n", MAX_TASKS - 1),
        );
        let got = messages(&text);
        assert_eq!(got.len(), 2, "{:?}", &got[..2]);
        assert!(
            got[0].starts_with("pipelines.p.tasks.t0.depends_on[0]: cycle: t0 -> t999 -> t998 -> "),
            "{}",
            &got[0][..200]
        );
        assert!(got[0].ends_with(" -> t1 -> t0 (line 6)"));
    }

    #[test]
    fn limits_are_faults_with_paths_and_lines() {
        let over = |n: usize, line: &str| line.repeat(n);
        let cases: Vec<(String, &str)> = vec![
            (
                chain(MAX_TASKS + 1, ""),
                "pipelines.p.tasks: 1001 tasks, more than the limit of 1000 (line 5)",
            ),
            (
                format!(
                    "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps:\n{}        post: [x]\n",
                    over(MAX_STEPS, "          - x\n")
                ),
                "pipelines.p.tasks.t.post: 101 steps in the task (steps and post together), more than the limit of 100",
            ),
            (
                format!(
                    "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        depends_on: [{}]\n        steps: [x]\n",
                    (0..=MAX_DEPENDENCIES)
                        .map(|i| format!("d{i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "pipelines.p.tasks.t.depends_on: 257 dependencies, more than the limit of 256 (line 6)",
            ),
            (
                format!(
                    "name: w\npipelines:\n  p:\n    env:\n{}    tasks:\n      t:\n        steps: [x]\n",
                    (0..=MAX_ENV_VARS)
                        .map(|i| format!("      V{i}: x\n"))
                        .collect::<String>()
                ),
                "pipelines.p.env: 257 env vars, more than the limit of 256 (line 5)",
            ),
            (
                format!(
                    "name: w\npipelines:\n  p:\n    params:\n      {}: x\n    tasks:\n      t:\n        steps: [x]\n",
                    "P".repeat(MAX_ENV_NAME_LEN + 1)
                ),
                "param name \"PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP...\" is longer than 128 characters (line 5)",
            ),
            (
                format!(
                    "name: w\npipelines:\n{}",
                    (0..=MAX_PIPELINES)
                        .map(|i| format!("  p{i}: {{tasks: {{t: {{steps: [x]}}}}}}\n"))
                        .collect::<String>()
                ),
                "pipelines: 101 pipelines, more than the limit of 100 (line 3)",
            ),
            (
                format!(
                    "name: w\npipelines:\n  p:\n    params: {{a: x}}\n    tasks:\n      t:\n        steps: [\"{}\"]\n",
                    "{{ params.a }}".repeat(MAX_TEMPLATES + 1)
                ),
                "pipelines.p.tasks.t.steps[0]: more than 10000 template expressions in the workflow (line 7)",
            ),
        ];
        for (text, want) in cases {
            assert!(text.len() < MAX_SPEC_BYTES);
            let got = messages(&text);
            assert!(
                got.iter().any(|m| m.contains(want)),
                "want {want}\ngot {got:?}"
            );
        }
    }

    /// Every fault used to be listed: a spec with a fault on every line
    /// answered with more than itself.
    #[test]
    fn faults_past_the_limit_are_counted() {
        let text = format!(
            "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        depends_on: [{}]\n",
            (0..200)
                .map(|i| format!("u{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let got = messages(&text);
        assert_eq!(got.len(), MAX_DIAGNOSTICS + 1);
        assert_eq!(
            got[MAX_DIAGNOSTICS],
            "100 more faults not shown (only the first 100 are)"
        );
    }

    /// A long task name was repeated whole in the path of every node below
    /// it, so memory grew with its length times the task's size.
    #[test]
    fn long_keys_are_cut_in_paths() {
        // YAML keys end at 1,024 characters.
        let name = "a".repeat(1000);
        let text = format!(
            "name: w\npipelines:\n  p:\n    tasks:\n      {name}:\n        steps:\n{}",
            "          - {run: x, bad: 1}\n".repeat(50)
        );
        let got = messages(&text);
        assert_eq!(got.len(), 51);
        assert!(got.iter().all(|m| m.len() < 300), "{got:?}");
        assert!(got[0].starts_with(&format!(
            "pipelines.p.tasks.{}...: task name",
            "a".repeat(64)
        )));
    }
}
