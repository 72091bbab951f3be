//! The session over channels instead of a WebSocket, with real shell task
//! attempts: the test plays the server.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{SinkExt, StreamExt};
use xene_core::context::TaskResult;
use xene_core::event::RunEvent;
use xene_core::protocol::{AttemptRef, FilesAnswer, FilesRequest, TaskDispatch};
use xene_core::status::{StepStatus, TaskStatus};

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
                AgentMessage::TaskEvents {
                    attempt,
                    first_seq,
                    events: batch,
                } => {
                    for (i, event) in batch.into_iter().enumerate() {
                        // As a server does, it stores the start and says
                        // so: only then does the attempt run its steps.
                        if first_seq + i as u64 == 0
                            && matches!(event, RunEvent::TaskStarted { .. })
                        {
                            self.send(ServerMessage::TaskAck { attempt, seq: 0 });
                        }
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

fn runs(dir: &tempfile::TempDir) -> Attempts {
    let executor = Executor::new(ExecutorConfig {
        shell: ShellConfig {
            root: dir.path().to_path_buf(),
            inherit_env: false,
            sandbox: None,
        },
        ..ExecutorConfig::default()
    });
    Attempts::new(Arc::new(executor), 1)
}

const RUN: AttemptRef = AttemptRef { id: 7 };

/// Task `build` (depending on `setup`, whose output it prints) of run 70,
/// attempt number 1.
fn task_dispatch(attempt: AttemptRef, script: &str) -> TaskDispatch {
    let yaml = format!(
        "name: wf\npipelines:\n  main:\n    tasks:\n      setup:\n        steps: [\"true\"]\n      build:\n        depends_on: [setup]\n        steps:\n          - name: go\n            run: {script:?}\n"
    );
    let workflow = xene_core::parse_workflow(&yaml).expect("a valid workflow");
    TaskDispatch {
        cache_save: Default::default(),
        attempt,
        run_id: 70,
        task: "build".into(),
        number: 1,
        workflow: "wf".into(),
        pipeline_name: "main".into(),
        spec: workflow.pipelines["main"].tasks["build"].clone(),
        pipeline_env: BTreeMap::new(),
        params: BTreeMap::new(),
        secrets: BTreeMap::new(),
        outputs: BTreeMap::new(),
        more_outputs: false,
        traceparent: None,
    }
}

fn dispatch(attempt: AttemptRef, script: &str) -> ServerMessage {
    ServerMessage::TaskDispatch(Box::new(task_dispatch(attempt, script)))
}

fn is_run_finished(event: &RunEvent) -> bool {
    matches!(event, RunEvent::TaskFinished { .. })
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
            attempts,
            ..
        } = server.recv().await
        else {
            panic!("hello first");
        };
        assert_eq!(protocol, PROTOCOL_VERSION);
        assert_eq!(protocol, 4);
        assert_eq!(labels["os"], "linux");
        assert_eq!(runtimes, ["docker", "shell"]);
        assert_eq!(capacity, 1);
        assert!(attempts.is_empty());

        server.welcome();
        server.send(dispatch(RUN, "echo one; echo two"));
        // A repeated dispatch (as after a reconnect) does not start it again.
        server.send(dispatch(RUN, "echo one; echo two"));
        let events = server.events_until(is_run_finished).await;
        let numbers: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
        assert!(matches!(
            events[0].1,
            RunEvent::TaskStarted { attempt: 1, .. }
        ));
        assert_eq!(logs(&events), ["one", "two"]);
        assert!(matches!(
            events.last().unwrap().1,
            RunEvent::TaskFinished {
                status: TaskStatus::Success,
                attempt: 1,
                retry_in_ms: None,
                ..
            }
        ));
        assert!(
            !events.iter().any(|(_, e)| matches!(
                e,
                RunEvent::RunStarted { .. } | RunEvent::RunFinished { .. }
            )),
            "an attempt reports its task only"
        );
        server.send(ServerMessage::TaskAck {
            attempt: RUN,
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
async fn files_requests_go_on_the_socket_and_are_asked_again_after_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let fetch = FilesRequest::Fetch {
        name: "binary".into(),
    };
    let asker = tokio::spawn({
        let hub = runs.files();
        let fetch = fetch.clone();
        async move { hub.ask(RUN, fetch).await }
    });

    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server.welcome();
        let AgentMessage::Files {
            attempt,
            id,
            request,
        } = server.recv().await
        else {
            panic!("the request about files");
        };
        assert_eq!((attempt, &request), (RUN, &fetch));
        // Dropped before the answer.
        server.hang_up();
        id
    };
    let (end, id) = tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert!(matches!(end, SessionEnd::Lost { welcomed: true, .. }));

    let (mut server, sink, stream) = connection();
    let answer = FilesAnswer::Downloads {
        files: vec![],
        downloads: vec![],
    };
    let script = async {
        server.recv().await;
        server.welcome();
        let AgentMessage::Files {
            id: again, request, ..
        } = server.recv().await
        else {
            panic!("the request about files, again");
        };
        assert_eq!((again, &request), (id, &fetch));
        server.send(ServerMessage::Files {
            attempt: RUN,
            id,
            answer: answer.clone(),
        });
        assert_eq!(asker.await.unwrap(), Ok(answer.clone()));
        server.hang_up();
    };
    tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert!(server.leftovers().is_empty());
    assert_eq!(runs.files().open(), 0);
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
        server.send(ServerMessage::TaskAck {
            attempt: RUN,
            seq: 1,
        });
        server.hang_up();
        events
    };
    let (end, first) = tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert!(matches!(end, SessionEnd::Lost { welcomed: true, .. }));
    assert_eq!(runs.held(), [RUN], "events are still unacknowledged");

    let (mut server, sink, stream) = connection();
    let script = async {
        let AgentMessage::Hello { attempts, .. } = server.recv().await else {
            panic!("hello first");
        };
        assert_eq!(attempts, [RUN]);
        server.welcome();
        let again = server.events_until(is_run_finished).await;
        assert_eq!(again, first[2..], "the same events with the same numbers");
        server.send(ServerMessage::TaskAck {
            attempt: RUN,
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
        server.send(ServerMessage::CancelTask { attempt: RUN });
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
            RunEvent::TaskFinished {
                status: TaskStatus::Cancelled,
                ..
            }
        ));
        server.send(ServerMessage::TaskAck {
            attempt: RUN,
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
        server.send(ServerMessage::StopTask { attempt: RUN });
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
            .any(|m| matches!(m, AgentMessage::TaskEvents { .. })),
        "nothing is sent for a stopped attempt"
    );

    let (mut server, sink, stream) = connection();
    let script = async {
        let AgentMessage::Hello { attempts, .. } = server.recv().await else {
            panic!("hello first");
        };
        assert!(attempts.is_empty());
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
    let other = AttemptRef { id: 8 };
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

/// A shutdown stops the attempts as `StopTask` does: the server's lease
/// rules, not a `cancelled` end, decide what becomes of them. Events
/// already produced still go out and are waited for.
#[tokio::test]
async fn shutdown_stops_attempts_without_reporting_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server.welcome();
        server.send(dispatch(RUN, "echo before; sleep 600"));
        let mut events = server
            .events_until(|e| matches!(e, RunEvent::Log { .. } | RunEvent::Logs { .. }))
            .await;
        shutdown.cancel();
        // Every batch is acknowledged, as a server does, until the session
        // ends by itself (the connection still up).
        while let Some(message) = server.from_agent.next().await {
            if let AgentMessage::TaskEvents {
                attempt,
                first_seq,
                events: batch,
            } = message
            {
                let last = first_seq + batch.len() as u64 - 1;
                events.extend((first_seq..).zip(batch));
                server.send(ServerMessage::TaskAck { attempt, seq: last });
            }
        }
        (server, events)
    };
    let (end, (_server, events)) =
        tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert_eq!(end, SessionEnd::Shutdown);
    assert_eq!(logs(&events), ["before"]);
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e, RunEvent::TaskFinished { .. })),
        "{events:?}"
    );
    runs.finish_all().await;
    assert!(runs.is_empty(), "the step was killed");
}

