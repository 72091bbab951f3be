//! Data-driven spec tests: every file under `specs/valid` must parse (the
//! snapshot is the resolved spec and each pipeline's task order), every file
//! under `specs/invalid` must fail (the snapshot is the rendered diagnostics).

use std::fmt::Write;
use std::fs;
use std::path::Path;

use xene_core::dag::Dag;
use xene_core::parse_workflow;

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
