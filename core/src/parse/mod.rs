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
use crate::spec::{
    CacheSave, Catchup, Overlap, Pipeline, Placement, Retries, Step, Task, Trigger, Workflow,
};
use crate::suggest::closest;
use crate::template::{self, Reference};
use crate::yaml::{self, Entry, Node, ScalarKind, Value};

mod artifacts;
mod caches;
mod cross;
mod pipeline;
mod task;
#[cfg(test)]
mod tests;

pub use artifacts::{MAX_NEEDS, MAX_PUBLISH, MAX_PUBLISH_PATHS};

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
    "placement",
    "params",
    "env",
    "concurrency",
    "cache_save",
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
    "selector",
    "if",
    "env",
    "secrets",
    "timeout",
    "retries",
    "steps",
    "post",
    "publish",
    "needs",
    "caches",
];
/// The fields of an entry of a task's `caches`.
pub const CACHE_FIELDS: &[&str] = &[
    "name",
    "key",
    "hash_files",
    "restore_keys",
    "paths",
    "after",
];
/// The fields of a pipeline's `cache_save`: the kinds of trigger.
pub const CACHE_SAVE_FIELDS: &[&str] = &["manual", "webhook", "cron"];
/// The words of a `cache_save` entry, the default first.
pub const SAVE_MODE_WORDS: &[&str] = &["always", "never"];
/// The fields of an entry of a task's `publish`.
pub const PUBLISH_FIELDS: &[&str] = &["name", "path", "paths", "optional", "when"];
/// The fields of an entry of a task's `needs` written as a mapping.
pub const NEED_FIELDS: &[&str] = &["name", "path"];
/// The words of a `publish` entry's `when`, the default first.
pub const PUBLISH_WHEN_WORDS: &[&str] = &["success", "always"];
/// The fields of a task's `retries`.
pub const RETRIES_FIELDS: &[&str] = &["count", "backoff"];
/// The fields a step may have.
pub const STEP_FIELDS: &[&str] = &["name", "run", "env"];
/// The words of a pipeline's `placement`, the default first.
pub const PLACEMENT_WORDS: &[&str] = &["spread", "together"];
/// The triggers written as a plain word.
pub const TRIGGER_WORDS: &[&str] = &["manual", "webhook"];

/// One fault in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The line of each key of the task's `selector`.
    selector_lines: BTreeMap<String, usize>,
    /// Each artifact it publishes, with the path and line of its name.
    publish: Vec<(String, String, usize)>,
    /// Each artifact it needs, with the path and line of its name.
    needs: Vec<(String, String, usize)>,
    /// The names of its caches.
    caches: Vec<String>,
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

    /// The items of `node`, a list (`expected` describes it) of at most
    /// `max` `what`: none, said, when it is not one.
    fn bounded_list<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        expected: &str,
        max: usize,
        what: &str,
    ) -> Option<&'n [Node]> {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(path, node, expected);
            return None;
        };
        self.at_most(items.len(), max, path, node.line, what)
            .then_some(items.as_slice())
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
}
