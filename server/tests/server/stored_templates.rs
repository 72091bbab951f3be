//! A version stored before Xene refused templates in code another shell
//! runs (`eval "..."`, `sh -c "..."`, `ssh host "..."`) does not run,
//! whoever starts it: by hand, by a webhook or by cron; on both databases.

use serde_json::{Value, json};

use crate::util::{
    Backend, TestDb, TestServer, backdated_cron_fire, deliver_to_new_hook, run_count,
};

/// Valid as applied. The stored copy then gets a template where
/// `PLACEHOLDER` stands, as a version stored before the check holds it.
const WORKFLOW: &str = r#"
name: old
pipelines:
  manual:
    params:
      tag: {type: string, default: v1}
    tasks:
      t:
        steps: ['eval "echo PLACEHOLDER"']
  hooked:
    trigger: webhook
    params:
      tag: {type: string, default: v1}
    tasks:
      t:
        steps: ['eval "echo PLACEHOLDER"']
  nightly:
    trigger: {cron: "0 0 1 1 *", timezone: UTC}
    params:
      tag: {type: string, default: v1}
    tasks:
      t:
        steps: [echo ok]
        post: ['eval "echo PLACEHOLDER"']
"#;

const FAULT: &str = "a template in the arguments of `eval` cannot be kept from running as code";

async fn old_versions_with_unsafe_templates_do_not_run(backend: Backend) {
    let db = TestDb::new(backend);
    let server = TestServer::start(&db).await;
    let (status, applied) = server.post("/api/v1/workflows", WORKFLOW).await;
    assert_eq!(status, 201, "{applied}");
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    let changed = sqlx::query(
        "UPDATE workflow_versions SET spec = REPLACE(spec, 'PLACEHOLDER', '{{ params.tag }}') \
         WHERE workflow = 'old'",
    )
    .execute(storage.pool())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(changed, 1);

    // By hand.
    let (status, refused) = server
        .post("/api/v1/workflows/old/pipelines/manual/runs", "")
        .await;
    assert_eq!(status, 422, "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("version 1") && error.contains("task \"t\"") && error.contains(FAULT),
        "{refused}"
    );

    // By a webhook: refused, and logged with the delivery.
    let (status, answer, reason) = deliver_to_new_hook(&server, "old", "hooked").await;
    assert_eq!(status, 422, "{answer}");
    assert!(reason.contains(FAULT), "{reason}");

    // By cron: applied a year ago, the latest fire is caught up, and
    // recorded as skipped with the fault.
    let (outcome, reason) = backdated_cron_fire(&db, "old").await;
    assert_eq!(outcome, "skipped", "{reason}");
    assert!(
        reason.contains("task \"t\", step \"post-1\"") && reason.contains(FAULT),
        "{reason}"
    );
    assert_eq!(run_count(&server).await, 0, "nothing ran");

    // A corrected version runs.
    let fixed = WORKFLOW.replace("PLACEHOLDER", "$XENE_PARAM_TAG");
    let (status, applied) = server.post("/api/v1/workflows", fixed).await;
    assert_eq!(status, 201, "{applied}");
    let (status, run) = server
        .post("/api/v1/workflows/old/pipelines/manual/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let done: Value = server.wait_for_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    server.stop().await;
}

#[tokio::test]
async fn old_versions_with_unsafe_templates_do_not_run_on_sqlite() {
    old_versions_with_unsafe_templates_do_not_run(Backend::Sqlite).await;
}

#[tokio::test]
async fn old_versions_with_unsafe_templates_do_not_run_on_postgres() {
    old_versions_with_unsafe_templates_do_not_run(Backend::Postgres).await;
}
