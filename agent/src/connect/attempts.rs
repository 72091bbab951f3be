//! The task attempts this agent holds (protocol 2): each one's executor
//! task and cancel token, the outputs it still fetches before it starts,
//! and its numbered events that the server has not acknowledged yet.
//!
//! This state outlives connections: an attempt keeps executing while the
//! agent reconnects, and its unacknowledged events are sent again on the
//! next connection with the same numbers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use xene_core::event::RunEvent;
use xene_core::protocol::{AgentMessage, AttemptRef, TaskDispatch};
use xene_core::status::TaskStatus;

use super::batch::{MAX_LOGS_BYTES, take_batch};
use super::blobs::BlobHttp;
use super::files::{ConnectedFiles, FilesHub};
use crate::{AttemptRequest, Executor, new_run_id};

/// Past this many unacknowledged events (all attempts together) the agent
/// stops taking events from its executors, which then wait: a server that
/// does not acknowledge slows the steps' output down instead of growing
/// memory.
const MAX_PENDING: usize = 100_000;

/// The most attempts a `Hello` or a heartbeat names (the server's bound).
pub const MAX_HELD: usize = 1024;

/// What an executor task reports.
#[derive(Debug)]
pub enum Report {
    Event(AttemptRef, RunEvent),
    Finished(AttemptRef),
}

/// Why a dispatch was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    AlreadyRunning,
    AtCapacity,
}

/// An attempt whose dispatch said `more_outputs`: it starts once the last
/// page has come.
struct Fetching {
    dispatch: Box<TaskDispatch>,
    /// The tasks whose results it reads: nothing else is taken in.
    reads: BTreeSet<String>,
    /// The last name received: the next page starts after it.
    after: Option<String>,
    /// `FetchOutputs` for the next page went out on this connection.
    asked: bool,
}

struct Attempt {
    task: String,
    cancel: CancellationToken,
    /// Notified once the server acknowledged its `TaskStarted` (stored
    /// it): only then does it prepare its context and run steps.
    delivered: Arc<Notify>,
    /// `Some` until every output it reads has come.
    fetching: Option<Fetching>,
    /// The number of `pending[0]`: every event before it is acknowledged.
    acked: u64,
    pending: VecDeque<RunEvent>,
    /// Events numbered below this were sent on the current connection.
    sent: u64,
    /// Events numbered below this were sent on some connection: they may be
    /// stored already, so nothing may be merged into them (a resend would
    /// be recognised by its number and its new lines dropped).
    ever_sent: u64,
    /// Its `TaskFinished` is reported: its slot is free, though its
    /// context may still be being removed.
    ended: bool,
    /// Its executor task has ended (its last event is in `pending`).
    finished: bool,
    /// The server took it away: its events are dropped.
    stopped: bool,
    /// The agent shuts down and stops it: the end this causes is not
    /// reported (the server's lease rules decide what becomes of it), but
    /// everything else it produced is still sent.
    quitting: bool,
}

impl Attempt {
    fn next_seq(&self) -> u64 {
        self.acked + self.pending.len() as u64
    }

    /// Nothing more to do for it: executor done, events acknowledged or
    /// no longer wanted.
    fn done(&self) -> bool {
        self.finished && (self.stopped || self.pending.is_empty())
    }

    /// Takes an event in; lines of one step join the last event while it is
    /// unsent: one event (and one stored row) per burst.
    fn push(&mut self, event: RunEvent) {
        if matches!(event, RunEvent::TaskFinished { .. }) {
            self.ended = true;
        }
        let quit = self.quitting
            && matches!(
                event,
                RunEvent::TaskFinished {
                    status: TaskStatus::Cancelled,
                    ..
                }
            );
        if self.stopped || quit {
            return;
        }
        let unsent = self.next_seq() > self.sent.max(self.ever_sent);
        let merged = unsent
            && self.pending.back_mut().is_some_and(|last| {
                matches!(last, RunEvent::Log { .. } | RunEvent::Logs { .. })
                    && last.absorb(&event, MAX_LOGS_BYTES)
            });
        if !merged {
            self.pending.push_back(event);
        }
    }

    /// Ends an attempt that never started: its only event says how.
    fn end_unstarted(&mut self, status: TaskStatus, error: Option<String>) {
        self.fetching = None;
        self.push(RunEvent::TaskFinished {
            task: self.task.clone(),
            status,
            output: None,
            duration_ms: 0,
            attempt: 0,
            error,
            retry_in_ms: None,
        });
        self.finished = true;
    }
}

