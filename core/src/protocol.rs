//! The agent <-> server protocol: JSON messages over one WebSocket that the
//! agent dials. These are wire types: add fields with `#[serde(default)]`,
//! never rename or remove one, and bump `PROTOCOL_VERSION` for anything else.
//!
//! The exchange (protocol 2): the agent says `Hello` (who it is, what it
//! runs, which task attempts it still holds from before a reconnect); the
//! server answers `Welcome`, then sends `TaskDispatch`es, one task attempt
//! each. The agent reports each attempt's events in numbered `TaskEvents`
//! batches; the server applies them idempotently and answers `TaskAck`, and
//! the agent keeps what is not acknowledged to send again after a reconnect.
//! `Heartbeat`s renew the leases of the attempts it holds.
//!
//! Protocol 1 placed whole runs; its messages are gone. A protocol 1
//! agent's `Hello` still decodes (its `running` list is ignored), so the
//! server reads its version and refuses it with a reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::context::TaskResult;
use crate::event::RunEvent;
use crate::spec::Task;

/// The protocol version this build speaks; `Hello` carries it.
pub const PROTOCOL_VERSION: u32 = 2;

/// WebSocket close code: the agent speaks a protocol version the server does not.
pub const CLOSE_UNSUPPORTED_PROTOCOL: u16 = 4000;
/// WebSocket close code: the agent's credential is revoked; it must not reconnect.
pub const CLOSE_REVOKED: u16 = 4001;
/// WebSocket close code: a newer connection of the same agent replaced this one.
pub const CLOSE_REPLACED: u16 = 4002;

/// The most bytes of upstream outputs a `TaskDispatch` carries inline; the
/// rest the agent fetches with `FetchOutputs`.
pub const INLINE_OUTPUTS: usize = 256 * 1024;
/// The most bytes of outputs one `Outputs` page carries (whole results only,
/// so a page may hold one result past it when a single result is larger).
pub const OUTPUT_PAGE: usize = 1024 * 1024;

/// Identifies one task attempt (protocol 2): what is dispatched, leased and
/// numbered. The id is the server's, unique across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttemptRef {
    /// The attempt's id on the server.
    pub id: i64,
}

/// What an agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The first message on every connection.
    Hello {
        /// `PROTOCOL_VERSION` of the agent.
        protocol: u32,
        /// The agent's version, for people.
        agent_version: String,
        /// The labels run selectors match.
        labels: BTreeMap<String, String>,
        /// `docker`, `shell`.
        runtimes: Vec<String>,
        /// Most task attempts at once.
        capacity: u32,
        /// Task attempts it is executing (or has unacknowledged events of)
        /// from before this connection.
        #[serde(default)]
        attempts: Vec<AttemptRef>,
    },
    /// The agent is alive and holds these task attempts.
    Heartbeat {
        /// The task attempts it holds.
        #[serde(default)]
        attempts: Vec<AttemptRef>,
    },
    /// Events `first_seq`, `first_seq + 1`, ... of one task attempt.
    TaskEvents {
        /// The task attempt they belong to.
        attempt: AttemptRef,
        /// The number of the first event (an attempt's events count from 0).
        first_seq: u64,
        /// The events, in order, all of the attempt's task.
        events: Vec<RunEvent>,
    },
    /// The dispatch said `more_outputs`: the next page of the outputs the
    /// attempt reads, by task name after `after`.
    FetchOutputs {
        /// The task attempt that reads them.
        attempt: AttemptRef,
        /// The last task name already received; `None` for the first page.
        after: Option<String>,
    },
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `Hello`.
    Welcome {
        /// The agent's id on the server.
        agent_id: String,
        /// How often to send a heartbeat.
        heartbeat_ms: u64,
    },
    /// Answers each heartbeat, so an agent can tell a live connection from
    /// one the network silently dropped (which TCP may take minutes to see).
    Pong,
    /// A task attempt to execute.
    TaskDispatch(Box<TaskDispatch>),
    /// Every event of `attempt` up to and including `seq` is stored.
    TaskAck {
        /// The task attempt.
        attempt: AttemptRef,
        /// The number of the last event stored.
        seq: u64,
    },
    /// The user cancelled the run: stop the attempt, run no `post` steps, and
    /// report it cancelled.
    CancelTask {
        /// The task attempt to cancel.
        attempt: AttemptRef,
    },
    /// The attempt is not this agent's any more (its lease ended, or it is
    /// gone): stop it and report nothing more.
    StopTask {
        /// The task attempt to stop.
        attempt: AttemptRef,
    },
    /// A page of the outputs an attempt reads, answering `FetchOutputs`.
    Outputs {
        /// The task attempt that reads them.
        attempt: AttemptRef,
        /// Results by task name, after the page's `after`, in name order.
        results: BTreeMap<String, TaskResult>,
        /// Where the next page starts (the last name in `results`); `None`
        /// when this is the last page.
        next: Option<String>,
    },
}

