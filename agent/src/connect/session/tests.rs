//! The session over channels instead of a WebSocket, with real shell runs:
//! the test plays the server.

use std::sync::Arc;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{SinkExt, StreamExt};
use xene_core::event::RunEvent;
use xene_core::protocol::{Dispatch, RunRef};
use xene_core::status::{RunStatus, StepStatus};

use super::*;
use crate::runtime::shell::ShellConfig;
use crate::{Executor, ExecutorConfig};

/// The test's end of one connection.
struct Server {
    to_agent: Option<UnboundedSender<Result<ServerMessage, LinkError>>>,
    from_agent: UnboundedReceiver<AgentMessage>,
}

type AgentSink = Box<dyn Sink<AgentMessage, Error = LinkError> + Unpin>;
type AgentStream = UnboundedReceiver<Result<ServerMessage, LinkError>>;

fn connection() -> (Server, AgentSink, AgentStream) {
    let (to_agent, agent_stream) = unbounded();
    let (agent_sink, from_agent) = unbounded();
    let sink = agent_sink.sink_map_err(|e| LinkError::Lost(e.to_string()));
    (
        Server {
            to_agent: Some(to_agent),
            from_agent,
        },
        Box::new(sink),
        agent_stream,
    )
}

impl Server {
    fn send(&self, message: ServerMessage) {
        self.to_agent
            .as_ref()
            .expect("connected")
            .unbounded_send(Ok(message))
            .expect("the session listens");
    }

    fn welcome(&self) {
        self.send(ServerMessage::Welcome {
            agent_id: "agent-1".into(),
            heartbeat_ms: 60_000,
        });
    }

    /// Ends the connection from the server's side.
    fn hang_up(&mut self) {
        self.to_agent = None;
    }

    async fn recv(&mut self) -> AgentMessage {
        self.from_agent.next().await.expect("the session sends")
    }

