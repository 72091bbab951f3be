use super::*;

const SPEC: &str = "\
name: demo
pipelines:
  ci:
    tasks:
      # Builds.
      build:
        steps:
          - run: make
      test:
        depends_on: [build]
        if: tasks.build.status == 'success'
        steps:
          - run: echo {{ tasks.build.output }} tasks.build.x
      ship:
        depends_on:
          - test
        steps:
          - run: ship
";

fn g(text: &str, gesture: Gesture) -> Result<String, EditError> {
    apply(text, &gesture)
}

#[test]
fn draws_from_a_new_workflow() {
    let mut text = new_workflow("hello");
    for name in ["a", "b", "c"] {
        text = g(
            &text,
            Gesture::AddTask {
                pipeline: "main".into(),
                name: name.into(),
            },
        )
        .unwrap();
    }
    for (from, to) in [("a", "b"), ("b", "c")] {
        text = g(
            &text,
            Gesture::Connect {
                pipeline: "main".into(),
                from: from.into(),
                to: to.into(),
            },
        )
        .unwrap();
    }
    let err = g(
        &text,
        Gesture::Connect {
            pipeline: "main".into(),
            from: "c".into(),
            to: "a".into(),
        },
    )
    .unwrap_err();
    assert_eq!(err.0, "that would make a cycle: c -> a -> b -> c");
    let wf = crate::parse_workflow(&text).unwrap();
    assert_eq!(wf.pipelines["main"].tasks["c"].depends_on, ["b"]);
    assert_eq!(
        text,
        "name: hello\npipelines:\n  main:\n    trigger: manual\n    tasks:\n      a:\n        steps:\n          - run: echo a\n      b:\n        depends_on: [a]\n        steps:\n          - run: echo b\n      c:\n        depends_on: [b]\n        steps:\n          - run: echo c\n"
    );
}

#[test]
fn renames_follow_every_mention() {
    let out = g(
        SPEC,
        Gesture::RenameTask {
            pipeline: "ci".into(),
            from: "build".into(),
            to: "compile".into(),
        },
    )
    .unwrap();
    assert_eq!(
        out,
        SPEC.replace("      build:", "      compile:")
            .replace("[build]", "[compile]")
            .replace("if: tasks.build.status", "if: tasks.compile.status")
            .replace("{{ tasks.build.output }}", "{{ tasks.compile.output }}")
    );
}

/// Found by review: env values, images, plain-string steps and the
/// pipeline's env also name tasks.
#[test]
fn renames_reach_env_images_and_plain_steps() {
    let text = "name: d\npipelines:\n  p:\n    env:\n      V: \"{{ tasks.a.output }}\"\n    tasks:\n      a:\n        steps:\n          - echo a\n      b:\n        depends_on: [a]\n        image: \"img:{{ tasks.a.output }}\"\n        env:\n          X: \"{{ tasks.a.output }}\"\n        steps:\n          - echo {{ tasks.a.output }}\n          - run: echo\n            env:\n              Y: \"{{ tasks.a.output }}\"\n";
    let out = g(
        text,
        Gesture::RenameTask {
            pipeline: "p".into(),
            from: "a".into(),
            to: "first".into(),
        },
    )
    .unwrap();
    assert!(!out.contains("tasks.a."), "{out}");
    assert_eq!(out.matches("tasks.first.output").count(), 5, "{out}");
    assert!(
        EditorLayout {
            positions: [("p".into(), [("t".into(), (i32::MIN, 0))].into())].into(),
            ..EditorLayout::default()
        }
        .check()
        .is_err()
    );
}

#[test]
fn removes_a_task_and_its_mentions_and_inserts_between() {
    let out = g(
        SPEC,
        Gesture::RemoveTask {
            pipeline: "ci".into(),
            name: "test".into(),
        },
    )
    .unwrap();
    assert!(!out.contains("test"), "{out}");
    assert!(out.contains("      ship:\n        steps:"), "{out}");
    let out = g(
        SPEC,
        Gesture::InsertBetween {
            pipeline: "ci".into(),
            from: "test".into(),
            to: "ship".into(),
            name: "scan".into(),
        },
    )
    .unwrap();
    let wf = crate::parse_workflow(&out).unwrap();
    assert_eq!(wf.pipelines["ci"].tasks["ship"].depends_on, ["scan"]);
    assert_eq!(wf.pipelines["ci"].tasks["scan"].depends_on, ["test"]);
    assert!(out.starts_with(&SPEC[..SPEC.find("      ship:").unwrap()]));
}

#[test]
fn faults_find_their_task() {
    let d = Diagnostic {
        path: "pipelines.ci.tasks.build.steps[0].run".into(),
        line: Some(3),
        message: "x".into(),
    };
    assert_eq!(fault_target(&d), Some(("ci".into(), Some("build".into()))));
    let d = Diagnostic {
        path: "name".into(),
        line: None,
        message: "x".into(),
    };
    assert_eq!(fault_target(&d), None);
}

#[test]
fn a_task_added_after_another_waits_for_it() {
    let out = g(
        SPEC,
        Gesture::AddTaskAfter {
            pipeline: "ci".into(),
            after: "test".into(),
            name: "report".into(),
        },
    )
    .unwrap();
    assert_eq!(
        out,
        format!(
            "{SPEC}      report:\n        depends_on: [test]\n        steps:\n          - run: echo report\n"
        )
    );
    let missing = g(
        SPEC,
        Gesture::AddTaskAfter {
            pipeline: "ci".into(),
            after: "nope".into(),
            name: "report".into(),
        },
    )
    .unwrap_err();
    assert_eq!(missing.0, "pipeline ci has no task nope");
}
