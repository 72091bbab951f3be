//! Preparing a dispatch: the built-in agent and remote agents' sessions take
//! one path, so a task attempt that cannot execute ends the same way on
//! both.

use serde_json::json;

use crate::agent_socket::{connect, heartbeat, hello, join, receive, send};
use crate::util::{Backend, TestDb, TestServer};
use xene_core::protocol::ServerMessage;

const WORKFLOW: &str = "\
name: lost
pipelines:
  only:
    selector: {pool: remote}
    tasks:
      t:
        steps: [echo hi]
";

/// A placed task whose pipeline is gone from its stored version (the
/// database edited since) fails when its remote agent is to be sent it, as
/// it does on the built-in agent, instead of waiting forever.
#[tokio::test]
async fn a_task_whose_pipeline_is_gone_fails_on_a_remote_agent() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let (_, credential) = join(&server, json!({ "pool": "remote" })).await;
    let (status, applied) = server.post("/api/v1/workflows", WORKFLOW).await;
    assert_eq!(status, 201, "{applied}");
    let (status, run) = server
        .post("/api/v1/workflows/lost/pipelines/only/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();

    // The stored version loses the pipeline before any agent could take
    // the task (versions never change otherwise: dispatch caches them).
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE workflow_versions SET spec = REPLACE(spec, '\"only\":', '\"other\":')")
        .execute(storage.pool())
        .await
        .unwrap();
    let mut socket = connect(&server, &credential, &hello(vec![])).await;

    let run = server.wait_for_run(id).await;
    assert_eq!(run["status"], "error", "{run}");
    let reason = "its pipeline is missing from the stored workflow version";
    assert_eq!(run["error"], reason, "{run}");
    assert_eq!(run["tasks"][0]["error"], reason, "{run}");
    assert_eq!(
        run["tasks"][0]["steps"][0]["status"], "not_executed",
        "{run}"
    );
    // Nothing was sent: the next message answers a heartbeat.
    send(&mut socket, &heartbeat(vec![])).await;
    assert_eq!(receive(&mut socket).await, Ok(ServerMessage::Pong));
    storage.close().await;
    server.stop().await;
}

/// A task naming more secret bytes than a dispatch may carry fails with
/// the reason, on a remote agent as on the built-in one, instead of a
/// message too big for the agent's socket ending its session.
#[tokio::test]
async fn a_dispatch_past_its_bound_fails_the_task() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    // 70 secrets of 64 KiB: 4.4 MiB, past the 4 MiB bound.
    let value = "v".repeat(64 * 1024);
    let mut names = Vec::new();
    for i in 0..70 {
        let name = format!("BIG_{i:02}");
        let answer = server
            .client
            .put(server.url(&format!("/api/v1/secrets/{name}")))
            .json(&json!({ "value": value }))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{answer:?}");
        names.push(name);
    }
    let (_, credential) = join(&server, json!({ "pool": "remote" })).await;
    let mut socket = connect(&server, &credential, &hello(vec![])).await;
    for (pipeline, selector) in [("remote", "\n    selector: {pool: remote}"), ("local", "")] {
        let file = format!(
            "name: big\npipelines:\n  {pipeline}:{selector}\n    tasks:\n      t:\n        secrets: [{}]\n        steps: ['true']\n",
            names.join(", ")
        );
        let (status, applied) = server.post("/api/v1/workflows", file).await;
        assert_eq!(status, 201, "{applied}");
        let (status, run) = server
            .post(
                &format!("/api/v1/workflows/big/pipelines/{pipeline}/runs"),
                "",
            )
            .await;
        assert_eq!(status, 201, "{run}");
        let run = server.wait_for_run(run["id"].as_i64().unwrap()).await;
        assert_eq!(run["status"], "error", "{pipeline}: {run}");
        let error = run["tasks"][0]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("the task's dispatch would take") && error.contains("4096 KiB"),
            "{pipeline}: {run}"
        );
    }
    // The remote agent's session lived through it: nothing was sent.
    send(&mut socket, &heartbeat(vec![])).await;
    assert_eq!(receive(&mut socket).await, Ok(ServerMessage::Pong));
    server.stop().await;
}
