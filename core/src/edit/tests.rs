use super::*;

fn k(s: &str) -> Seg {
    Seg::key(s)
}

fn path(p: &str) -> Vec<Seg> {
    p.split('.').map(k).collect()
}

const SPEC: &str = "\
# A comment at the top.
name: demo   # trailing
pipelines:
  ci:
    tasks:
      build:
        image: 'busybox'  # pinned
        steps:
          - name: compile
            run: |
              make   # not a comment
              echo done

      # Tests, after a blank line.
      test:
        depends_on: [build]
        steps:
        - run: echo test
";

#[test]
fn set_changes_only_its_line() {
    let out = apply(
        SPEC,
        &Op::Set {
            path: path("pipelines.ci.tasks.build.image"),
            value: Yaml::str("alpine:3"),
        },
    )
    .unwrap();
    assert_eq!(
        out,
        SPEC.replace("image: 'busybox'  # pinned", "image: 'alpine:3'  # pinned")
    );
}

#[test]
fn adds_a_dependency_in_the_same_style() {
    let out = apply(
        SPEC,
        &Op::Set {
            path: path("pipelines.ci.tasks.test.depends_on"),
            value: Yaml::strs(&["build", "lint"]),
        },
    )
    .unwrap();
    assert_eq!(out, SPEC.replace("[build]", "[build, lint]"), "{out}");
}

#[test]
fn adds_a_task_at_the_end_and_a_key_at_the_end_of_its_mapping() {
    let mut task = Yaml::Map(vec![
        ("depends_on".into(), Yaml::strs(&["test"])),
        (
            "steps".into(),
            Yaml::Seq(vec![Yaml::Map(vec![(
                "run".into(),
                Yaml::str("echo one\necho two\n"),
            )])]),
        ),
    ]);
    let out = apply(
        SPEC,
        &Op::Set {
            path: path("pipelines.ci.tasks.deploy"),
            value: task.clone(),
        },
    )
    .unwrap();
    let added = "      deploy:\n        depends_on: [test]\n        steps:\n          - run: |\n              echo one\n              echo two\n";
    assert_eq!(out, format!("{SPEC}{added}"));
    // A key added to build lands after its steps, before the blank line.
    let out = apply(
        SPEC,
        &Op::Set {
            path: path("pipelines.ci.tasks.build.timeout"),
            value: Yaml::str("5m"),
        },
    )
    .unwrap();
    assert_eq!(
        out,
        SPEC.replace("echo done\n", "echo done\n        timeout: 5m\n")
    );
    task = Yaml::Map(vec![]);
    let out = apply(
        "name: x\npipelines:\n  ci:\n    tasks: {}\n",
        &Op::Set {
            path: path("pipelines.ci.tasks.a"),
            value: task,
        },
    )
    .unwrap();
    assert_eq!(out, "name: x\npipelines:\n  ci:\n    tasks:\n      a: {}\n");
}

#[test]
fn removes_and_renames_in_place() {
    let out = apply(
        SPEC,
        &Op::Remove {
            path: path("pipelines.ci.tasks.test"),
        },
    )
    .unwrap();
    assert_eq!(
        out,
        "\
# A comment at the top.
name: demo   # trailing
pipelines:
  ci:
    tasks:
      build:
        image: 'busybox'  # pinned
        steps:
          - name: compile
            run: |
              make   # not a comment
              echo done

      # Tests, after a blank line.
"
    );
    let out = apply(
        SPEC,
        &Op::Rename {
            path: path("pipelines.ci.tasks.build"),
            to: "compile".into(),
        },
    )
    .unwrap();
    assert_eq!(out, SPEC.replace("      build:", "      compile:"));
    assert!(
        apply(
            SPEC,
            &Op::Rename {
                path: path("pipelines.ci.tasks.build"),
                to: "test".into(),
            },
        )
        .is_err()
    );
}

#[test]
fn flow_and_dash_layouts_fall_back_to_the_enclosing_entry() {
    let text = "name: x # keep\npipelines: {ci: {tasks: {a: {steps: [{run: echo}]}}}}\n";
    let out = apply(
        text,
        &Op::Set {
            path: path("pipelines.ci.tasks.a.image"),
            value: Yaml::str("busybox"),
        },
    )
    .unwrap();
    assert!(out.starts_with("name: x # keep\npipelines:\n"), "{out}");
    // The first key of a list item cannot go alone.
    let out = apply(
        SPEC,
        &Op::Remove {
            path: vec![
                k("pipelines"),
                k("ci"),
                k("tasks"),
                k("build"),
                k("steps"),
                Seg::Index(0),
                k("name"),
            ],
        },
    )
    .unwrap();
    assert!(
        out.contains("        steps:\n          - run: |\n"),
        "{out}"
    );
    assert!(out.starts_with("# A comment at the top.\nname: demo   # trailing\n"));
    let json = "{\"name\": \"x\", \"pipelines\": {}}";
    let out = apply(
        json,
        &Op::Set {
            path: path("description"),
            value: Yaml::str("d"),
        },
    )
    .unwrap();
    assert_eq!(out, "name: x\npipelines: {}\ndescription: d\n");
}

