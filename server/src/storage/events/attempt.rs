//! Events of one task attempt (runs of model 2), applied exactly once: the
//! ledger is `attempt_events`, keyed by (attempt, seq), written in the
//! transaction of the change each event causes. A `TaskFinished` makes the
//! task final (or retries it) and carries readiness in the same
//! transaction.

use xene_core::event::{LogStream, RunEvent};
use xene_core::protocol::AttemptRef;
use xene_core::status::{RunStatus, TaskStatus};

use super::{PendingChunk, pieces, text};
use crate::storage::attempts;
use crate::storage::readiness::{self, retries_of};
use crate::storage::{Db, StorageError, WriteTx, now_ms};

/// What applying an attempt's events did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptApplied {
    /// How many were new (the others had been applied before).
    pub new: usize,
    /// The attempt is not this agent's any more (lost and expired, or
    /// never its): nothing was applied, the agent should stop it
    /// (`StopTask`).
    pub stale: bool,
    /// These events started the run (its first task started).
    pub run_started: bool,
    /// These events ended the run, with this status.
    pub run_finished: Option<RunStatus>,
    /// The attempt ended and its slot went to this one, which had waited
    /// this long to be placed (ms).
    pub handed_off: Option<(i64, i64)>,
}

/// Events an attempt may not carry; nothing of the batch was applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("event {index} names task {named:?}, but attempt {attempt} runs task {task:?}")]
    OtherTask {
        index: usize,
        named: String,
        attempt: i64,
        task: String,
    },
    #[error("event {index} is a run's event ({kind}); an attempt reports only its task's")]
    RunEvent { index: usize, kind: &'static str },
    #[error("event {index} finishes the task with status {status}, which is not an end")]
    NotAnEnd { index: usize, status: &'static str },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

/// Applies events numbered `first_seq`, `first_seq + 1`, ... of `attempt`,
/// held by `agent`.
pub async fn apply_attempt(
    db: &Db,
    attempt: AttemptRef,
    agent: &str,
    first_seq: u64,
    events: &[RunEvent],
) -> Result<AttemptApplied, ApplyError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    // An UPDATE, not a SELECT: it locks the attempt's row until this
    // transaction ends, so the supervisor cannot expire it (and the
    // scheduler place its retry) while its events are being applied.
    let held: Option<(i64, String, i64)> = sqlx::query_as(
        "UPDATE task_attempts SET id = id WHERE id = $1 AND agent_id = $2 AND status <> 'unknown' \
         RETURNING run_id, task, number",
    )
    .bind(attempt.id)
    .bind(agent)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((run_id, task, number)) = held else {
        return Ok(AttemptApplied {
            new: 0,
            stale: true,
            run_started: false,
            run_finished: None,
            handed_off: None,
        });
    };
    check(attempt.id, &task, events)?;
    let mut new = 0;
    let mut news = Ended::default();
    let mut chunk: Option<PendingChunk> = None;
    for (i, event) in events.iter().enumerate() {
        let seq = first_seq.saturating_add(i as u64).min(i64::MAX as u64) as i64;
        let body = match event {
            RunEvent::Log { .. } | RunEvent::Logs { .. } => r#"{"type":"log"}"#.to_string(),
            _ => serde_json::to_string(event).expect("events serialize"),
        };
        let inserted = sqlx::query(
            "INSERT INTO attempt_events (attempt_id, seq, body, received_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (attempt_id, seq) DO NOTHING",
        )
        .bind(attempt.id)
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
                step, stream, data, ..
            } => Some((step, stream, format!("{}\n", text(data)))),
            RunEvent::Logs {
                step, stream, data, ..
            } => Some((step, stream, text(data))),
            _ => None,
        };
        if let Some((step, stream, lines)) = output {
            let stream = match stream {
                LogStream::Stdout => "stdout",
                LogStream::Stderr => "stderr",
            };
            for piece in pieces(&lines, crate::storage::logs::MAX_CHUNK_BYTES) {
                match &mut chunk {
                    Some(c) if c.takes(&task, step, stream, piece) => c.push(piece),
                    _ => {
                        if let Some(done) = chunk.take() {
                            done.store(&mut tx, db.log_cap(), run_id, number, now)
                                .await?;
                        }
                        let mut c = PendingChunk::new(&task, step, stream);
                        c.push(piece);
                        chunk = Some(c);
                    }
                }
            }
            continue;
        }
        if let Some(done) = chunk.take() {
            done.store(&mut tx, db.log_cap(), run_id, number, now)
                .await?;
        }
        let held = Held {
            id: attempt.id,
            run_id,
            task: &task,
            number,
            agent,
            cache_quota: db.quotas().cache_bytes,
        };
        news.absorb(apply_one(&mut tx, &held, event, now).await?);
    }
    if let Some(done) = chunk.take() {
        done.store(&mut tx, db.log_cap(), run_id, number, now)
            .await?;
    }
    let handed = match db.handoff_lease_ms() {
        Some(lease_ms) if news.attempt_ended => {
            attempts::hand_off(&mut tx, agent, run_id, now, lease_ms).await
        }
        _ => None,
    };
    tx.commit().await?;
    // The wake-ups of what runs next first: feeds' news waits for a round
    // trip to PostgreSQL, and must not delay the next task.
    if let Some(handed) = handed {
        // Its agent's slot went to the next task.
        db.news().agent_has_work(Some(agent));
        if handed.ended_run_limited {
            db.news().room_freed();
        }
        if handed.run_id != run_id {
            db.news().run_changed(handed.run_id).await;
        }
    } else if news.attempt_ended {
        // Its agent has a free slot.
        db.news().room_freed();
    }
    if news.ready {
        db.news().tasks_ready();
    }
    if new > 0 {
        let only_logs = events
            .iter()
            .all(|e| matches!(e, RunEvent::Log { .. } | RunEvent::Logs { .. }));
        if only_logs {
            db.news().logs_grew(run_id).await;
        } else {
            db.news().run_changed(run_id).await;
        }
    }
    Ok(AttemptApplied {
        new,
        stale: false,
        run_started: news.run_started,
        run_finished: news.run_finished,
        // Placed when it committed.
        handed_off: handed.map(|h| (h.attempt_id, now_ms() - h.ready_at)),
    })
}

