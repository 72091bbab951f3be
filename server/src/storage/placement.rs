//! Where a run executes: the queue, placing queued runs on agents, and the
//! lease an agent holds on each run it was given, renewed by its heartbeats
//! and ended early when it will not report on the run. What the scheduler,
//! the agents' sessions and the built-in agent touch; the run as a record
//! is `runs`, and how an attempt ends when its lease runs out is
//! `runs::expire_leases`.

use xene_core::status::RunStatus;

use super::runs::{RUN_COLUMNS, Run, is_final, run_from_row};
use super::{Backend, Db, StorageError, now_ms};

/// Runs waiting for an agent (none of their tasks placed yet) after
/// `after_id`, oldest first.
pub async fn queued(db: &Db, after_id: i64, limit: i64) -> Result<Vec<Run>, StorageError> {
    let rows = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued' AND id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(run_from_row).collect()
}

/// Agents holding runs they have not started (placed, not yet reported).
pub async fn agents_with_unstarted_runs(db: &Db) -> Result<Vec<String>, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT agent_id FROM runs WHERE status = 'starting_up' AND agent_id IS NOT NULL LIMIT 10000",
    )
    .fetch_all(db.pool())
    .await?)
}

/// Runs an agent holds (assigned and not finished).
pub async fn assigned_to(db: &Db, agent: &str) -> Result<Vec<Run>, StorageError> {
    let rows = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE agent_id = $1 AND status IN ('starting_up', 'running', 'shutting_down') ORDER BY id"
    ))
    .bind(agent)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(run_from_row).collect()
}

/// Placements written in one SQLite transaction (and most the scheduler
/// holds before writing them).
pub const ASSIGN_CHUNK: usize = 64;

// The agent is checked in the same statement: one revoked between the
// scheduler's read of the agents and this write gets nothing.
const ASSIGN: &str = "UPDATE runs SET status = 'starting_up', scheduler_status = 'scheduled', scheduler_reason = NULL, \
     agent_id = $1, scheduled_at = $2, lease_expires_at = $3 WHERE id = $4 AND status = 'queued' \
     AND EXISTS (SELECT 1 FROM agents a WHERE a.id = $1 AND a.revoked = 0)";

