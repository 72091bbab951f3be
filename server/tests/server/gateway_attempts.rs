//! Protocol 3 on raw sockets: who may speak it, what a task dispatch
//! carries (only its task's secrets, its upstream outputs inline or in
//! pages), and cancel and stop per task attempt across agents.

use std::collections::BTreeMap;

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use xene_core::event::RunEvent;
use xene_core::protocol::{
    AgentMessage, AttemptRef, CLOSE_UNSUPPORTED_PROTOCOL, PROTOCOL_VERSION, ServerMessage,
    TaskDispatch,
};
use xene_core::status::TaskStatus;

use crate::agent_socket::{
    Socket, connect, dial, heartbeat, hello_with, join, next_task, receive, send,
};
use crate::gateway::task_events;
use crate::util::{Backend, TestDb, TestServer};

#[tokio::test]
async fn an_agent_of_another_protocol_is_told_what_to_install() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    let (_, credential) = join(&server, json!({})).await;
    let mut socket = dial(&server, &credential).await.unwrap();
    // Word for word what an agent of protocol 1 says: the runs it holds,
    // no task attempts.
    let old = 1;
    socket
        .send(Message::text(
            r#"{"type":"hello","protocol":1,"agent_version":"0.1.0","labels":{"os":"linux"},"runtimes":["shell"],"capacity":2,"running":[{"run_id":7,"attempt":1}]}"#,
        ))
        .await
        .unwrap();
    let (code, reason) = receive(&mut socket).await.unwrap_err().unwrap();
    assert_eq!(code, CloseCode::from(CLOSE_UNSUPPORTED_PROTOCOL));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        reason,
        format!(
            "needs agent protocol {PROTOCOL_VERSION} (xene-agent {version}+), not {old}; \
             reinstall from http://{}/install.sh",
            server.addr
        )
    );
    // Protocol 2 (the hello of the release before artifacts) and 3 (before
    // caches) too: they could not stage a task's files or caches.
    for old in [2, 3] {
        let mut socket = dial(&server, &credential).await.unwrap();
        socket
            .send(Message::text(format!(
                r#"{{"type":"hello","protocol":{old},"agent_version":"0.1.0","labels":{{}},"runtimes":["shell"],"capacity":2,"attempts":[]}}"#,
            )))
            .await
            .unwrap();
        let (code, reason) = receive(&mut socket).await.unwrap_err().unwrap();
        assert_eq!(code, CloseCode::from(CLOSE_UNSUPPORTED_PROTOCOL));
        assert!(
            reason.ends_with(&format!(
                "not {old}; reinstall from http://{}/install.sh",
                server.addr
            )),
            "{reason}"
        );
    }
    // It never became an agent that takes work.
    let (_, agents) = server.get("/api/v1/agents").await;
    assert_ne!(agents["agents"][0]["state"], "online", "{agents}");
    server.stop().await;
}

/// A hello of another protocol is refused before it registers: it never
/// replaces the live session of the same agent.
#[tokio::test]
async fn an_old_hello_does_not_replace_a_live_session() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    let (_, credential) = join(&server, json!({})).await;
    let mut live = connect(&server, &credential, &hello_with(2, vec![])).await;
    let mut old = dial(&server, &credential).await.unwrap();
    old.send(Message::text(
        r#"{"type":"hello","protocol":1,"agent_version":"0.1.0","labels":{},"runtimes":["shell"],"capacity":2,"running":[]}"#,
    ))
    .await
    .unwrap();
    let (code, _) = receive(&mut old).await.unwrap_err().unwrap();
    assert_eq!(code, CloseCode::from(CLOSE_UNSUPPORTED_PROTOCOL));
    // The live session still answers.
    send(&mut live, &heartbeat(vec![])).await;
    assert_eq!(receive(&mut live).await, Ok(ServerMessage::Pong));
    server.stop().await;
}

const TWO_SECRETS: &str = "\
name: keys
pipelines:
  p:
    selector: {pool: remote}
    tasks:
      first:
        secrets: [FIRST_KEY]
        steps: ['echo \"$FIRST_KEY\"']
      second:
        secrets: [SECOND_KEY]
        steps: ['echo \"$SECOND_KEY\"']
      none:
        steps: ['true']
";

