//! The visual editor's model: a workflow being drawn, read leniently from
//! its YAML (a task without steps or a misspelt field still shows on the
//! canvas, with its faults), and the canvas's gestures as edits of that
//! YAML through [`crate::edit`], so only the lines a gesture concerns change.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::edit::{self, EditError, Op, Seg, Yaml};
use crate::layout::Direction;
use crate::parse::{Diagnostic, is_name};

/// A workflow as drawn.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Draft {
    /// The workflow's name, as written.
    pub name: String,
    /// Its pipelines, in the text's order.
    pub pipelines: Vec<PipelineDraft>,
}

/// A pipeline as drawn.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelineDraft {
    /// Its name.
    pub name: String,
    /// `manual`, `webhook` or `cron 0 * * * *`, as written.
    pub trigger: String,
    /// Its tasks, in the text's order.
    pub tasks: Vec<TaskDraft>,
    /// Its params' names, in the text's order.
    pub params: Vec<String>,
}

/// A task as drawn.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskDraft {
    /// Its name.
    pub name: String,
    /// The image, or `None` for a process on the agent.
    pub image: Option<String>,
    /// The names it waits for, as written (unknown ones included).
    pub depends_on: Vec<String>,
    /// How many steps, `post` ones apart.
    pub steps: usize,
    /// How many `post` steps.
    pub post: usize,
    /// The names of the artifacts it publishes, as written.
    pub publish: Vec<String>,
    /// The names of its caches, as written.
    pub caches: Vec<String>,
}

/// Farthest a dragged node may sit from the origin, in SVG units.
pub const MAX_COORDINATE: i32 = 1_000_000;

/// Where the editor's user placed tasks (the rest are laid out
/// automatically), and which way the drawing runs. Stored with a workflow
/// version, outside the spec's meaning.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditorLayout {
    /// `left-right` (the default) or `top-down`.
    #[serde(default)]
    pub direction: Direction,
    /// Pipeline, then task, to the node's top-left corner.
    #[serde(default)]
    pub positions: BTreeMap<String, BTreeMap<String, (i32, i32)>>,
}