    /// Events sent (with their numbers), heartbeats skipped, up to and
    /// including the first that `last` accepts.
    async fn events_until(&mut self, last: impl Fn(&RunEvent) -> bool) -> Vec<(u64, RunEvent)> {
        let mut events = Vec::new();
        loop {
            match self.recv().await {
                AgentMessage::Events {
                    first_seq,
                    events: batch,
                    ..
                } => {
                    for (i, event) in batch.into_iter().enumerate() {
                        let done = last(&event);
                        events.push((first_seq + i as u64, event));
                        if done {
                            return events;
                        }
                    }
                }
                AgentMessage::Heartbeat { .. } => {}
                AgentMessage::Hello { .. } => panic!("hello in the middle of a session"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// What the agent sent that is still unread.
    fn leftovers(&mut self) -> Vec<AgentMessage> {
        std::iter::from_fn(|| self.from_agent.try_recv().ok()).collect()
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        labels: [("os".to_string(), "linux".to_string())].into(),
        runtimes: vec!["docker".into(), "shell".into()],
        capacity: 1,
        welcome_timeout: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(600),
    }
}

fn runs(dir: &tempfile::TempDir) -> Runs {
    let executor = Executor::new(ExecutorConfig {
        shell: ShellConfig {
            root: dir.path().to_path_buf(),
            inherit_env: false,
            sandbox: None,
        },
        ..ExecutorConfig::default()
    });
    Runs::new(Arc::new(executor), 1)
}

const RUN: RunRef = RunRef {
    run_id: 7,
    attempt: 1,
};

fn dispatch(run: RunRef, script: &str) -> ServerMessage {
    let yaml = format!(
        "name: wf\npipelines:\n  main:\n    tasks:\n      build:\n        steps:\n          - name: go\n            run: {script:?}\n"
    );
    let mut workflow = xene_core::parse_workflow(&yaml).expect("a valid workflow");
    ServerMessage::Dispatch(Box::new(Dispatch {
        run,
        workflow: "wf".into(),
        pipeline_name: "main".into(),
        pipeline: workflow.pipelines.remove("main").unwrap(),
        params: Default::default(),
        secrets: Default::default(),
        completed: Default::default(),
        traceparent: None,
    }))
}

fn is_run_finished(event: &RunEvent) -> bool {
    matches!(event, RunEvent::RunFinished { .. })
}

fn is_step_started(event: &RunEvent) -> bool {
    matches!(event, RunEvent::StepStarted { .. })
}

/// Every line of output, whether it came alone or with others.
fn logs(events: &[(u64, RunEvent)]) -> Vec<&str> {
    events
        .iter()
        .flat_map(|(_, e)| match e {
            RunEvent::Log { data, .. } => vec![data.as_str()],
            RunEvent::Logs { data, .. } => data.lines().collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[tokio::test]
async fn hello_then_numbered_events_and_acks_forget_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let (mut server, sink, stream) = connection();
    let script = async {
        let AgentMessage::Hello {
            protocol,
            labels,
            runtimes,
            capacity,
            running,
            ..
        } = server.recv().await
        else {
            panic!("hello first");
        };
        assert_eq!(protocol, PROTOCOL_VERSION);
        assert_eq!(labels["os"], "linux");
        assert_eq!(runtimes, ["docker", "shell"]);
        assert_eq!(capacity, 1);
        assert!(running.is_empty());

        server.welcome();
        server.send(dispatch(RUN, "echo one; echo two"));
        // A repeated dispatch (as after a reconnect) does not start it again.
        server.send(dispatch(RUN, "echo one; echo two"));
        let events = server.events_until(is_run_finished).await;
        let numbers: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
        assert!(matches!(events[0].1, RunEvent::RunStarted { .. }));
        assert_eq!(logs(&events), ["one", "two"]);
        assert!(matches!(
            events.last().unwrap().1,
            RunEvent::RunFinished {
                status: RunStatus::Success,
                ..
            }
        ));
        server.send(ServerMessage::Ack {
            run: RUN,
            seq: events.len() as u64 - 1,
        });
        server.hang_up();
    };
    let (end, ()) = tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert_eq!(
        end,
        SessionEnd::Lost {
            welcomed: true,
            reason: "the server closed the connection".into()
        }
    );
    assert!(server.leftovers().is_empty());
    runs.finish_all().await;
    assert!(runs.is_empty(), "finished and acknowledged: forgotten");
}

#[tokio::test]
async fn unacknowledged_events_are_sent_again_after_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();

    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server.welcome();
        server.send(dispatch(RUN, "echo one; echo two; echo three"));
        let events = server.events_until(is_run_finished).await;
        // Only the first two are stored before the connection drops.
        server.send(ServerMessage::Ack { run: RUN, seq: 1 });
        server.hang_up();
        events
    };
    let (end, first) = tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert!(matches!(end, SessionEnd::Lost { welcomed: true, .. }));
    assert_eq!(runs.held(), [RUN], "events are still unacknowledged");

    let (mut server, sink, stream) = connection();
    let script = async {
        let AgentMessage::Hello { running, .. } = server.recv().await else {
            panic!("hello first");
        };
        assert_eq!(running, [RUN]);
        server.welcome();
        let again = server.events_until(is_run_finished).await;
        assert_eq!(again, first[2..], "the same events with the same numbers");
        server.send(ServerMessage::Ack {
            run: RUN,
            seq: again.last().unwrap().0,
        });
        server.hang_up();
    };
    tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    runs.finish_all().await;
    assert!(runs.is_empty());
}

#[tokio::test]
async fn cancel_kills_the_running_step_and_reports_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server.welcome();
        server.send(dispatch(RUN, "echo waiting; sleep 600"));
        let mut events = server
            .events_until(|e| matches!(e, RunEvent::Log { .. } | RunEvent::Logs { .. }))
            .await;
        server.send(ServerMessage::Cancel { run: RUN });
        events.extend(server.events_until(is_run_finished).await);
        let step = events
            .iter()
            .find_map(|(_, e)| match e {
                RunEvent::StepFinished { status, .. } => Some(*status),
                _ => None,
            })
            .expect("the step finished");
        assert_eq!(step, StepStatus::Cancelled);
        assert!(matches!(
            events.last().unwrap().1,
            RunEvent::RunFinished {
                status: RunStatus::Cancelled,
                ..
            }
        ));
        server.send(ServerMessage::Ack {
            run: RUN,
            seq: events.last().unwrap().0,
        });
        server.hang_up();
    };
    tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    runs.finish_all().await;
    assert!(runs.is_empty());
}

#[tokio::test]
async fn stop_kills_the_run_and_drops_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server.welcome();
        server.send(dispatch(RUN, "sleep 600"));
        server.events_until(is_step_started).await;
        server.send(ServerMessage::Stop { run: RUN });
        server.hang_up();
    };
    tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    // Ends only because the step was killed.
    runs.finish_all().await;
    assert!(runs.is_empty(), "a stopped run is forgotten once it ended");
    assert!(
        !server
            .leftovers()
            .iter()
            .any(|m| matches!(m, AgentMessage::Events { .. })),
        "nothing is sent for a stopped run"
    );

    let (mut server, sink, stream) = connection();
    let script = async {
        let AgentMessage::Hello { running, .. } = server.recv().await else {
            panic!("hello first");
        };
        assert!(running.is_empty());
        server.welcome();
        server.hang_up();
    };
    tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert!(server.leftovers().is_empty());
}

#[tokio::test]
async fn dispatches_beyond_capacity_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let other = RunRef {
        run_id: 8,
        attempt: 1,
    };
    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server.welcome();
        server.send(dispatch(RUN, "sleep 600"));
        server.events_until(is_step_started).await;
        server.send(dispatch(other, "echo no"));
        server.hang_up();
    };
    tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert_eq!(runs.held(), [RUN]);
    runs.cancel_all();
    runs.finish_all().await;
}

#[tokio::test]
async fn a_revoking_close_ends_the_session_as_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server
            .to_agent
            .as_ref()
            .unwrap()
            .unbounded_send(Err(LinkError::Revoked))
            .unwrap();
    };
    let (end, ()) = tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert_eq!(end, SessionEnd::Revoked);
}

#[tokio::test]
async fn shutdown_cancels_runs_and_waits_for_their_last_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server.welcome();
        server.send(dispatch(RUN, "sleep 600"));
        server.events_until(is_step_started).await;
        shutdown.cancel();
        let events = server.events_until(is_run_finished).await;
        server.send(ServerMessage::Ack {
            run: RUN,
            seq: events.last().unwrap().0,
        });
        // The session ends by itself, with the connection still up.
        server
    };
    let (end, _server) = tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert_eq!(end, SessionEnd::Shutdown);
}