#[tokio::test]
async fn outputs_beyond_the_dispatch_are_fetched_in_pages_before_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server.welcome();
        let mut dispatch = task_dispatch(RUN, "echo got {{ tasks.setup.output }}");
        dispatch.more_outputs = true;
        server.send(ServerMessage::TaskDispatch(Box::new(dispatch)));
        let AgentMessage::FetchOutputs { attempt, after } = server.recv().await else {
            panic!("the agent asks for the outputs first");
        };
        assert_eq!((attempt, after), (RUN, None));
        // An empty page that says more come, then the last page.
        server.send(ServerMessage::Outputs {
            attempt: RUN,
            results: BTreeMap::new(),
            next: Some("a".into()),
        });
        let AgentMessage::FetchOutputs { after, .. } = server.recv().await else {
            panic!("the next page is asked for");
        };
        assert_eq!(after.as_deref(), Some("a"));
        server.send(ServerMessage::Outputs {
            attempt: RUN,
            results: [(
                "setup".to_string(),
                TaskResult {
                    caches: Default::default(),
                    status: TaskStatus::Success,
                    output: Some("v9".into()),
                },
            )]
            .into(),
            next: None,
        });
        let events = server.events_until(is_run_finished).await;
        assert_eq!(logs(&events), ["got v9"]);
        server.send(ServerMessage::TaskAck {
            attempt: RUN,
            seq: events.last().unwrap().0,
        });
        server.hang_up();
    };
    tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    runs.finish_all().await;
    assert!(runs.is_empty());
}

#[tokio::test]
async fn heartbeats_name_the_attempts_held() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let (mut server, sink, stream) = connection();
    let script = async {
        server.recv().await;
        server.send(ServerMessage::Welcome {
            agent_id: "agent-1".into(),
            heartbeat_ms: 100,
        });
        server.send(dispatch(RUN, "sleep 600"));
        loop {
            match server.recv().await {
                AgentMessage::Heartbeat { attempts } if attempts == [RUN] => break,
                AgentMessage::Heartbeat { .. } | AgentMessage::TaskEvents { .. } => {
                    server.send(ServerMessage::Pong);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        server.hang_up();
    };
    tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    runs.cancel_all();
    runs.finish_all().await;
}

#[tokio::test]
async fn a_server_of_another_protocol_ends_the_session_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = runs(&dir);
    let shutdown = CancellationToken::new();
    let config = config();
    let (mut server, sink, stream) = connection();
    let reason = "this server speaks agent protocol 3; this agent speaks 2";
    let script = async {
        server.recv().await;
        server
            .to_agent
            .as_ref()
            .unwrap()
            .unbounded_send(Err(LinkError::Unsupported(reason.into())))
            .unwrap();
    };
    let (end, ()) = tokio::join!(run(&config, &mut runs, sink, stream, &shutdown), script);
    assert_eq!(end, SessionEnd::Unsupported(reason.into()));
}
