//! Data-driven spec tests: every file under `specs/valid` must parse (the
//! snapshot is the resolved spec and each pipeline's task order), every file
//! under `specs/invalid` must fail (the snapshot is the rendered diagnostics).

use std::fmt::Write;
use std::fs;
use std::path::Path;

use std::collections::BTreeMap;

use xene_core::context::{EvalContext, TaskResult};
use xene_core::dag::Dag;
use xene_core::parse_workflow;
use xene_core::plan::{self, TaskIds};
use xene_core::protocol::SecretValue;
use xene_core::status::TaskStatus;
use xene_core::template;

fn check(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let valid = path.parent().is_some_and(|p| p.ends_with("valid"));
    match parse_workflow(&text) {
        Ok(workflow) => {
            assert!(valid, "{} was accepted", path.display());
            let mut out = serde_json::to_string_pretty(&workflow).unwrap();
            for (name, pipeline) in &workflow.pipelines {
                let dag = Dag::new(pipeline).unwrap();
                write!(out, "\n\norder of {name}: {}", dag.order().join(", ")).unwrap();
            }
            out
        }
        Err(diagnostics) => {
            assert!(!valid, "{} was rejected:\n{diagnostics}", path.display());
            diagnostics.to_string()
        }
    }
}

#[test]
fn valid_specs() {
    insta::glob!("specs/valid/*", |path| insta::assert_snapshot!(check(path)));
}

#[test]
fn invalid_specs() {
    insta::glob!("specs/invalid/*", |path| insta::assert_snapshot!(check(
        path
    )));
}

/// A task attempt carries the results of the tasks `plan::reads` names,
/// no more: every task of every valid spec renders from those alone, its
/// cache keys and restore keys too (they may name a task two levels up).
#[test]
fn valid_tasks_render_from_what_they_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/valid");
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let workflow = parse_workflow(&fs::read_to_string(&path).unwrap()).unwrap();
        for pipeline in workflow.pipelines.values() {
            let params: BTreeMap<String, String> = (pipeline.params.keys())
                .map(|p| (p.clone(), "v".to_string()))
                .collect();
            for (name, task) in &pipeline.tasks {
                let results: BTreeMap<String, TaskResult> = (plan::reads(task).into_iter())
                    .map(|t| {
                        let result = TaskResult {
                            status: TaskStatus::Success,
                            output: Some("out".into()),
                            caches: BTreeMap::new(),
                        };
                        (t, result)
                    })
                    .collect();
                let ctx = EvalContext {
                    tasks: &results,
                    params: &params,
                };
                let secrets = (task.secrets.iter())
                    .map(|s| (s.clone(), SecretValue::new("s")))
                    .collect();
                let ids = TaskIds {
                    run_id: "r",
                    task: name,
                    attempt: 1,
                };
                let where_ = format!("{} task {name}", path.display());
                if let Err(e) = plan::render_task(&pipeline.env, task, &ctx, &secrets, ids) {
                    panic!("{where_}: {e}");
                }
                for cache in &task.caches {
                    for key in std::iter::once(&cache.key).chain(&cache.restore_keys) {
                        if let Err(e) = template::render(key, &ctx) {
                            panic!("{where_} cache {}: {e}", cache.name);
                        }
                    }
                }
            }
        }
    }
}

/// A cheap stand-in for fuzzing: no prefix of any fixture makes the parser
/// panic, and a refused prefix always says why.
#[test]
fn truncated_specs_never_panic() {
    let dirs = ["valid", "invalid"].map(|d| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/specs")
            .join(d)
    });
    for dir in dirs {
        for entry in fs::read_dir(dir).unwrap() {
            let text = fs::read_to_string(entry.unwrap().path()).unwrap();
            // Every third cut keeps the test quick in debug builds.
            for (cut, _) in text.char_indices().step_by(3) {
                if let Err(d) = parse_workflow(&text[..cut]) {
                    assert!(!d.is_empty());
                }
            }
        }
    }
}
