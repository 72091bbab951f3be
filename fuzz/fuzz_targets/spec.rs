//! Any text: `parse_workflow` returns a spec or faults, never panics, and
//! what it accepts is runnable: each pipeline orders into a DAG, and its
//! conditions and templates parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xene_core::condition::Condition;
use xene_core::dag::Dag;
use xene_core::parse_workflow;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_workflow(text) {
        Ok(workflow) => {
            for pipeline in workflow.pipelines.values() {
                let dag = Dag::new(pipeline).expect("a valid pipeline is a DAG");
                assert_eq!(dag.order().len(), pipeline.tasks.len());
                for task in pipeline.tasks.values() {
                    if let Some(c) = &task.condition {
                        Condition::parse(c).expect("a valid condition parses again");
                    }
                    for step in task.steps.iter().chain(&task.post) {
                        xene_core::template::references(&step.run)
                            .expect("a valid template parses again");
                    }
                }
            }
            // A stored spec travels as JSON: it must come back the same.
            let json = serde_json::to_string(&workflow).expect("a spec serializes");
            let back: xene_core::spec::Workflow =
                serde_json::from_str(&json).expect("a serialized spec deserializes");
            assert_eq!(back, workflow);
        }
        Err(diagnostics) => assert!(!diagnostics.is_empty()),
    }
});