#[tokio::test]
async fn a_task_dispatch_carries_only_the_secrets_its_task_names() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    for (name, value) in [
        ("FIRST_KEY", "first-value-1"),
        ("SECOND_KEY", "second-value-2"),
    ] {
        let answer = server
            .client
            .put(server.url(&format!("/api/v1/secrets/{name}")))
            .json(&json!({ "value": value }))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{answer:?}");
    }
    let (status, body) = server.post("/api/v1/workflows", TWO_SECRETS).await;
    assert_eq!(status, 201, "{body}");
    let (_, credential) = join(&server, json!({ "pool": "remote" })).await;
    let (status, run) = server
        .post("/api/v1/workflows/keys/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    // Over loopback, secrets may travel.
    let mut socket = connect(&server, &credential, &hello_with(3, vec![])).await;
    let mut seen = BTreeMap::new();
    for _ in 0..3 {
        let dispatch = next_task(&mut socket).await;
        let secrets: Vec<(String, String)> = dispatch
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        seen.insert(dispatch.task.clone(), secrets);
    }
    assert_eq!(
        seen,
        BTreeMap::from([
            (
                "first".into(),
                vec![("FIRST_KEY".into(), "first-value-1".into())]
            ),
            ("none".into(), vec![]),
            (
                "second".into(),
                vec![("SECOND_KEY".into(), "second-value-2".into())]
            ),
        ])
    );
    server.stop().await;
}

/// Upstream tasks `u00` .. `u29` and `read`, which depends on them all.
fn fan_in(upstream: usize) -> String {
    let mut spec =
        String::from("name: fan\npipelines:\n  p:\n    selector: {pool: remote}\n    tasks:\n");
    for i in 0..upstream {
        spec.push_str(&format!("      u{i:02}:\n        steps: ['true']\n"));
    }
    let names: Vec<String> = (0..upstream).map(|i| format!("u{i:02}")).collect();
    spec.push_str(&format!(
        "      read:\n        depends_on: [{}]\n        steps: ['true']\n",
        names.join(", ")
    ));
    spec
}

/// Reports a whole attempt of `task` with `output`, at once.
fn done(task: &str, output: String) -> Vec<RunEvent> {
    vec![
        RunEvent::TaskStarted {
            task: task.into(),
            attempt: 1,
        },
        RunEvent::TaskFinished {
            task: task.into(),
            status: TaskStatus::Success,
            output: Some(output),
            duration_ms: 1,
            attempt: 1,
            error: None,
            retry_in_ms: None,
        },
    ]
}

