//! Preparing a dispatch: the built-in agent and remote agents' sessions take
//! one path, so a run that cannot execute ends the same way on both.

use serde_json::json;
use xene_core::protocol::{AgentMessage, ServerMessage};

use crate::agent_socket::{dial, hello, join, receive, send};
use crate::util::{Backend, TestDb, TestServer};

const WORKFLOW: &str = "\
name: lost
pipelines:
  only:
    selector: {pool: remote}
    tasks:
      t:
        steps: [echo hi]
";

/// A placed run whose pipeline is gone from its stored version (the
/// database edited since) fails when its remote agent is to be sent it, as
/// it does on the built-in agent, instead of waiting forever.
#[tokio::test]
async fn a_run_whose_pipeline_is_gone_fails_on_a_remote_agent() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let (_, credential) = join(&server, json!({ "pool": "remote" })).await;
    let (status, applied) = server.post("/api/v1/workflows", WORKFLOW).await;
    assert_eq!(status, 201, "{applied}");
    let mut socket = dial(&server, &credential).await.unwrap();
    send(&mut socket, &hello(vec![])).await;
    assert!(matches!(
        receive(&mut socket).await,
        Ok(ServerMessage::Welcome { .. })
    ));
    let (status, run) = server
        .post("/api/v1/workflows/lost/pipelines/only/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    let Ok(ServerMessage::Dispatch(dispatch)) = receive(&mut socket).await else {
        panic!("no dispatch")
    };
    assert_eq!(dispatch.run.run_id, id);

    // The stored version loses the pipeline; the agent says it did not take
    // the run, so its session prepares it again.
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE workflow_versions SET spec = REPLACE(spec, '\"only\":', '\"other\":')")
        .execute(storage.pool())
        .await
        .unwrap();
    send(
        &mut socket,
        &AgentMessage::Heartbeat {
            running: Vec::new(),
            attempts: Vec::new(),
        },
    )
    .await;
    assert_eq!(receive(&mut socket).await, Ok(ServerMessage::Pong));

    let run = server.wait_for_run(id).await;
    assert_eq!(run["status"], "error", "{run}");
    assert_eq!(
        run["error"], "its pipeline is missing from the stored workflow version",
        "{run}"
    );
    socket.close(None).await.unwrap();
    storage.close().await;
    server.stop().await;
}
