//! Tidy: the JSON Schema in docs/ lists exactly the fields the parser knows,
//! and refuses unknown ones wherever the parser does.

use std::collections::BTreeSet;

use serde_json::Value;
use xene_core::parse::{
    CACHE_FIELDS, CACHE_SAVE_FIELDS, CRON_TRIGGER_FIELDS, NEED_FIELDS, PARAM_FIELDS,
    PIPELINE_FIELDS, PLACEMENT_WORDS, PUBLISH_FIELDS, PUBLISH_WHEN_WORDS, RETRIES_FIELDS,
    SAVE_MODE_WORDS, STEP_FIELDS, TASK_FIELDS, TRIGGER_WORDS, WORKFLOW_FIELDS,
};

fn schema() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/xene-workflow.schema.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check_object(object: &Value, fields: &[&str], what: &str) {
    assert_eq!(
        object["additionalProperties"],
        Value::Bool(false),
        "{what} must refuse unknown fields"
    );
    let listed: BTreeSet<&str> = object["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let known: BTreeSet<&str> = fields.iter().copied().collect();
    assert_eq!(
        listed, known,
        "fields of {what} in the schema and the parser differ"
    );
}

#[test]
fn schema_lists_the_parser_fields() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let defs = &s["$defs"];
    check_object(&s, WORKFLOW_FIELDS, "the workflow");
    check_object(&defs["pipeline"], PIPELINE_FIELDS, "a pipeline");
    check_object(&defs["cronTrigger"], CRON_TRIGGER_FIELDS, "a cron trigger");
    check_object(&defs["task"], TASK_FIELDS, "a task");
    check_object(&defs["param"], PARAM_FIELDS, "a param");
    check_object(&defs["retries"], RETRIES_FIELDS, "retries");
    check_object(&defs["step"]["oneOf"][1], STEP_FIELDS, "a step");
    check_object(&defs["publish"], PUBLISH_FIELDS, "a published artifact");
    check_object(&defs["need"]["oneOf"][1], NEED_FIELDS, "a needed artifact");
    check_object(&defs["cache"], CACHE_FIELDS, "a cache");
    check_object(
        &defs["pipeline"]["properties"]["cache_save"],
        CACHE_SAVE_FIELDS,
        "cache_save",
    );
    assert_eq!(defs["saveMode"]["enum"], serde_json::json!(SAVE_MODE_WORDS));
    assert_eq!(
        defs["publish"]["properties"]["when"]["enum"],
        serde_json::json!(PUBLISH_WHEN_WORDS)
    );
    assert_eq!(
        defs["trigger"]["oneOf"][0]["enum"],
        serde_json::json!(TRIGGER_WORDS)
    );
    assert_eq!(
        defs["pipeline"]["properties"]["placement"]["enum"],
        serde_json::json!(PLACEMENT_WORDS)
    );
}

#[test]
fn schema_limits_match_the_parser() {
    let defs = &schema()["$defs"];
    assert_eq!(defs["name"]["maxLength"], xene_core::parse::MAX_NAME_LEN);
    assert_eq!(defs["retryCount"]["maximum"], xene_core::parse::MAX_RETRIES);
    use xene_core::parse::{
        MAX_DEPENDENCIES, MAX_ENV_NAME_LEN, MAX_ENV_VARS, MAX_PIPELINES, MAX_STEPS, MAX_TASKS,
    };
    let s = schema();
    assert_eq!(s["properties"]["pipelines"]["maxProperties"], MAX_PIPELINES);
    assert_eq!(defs["envName"]["maxLength"], MAX_ENV_NAME_LEN);
    assert_eq!(defs["env"]["maxProperties"], MAX_ENV_VARS);
    let pipeline = &defs["pipeline"]["properties"];
    assert_eq!(pipeline["selector"]["maxProperties"], MAX_ENV_VARS);
    assert_eq!(pipeline["tasks"]["maxProperties"], MAX_TASKS);
    let task = &defs["task"]["properties"];
    assert_eq!(task["depends_on"]["maxItems"], MAX_DEPENDENCIES);
    assert_eq!(task["selector"]["maxProperties"], MAX_ENV_VARS);
    assert_eq!(task["secrets"]["maxItems"], MAX_ENV_VARS);
    assert_eq!(task["steps"]["maxItems"], MAX_STEPS);
    assert_eq!(task["post"]["maxItems"], MAX_STEPS);
    use xene_core::artifact::{MAX_NAME_BYTES, MAX_PATH_BYTES};
    use xene_core::parse::{MAX_NEEDS, MAX_PUBLISH, MAX_PUBLISH_PATHS};
    assert_eq!(task["publish"]["maxItems"], MAX_PUBLISH);
    assert_eq!(task["needs"]["maxItems"], MAX_NEEDS);
    assert_eq!(
        defs["publish"]["properties"]["paths"]["maxItems"],
        MAX_PUBLISH_PATHS
    );
    assert_eq!(defs["artifactName"]["maxLength"], MAX_NAME_BYTES);
    use xene_core::cache;
    assert_eq!(task["caches"]["maxItems"], cache::MAX_CACHES);
    assert_eq!(defs["cacheKey"]["maxLength"], cache::MAX_KEY_BYTES);
    let c = &defs["cache"]["properties"];
    assert_eq!(c["name"]["maxLength"], cache::MAX_NAME_BYTES);
    assert_eq!(c["restore_keys"]["maxItems"], cache::MAX_RESTORE_KEYS);
    assert_eq!(c["paths"]["maxItems"], MAX_PUBLISH_PATHS);
    assert_eq!(c["hash_files"]["maxItems"], MAX_PUBLISH_PATHS);
    assert_eq!(defs["artifactPath"]["maxLength"], MAX_PATH_BYTES);
    assert_eq!(
        task["if"]["maxLength"],
        xene_core::condition::MAX_CONDITION_CHARS
    );
}