#[tokio::test]
async fn outputs_past_the_inline_budget_come_in_bounded_pages() {
    const UPSTREAM: usize = 30;
    const OUTPUT: usize = 60_000;
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    let (status, body) = server.post("/api/v1/workflows", fan_in(UPSTREAM)).await;
    assert_eq!(status, 201, "{body}");
    let (_, credential) = join(&server, json!({ "pool": "remote" })).await;
    let (status, run) = server
        .post("/api/v1/workflows/fan/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let mut socket = connect(&server, &credential, &hello_with(64, vec![])).await;
    let mut upstream = Vec::new();
    for _ in 0..UPSTREAM {
        upstream.push(next_task(&mut socket).await);
    }
    // Each reports an output of its own letter, 60 KB long.
    for dispatch in &upstream {
        let letter = &dispatch.task[1..];
        let output = letter.repeat(OUTPUT / 2);
        send(
            &mut socket,
            &task_events(dispatch.attempt, 0, &done(&dispatch.task, output)),
        )
        .await;
    }
    let read: TaskDispatch = loop {
        match receive(&mut socket).await {
            Ok(ServerMessage::TaskDispatch(d)) => break *d,
            Ok(ServerMessage::TaskAck { .. }) => continue,
            other => panic!("expected acks and a dispatch, got {other:?}"),
        }
    };
    assert_eq!(read.task, "read");
    let inline: usize = read
        .outputs
        .values()
        .map(|r| r.output.as_ref().unwrap().len())
        .sum();
    assert!(read.more_outputs, "{} inline", read.outputs.len());
    assert!(
        inline <= xene_core::protocol::INLINE_OUTPUTS && !read.outputs.is_empty(),
        "{inline} bytes inline"
    );
    // The rest, page by page, each bounded, until the last says so.
    let mut all = read.outputs.clone();
    let mut after = all.keys().next_back().cloned();
    let mut pages = 0;
    loop {
        send(
            &mut socket,
            &AgentMessage::FetchOutputs {
                attempt: read.attempt,
                after: after.clone(),
            },
        )
        .await;
        let Ok(ServerMessage::Outputs {
            attempt,
            results,
            next,
        }) = receive(&mut socket).await
        else {
            panic!("no outputs page")
        };
        assert_eq!(attempt, read.attempt);
        pages += 1;
        let bytes: usize = results
            .values()
            .map(|r| r.output.as_ref().unwrap().len())
            .sum();
        assert!(
            bytes <= xene_core::protocol::OUTPUT_PAGE,
            "{bytes} bytes in a page"
        );
        assert!(
            results.keys().all(|k| Some(k) > after.as_ref()),
            "pages go forward"
        );
        all.extend(results);
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(pages >= 2, "{pages} pages");
    assert_eq!(all.len(), UPSTREAM);
    for (task, result) in &all {
        assert_eq!(
            result.output.as_deref(),
            Some(task[1..].repeat(OUTPUT / 2).as_str())
        );
    }
    server.stop().await;
}

const TWO_TASKS: &str = "\
name: pair
pipelines:
  p:
    selector: {pool: remote}
    tasks:
      left:
        steps: ['sleep 60']
      right:
        steps: ['sleep 60']
";

/// The attempt a socket was given, once it reported it started.
async fn take(socket: &mut Socket) -> (AttemptRef, String) {
    let dispatch = next_task(socket).await;
    let started = RunEvent::TaskStarted {
        task: dispatch.task.clone(),
        attempt: 1,
    };
    send(socket, &task_events(dispatch.attempt, 0, &[started])).await;
    assert_eq!(
        receive(socket).await,
        Ok(ServerMessage::TaskAck {
            attempt: dispatch.attempt,
            seq: 0
        })
    );
    (dispatch.attempt, dispatch.task)
}

#[tokio::test]
async fn a_cancel_reaches_every_agent_holding_a_task_and_strays_are_stopped() {
    for backend in crate::util::BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
        server.post("/api/v1/workflows", TWO_TASKS).await;
        let (_, one) = join(&server, json!({ "pool": "remote" })).await;
        let (_, two) = join(&server, json!({ "pool": "remote" })).await;
        // One slot each: the run's two tasks go to two agents.
        let mut first = connect(&server, &one, &hello_with(1, vec![])).await;
        let mut second = connect(&server, &two, &hello_with(1, vec![])).await;
        let (status, run) = server
            .post("/api/v1/workflows/pair/pipelines/p/runs", "")
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        let (a, a_task) = take(&mut first).await;
        let (b, b_task) = take(&mut second).await;
        assert_ne!(a_task, b_task);

        let (status, _) = server.post(&format!("/api/v1/runs/{id}/cancel"), "").await;
        assert_eq!(status, 202);
        assert_eq!(
            receive(&mut first).await,
            Ok(ServerMessage::CancelTask { attempt: a })
        );
        assert_eq!(
            receive(&mut second).await,
            Ok(ServerMessage::CancelTask { attempt: b })
        );
        for (socket, attempt, task) in [(&mut first, a, &a_task), (&mut second, b, &b_task)] {
            let cancelled = RunEvent::TaskFinished {
                task: task.clone(),
                status: TaskStatus::Cancelled,
                output: None,
                duration_ms: 1,
                attempt: 1,
                error: None,
                retry_in_ms: None,
            };
            send(socket, &task_events(attempt, 1, &[cancelled])).await;
            assert_eq!(
                receive(socket).await,
                Ok(ServerMessage::TaskAck { attempt, seq: 1 })
            );
        }
        let run = server.wait_for_run(id).await;
        assert_eq!(run["status"], "cancelled", "{run}");

        // An attempt the agent does not hold (another agent's, or none the
        // server knows) is stopped when the agent claims it.
        let unknown = AttemptRef { id: 1 << 40 };
        send(&mut first, &heartbeat(vec![a, b, unknown])).await;
        let mut stopped = Vec::new();
        while stopped.len() < 2 {
            match receive(&mut first).await {
                Ok(ServerMessage::Pong) => {}
                Ok(ServerMessage::StopTask { attempt }) => stopped.push(attempt),
                other => panic!("expected stops, got {other:?}"),
            }
        }
        stopped.sort();
        assert_eq!(
            stopped,
            [b, unknown],
            "its own finished attempt is not stopped"
        );
        server.stop().await;
    }
}

const CHAIN_AND_ONE: &str = "\
name: warm
pipelines:
  chain:
    selector: {pool: remote}
    tasks:
      a:
        steps: ['true']
      b:
        depends_on: [a]
        steps: ['true']
  one:
    selector: {pool: remote}
    tasks:
      busy:
        steps: ['true']
";

/// Between agents equally loaded, a task goes to the one that ran its
/// dependency (a chain stays on one machine), not to the first by id.
#[tokio::test]
async fn a_tie_goes_to_the_agent_that_ran_a_dependency() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    server.post("/api/v1/workflows", CHAIN_AND_ONE).await;
    let mut joined = [
        join(&server, json!({ "pool": "remote" })).await,
        join(&server, json!({ "pool": "remote" })).await,
    ];
    // Ties between idle agents go to the first by id: `low`.
    joined.sort();
    let mut low = connect(&server, &joined[0].1, &hello_with(2, vec![])).await;
    let mut high = connect(&server, &joined[1].1, &hello_with(2, vec![])).await;

    server
        .post("/api/v1/workflows/warm/pipelines/one/runs", "")
        .await;
    let busy = next_task(&mut low).await;
    // `low` holds one: `a` goes to the idle `high`.
    server
        .post("/api/v1/workflows/warm/pipelines/chain/runs", "")
        .await;
    let a = next_task(&mut high).await;
    assert_eq!(a.task, "a");
    // Both idle again when `b` is ready: it follows `a`.
    send(
        &mut low,
        &task_events(busy.attempt, 0, &done("busy", String::new())),
    )
    .await;
    assert!(matches!(
        receive(&mut low).await,
        Ok(ServerMessage::TaskAck { .. })
    ));
    send(
        &mut high,
        &task_events(a.attempt, 0, &done("a", String::new())),
    )
    .await;
    assert!(matches!(
        receive(&mut high).await,
        Ok(ServerMessage::TaskAck { .. })
    ));
    let b = next_task(&mut high).await;
    assert_eq!((b.task.as_str(), b.run_id), ("b", a.run_id));
    server.stop().await;
}

