//! Task attempts' leases: one ended (its agent lost it) stays ended however
//! often the agent beats, and an agent that stops reporting a started
//! attempt between reconnects loses it.

use serde_json::json;
use xene_core::event::RunEvent;
use xene_core::protocol::{AttemptRef, ServerMessage};
use xene_server::storage::{attempts, events, now_ms};

use crate::agent_socket::{connect, heartbeat, hello_with, join, next_task, receive, send};
use crate::attempt_fixtures::model_2_run;
use crate::gateway::task_events;
use crate::util::{BACKENDS, TestDb, TestServer};

const ONCE: &str = "\
name: once
pipelines:
  p:
    selector: {pool: remote}
    tasks:
      t:
        steps: ['sleep 60']
";

#[tokio::test]
async fn an_ended_lease_is_not_renewed_by_its_agents_heartbeats() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = model_2_run(&test_db, ONCE, "once", &["a"]).await;
        let ready = attempts::ready_page(&db, 0, i64::MAX / 4, 10)
            .await
            .unwrap();
        let attempt = ready.iter().find(|a| a.run_id == run).unwrap().id;
        let placed = attempts::place_many(&db, &[(attempt, "a")], 60_000)
            .await
            .unwrap();
        assert_eq!(placed, [true]);
        let started = RunEvent::TaskStarted {
            task: "t".into(),
            attempt: 1,
        };
        events::apply_attempt(&db, AttemptRef { id: attempt }, "a", 0, &[started])
            .await
            .unwrap();
        attempts::end_lease(&db, attempt, "a").await.unwrap();
        // The agent still beats (its other attempts, or a late flush).
        attempts::renew_for_agents(&db, &["a".to_string()], 60_000)
            .await
            .unwrap();
        let expired = attempts::expire_leases(&db, now_ms()).await.unwrap();
        assert_eq!(expired.lost, 1, "{backend:?}: the ended lease stayed ended");
    }
}

#[tokio::test]
async fn a_started_attempt_missing_from_a_heartbeat_is_lost() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
        server.post("/api/v1/workflows", ONCE).await;
        let (_, credential) = join(&server, json!({ "pool": "remote" })).await;
        let mut socket = connect(&server, &credential, &hello_with(1, vec![])).await;
        let (status, run) = server
            .post("/api/v1/workflows/once/pipelines/p/runs", "")
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        let dispatch = next_task(&mut socket).await;
        let started = RunEvent::TaskStarted {
            task: dispatch.task.clone(),
            attempt: 1,
        };
        send(&mut socket, &task_events(dispatch.attempt, 0, &[started])).await;
        assert_eq!(
            receive(&mut socket).await,
            Ok(ServerMessage::TaskAck {
                attempt: dispatch.attempt,
                seq: 0
            })
        );
        // Still connected, the agent no longer has it (its process died
        // without a report): the task has no retry, so the run ends unknown.
        send(&mut socket, &heartbeat(vec![])).await;
        let run = server
            .wait_run_until(id, |run| run["status"] != "running")
            .await;
        assert_eq!(run["status"], "unknown", "{backend:?}: {run}");
        server.stop().await;
    }
}