pub struct Attempts {
    executor: Arc<Executor>,
    /// Tells this process's attempts apart from an earlier one's (the
    /// middle of `XENE_RUN_ID` and every context id).
    incarnation: String,
    capacity: usize,
    attempts: BTreeMap<AttemptRef, Attempt>,
    reports_tx: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
    /// The attempts' requests about files, sent on the session.
    files: Arc<FilesHub>,
    /// Moves artifact bytes; without it, attempts get no file channel
    /// (and a task with artifacts fails).
    http: Option<Arc<BlobHttp>>,
}

impl Attempts {
    pub fn new(executor: Arc<Executor>, capacity: usize) -> Self {
        let (reports_tx, reports) = mpsc::channel(1024);
        Self {
            executor,
            incarnation: new_run_id(),
            capacity: capacity.max(1),
            attempts: BTreeMap::new(),
            reports_tx,
            reports,
            files: Arc::new(FilesHub::default()),
            http: None,
        }
    }

    /// Attempts move artifact bytes with `http`.
    pub fn with_http(mut self, http: Arc<BlobHttp>) -> Self {
        self.http = Some(http);
        self
    }

    /// Requests about files wait for their answers here.
    pub fn with_files(mut self, files: Arc<FilesHub>) -> Self {
        self.files = files;
        self
    }

    /// The attempts' requests about files, for the session to send and
    /// to answer.
    pub fn files(&self) -> Arc<FilesHub> {
        self.files.clone()
    }

    /// Takes a dispatched attempt, unless it is already here (a dispatch
    /// repeated after a reconnect) or the agent is full. It starts at once,
    /// or once the outputs it reads have come (`more_outputs`).
    pub fn dispatch(&mut self, dispatch: TaskDispatch) -> Result<(), Refusal> {
        let attempt = dispatch.attempt;
        if self.attempts.contains_key(&attempt) {
            return Err(Refusal::AlreadyRunning);
        }
        if self.busy() >= self.capacity {
            return Err(Refusal::AtCapacity);
        }
        let task = dispatch.task.clone();
        let (fetching, now) = if dispatch.more_outputs {
            let fetching = Fetching {
                reads: xene_core::plan::reads(&dispatch.spec),
                after: dispatch.outputs.keys().next_back().cloned(),
                asked: false,
                dispatch: Box::new(dispatch),
            };
            (Some(fetching), None)
        } else {
            (None, Some(dispatch))
        };
        self.attempts.insert(
            attempt,
            Attempt {
                task,
                cancel: CancellationToken::new(),
                delivered: Arc::new(Notify::new()),
                fetching,
                acked: 0,
                pending: VecDeque::new(),
                sent: 0,
                ever_sent: 0,
                ended: false,
                finished: false,
                stopped: false,
                quitting: false,
            },
        );
        if let Some(dispatch) = now {
            self.start(dispatch);
        }
        Ok(())
    }

    /// A page of the outputs an attempt reads. Only results it reads, in
    /// name order after the last page, are taken; the last page starts it.
    pub fn outputs(
        &mut self,
        attempt: AttemptRef,
        results: BTreeMap<String, xene_core::context::TaskResult>,
        next: Option<String>,
    ) {
        let Some(state) = self.attempts.get_mut(&attempt) else {
            return;
        };
        let Some(fetching) = state.fetching.as_mut() else {
            return;
        };
        for (name, result) in results {
            let in_order = fetching.after.as_ref().is_none_or(|after| name > *after);
            if fetching.reads.contains(&name) && in_order {
                fetching.dispatch.outputs.insert(name, result);
            } else {
                tracing::warn!(
                    attempt = attempt.id,
                    task = name,
                    "an output it does not read, or out of order: ignored"
                );
            }
        }
        match next {
            // Names only grow, and it reads a bounded set: the pages end.
            Some(next) if fetching.after.as_ref().is_none_or(|after| next > *after) => {
                fetching.after = Some(next);
                fetching.asked = false;
            }
            Some(_) => {
                let error = "the server sent the outputs out of order".to_string();
                state.end_unstarted(TaskStatus::Error, Some(error));
                self.forget_if_done(attempt);
            }
            None => {
                let fetching = state.fetching.take().expect("checked above");
                if let Some(error) = missing_outputs(&fetching) {
                    state.end_unstarted(TaskStatus::Error, Some(error));
                    self.forget_if_done(attempt);
                    return;
                }
                self.start(*fetching.dispatch);
            }
        }
    }

