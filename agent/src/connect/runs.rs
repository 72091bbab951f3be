//! The runs this agent holds: each one's executor task and cancel token, and
//! its numbered events that the server has not acknowledged yet.
//!
//! This state outlives connections: a run keeps executing while the agent
//! reconnects, and its unacknowledged events are sent again on the next
//! connection with the same numbers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xene_core::event::RunEvent;
use xene_core::protocol::{AgentMessage, Dispatch, RunRef};
use xene_core::status::RunStatus;

use crate::{Executor, RunRequest, new_run_id};

/// Most events in one `Events` message.
pub const MAX_BATCH: usize = 256;
/// The most bytes of one batch as sent (JSON), an eighth of what the server
/// takes in one message (8 MiB): a batch it refused would be resent forever.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// The most lines of output one event carries.
const MAX_LOGS_BYTES: usize = 64 * 1024;

/// An event's size as sent, or a little more: its texts as JSON escapes
/// them (a control character takes six bytes), its names, and room for the
/// rest.
fn event_size(event: &RunEvent) -> usize {
    let text = |t: &Option<String>| t.as_deref().map_or(0, escaped_len);
    match event {
        RunEvent::Log {
            task, step, data, ..
        }
        | RunEvent::Logs {
            task, step, data, ..
        } => escaped_len(data) + escaped_len(task) + escaped_len(step) + 64,
        RunEvent::TaskFinished {
            task,
            output,
            error,
            ..
        } => text(output) + text(error) + escaped_len(task) + 160,
        RunEvent::StepStarted { task, step } | RunEvent::StepFinished { task, step, .. } => {
            escaped_len(task) + escaped_len(step) + 128
        }
        RunEvent::TaskStarted { task, .. } => escaped_len(task) + 128,
        RunEvent::RunStarted { run_id, pipeline } => {
            escaped_len(run_id) + escaped_len(pipeline) + 128
        }
        RunEvent::RunFinished { .. } => 128,
    }
}

/// The length of `text` inside a JSON string.
fn escaped_len(text: &str) -> usize {
    text.len()
        + text
            .bytes()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

/// Past this many unacknowledged events (all runs together) the agent stops
/// taking events from its executors, which then wait: a server that does not
/// acknowledge slows the steps' output down instead of growing memory.
const MAX_PENDING: usize = 100_000;

/// What an executor task reports.
#[derive(Debug)]
pub enum Report {
    Event(RunRef, RunEvent),
    Finished(RunRef),
}

/// Why a dispatch was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    AlreadyRunning,
    AtCapacity,
}

struct Run {
    cancel: CancellationToken,
    /// The number of `pending[0]`: every event before it is acknowledged.
    acked: u64,
    pending: VecDeque<RunEvent>,
    /// Events numbered below this were sent on the current connection.
    sent: u64,
    /// Events numbered below this were sent on some connection: they may be
    /// stored already, so nothing may be merged into them (a resend would
    /// be recognised by its number and its new lines dropped).
    ever_sent: u64,
    /// Its executor task has ended (its last event is in `pending`).
    finished: bool,
    /// The server took it away: its events are dropped.
    stopped: bool,
}

impl Run {
    fn next_seq(&self) -> u64 {
        self.acked + self.pending.len() as u64
    }

    /// Nothing more to do for it: executor done, events acknowledged or
    /// no longer wanted.
    fn done(&self) -> bool {
        self.finished && (self.stopped || self.pending.is_empty())
    }
}

pub struct Runs {
    executor: Arc<Executor>,
    capacity: usize,
    runs: BTreeMap<RunRef, Run>,
    reports_tx: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
}

impl Runs {
    pub fn new(executor: Arc<Executor>, capacity: usize) -> Self {
        let (reports_tx, reports) = mpsc::channel(1024);
        Self {
            executor,
            capacity: capacity.max(1),
            runs: BTreeMap::new(),
            reports_tx,
            reports,
        }
    }

    /// Starts executing a dispatched run, unless it is already here (a
    /// dispatch repeated after a reconnect) or the agent is full.
    pub fn dispatch(&mut self, dispatch: Dispatch) -> Result<(), Refusal> {
        let run = dispatch.run;
        if self.runs.contains_key(&run) {
            return Err(Refusal::AlreadyRunning);
        }
        if self.executing() >= self.capacity {
            return Err(Refusal::AtCapacity);
        }
        let cancel = CancellationToken::new();
        self.runs.insert(
            run,
            Run {
                cancel: cancel.clone(),
                acked: 0,
                pending: VecDeque::new(),
                sent: 0,
                ever_sent: 0,
                finished: false,
                stopped: false,
            },
        );
        let request = RunRequest {
            // Unique per attempt and per agent process: the runtimes name
            // directories and containers after it.
            run_id: format!("{}-{}-{}", run.run_id, run.attempt, new_run_id()),
            pipeline_name: dispatch.pipeline_name,
            pipeline: dispatch.pipeline,
            params: dispatch.params,
            secrets: dispatch.secrets,
            completed: dispatch.completed,
        };
        // The run's span joins the session's, so its tasks' logs name the
        // agent, the run and the workflow.
        let span = tracing::info_span!(
            "run",
            run_id = run.run_id,
            attempt = run.attempt,
            workflow = %dispatch.workflow,
            pipeline = %request.pipeline_name,
        );
        if let Some(parent) = &dispatch.traceparent {
            crate::telemetry::set_remote_parent(&span, parent);
        }
        tokio::spawn(tracing::Instrument::instrument(
            execute(
                self.executor.clone(),
                run,
                request,
                cancel,
                self.reports_tx.clone(),
            ),
            span,
        ));
        Ok(())
    }

