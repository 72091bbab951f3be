//! The agent gateway: remote agents dial `/api/v1/agents/connect` with their
//! credential and hold one WebSocket each. The gateway knows which agents
//! are connected, so revoking one closes its connection at once.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

pub mod limits;
pub mod session;

pub use xene_core::protocol::{CLOSE_REPLACED, CLOSE_REVOKED, CLOSE_UNSUPPORTED_PROTOCOL};

/// Why a session was told to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Revoked,
    Replaced,
}

#[derive(Default)]
pub struct Gateway {
    sessions: Mutex<HashMap<String, SessionHandle>>,
    /// Numbers sessions across all agents, so a late `unregister` of an old
    /// session can never remove a newer one.
    next_generation: std::sync::atomic::AtomicU64,
}

struct SessionHandle {
    generation: u64,
    stop: CancellationToken,
    ending: std::sync::Arc<Mutex<Option<Ending>>>,
}

/// A session's registration: ends it when told to.
pub struct Registered {
    pub generation: u64,
    pub stop: CancellationToken,
    pub ending: std::sync::Arc<Mutex<Option<Ending>>>,
}

impl Gateway {
    /// Registers a new session for `agent`, ending any older one: the newest
    /// connection of an agent wins.
    pub fn register(&self, agent: &str) -> Registered {
        let mut sessions = self.sessions.lock().unwrap();
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(old) = sessions.get(agent) {
            *old.ending.lock().unwrap() = Some(Ending::Replaced);
            old.stop.cancel();
        }
        let stop = CancellationToken::new();
        let ending = std::sync::Arc::new(Mutex::new(None));
        sessions.insert(
            agent.to_string(),
            SessionHandle {
                generation,
                stop: stop.clone(),
                ending: ending.clone(),
            },
        );
        Registered {
            generation,
            stop,
            ending,
        }
    }

    /// Forgets a session that ended, unless a newer one replaced it.
    /// Returns true when it was the agent's current session.
    pub fn unregister(&self, agent: &str, generation: u64) -> bool {
        let mut sessions = self.sessions.lock().unwrap();
        if sessions
            .get(agent)
            .is_some_and(|s| s.generation == generation)
        {
            sessions.remove(agent);
            true
        } else {
            false
        }
    }

    /// Closes the agent's connection, if it has one, telling it why.
    pub fn disconnect(&self, agent: &str, why: Ending) {
        if let Some(session) = self.sessions.lock().unwrap().get(agent) {
            *session.ending.lock().unwrap() = Some(why);
            session.stop.cancel();
        }
    }

    /// Whether the agent has a session on this server.
    pub fn is_connected(&self, agent: &str) -> bool {
        self.sessions.lock().unwrap().contains_key(agent)
    }

    pub fn connected(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }
}