const ONE_AT_A_TIME: &str = "\
name: narrow
pipelines:
  p:
    selector: {pool: remote}
    concurrency: 1
    tasks:
      x:
        steps: ['true']
      y:
        steps: ['true']
";

/// A pipeline's `concurrency` bounds its run's tasks across all agents,
/// whatever room they have.
#[tokio::test]
async fn concurrency_bounds_a_runs_tasks_across_agents() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    server.post("/api/v1/workflows", ONE_AT_A_TIME).await;
    let agents = [
        join(&server, json!({ "pool": "remote" })).await,
        join(&server, json!({ "pool": "remote" })).await,
    ];
    let mut sockets = [
        connect(&server, &agents[0].1, &hello_with(4, vec![])).await,
        connect(&server, &agents[1].1, &hello_with(4, vec![])).await,
    ];
    let (_, run) = server
        .post("/api/v1/workflows/narrow/pipelines/p/runs", "")
        .await;
    let id = run["id"].as_i64().unwrap();
    let says_why = |t: &serde_json::Value| {
        t["attempts"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("(concurrency 1)"))
    };
    let waiting = server
        .wait_run_until(id, |run| {
            run["tasks"].as_array().unwrap().iter().any(says_why)
        })
        .await;
    let placed: Vec<&serde_json::Value> = waiting["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "running")
        .collect();
    assert_eq!(placed.len(), 1, "one task at a time: {waiting}");
    // It ends where it went; then the other goes.
    let holder = agents
        .iter()
        .position(|(agent, _)| placed[0]["agent_id"] == agent.as_str())
        .unwrap();
    let first = next_task(&mut sockets[holder]).await;
    send(
        &mut sockets[holder],
        &task_events(first.attempt, 0, &done(&first.task, String::new())),
    )
    .await;
    let other = if first.task == "x" { "y" } else { "x" };
    let run = server
        .wait_run_until(id, |run| {
            run["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == other && t["status"] == "running")
        })
        .await;
    let tasks = run["tasks"].as_array().unwrap();
    let done_first = tasks.iter().find(|t| t["name"] == first.task).unwrap();
    assert_eq!(done_first["status"], "success", "{run}");
    server.stop().await;
}

const HALF_PLACED: &str = "\
name: half
pipelines:
  p:
    selector: {pool: remote}
    tasks:
      held:
        steps: ['sleep 60']
      stranded:
        selector: {gpu: \"yes\"}
        steps: ['true']
";

/// A cancelled run waiting for its held task to stop no longer says why
/// a task of it waits for an agent: nothing of it does.
#[tokio::test]
async fn a_cancelled_run_keeps_no_waiting_reason() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    let (status, body) = server.post("/api/v1/workflows", HALF_PLACED).await;
    assert_eq!(status, 201, "{body}");
    let (_, credential) = join(&server, json!({ "pool": "remote" })).await;
    let mut socket = connect(&server, &credential, &hello_with(2, vec![])).await;
    let (status, run) = server
        .post("/api/v1/workflows/half/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    let attempt = next_task(&mut socket).await.attempt;
    let run = server
        .wait_run_until(id, |run| !run["scheduler_reason"].is_null())
        .await;
    assert!(
        run["scheduler_reason"].as_str().unwrap().contains("gpu"),
        "{run}"
    );
    let (status, _) = server.post(&format!("/api/v1/runs/{id}/cancel"), "").await;
    assert_eq!(status, 202);
    assert_eq!(
        receive(&mut socket).await,
        Ok(ServerMessage::CancelTask { attempt })
    );
    let (_, run) = server.get(&format!("/api/v1/runs/{id}")).await;
    assert!(run["scheduler_reason"].is_null(), "{run}");
    server.stop().await;
}
