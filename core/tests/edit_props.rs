//! Random edit sequences on hand-written specs: every edit gives YAML that
//! parses back to the tree the same edit gives on the model, and the lines
//! outside the edited task stay byte for byte the same.

use xene_core::edit::{self, Op, Seg, Yaml};
use xene_core::yaml::{self, Node, Value};

/// Specs in the styles people write: comments everywhere, flow and block
/// lists, lists at their key's indentation, quoted keys, literal blocks,
/// blank lines, no newline at the end.
const FIXTURES: &[&str] = &[
    "\
# Build and test.
name: demo   # the name
pipelines:
  ci:
    trigger: manual
    tasks:
      # First.
      build:
        image: 'busybox'  # pinned
        steps:
          - name: compile
            run: |
              make   # not a comment
              echo done

      test:
        depends_on: [build]  # after build
        steps:
        - run: echo test
      # Last, by convention.
      \"deploy\":
        depends_on:
          - test
        steps:
          - run: >-
              folded
              text
# The end.
",
    "name: tiny\npipelines:\n  p:\n    tasks:\n      a:\n        steps: [{run: echo a}]",
    "\
name: two
description: \"two pipelines\"
pipelines:
  first:
    tasks:
      a:
        steps:
          - run: echo a

      b:   # b waits for a
        depends_on:
        - a
        env: {X: '1', Y: \"two\"}
        steps:
          - run: echo $X
  second:
    trigger:
      cron: '0 * * * *'
    tasks:
      solo:
        steps:
          - run: |-
              echo solo
              # still the script
",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn key(s: &str) -> Seg {
    Seg::key(s)
}

/// Pipelines and their tasks, in order.
fn tasks(tree: &Yaml) -> Vec<(String, Vec<String>)> {
    let Some(pipelines) = tree.get(&[key("pipelines")]).and_then(Yaml::as_map) else {
        return Vec::new();
    };
    pipelines
        .iter()
        .map(|(p, v)| {
            let names = v
                .get(&[key("tasks")])
                .and_then(Yaml::as_map)
                .map(|t| t.iter().map(|(n, _)| n.clone()).collect())
                .unwrap_or_default();
            (p.clone(), names)
        })
        .collect()
}

const WORDS: &[&str] = &[
    "x",
    "lint",
    "a b",
    "true",
    "5",
    "#hash",
    "k: v",
    "multi\nline\n",
    "tab\there",
    "é",
    "{{ params.v }}",
    "",
    "'quoted'",
];

fn random_op(rng: &mut Rng, tree: &Yaml, fresh: &mut usize) -> Option<(Op, String, String)> {
    let pipelines = tasks(tree);
    let (p, names) = rng.pick(&pipelines).clone();
    let base = vec![key("pipelines"), key(&p), key("tasks")];
    let with = |extra: &[&str]| {
        let mut path = base.clone();
        path.extend(extra.iter().map(|s| key(s)));
        path
    };
    *fresh += 1;
    let new_name = format!("t{fresh}");
    if names.is_empty() || rng.below(6) == 0 {
        let value = Yaml::Map(vec![(
            "steps".into(),
            Yaml::Seq(vec![Yaml::Map(vec![(
                "run".into(),
                Yaml::str(*rng.pick(WORDS)),
            )])]),
        )]);
        return Some((
            Op::Set {
                path: with(&[&new_name]),
                value,
            },
            p,
            new_name,
        ));
    }
    let t = rng.pick(&names).clone();
    let other = rng.pick(&names).clone();
    let op = match rng.below(9) {
        0 => Op::Set {
            path: with(&[&t, "image"]),
            value: Yaml::str(*rng.pick(WORDS)),
        },
        1 => {
            let mut deps: Vec<String> = tree
                .get(&with(&[&t, "depends_on"]))
                .and_then(|d| match d {
                    Yaml::Seq(items) => Some(
                        items
                            .iter()
                            .filter_map(|i| i.as_str())
                            .map(String::from)
                            .collect(),
                    ),
                    _ => None,
                })
                .unwrap_or_default();
            if deps.contains(&other) {
                deps.retain(|d| d != &other);
            } else {
                deps.push(other);
            }
            Op::Set {
                path: with(&[&t, "depends_on"]),
                value: Yaml::strs(&deps),
            }
        }
        2 => Op::Set {
            path: with(&[&t, "steps"]),
            value: Yaml::Seq(
                (0..1 + rng.below(3))
                    .map(|_| {
                        Yaml::Map(vec![
                            ("name".into(), Yaml::str(*rng.pick(WORDS))),
                            ("run".into(), Yaml::str(*rng.pick(WORDS))),
                        ])
                    })
                    .collect(),
            ),
        },
        3 => Op::Set {
            path: with(&[&t, "timeout"]),
            value: Yaml::str("5m"),
        },
        4 => Op::Set {
            path: with(&[&t, "env", *rng.pick(&["A", "B", "X"])]),
            value: Yaml::str(*rng.pick(WORDS)),
        },
        5 => Op::Remove {
            path: with(&[
                &t,
                *rng.pick(&["image", "depends_on", "env", "timeout", "steps"]),
            ]),
        },
        6 => Op::Remove { path: with(&[&t]) },
        7 => Op::Rename {
            path: with(&[&t]),
            to: new_name,
        },
        _ => Op::Set {
            path: with(&[&t, "retries"]),
            value: Yaml::Map(vec![
                ("count".into(), Yaml::int(rng.below(4) as i64)),
                ("backoff".into(), Yaml::str("10s")),
            ]),
        },
    };
    Some((op, p, t))
}

/// Lines `[start, end)` that belong to a task: from its key to the next key
/// at its depth or shallower, or the end.
fn task_lines(text: &str, pipeline: &str, task: &str) -> Option<(usize, usize)> {
    let (root, _) = yaml::parse(text);
    let root = root?;
    let mut keys = Vec::new();
    collect_keys(&root, 0, &mut keys);
    let Value::Map(top) = &root.value else {
        return None;
    };
    let pipes = &top.iter().find(|e| e.key == "pipelines")?.value;
    let Value::Map(pipes) = &pipes.value else {
        return None;
    };
    let p = &pipes.iter().find(|e| e.key == pipeline)?.value;
    let Value::Map(pfields) = &p.value else {
        return None;
    };
    let ts = &pfields.iter().find(|e| e.key == "tasks")?.value;
    let Value::Map(ts) = &ts.value else {
        return None;
    };
    let e = ts.iter().find(|e| e.key == task)?;
    let start = e.key_line - 1;
    let end = keys
        .iter()
        .filter(|(depth, line)| *depth <= 4 && *line > e.key_line)
        .map(|(_, line)| line - 1)
        .min()
        .unwrap_or(usize::MAX);
    Some((start, end))
}

fn collect_keys(node: &Node, depth: usize, out: &mut Vec<(usize, usize)>) {
    match &node.value {
        Value::Map(entries) => {
            for e in entries {
                out.push((depth + 1, e.key_line));
                collect_keys(&e.value, depth + 1, out);
            }
        }
        Value::Seq(items) => {
            for i in items {
                collect_keys(i, depth + 1, out);
            }
        }
        Value::Scalar(_) => {}
    }
}

/// The lines that differ: old's `[prefix, old_len - suffix)`.
fn changed(old: &str, new: &str) -> (usize, usize) {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    (prefix, a.len() - suffix)
}

#[test]
fn random_edits_keep_meaning_and_untouched_lines() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut applied = 0;
    let mut fresh = 0;
    for round in 0..300 {
        let mut text = FIXTURES[round % FIXTURES.len()].to_string();
        for _ in 0..12 {
            let model = edit::tree(&text).expect("the text stays well-formed");
            let Some((op, pipeline, task)) = random_op(&mut rng, &model, &mut fresh) else {
                continue;
            };
            let mut want = model.clone();
            let expected = edit::apply_to_tree(&mut want, &op);
            let got = edit::apply(&text, &op);
            match (expected, got) {
                (Ok(()), Ok(new)) => {
                    assert_eq!(
                        edit::tree(&new).unwrap(),
                        want,
                        "{op:?} on\n{text}\ngave\n{new}"
                    );
                    let (from, to) = changed(&text, &new);
                    if from < to {
                        let (start, end) =
                            task_lines(&text, &pipeline, &task).unwrap_or((usize::MAX, usize::MAX));
                        let in_task = start <= from && to <= end;
                        // Removing the last task or adding the first
                        // rewrites `tasks:` itself.
                        let first_or_last = tasks(&model)
                            .iter()
                            .any(|(p, names)| p == &pipeline && names.len() <= 1);
                        assert!(
                            in_task || first_or_last,
                            "{op:?} changed lines {from}..{to} outside {task} ({start}..{end}):\n{text}\n---\n{new}"
                        );
                    }
                    text = new;
                    applied += 1;
                }
                (Err(_), Err(_)) => {}
                (e, g) => panic!("model {e:?} and text {g:?} disagree on {op:?}\n{text}"),
            }
        }
    }
    eprintln!("{applied} edits applied");
    assert!(applied > 2000, "only {applied} edits applied");
}