#[test]
fn scalars_read_back_as_written() {
    for s in [
        "", "true", "5", "null", "~", "a: b", "a #b", "#x", "- x", "{{ x }}", "é", "\t", "'q'",
        "\"q\"", "x\\y", " lead", "trail ", "1e3", "0x1F", "a,b", "\u{7f}",
    ] {
        let text = format!("k: {}\n", scalar(s));
        assert_eq!(
            tree(&text).unwrap(),
            Yaml::Map(vec![("k".into(), Yaml::str(s))]),
            "{s:?} as {text}"
        );
    }
    for s in [
        "a\nb\n", "a\nb", "a\n\nb\n", " a\nb\n", "a\n\n", "x \ny\n", "\ta\n", "a\r\nb\n",
    ] {
        let out = apply(
            "k: 1\n",
            &Op::Set {
                path: path("k"),
                value: Yaml::str(s),
            },
        )
        .unwrap();
        assert_eq!(
            tree(&out).unwrap(),
            Yaml::Map(vec![("k".into(), Yaml::str(s))]),
            "{s:?}"
        );
    }
}

/// Found by review: the comment after `key:` went with every rewrite of
/// a list; CRLF files got LF lines; a lone CR panicked.
#[test]
fn keeps_key_line_comments_line_endings_and_refuses_lone_cr() {
    let text = "t:\n  depends_on: [build]  # after build\n  env:   # the env\n    A: '1'\n  x: 1\n";
    let out = apply(
        text,
        &Op::Set {
            path: path("t.depends_on"),
            value: Yaml::strs(&["build", "lint"]),
        },
    )
    .unwrap();
    assert_eq!(out, text.replace("[build]", "[build, lint]"));
    let out = apply(
        text,
        &Op::Set {
            path: path("t.env"),
            value: Yaml::Map(vec![("B".into(), Yaml::str("2"))]),
        },
    )
    .unwrap();
    assert_eq!(
        out,
        text.replace("    A: '1'\n", "    B: 2\n")
            .replace("B: 2", "B: \"2\"")
    );
    let crlf = "a: 1\r\nb:\r\n  c: 2\r\n";
    let out = apply(
        crlf,
        &Op::Set {
            path: path("b.d"),
            value: Yaml::str("x"),
        },
    )
    .unwrap();
    assert_eq!(out, "a: 1\r\nb:\r\n  c: 2\r\n  d: x\r\n");
    for lone in ["a: 1\rb: 2\r", "a: \"x\ry\"\nb: 1\n"] {
        let err = apply(
            lone,
            &Op::Set {
                path: path("b"),
                value: Yaml::int(3),
            },
        )
        .unwrap_err();
        assert!(
            err.0.contains("carriage return") || err.0.contains("fault"),
            "{err}"
        );
    }
    // A key added to a list item lands in it, the rest untouched.
    let steps = "s:\n  # first\n  - run: a\n  # second\n  - run: b\n";
    let out = apply(
        steps,
        &Op::Set {
            path: vec![k("s"), Seg::Index(1), k("name")],
            value: Yaml::str("two"),
        },
    )
    .unwrap();
    assert_eq!(out, format!("{steps}    name: two\n"));
    // Comments at the top survive a rewrite of a flow document.
    let out = apply(
        "# mine\n{a: 1}\n",
        &Op::Set {
            path: path("b"),
            value: Yaml::int(2),
        },
    )
    .unwrap();
    assert_eq!(out, "# mine\na: 1\nb: 2\n");
}

/// Found by fuzzing: explicit (`?`) keys put a key on a line past the
/// last one, and the splice indexed beyond the text.
#[test]
fn explicit_keys_past_the_end_do_not_panic() {
    let text = format!(
        "\n  ? \n        \u{1}% \n  ? \n     {}   eello\n",
        "\0".repeat(85)
    );
    let _ = apply(
        &text,
        &Op::Set {
            path: path("name.x"),
            value: Yaml::str("v"),
        },
    );
}

#[test]
fn refuses_what_is_not_there_or_malformed() {
    assert!(apply("a: [1\n", &Op::Remove { path: path("a") }).is_err());
    assert!(apply("a: 1\n", &Op::Remove { path: path("b") }).is_err());
    assert!(
        apply(
            "a: 1\n",
            &Op::Set {
                path: path("a.b"),
                value: Yaml::int(1)
            }
        )
        .is_err()
    );
}

#[test]
fn insert_goes_before_its_sibling_and_keeps_every_other_line() {
    let insert = |p: &str, before: &str| Op::Insert {
        path: path(p),
        value: Yaml::strs(&["test"]),
        before: before.into(),
    };
    // Absent: just before `steps`, every other line as it was.
    let out = apply(
        SPEC,
        &insert("pipelines.ci.tasks.build.depends_on", "steps"),
    )
    .unwrap();
    assert_eq!(
        out,
        SPEC.replace(
            "        image: 'busybox'  # pinned\n        steps:",
            "        image: 'busybox'  # pinned\n        depends_on: [test]\n        steps:"
        )
    );
    // Present: set where it is.
    let out = apply(SPEC, &insert("pipelines.ci.tasks.test.depends_on", "steps")).unwrap();
    assert_eq!(
        out,
        SPEC.replace("depends_on: [build]", "depends_on: [test]")
    );
    // No such sibling: at the end, as `Set` puts it.
    let out = apply(SPEC, &insert("pipelines.ci.tasks.build.needs", "nothing")).unwrap();
    assert_eq!(
        tree(&out).unwrap().get(&path("pipelines.ci.tasks.build")),
        tree(SPEC)
            .unwrap()
            .get(&path("pipelines.ci.tasks.build"))
            .map(|b| {
                let mut b = b.clone();
                if let Yaml::Map(e) = &mut b {
                    e.push(("needs".into(), Yaml::strs(&["test"])));
                }
                b
            })
            .as_ref()
    );
}