/// One task attempt for the agent to execute (protocol 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDispatch {
    /// The task attempt: events, leases and acknowledgements name it.
    pub attempt: AttemptRef,
    /// The run's id on the server, for people, spans and `XENE_*` variables.
    pub run_id: i64,
    /// The task's name in its pipeline.
    pub task: String,
    /// The attempt's number for this task, from 1 (`XENE_ATTEMPT`).
    pub number: u32,
    /// The workflow's name.
    pub workflow: String,
    /// The pipeline's name.
    pub pipeline_name: String,
    /// This task's spec, as of the run's workflow version.
    pub spec: Task,
    /// The pipeline's `env`, not rendered yet (the agent renders it).
    #[serde(default)]
    pub pipeline_env: BTreeMap<String, String>,
    /// Values of the pipeline's params, resolved.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Only the secrets this task names.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretValue>,
    /// Results of the upstream tasks it reads, in name order, up to
    /// `INLINE_OUTPUTS` bytes.
    #[serde(default)]
    pub outputs: BTreeMap<String, TaskResult>,
    /// The rest of the outputs come by `FetchOutputs`, after the last name in
    /// `outputs`.
    #[serde(default)]
    pub more_outputs: bool,
    /// The W3C `traceparent` of the server's span for this dispatch, when
    /// the server exports traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A secret's value on its way to the steps that use it. It serializes as
