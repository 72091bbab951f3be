//! The agent <-> server protocol: JSON messages over one WebSocket that the
//! agent dials. These are wire types: add fields with `#[serde(default)]`,
//! never rename or remove one, and bump `PROTOCOL_VERSION` for anything else.
//!
//! The exchange: the agent says `Hello` (who it is, what it runs, what it is
//! still running from before a reconnect); the server answers `Welcome`,
//! then `Dispatch`es runs to it. The agent reports each run's events in
//! numbered batches; the server applies them idempotently and `Ack`s them,
//! and the agent keeps what is not acknowledged to send again after a
//! reconnect. `Heartbeat`s renew the leases of the runs it holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::context::TaskResult;
use crate::event::RunEvent;
use crate::spec::Pipeline;

/// The protocol version this build speaks; `Hello` carries it.
pub const PROTOCOL_VERSION: u32 = 1;

/// WebSocket close code: the agent speaks a protocol version the server does not.
pub const CLOSE_UNSUPPORTED_PROTOCOL: u16 = 4000;
/// WebSocket close code: the agent's credential is revoked; it must not reconnect.
pub const CLOSE_REVOKED: u16 = 4001;
/// WebSocket close code: a newer connection of the same agent replaced this one.
pub const CLOSE_REPLACED: u16 = 4002;

/// Identifies one attempt of a run: events and leases belong to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunRef {
    /// The run's id on the server.
    pub run_id: i64,
    /// Which attempt of the run, from 1.
    pub attempt: i64,
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
        /// Most runs at once.
        capacity: u32,
        /// Runs it is executing (or has unacknowledged events of) from before
        /// this connection.
        running: Vec<RunRef>,
    },
    /// Events `first_seq`, `first_seq + 1`, ... of one run attempt.
    Events {
        /// The run attempt they belong to.
        run: RunRef,
        /// The number of the first event.
        first_seq: u64,
        /// The events, in order.
        events: Vec<RunEvent>,
    },
    /// The agent is alive and holds these runs.
    Heartbeat {
        /// The runs it holds.
        running: Vec<RunRef>,
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
    /// A run to execute.
    Dispatch(Box<Dispatch>),
    /// Every event of `run` up to and including `seq` is stored.
    Ack {
        /// The run attempt.
        run: RunRef,
        /// The number of the last event stored.
        seq: u64,
    },
    /// The user cancelled the run: stop it and report it cancelled.
    Cancel {
        /// The run attempt to cancel.
        run: RunRef,
    },
    /// The run is not this agent's any more (its lease ended and it went to
    /// another agent, or it is gone): stop it and report nothing more.
    Stop {
        /// The run attempt to stop.
        run: RunRef,
    },
    /// Answers each heartbeat, so an agent can tell a live connection from
    /// one the network silently dropped (which TCP may take minutes to see).
    Pong,
}

/// A run for the agent to execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// The run attempt.
    pub run: RunRef,
    /// The workflow's name.
    pub workflow: String,
    /// The pipeline's name.
    pub pipeline_name: String,
    /// The pipeline, as of the run's workflow version.
    pub pipeline: Pipeline,
    /// Values of the pipeline's params.
    pub params: BTreeMap<String, String>,
    /// Only the secrets this run's tasks reference.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretValue>,
    /// Tasks an earlier attempt finished: not to be run again.
    #[serde(default)]
    pub completed: BTreeMap<String, TaskResult>,
    /// The W3C `traceparent` of the server's span for this dispatch, when
    /// the server exports traces: the agent's spans for the run join it.
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
    fn messages_are_tagged_and_round_trip() {
        let hello = AgentMessage::Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            labels: [("os".to_string(), "linux".to_string())].into(),
            runtimes: vec!["docker".into()],
            capacity: 2,
            running: vec![RunRef {
                run_id: 7,
                attempt: 1,
            }],
        };
        let json = serde_json::to_string(&hello).unwrap();
        assert!(
            json.starts_with(r#"{"type":"hello","protocol":1,"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<AgentMessage>(&json).unwrap(), hello);

        let ack = ServerMessage::Ack {
            run: RunRef {
                run_id: 7,
                attempt: 1,
            },
            seq: 41,
        };
        let json = serde_json::to_string(&ack).unwrap();
        assert_eq!(
            json,
            r#"{"type":"ack","run":{"run_id":7,"attempt":1},"seq":41}"#
        );
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), ack);
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
