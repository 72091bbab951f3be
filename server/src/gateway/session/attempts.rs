//! A session's task attempts: dispatching those placed on the agent,
//! applying what it reports on each, squaring what it says it holds with
//! what the database says, and paging the outputs an attempt reads.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use futures::Sink;
use xene_core::event::RunEvent;
use xene_core::protocol::{AttemptRef, OUTPUT_PAGE, ServerMessage};

use super::{Session, SessionEnd, limits};
use crate::controllers::dispatch::{self, Link, PreparedAttempt};
use crate::storage::attempts::{self, HeldAttempt};
use crate::storage::events::{self, ApplyError};
use crate::storage::{StorageError, now_ms, runs};

/// An attempt the agent holds: what its events are checked against.
#[derive(Debug, Clone)]
pub struct Known {
    pub run_id: i64,
    pub task: String,
    /// Its `TaskStarted` was stored (as last read).
    pub started: bool,
}

impl<S> Session<'_, S>
where
    S: Sink<super::Outgoing> + Unpin,
    S::Error: std::fmt::Display,
{
    /// Sends the agent the attempts placed on it that it does not have yet,
    /// and cancellations of those it has.
    pub(super) async fn dispatch(&mut self) -> Result<(), SessionEnd> {
        let held = self.read_held().await?;
        for attempt in held {
            let r = AttemptRef { id: attempt.id };
            // Only an attempt that never started is sent: one that started
            // and that the agent does not report was lost, and `reconcile`
            // ended its lease for the supervisor to deal with.
            let unsent = !self.dispatched.contains(&r) && !self.reported.contains(&r);
            if unsent && !attempt.started {
                if !self.send_attempt(&attempt).await? {
                    continue;
                }
                self.dispatched.insert(r);
            }
            let sent = self.dispatched.contains(&r) || self.reported.contains(&r);
            if attempt.cancel_requested && sent && self.cancels_sent.insert(r) {
                self.send(ServerMessage::CancelTask { attempt: r }).await?;
            }
        }
        Ok(())
    }

    /// The attempts the agent holds now, remembered for checking events.
    async fn read_held(&mut self) -> Result<Vec<HeldAttempt>, SessionEnd> {
        let held = attempts::held_by(&self.ctx.db, &self.agent.id).await?;
        self.held = held
            .iter()
            .map(|a| {
                let known = Known {
                    run_id: a.run_id,
                    task: a.task.clone(),
                    started: a.started,
                };
                (a.id, known)
            })
            .collect();
        let runs: HashSet<i64> = held.iter().map(|a| a.run_id).collect();
        self.steps.retain(|run, _| runs.contains(run));
        Ok(held)
    }

    /// Prepares and sends one attempt; false when it could not execute
    /// here (its task ended with the reason).
    async fn send_attempt(&mut self, attempt: &HeldAttempt) -> Result<bool, SessionEnd> {
        let link = Link::Remote {
            agent: &self.agent.id,
            secure: self.secure_link,
            runs_shell: self.runs_shell,
        };
        let inline = xene_core::protocol::INLINE_OUTPUTS;
        let mut dispatch = match dispatch::prepare_attempt(self.ctx, attempt, link, inline).await? {
            PreparedAttempt::Send(dispatch) => dispatch,
            PreparedAttempt::Failed(_) => return Ok(false),
        };
        // The agent's spans for the attempt continue this one's trace.
        let span = tracing::info_span!(
            "dispatch",
            run_id = attempt.run_id,
            task = %attempt.task,
            attempt = attempt.number,
            workflow = %dispatch.workflow,
            pipeline = %dispatch.pipeline_name,
        );
        self.ctx.metrics.run_traces.adopt(attempt.run_id, &span);
        let traceparent = xene_agent::telemetry::traceparent(&span);
        span.in_scope(|| {
            tracing::debug!(
                at = now_ms(),
                traceparent = traceparent.as_deref(),
                "dispatching"
            );
        });
        dispatch.traceparent = traceparent;
        self.send(ServerMessage::TaskDispatch(dispatch)).await?;
        Ok(true)
    }

    /// Squares what the agent says it holds with what the database says it
    /// holds, after a (re)connect.
    pub(super) async fn reconcile(&mut self) -> Result<(), SessionEnd> {
        let held = self.read_held().await?;
        for attempt in &held {
            if self.reported.contains(&AttemptRef { id: attempt.id }) {
                continue;
            }
            // Never started: it is simply sent again. Started and not
            // reported: the agent lost it (it restarted), so the supervisor
            // deals with it now (a retry, or the task ends unknown).
            if attempt.started {
                attempts::end_lease(&self.ctx.db, attempt.id, &self.agent.id).await?;
            }
        }
        let strays: Vec<AttemptRef> = self
            .reported
            .iter()
            .filter(|r| !self.held.contains_key(&r.id))
            .copied()
            .collect();
        self.stop_strays(strays).await
    }

    /// Attempts the agent reports that it does not hold (as last read):
    /// one that finished here keeps being reported until its last events
    /// are acknowledged; any other is stopped.
    async fn stop_strays(&mut self, strays: Vec<AttemptRef>) -> Result<(), SessionEnd> {
        for r in strays {
            if self.stops_sent.contains(&r) {
                continue;
            }
            let finishing = attempts::get(&self.ctx.db, r.id).await?.is_some_and(|a| {
                a.agent_id.as_deref() == Some(self.agent.id.as_str()) && a.status != "unknown"
            });
            if !finishing {
                self.stop(r).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn stop(&mut self, attempt: AttemptRef) -> Result<(), SessionEnd> {
        if self.stops_sent.insert(attempt) {
            self.send(ServerMessage::StopTask { attempt }).await?;
        }
        Ok(())
    }

    pub(super) async fn heartbeat(&mut self, reported: Vec<AttemptRef>) -> Result<(), SessionEnd> {
        limits::check_attempts(&reported)
            .map_err(|e| SessionEnd::Protocol(format!("bad heartbeat: {e}")))?;
        // Written behind, with every other agent's, by the gateway's
        // liveness flush, which also renews the leases of every attempt the
        // agent holds and ends the sessions of agents revoked through any
        // replica: an idle agent costs no query.
        self.ctx.db.agent_seen(&self.agent.id);
        self.reported = reported.into_iter().collect();
        // A dispatch the agent did not take (it was full, or it never
        // arrived) is sent again by the next dispatch pass; one it took and
        // reports is not.
        let reported = &self.reported;
        let refused = self.dispatched.iter().any(|r| !reported.contains(r));
        self.dispatched.retain(|r| reported.contains(r));
        self.cancels_sent.retain(|r| reported.contains(r));
        self.stops_sent.retain(|r| reported.contains(r));
        let strays: Vec<AttemptRef> = self
            .reported
            .iter()
            .filter(|r| !self.held.contains_key(&r.id))
            .copied()
            .collect();
        self.send(ServerMessage::Pong).await?;
        self.end_unreported().await?;
        if refused {
            self.dispatch().await?;
        }
        self.stop_strays(strays).await
    }

    /// Ends the leases of started attempts the agent no longer reports,
    /// between reconnects too (it lost them without restarting): renewal
    /// would otherwise keep them running forever. An attempt that finished
    /// since the last read is not touched (`end_lease` needs it placed or
    /// running), and one that was not started then is left to the next
    /// read: the agent reports an attempt from the moment it takes it.
    async fn end_unreported(&mut self) -> Result<(), SessionEnd> {
        let lost: Vec<i64> = self
            .held
            .iter()
            .filter(|(id, known)| {
                known.started && !self.reported.contains(&AttemptRef { id: **id })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            attempts::end_lease(&self.ctx.db, id, &self.agent.id).await?;
            self.held.remove(&id);
        }
        Ok(())
    }

    /// The attempt's run and task, if the agent holds it.
    async fn known(&mut self, attempt: AttemptRef) -> Result<Option<Known>, SessionEnd> {
        if let Some(known) = self.held.get(&attempt.id) {
            return Ok(Some(known.clone()));
        }
        // Finished since the last read (its last events resent after a
        // reconnect), or never this agent's.
        let row = attempts::get(&self.ctx.db, attempt.id).await?;
        Ok(row
            .filter(|a| a.agent_id.as_deref() == Some(self.agent.id.as_str()))
            .map(|a| Known {
                run_id: a.run_id,
                task: a.task,
                started: false,
            }))
    }

    /// The run's task and step names, read once per run and session.
    async fn steps_of(
        &mut self,
        run_id: i64,
    ) -> Result<Arc<BTreeMap<String, BTreeSet<String>>>, SessionEnd> {
        if let Some(steps) = self.steps.get(&run_id) {
            return Ok(steps.clone());
        }
        if self.steps.len() >= limits::MAX_RUNNING {
            self.steps.clear();
        }
        let steps = Arc::new(runs::task_steps(&self.ctx.db, run_id).await?);
        self.steps.insert(run_id, steps.clone());
        Ok(steps)
    }

    pub(super) async fn events(
        &mut self,
        attempt: AttemptRef,
        first_seq: u64,
        events: Vec<RunEvent>,
    ) -> Result<(), SessionEnd> {
        if events.is_empty() {
            return Ok(());
        }
        // Numbers come off the wire: out of range is a protocol error, not
        // an overflow.
        let last = first_seq
            .checked_add(events.len() as u64 - 1)
            .filter(|last| i64::try_from(*last).is_ok())
            .ok_or_else(|| {
                SessionEnd::Protocol(format!("event number {first_seq} is out of range"))
            })?;
        let Some(known) = self.known(attempt).await? else {
            return self.stop(attempt).await;
        };
        let starts = events
            .iter()
            .any(|e| matches!(e, RunEvent::TaskStarted { .. }));
        let steps = self.steps_of(known.run_id).await?;
        let empty = BTreeSet::new();
        let task_steps = steps.get(&known.task).unwrap_or(&empty);
        limits::check_task_events(&events, &known.task, task_steps)
            .map_err(|e| SessionEnd::Protocol(format!("bad events: {e}")))?;
        // A big batch goes in several transactions, each recording its
        // events' numbers: a crash in between loses nothing.
        let mut seq = first_seq;
        for group in limits::groups(&events, limits::APPLY_BYTES) {
            let started = std::time::Instant::now();
            let applied =
                events::apply_attempt(&self.ctx.db, attempt, &self.agent.id, seq, group).await;
            self.ctx.metrics.observe_event_apply(started.elapsed());
            match applied {
                Ok(applied) if applied.stale => return self.stop(attempt).await,
                Ok(applied) => {
                    // Events already stored (a resend) are a prefix.
                    let fresh = &group[group.len() - applied.new.min(group.len())..];
                    crate::controllers::observe_applied(self.ctx, known.run_id, fresh, &applied)
                        .await;
                }
                Err(ApplyError::Storage(e)) => return Err(e.into()),
                Err(refused) => {
                    return Err(SessionEnd::Protocol(format!("bad events: {refused}")));
                }
            }
            seq += group.len() as u64;
        }
        // From now on a heartbeat without it means the agent lost it.
        if starts && let Some(held) = self.held.get_mut(&attempt.id) {
            held.started = true;
        }
        self.send(ServerMessage::TaskAck { attempt, seq: last })
            .await
    }

    /// The next page of the outputs an attempt reads.
    pub(super) async fn fetch_outputs(
        &mut self,
        attempt: AttemptRef,
        after: Option<String>,
    ) -> Result<(), SessionEnd> {
        if after
            .as_ref()
            .is_some_and(|a| a.len() > xene_core::parse::MAX_ENV_NAME_LEN)
        {
            return Err(SessionEnd::Protocol(
                "bad fetch_outputs: `after` is longer than any task name".into(),
            ));
        }
        let Some(known) = self.known(attempt).await? else {
            return self.stop(attempt).await;
        };
        let Some(reads) = self.reads(&known).await? else {
            return self.stop(attempt).await;
        };
        let (results, next) = attempts::read_outputs(
            &self.ctx.db,
            known.run_id,
            &reads,
            after.as_deref(),
            OUTPUT_PAGE,
        )
        .await?;
        self.send(ServerMessage::Outputs {
            attempt,
            results,
            next,
        })
        .await
    }

    /// The tasks whose results the attempt's task reads (none when its
    /// run or pipeline is gone).
    async fn reads(&self, known: &Known) -> Result<Option<BTreeSet<String>>, StorageError> {
        let Some(run) = runs::get_run(&self.ctx.db, known.run_id).await? else {
            return Ok(None);
        };
        let pipeline = self
            .ctx
            .specs
            .pipeline(&self.ctx.db, &run.workflow, run.version, &run.pipeline)
            .await?;
        Ok(pipeline.and_then(|p| p.tasks.get(&known.task).map(xene_core::plan::reads)))
    }
}
