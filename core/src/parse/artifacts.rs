//! A task's `publish` and `needs`, and the pipeline-wide check that every
//! need is published upstream.
use super::*;
use crate::artifact;
use crate::spec::{Need, Publish, PublishWhen};

/// Most artifacts one task publishes.
pub const MAX_PUBLISH: usize = 32;
/// Most artifacts one task needs.
pub const MAX_NEEDS: usize = 32;
/// Most paths of one published artifact.
pub const MAX_PUBLISH_PATHS: usize = 16;

impl Checker {
    pub(super) fn publish(
        &mut self,
        node: &Node,
        path: &str,
        notes: &mut TaskNotes,
    ) -> Vec<Publish> {
        let mut out = Vec::new();
        let Some(items) = self.bounded_list(
            node,
            path,
            "a list of artifacts to publish",
            MAX_PUBLISH,
            "artifacts published",
        ) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let Some(f) = self.mapping(
                item,
                &p,
                "an artifact to publish (a mapping with name and path)",
                PUBLISH_FIELDS,
            ) else {
                continue;
            };
            let name = self.required(&f, &p, "name").and_then(|n| {
                let np = join(&p, "name");
                let name = self.artifact_name(n, &np)?;
                notes.publish.push((name.clone(), np, n.line));
                Some(name)
            });
            let paths = self.publish_paths(&f, &p);
            let optional = f.get("optional").map_or(Some(false), |n| {
                let op = join(&p, "optional");
                match n.as_scalar() {
                    Some(s) if s.kind() == ScalarKind::Bool => {
                        Some(s.text.eq_ignore_ascii_case("true"))
                    }
                    _ => {
                        self.wrong_type(&op, n, "true or false");
                        None
                    }
                }
            });
            let when = f.get("when").map_or(Some(PublishWhen::Success), |n| {
                let wp = join(&p, "when");
                let text = self.string(n, &wp)?;
                match text.as_str() {
                    "success" => Some(PublishWhen::Success),
                    "always" => Some(PublishWhen::Always),
                    _ => {
                        self.error(
                            &wp,
                            n.line,
                            format!(
                                "unknown when {:?}: expected success or always",
                                shorten(&text)
                            ),
                        );
                        None
                    }
                }
            });
            if let (Some(name), Some(paths), Some(optional), Some(when)) =
                (name, paths, optional, when)
            {
                out.push(Publish {
                    name,
                    paths,
                    optional,
                    when,
                });
            }
        }
        out
    }

    /// `path: one` or `paths: [one, two]`, each checked.
    fn publish_paths(&mut self, f: &Fields<'_>, p: &str) -> Option<Vec<String>> {
        let (node, key) = match (f.get("path"), f.get("paths")) {
            (Some(_), Some(n)) => {
                self.error(&join(p, "paths"), n.line, "give path or paths, not both");
                return None;
            }
            (Some(n), None) => (n, "path"),
            (None, Some(n)) => (n, "paths"),
            (None, None) => {
                self.error(p, f.line, "missing field \"path\" (or \"paths\", a list)");
                return None;
            }
        };
        let kp = join(p, key);
        if key == "paths" {
            self.path_list(node, &kp, true)
        } else {
            self.artifact_path(node, &kp).map(|p| vec![p])
        }
    }

    /// A list of paths or globs by the publish rules (`paths`, a cache's
    /// `hash_files`): at least one when `required`, at most
    /// `MAX_PUBLISH_PATHS`, no repeats.
    pub(super) fn path_list(
        &mut self,
        node: &Node,
        kp: &str,
        required: bool,
    ) -> Option<Vec<String>> {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(kp, node, "a list of paths");
            return None;
        };
        if required && items.is_empty() {
            self.error(kp, node.line, "no paths: give at least one");
            return None;
        }
        if !self.at_most(items.len(), MAX_PUBLISH_PATHS, kp, node.line, "paths") {
            return None;
        }
        let mut paths: Vec<String> = Vec::with_capacity(items.len());
        let mut faults = false;
        for (i, n) in items.iter().enumerate() {
            let np = format!("{kp}[{i}]");
            match self.artifact_path(n, &np) {
                Some(path) if paths.contains(&path) => {
                    self.error(&np, n.line, format!("duplicate path {:?}", shorten(&path)));
                    faults = true;
                }
                Some(path) => paths.push(path),
                None => faults = true,
            }
        }
        (!faults).then_some(paths)
    }

    pub(super) fn needs(&mut self, node: &Node, path: &str, notes: &mut TaskNotes) -> Vec<Need> {
        let mut out: Vec<Need> = Vec::new();
        let Some(items) = self.bounded_list(
            node,
            path,
            "a list of artifact names",
            MAX_NEEDS,
            "artifacts needed",
        ) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let (name_node, name_path, place) = match &item.value {
                Value::Scalar(_) => (item, p.clone(), Some(String::new())),
                Value::Map(_) => {
                    let Some(f) = self.mapping(item, &p, "", NEED_FIELDS) else {
                        continue;
                    };
                    let Some(n) = self.required(&f, &p, "name") else {
                        continue;
                    };
                    let place = match f.get("path") {
                        Some(pn) => self.artifact_path(pn, &join(&p, "path")),
                        None => Some(String::new()),
                    };
                    (n, join(&p, "name"), place)
                }
                Value::Seq(_) => {
                    self.wrong_type(
                        &p,
                        item,
                        "an artifact name, or a mapping with name and path",
                    );
                    continue;
                }
            };
            let Some(name) = self.artifact_name(name_node, &name_path) else {
                continue;
            };
            if out.iter().any(|n| n.name == name) {
                self.error(
                    &name_path,
                    name_node.line,
                    format!("artifact {name:?} is needed twice"),
                );
                continue;
            }
            notes.needs.push((name.clone(), name_path, name_node.line));
            if let Some(path) = place {
                out.push(Need { name, path });
            }
        }
        out
    }

    fn artifact_name(&mut self, node: &Node, path: &str) -> Option<String> {
        let name = self.string(node, path)?;
        match artifact::check_name(&name) {
            Ok(()) => Some(name),
            Err(e) => {
                self.error(path, node.line, e);
                None
            }
        }
    }

    /// A path under `publish` or `needs`, without its trailing `/`.
    fn artifact_path(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        let trimmed = text.trim_end_matches('/');
        let fault = if text.contains("{{") {
            Err(format!(
                "path {:?} holds \"{{{{\": artifact paths are not templates",
                shorten(&text)
            ))
        } else if trimmed.is_empty() && !text.is_empty() {
            Err(format!(
                "path {text:?} is absolute: paths are relative to the workspace"
            ))
        } else {
            artifact::check_spec_path(trimmed)
        };
        match fault {
            Ok(()) => Some(trimmed.to_string()),
            Err(e) => {
                self.error(path, node.line, e);
                None
            }
        }
    }

    /// Every artifact name is published by one task of the pipeline, and
    /// every need is published by a task upstream of the one that needs it.
    pub(super) fn artifact_links(
        &mut self,
        notes: &BTreeMap<String, (TaskNotes, usize)>,
        reach: &dag::Reach,
    ) {
        let mut producers: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
        for (task, (n, _)) in notes {
            for (name, p, line) in &n.publish {
                match producers.get(name.as_str()) {
                    Some((other, first)) => {
                        let message = if other == task {
                            format!("artifact {name:?} is published twice (first at line {first})")
                        } else {
                            format!(
                                "artifact {name:?} is also published by task {other:?} (line {first}): names are unique in a pipeline"
                            )
                        };
                        self.error(p, *line, message);
                    }
                    None => {
                        producers.insert(name, (task, *line));
                    }
                }
            }
        }
        for (task, (n, _)) in notes {
            for (name, p, line) in &n.needs {
                let message = match producers.get(name.as_str()) {
                    Some((producer, _)) if producer == task => {
                        format!("task {task:?} cannot need its own artifact {name:?}")
                    }
                    // Upstream, or not told (a cycle, reported already).
                    Some((producer, _)) if reach.is_upstream(task, producer) != Some(false) => {
                        continue;
                    }
                    Some((producer, _)) => format!(
                        "needs artifact {name:?}, which no task upstream of {task:?} publishes: task {producer:?} does; add {producer:?} to depends_on"
                    ),
                    None => {
                        let hint = self.did_you_mean(name, producers.keys().copied());
                        format!(
                            "needs artifact {name:?}, which no task upstream of {task:?} publishes{hint}"
                        )
                    }
                };
                self.error(p, *line, message);
            }
        }
    }
}
