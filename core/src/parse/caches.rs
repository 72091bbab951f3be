//! A task's `caches` and a pipeline's `cache_save`.
use super::*;
use crate::cache::{self, HASH_HEX, MAX_CACHES, MAX_KEY_BYTES, MAX_RESTORE_KEYS};
use crate::spec::{Cache, SaveMode};

impl Checker {
    pub(super) fn caches(
        &mut self,
        node: &Node,
        path: &str,
        steps: &[Step],
        notes: &mut TaskNotes,
    ) -> Vec<Cache> {
        let mut out = Vec::new();
        let Some(items) = self.bounded_list(node, path, "a list of caches", MAX_CACHES, "caches")
        else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let Some(f) = self.mapping(
                item,
                &p,
                "a cache (a mapping with name, key and paths)",
                CACHE_FIELDS,
            ) else {
                continue;
            };
            let name = self.required(&f, &p, "name").and_then(|n| {
                let np = join(&p, "name");
                let name = self.string(n, &np)?;
                let fault = match cache::check_name(&name) {
                    Err(e) => e,
                    Ok(()) if notes.caches.contains(&name) => format!("duplicate cache {name:?}"),
                    Ok(()) => {
                        notes.caches.push(name.clone());
                        return Some(name);
                    }
                };
                self.error(&np, n.line, fault);
                None
            });
            let key_node = self.required(&f, &p, "key");
            let mut key = key_node.and_then(|n| self.cache_key(n, &join(&p, "key"), notes));
            let hash_files = match f.get("hash_files") {
                Some(n) => self.path_list(n, &join(&p, "hash_files"), false),
                None => Some(Vec::new()),
            };
            // With hash_files the saved key is the key, `-` and HASH_HEX hex
            // digits. A key without a template is that long on every run,
            // so say it now; one with a template is checked once rendered.
            let hashed = hash_files.as_ref().is_some_and(|h| !h.is_empty());
            if let (true, Some(k), Some(n)) = (hashed, &key, key_node)
                && !k.contains("{{")
                && k.len() + 1 + HASH_HEX > MAX_KEY_BYTES
            {
                self.error(
                    &join(&p, "key"),
                    n.line,
                    format!(
                        "a cache key with hash_files is {} bytes once \"-\" and {HASH_HEX} hex digits \
                         are appended, more than {MAX_KEY_BYTES}: keep the key to {} bytes",
                        k.len() + 1 + HASH_HEX,
                        MAX_KEY_BYTES - 1 - HASH_HEX
                    ),
                );
                key = None;
            }
            let mut restore_keys = Some(Vec::new());
            if let Some(n) = f.get("restore_keys") {
                let rp = join(&p, "restore_keys");
                restore_keys = match &n.value {
                    Value::Seq(keys)
                        if self.at_most(
                            keys.len(),
                            MAX_RESTORE_KEYS,
                            &rp,
                            n.line,
                            "restore keys",
                        ) =>
                    {
                        // Each one checked, not only up to the first fault.
                        let keys: Vec<_> = (keys.iter().enumerate())
                            .map(|(k, kn)| self.cache_key(kn, &format!("{rp}[{k}]"), notes))
                            .collect();
                        keys.into_iter().collect()
                    }
                    Value::Seq(_) => None,
                    _ => {
                        self.wrong_type(&rp, n, "a list of key prefixes");
                        None
                    }
                };
            }
            let paths = self
                .required(&f, &p, "paths")
                .and_then(|n| self.path_list(n, &join(&p, "paths"), true));
            let after = match f.get("after") {
                None => Some(None),
                Some(n) => self.cache_after(n, &join(&p, "after"), steps).map(Some),
            };
            if let (
                Some(name),
                Some(key),
                Some(hash_files),
                Some(restore_keys),
                Some(paths),
                Some(after),
            ) = (name, key, hash_files, restore_keys, paths, after)
            {
                out.push(Cache {
                    name,
                    key,
                    hash_files,
                    restore_keys,
                    paths,
                    after,
                });
            }
        }
        // The variables steps see must not collide (`a-b` and `a_b`, or
        // `a`'s `_KEY` and a cache named `a_key`).
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for name in &notes.caches {
            let var = cache::env_name(name);
            let key = format!("{var}_KEY");
            let clash = [&var, &key]
                .into_iter()
                .find_map(|v| Some((v, *seen.get(v)?)));
            if let Some((shared, first)) = clash {
                self.error(
                    path,
                    node.line,
                    format!("caches {first:?} and {name:?} would both reach steps as ${shared}: rename one"),
                );
            }
            seen.insert(var, name);
            seen.insert(key, name);
        }
        out
    }

    /// `after`: one of the task's main steps.
    fn cache_after(&mut self, node: &Node, path: &str, steps: &[Step]) -> Option<String> {
        let step = self.string(node, path)?;
        if steps.iter().any(|s| s.name == step) {
            return Some(step);
        }
        let hint = self.did_you_mean(&step, steps.iter().map(|s| s.name.as_str()));
        self.error(
            path,
            node.line,
            format!(
                "after names {:?}, which is not one of the task's steps{hint}",
                shorten(&step)
            ),
        );
        None
    }

    /// A key or a restore key: its text checked, its templates read later
    /// like an env value's.
    fn cache_key(&mut self, node: &Node, path: &str, notes: &mut TaskNotes) -> Option<String> {
        let key = self.string(node, path)?;
        if let Err(e) = cache::check_key(&key) {
            self.error(path, node.line, e);
            return None;
        }
        notes.templates.push(TemplateSite {
            path: path.to_string(),
            line: node.line,
            text: key.clone(),
        });
        Some(key)
    }

    pub(super) fn cache_save(&mut self, node: &Node, path: &str) -> Option<CacheSave> {
        let f = self.mapping(
            node,
            path,
            "a mapping of trigger kinds to always or never",
            CACHE_SAVE_FIELDS,
        )?;
        let mut modes = [SaveMode::Always; 3];
        let mut ok = true;
        for (mode, kind) in modes.iter_mut().zip(CACHE_SAVE_FIELDS) {
            let Some(n) = f.get(kind) else { continue };
            let p = join(path, kind);
            *mode = match self.string(n, &p).as_deref() {
                Some("always") => SaveMode::Always,
                Some("never") => SaveMode::Never,
                Some(other) => {
                    self.error(
                        &p,
                        n.line,
                        format!(
                            "unknown value {:?}: expected always or never",
                            shorten(other)
                        ),
                    );
                    ok = false;
                    continue;
                }
                None => {
                    ok = false;
                    continue;
                }
            };
        }
        let [manual, webhook, cron] = modes;
        ok.then_some(CacheSave {
            manual,
            webhook,
            cron,
        })
    }
}
