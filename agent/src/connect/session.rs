//! One connection's life: say `Hello`, wait for `Welcome`, then execute
//! dispatched runs, send their events in numbered batches, drop what the
//! server acknowledges, and heartbeat — until the connection ends.
//!
//! It is written over any typed `Sink`/`Stream` pair, so tests drive it with
//! channels; `transport` adapts a WebSocket to that pair.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tokio_util::sync::CancellationToken;
use xene_core::protocol::{AgentMessage, PROTOCOL_VERSION, ServerMessage};

use super::runs::{MAX_BATCH, Refusal, Runs};

/// How a connection failed, as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The server closed with code 4001: the credential is revoked.
    #[error("the server revoked this agent's credential")]
    Revoked,
    #[error("{0}")]
    Lost(String),
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub labels: BTreeMap<String, String>,
    /// `docker`, and `shell` when allowed.
    pub runtimes: Vec<String>,
    pub capacity: u32,
    /// How long the server has to answer `Hello`.
    pub welcome_timeout: Duration,
    /// How long a shutdown waits for runs to end and their events to be
    /// acknowledged.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The connection ended; `welcomed` says whether the server had
    /// accepted the agent on it.
    Lost {
        welcomed: bool,
        reason: String,
    },
    Revoked,
    /// Shutdown was asked for, and the runs ended (or the grace ran out).
    Shutdown,
}

/// Runs one connection until it ends. `runs` carries over to the next one.
pub async fn run<S, R>(
    config: &SessionConfig,
    runs: &mut Runs,
    mut sink: S,
    mut stream: R,
    shutdown: &CancellationToken,
) -> SessionEnd
where
    S: Sink<AgentMessage, Error = LinkError> + Unpin,
    R: Stream<Item = Result<ServerMessage, LinkError>> + Unpin,
{
    runs.rewind();
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        labels: config.labels.clone(),
        runtimes: config.runtimes.clone(),
        capacity: config.capacity,
        running: runs.held(),
        attempts: vec![],
    };
    if let Err(e) = sink.send(hello).await {
        return lost(false, e);
    }

    let mut welcomed = false;
    let mut heartbeat: Option<Interval> = None;
    // The server answers every heartbeat; hearing nothing for a few of them
    // means the network dropped the connection without closing it.
    let mut last_heard = Instant::now();
    let mut period = Duration::MAX;
    let welcome_deadline = tokio::time::sleep(config.welcome_timeout);
    tokio::pin!(welcome_deadline);
    let mut shutdown_deadline: Option<Pin<Box<Sleep>>> = None;
    if shutdown.is_cancelled() {
        runs.cancel_all();
        shutdown_deadline = Some(Box::pin(tokio::time::sleep(config.shutdown_grace)));
    }

    loop {
        if welcomed && let Err(e) = flush(runs, &mut sink).await {
            return lost(welcomed, e);
        }
        if shutdown_deadline.is_some() && runs.is_empty() {
            return SessionEnd::Shutdown;
        }
        tokio::select! {
            message = stream.next() => match message.inspect(|_| last_heard = Instant::now()) {
                None => return lost(welcomed, LinkError::Lost("the server closed the connection".into())),
                Some(Err(LinkError::Revoked)) => return SessionEnd::Revoked,
                Some(Err(e)) => return lost(welcomed, e),
                Some(Ok(ServerMessage::Welcome { agent_id, heartbeat_ms })) => {
                    tracing::info!(agent_id, heartbeat_ms, "connected");
                    welcomed = true;
                    period = Duration::from_millis(heartbeat_ms.max(100));
                    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
                    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    heartbeat = Some(interval);
                }
                Some(Ok(message)) => handle(runs, message, shutdown_deadline.is_some()),
            },
            report = runs.next_report() => {
                runs.apply(report);
                // Take what else is queued so it goes out in one batch.
                for _ in 0..MAX_BATCH {
                    let Some(report) = runs.try_next_report() else { break };
                    runs.apply(report);
                }
            }
            () = tick(&mut heartbeat) => {
                if last_heard.elapsed() > period.saturating_mul(3) {
                    let silence = last_heard.elapsed().as_secs_f32();
                    return lost(welcomed, LinkError::Lost(format!("the server has been silent for {silence:.1} s")));
                }
                let beat = AgentMessage::Heartbeat {
                    running: runs.held(),
                    attempts: vec![],
                };
                if let Err(e) = sink.send(beat).await {
                    return lost(welcomed, e);
                }
            }
            () = &mut welcome_deadline, if !welcomed => {
                return lost(false, LinkError::Lost("the server did not answer hello".into()));
            }
            () = shutdown.cancelled(), if shutdown_deadline.is_none() => {
                tracing::info!("shutting down: cancelling the runs");
                runs.cancel_all();
                shutdown_deadline = Some(Box::pin(tokio::time::sleep(config.shutdown_grace)));
            }
            () = async { shutdown_deadline.as_mut().expect("guarded").await }, if shutdown_deadline.is_some() => {
                tracing::warn!("shutting down with events the server has not acknowledged");
                return SessionEnd::Shutdown;
            }
        }
    }
}

