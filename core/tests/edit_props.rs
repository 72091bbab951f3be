//! Random edit sequences on hand-written specs: every edit gives YAML that
//! parses back to the tree the same edit gives on the model, and the lines
//! outside the edited task stay byte for byte the same.

use xene_core::draft::{self, Draft, Gesture};
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
        // Every fourth round, the first fixture with CRLF line endings.
        let mut text = if round % 4 == 3 {
            FIXTURES[0].replace('\n', "\r\n")
        } else {
            FIXTURES[round % FIXTURES.len()].to_string()
        };
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

/// Comment lines, trimmed, with how often each occurs.
fn comments(text: &str) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with('#') {
            *out.entry(t.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// Random canvas gestures: every result parses, no gesture closes a cycle,
/// CRLF stays CRLF, and every comment survives except those inside a
/// removed task.
#[test]
fn random_gestures_keep_comments_and_never_make_cycles() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut done = 0;
    let mut fresh = 0;
    for round in 0..200 {
        let crlf = round % 3 == 2;
        let mut text = FIXTURES[round % FIXTURES.len()].to_string();
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        for _ in 0..15 {
            let d = Draft::read(&text).expect("the text stays well-formed");
            let p = rng.pick(&d.pipelines).clone();
            if p.tasks.is_empty() {
                continue;
            }
            let a = rng.pick(&p.tasks).name.clone();
            let b = rng.pick(&p.tasks).name.clone();
            fresh += 1;
            let name = format!("g{fresh}");
            let pipeline = p.name.clone();
            let gesture = match rng.below(7) {
                0 => Gesture::AddTask { pipeline, name },
                1 | 2 => Gesture::Connect {
                    pipeline,
                    from: a,
                    to: b,
                },
                3 => Gesture::Disconnect {
                    pipeline,
                    from: a,
                    to: b,
                },
                4 => Gesture::RemoveTask { pipeline, name: a },
                5 => Gesture::RenameTask {
                    pipeline,
                    from: a,
                    to: name,
                },
                _ => match p.tasks.iter().find(|t| !t.depends_on.is_empty()) {
                    Some(t) => Gesture::InsertBetween {
                        pipeline,
                        from: t.depends_on[0].clone(),
                        to: t.name.clone(),
                        name,
                    },
                    None => Gesture::SetTaskField {
                        pipeline,
                        task: a,
                        field: "timeout".into(),
                        value: Some(Yaml::str("1m")),
                    },
                },
            };
            let cycle_refused = match &gesture {
                Gesture::Connect { from, to, .. } => p.cycle_if_connected(from, to).is_some(),
                _ => false,
            };
            let Ok(new) = draft::apply(&text, &gesture) else {
                continue;
            };
            assert!(!cycle_refused, "{gesture:?} made a cycle:\n{new}");
            // Comments: all survive, but those inside a removed task.
            let mut before = comments(&text);
            if let Gesture::RemoveTask { pipeline, name } = &gesture
                && let Some((start, end)) = task_lines(&text, pipeline, name)
            {
                for l in text.lines().skip(start).take(end.saturating_sub(start)) {
                    let t = l.trim();
                    if let Some(n) = before.get_mut(t) {
                        *n -= 1;
                    }
                }
            }
            let after = comments(&new);
            for (c, n) in &before {
                assert!(
                    after.get(c).copied().unwrap_or(0) >= *n,
                    "{gesture:?} lost {c:?}:\n{text}\n---\n{new}"
                );
            }
            if crlf {
                assert!(
                    !new.replace("\r\n", "").contains('\n'),
                    "{gesture:?} wrote LF lines into a CRLF file:\n{new:?}"
                );
            }
            // No task ever waits for itself through others.
            let d = Draft::read(&new).unwrap();
            for p in &d.pipelines {
                for t in &p.tasks {
                    for dep in &t.depends_on {
                        if p.task(dep).is_some() {
                            let mut without = p.clone();
                            without
                                .tasks
                                .iter_mut()
                                .find(|x| x.name == t.name)
                                .unwrap()
                                .depends_on
                                .retain(|x| x != dep);
                            assert!(
                                without.cycle_if_connected(dep, &t.name).is_none(),
                                "a cycle through {dep} -> {}:\n{new}",
                                t.name
                            );
                        }
                    }
                }
            }
            text = new;
            done += 1;
        }
    }
    assert!(done > 1500, "only {done} gestures done");
}
