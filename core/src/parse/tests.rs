use super::*;

#[test]
fn renders_diagnostics_like_the_design() {
    let d = Diagnostic {
        path: "pipelines.build.tasks.test.depends_on[0]".into(),
        line: Some(14),
        message: "unknown task \"tset\"".into(),
    };
    assert_eq!(
        d.to_string(),
        "pipelines.build.tasks.test.depends_on[0]: unknown task \"tset\" (line 14)"
    );
    let all = Diagnostics(vec![
        d.clone(),
        Diagnostic {
            path: String::new(),
            line: None,
            message: "m".into(),
        },
    ]);
    assert_eq!(all.to_string(), format!("{d}\nm"));
    assert_eq!(
        serde_json::to_value(&all).unwrap(),
        serde_json::json!([
            {"path": "pipelines.build.tasks.test.depends_on[0]", "line": 14, "message": "unknown task \"tset\""},
            {"path": "", "line": null, "message": "m"}
        ])
    );
}

#[test]
fn refuses_oversized_specs() {
    let text = format!("name: big\n# {}\n", "x".repeat(MAX_SPEC_BYTES));
    let err = parse_workflow(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the spec is 1048589 bytes, more than the limit of 1048576 (1 MiB)"
    );
}

#[test]
fn accepts_steps_as_strings_and_numbers_as_env_values() {
    let w = parse_workflow("name: w\npipelines:\n  p:\n    env: {N: 1.10}\n    tasks:\n      t:\n        steps: [make, make test]\n")
            .unwrap();
    let p = &w.pipelines["p"];
    assert_eq!(p.env["N"], "1.10");
    let names: Vec<&str> = p.tasks["t"].steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["step-1", "step-2"]);
}

fn chain(tasks: usize, extra: &str) -> String {
    let mut text = String::from("name: w\npipelines:\n  p:\n    tasks:\n");
    for i in 0..tasks {
        text.push_str(&format!("      t{i}:\n"));
        if i > 0 {
            text.push_str(&format!("        depends_on: [t{}]\n", i - 1));
        }
        text.push_str("        steps: [\"echo {{ tasks.t0.output }}\"]\n");
    }
    text.push_str(extra);
    text
}

