//! The agent gateway (protocol 4), spoken to by a bare WebSocket client
//! that plays the agent's side message by message.

use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use xene_core::event::RunEvent;
use xene_core::protocol::{
    AgentMessage, AttemptRef, PROTOCOL_VERSION, ServerMessage, TaskDispatch,
};
use xene_core::status::{StepStatus, TaskStatus};

use crate::agent_socket::{Socket, dial, hello, join, join_with, next_task, receive, send};
use crate::util::{BACKENDS, Backend, TestDb, TestServer};

pub const ONE_TASK: &str = "\
name: remote
pipelines:
  p:
    selector: {pool: remote}
    tasks:
      t:
        steps:
          - name: s
            run: echo hi
";

/// What an agent reports on one attempt of task `t`: started, its step's
/// start, a line, its end, the task's end.
pub fn events() -> Vec<RunEvent> {
    vec![
        RunEvent::TaskStarted {
            task: "t".into(),
            attempt: 1,
        },
        RunEvent::StepStarted {
            task: "t".into(),
            step: "s".into(),
        },
        RunEvent::Log {
            task: "t".into(),
            step: "s".into(),
            stream: xene_core::event::LogStream::Stdout,
            data: "hi".into(),
        },
        RunEvent::StepFinished {
            task: "t".into(),
            step: "s".into(),
            status: StepStatus::Success,
            exit_code: Some(0),
            duration_ms: 3,
        },
        RunEvent::TaskFinished {
            task: "t".into(),
            status: TaskStatus::Success,
            output: Some("out".into()),
            duration_ms: 4,
            attempt: 1,
            error: None,
            retry_in_ms: None,
        },
    ]
}

/// Reports `events` of `attempt`, numbered from `first_seq`.
pub fn task_events(attempt: AttemptRef, first_seq: u64, events: &[RunEvent]) -> AgentMessage {
    AgentMessage::TaskEvents {
        attempt,
        first_seq,
        events: events.to_vec(),
    }
}

#[tokio::test]
async fn a_remote_agent_gets_its_task_and_events_apply_once() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let (agent_id, credential) = join(&server, json!({ "pool": "remote" })).await;
        server.post("/api/v1/workflows", ONE_TASK).await;
        let (_, run) = server
            .post("/api/v1/workflows/remote/pipelines/p/runs", "")
            .await;
        let id = run["id"].as_i64().unwrap();

        let mut socket = dial(&server, &credential).await.unwrap();
        send(&mut socket, &hello(vec![])).await;
        let Ok(ServerMessage::Welcome {
            agent_id: welcomed,
            heartbeat_ms,
        }) = receive(&mut socket).await
        else {
            panic!("no welcome")
        };
        assert_eq!(welcomed, agent_id);
        assert!(heartbeat_ms > 0);

        // The task's selector matches only the token's label: it comes here,
        // with its own spec.
        let dispatch = next_task(&mut socket).await;
        assert_eq!(dispatch.run_id, id);
        assert_eq!((dispatch.task.as_str(), dispatch.number), ("t", 1));
        assert_eq!(dispatch.pipeline_name, "p");
        assert_eq!(dispatch.spec.steps[0].name, "s");
        assert!(dispatch.secrets.is_empty() && dispatch.outputs.is_empty());
        assert!(!dispatch.more_outputs);

        let attempt = dispatch.attempt;
        let all = events();
        send(&mut socket, &task_events(attempt, 0, &all[..3])).await;
        assert_eq!(
            receive(&mut socket).await,
            Ok(ServerMessage::TaskAck { attempt, seq: 2 })
        );
        // A resend after a lost ack overlaps what is stored: applied once.
        send(&mut socket, &task_events(attempt, 0, &all)).await;
        assert_eq!(
            receive(&mut socket).await,
            Ok(ServerMessage::TaskAck { attempt, seq: 4 })
        );

        let run = server.wait_for_run(id).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["agents"], json!([agent_id]), "{run}");
        assert_eq!(run["tasks"][0]["agent_id"], agent_id, "{run}");
        assert_eq!(run["tasks"][0]["output"], "out");
        let (_, logs) = server.get(&format!("/api/v1/runs/{id}/logs")).await;
        assert_eq!(logs["lines"].as_array().unwrap().len(), 1, "{logs}");

        let (_, agents) = server.get("/api/v1/agents").await;
        let remote = agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == agent_id)
            .unwrap()
            .clone();
        assert_eq!(remote["state"], "online");
        // The token fixed its labels: the ones it declared are not kept.
        assert_eq!(remote["labels"], json!({ "pool": "remote" }));
        assert_eq!(remote["capacity"], 2);
        assert_eq!(remote["running"], 0, "{remote}");
        assert_eq!(remote["held"], json!([]), "{remote}");
        socket.close(None).await.unwrap();
        server.stop().await;
    }
}

