//! Completion for the editor's YAML view: field names from the spec's
//! schema, task names in `depends_on`, artifact names in `needs`, templates
//! and conditions, secret names, trigger words. Works on text that does not parse (the user is
//! typing), by reading indentation upward from the cursor.

use crate::draft::Draft;
use crate::parse::{
    CACHE_FIELDS, CACHE_SAVE_FIELDS, CRON_TRIGGER_FIELDS, NEED_FIELDS, PARAM_FIELDS,
    PIPELINE_FIELDS, PLACEMENT_WORDS, PUBLISH_FIELDS, PUBLISH_WHEN_WORDS, RETRIES_FIELDS,
    SAVE_MODE_WORDS, STEP_FIELDS, TASK_FIELDS, TRIGGER_WORDS, WORKFLOW_FIELDS,
};

/// How many lines above the cursor are read for its context; specs whose
/// blocks are longer than this complete less, never slower.
const MAX_LOOKBACK: usize = 2_000;
/// Suggestions offered at once.
const MAX_SUGGESTIONS: usize = 50;

/// What completion offers at a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completions {
    /// The byte where the word being completed starts: a choice replaces
    /// `text[start..cursor]`.
    pub start: usize,
    /// What may go there, best first.
    pub items: Vec<String>,
}

/// Completions at byte `cursor` of `text`. `draft` is the last version of
/// the text that parsed (for task and param names); `secrets` the names in
/// the store.
pub fn complete(text: &str, cursor: usize, draft: &Draft, secrets: &[String]) -> Completions {
    let cursor = floor_char_boundary(text, cursor.min(text.len()));
    let line_start = text[..cursor].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..cursor];
    let word_len = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .map(char::len_utf8)
        .sum::<usize>();
    let word = &before[before.len() - word_len..];
    let start = cursor - word_len;
    let head = before[..before.len() - word_len].trim();
    let chain = key_chain(&text[..line_start], indent(before, head));
    let pipeline = (chain.first().map(String::as_str) == Some("pipelines"))
        .then(|| chain.get(1).cloned())
        .flatten();
    // Artifacts the other tasks of the pipeline publish, for `needs`.
    let artifacts = || -> Vec<String> {
        let task = chain.get(3).map(String::as_str);
        pipeline
            .as_deref()
            .and_then(|p| draft.pipeline(p))
            .map(|p| {
                let others = p.tasks.iter().filter(|t| Some(t.name.as_str()) != task);
                others.flat_map(|t| t.publish.iter().cloned()).collect()
            })
            .unwrap_or_default()
    };
    let tasks = || -> Vec<String> {
        pipeline
            .as_deref()
            .and_then(|p| draft.pipeline(p))
            .map(|p| p.tasks.iter().map(|t| t.name.clone()).collect())
            .unwrap_or_default()
    };

    // Inside a template or a condition: expressions.
    let in_template = before
        .rfind("{{")
        .is_some_and(|o| !before[o..].contains("}}"));
    let key_here = head
        .strip_suffix(':')
        .map(|k| k.trim_start_matches("- ").trim());
    let in_condition = key_here == Some("if");
    if in_template || in_condition || word.starts_with("tasks.") || word.starts_with("params.") {
        let mut items = Vec::new();
        if let Some(rest) = word.strip_prefix("tasks.") {
            match rest.split_once('.') {
                // A cache's result, in conditions only.
                Some((t, r)) if in_condition && r.starts_with("caches.") => {
                    let task = pipeline.as_deref().and_then(|p| draft.pipeline(p));
                    let task = task.and_then(|p| p.tasks.iter().find(|d| d.name == t));
                    let caches = task.map(|d| d.caches.iter()).into_iter().flatten();
                    items.extend(caches.map(|c| format!("tasks.{t}.caches.{c}")));
                }
                Some((t, _)) => {
                    items.push(format!("tasks.{t}.output"));
                    items.push(format!("tasks.{t}.status"));
                    if in_condition {
                        items.push(format!("tasks.{t}.caches."));
                    }
                }
                None => items.extend(tasks().into_iter().map(|t| format!("tasks.{t}."))),
            }
        } else if word.starts_with("params.") {
            let params = pipeline
                .as_deref()
                .and_then(|p| draft.pipeline(p))
                .map(|p| p.params.clone())
                .unwrap_or_default();
            items.extend(params.into_iter().map(|p| format!("params.{p}")));
        } else {
            items.push("tasks.".into());
            items.push("params.".into());
        }
        return finish(start, word, items);
    }

    // A value after `key:` on the same line, or an item of a list under it.
    let list_key = chain
        .last()
        .map(String::as_str)
        .filter(|k| head == "-" && matches!(*k, "depends_on" | "secrets" | "needs"));
    let flow_key = head
        .split_once(':')
        .filter(|(_, v)| v.trim_start().starts_with('['))
        .map(|(k, _)| k.trim_start_matches("- ").trim());
    match key_here.or(flow_key).or(list_key) {
        Some("depends_on") => return finish(start, word, tasks()),
        Some("secrets") => return finish(start, word, secrets.to_vec()),
        Some("needs") => return finish(start, word, artifacts()),
        Some("name") if chain.last().is_some_and(|k| k == "needs") => {
            return finish(start, word, artifacts());
        }
        Some("when") if chain.last().is_some_and(|k| k == "publish") => {
            let words = PUBLISH_WHEN_WORDS.iter().map(|s| s.to_string());
            return finish(start, word, words.collect());
        }
        Some(_) if chain.last().is_some_and(|k| k == "cache_save") => {
            let words = SAVE_MODE_WORDS.iter().map(|s| s.to_string());
            return finish(start, word, words.collect());
        }
        Some("trigger") => {
            return finish(
                start,
                word,
                TRIGGER_WORDS.iter().map(|s| s.to_string()).collect(),
            );
        }
        Some("placement") if chain.len() == 2 => {
            return finish(
                start,
                word,
                PLACEMENT_WORDS.iter().map(|s| s.to_string()).collect(),
            );
        }
        Some("type") if chain.iter().any(|k| k == "params") => {
            let types = ["string", "number", "boolean", "choice"];
            return finish(start, word, types.iter().map(|s| s.to_string()).collect());
        }
        Some(_) => return Completions::default(),
        None => {}
    }

    // A key: the fields its mapping may have.
    if !(head.is_empty() || head == "-") {
        return Completions::default();
    }
    let keys: &[&str] = match chain.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => WORKFLOW_FIELDS,
        ["pipelines", _] => PIPELINE_FIELDS,
        ["pipelines", _, "cache_save"] => CACHE_SAVE_FIELDS,
        ["pipelines", _, "trigger"] => CRON_TRIGGER_FIELDS,
        ["pipelines", _, "params", _] => PARAM_FIELDS,
        ["pipelines", _, "tasks", _] => TASK_FIELDS,
        ["pipelines", _, "tasks", _, "retries"] => RETRIES_FIELDS,
        ["pipelines", _, "tasks", _, "steps" | "post", ..] => STEP_FIELDS,
        ["pipelines", _, "tasks", _, "publish"] => PUBLISH_FIELDS,
        ["pipelines", _, "tasks", _, "needs"] => NEED_FIELDS,
        ["pipelines", _, "tasks", _, "caches"] => CACHE_FIELDS,
        _ => &[],
    };
    finish(start, word, keys.iter().map(|k| format!("{k}: ")).collect())
}

