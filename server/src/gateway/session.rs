//! One agent's connection: hello, then dispatching its runs, applying the
//! events it reports, acknowledging them, and renewing its leases. Written
//! over a generic sink and stream of protocol messages, so it does not care
//! whether they travel over a WebSocket or a test's channels.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};
use xene_core::protocol::{AgentMessage, Dispatch, PROTOCOL_VERSION, RunRef, ServerMessage};
use xene_core::status::RunStatus;

use super::limits;
use super::{CLOSE_REPLACED, CLOSE_REVOKED, CLOSE_UNSUPPORTED_PROTOCOL, Ending, Registered};
use crate::controllers::Context;
use crate::controllers::dispatch::{self, Link, Prepared};
use crate::storage::agents::{self, Registration};
use crate::storage::auth::AgentIdentity;
use crate::storage::events::{self, Applied};
use crate::storage::{ALL_AGENTS, StorageError, now_ms, placement, runs};
use tokio::sync::broadcast::error::RecvError;

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
    /// Runs sent to the agent on this connection.
    dispatched: HashSet<RunRef>,
    /// Runs the agent last said it holds.
    reported: HashSet<RunRef>,
    cancels_sent: HashSet<RunRef>,
    stops_sent: HashSet<RunRef>,
    /// TLS or loopback: only then are secrets sent.
    secure_link: bool,
    /// The agent runs shell steps. A remote agent's shell steps share its
    /// user with no sandbox, so one run's steps could read another run's
    /// environment or the agent's memory: protected secrets never go there.
    runs_shell: bool,
    /// The task and step names of runs the agent reports on: events must
    /// name only these.
    known: HashMap<i64, Arc<BTreeMap<String, BTreeSet<String>>>>,
}

