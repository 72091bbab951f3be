//! Tasks and their steps.
use super::*;

impl Checker {
    pub(super) fn task(&mut self, node: &Node, path: &str, notes: &mut TaskNotes) -> Option<Task> {
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
        let selector = match f.get("selector") {
            Some(n) => {
                if let Value::Map(entries) = &n.value {
                    notes.selector_lines = entries
                        .iter()
                        .map(|e| (e.key.clone(), e.key_line))
                        .collect();
                }
                self.selector(n, &join(path, "selector"))
            }
            None => BTreeMap::new(),
        };
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
        let publish = f
            .get("publish")
            .map(|n| self.publish(n, &join(path, "publish"), notes))
            .unwrap_or_default();
        let needs = f
            .get("needs")
            .map(|n| self.needs(n, &join(path, "needs"), notes))
            .unwrap_or_default();
        let caches = f
            .get("caches")
            .map(|n| self.caches(n, &join(path, "caches"), &steps, notes))
            .unwrap_or_default();
        Some(Task {
            image,
            depends_on,
            selector,
            steps,
            post,
            env,
            secrets,
            timeout,
            retries,
            condition,
            publish,
            needs,
            caches,
        })
    }

    pub(super) fn templates_in_env(&mut self, node: &Node, path: &str, notes: &mut TaskNotes) {
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

    pub(super) fn secrets(&mut self, node: &Node, path: &str) -> Vec<String> {
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

    pub(super) fn retries(&mut self, node: &Node, path: &str) -> Retries {
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
    pub(super) fn steps(
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

    pub(super) fn step(
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
}