fn finish(start: usize, word: &str, items: Vec<String>) -> Completions {
    let mut items: Vec<String> = items
        .into_iter()
        .filter(|i| i.starts_with(word) && i.trim_end_matches([':', ' ']) != word)
        .take(MAX_SUGGESTIONS)
        .collect();
    items.dedup();
    Completions { start, items }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The column the current line's key sits at.
fn indent(before: &str, head: &str) -> usize {
    let spaces = before.len() - before.trim_start_matches(' ').len();
    // In `- key`, the key sits after the dash.
    if head.starts_with('-') {
        spaces + 2
    } else {
        spaces
    }
}

/// The keys of the mappings enclosing a line whose key sits at column `col`,
/// outermost first, read from the lines above it.
fn key_chain(above: &str, col: usize) -> Vec<String> {
    let mut chain = Vec::new();
    let mut limit = col;
    for line in above.lines().rev().take(MAX_LOOKBACK) {
        let trimmed = line.trim_start_matches(' ');
        if trimmed.trim().is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let ind = line.len() - trimmed.len();
        if ind >= limit {
            continue;
        }
        let key_part = trimmed.trim_start_matches("- ");
        let ind = if trimmed.starts_with("- ") {
            ind + 2
        } else {
            ind
        };
        if let Some((key, _)) = key_part.split_once(':') {
            let key = key.trim().trim_matches(['"', '\'']);
            if ind < limit {
                chain.push(key.to_string());
            }
        }
        // A list item's dash is a level of its own.
        limit = if trimmed.starts_with("- ") {
            ind - 2
        } else {
            ind
        };
        if limit == 0 {
            break;
        }
    }
    chain.reverse();
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "\
name: demo
pipelines:
  ci:
    tasks:
      build:
        steps:
          - run: make
      test:
        depends_on: [b
";

    #[test]
    fn offers_what_fits_where_the_cursor_is() {
        let draft = Draft::read("name: demo\npipelines:\n  ci:\n    tasks:\n      build:\n        steps: []\n      test: {}\n").unwrap();
        let c = complete(SPEC, SPEC.len() - 1, &draft, &[]);
        assert_eq!(c.items, ["build"]);
        assert_eq!(&SPEC[c.start..SPEC.len() - 1], "b");

        let text = "name: x\npipelines:\n  ci:\n    tasks:\n      build:\n        de";
        let c = complete(text, text.len(), &draft, &[]);
        assert_eq!(c.items, ["depends_on: "]);
        let text =
            "name: x\npipelines:\n  ci:\n    tasks:\n      build:\n        steps:\n          - ru";
        assert_eq!(complete(text, text.len(), &draft, &[]).items, ["run: "]);
        let text = "name: x\npipelines:\n  ci:\n    tr";
        assert_eq!(complete(text, text.len(), &draft, &[]).items, ["trigger: "]);
        let text = "name: x\npipelines:\n  ci:\n    trigger: ";
        assert_eq!(
            complete(text, text.len(), &draft, &[]).items,
            ["manual", "webhook"]
        );
        let text = "name: x\npipelines:\n  ci:\n    placement: to";
        assert_eq!(complete(text, text.len(), &draft, &[]).items, ["together"]);
        let text = "name: x\npipelines:\n  ci:\n    pl";
        assert_eq!(
            complete(text, text.len(), &draft, &[]).items,
            ["placement: "]
        );
        let text = "name: x\npipelines:\n  ci:\n    tasks:\n      build:\n        sel";
        assert_eq!(
            complete(text, text.len(), &draft, &[]).items,
            ["selector: "]
        );
        let text = "name: x\npipelines:\n  ci:\n    tasks:\n      t:\n        steps:\n          - run: echo {{ tasks.b";
        assert_eq!(
            complete(text, text.len(), &draft, &[]).items,
            ["tasks.build."]
        );
        let with_params = Draft::read(
            "name: x\npipelines:\n  ci:\n    params:\n      version: '1'\n    tasks: {}\n",
        )
        .unwrap();
        let text = "name: x\npipelines:\n  ci:\n    tasks:\n      t:\n        steps:\n          - run: echo {{ params.v";
        assert_eq!(
            complete(text, text.len(), &with_params, &[]).items,
            ["params.version"]
        );
        let text = "name: x\npipelines:\n  ci:\n    tasks:\n      t:\n        if: tasks.build.s";
        assert_eq!(
            complete(text, text.len(), &draft, &[]).items,
            ["tasks.build.status"]
        );
        let text =
            "name: x\npipelines:\n  ci:\n    tasks:\n      t:\n        secrets:\n          - ";
        assert_eq!(
            complete(text, text.len(), &draft, &["TOKEN".into()]).items,
            ["TOKEN"]
        );
        let artifacts = Draft::read("name: x\npipelines:\n  ci:\n    tasks:\n      build:\n        publish:\n          - {name: binary, path: app}\n          - {name: report, path: r}\n      t:\n        publish: [{name: bundle, path: b}]\n").unwrap();
        let task = "name: x\npipelines:\n  ci:\n    tasks:\n      t:\n";
        for (rest, items) in [
            ("        needs:\n          - ", &["binary", "report"][..]),
            ("        needs: [bi", &["binary"]),
            ("        needs:\n          - name: re", &["report"]),
            (
                "        needs:\n          - name: binary\n            pa",
                &["path: "],
            ),
            (
                "        publish:\n          - name: b\n            wh",
                &["when: "],
            ),
            (
                "        publish:\n          - name: b\n            when: a",
                &["always"],
            ),
            ("        publish:\n          - op", &["optional: "]),
            ("        pub", &["publish: "]),
        ] {
            let text = format!("{task}{rest}");
            let c = complete(&text, text.len(), &artifacts, &[]);
            assert_eq!(c.items, items, "{rest}");
        }
        let cached = Draft::read("name: x\npipelines:\n  ci:\n    tasks:\n      build:\n        caches: [{name: cargo, key: k, paths: [t]}]\n").unwrap();
        let pipeline = "name: x\npipelines:\n  ci:\n";
        for (rest, items) in [
            ("    cache_", &["cache_save: "][..]),
            ("    cache_save:\n      we", &["webhook: "]),
            ("    cache_save:\n      webhook: n", &["never"]),
            ("    tasks:\n      t:\n        cach", &["caches: "]),
            (
                "    tasks:\n      t:\n        caches:\n          - name: c\n            re",
                &["restore_keys: "],
            ),
            (
                "    tasks:\n      t:\n        if: tasks.build.c",
                &["tasks.build.caches."],
            ),
            (
                "    tasks:\n      t:\n        if: tasks.build.caches.",
                &["tasks.build.caches.cargo"],
            ),
            // Templates cannot read a cache's result.
            (
                "    tasks:\n      t:\n        env:\n          A: \"{{ tasks.build.c",
                &[],
            ),
        ] {
            let text = format!("{pipeline}{rest}");
            let c = complete(&text, text.len(), &cached, &[]);
            assert_eq!(c.items, items, "{rest}");
        }
        let text = "name: x\npipelines:\n  ci:\n    tasks:\n      t:\n        image: bus";
        assert!(complete(text, text.len(), &draft, &[]).items.is_empty());
    }
}
