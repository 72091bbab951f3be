//! Agents: the list with their state, the queue at a glance, join tokens
//! and the exchange of one for a credential.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    pub id: String,
    pub name: String,
    /// The server's own in-process agent.
    pub builtin: bool,
    pub labels: BTreeMap<String, String>,
    pub runtimes: Vec<String>,
    /// Most task attempts at once.
    pub capacity: i64,
    /// Task attempts (or, for runs placed whole, runs) it holds now.
    pub running: i64,
    pub version: String,
    /// `online`, `offline`, or `revoked` (its credential no longer works).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub state: AgentState,
    pub last_seen_at: i64,
    /// An admin drained it: it takes no new tasks and finishes those it
    /// holds (drained once it holds none).
    // Default: absent from a server older than this field.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub draining: bool,
    /// The tasks it holds now (placed on it or running there), oldest
    /// first; at most 256 (`running` counts them all).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub held: Vec<HeldTask>,
}

/// The most held tasks an agent row lists.
pub const MAX_HELD_SHOWN: usize = 256;

impl Agent {
    /// Draining and holding nothing more: safe to stop or upgrade.
    pub fn drained(&self) -> bool {
        self.draining && self.held.is_empty() && self.running == 0
    }
}

/// A task attempt an agent holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeldTask {
    pub run_id: i64,
    pub task: String,
    /// The attempt's number within the task, from 1.
    pub number: i64,
}

/// Whether an agent takes work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Online,
    Offline,
    /// Its credential no longer works.
    Revoked,
}

impl AgentState {
    /// Every state, in the order the API document lists them.
    pub const ALL: [AgentState; 3] = [Self::Online, Self::Offline, Self::Revoked];

    /// The state as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AgentState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!("unknown agent state {s:?}: expected online, offline or revoked")
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    /// Runs waiting for an agent.
    pub waiting_runs: i64,
    /// Of those, runs nobody picked up within the pick-up timeout.
    pub stuck_runs: i64,
    /// Runs starting or running on an agent.
    pub running_runs: i64,
    pub runs_by_status: BTreeMap<String, i64>,
    pub agents_by_state: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// How long the token stays valid, like `30m` or `24h` (default 1h, at most 30d).
    pub expires_in: Option<String>,
    /// The labels of the agent joining with it, instead of those it
    /// declares (absent or empty: the agent's own). At most 32; keys of 1 to 63
    /// letters, digits and `._-/`, values of up to 255 printable characters.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Most task attempts the agent joining with it holds at once, whatever it
    /// declares (1 to 256; absent: its own claim, at most 256).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 256))]
    pub capacity: Option<u32>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinToken {
    /// Shown once: only its hash is kept.
    pub token: String,
    pub expires_at: i64,
    /// The labels it fixes, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The capacity it caps, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// A command that installs and starts an agent with this token (the
    /// token goes in the environment, not in any process's arguments).
    /// Absent when this server is reached over plain HTTP from beyond this
    /// machine: piping a script fetched that way into a shell would run
    /// whatever the network put there.
    pub install_command: Option<String>,
    /// Why there is no install command, and what to do instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_note: Option<String>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    /// A name for people; defaults to the agent id.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credential {
    pub agent_id: String,
    /// The agent's own secret for `/api/v1/agents/connect`; shown once.
    pub credential: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("token", &crate::Redacted)
            .field("expires_at", &self.expires_at)
            .field("labels", &self.labels)
            .field("capacity", &self.capacity)
            .field(
                "install_command",
                &self.install_command.as_ref().map(|_| crate::Redacted),
            )
            .field("install_note", &self.install_note)
            .finish()
    }
}

impl fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRequest")
            .field("token", &crate::Redacted)
            .field("name", &self.name)
            .finish()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("agent_id", &self.agent_id)
            .field("credential", &crate::Redacted)
            .finish()
    }
}
