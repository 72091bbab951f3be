//! Applying the events an agent reports to the run's state, exactly once.
//!
//! Each event carries a number within its run attempt; the number is recorded
//! in the same transaction as the change it causes, so an event sent again
//! after a reconnect or a restart changes nothing the second time.

use xene_core::event::{LogStream, RunEvent};
use xene_core::status::TaskStatus;

use super::{Db, StorageError, now_ms};

mod attempt;
pub use attempt::{ApplyError, AttemptApplied, apply_attempt};

/// Whether the events could be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied (or already had been): `new` of them were new.
    Ok { new: u64 },
    /// The run is not this agent's attempt any more (reassigned, or gone):
    /// the agent should stop it.
    Stale,
}

/// Applies events numbered `first_seq`, `first_seq + 1`, ... for one attempt of a run held by `agent`.
pub async fn apply(
    db: &Db,
    run_id: i64,
    attempt: i64,
    agent: &str,
    first_seq: i64,
    events: &[RunEvent],
) -> Result<Applied, StorageError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    // An UPDATE, not a SELECT: it locks the run's row until this
    // transaction ends, so the supervisor cannot requeue the run (and the
    // scheduler hand it to another agent) while an old attempt's events are
    // being applied. On PostgreSQL a plain read would not wait.
    let held = sqlx::query(
        "UPDATE runs SET attempt = attempt WHERE id = $1 AND agent_id = $2 AND attempt = $3",
    )
    .bind(run_id)
    .bind(agent)
    .bind(attempt)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if held == 0 {
        return Ok(Applied::Stale);
    }
    let mut new = 0;
    // Consecutive lines of one step and stream become one stored chunk.
    let mut chunk: Option<PendingChunk> = None;
    for (i, event) in events.iter().enumerate() {
        let seq = first_seq + i as i64;
        // A log event's text is stored once, in its chunk; its number is
        // kept here so a resent one is recognised.
        let body = match event {
            RunEvent::Log { .. } | RunEvent::Logs { .. } => r#"{"type":"log"}"#.to_string(),
            _ => serde_json::to_string(event).expect("events serialize"),
        };
        let inserted = sqlx::query(
            "INSERT INTO run_events (run_id, attempt, seq, body, received_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (run_id, attempt, seq) DO NOTHING",
        )
        .bind(run_id)
        .bind(attempt)
        .bind(seq)
        .bind(body)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            continue;
        }
        new += 1;
        let output = match event {
            RunEvent::Log {
                task,
                step,
                stream,
                data,
            } => Some((task, step, stream, format!("{}\n", text(data)))),
            RunEvent::Logs {
                task,
                step,
                stream,
                data,
            } => Some((task, step, stream, text(data))),
            _ => None,
        };
        if let Some((task, step, stream, lines)) = output {
            let stream = match stream {
                LogStream::Stdout => "stdout",
                LogStream::Stderr => "stderr",
            };
            // An agent's event may carry more than a chunk holds: split at
            // line ends (a line itself is bounded by the agent), so no
            // chunk, and no read, grows past the bound.
            for piece in pieces(&lines, super::logs::MAX_CHUNK_BYTES) {
                match &mut chunk {
                    Some(c) if c.takes(task, step, stream, piece) => c.push(piece),
                    _ => {
                        if let Some(done) = chunk.take() {
                            done.store(&mut tx, db.log_cap(), run_id, attempt, now)
                                .await?;
                        }
                        let mut c = PendingChunk::new(task, step, stream);
                        c.push(piece);
                        chunk = Some(c);
                    }
                }
            }
            continue;
        }
        if let Some(done) = chunk.take() {
            done.store(&mut tx, db.log_cap(), run_id, attempt, now)
                .await?;
        }
        apply_one(&mut tx, run_id, event, now).await?;
    }
    if let Some(done) = chunk.take() {
        done.store(&mut tx, db.log_cap(), run_id, attempt, now)
            .await?;
    }
    tx.commit().await?;
    if new > 0 {
        // Feeds reread a run's state only when it changed, not per batch of lines.
        let only_logs = events
            .iter()
            .all(|e| matches!(e, RunEvent::Log { .. } | RunEvent::Logs { .. }));
        if only_logs {
            db.news().logs_grew(run_id).await;
        } else {
            db.news().run_changed(run_id).await;
        }
        if events
            .iter()
            .any(|e| matches!(e, RunEvent::RunFinished { .. }))
        {
            // Its agent has room again.
            db.news().room_freed();
        }
    }
    Ok(Applied::Ok { new })
}

