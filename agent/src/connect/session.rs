//! One connection's life: say `Hello`, wait for `Welcome`, then execute
//! dispatched task attempts (fetching the outputs they read when the
//! dispatch did not carry them all), send their events in numbered
//! batches, drop what the server acknowledges, and heartbeat — until the
//! connection ends.
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

use super::attempts::{Attempts, Refusal};
use super::batch::MAX_BATCH;

// Defined with the transport, which makes them; the session reads them.
pub use super::transport::LinkError;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub labels: BTreeMap<String, String>,
    /// `docker`, and `shell` when allowed.
    pub runtimes: Vec<String>,
    pub capacity: u32,
    /// How long the server has to answer `Hello`.
    pub welcome_timeout: Duration,
    /// How long a shutdown waits for task attempts to end and their events to be
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
    /// The server refused this agent's protocol version, for this reason.
    Unsupported(String),
    /// Shutdown was asked for, and the attempts ended (or the grace ran out).
    Shutdown,
}

/// Runs one connection until it ends. `attempts` carries over to the next one.
pub async fn run<S, R>(
    config: &SessionConfig,
    attempts: &mut Attempts,
    mut sink: S,
    mut stream: R,
    shutdown: &CancellationToken,
) -> SessionEnd
where
    S: Sink<AgentMessage, Error = LinkError> + Unpin,
    R: Stream<Item = Result<ServerMessage, LinkError>> + Unpin,
{
    attempts.rewind();
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        labels: config.labels.clone(),
        runtimes: config.runtimes.clone(),
        capacity: config.capacity,
        attempts: attempts.held(),
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
    // Its attempts' requests about files wake the loop to be sent.
    let files = attempts.files();
    if shutdown.is_cancelled() {
        attempts.quit_all();
        shutdown_deadline = Some(Box::pin(tokio::time::sleep(config.shutdown_grace)));
    }

    loop {
        if welcomed && let Err(e) = flush(attempts, &mut sink).await {
            return lost(welcomed, e);
        }
        if shutdown_deadline.is_some() && attempts.is_empty() {
            return SessionEnd::Shutdown;
        }
        tokio::select! {
            message = stream.next() => match message.inspect(|_| last_heard = Instant::now()) {
                None => return lost(welcomed, LinkError::Lost("the server closed the connection".into())),
                Some(Err(LinkError::Revoked)) => return SessionEnd::Revoked,
                Some(Err(LinkError::Unsupported(reason))) => return SessionEnd::Unsupported(reason),
                Some(Err(e)) => return lost(welcomed, e),
                Some(Ok(ServerMessage::Welcome { agent_id, heartbeat_ms })) => {
                    tracing::info!(agent_id, heartbeat_ms, "connected");
                    welcomed = true;
                    period = Duration::from_millis(heartbeat_ms.max(100));
                    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
                    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    heartbeat = Some(interval);
                }
                Some(Ok(message)) => handle(attempts, message, shutdown_deadline.is_some()),
            },
            report = attempts.next_report() => {
                attempts.apply(report);
                // Take what else is queued so it goes out in one batch.
                for _ in 0..MAX_BATCH {
                    let Some(report) = attempts.try_next_report() else { break };
                    attempts.apply(report);
                }
            }
            () = files.wanted() => {}
            () = tick(&mut heartbeat) => {
                if last_heard.elapsed() > period.saturating_mul(3) {
                    let silence = last_heard.elapsed().as_secs_f32();
                    return lost(welcomed, LinkError::Lost(format!("the server has been silent for {silence:.1} s")));
                }
                let beat = AgentMessage::Heartbeat {
                    attempts: attempts.held(),
                };
                if let Err(e) = sink.send(beat).await {
                    return lost(welcomed, e);
                }
            }
            () = &mut welcome_deadline, if !welcomed => {
                return lost(false, LinkError::Lost("the server did not answer hello".into()));
            }
            () = shutdown.cancelled(), if shutdown_deadline.is_none() => {
                tracing::info!("shutting down: stopping the task attempts");
                attempts.quit_all();
                shutdown_deadline = Some(Box::pin(tokio::time::sleep(config.shutdown_grace)));
            }
            () = async { shutdown_deadline.as_mut().expect("guarded").await }, if shutdown_deadline.is_some() => {
                tracing::warn!("shutting down with events the server has not acknowledged");
                return SessionEnd::Shutdown;
            }
        }
    }
}

fn handle(attempts: &mut Attempts, message: ServerMessage, shutting_down: bool) {
    match message {
        ServerMessage::Welcome { .. } | ServerMessage::Pong => {}
        ServerMessage::TaskDispatch(dispatch) => {
            let (attempt, run_id, task) =
                (dispatch.attempt.id, dispatch.run_id, dispatch.task.clone());
            if shutting_down {
                tracing::warn!(attempt, run_id, task, "dispatch ignored: shutting down");
                return;
            }
            match attempts.dispatch(*dispatch) {
                Ok(()) => tracing::info!(attempt, run_id, task, "task attempt taken"),
                Err(Refusal::AlreadyRunning) => {
                    tracing::debug!(attempt, run_id, task, "already running")
                }
                Err(Refusal::AtCapacity) => tracing::warn!(
                    attempt,
                    run_id,
                    task,
                    "dispatch ignored: the agent is at capacity"
                ),
            }
        }
        ServerMessage::TaskAck { attempt, seq } => attempts.ack(attempt, seq),
        ServerMessage::Outputs {
            attempt,
            results,
            next,
        } => attempts.outputs(attempt, results, next),
        ServerMessage::CancelTask { attempt } => {
            tracing::info!(attempt = attempt.id, "cancelling");
            attempts.cancel(attempt);
        }
        ServerMessage::StopTask { attempt } => {
            tracing::info!(attempt = attempt.id, "stopping");
            attempts.stop(attempt);
        }
        ServerMessage::Files {
            attempt,
            id,
            answer,
        } => attempts.files().answer(attempt, id, answer),
    }
}

/// Sends every event not yet sent on this connection, and the requests
/// for outputs.
async fn flush<S>(attempts: &mut Attempts, sink: &mut S) -> Result<(), LinkError>
where
    S: Sink<AgentMessage, Error = LinkError> + Unpin,
{
    let mut fed = false;
    // Flushed at once: an attempt waits for the acknowledgement of its
    // `TaskStarted` before it starts any work.
    while let Some(batch) = attempts.next_message() {
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
        LinkError::Unsupported(reason) => SessionEnd::Unsupported(reason),
        LinkError::Lost(reason) => SessionEnd::Lost { welcomed, reason },
    }
}

#[cfg(test)]
mod tests;
