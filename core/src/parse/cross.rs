//! The second pass: what needs the whole pipeline (dependencies, cycles,
//! the tasks and params that templates and conditions read, the artifacts
//! tasks need).
use super::*;

impl Checker {
    /// Checks what needs the whole pipeline: dependencies, cycles, and the
    /// tasks and params that templates and conditions read.
    pub(super) fn cross_check(
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
        self.artifact_links(notes, &reach);
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
                    Reference::TaskOutput(_)
                    | Reference::TaskStatus(_)
                    | Reference::TaskCache(..) => self.error(
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
                    Reference::TaskOutput(other)
                    | Reference::TaskStatus(other)
                    | Reference::TaskCache(other, _) => {
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
                        } else if let Reference::TaskCache(_, cache) = &r
                            && !notes[other].0.caches.contains(cache)
                        {
                            let caches = notes[other].0.caches.iter().map(String::as_str);
                            let hint = self.did_you_mean(cache, caches);
                            self.error(
                                &p,
                                line,
                                format!("task {other:?} has no cache {cache:?}{hint}"),
                            );
                        }
                    }
                }
            }
        }
    }

    /// Under `placement: together` every task of a run goes to one agent,
    /// chosen by the first task placed: a task selector that asks for
    /// other labels than the pipeline's could never be met there.
    pub(super) fn together(
        &mut self,
        tasks: &BTreeMap<String, Task>,
        notes: &BTreeMap<String, (TaskNotes, usize)>,
        pipeline_selector: &BTreeMap<String, String>,
        path: &str,
    ) {
        for (name, task) in tasks {
            for (key, value) in &task.selector {
                let (k, value_shown) = (shorten(key), shorten(value));
                let message = match pipeline_selector.get(key) {
                    Some(v) if v == value => continue,
                    Some(v) => format!(
                        "{k}={value_shown} contradicts the pipeline's selector {k}={}: under placement: together every task runs on one agent",
                        shorten(v)
                    ),
                    None => format!(
                        "under placement: together every task runs on one agent: move {k}={value_shown} to the pipeline's selector"
                    ),
                };
                let line = notes
                    .get(name)
                    .and_then(|(n, _)| n.selector_lines.get(key).copied())
                    .unwrap_or_default();
                let p = join(&join(&join(&join(path, "tasks"), name), "selector"), key);
                self.error(&p, line, message);
            }
        }
    }

    pub(super) fn references(&mut self, site: &TemplateSite) -> Vec<Reference> {
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

    pub(super) fn check_param(
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