    /// Starts the executor task of a dispatch whose outputs are all here.
    fn start(&mut self, dispatch: TaskDispatch) {
        let attempt = dispatch.attempt;
        let Some(state) = self.attempts.get(&attempt) else {
            return;
        };
        // The attempt's task inside its run, inside the session: its logs
        // name the agent, the run, the workflow and the task; its trace
        // joins the server's dispatch.
        let run_span = tracing::info_span!(
            "run",
            run_id = dispatch.run_id,
            workflow = %dispatch.workflow,
            pipeline = %dispatch.pipeline_name,
        );
        if let Some(parent) = &dispatch.traceparent {
            crate::telemetry::set_remote_parent(&run_span, parent);
        }
        let span = tracing::info_span!(
            parent: &run_span,
            "task",
            task = %dispatch.task,
            attempt = dispatch.number,
            attempt_id = attempt.id,
        );
        let mut request = AttemptRequest::from_dispatch(dispatch, &self.incarnation);
        request.delivered = Some(state.delivered.clone());
        request.files = self.http.as_ref().map(|http| {
            Arc::new(ConnectedFiles {
                attempt,
                hub: self.files.clone(),
                http: http.clone(),
            }) as Arc<dyn crate::executor::files::FileChannel>
        });
        tokio::spawn(tracing::Instrument::instrument(
            execute(
                self.executor.clone(),
                attempt,
                request,
                state.cancel.clone(),
                self.reports_tx.clone(),
            ),
            span,
        ));
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
            Report::Event(attempt, event) => {
                if let Some(state) = self.attempts.get_mut(&attempt) {
                    state.push(event);
                }
            }
            Report::Finished(attempt) => {
                if let Some(state) = self.attempts.get_mut(&attempt) {
                    state.finished = true;
                }
                self.forget_if_done(attempt);
            }
        }
    }

    /// The server stored every event of `attempt` up to `seq`. Its first
    /// event is its `TaskStarted`: once that is stored, the attempt may
    /// prepare its context and run steps (a server that never stored the
    /// start may place it again without using a retry).
    pub fn ack(&mut self, attempt: AttemptRef, seq: u64) {
        let Some(state) = self.attempts.get_mut(&attempt) else {
            return;
        };
        if seq >= state.acked {
            let count = (seq - state.acked + 1).min(state.pending.len() as u64);
            if state.acked == 0 && count > 0 {
                state.delivered.notify_one();
            }
            state.pending.drain(..count as usize);
            state.acked += count;
            state.sent = state.sent.max(state.acked);
        }
        self.forget_if_done(attempt);
    }

    /// The user cancelled the run: the attempt stops, runs no `post` steps,
    /// and reports `cancelled`.
    pub fn cancel(&mut self, attempt: AttemptRef) {
        if let Some(state) = self.attempts.get_mut(&attempt) {
            state.quitting = false;
            if state.fetching.is_some() {
                state.end_unstarted(TaskStatus::Cancelled, None);
            }
            state.cancel.cancel();
        }
    }

    /// The attempt is not this agent's any more: stop it and drop its
    /// events.
    pub fn stop(&mut self, attempt: AttemptRef) {
        if let Some(state) = self.attempts.get_mut(&attempt) {
            state.cancel.cancel();
            state.stopped = true;
            state.pending.clear();
            if state.fetching.take().is_some() {
                state.finished = true;
            }
        }
        self.forget_if_done(attempt);
    }

    /// The agent shuts down: every attempt is killed as for `StopTask`,
    /// and the `cancelled` end that causes is not reported, so the server
    /// re-places or retries it by its lease rules (as for a lost agent).
    /// An end it reached by itself, and every other event, still goes out.
    pub fn quit_all(&mut self) {
        let all: Vec<AttemptRef> = self.attempts.keys().copied().collect();
        for attempt in all {
            let state = self.attempts.get_mut(&attempt).expect("listed");
            state.quitting = true;
            state.cancel.cancel();
            if state.fetching.take().is_some() {
                state.finished = true;
            }
            self.forget_if_done(attempt);
        }
    }

    pub fn cancel_all(&mut self) {
        let all: Vec<AttemptRef> = self.attempts.keys().copied().collect();
        for attempt in all {
            self.cancel(attempt);
        }
    }

    fn forget_if_done(&mut self, attempt: AttemptRef) {
        if self.attempts.get(&attempt).is_some_and(Attempt::done) {
            self.attempts.remove(&attempt);
        }
    }

    /// A new connection: nothing has been sent on it yet, and what was
    /// asked about files on the last one is asked again.
    pub fn rewind(&mut self) {
        self.files.reconnected();
        for state in self.attempts.values_mut() {
            state.sent = state.acked;
            if let Some(fetching) = &mut state.fetching {
                fetching.asked = false;
            }
        }
    }

    /// The next message to send on this connection: a batch of events not
    /// yet sent, else a request for the next page of outputs, else one
    /// about files.
    pub fn next_message(&mut self) -> Option<AgentMessage> {
        self.next_batch()
            .or_else(|| self.next_fetch())
            .or_else(|| self.files.next_message())
    }

    fn next_batch(&mut self) -> Option<AgentMessage> {
        let (attempt, state) = self
            .attempts
            .iter_mut()
            .find(|(_, s)| !s.stopped && s.sent < s.next_seq())?;
        let start = (state.sent - state.acked) as usize;
        let events = take_batch(state.pending.range(start..));
        let first_seq = state.sent;
        state.sent += events.len() as u64;
        state.ever_sent = state.ever_sent.max(state.sent);
        Some(AgentMessage::TaskEvents {
            attempt: *attempt,
            first_seq,
            events,
        })
    }

    fn next_fetch(&mut self) -> Option<AgentMessage> {
        let (attempt, fetching) = self.attempts.iter_mut().find_map(|(attempt, s)| {
            let fetching = s.fetching.as_mut().filter(|f| !f.asked)?;
            Some((*attempt, fetching))
        })?;
        fetching.asked = true;
        Some(AgentMessage::FetchOutputs {
            attempt,
            after: fetching.after.clone(),
        })
    }

    /// The attempts this agent holds for the server: fetching, executing,
    /// or with events not acknowledged yet; those still executing first,
    /// at most [`MAX_HELD`].
    pub fn held(&self) -> Vec<AttemptRef> {
        let live = self.attempts.iter().filter(|(_, s)| !s.stopped);
        let (running, rest): (Vec<_>, Vec<_>) = live.partition(|(_, s)| !s.finished);
        let held: Vec<AttemptRef> = running
            .into_iter()
            .chain(rest)
            .map(|(attempt, _)| *attempt)
            .take(MAX_HELD)
            .collect();
        if held.len() == MAX_HELD {
            tracing::warn!("holding {MAX_HELD} attempts or more; naming only {MAX_HELD}");
        }
        held
    }

    /// Attempts that take a slot: not ended yet (fetching or running).
    /// Stopped ones count until they end: they use the machine until they
    /// are killed.
    pub fn busy(&self) -> usize {
        self.attempts
            .values()
            .filter(|s| !s.ended && !s.finished)
            .count()
    }

    /// Attempts whose executor task is still going (their context may
    /// still be being removed).
    pub fn executing(&self) -> usize {
        self.attempts.values().filter(|s| !s.finished).count()
    }

    /// Waits for every executor to end, taking in what they report.
    pub async fn finish_all(&mut self) {
        while self.executing() > 0 {
            let report = self.next_report().await;
            self.apply(report);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.attempts.is_empty()
    }

    fn pending_total(&self) -> usize {
        self.attempts.values().map(|s| s.pending.len()).sum()
    }
}

