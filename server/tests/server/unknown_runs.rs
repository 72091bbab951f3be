//! A run that ends `unknown` (its server died under it with no attempt
//! left) leaves nothing `running` or `pending`: what ran is `unknown`, what
//! never started is `not_executed`, on both databases.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::Xene;
use crate::util::{Backend, TestDb};

/// `a` runs when the server dies; `b` waits for it; no retries.
const ONCE: &str = r#"
name: once
pipelines:
  p:
    tasks:
      a:
        steps:
          - name: first
            run: echo started
          - name: wait
            run: sleep 20
          - name: never
            run: echo never
      b:
        depends_on: [a]
        steps: ['echo b']
"#;

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}: {run}"))
}

fn step_statuses(task: &Value) -> Vec<&str> {
    task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect()
}

async fn an_unknown_run_leaves_nothing_running(backend: Backend) {
    let db = TestDb::new(backend);
    let mut first = Xene::start(&db, "builtin-lost", &[]).await;
    first.apply(ONCE).await;
    let id = first.start_run("once", "p", json!({})).await;
    first
        .wait_run(id, Duration::from_secs(60), |run| {
            task(run, "a")["steps"][1]["status"] == "running"
        })
        .await;
    first.kill();

    // The same agent id: the new server knows the old one's runs are lost.
    let second = Xene::start(&db, "builtin-lost", &[]).await;
    let run = second.wait_finished(id, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "unknown", "{run}");
    let a = task(&run, "a");
    assert_eq!(a["status"], "unknown", "{run}");
    assert_eq!(
        step_statuses(a),
        ["success", "unknown", "not_executed"],
        "{run}"
    );
    let b = task(&run, "b");
    assert_eq!(b["status"], "not_executed", "{run}");
    assert_eq!(step_statuses(b), ["not_executed"], "{run}");
}

#[tokio::test]
async fn an_unknown_run_leaves_nothing_running_on_sqlite() {
    an_unknown_run_leaves_nothing_running(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_unknown_run_leaves_nothing_running_on_postgres() {
    an_unknown_run_leaves_nothing_running(Backend::Postgres).await;
}

/// A hand-driven agent that reports a task finished while it still has a
/// step running, its dependant pending (an agent that gives up, or
/// cancels, mid-task).
mod reported_finished {
    use futures::{SinkExt, StreamExt};
    use serde_json::json;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use xene_core::event::RunEvent;
    use xene_core::protocol::{AgentMessage, PROTOCOL_VERSION, ServerMessage};
    use xene_core::status::{StepStatus, TaskStatus};

    use super::{ONCE, step_statuses, task};
    use crate::util::{Backend, TestDb, TestServer};

    type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn send(socket: &mut Socket, message: &AgentMessage) {
        let text = serde_json::to_string(message).unwrap();
        socket.send(Message::text(text)).await.unwrap();
    }

    async fn receive(socket: &mut Socket) -> ServerMessage {
        loop {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(20), socket.next())
                .await
                .expect("the server answers within 20 s");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).unwrap();
                }
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    async fn agent(server: &TestServer) -> Socket {
        let (status, token) = server
            .post("/api/v1/agents/join-tokens", json!({}).to_string())
            .await;
        assert_eq!(status, 201, "{token}");
        let body = json!({ "token": token["token"], "name": "hand" }).to_string();
        let (status, joined) = server.post("/api/v1/agents/join", body).await;
        assert_eq!(status, 201, "{joined}");
        let mut request = format!("ws://{}/api/v1/agents/connect", server.addr)
            .into_client_request()
            .unwrap();
        let credential = joined["credential"].as_str().unwrap();
        let bearer = format!("Bearer {credential}").parse().unwrap();
        request.headers_mut().insert("Authorization", bearer);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let hello = AgentMessage::Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "test".into(),
            labels: Default::default(),
            runtimes: vec!["shell".into()],
            capacity: 2,
            attempts: vec![],
        };
        send(&mut socket, &hello).await;
        assert!(matches!(
            receive(&mut socket).await,
            ServerMessage::Welcome { .. }
        ));
        socket
    }

    /// Runs `ONCE` and reports `a` finished `status` with its first step
    /// done and its second running.
    async fn finish_midway(server: &TestServer, socket: &mut Socket, status: TaskStatus) -> i64 {
        let (_, run) = server
            .post("/api/v1/workflows/once/pipelines/p/runs", "")
            .await;
        let id = run["id"].as_i64().unwrap();
        let ServerMessage::TaskDispatch(dispatch) = receive(socket).await else {
            panic!("no dispatch")
        };
        assert_eq!((dispatch.run_id, dispatch.task.as_str()), (id, "a"));
        let (a, first, wait) = ("a".to_string(), "first".to_string(), "wait".to_string());
        let events = vec![
            RunEvent::TaskStarted {
                task: a.clone(),
                attempt: 1,
            },
            RunEvent::StepStarted {
                task: a.clone(),
                step: first.clone(),
            },
            RunEvent::StepFinished {
                task: a.clone(),
                step: first,
                status: StepStatus::Success,
                exit_code: Some(0),
                duration_ms: 1,
            },
            RunEvent::StepStarted {
                task: a.clone(),
                step: wait,
            },
            RunEvent::TaskFinished {
                task: a,
                status,
                output: None,
                duration_ms: 5,
                attempt: 1,
                error: None,
                retry_in_ms: None,
            },
        ];
        let message = AgentMessage::TaskEvents {
            attempt: dispatch.attempt,
            first_seq: 0,
            events,
        };
        send(socket, &message).await;
        assert!(matches!(
            receive(socket).await,
            ServerMessage::TaskAck { seq: 4, .. }
        ));
        id
    }

    async fn a_task_reported_finished_leaves_nothing_running(backend: Backend) {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |args| args.no_local_agent = true).await;
        server.post("/api/v1/workflows", ONCE).await;
        let mut socket = agent(&server).await;
        // A task that ends of itself (nobody cancelled the run) fails it.
        for (status, ran) in [
            (TaskStatus::Error, "unknown"),
            (TaskStatus::Cancelled, "cancelled"),
        ] {
            let id = finish_midway(&server, &mut socket, status).await;
            let run = server.wait_for_run(id).await;
            assert_eq!(run["status"], "error", "{run}");
            let a = task(&run, "a");
            assert_eq!(a["status"], status.as_str(), "{run}");
            assert_eq!(step_statuses(a), ["success", ran, "not_executed"], "{run}");
            let b = task(&run, "b");
            assert_eq!(b["status"], "not_executed", "{run}");
            assert_eq!(step_statuses(b), ["not_executed"], "{run}");
        }
        socket.close(None).await.unwrap();
        server.stop().await;
    }

    #[tokio::test]
    async fn a_task_reported_finished_leaves_nothing_running_on_sqlite() {
        a_task_reported_finished_leaves_nothing_running(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn a_task_reported_finished_leaves_nothing_running_on_postgres() {
        a_task_reported_finished_leaves_nothing_running(Backend::Postgres).await;
    }
}
