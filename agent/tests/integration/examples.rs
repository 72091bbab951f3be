//! Every workflow in `examples/` is valid, and runs as its comments say.

use std::path::PathBuf;

use xene_core::status::RunStatus;

use crate::util::{self, busybox_image};

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_valid() {
    let files = examples();
    assert!(files.len() >= 4, "expected the examples, found {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if let Err(diagnostics) = xene_core::parse_workflow(&text) {
            panic!("{}:\n{diagnostics}", file.display());
        }
    }
}

/// Each example says what it should end with on a line `# expect: STATUS`.
#[tokio::test(flavor = "multi_thread")]
async fn every_example_runs_as_expected() {
    busybox_image();
    for file in examples() {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()))
            .trim();
        let workflow = xene_core::parse_workflow(&text).unwrap();
        for (name, pipeline) in workflow.pipelines {
            let request = xene_agent::RunRequest {
                run_id: xene_agent::new_run_id(),
                pipeline_name: name.clone(),
                pipeline,
                params: Default::default(),
                secrets: Default::default(),
                completed: Default::default(),
            };
            let (sender, mut receiver) = tokio::sync::mpsc::channel(256);
            let drain = tokio::spawn(async move { while receiver.recv().await.is_some() {} });
            let executor = xene_agent::Executor::new(util::config());
            let report = tokio::time::timeout(
                util::HANG_GUARD,
                executor.run(request, sender, Default::default()),
            )
            .await
            .expect("hung")
            .unwrap();
            drain.await.unwrap();
            let status = match report.status {
                RunStatus::Success => "success",
                RunStatus::Error => "error",
                other => other.as_str(),
            };
            assert_eq!(
                status,
                expected,
                "{} pipeline {name}: {report:#?}",
                file.display()
            );
        }
    }
}