fn messages(text: &str) -> Vec<String> {
    parse_workflow(text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Upstream sets were built afresh per task (a 5,000-task chain took 15 s
/// in a debug build); the answers must stay the same with one pass.
#[test]
fn long_chains_check_upstream_reads() {
    let text = chain(MAX_TASKS, "");
    // t0 reads its own output: the only fault.
    assert_eq!(
        messages(&text),
        [
            "pipelines.p.tasks.t0.steps[0]: task \"t0\" cannot read its own output or status (line 6)"
        ]
    );
    let text = text.replace("tasks.t0.output", "tasks.t1.output").replacen(
        "t1:\n",
        "t1:\n        if: \"tasks.t998.status == 'success'\"\n",
        1,
    );
    let got = messages(&text);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got[0].contains("task \"t1\" is not upstream of \"t0\""),
        "{got:?}"
    );
    assert!(
        got[1].contains("task \"t998\" is not upstream of \"t1\""),
        "{got:?}"
    );
    assert!(
        got[2].contains("task \"t1\" cannot read its own output"),
        "{got:?}"
    );
}

/// Reporting a long cycle searched the walk for each step and rescanned
/// every remaining task after each cycle (a 3,000-task cycle: 14 s).
#[test]
fn long_cycles_are_reported_once() {
    let text = chain(MAX_TASKS, "").replace(
        "      t0:\n",
        &format!("      t0:\n        depends_on: [t{}]\n", MAX_TASKS - 1),
    );
    let got = messages(&text);
    assert_eq!(got.len(), 2, "{:?}", &got[..2]);
    assert!(
        got[0].starts_with("pipelines.p.tasks.t0.depends_on[0]: cycle: t0 -> t999 -> t998 -> "),
        "{}",
        &got[0][..200]
    );
    assert!(got[0].ends_with(" -> t1 -> t0 (line 6)"));
}

#[test]
fn limits_are_faults_with_paths_and_lines() {
    let over = |n: usize, line: &str| line.repeat(n);
    let cases: Vec<(String, &str)> = vec![
        (
            chain(MAX_TASKS + 1, ""),
            "pipelines.p.tasks: 1001 tasks, more than the limit of 1000 (line 5)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps:\n{}        post: [x]\n",
                over(MAX_STEPS, "          - x\n")
            ),
            "pipelines.p.tasks.t.post: 101 steps in the task (steps and post together), more than the limit of 100",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        depends_on: [{}]\n        steps: [x]\n",
                (0..=MAX_DEPENDENCIES)
                    .map(|i| format!("d{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "pipelines.p.tasks.t.depends_on: 257 dependencies, more than the limit of 256 (line 6)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    env:\n{}    tasks:\n      t:\n        steps: [x]\n",
                (0..=MAX_ENV_VARS)
                    .map(|i| format!("      V{i}: x\n"))
                    .collect::<String>()
            ),
            "pipelines.p.env: 257 env vars, more than the limit of 256 (line 5)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    params:\n      {}: x\n    tasks:\n      t:\n        steps: [x]\n",
                "P".repeat(MAX_ENV_NAME_LEN + 1)
            ),
            "param name \"PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP...\" is longer than 128 characters (line 5)",
        ),
        (
            format!(
                "name: w\npipelines:\n{}",
                (0..=MAX_PIPELINES)
                    .map(|i| format!("  p{i}: {{tasks: {{t: {{steps: [x]}}}}}}\n"))
                    .collect::<String>()
            ),
            "pipelines: 101 pipelines, more than the limit of 100 (line 3)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    params: {{a: x}}\n    tasks:\n      t:\n        steps: [\"{}\"]\n",
                "{{ params.a }}".repeat(MAX_TEMPLATES + 1)
            ),
            "pipelines.p.tasks.t.steps[0]: more than 10000 template expressions in the workflow (line 7)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        publish:\n{}",
                (0..=MAX_PUBLISH)
                    .map(|i| format!("          - {{name: a{i}, path: x{i}}}\n"))
                    .collect::<String>()
            ),
            "pipelines.p.tasks.t.publish: 33 artifacts published, more than the limit of 32 (line 8)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        needs: [{}]\n",
                (0..=MAX_NEEDS)
                    .map(|i| format!("a{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "pipelines.p.tasks.t.needs: 33 artifacts needed, more than the limit of 32 (line 7)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        publish:\n          - name: a\n            paths: [{}]\n",
                (0..=MAX_PUBLISH_PATHS)
                    .map(|i| format!("x{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "pipelines.p.tasks.t.publish[0].paths: 17 paths, more than the limit of 16 (line 9)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        publish: [{{name: a, path: {}}}]\n",
                "d/".repeat(600)
            ),
            "pipelines.p.tasks.t.publish[0].path: a path is 1199 bytes, more than 1024",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        publish: [{{name: a, path: d/{}}}]\n",
                "n".repeat(256)
            ),
            "has a name longer than 255 bytes (line 7)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        publish: [{{name: {}, path: x}}]\n",
                "a".repeat(65)
            ),
            "is longer than 64 characters (line 7)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        caches:\n          - {{name: c, key: k, paths: [x], restore_keys: [{}]}}\n",
                ["k"; crate::cache::MAX_RESTORE_KEYS + 1].join(", ")
            ),
            "pipelines.p.tasks.t.caches[0].restore_keys: 9 restore keys, more than the limit of 8 (line 8)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        caches:\n          - {{name: c, key: k, paths: [x], hash_files: [{}]}}\n",
                (0..=MAX_PUBLISH_PATHS)
                    .map(|i| format!("x{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "pipelines.p.tasks.t.caches[0].hash_files: 17 paths, more than the limit of 16 (line 8)",
        ),
        (
            format!(
                "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        caches: [{{name: {}, key: k, paths: [x]}}]\n",
                "c".repeat(65)
            ),
            "use 1 to 64 letters, digits",
        ),
    ];
    for (text, want) in cases {
        assert!(text.len() < MAX_SPEC_BYTES);
        let got = messages(&text);
        assert!(
            got.iter().any(|m| m.contains(want)),
            "want {want}\ngot {got:?}"
        );
    }
}

/// With hash_files the saved key gains "-" and 32 hex digits: a key as
/// written that cannot fit then is refused, one with a template is left
/// to the agent, which checks it rendered.
#[test]
fn a_hashed_key_leaves_room_for_the_hash() {
    use crate::cache::{HASH_HEX, MAX_KEY_BYTES};
    let spec = |key: &str, hash_files: &str| {
        format!(
            "name: w\npipelines:\n  p:\n    params: {{v: {{default: x}}}}\n    tasks:\n      t:\n        steps: [x]\n        caches:\n          - {{name: c, key: \"{key}\", paths: [x]{hash_files}}}\n"
        )
    };
    let fits = "k".repeat(MAX_KEY_BYTES - 1 - HASH_HEX);
    assert_eq!(fits.len(), 479);
    let long = format!("{fits}k");
    let hashed = ", hash_files: [Cargo.lock]";
    assert!(parse_workflow(&spec(&fits, hashed)).is_ok());
    assert!(parse_workflow(&spec(&long, "")).is_ok());
    assert_eq!(
        messages(&spec(&long, hashed)),
        [
            "pipelines.p.tasks.t.caches[0].key: a cache key with hash_files is 513 bytes once \"-\" \
             and 32 hex digits are appended, more than 512: keep the key to 479 bytes (line 9)"
        ]
    );
    let templated = format!("{}{{{{ params.v }}}}", "k".repeat(470));
    assert!(parse_workflow(&spec(&templated, hashed)).is_ok());
}

/// Every fault used to be listed: a spec with a fault on every line
/// answered with more than itself.
#[test]
fn faults_past_the_limit_are_counted() {
    let text = format!(
        "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n        depends_on: [{}]\n",
        (0..200)
            .map(|i| format!("u{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let got = messages(&text);
    assert_eq!(got.len(), MAX_DIAGNOSTICS + 1);
    assert_eq!(
        got[MAX_DIAGNOSTICS],
        "100 more faults not shown (only the first 100 are)"
    );
}

/// A long task name was repeated whole in the path of every node below
/// it, so memory grew with its length times the task's size.
#[test]
fn long_keys_are_cut_in_paths() {
    // YAML keys end at 1,024 characters.
    let name = "a".repeat(1000);
    let text = format!(
        "name: w\npipelines:\n  p:\n    tasks:\n      {name}:\n        steps:\n{}",
        "          - {run: x, bad: 1}\n".repeat(50)
    );
    let got = messages(&text);
    assert_eq!(got.len(), 51);
    assert!(got.iter().all(|m| m.len() < 300), "{got:?}");
    assert!(got[0].starts_with(&format!(
        "pipelines.p.tasks.{}...: task name",
        "a".repeat(64)
    )));
}

/// A need is met by any task upstream, however far, and checking it costs
/// one lookup in the reach sets whatever the chain's length.
#[test]
fn needs_are_met_from_far_upstream_and_not_from_a_cycle() {
    let mut text = String::from(
        "name: w\npipelines:\n  p:\n    tasks:\n      t0:\n        steps: [x]\n        publish: [{name: first, path: out}]\n",
    );
    for i in 1..300 {
        text.push_str(&format!(
            "      t{i}:\n        depends_on: [t{}]\n        steps: [x]\n",
            i - 1
        ));
    }
    text.push_str("        needs: [first]\n");
    let w = parse_workflow(&text).unwrap();
    assert_eq!(w.pipelines["p"].tasks["t299"].needs[0].name, "first");

    // On a cycle, the cycle is the fault; the need adds none.
    let cycle = "name: w\npipelines:\n  p:\n    tasks:\n      a:\n        depends_on: [b]\n        steps: [x]\n        publish: [{name: x, path: x}]\n      b:\n        depends_on: [a]\n        steps: [x]\n        needs: [x]\n";
    let got = messages(cycle);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("cycle"), "{got:?}");
}
