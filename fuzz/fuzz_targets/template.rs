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
            Reference::TaskOutput(t) | Reference::TaskStatus(t) | Reference::TaskCache(t, _) => {
                tasks.insert(
                    t.clone(),
                    TaskResult {
                        status: TaskStatus::Success,
                        output: Some("out".into()),
                        caches: Default::default(),
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
    // Values never reach a script's text: other values, the same script.
    // (Comparing with the values' text would be fooled by literal
    // templates, which may spell anything.)
    let other_tasks: BTreeMap<String, TaskResult> = tasks
        .keys()
        .map(|t| {
            let result = TaskResult {
                status: TaskStatus::Success,
                output: Some("$(other)".into()),
                caches: Default::default(),
            };
            (t.clone(), result)
        })
        .collect();
    let other_params: BTreeMap<String, String> = params
        .keys()
        .map(|p| (p.clone(), "'; other".into()))
        .collect();
    let other = EvalContext {
        tasks: &other_tasks,
        params: &other_params,
    };
    let again = template::render_script(text, &other).expect("the same script renders");
    assert_eq!(script, again, "a value was pasted into the script");
});
