//! One agent's connection (protocol 4): hello, then dispatching the task
//! attempts placed on it, applying the events it reports on each,
//! acknowledging them, telling it which attempts to cancel or stop, and
//! answering its requests about files (`files.rs`).
//! Its heartbeats renew its attempts' leases through the gateway's
//! liveness flush, for all agents at once. Written over a generic sink and
//! stream of protocol messages, so it does not care whether they travel
//! over a WebSocket or a test's channels.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};
use xene_core::protocol::{AgentMessage, AttemptRef, PROTOCOL_VERSION, ServerMessage};

use super::limits;
use super::{CLOSE_REPLACED, CLOSE_REVOKED, CLOSE_UNSUPPORTED_PROTOCOL, Ending, Registered};
use crate::controllers::Context;
use crate::storage::agents::{self, Registration};
use crate::storage::auth::AgentIdentity;
use crate::storage::{ALL_AGENTS, StorageError};
use tokio::sync::broadcast::error::RecvError;

mod attempts;
mod files;

/// How long a message to the agent may wait for it to read.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an agent has to say hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an agent's input a log line quotes.
pub const LOG_QUOTE_BYTES: usize = 300;

/// `value` as text, cut after [`LOG_QUOTE_BYTES`] (formatting stops there,
/// so a huge message costs no huge string).
pub fn clip(value: &dyn std::fmt::Display) -> String {
    struct Bounded(String, bool);
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = LOG_QUOTE_BYTES - self.0.len();
            if s.len() <= room {
                self.0.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.0.push_str(&s[..end]);
            self.1 = true;
            Err(std::fmt::Error)
        }
    }
    let mut out = Bounded(String::new(), false);
    let _ = std::fmt::write(&mut out, format_args!("{value}"));
    if out.1 {
        out.0.push_str("… (cut)");
    }
    out.0
}

/// A value's `Debug` form as `Display`, for [`clip`].
struct Debug<'a, T>(&'a T);

impl<T: std::fmt::Debug> std::fmt::Display for Debug<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What the session sends: a message, or a close frame with a code.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Message(ServerMessage),
    Close(u16, String),
}

/// Why a session ended, for the log.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("the agent disconnected")]
    Disconnected,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the connection failed: {0}")]
    Transport(String),
    #[error("closed by the server ({0:?})")]
    Closed(Ending),
    #[error("the server is shutting down")]
    Shutdown,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl SessionEnd {
    /// A short name for the reason, for the disconnects metric's label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Protocol(_) => "protocol_error",
            Self::Transport(_) => "transport_error",
            Self::Closed(Ending::Revoked) => "revoked",
            Self::Closed(Ending::Replaced) => "replaced",
            Self::Shutdown => "shutdown",
            Self::Storage(_) => "storage_error",
        }
    }
}

struct Session<'a, S> {
    ctx: &'a Context,
    agent: AgentIdentity,
    out: S,
    /// Attempts sent to the agent on this connection.
    dispatched: HashSet<AttemptRef>,
    /// Attempts the agent last said it holds.
    reported: HashSet<AttemptRef>,
    cancels_sent: HashSet<AttemptRef>,
    stops_sent: HashSet<AttemptRef>,
    /// TLS or loopback: only then are secrets sent.
    secure_link: bool,
    /// The agent runs shell steps. A remote agent's shell steps share its
    /// user with no sandbox, so one task's steps could read another task's
    /// environment or the agent's memory: protected secrets never go there.
    runs_shell: bool,
    /// The attempts it holds as last read (placed or running here): their
    /// run and task, so that events are checked without a query.
    held: HashMap<i64, attempts::Known>,
    /// The task and step names of runs the agent reports on: events must
    /// name only these.
    steps: HashMap<i64, Arc<BTreeMap<String, BTreeSet<String>>>>,
    /// Requests about files being answered, each on a task of its own (an
    /// object store may be slow; heartbeats must not wait for it). Ended
    /// with the session.
    files: tokio::task::JoinSet<ServerMessage>,
}

/// What an agent of another protocol is told: the version it needs and
/// the command that installs the matching build. The whole of it goes to
/// the log; the close frame carries the longest form that fits its 123
/// bytes (`close_reason`).
pub fn refusal(agent_speaks: u32, public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "this server speaks agent protocol {PROTOCOL_VERSION} (xene-agent {version} or later); \
         this agent speaks {agent_speaks}. Install the matching agent: \
         curl -fsSL {base}/install.sh | XENE_JOIN_TOKEN=<token> sh"
    )
}