/// Refuses a batch with an event an attempt may not carry, before any
/// change.
fn check(attempt: i64, task: &str, events: &[RunEvent]) -> Result<(), ApplyError> {
    for (index, event) in events.iter().enumerate() {
        let named = match event {
            RunEvent::RunStarted { .. } => {
                return Err(ApplyError::RunEvent {
                    index,
                    kind: "run_started",
                });
            }
            RunEvent::RunFinished { .. } => {
                return Err(ApplyError::RunEvent {
                    index,
                    kind: "run_finished",
                });
            }
            RunEvent::TaskFinished { status, .. } if !status.is_finished() => {
                return Err(ApplyError::NotAnEnd {
                    index,
                    status: status.as_str(),
                });
            }
            RunEvent::TaskStarted { task, .. }
            | RunEvent::StepStarted { task, .. }
            | RunEvent::Log { task, .. }
            | RunEvent::Logs { task, .. }
            | RunEvent::StepFinished { task, .. }
            | RunEvent::TaskFinished { task, .. }
            | RunEvent::CacheRestored { task, .. } => task,
        };
        if named != task {
            return Err(ApplyError::OtherTask {
                index,
                named: named.clone(),
                attempt,
                task: task.to_string(),
            });
        }
    }
    Ok(())
}

/// The attempt whose events apply.
struct Held<'a> {
    id: i64,
    run_id: i64,
    task: &'a str,
    number: i64,
    agent: &'a str,
    /// Its workflow's cache quota (bytes), for the caches it saves.
    cache_quota: u64,
}

/// What applying one event changed, for the news after commit.
#[derive(Debug, Default)]
struct Ended {
    attempt_ended: bool,
    ready: bool,
    run_started: bool,
    run_finished: Option<RunStatus>,
}

impl Ended {
    fn absorb(&mut self, other: Ended) {
        self.attempt_ended |= other.attempt_ended;
        self.ready |= other.ready;
        self.run_started |= other.run_started;
        self.run_finished = self.run_finished.or(other.run_finished);
    }
}

