//! Any text as a template: listing its references and rendering it agree
//! (a template that validates always renders when its values are there),
//! and a script's rendering never contains a value, only variables.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use xene_core::context::{EvalContext, TaskResult};
use xene_core::status::TaskStatus;
use xene_core::template::{self, Reference};

fuzz_target!(|text: &str| {
    let Ok(refs) = template::references(text) else {
        return;
    };
    let mut tasks = BTreeMap::new();
    let mut params = BTreeMap::new();
    for r in &refs {
        match r {
            Reference::TaskOutput(t) | Reference::TaskStatus(t) => {
                tasks.insert(
                    t.clone(),
                    TaskResult {
                        status: TaskStatus::Success,
                        output: Some("out".into()),
                    },
                );
            }
            Reference::Param(p) => {
                params.insert(p.clone(), "value".into());
            }
        }
    }
    let ctx = EvalContext {
        tasks: &tasks,
        params: &params,
    };
    template::render(text, &ctx).expect("a template that validates renders");
    // Where no quoting keeps a value data, rendering refuses, as validation does.
    if template::script_fault(text).is_some() {
        assert!(template::render_script(text, &ctx).is_err());
        return;
    }
    let script = template::render_script(text, &ctx).expect("a script that validates renders");
    if !refs.is_empty() && !text.contains("out") && !text.contains("value") {
        assert!(
            !script.contains("out") && !script.contains("value"),
            "a value was pasted into {script:?}"
        );
    }
});