/// `text` cut into pieces of at most `max` bytes, at line ends where a
/// line allows it (else at a character boundary); no empty piece.
fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() <= max {
            out.push(rest);
            break;
        }
        let mut cut = rest[..max].rfind('\n').map_or(0, |i| i + 1);
        if cut == 0 {
            cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// Lines waiting to be stored as one chunk.
struct PendingChunk {
    task: String,
    step: String,
    stream: &'static str,
    data: String,
    lines: i64,
}

impl PendingChunk {
    fn new(task: &str, step: &str, stream: &'static str) -> Self {
        Self {
            task: task.to_string(),
            step: step.to_string(),
            stream,
            data: String::new(),
            lines: 0,
        }
    }

    fn takes(&self, task: &str, step: &str, stream: &str, line: &str) -> bool {
        self.task == task
            && self.step == step
            && self.stream == stream
            && self.data.len() + line.len() < super::logs::MAX_CHUNK_BYTES
    }

    /// Appends whole lines, each ending in a newline.
    fn push(&mut self, lines: &str) {
        self.data.push_str(lines);
        self.lines += lines.matches('\n').count() as i64;
    }

    async fn store(
        self,
        tx: &mut super::WriteTx,
        cap: i64,
        run_id: i64,
        attempt: i64,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        super::logs::append(
            tx,
            cap,
            run_id,
            attempt,
            &self.task,
            &self.step,
            self.stream,
            &self.data,
            self.lines,
            now,
        )
        .await
    }
}

async fn apply_one(
    tx: &mut super::WriteTx,
    run_id: i64,
    event: &RunEvent,
    now: i64,
) -> Result<(), sqlx::Error> {
    match event {
        RunEvent::RunStarted { .. } => {
            sqlx::query(
                "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $1) \
                 WHERE id = $2 AND status IN ('starting_up', 'running')",
            )
            .bind(now)
            .bind(run_id)
            .execute(&mut **tx)
            .await?;
        }
        RunEvent::TaskStarted {
            task,
            attempt: task_attempt,
        } => {
            sqlx::query(
                "UPDATE task_runs SET status = 'running', attempt = $1, started_at = $2, finished_at = NULL, \
                 duration_ms = NULL, error = NULL WHERE run_id = $3 AND task = $4 AND status IN ('pending', 'running')",
            )
            .bind(*task_attempt as i64)
            .bind(now)
            .bind(run_id)
            .bind(task)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "UPDATE step_runs SET status = 'pending', exit_code = NULL, started_at = NULL, finished_at = NULL, \
                 duration_ms = NULL WHERE run_id = $1 AND task = $2 \
                 AND EXISTS (SELECT 1 FROM task_runs WHERE run_id = $1 AND task = $2 AND status = 'running')",
            )
            .bind(run_id)
            .bind(task)
            .execute(&mut **tx)
            .await?;
        }
        RunEvent::StepStarted { task, step } => {
            sqlx::query("UPDATE step_runs SET status = 'running', started_at = $1 WHERE run_id = $2 AND task = $3 AND name = $4 AND status = 'pending'")
                .bind(now)
                .bind(run_id)
                .bind(task)
                .bind(step)
                .execute(&mut **tx)
                .await?;
        }
        // Stored as chunks by `apply`.
        RunEvent::Log { .. } | RunEvent::Logs { .. } => {}
        RunEvent::StepFinished {
            task,
            step,
            status,
            exit_code,
            duration_ms,
        } => {
            sqlx::query(
                "UPDATE step_runs SET status = $1, exit_code = $2, finished_at = $3, duration_ms = $4 \
                 WHERE run_id = $5 AND task = $6 AND name = $7 AND status IN ('pending', 'running')",
            )
            .bind(status.as_str())
            .bind(exit_code.map(i64::from))
            .bind(now)
            .bind(*duration_ms as i64)
            .bind(run_id)
            .bind(task)
            .bind(step)
            .execute(&mut **tx)
            .await?;
        }
        RunEvent::TaskFinished {
            task,
            status,
            output,
            duration_ms,
            attempt: task_attempt,
            error,
            retry_in_ms,
        } => {
            if retry_in_ms.is_some() {
                // Not finished: it starts again after the backoff.
                sqlx::query(
                    "UPDATE task_runs SET error = $1, attempt = $2 WHERE run_id = $3 AND task = $4 AND status IN ('pending', 'running')",
                )
                .bind(error.as_deref().map(text))
                .bind(*task_attempt as i64)
                .bind(run_id)
                .bind(task)
                .execute(&mut **tx)
                .await?;
                return Ok(());
            }
            let never_started = matches!(status, TaskStatus::NotExecuted | TaskStatus::Skipped);
            sqlx::query(
                "UPDATE task_runs SET status = $1, output = $2, error = $3, finished_at = $4, duration_ms = $5, \
                 attempt = CASE WHEN $6 > 0 THEN $6 ELSE attempt END WHERE run_id = $7 AND task = $8 \
                 AND status IN ('pending', 'running')",
            )
            .bind(status.as_str())
            .bind(output.as_deref().map(text))
            .bind(error.as_deref().map(text))
            .bind(now)
            .bind(if never_started { None } else { Some(*duration_ms as i64) })
            .bind(*task_attempt as i64)
            .bind(run_id)
            .bind(task)
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE step_runs SET status = 'not_executed' WHERE run_id = $1 AND task = $2 AND status = 'pending'")
                .bind(run_id)
                .bind(task)
                .execute(&mut **tx)
                .await?;
        }
        // Only a final status ends a run: anything else would clear the
        // lease of a run that is still going and leave it stuck.
        RunEvent::RunFinished { status, .. } if !status.is_finished() => {}
        RunEvent::RunFinished { status, .. } => {
            let ended = sqlx::query(
                "UPDATE runs SET status = $1, finished_at = $2, lease_expires_at = NULL WHERE id = $3 \
                 AND status IN ('starting_up', 'running', 'shutting_down')",
            )
            .bind(status.as_str())
            .bind(now)
            .bind(run_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            // Final: nothing of it runs any more, whatever the agent last
            // reported of its tasks (L6).
            if ended == 1 {
                super::runs::leave_nothing_running(tx, run_id, *status).await?;
            }
        }
    }
    Ok(())
}

/// Whether any event of this run attempt was stored.
pub async fn has_events(db: &Db, run_id: i64, attempt: i64) -> Result<bool, StorageError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM run_events WHERE run_id = $1 AND attempt = $2 LIMIT 1")
            .bind(run_id)
            .bind(attempt)
            .fetch_optional(db.pool())
            .await?;
    Ok(found.is_some())
}

/// Text as both databases store it: PostgreSQL refuses NUL in text columns
/// (SQLite takes it), and step output may contain any byte.
fn text(value: &str) -> String {
    value.replace('\0', "\u{fffd}")
}