async fn apply_one(
    tx: &mut WriteTx,
    held: &Held<'_>,
    event: &RunEvent,
    now: i64,
) -> Result<Ended, sqlx::Error> {
    let Held {
        id,
        run_id,
        task,
        number,
        agent,
        ..
    } = *held;
    match event {
        RunEvent::TaskStarted { .. } => {
            let started = sqlx::query(
                "UPDATE task_attempts SET status = 'running', started_at = $1 WHERE id = $2 AND status = 'placed'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if started == 0 {
                return Ok(Ended::default());
            }
            sqlx::query(
                "UPDATE task_runs SET status = 'running', attempt = $1, agent_id = $2, started_at = $3, \
                 finished_at = NULL, duration_ms = NULL, error = NULL \
                 WHERE run_id = $4 AND task = $5 AND status IN ('pending', 'running')",
            )
            .bind(number)
            .bind(agent)
            .bind(now)
            .bind(run_id)
            .bind(task)
            .execute(&mut **tx)
            .await?;
            // A retry starts its steps afresh.
            sqlx::query(
                "UPDATE step_runs SET status = 'pending', exit_code = NULL, started_at = NULL, finished_at = NULL, \
                 duration_ms = NULL WHERE run_id = $1 AND task = $2 \
                 AND EXISTS (SELECT 1 FROM task_runs WHERE run_id = $1 AND task = $2 AND status = 'running')",
            )
            .bind(run_id)
            .bind(task)
            .execute(&mut **tx)
            .await?;
            let run_started = sqlx::query(
                "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $1) \
                 WHERE id = $2 AND status IN ('queued', 'starting_up')",
            )
            .bind(now)
            .bind(run_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            return Ok(Ended {
                run_started: run_started == 1,
                ..Ended::default()
            });
        }
        RunEvent::StepStarted { step, .. } => {
            sqlx::query(
                "UPDATE step_runs SET status = 'running', started_at = $1 WHERE run_id = $2 AND task = $3 \
                 AND name = $4 AND status = 'pending'",
            )
            .bind(now)
            .bind(run_id)
            .bind(task)
            .bind(step)
            .execute(&mut **tx)
            .await?;
        }
        RunEvent::StepFinished {
            step,
            status,
            exit_code,
            duration_ms,
            ..
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
            status,
            output,
            duration_ms,
            error,
            ..
        } => {
            return finished(
                tx,
                held,
                *status,
                output.as_deref(),
                error.as_deref(),
                *duration_ms,
                now,
            )
            .await;
        }
        // Stored as chunks by `apply_attempt`; refused by `check`.
        RunEvent::Log { .. }
        | RunEvent::Logs { .. }
        | RunEvent::RunStarted { .. }
        | RunEvent::RunFinished { .. } => {}
        // What its task's result will say to the tasks that read it.
        RunEvent::CacheRestored {
            cache, hit, key, ..
        } => {
            crate::storage::attempt_caches::record(tx, id, cache, *hit, key).await?;
        }
    }
    Ok(Ended::default())
}

/// The attempt ended `status`: the server retries a failed try while the
/// task has retries left (and its run is not being cancelled); otherwise
/// the task is final and readiness moves on, in this transaction.
async fn finished(
    tx: &mut WriteTx,
    held: &Held<'_>,
    status: TaskStatus,
    output: Option<&str>,
    error: Option<&str>,
    duration_ms: u64,
    now: i64,
) -> Result<Ended, sqlx::Error> {
    let (run_id, task) = (held.run_id, held.task);
    let error = error.map(text);
    let ended = sqlx::query(
        "UPDATE task_attempts SET status = $1, error = $2, finished_at = $3, duration_ms = $4 \
         WHERE id = $5 AND status IN ('placed', 'running')",
    )
    .bind(status.as_str())
    .bind(error.as_deref())
    .bind(now)
    .bind(duration_ms as i64)
    .bind(held.id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if ended == 0 {
        return Ok(Ended::default());
    }
    let policy: Option<(i64, Option<i64>, i64, i64)> = sqlx::query_as(
        "SELECT t.retries, t.backoff_ms, t.retries_used, r.cancel_requested FROM task_runs t \
         JOIN runs r ON r.id = t.run_id WHERE t.run_id = $1 AND t.task = $2 AND t.status IN ('pending', 'running')",
    )
    .bind(run_id)
    .bind(task)
    .fetch_optional(&mut **tx)
    .await?;
    // What it staged becomes visible with its end, or never: never from a
    // cancelled attempt (`when: always` included), nor once its task was
    // already final (its end changes nothing). A plain read of the task:
    // artifacts are written before tasks, as every writer takes them.
    if policy.is_none() || status == TaskStatus::Cancelled {
        crate::storage::artifacts::discard_staged(tx, held.id).await?;
    } else {
        let succeeded = status == TaskStatus::Success;
        crate::storage::artifacts::publish_attempt(tx, held.id, succeeded).await?;
    }
    // Caches outlive runs: saved whenever the attempt succeeded.
    let succeeded = status == TaskStatus::Success;
    crate::storage::caches::save_attempt(tx, held.id, succeeded, held.cache_quota).await?;
    let Some((retries, backoff_ms, used, cancel)) = policy else {
        return Ok(Ended {
            attempt_ended: true,
            ..Ended::default()
        });
    };
    if status == TaskStatus::Error && cancel == 0 && used < retries {
        sqlx::query("UPDATE task_runs SET error = $1 WHERE run_id = $2 AND task = $3")
            .bind(error.as_deref())
            .bind(run_id)
            .bind(task)
            .execute(&mut **tx)
            .await?;
        let policy = retries_of(retries, backoff_ms);
        attempts::retry(tx, run_id, task, used, policy, None, now).await?;
        return Ok(Ended {
            attempt_ended: true,
            ready: true,
            ..Ended::default()
        });
    }
    let moved = sqlx::query(
        "UPDATE task_runs SET status = $1, output = $2, error = $3, finished_at = $4, duration_ms = $5, \
         attempt = $6 WHERE run_id = $7 AND task = $8 AND status IN ('pending', 'running')",
    )
    .bind(status.as_str())
    .bind(output.map(text))
    .bind(error.as_deref())
    .bind(now)
    .bind(duration_ms as i64)
    .bind(held.number)
    .bind(run_id)
    .bind(task)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let mut out = Ended {
        attempt_ended: true,
        ..Ended::default()
    };
    if moved == 1 {
        readiness::end_steps(tx, run_id, task, status).await?;
        let next = readiness::task_ended(tx, run_id, task, status).await?;
        out.ready = next.ready > 0;
        out.run_finished = next.run_final;
    }
    Ok(out)
}