    /// The next report of an executor; waits while too many events are
    /// unacknowledged.
    pub async fn next_report(&mut self) -> Report {
        if self.pending_total() >= MAX_PENDING {
            std::future::pending::<()>().await;
        }
        self.reports
            .recv()
            .await
            .expect("the sender lives in `self`")
    }

    /// A report that is already waiting, if any (to batch events).
    pub fn try_next_report(&mut self) -> Option<Report> {
        if self.pending_total() >= MAX_PENDING {
            return None;
        }
        self.reports.try_recv().ok()
    }

    pub fn apply(&mut self, report: Report) {
        match report {
            Report::Event(run, event) => {
                if let Some(state) = self.runs.get_mut(&run)
                    && !state.stopped
                {
                    // Lines of one step join the last event while it is
                    // unsent: one event (and one stored row) per burst.
                    let unsent = state.next_seq() > state.sent.max(state.ever_sent);
                    let merged = unsent
                        && state.pending.back_mut().is_some_and(|last| {
                            matches!(last, RunEvent::Log { .. } | RunEvent::Logs { .. })
                                && last.absorb(&event, MAX_LOGS_BYTES)
                        });
                    if !merged {
                        state.pending.push_back(event);
                    }
                }
            }
            Report::Finished(run) => {
                if let Some(state) = self.runs.get_mut(&run) {
                    state.finished = true;
                }
                self.forget_if_done(run);
            }
        }
    }

    /// The server stored every event of `run` up to `seq`.
    pub fn ack(&mut self, run: RunRef, seq: u64) {
        let Some(state) = self.runs.get_mut(&run) else {
            return;
        };
        if seq >= state.acked {
            let count = (seq - state.acked + 1).min(state.pending.len() as u64);
            state.pending.drain(..count as usize);
            state.acked += count;
            state.sent = state.sent.max(state.acked);
        }
        self.forget_if_done(run);
    }

    /// The user cancelled `run`: its executor stops and reports `Cancelled`.
    pub fn cancel(&mut self, run: RunRef) {
        if let Some(state) = self.runs.get(&run) {
            state.cancel.cancel();
        }
    }

    /// `run` is not this agent's any more: stop it and drop its events.
    pub fn stop(&mut self, run: RunRef) {
        if let Some(state) = self.runs.get_mut(&run) {
            state.cancel.cancel();
            state.stopped = true;
            state.pending.clear();
        }
        self.forget_if_done(run);
    }

    pub fn cancel_all(&mut self) {
        for state in self.runs.values() {
            state.cancel.cancel();
        }
    }

    fn forget_if_done(&mut self, run: RunRef) {
        if self.runs.get(&run).is_some_and(Run::done) {
            self.runs.remove(&run);
        }
    }

    /// A new connection: nothing has been sent on it yet.
    pub fn rewind(&mut self) {
        for state in self.runs.values_mut() {
            state.sent = state.acked;
        }
    }

    /// The next batch of events not yet sent on this connection.
    pub fn next_batch(&mut self) -> Option<AgentMessage> {
        let (run, state) = self
            .runs
            .iter_mut()
            .find(|(_, s)| !s.stopped && s.sent < s.next_seq())?;
        let start = (state.sent - state.acked) as usize;
        let end = state.pending.len().min(start + MAX_BATCH);
        // Also bounded by size, well under the server's message limit: log
        // lines may be long, and a batch the server refuses would be resent
        // forever. One event always goes, whatever its size.
        let mut bytes = 0;
        let events: Vec<RunEvent> = state
            .pending
            .range(start..end)
            .take_while(|event| {
                let fits = bytes == 0 || bytes + event_size(event) <= MAX_BATCH_BYTES;
                bytes += event_size(event);
                fits
            })
            .cloned()
            .collect();
        let first_seq = state.sent;
        state.sent += events.len() as u64;
        state.ever_sent = state.ever_sent.max(state.sent);
        Some(AgentMessage::Events {
            run: *run,
            first_seq,
            events,
        })
    }

    /// The runs this agent holds for the server: executing, or with events
    /// not acknowledged yet.
    pub fn held(&self) -> Vec<RunRef> {
        self.runs
            .iter()
            .filter(|(_, s)| !s.stopped)
            .map(|(run, _)| *run)
            .collect()
    }

