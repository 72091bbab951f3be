//! Pipelines, their triggers and params.
use super::*;

impl Checker {
    pub(super) fn pipeline(&mut self, node: &Node, path: &str) -> Option<Pipeline> {
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
        let placement = match f.get("placement") {
            None => Some(Placement::default()),
            Some(n) => self.placement(n, &join(path, "placement")),
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
        let cache_save = match f.get("cache_save") {
            None => Some(CacheSave::default()),
            Some(n) => self.cache_save(n, &join(path, "cache_save")),
        };

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
        if placement == Some(Placement::Together) {
            self.together(&tasks, &notes, &selector, path);
        }
        Some(Pipeline {
            trigger: trigger?,
            selector,
            placement: placement?,
            params,
            env,
            concurrency,
            cache_save: cache_save?,
            tasks,
        })
    }

    pub(super) fn placement(&mut self, node: &Node, path: &str) -> Option<Placement> {
        let word = self.string(node, path)?;
        match word.as_str() {
            "spread" => Some(Placement::Spread),
            "together" => Some(Placement::Together),
            other => {
                let hint = self.did_you_mean(other, PLACEMENT_WORDS.iter().copied());
                let hint = if hint.is_empty() {
                    "; expected spread or together".to_string()
                } else {
                    hint
                };
                self.error(
                    path,
                    node.line,
                    format!("unknown placement {:?}{hint}", shorten(other)),
                );
                None
            }
        }
    }

    pub(super) fn trigger(&mut self, node: &Node, path: &str) -> Option<Trigger> {
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
    pub(super) fn shared_variables<'a>(
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
    pub(super) fn params(&mut self, node: &Node, path: &str) -> BTreeMap<String, Param> {
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

    pub(super) fn param(&mut self, node: &Node, path: &str) -> Option<Param> {
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

    pub(super) fn selector(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
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
}
