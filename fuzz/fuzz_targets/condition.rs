//! Any text as an `if` condition: parsing never panics nor overflows the
//! stack, and what parses evaluates.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use xene_core::condition::Condition;
use xene_core::context::{EvalContext, TaskResult};
use xene_core::status::TaskStatus;

fuzz_target!(|text: &str| {
    let Ok(condition) = Condition::parse(text) else {
        return;
    };
    let tasks = BTreeMap::from([(
        "a".to_string(),
        TaskResult {
            status: TaskStatus::Success,
            output: Some("x".into()),
            caches: Default::default(),
        },
    )]);
    let params = BTreeMap::from([("p".to_string(), "true".to_string())]);
    let ctx = EvalContext {
        tasks: &tasks,
        params: &params,
    };
    let _ = condition.references();
    let _ = condition.eval(&ctx);
});
