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

/// The stored spec of workflow `old` gets its template, as a version
/// stored before the check holds it.
async fn hold_template(url: &str) {
    let storage = xene_server::storage::Db::connect(url).await.unwrap();
    let changed = sqlx::query(
        "UPDATE workflow_versions SET spec = REPLACE(spec, 'PLACEHOLDER', '{{ params.tag }}') \
         WHERE workflow = 'old'",
    )
    .execute(storage.pool())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(changed, 1);
}

/// Ended at dispatch, before any step: an agent that renders scripts as
/// before the upgrade never gets it.
fn assert_refused_at_dispatch(run: &Value) {
    assert_eq!(run["status"], "error", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("version 1 was stored before") && error.contains(FAULT),
        "{run}"
    );
    // Ended at dispatch: the task's step never ran.
    assert_eq!(run["tasks"][0]["status"], "error", "{run}");
    assert_eq!(
        run["tasks"][0]["steps"][0]["status"], "not_executed",
        "{run}"
    );
}

/// A run queued before the upgrade (the template check came after it was
/// started) is refused when the built-in agent takes it.
async fn queued_runs_of_unsafe_versions_end_at_dispatch(backend: Backend) {
    let db = TestDb::new(backend);
    let server = TestServer::start_with(&db, |args| args.no_local_agent = true).await;
    let (status, applied) = server.post("/api/v1/workflows", WORKFLOW).await;
    assert_eq!(status, 201, "{applied}");
    let (status, run) = server
        .post("/api/v1/workflows/old/pipelines/manual/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    server.stop().await;
    hold_template(&db.url).await;
    let server = TestServer::start(&db).await;
    let run = server.wait_for_run(id).await;
    assert_refused_at_dispatch(&run);
    server.stop().await;
}

#[tokio::test]
async fn queued_runs_of_unsafe_versions_end_at_dispatch_on_sqlite() {
    queued_runs_of_unsafe_versions_end_at_dispatch(Backend::Sqlite).await;
}

#[tokio::test]
async fn queued_runs_of_unsafe_versions_end_at_dispatch_on_postgres() {
    queued_runs_of_unsafe_versions_end_at_dispatch(Backend::Postgres).await;
}

/// The same through a remote agent's session.
#[tokio::test]
async fn queued_runs_of_unsafe_versions_are_not_sent_to_a_remote_agent() {
    use crate::process::{Agent, Xene};
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(&db, "srv", &["--no-local-agent"]).await;
    xene.apply(WORKFLOW).await;
    let id = xene.start_run("old", "manual", json!({})).await;
    hold_template(&db.url).await;
    let join = xene.join_token(json!({})).await;
    let state = db.dir.path().join("agent");
    let mut agent = Agent::start(&xene.base, &join, &state, "remote", &["--allow-shell"]);
    let run = xene
        .wait_finished(id, std::time::Duration::from_secs(60))
        .await;
    agent.kill();
    assert_refused_at_dispatch(&run);
}