fn handle(runs: &mut Runs, message: ServerMessage, shutting_down: bool) {
    match message {
        ServerMessage::Welcome { .. } => {}
        ServerMessage::Dispatch(dispatch) => {
            let run = dispatch.run;
            if shutting_down {
                tracing::warn!(
                    run_id = run.run_id,
                    attempt = run.attempt,
                    "dispatch ignored: shutting down"
                );
                return;
            }
            match runs.dispatch(*dispatch) {
                Ok(()) => tracing::info!(run_id = run.run_id, attempt = run.attempt, "run started"),
                Err(Refusal::AlreadyRunning) => {
                    tracing::debug!(
                        run_id = run.run_id,
                        attempt = run.attempt,
                        "already running"
                    )
                }
                Err(Refusal::AtCapacity) => tracing::warn!(
                    run_id = run.run_id,
                    attempt = run.attempt,
                    "dispatch ignored: the agent is at capacity"
                ),
            }
        }
        ServerMessage::Ack { run, seq } => runs.ack(run, seq),
        ServerMessage::Cancel { run } => {
            tracing::info!(run_id = run.run_id, attempt = run.attempt, "cancelling");
            runs.cancel(run);
        }
        ServerMessage::Stop { run } => {
            tracing::info!(run_id = run.run_id, attempt = run.attempt, "stopping");
            runs.stop(run);
        }
        ServerMessage::Pong => {}
        // Protocol 2 messages: this agent still speaks 1 until its attempt
        // runner lands, and a server that speaks 2 refuses it at hello.
        ServerMessage::TaskDispatch(_)
        | ServerMessage::TaskAck { .. }
        | ServerMessage::CancelTask { .. }
        | ServerMessage::StopTask { .. }
        | ServerMessage::Outputs { .. } => {
            tracing::warn!("a protocol 2 message on a protocol 1 session: ignored")
        }
    }
}

/// Sends every event not yet sent on this connection.
async fn flush<S>(runs: &mut Runs, sink: &mut S) -> Result<(), LinkError>
where
    S: Sink<AgentMessage, Error = LinkError> + Unpin,
{
    let mut fed = false;
    while let Some(batch) = runs.next_batch() {
        sink.feed(batch).await?;
        fed = true;
    }
    if fed {
        sink.flush().await?;
    }
    Ok(())
}

async fn tick(heartbeat: &mut Option<Interval>) {
    match heartbeat {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn lost(welcomed: bool, error: LinkError) -> SessionEnd {
    match error {
        LinkError::Revoked => SessionEnd::Revoked,
        LinkError::Lost(reason) => SessionEnd::Lost { welcomed, reason },
    }
}

#[cfg(test)]
mod tests;