/// Puts queued runs on agents (`(run, agent)` pairs); says for each whether
/// it was placed (not if someone else got there first). On SQLite a chunk
/// of placements shares one turn at the writer: one statement per turn
/// left a backlog of thousands placed at a few dozen a second behind the
/// API's writes (found by the load test). PostgreSQL has no such queue, and
/// there each stays a statement of its own.
pub async fn assign_many(
    db: &Db,
    placements: &[(i64, &str)],
    lease_ms: i64,
) -> Result<Vec<bool>, StorageError> {
    let now = now_ms();
    let mut placed = Vec::with_capacity(placements.len());
    // A failure partway stops the placing, but what was written before it
    // is still answered (and announced): those runs are no longer queued,
    // so nothing else would ever tell their agents.
    let failed = match db.backend() {
        Backend::Sqlite => {
            let mut failed = None;
            for chunk in placements.chunks(ASSIGN_CHUNK) {
                match assign_chunk(db, chunk, now, lease_ms).await {
                    Ok(done) => placed.extend(done),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            failed
        }
        Backend::Postgres => {
            let mut failed = None;
            for (id, agent) in placements {
                match assign_one(db.pool(), *id, agent, now, lease_ms).await {
                    Ok(done) => placed.push(done),
                    Err(e) => {
                        failed = Some(StorageError::from(e));
                        break;
                    }
                }
            }
            failed
        }
    };
    for ((id, agent), placed) in placements.iter().zip(&placed) {
        if *placed {
            db.news().run_changed(*id).await;
            db.news().agent_has_work(Some(agent));
        }
    }
    if let Some(e) = failed {
        if placed.iter().all(|p| !p) {
            return Err(e);
        }
        tracing::warn!(error = %e, "placing runs stopped partway; the rest wait for the next pass");
    }
    placed.resize(placements.len(), false);
    Ok(placed)
}

/// One SQLite turn at the writer: all of a chunk's placements or none.
async fn assign_chunk(
    db: &Db,
    chunk: &[(i64, &str)],
    now: i64,
    lease_ms: i64,
) -> Result<Vec<bool>, StorageError> {
    let mut done = Vec::with_capacity(chunk.len());
    let mut tx = db.begin_write().await?;
    for (id, agent) in chunk {
        done.push(assign_one(&mut *tx, *id, agent, now, lease_ms).await?);
    }
    tx.commit().await?;
    Ok(done)
}

/// One placement; whether it was made (the run still queued, its agent
/// not revoked).
async fn assign_one<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Any>,
    id: i64,
    agent: &str,
    now: i64,
    lease_ms: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(ASSIGN)
        .bind(agent)
        .bind(now)
        .bind(now + lease_ms)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Records why a queued run is still waiting.
pub async fn set_waiting_reason(db: &Db, id: i64, reason: &str) -> Result<(), StorageError> {
    // Written (and announced) only when it changes: the scheduler says it
    // again on every pass.
    let changed = sqlx::query(
        "UPDATE runs SET scheduler_status = 'not_scheduled', scheduler_reason = $1 WHERE id = $2 AND status = 'queued' \
         AND (scheduler_reason IS NULL OR scheduler_reason <> $1 OR scheduler_status <> 'not_scheduled')",
    )
    .bind(reason)
    .bind(id)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    if changed > 0 {
        db.news().run_changed(id).await;
    }
    Ok(())
}

/// Extends one run attempt's lease if `agent` still holds it.
pub async fn renew_lease(
    db: &Db,
    id: i64,
    attempt: i64,
    agent: &str,
    lease_ms: i64,
) -> Result<bool, StorageError> {
    let result = sqlx::query(
        "UPDATE runs SET lease_expires_at = $1 WHERE id = $2 AND attempt = $3 AND agent_id = $4 \
         AND status IN ('starting_up', 'running', 'shutting_down')",
    )
    .bind(now_ms() + lease_ms)
    .bind(id)
    .bind(attempt)
    .bind(agent)
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Ends a run attempt's lease now: its agent lost it, and the supervisor
/// should not wait for the lease to run out.
pub async fn end_lease(db: &Db, id: i64, attempt: i64, agent: &str) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE runs SET lease_expires_at = 0 WHERE id = $1 AND attempt = $2 AND agent_id = $3 \
         AND status IN ('starting_up', 'running', 'shutting_down')",
    )
    .bind(id)
    .bind(attempt)
    .bind(agent)
    .execute(&mut *db.write_conn().await?)
    .await?;
    db.news().leases_ended();
    Ok(())
}

/// True when this attempt of the run, held by `agent`, reached a final status.
pub async fn is_finished_attempt(
    db: &Db,
    id: i64,
    attempt: i64,
    agent: &str,
) -> Result<bool, StorageError> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM runs WHERE id = $1 AND attempt = $2 AND agent_id = $3",
    )
    .bind(id)
    .bind(attempt)
    .bind(agent)
    .fetch_optional(db.pool())
    .await?;
    Ok(status.is_some_and(|s| s.parse::<RunStatus>().is_ok_and(is_final)))
}

/// Ends the leases of every run and task attempt `agent` holds: it will
/// not report on them (it restarted, or was revoked), so the supervisor
/// deals with them now rather than when the leases run out.
pub async fn end_leases_of(db: &Db, agent: &str) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE runs SET lease_expires_at = 0 WHERE agent_id = $1 \
         AND status IN ('starting_up', 'running', 'shutting_down')",
    )
    .bind(agent)
    .execute(&mut *db.write_conn().await?)
    .await?;
    super::attempts::end_leases_of(db, agent).await?;
    Ok(())
}
