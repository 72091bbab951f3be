//! Task attempts' leases: renewed by their agents' heartbeats, ended when
//! the agent will not report on them, and `together` runs unpinned from
//! agents that are gone.

use super::{IN_CHUNK, placeholders};
use crate::storage::{Db, StorageError, now_ms};

/// Extends the leases of every attempt `agents` hold to `lease_ms` from
/// now: one statement per flush of heartbeats (per 500 agents), not one
/// per attempt. Returns how many leases it extended.
pub async fn renew_for_agents(
    db: &Db,
    agents: &[String],
    lease_ms: i64,
) -> Result<u64, StorageError> {
    let until = now_ms() + lease_ms;
    let mut renewed = 0;
    for chunk in agents.chunks(IN_CHUNK) {
        // An ended lease (0) stays ended: the supervisor deals with that
        // attempt even though its agent still beats. On PostgreSQL rows a
        // writer holds are skipped (renewed at the next flush): renewal
        // never waits on, nor deadlocks with, a run's writers.
        let rows = format!(
            "agent_id IN ({}) AND status IN ('placed', 'running') AND lease_expires_at <> 0",
            placeholders(2, chunk.len())
        );
        let sql = if db.backend() == crate::storage::Backend::Postgres {
            format!(
                "UPDATE task_attempts SET lease_expires_at = $1 WHERE id IN \
                 (SELECT id FROM task_attempts WHERE {rows} ORDER BY id FOR UPDATE SKIP LOCKED)"
            )
        } else {
            format!("UPDATE task_attempts SET lease_expires_at = $1 WHERE {rows}")
        };
        let mut query = sqlx::query(&sql).bind(until);
        for agent in chunk {
            query = query.bind(agent.as_str());
        }
        renewed += query
            .execute(&mut *db.write_conn().await?)
            .await?
            .rows_affected();
    }
    Ok(renewed)
}

/// Ends the leases of every attempt `agent` holds: it will not report on
/// them (it restarted, went offline, or was revoked), so the supervisor
/// deals with them now rather than when the leases run out.
pub async fn end_leases_of(db: &Db, agent: &str) -> Result<u64, StorageError> {
    let ended = sqlx::query(
        "UPDATE task_attempts SET lease_expires_at = 0 WHERE agent_id = $1 \
         AND status IN ('placed', 'running')",
    )
    .bind(agent)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    db.news().leases_ended();
    Ok(ended)
}

/// Ends one attempt's lease now if `agent` holds it (its agent no longer
/// reports it).
pub async fn end_lease(db: &Db, attempt: i64, agent: &str) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE task_attempts SET lease_expires_at = 0 WHERE id = $1 AND agent_id = $2 \
         AND status IN ('placed', 'running')",
    )
    .bind(attempt)
    .bind(agent)
    .execute(&mut *db.write_conn().await?)
    .await?;
    db.news().leases_ended();
    Ok(())
}

/// Unpins `together` runs whose agent is gone (offline, revoked or
/// removed) and holds none of their tasks: their next task pins them to an
/// agent that is there. A run whose agent still holds a task stays pinned
/// until that task's lease runs out (`expire_leases` unpins it then).
pub async fn unpin_absent(db: &Db) -> Result<u64, StorageError> {
    let unpinned = sqlx::query(
        "UPDATE runs SET pinned_agent = NULL WHERE pinned_agent IS NOT NULL \
         AND status IN ('queued', 'starting_up', 'running') \
         AND NOT EXISTS (SELECT 1 FROM agents g WHERE g.id = runs.pinned_agent \
             AND g.state = 'online' AND g.revoked = 0) \
         AND NOT EXISTS (SELECT 1 FROM task_attempts o WHERE o.run_id = runs.id \
             AND o.agent_id = runs.pinned_agent AND o.status IN ('placed', 'running'))",
    )
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    if unpinned > 0 {
        db.news().tasks_ready();
    }
    Ok(unpinned)
}