/// Every task it reads has ended, so the server sends each one's result:
/// a name still missing after the last page means the pages skipped it,
/// and the task would run on a wrong context. Names at most a few.
fn missing_outputs(fetching: &Fetching) -> Option<String> {
    let missing: Vec<&str> = fetching
        .reads
        .iter()
        .filter(|name| !fetching.dispatch.outputs.contains_key(*name))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return None;
    }
    let shown = missing[..missing.len().min(5)].join(", ");
    let more = match missing.len() {
        n if n > 5 => format!(" and {} more", n - 5),
        _ => String::new(),
    };
    Some(format!(
        "the server did not send the results of tasks it reads: {shown}{more}"
    ))
}

/// Runs one attempt, forwarding its events tagged with it, then says it
/// finished.
async fn execute(
    executor: Arc<Executor>,
    attempt: AttemptRef,
    request: AttemptRequest,
    cancel: CancellationToken,
    reports: mpsc::Sender<Report>,
) {
    let task = request.ids.task.clone();
    let (events, mut received) = mpsc::channel(256);
    let forward = async {
        let mut ended = false;
        while let Some(event) = received.recv().await {
            crate::metrics::METRICS.observe(&event);
            ended |= matches!(event, RunEvent::TaskFinished { .. });
            let _ = reports.send(Report::Event(attempt, event)).await;
        }
        ended
    };
    // Its own task, so that even a panic in the executor ends the attempt
    // for the server instead of leaving it running (and its lease renewed)
    // forever.
    let execution = tokio::spawn(tracing::Instrument::in_current_span(async move {
        let _running = crate::metrics::RunningTask::new();
        let report = executor.run_attempt(request, events, cancel).await;
        tracing::info!(
            status = %report.status,
            duration_ms = report.duration_ms,
            "task finished"
        );
        report
    }));
    let (result, ended) = tokio::join!(execution, forward);
    if let Err(e) = result
        && !ended
    {
        tracing::warn!(attempt = attempt.id, error = %e, "the executor crashed");
        let event = RunEvent::TaskFinished {
            task,
            status: TaskStatus::Error,
            output: None,
            duration_ms: 0,
            attempt: 0,
            error: Some(format!("the executor crashed: {e}")),
            retry_in_ms: None,
        };
        let _ = reports.send(Report::Event(attempt, event)).await;
    }
    let _ = reports.send(Report::Finished(attempt)).await;
}

#[cfg(test)]
mod tests;