impl EditorLayout {
    /// A fault when the layout is larger than any spec could need or names
    /// what no spec could hold.
    pub fn check(&self) -> Result<(), String> {
        if self.positions.len() > crate::parse::MAX_PIPELINES {
            return Err(format!(
                "positions for more than {} pipelines",
                crate::parse::MAX_PIPELINES
            ));
        }
        for (pipeline, tasks) in &self.positions {
            if !is_name(pipeline) {
                return Err(format!("{pipeline:?} is not a pipeline name"));
            }
            if tasks.len() > crate::parse::MAX_TASKS {
                return Err(format!(
                    "positions for more than {} tasks in {pipeline}",
                    crate::parse::MAX_TASKS
                ));
            }
            for (task, (x, y)) in tasks {
                if !is_name(task) {
                    return Err(format!("{task:?} is not a task name"));
                }
                if x.unsigned_abs() > MAX_COORDINATE.unsigned_abs()
                    || y.unsigned_abs() > MAX_COORDINATE.unsigned_abs()
                {
                    return Err(format!(
                        "{pipeline}.{task} is placed beyond {MAX_COORDINATE} units"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn tasks_path(pipeline: &str) -> Vec<Seg> {
    vec![Seg::key("pipelines"), Seg::key(pipeline), Seg::key("tasks")]
}

/// The path of a task, or of one of its fields.
pub fn task_path(pipeline: &str, task: &str, field: Option<&str>) -> Vec<Seg> {
    let mut path = tasks_path(pipeline);
    path.push(Seg::key(task));
    if let Some(f) = field {
        path.push(Seg::key(f));
    }
    path
}

/// The path of a pipeline's field.
pub fn pipeline_path(pipeline: &str, field: &str) -> Vec<Seg> {
    vec![Seg::key("pipelines"), Seg::key(pipeline), Seg::key(field)]
}

fn strings(value: Option<&Yaml>) -> Vec<String> {
    match value {
        Some(Yaml::Seq(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(String::from))
            .collect(),
        Some(Yaml::Scalar(s, _)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The `name` of each mapping in a list (a task's `publish`, `caches`).
fn names(value: Option<&Yaml>) -> Vec<String> {
    let Some(Yaml::Seq(items)) = value else {
        return Vec::new();
    };
    let name = |i: &Yaml| i.get(&[Seg::key("name")])?.as_str().map(String::from);
    items.iter().filter_map(name).collect()
}

fn count(value: Option<&Yaml>) -> usize {
    match value {
        Some(Yaml::Seq(items)) => items.len(),
        _ => 0,
    }
}

impl Draft {
    /// The draft of a YAML text, or the YAML fault that keeps it from
    /// being read.
    pub fn read(text: &str) -> Result<Draft, EditError> {
        Ok(Draft::from_tree(&edit::tree(text)?))
    }

    /// The draft of a tree.
    pub fn from_tree(tree: &Yaml) -> Draft {
        let name = tree
            .get(&[Seg::key("name")])
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .to_string();
        let pipelines = tree
            .get(&[Seg::key("pipelines")])
            .and_then(Yaml::as_map)
            .unwrap_or_default()
            .iter()
            .map(|(pname, p)| {
                let trigger = match p.get(&[Seg::key("trigger")]) {
                    Some(Yaml::Map(_)) => {
                        let cron = p
                            .get(&[Seg::key("trigger"), Seg::key("cron")])
                            .and_then(Yaml::as_str)
                            .unwrap_or_default();
                        format!("cron {cron}")
                    }
                    Some(t) => t.as_str().unwrap_or("manual").to_string(),
                    None => "manual".to_string(),
                };
                let tasks = p
                    .get(&[Seg::key("tasks")])
                    .and_then(Yaml::as_map)
                    .unwrap_or_default()
                    .iter()
                    .map(|(tname, t)| TaskDraft {
                        name: tname.clone(),
                        image: t
                            .get(&[Seg::key("image")])
                            .and_then(Yaml::as_str)
                            .map(String::from),
                        depends_on: strings(t.get(&[Seg::key("depends_on")])),
                        steps: count(t.get(&[Seg::key("steps")])),
                        post: count(t.get(&[Seg::key("post")])),
                        publish: names(t.get(&[Seg::key("publish")])),
                        caches: names(t.get(&[Seg::key("caches")])),
                    })
                    .collect();
                let params = p
                    .get(&[Seg::key("params")])
                    .and_then(Yaml::as_map)
                    .unwrap_or_default()
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect();
                PipelineDraft {
                    name: pname.clone(),
                    trigger,
                    tasks,
                    params,
                }
            })
            .collect();
        Draft { name, pipelines }
    }

    /// A pipeline by name.
    pub fn pipeline(&self, name: &str) -> Option<&PipelineDraft> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}

impl PipelineDraft {
    /// A task by name.
    pub fn task(&self, name: &str) -> Option<&TaskDraft> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The cycle that making `to` wait for `from` would close, as the
    /// names along it (`from -> to -> ... -> from`), or `None` when the
    /// edge is fine.
    pub fn cycle_if_connected(&self, from: &str, to: &str) -> Option<Vec<String>> {
        if from == to {
            return Some(vec![from.to_string(), from.to_string()]);
        }
        // Breadth-first from `to` along "is waited for by" edges; a path
        // back to `from` closes the cycle. Each task is visited once.
        let mut dependants: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in &self.tasks {
            for d in &t.depends_on {
                dependants
                    .entry(d.as_str())
                    .or_default()
                    .push(t.name.as_str());
            }
        }
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([to]);
        let mut seen = BTreeSet::from([to]);
        while let Some(at) = queue.pop_front() {
            if at == from {
                let mut path = vec![from.to_string()];
                let mut back = from;
                while back != to {
                    back = came_from[back];
                    path.push(back.to_string());
                }
                path.reverse();
                path.insert(0, from.to_string());
                return Some(path);
            }
            for &next in dependants.get(at).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(next) {
                    came_from.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// A name not yet taken, from `base`: `base`, `base-2`, `base-3`...
    pub fn fresh_name(&self, base: &str) -> String {
        (1..=self.tasks.len() + 1)
            .map(|i| {
                if i == 1 {
                    base.to_string()
                } else {
                    format!("{base}-{i}")
                }
            })
            .find(|n| self.task(n).is_none())
            .expect("one of n + 1 names is free among n tasks")
    }
}

/// The YAML a new workflow starts from in the editor.
pub fn new_workflow(name: &str) -> String {
    format!(
        "name: {}\npipelines:\n  main:\n    trigger: manual\n    tasks: {{}}\n",
        edit::scalar(name)
    )
}

fn no_task(pipeline: &str, task: &str) -> EditError {
    EditError(format!("pipeline {pipeline} has no task {task}"))
}

fn pipeline_of<'d>(draft: &'d Draft, pipeline: &str) -> Result<&'d PipelineDraft, EditError> {
    draft
        .pipeline(pipeline)
        .ok_or_else(|| EditError(format!("there is no pipeline {pipeline}")))
}

/// A gesture of the canvas, turned into edits of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gesture {
    /// A new task with one step.
    AddTask {
        /// Where.
        pipeline: String,
        /// Its name.
        name: String,
    },
    /// A new task with one step that waits for `after`.
    AddTaskAfter {
        /// Where.
        pipeline: String,
        /// The task it waits for.
        after: String,
        /// Its name.
        name: String,
    },
    /// A new task between two connected ones: it waits for `from` and
    /// `to` waits for it instead of `from`.
    InsertBetween {
        /// Where.
        pipeline: String,
        /// The dependency.
        from: String,
        /// The dependant.
        to: String,
        /// The new task's name.
        name: String,
    },
    /// `to` waits for `from`.
    Connect {
        /// Where.
        pipeline: String,
        /// The dependency.
        from: String,
        /// The dependant.
        to: String,
    },
    /// `to` no longer waits for `from`.
    Disconnect {
        /// Where.
        pipeline: String,
        /// The dependency.
        from: String,
        /// The dependant.
        to: String,
    },
    /// The task goes, and every mention of it in `depends_on`.
    RemoveTask {
        /// Where.
        pipeline: String,
        /// Which.
        name: String,
    },
    /// The task is renamed, and every `depends_on`, `if` and `{{ }}` that
    /// names it follows.
    RenameTask {
        /// Where.
        pipeline: String,
        /// Its name.
        from: String,
        /// Its new name.
        to: String,
    },
    /// A field of a task set (`Some`) or removed (`None`).
    SetTaskField {
        /// Where.
        pipeline: String,
        /// Which task.
        task: String,
        /// The field, one of `parse::TASK_FIELDS`.
        field: String,
        /// Its value.
        value: Option<Yaml>,
    },
    /// A field of a pipeline set (`Some`) or removed (`None`).
    SetPipelineField {
        /// Which pipeline.
        pipeline: String,
        /// The field, one of `parse::PIPELINE_FIELDS` except `tasks`.
        field: String,
        /// Its value.
        value: Option<Yaml>,
    },
}

fn deps_op(pipeline: &str, task: &str, deps: Vec<String>) -> Op {
    let path = task_path(pipeline, task, Some("depends_on"));
    if deps.is_empty() {
        Op::Remove { path }
    } else {
        // Where people write it: what a task waits for, then what it does.
        Op::Insert {
            path,
            value: Yaml::strs(&deps),
            before: "steps".into(),
        }
    }
}

/// The edits a gesture makes, checked against the draft first.
pub fn ops(text: &str, gesture: &Gesture) -> Result<Vec<Op>, EditError> {
    let tree = edit::tree(text)?;
    let draft = Draft::from_tree(&tree);
    let check_name = |name: &str, p: &PipelineDraft| {
        if !is_name(name) {
            return Err(EditError(format!(
                "{name:?} is not a task name: use 1 to 63 of a-z, 0-9, -, _, starting with a letter or digit"
            )));
        }
        if p.task(name).is_some() {
            return Err(EditError(format!("there is already a task {name}")));
        }
        Ok(())
    };
    let new_task = |deps: &[&str], name: &str| {
        let mut entries = Vec::new();
        if !deps.is_empty() {
            entries.push(("depends_on".to_string(), Yaml::strs(deps)));
        }
        entries.push((
            "steps".to_string(),
            Yaml::Seq(vec![Yaml::Map(vec![(
                "run".to_string(),
                Yaml::str(format!("echo {name}")),
            )])]),
        ));
        Yaml::Map(entries)
    };
    Ok(match gesture {
        Gesture::AddTask { pipeline, name } => {
            let p = pipeline_of(&draft, pipeline)?;
            check_name(name, p)?;
            vec![Op::Set {
                path: task_path(pipeline, name, None),
                value: new_task(&[], name),
            }]
        }
        Gesture::AddTaskAfter {
            pipeline,
            after,
            name,
        } => {
            let p = pipeline_of(&draft, pipeline)?;
            check_name(name, p)?;
            p.task(after).ok_or_else(|| no_task(pipeline, after))?;
            vec![Op::Set {
                path: task_path(pipeline, name, None),
                value: new_task(&[after], name),
            }]
        }
        Gesture::InsertBetween {
            pipeline,
            from,
            to,
            name,
        } => {
            let p = pipeline_of(&draft, pipeline)?;
            check_name(name, p)?;
            let target = p.task(to).ok_or_else(|| no_task(pipeline, to))?;
            if !target.depends_on.contains(from) {
                return Err(EditError(format!("{to} does not wait for {from}")));
            }
            let deps = target
                .depends_on
                .iter()
                .map(|d| if d == from { name.clone() } else { d.clone() })
                .collect();
            vec![
                Op::Set {
                    path: task_path(pipeline, name, None),
                    value: new_task(&[from], name),
                },
                deps_op(pipeline, to, deps),
            ]
        }
        Gesture::Connect { pipeline, from, to } => {
            let p = pipeline_of(&draft, pipeline)?;
            p.task(from).ok_or_else(|| no_task(pipeline, from))?;
            let target = p.task(to).ok_or_else(|| no_task(pipeline, to))?;
            if let Some(cycle) = p.cycle_if_connected(from, to) {
                return Err(EditError(format!(
                    "that would make a cycle: {}",
                    cycle.join(" -> ")
                )));
            }
            if target.depends_on.contains(from) {
                return Ok(Vec::new());
            }
            let mut deps = target.depends_on.clone();
            deps.push(from.clone());
            vec![deps_op(pipeline, to, deps)]
        }
        Gesture::Disconnect { pipeline, from, to } => {
            let p = pipeline_of(&draft, pipeline)?;
            let target = p.task(to).ok_or_else(|| no_task(pipeline, to))?;
            if !target.depends_on.contains(from) {
                return Ok(Vec::new());
            }
            let deps: Vec<String> = target
                .depends_on
                .iter()
                .filter(|d| *d != from)
                .cloned()
                .collect();
            vec![deps_op(pipeline, to, deps)]
        }
        Gesture::RemoveTask { pipeline, name } => {
            let p = pipeline_of(&draft, pipeline)?;
            p.task(name).ok_or_else(|| no_task(pipeline, name))?;
            let mut out: Vec<Op> = p
                .tasks
                .iter()
                .filter(|t| t.name != *name && t.depends_on.contains(name))
                .map(|t| {
                    deps_op(
                        pipeline,
                        &t.name,
                        t.depends_on
                            .iter()
                            .filter(|d| *d != name)
                            .cloned()
                            .collect(),
                    )
                })
                .collect();
            out.push(Op::Remove {
                path: task_path(pipeline, name, None),
            });
            out
        }
        Gesture::RenameTask { pipeline, from, to } => {
            let p = pipeline_of(&draft, pipeline)?;
            p.task(from).ok_or_else(|| no_task(pipeline, from))?;
            if from == to {
                return Ok(Vec::new());
            }
            check_name(to, p)?;
            let mut out = vec![Op::Rename {
                path: task_path(pipeline, from, None),
                to: to.clone(),
            }];
            for t in &p.tasks {
                let name = if t.name == *from { to } else { &t.name };
                if t.depends_on.contains(from) {
                    let deps = t
                        .depends_on
                        .iter()
                        .map(|d| if d == from { to.clone() } else { d.clone() })
                        .collect();
                    out.push(deps_op(pipeline, name, deps));
                }
                out.extend(reference_ops(&tree, pipeline, &t.name, name, from, to));
            }
            if let Some(Yaml::Map(env)) = tree.get(&pipeline_path(pipeline, "env")) {
                rename_in_map(env, &pipeline_path(pipeline, "env"), from, to, &mut out);
            }
            out
        }
        Gesture::SetTaskField {
            pipeline,
            task,
            field,
            value,
        } => {
            let p = pipeline_of(&draft, pipeline)?;
            p.task(task).ok_or_else(|| no_task(pipeline, task))?;
            let path = task_path(pipeline, task, Some(field));
            vec![match value {
                Some(value) => Op::Set {
                    path,
                    value: value.clone(),
                },
                None if tree.get(&path).is_some() => Op::Remove { path },
                None => return Ok(Vec::new()),
            }]
        }
        Gesture::SetPipelineField {
            pipeline,
            field,
            value,
        } => {
            pipeline_of(&draft, pipeline)?;
            let path = pipeline_path(pipeline, field);
            vec![match value {
                Some(value) => Op::Set {
                    path,
                    value: value.clone(),
                },
                None if tree.get(&path).is_some() => Op::Remove { path },
                None => return Ok(Vec::new()),
            }]
        }
    })
}

/// Rewrites of every value of one task (its `if`, image, env, steps and
/// their env, plain or as mappings) that mentions `tasks.FROM.` inside a
/// template or a condition; `depends_on` is done apart.
fn reference_ops(
    tree: &Yaml,
    pipeline: &str,
    old_task: &str,
    task: &str,
    from: &str,
    to: &str,
) -> Vec<Op> {
    let mut out = Vec::new();
    if let Some(Yaml::Map(fields)) = tree.get(&task_path(pipeline, old_task, None)) {
        let path = task_path(pipeline, task, None);
        rename_in_map(fields, &path, from, to, &mut out);
    }
    out
}

/// The ops that rename references in a mapping's values, found walking it
/// (bounded by the spec's nesting, at most 64 levels).
fn rename_in_map(fields: &[(String, Yaml)], path: &[Seg], from: &str, to: &str, out: &mut Vec<Op>) {
    for (key, value) in fields {
        if key == "depends_on" {
            continue;
        }
        let mut here = path.to_vec();
        here.push(Seg::key(key));
        match value {
            Yaml::Scalar(text, kind) if *kind == crate::yaml::ScalarKind::String => {
                let renamed = if key == "if" {
                    rename_refs(text, from, to)
                } else {
                    rename_in_templates(text, from, to)
                };
                if renamed != *text {
                    out.push(Op::Set {
                        path: here,
                        value: Yaml::str(renamed),
                    });
                }
            }
            Yaml::Map(inner) => rename_in_map(inner, &here, from, to, out),
            Yaml::Seq(items) => {
                let plain_changes = items.iter().any(|i| match i {
                    Yaml::Scalar(t, _) => rename_in_templates(t, from, to) != *t,
                    _ => false,
                });
                if plain_changes {
                    // A plain-string step cannot be set alone: the list is.
                    out.push(Op::Set {
                        path: here,
                        value: Yaml::Seq(items.iter().map(|i| renamed_tree(i, from, to)).collect()),
                    });
                } else {
                    for (i, item) in items.iter().enumerate() {
                        if let Yaml::Map(inner) = item {
                            let mut at = here.clone();
                            at.push(Seg::Index(i));
                            rename_in_map(inner, &at, from, to, out);
                        }
                    }
                }
            }
            Yaml::Scalar(..) => {}
        }
    }
}

fn renamed_tree(value: &Yaml, from: &str, to: &str) -> Yaml {
    match value {
        Yaml::Scalar(t, crate::yaml::ScalarKind::String) => {
            Yaml::str(rename_in_templates(t, from, to))
        }
        Yaml::Scalar(..) => value.clone(),
        Yaml::Seq(items) => Yaml::Seq(items.iter().map(|i| renamed_tree(i, from, to)).collect()),
        Yaml::Map(entries) => Yaml::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("if", Yaml::Scalar(t, _)) => Yaml::str(rename_refs(t, from, to)),
                        ("depends_on", _) => v.clone(),
                        _ => renamed_tree(v, from, to),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
    }
}

/// `tasks.FROM.` becomes `tasks.TO.` where it stands as a whole name.
fn rename_refs(text: &str, from: &str, to: &str) -> String {
    let needle = format!("tasks.{from}.");
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in text.match_indices(&needle) {
        let whole = text[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')));
        if whole {
            out.push_str(&text[last..i]);
            out.push_str(&format!("tasks.{to}."));
            last = i + needle.len();
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Only inside `{{ }}`: the rest of a script is shell, not ours to touch.
fn rename_in_templates(script: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let mut rest = script;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rename_refs(&rest[open..open + close + 2], from, to));
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// Carries out a gesture on the text.
pub fn apply(text: &str, gesture: &Gesture) -> Result<String, EditError> {
    edit::apply_all(text, &ops(text, gesture)?)
}

/// Where a validation fault belongs on the canvas: its pipeline and task,
/// read from the fault's path (`pipelines.ci.tasks.build.steps[0]`).
pub fn fault_target(d: &Diagnostic) -> Option<(String, Option<String>)> {
    let rest = d.path.strip_prefix("pipelines.")?;
    let (pipeline, rest) = match rest.split_once('.') {
        Some((p, rest)) => (p, rest),
        None => (rest, ""),
    };
    let task = rest
        .strip_prefix("tasks.")
        .map(|t| t.split(['.', '[']).next().unwrap_or(t).to_string());
    Some((pipeline.to_string(), task))
}

#[cfg(test)]
mod tests;