pub async fn run<S, R>(
    ctx: Context,
    agent: AgentIdentity,
    registered: Registered,
    secure_link: bool,
    out: S,
    mut incoming: R,
) -> SessionEnd
where
    S: Sink<Outgoing> + Unpin,
    S::Error: std::fmt::Display,
    R: Stream<Item = Result<AgentMessage, String>> + Unpin,
{
    let hello = tokio::select! {
        first = tokio::time::timeout(HELLO_TIMEOUT, incoming.next()) => first,
        _ = registered.stop.cancelled() => return SessionEnd::Closed(Ending::Replaced),
    };
    let (hello, running) = match hello {
        Ok(Some(Ok(AgentMessage::Hello {
            protocol,
            agent_version,
            labels,
            runtimes,
            capacity,
            running,
            attempts,
        }))) => {
            if protocol != PROTOCOL_VERSION {
                let mut out = out;
                let reason = format!(
                    "protocol {protocol} is not supported; this server speaks {PROTOCOL_VERSION}"
                );
                let _ = out
                    .send(Outgoing::Close(CLOSE_UNSUPPORTED_PROTOCOL, reason.clone()))
                    .await;
                return SessionEnd::Protocol(reason);
            }
            match limits::hello(labels, runtimes, capacity, agent_version, &running, &attempts) {
                Ok(hello) => (hello, running),
                Err(reason) => return SessionEnd::Protocol(format!("bad hello: {reason}")),
            }
        }
        Ok(Some(Ok(other))) => {
            return SessionEnd::Protocol(format!("expected hello, got {}", clip(&Debug(&other))));
        }
        Ok(Some(Err(e))) => return SessionEnd::Protocol(e),
        Ok(None) => return SessionEnd::Disconnected,
        Err(_) => return SessionEnd::Protocol("no hello within 10 s".into()),
    };
    let mut session = Session {
        ctx: &ctx,
        agent,
        out,
        dispatched: HashSet::new(),
        reported: running.into_iter().collect(),
        cancels_sent: HashSet::new(),
        stops_sent: HashSet::new(),
        secure_link,
        runs_shell: hello.runtimes.iter().any(|r| r == "shell"),
        known: HashMap::new(),
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
    end
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
        // What was assigned while the agent was away (or whose dispatch it
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

    /// The run's task and step names, read once per run and session.
    async fn known(
        &mut self,
        run_id: i64,
    ) -> Result<Arc<BTreeMap<String, BTreeSet<String>>>, SessionEnd> {
        if let Some(known) = self.known.get(&run_id) {
            return Ok(known.clone());
        }
        if self.known.len() >= limits::MAX_RUNNING {
            self.known.clear();
        }
        let known = Arc::new(runs::task_steps(&self.ctx.db, run_id).await?);
        self.known.insert(run_id, known.clone());
        Ok(known)
    }

    /// Squares what the agent says it runs with what the database says it
    /// holds, after a (re)connect.
    async fn reconcile(&mut self) -> Result<(), SessionEnd> {
        let assigned = placement::assigned_to(&self.ctx.db, &self.agent.id).await?;
        for run in &assigned {
            let r = RunRef {
                run_id: run.id,
                attempt: run.attempt,
            };
            if self.reported.contains(&r) {
                continue;
            }
            // Never started and nothing reported: it may simply be sent
            // again. Otherwise the agent lost it (it restarted): let the
            // supervisor retry it as a new attempt.
            let untouched = run.status == RunStatus::StartingUp
                && !events::has_events(&self.ctx.db, run.id, run.attempt).await?;
            if !untouched {
                placement::end_lease(&self.ctx.db, run.id, run.attempt, &self.agent.id).await?;
            }
        }
        let held: HashSet<RunRef> = assigned
            .iter()
            .map(|r| RunRef {
                run_id: r.id,
                attempt: r.attempt,
            })
            .collect();
        let strays: Vec<RunRef> = self.reported.difference(&held).copied().collect();
        for run in strays {
            self.stop(run).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, message: AgentMessage) -> Result<(), SessionEnd> {
        match message {
            AgentMessage::Hello { .. } => Err(SessionEnd::Protocol("hello sent twice".into())),
            AgentMessage::TaskEvents { .. } | AgentMessage::FetchOutputs { .. } => Err(
                SessionEnd::Protocol("a protocol 2 message on a protocol 1 session".into()),
            ),
            AgentMessage::Events {
                run,
                first_seq,
                events,
            } => {
                if events.is_empty() {
                    return Ok(());
                }
                // Numbers come off the wire: out of range is a protocol error,
                // not an overflow.
                let last = first_seq
                    .checked_add(events.len() as u64 - 1)
                    .filter(|last| i64::try_from(*last).is_ok())
                    .ok_or_else(|| {
                        SessionEnd::Protocol(format!("event number {first_seq} is out of range"))
                    })?;
                let known = self.known(run.run_id).await?;
                limits::check_events(&events, &known)
                    .map_err(|e| SessionEnd::Protocol(format!("bad events: {e}")))?;
                // A big batch goes in several transactions, each recording
                // its events' numbers: a crash in between loses nothing.
                let mut seq = first_seq as i64;
                for group in limits::groups(&events, limits::APPLY_BYTES) {
                    let started = std::time::Instant::now();
                    let applied = events::apply(
                        &self.ctx.db,
                        run.run_id,
                        run.attempt,
                        &self.agent.id,
                        seq,
                        group,
                    )
                    .await?;
                    self.ctx.metrics.observe_event_apply(started.elapsed());
                    match applied {
                        Applied::Ok { new } => {
                            // Events already stored (a resend) are a prefix.
                            let fresh = &group[group.len() - (new as usize).min(group.len())..];
                            self.ctx
                                .metrics
                                .observe_events(&self.ctx.db, run.run_id, fresh)
                                .await;
                        }
                        Applied::Stale => return self.stop(run).await,
                    }
                    seq += group.len() as i64;
                }
                self.send(ServerMessage::Ack { run, seq: last }).await?;
                Ok(())
            }
            AgentMessage::Heartbeat { running, .. } => {
                limits::check_running(&running)
                    .map_err(|e| SessionEnd::Protocol(format!("bad heartbeat: {e}")))?;
                // Written behind, with every other agent's, by the gateway's
                // liveness flush, which also ends the sessions of agents
                // revoked through any replica: an idle agent costs no query.
                self.ctx.db.agent_seen(&self.agent.id);
                let lease_ms = self.ctx.timings.run_lease.as_millis() as i64;
                let mut strays = Vec::new();
                for run in &running {
                    let renewed = placement::renew_lease(
                        &self.ctx.db,
                        run.run_id,
                        run.attempt,
                        &self.agent.id,
                        lease_ms,
                    )
                    .await?;
                    if !renewed {
                        strays.push(*run);
                    }
                }
                self.reported = running.into_iter().collect();
                // A dispatch the agent did not take (it was full, or it never
                // arrived) is sent again by the next dispatch pass; one it
                // took and reports is not.
                let reported = &self.reported;
                let refused = self.dispatched.iter().any(|r| !reported.contains(r));
                self.dispatched.retain(|r| reported.contains(r));
                self.cancels_sent.retain(|r| reported.contains(r));
                self.stops_sent.retain(|r| reported.contains(r));
                self.known
                    .retain(|id, _| reported.iter().any(|r| r.run_id == *id));
                self.send(ServerMessage::Pong).await?;
                if refused {
                    self.dispatch().await?;
                }
                for run in strays {
                    // A run that finished keeps being reported until its last
                    // events are acknowledged; only a lost one needs stopping.
                    if !placement::is_finished_attempt(
                        &self.ctx.db,
                        run.run_id,
                        run.attempt,
                        &self.agent.id,
                    )
                    .await?
                    {
                        self.stop(run).await?;
                    }
                }
                Ok(())
            }
        }
    }

    async fn stop(&mut self, run: RunRef) -> Result<(), SessionEnd> {
        if self.stops_sent.insert(run) {
            self.send(ServerMessage::Stop { run }).await?;
        }
        Ok(())
    }

    /// Sends the agent the runs put on it that it does not have yet, and
    /// cancellations of runs it has.
    async fn dispatch(&mut self) -> Result<(), SessionEnd> {
        let assigned = placement::assigned_to(&self.ctx.db, &self.agent.id).await?;
        for run in assigned {
            let r = RunRef {
                run_id: run.id,
                attempt: run.attempt,
            };
            // Only a run that never started is sent: one that started and
            // that the agent does not report was lost, and `reconcile` handed
            // it to the supervisor to retry as a new attempt.
            let unsent = !self.dispatched.contains(&r) && !self.reported.contains(&r);
            if unsent && run.status == RunStatus::StartingUp {
                let Some(dispatch) = self.prepare(&run).await? else {
                    continue;
                };
                self.send(ServerMessage::Dispatch(dispatch)).await?;
                self.dispatched.insert(r);
            }
            if run.cancel_requested && self.cancels_sent.insert(r) {
                self.send(ServerMessage::Cancel { run: r }).await?;
            }
        }
        Ok(())
    }

    async fn prepare(&self, run: &runs::Run) -> Result<Option<Box<Dispatch>>, StorageError> {
        let link = Link::Remote {
            agent: &self.agent.id,
            secure: self.secure_link,
            runs_shell: self.runs_shell,
        };
        let mut dispatch = match dispatch::prepare(self.ctx, run, link).await? {
            Prepared::Send(dispatch) => dispatch,
            Prepared::Failed(_) => return Ok(None),
        };
        // The agent's spans for the run continue this one's trace.
        let span = tracing::info_span!(
            "dispatch",
            run_id = run.id,
            attempt = run.attempt,
            workflow = %run.workflow,
            pipeline = %run.pipeline,
        );
        self.ctx.metrics.run_traces.adopt(run.id, &span);
        let traceparent = xene_agent::telemetry::traceparent(&span);
        span.in_scope(|| {
            tracing::debug!(
                at = now_ms(),
                traceparent = traceparent.as_deref(),
                "dispatching"
            );
        });
        dispatch.traceparent = traceparent;
        Ok(Some(dispatch))
    }
}