/// `refusal` in the longest form that fits a close frame.
pub fn close_reason(agent_speaks: u32, public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    let version = env!("CARGO_PKG_VERSION");
    let needs = format!(
        "needs agent protocol {PROTOCOL_VERSION} (xene-agent {version}+), not {agent_speaks}"
    );
    [
        refusal(agent_speaks, public_url),
        format!("{needs}; install: curl -fsSL {base}/install.sh | XENE_JOIN_TOKEN=<token> sh"),
        format!("{needs}; reinstall from {base}/install.sh"),
        needs.clone(),
    ]
    .into_iter()
    .find(|r| r.len() <= MAX_CLOSE_REASON)
    .unwrap_or_else(|| format!("needs agent protocol {PROTOCOL_VERSION}"))
}

/// The most bytes of a close frame's reason (125 bytes of control frame
/// payload less the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// Serves one connection: the hello first, and only a hello of this
/// protocol registers the session with `gateway` (so an agent of another
/// protocol never replaces a live session of the same agent). Returns why
/// it ended and the generation it was registered under, if it was.
pub async fn run<S, R>(
    ctx: Context,
    gateway: &super::Gateway,
    agent: AgentIdentity,
    secure_link: bool,
    out: S,
    mut incoming: R,
) -> (SessionEnd, Option<u64>)
where
    S: Sink<Outgoing> + Unpin,
    S::Error: std::fmt::Display,
    R: Stream<Item = Result<AgentMessage, String>> + Unpin,
{
    let hello = tokio::select! {
        first = tokio::time::timeout(HELLO_TIMEOUT, incoming.next()) => first,
        _ = ctx.shutdown.cancelled() => return (SessionEnd::Shutdown, None),
    };
    let hello: Result<_, SessionEnd> = match hello {
        Ok(Some(Ok(AgentMessage::Hello {
            protocol,
            agent_version,
            labels,
            runtimes,
            capacity,
            attempts,
        }))) => {
            if protocol != PROTOCOL_VERSION {
                let mut out = out;
                let reason = close_reason(protocol, &ctx.public_url);
                let _ = tokio::time::timeout(
                    SEND_TIMEOUT,
                    out.send(Outgoing::Close(CLOSE_UNSUPPORTED_PROTOCOL, reason)),
                )
                .await;
                return (
                    SessionEnd::Protocol(refusal(protocol, &ctx.public_url)),
                    None,
                );
            }
            match limits::hello(labels, runtimes, capacity, agent_version, &attempts) {
                Ok(hello) => Ok((hello, attempts)),
                Err(reason) => Err(SessionEnd::Protocol(format!("bad hello: {reason}"))),
            }
        }
        Ok(Some(Ok(other))) => Err(SessionEnd::Protocol(format!(
            "expected hello, got {}",
            clip(&Debug(&other))
        ))),
        Ok(Some(Err(e))) => Err(SessionEnd::Protocol(e)),
        Ok(None) => Err(SessionEnd::Disconnected),
        Err(_) => Err(SessionEnd::Protocol("no hello within 10 s".into())),
    };
    let (hello, reported) = match hello {
        Ok(hello) => hello,
        Err(end) => return (end, None),
    };
    let registered = gateway.register(&agent.id);
    let mut session = Session {
        ctx: &ctx,
        agent,
        out,
        dispatched: HashSet::new(),
        reported: reported.into_iter().collect(),
        cancels_sent: HashSet::new(),
        stops_sent: HashSet::new(),
        secure_link,
        runs_shell: hello.runtimes.iter().any(|r| r == "shell"),
        held: HashMap::new(),
        steps: HashMap::new(),
        files: tokio::task::JoinSet::new(),
    };
    let end = session.serve(hello, &registered, &mut incoming).await;
    if let SessionEnd::Closed(why) = &end {
        let code = match why {
            Ending::Revoked => CLOSE_REVOKED,
            Ending::Replaced => CLOSE_REPLACED,
        };
        let _ = tokio::time::timeout(
            SEND_TIMEOUT,
            session.out.send(Outgoing::Close(code, end.to_string())),
        )
        .await;
    }
    (end, Some(registered.generation))
}