#[tokio::test]
async fn revoking_an_agent_closes_its_connection_and_its_credential() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let (agent_id, credential) = join(&server, json!({})).await;
        let mut socket = dial(&server, &credential).await.unwrap();
        send(&mut socket, &hello(vec![])).await;
        assert!(matches!(
            receive(&mut socket).await,
            Ok(ServerMessage::Welcome { .. })
        ));

        assert_eq!(
            server.delete(&format!("/api/v1/agents/{agent_id}")).await,
            204
        );
        let closed = receive(&mut socket).await.unwrap_err();
        assert_eq!(closed.map(|(code, _)| code), Some(CloseCode::from(4001)));

        let refused = dial(&server, &credential).await.unwrap_err();
        assert!(refused.to_string().contains("401"), "{refused}");
        assert_eq!(
            server.delete(&format!("/api/v1/agents/{agent_id}")).await,
            204,
            "revoking twice is harmless"
        );
        assert_eq!(server.delete("/api/v1/agents/agent-unknown").await, 404);
        server.stop().await;
    }
}

#[tokio::test]
async fn join_tokens_are_one_time_and_expire() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let (_, token) = server.post("/api/v1/agents/join-tokens", "").await;
        let token = token["token"].as_str().unwrap().to_string();
        let body = json!({ "token": token }).to_string();
        assert_eq!(
            server.post("/api/v1/agents/join", body.clone()).await.0,
            201
        );
        let (status, replay) = server.post("/api/v1/agents/join", body).await;
        assert_eq!(
            (status, replay["error"].as_str().unwrap()),
            (401, "the join token was already used")
        );

        let (_, short) = server
            .post("/api/v1/agents/join-tokens", r#"{"expires_in": "1ms"}"#)
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (status, expired) = server
            .post(
                "/api/v1/agents/join",
                json!({ "token": short["token"] }).to_string(),
            )
            .await;
        assert_eq!(
            (status, expired["error"].as_str().unwrap()),
            (401, "the join token has expired")
        );

        let (status, unknown) = server
            .post(
                "/api/v1/agents/join",
                json!({ "token": format!("xjt_{}", "0".repeat(64)) }).to_string(),
            )
            .await;
        assert_eq!(
            (status, unknown["error"].as_str().unwrap()),
            (401, "unknown token")
        );
        let (status, malformed) = server
            .post("/api/v1/agents/join", r#"{"token": "letmein"}"#)
            .await;
        assert_eq!(
            (status, malformed["error"].as_str().unwrap()),
            (401, "malformed token")
        );
        assert_eq!(server.post("/api/v1/agents/join", "{}").await.0, 400);
        assert_eq!(
            server
                .post("/api/v1/agents/join-tokens", r#"{"expires_in": "forever"}"#)
                .await
                .0,
            400
        );
        assert_eq!(
            server
                .post("/api/v1/agents/join-tokens", r#"{"expires_in": "90d"}"#)
                .await
                .0,
            400
        );

        for bad in ["", "Bearer nope", &format!("Bearer xac_{}", "1".repeat(64))] {
            let mut request = format!("ws://{}/api/v1/agents/connect", server.addr)
                .into_client_request()
                .unwrap();
            if !bad.is_empty() {
                request
                    .headers_mut()
                    .insert("Authorization", bad.parse().unwrap());
            }
            let refused = tokio_tungstenite::connect_async(request).await.unwrap_err();
            assert!(refused.to_string().contains("401"), "{bad}: {refused}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn a_reconnecting_agent_keeps_its_task_and_a_lost_one_is_retried() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let (_, credential) = join(&server, json!({ "pool": "remote" })).await;
        server
            .post(
                "/api/v1/workflows",
                ONE_TASK.replace("steps:\n", "retries: 1\n        steps:\n"),
            )
            .await;
        let (_, run) = server
            .post("/api/v1/workflows/remote/pipelines/p/runs", "")
            .await;
        let id = run["id"].as_i64().unwrap();

        let mut socket = dial(&server, &credential).await.unwrap();
        send(&mut socket, &hello(vec![])).await;
        receive(&mut socket).await.unwrap();
        let attempt = next_task(&mut socket).await.attempt;
        send(&mut socket, &task_events(attempt, 0, &events()[..2])).await;
        assert_eq!(
            receive(&mut socket).await,
            Ok(ServerMessage::TaskAck { attempt, seq: 1 })
        );
        drop(socket);

        // Back, still running it: no second dispatch, the events go on, and
        // a resend overlapping what is stored is acknowledged.
        let mut socket = dial(&server, &credential).await.unwrap();
        send(&mut socket, &hello(vec![attempt])).await;
        receive(&mut socket).await.unwrap();
        send(&mut socket, &task_events(attempt, 0, &events()[..3])).await;
        assert_eq!(
            receive(&mut socket).await,
            Ok(ServerMessage::TaskAck { attempt, seq: 2 })
        );
        drop(socket);

        // Back again, having lost it (restarted): the task is retried as its
        // attempt 2, and the agent gets that.
        let mut socket = dial(&server, &credential).await.unwrap();
        send(&mut socket, &hello(vec![])).await;
        receive(&mut socket).await.unwrap();
        let retried = next_task(&mut socket).await;
        assert_eq!((retried.run_id, retried.number), (id, 2));
        assert_ne!(retried.attempt, attempt);
        // Events of the lost attempt are refused: the agent is told to stop it.
        send(&mut socket, &task_events(attempt, 3, &events()[3..4])).await;
        assert_eq!(
            receive(&mut socket).await,
            Ok(ServerMessage::StopTask { attempt })
        );
        let (_, run) = server.get(&format!("/api/v1/runs/{id}")).await;
        let attempts = &run["tasks"][0]["attempts"];
        assert_eq!(attempts[0]["status"], "unknown", "{run}");
        assert_eq!(attempts[1]["number"], 2, "{run}");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_cancelled_run_whose_agent_vanishes_ends_cancelled() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |args| {
            args.task_lease = std::time::Duration::from_secs(1)
        })
        .await;
        let (_, credential) = join(&server, json!({ "pool": "remote" })).await;
        server
            .post(
                "/api/v1/workflows",
                ONE_TASK.replace("steps:\n", "retries: 3\n        steps:\n"),
            )
            .await;
        let (_, run) = server
            .post("/api/v1/workflows/remote/pipelines/p/runs", "")
            .await;
        let id = run["id"].as_i64().unwrap();

        let mut socket = dial(&server, &credential).await.unwrap();
        send(&mut socket, &hello(vec![])).await;
        receive(&mut socket).await.unwrap();
        let attempt = next_task(&mut socket).await.attempt;
        send(&mut socket, &task_events(attempt, 0, &events()[..3])).await;
        assert_eq!(
            receive(&mut socket).await,
            Ok(ServerMessage::TaskAck { attempt, seq: 2 })
        );
        let (status, _) = server.post(&format!("/api/v1/runs/{id}/cancel"), "").await;
        assert_eq!(status, 202);
        assert_eq!(
            receive(&mut socket).await,
            Ok(ServerMessage::CancelTask { attempt })
        );
        // Gone before it could report the cancellation: retries left or not,
        // a task somebody cancelled is not tried again.
        drop(socket);

        let run = server.wait_for_run(id).await;
        assert_eq!(run["status"], "cancelled", "{run}");
        let task = &run["tasks"][0];
        assert_eq!(task["status"], "cancelled", "{run}");
        assert_eq!(task["attempts"].as_array().unwrap().len(), 1, "{run}");
        assert_ne!(task["steps"][0]["status"], "running", "{run}");
        server.stop().await;
    }
}

/// An agent's messages are input: bounded fields, a capped capacity, events
/// that name only the attempt's task and its steps, and no going back from
/// a finished state. A breach ends the session and changes nothing.
#[tokio::test]
async fn a_hostile_agent_is_bounded_and_changes_nothing_it_should_not() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let (agent_id, credential) = join(&server, json!({ "pool": "remote" })).await;

        // Too many labels: refused at hello.
        let mut socket = dial(&server, &credential).await.unwrap();
        let labels = (0..40)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        send(
            &mut socket,
            &AgentMessage::Hello {
                protocol: PROTOCOL_VERSION,
                agent_version: "test".into(),
                labels,
                runtimes: vec!["shell".into()],
                capacity: 2,
                attempts: vec![],
            },
        )
        .await;
        assert!(receive(&mut socket).await.is_err(), "the session ended");

        // A claimed capacity of 4 billion is cut to the cap.
        let mut socket = dial(&server, &credential).await.unwrap();
        send(
            &mut socket,
            &crate::agent_socket::hello_with(u32::MAX, vec![]),
        )
        .await;
        assert!(matches!(
            receive(&mut socket).await,
            Ok(ServerMessage::Welcome { .. })
        ));
        let (_, agents) = server.get("/api/v1/agents").await;
        let remote = agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == agent_id)
            .unwrap()
            .clone();
        assert_eq!(remote["capacity"], 256, "{remote}");

        server.post("/api/v1/workflows", ONE_TASK).await;
        let (_, run) = server
            .post("/api/v1/workflows/remote/pipelines/p/runs", "")
            .await;
        let id = run["id"].as_i64().unwrap();
        let attempt = next_task(&mut socket).await.attempt;
        let all = events();
        // The task finishes (and so does the run)...
        send(&mut socket, &task_events(attempt, 0, &all)).await;
        assert_eq!(
            receive(&mut socket).await,
            Ok(ServerMessage::TaskAck { attempt, seq: 4 })
        );
        // ...and cannot be started again.
        send(&mut socket, &task_events(attempt, 5, &all[..2])).await;
        let _ = receive(&mut socket).await;
        let run = server.wait_for_run(id).await;
        assert_eq!(run["tasks"][0]["status"], "success", "{run}");
        assert_eq!(run["tasks"][0]["steps"][0]["status"], "success", "{run}");

        // A step the task does not have, another task's name, a NUL in a
        // name, a run's event: the session ends, nothing is stored, the
        // server carries on.
        let run_event = RunEvent::RunFinished {
            status: xene_core::status::RunStatus::Error,
            duration_ms: 1,
        };
        let log = |task: &str, step: &str| RunEvent::Log {
            task: task.into(),
            step: step.into(),
            stream: xene_core::event::LogStream::Stdout,
            data: "junk".into(),
        };
        for bad in [
            log("t", "nosuch"),
            log("u", "s"),
            log("t\0x", "s"),
            run_event,
        ] {
            let mut socket = dial(&server, &credential).await.unwrap();
            // It still reports the finished attempt: no stop for that.
            send(&mut socket, &hello(vec![attempt])).await;
            assert!(matches!(
                receive(&mut socket).await,
                Ok(ServerMessage::Welcome { .. })
            ));
            send(
                &mut socket,
                &task_events(attempt, 100, std::slice::from_ref(&bad)),
            )
            .await;
            loop {
                match receive(&mut socket).await {
                    Ok(ServerMessage::TaskAck { .. }) => panic!("{bad:?} was accepted"),
                    Ok(ServerMessage::StopTask { .. }) => {
                        panic!("{bad:?}: a finished attempt stopped")
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
        }
        let (_, logs) = server.get(&format!("/api/v1/runs/{id}/logs")).await;
        assert_eq!(logs["lines"].as_array().unwrap().len(), 1, "{logs}");
        let run = server.wait_for_run(id).await;
        assert_eq!(run["status"], "success", "{run}");
        let (status, _) = server.get("/healthz").await;
        assert_eq!(status, 200);
        server.stop().await;
    }
}

/// Two pipelines: one for the token's pool, one for the label the agent
/// only claims.
const POOLS: &str = "\
name: pools
pipelines:
  a:
    selector: {pool: a}
    tasks:
      t:
        steps:
          - name: s
            run: echo hi
  gpu:
    selector: {gpu: \"true\"}
    tasks:
      t:
        steps:
          - name: s
            run: echo hi
";

/// The next task dispatch within `wait`, answering nothing else; `None` if
/// none came.
async fn next_dispatch(socket: &mut Socket, wait: std::time::Duration) -> Option<TaskDispatch> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                if let ServerMessage::TaskDispatch(d) = serde_json::from_str(text.as_str()).unwrap()
                {
                    return Some(*d);
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => panic!("the session ended"),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_join_token_fixes_the_agents_labels_and_capacity() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        for (bad, why) in [
            (json!({ "capacity": 0 }), "capacity"),
            (json!({ "capacity": 257 }), "capacity"),
            (json!({ "labels": { "a b": "x" } }), "label keys"),
            (json!({ "labels": { "k": "a\u{0}b" } }), "label values"),
        ] {
            let (status, body) = server
                .post("/api/v1/agents/join-tokens", bad.to_string())
                .await;
            assert_eq!(status, 400, "{bad}: {body}");
            assert!(body["error"].as_str().unwrap().contains(why), "{body}");
        }
        let (status, token) = server
            .post(
                "/api/v1/agents/join-tokens",
                json!({ "labels": { "pool": "a" }, "capacity": 2 }).to_string(),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        assert_eq!(token["labels"], json!({ "pool": "a" }));
        assert_eq!(token["capacity"], 2);
        let (agent_id, credential) =
            join_with(&server, json!({ "labels": { "pool": "a" }, "capacity": 2 })).await;

        server.post("/api/v1/workflows", POOLS).await;
        let (_, gpu) = server
            .post("/api/v1/workflows/pools/pipelines/gpu/runs", "")
            .await;
        let gpu = gpu["id"].as_i64().unwrap();
        for _ in 0..5 {
            let (status, _) = server
                .post("/api/v1/workflows/pools/pipelines/a/runs", "")
                .await;
            assert_eq!(status, 201);
        }

        // It claims room for 200 tasks and a GPU.
        let claim = |attempts: Vec<AttemptRef>| AgentMessage::Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "test".into(),
            labels: [("gpu".to_string(), "true".to_string())].into(),
            runtimes: vec!["shell".into()],
            capacity: 200,
            attempts,
        };
        let mut socket = dial(&server, &credential).await.unwrap();
        send(&mut socket, &claim(vec![])).await;
        let mut held = Vec::new();
        while let Some(d) = next_dispatch(&mut socket, std::time::Duration::from_secs(3)).await {
            assert_eq!(d.pipeline_name, "a", "only the token's pool is selected");
            held.push(d.attempt);
        }
        assert_eq!(
            held.len(),
            2,
            "at most the token's capacity at once: {held:?}"
        );
        let (_, agents) = server.get("/api/v1/agents").await;
        let remote = agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == agent_id)
            .unwrap()
            .clone();
        assert_eq!(remote["labels"], json!({ "pool": "a" }), "{remote}");
        assert_eq!(remote["capacity"], 2, "{remote}");
        assert_eq!(remote["running"], 2, "{remote}");
        assert_eq!(remote["held"].as_array().unwrap().len(), 2, "{remote}");

        // One ends: one more comes, never a third at once.
        send(&mut socket, &task_events(held[0], 0, &events())).await;
        let next = next_dispatch(&mut socket, std::time::Duration::from_secs(10))
            .await
            .expect("a freed slot is filled");
        assert_eq!(next.pipeline_name, "a");
        assert!(
            next_dispatch(&mut socket, std::time::Duration::from_secs(2))
                .await
                .is_none(),
            "still two at once"
        );
        let (_, run) = server.get(&format!("/api/v1/runs/{gpu}")).await;
        assert_eq!(run["status"], "queued", "nothing with a GPU joined: {run}");

        // A reconnect claims again; the token still decides.
        drop(socket);
        let mut socket = dial(&server, &credential).await.unwrap();
        send(&mut socket, &claim(vec![held[1], next.attempt])).await;
        assert!(
            next_dispatch(&mut socket, std::time::Duration::from_secs(3))
                .await
                .is_none(),
            "it holds two already"
        );
        let (_, run) = server.get(&format!("/api/v1/runs/{gpu}")).await;
        assert_eq!(run["status"], "queued", "{run}");
        server.stop().await;
    }
}

/// The built-in agent renews its leases on its own timer, five times a
/// lease, whatever its passes do: a task four leases long runs once.
#[tokio::test]
async fn the_built_in_agent_keeps_a_short_lease_alive() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |args| {
        args.task_lease = std::time::Duration::from_secs(1);
    })
    .await;
    let file = "\
name: long
pipelines:
  p:
    tasks:
      t:
        retries: 2
        steps: ['sleep 4']
";
    let (status, body) = server.post("/api/v1/workflows", file).await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server
        .post("/api/v1/workflows/long/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let run = server.wait_for_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "success", "{run}");
    let attempts = run["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "the lease never ended: {run}");
    server.stop().await;
}