/// the plain string (the link is what protects it), but never shows in a
/// `Debug` print, so a dispatch that ends up in a log line or an error
/// message does not carry the value with it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: call this only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_2_messages_are_tagged_and_round_trip() {
        let attempt = AttemptRef { id: 42 };
        let agent = [
            AgentMessage::Hello {
                protocol: PROTOCOL_VERSION,
                agent_version: "0.2.0".into(),
                labels: BTreeMap::new(),
                runtimes: vec!["shell".into()],
                capacity: 8,
                attempts: vec![attempt],
            },
            AgentMessage::Heartbeat {
                attempts: vec![attempt, AttemptRef { id: 43 }],
            },
            AgentMessage::TaskEvents {
                attempt,
                first_seq: 3,
                events: vec![RunEvent::TaskStarted {
                    task: "build".into(),
                    attempt: 2,
                }],
            },
            AgentMessage::FetchOutputs {
                attempt,
                after: Some("a".into()),
            },
        ];
        let tags = ["hello", "heartbeat", "task_events", "fetch_outputs"];
        for (message, tag) in agent.into_iter().zip(tags) {
            let json = serde_json::to_string(&message).unwrap();
            assert!(json.starts_with(&format!(r#"{{"type":"{tag}""#)), "{json}");
            assert_eq!(
                serde_json::from_str::<AgentMessage>(&json).unwrap(),
                message
            );
        }

        let spec: Task =
            serde_json::from_str(r#"{"steps":[{"name":"s","run":"echo hi"}]}"#).unwrap();
        let result = TaskResult {
            status: crate::status::TaskStatus::Success,
            output: Some("o".into()),
        };
        let server = [
            ServerMessage::TaskDispatch(Box::new(TaskDispatch {
                attempt,
                run_id: 7,
                task: "build".into(),
                number: 2,
                workflow: "w".into(),
                pipeline_name: "p".into(),
                spec,
                pipeline_env: [("A".to_string(), "1".to_string())].into(),
                params: [("v".to_string(), "2".to_string())].into(),
                secrets: [("TOKEN".to_string(), SecretValue::new("x"))].into(),
                outputs: [("a".to_string(), result.clone())].into(),
                more_outputs: true,
                traceparent: None,
            })),
            ServerMessage::TaskAck { attempt, seq: 9 },
            ServerMessage::CancelTask { attempt },
            ServerMessage::StopTask { attempt },
            ServerMessage::Outputs {
                attempt,
                results: [("b".to_string(), result)].into(),
                next: None,
            },
        ];
        let tags = [
            "task_dispatch",
            "task_ack",
            "cancel_task",
            "stop_task",
            "outputs",
        ];
        for (message, tag) in server.into_iter().zip(tags) {
            let json = serde_json::to_string(&message).unwrap();
            assert!(json.starts_with(&format!(r#"{{"type":"{tag}""#)), "{json}");
            assert_eq!(
                serde_json::from_str::<ServerMessage>(&json).unwrap(),
                message
            );
        }
        assert_eq!(
            serde_json::to_string(&ServerMessage::TaskAck { attempt, seq: 9 }).unwrap(),
            r#"{"type":"task_ack","attempt":{"id":42},"seq":9}"#
        );
    }

    #[test]
    fn a_protocol_1_hello_decodes_so_its_version_can_be_refused() {
        // Word for word what a protocol 1 agent sends: the runs it holds,
        // no attempts.
        let hello: AgentMessage = serde_json::from_str(
            r#"{"type":"hello","protocol":1,"agent_version":"0.1.0","labels":{},"runtimes":["shell"],"capacity":2,"running":[{"run_id":7,"attempt":1}]}"#,
        )
        .unwrap();
        let AgentMessage::Hello {
            protocol, attempts, ..
        } = hello
        else {
            panic!("not a hello: {hello:?}");
        };
        assert_eq!((protocol, attempts), (1, vec![]));
        // Its other messages are not protocol 2's.
        let events =
            r#"{"type":"events","run":{"run_id":7,"attempt":1},"first_seq":0,"events":[]}"#;
        assert!(serde_json::from_str::<AgentMessage>(events).is_err());
        for frame in [
            r#"{"type":"ack","run":{"run_id":7,"attempt":1},"seq":41}"#,
            r#"{"type":"cancel","run":{"run_id":7,"attempt":1}}"#,
            r#"{"type":"stop","run":{"run_id":7,"attempt":1}}"#,
        ] {
            assert!(
                serde_json::from_str::<ServerMessage>(frame).is_err(),
                "{frame}"
            );
        }
    }

    #[test]
    fn every_fuzz_seed_decodes() {
        // The fuzz target starts from these: a seed that no longer decodes
        // would only exercise the error path.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/protocol");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let agent = serde_json::from_slice::<AgentMessage>(&bytes).is_ok();
            let server = serde_json::from_slice::<ServerMessage>(&bytes).is_ok();
            assert!(agent || server, "{} decodes as neither", path.display());
            seen += 1;
        }
        assert!(seen >= 13, "only {seen} seeds in {}", dir.display());
    }

    #[test]
    fn unknown_message_types_are_errors() {
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"reboot"}"#).is_err());
        assert!(
            serde_json::from_str::<ServerMessage>(r#"{"type":"ack","run":{"run_id":1}}"#).is_err()
        );
    }

    #[test]
    fn secret_values_travel_as_strings_and_never_print() {
        let value = SecretValue::new("hunter22");
        assert_eq!(serde_json::to_string(&value).unwrap(), "\"hunter22\"");
        let back: SecretValue = serde_json::from_str("\"hunter22\"").unwrap();
        assert_eq!(back.expose(), "hunter22");
        let printed = format!("{:?}", BTreeMap::from([("TOKEN", value)]));
        assert!(!printed.contains("hunter22"), "{printed}");
    }
}