    /// Runs whose executor is still going (stopped ones included: they
    /// still use the machine until they are killed).
    pub fn executing(&self) -> usize {
        self.runs.values().filter(|s| !s.finished).count()
    }

    /// Waits for every executor to end, taking in what they report.
    pub async fn finish_all(&mut self) {
        while self.executing() > 0 {
            let report = self.next_report().await;
            self.apply(report);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    fn pending_total(&self) -> usize {
        self.runs.values().map(|s| s.pending.len()).sum()
    }
}

/// Executes one run, forwarding its events tagged with the run, then says
/// it finished.
async fn execute(
    executor: Arc<Executor>,
    run: RunRef,
    request: RunRequest,
    cancel: CancellationToken,
    reports: mpsc::Sender<Report>,
) {
    let (events, mut received) = mpsc::channel(256);
    let forward = async {
        while let Some(event) = received.recv().await {
            crate::metrics::METRICS.observe(&event);
            let _ = reports.send(Report::Event(run, event)).await;
        }
    };
    // Its own task, so that even a panic in the executor ends the run for
    // the server instead of leaving it running (and its lease renewed)
    // forever.
    let execution = tokio::spawn(tracing::Instrument::in_current_span(async move {
        let _running = crate::metrics::RunningGuard::new();
        executor.run(request, events, cancel).await
    }));
    let (result, ()) = tokio::join!(execution, forward);
    let failure = match result {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("the executor crashed: {e}")),
    };
    if let Some(e) = failure {
        // The server validated the spec, so this is rare; the run must still
        // end for the server.
        tracing::warn!(run_id = run.run_id, attempt = run.attempt, error = %e, "run refused by the executor");
        let _ = reports
            .send(Report::Event(
                run,
                RunEvent::RunFinished {
                    status: RunStatus::Error,
                    duration_ms: 0,
                },
            ))
            .await;
    }
    let _ = reports.send(Report::Finished(run)).await;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use xene_core::event::LogStream;
    use xene_core::protocol::{Dispatch, RunRef};

    use super::*;
    use crate::ExecutorConfig;

    fn dispatch(run: RunRef) -> Dispatch {
        let workflow = xene_core::parse_workflow(
            "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [\"sleep 30\"]\n",
        )
        .unwrap();
        Dispatch {
            run,
            workflow: "w".into(),
            pipeline_name: "p".into(),
            pipeline: workflow.pipelines["p"].clone(),
            params: BTreeMap::new(),
            secrets: BTreeMap::new(),
            completed: BTreeMap::new(),
            traceparent: None,
        }
    }

    #[tokio::test]
    async fn batches_stay_under_the_size_bound_and_keep_every_event() {
        let mut runs = Runs::new(Arc::new(Executor::new(ExecutorConfig::default())), 1);
        let run = RunRef {
            run_id: 1,
            attempt: 1,
        };
        runs.dispatch(dispatch(run)).unwrap();
        let line = "x".repeat(600 * 1024);
        for _ in 0..5 {
            runs.apply(Report::Event(
                run,
                RunEvent::Log {
                    task: "t".into(),
                    step: "s".into(),
                    stream: LogStream::Stdout,
                    data: line.clone(),
                },
            ));
        }
        let mut logged = 0;
        while let Some(AgentMessage::Events { events, .. }) = runs.next_batch() {
            let size: usize = events.iter().map(event_size).sum();
            assert!(
                events.len() == 1 || size <= MAX_BATCH_BYTES,
                "a batch of {size} bytes"
            );
            logged += events
                .iter()
                .filter(|e| matches!(e, RunEvent::Log { .. }))
                .count();
        }
        assert_eq!(logged, 5);
        runs.cancel_all();
    }

    /// Control characters take six bytes each in JSON: a batch of them must
    /// still fit the server's message limit (8 MiB) as sent, with room.
    #[tokio::test]
    async fn batches_are_measured_as_sent() {
        let mut runs = Runs::new(Arc::new(Executor::new(ExecutorConfig::default())), 1);
        let run = RunRef {
            run_id: 1,
            attempt: 1,
        };
        runs.dispatch(dispatch(run)).unwrap();
        let line = "\u{1}".repeat(MAX_LOGS_BYTES);
        for _ in 0..64 {
            runs.apply(Report::Event(
                run,
                RunEvent::Log {
                    task: "t".into(),
                    step: "s".into(),
                    stream: LogStream::Stderr,
                    data: line.clone(),
                },
            ));
        }
        let mut sent = 0;
        while let Some(message) = runs.next_batch() {
            let wire = serde_json::to_string(&message).unwrap().len();
            assert!(wire <= MAX_BATCH_BYTES, "a batch of {wire} bytes as sent");
            sent += 1;
        }
        assert!(sent >= 24, "{sent} batches");
        runs.cancel_all();
    }
}