impl<S> Session<'_, S>
where
    S: Sink<Outgoing> + Unpin,
    S::Error: std::fmt::Display,
{
    async fn serve<R>(
        &mut self,
        hello: limits::Hello,
        registered: &Registered,
        incoming: &mut R,
    ) -> SessionEnd
    where
        R: Stream<Item = Result<AgentMessage, String>> + Unpin,
    {
        // What an admin fixed in the join token wins over what the agent
        // claims: its labels replace the agent's, its capacity caps it.
        let fixed = &self.agent.fixed;
        let labels = fixed.labels.clone().unwrap_or(hello.labels);
        let capacity = fixed
            .capacity
            .map_or(hello.capacity, |most| hello.capacity.min(most));
        let registration = Registration {
            id: self.agent.id.clone(),
            name: self.agent.name.clone(),
            builtin: false,
            labels,
            runtimes: hello.runtimes,
            capacity: i64::from(capacity),
            version: hello.version,
        };
        // Subscribed before anything is read, so no news falls in between.
        let mut news = self.ctx.db.news().agents();
        match agents::register(&self.ctx.db, &registration).await {
            Ok(true) => {}
            Ok(false) => return SessionEnd::Closed(Ending::Revoked),
            Err(e) => return e.into(),
        }
        if let Err(e) = self.reconcile().await {
            return e;
        }
        // Several heartbeats fit in a lease, and an agent that hears no
        // answer for three of them reconnects, well before the lease ends.
        let heartbeat_ms = (self.ctx.timings.run_lease.as_millis() as u64 / 5).clamp(100, 2000);
        if let Err(e) = self
            .send(ServerMessage::Welcome {
                agent_id: self.agent.id.clone(),
                heartbeat_ms,
            })
            .await
        {
            return e;
        }
        // What was placed while the agent was away (or whose dispatch it
        // never got) goes out now, not at the next news.
        if let Err(e) = self.dispatch().await {
            return e;
        }
        // News wakes a session when it has work, from this replica or
        // another (through the database); there is no periodic resync, so
        // an idle agent costs no query. Missed news (lag, a lost listener
        // connection) arrives as news for every agent.
        loop {
            let step = tokio::select! {
                _ = registered.stop.cancelled() => {
                    return SessionEnd::Closed(registered.ending.lock().unwrap().unwrap_or(Ending::Replaced));
                }
                _ = self.ctx.shutdown.cancelled() => return SessionEnd::Shutdown,
                message = incoming.next() => match message {
                    Some(Ok(message)) => self.handle(message).await,
                    Some(Err(e)) => return SessionEnd::Transport(e),
                    None => return SessionEnd::Disconnected,
                },
                Some(answered) = self.files.join_next(), if !self.files.is_empty() => {
                    self.files_answered(answered).await
                }
                news = news.recv() => match news {
                    Ok(agent) if *agent != *self.agent.id && *agent != *ALL_AGENTS => Ok(()),
                    // Lagged: some news was missed, maybe ours.
                    Ok(_) | Err(RecvError::Lagged(_)) => self.dispatch().await,
                    Err(RecvError::Closed) => return SessionEnd::Shutdown,
                },
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn send(&mut self, message: ServerMessage) -> Result<(), SessionEnd> {
        // An agent that stops reading must not hold its session (and a
        // revocation's close) forever.
        match tokio::time::timeout(SEND_TIMEOUT, self.out.send(Outgoing::Message(message))).await {
            Ok(sent) => sent.map_err(|e| SessionEnd::Transport(e.to_string())),
            Err(_) => Err(SessionEnd::Transport(format!(
                "the agent read nothing for {} s",
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn handle(&mut self, message: AgentMessage) -> Result<(), SessionEnd> {
        match message {
            AgentMessage::Hello { .. } => Err(SessionEnd::Protocol("hello sent twice".into())),
            AgentMessage::TaskEvents {
                attempt,
                first_seq,
                events,
            } => self.events(attempt, first_seq, events).await,
            AgentMessage::Heartbeat { attempts } => self.heartbeat(attempts).await,
            AgentMessage::FetchOutputs { attempt, after } => {
                self.fetch_outputs(attempt, after).await
            }
            AgentMessage::Files {
                attempt,
                id,
                request,
            } => self.answer_files(attempt, id, request).await,
        }
    }
}
