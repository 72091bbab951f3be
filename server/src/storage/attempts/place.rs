//! Ready attempts placed on agents: in chunks by the scheduler, or one at
//! a time where a slot was just freed (`handoff`).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sqlx::Row;

use super::PLACE_CHUNK;
use crate::storage::{Db, StorageError, WriteTx, now_ms};

/// Places ready attempts on agents (`(attempt, agent)` pairs), leased for
/// `lease_ms`; says for each whether it was placed (not if it was no longer
/// ready, or its agent was revoked or is draining meanwhile). A chunk of
/// placements is one transaction; each agent and run is announced once.
pub async fn place_many(
    db: &Db,
    placements: &[(i64, &str)],
    lease_ms: i64,
) -> Result<Vec<bool>, StorageError> {
    let now = now_ms();
    let mut placed = Vec::with_capacity(placements.len());
    let mut failed = None;
    for chunk in placements.chunks(PLACE_CHUNK) {
        match place_chunk(db, chunk, now, lease_ms).await {
            Ok(done) => {
                let agents: HashSet<&str> = chunk
                    .iter()
                    .zip(&done)
                    .filter(|(_, run)| run.is_some())
                    .map(|((_, agent), _)| *agent)
                    .collect();
                // Agents first: feeds' news waits for a round trip to
                // PostgreSQL per run, and must not delay the tasks' start.
                for agent in agents {
                    db.news().agent_has_work(Some(agent));
                }
                let runs: BTreeSet<i64> = done.iter().flatten().copied().collect();
                for run in runs {
                    db.news().run_changed(run).await;
                }
                placed.extend(done.iter().map(Option::is_some));
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failed {
        if placed.iter().all(|p| !p) {
            return Err(e);
        }
        tracing::warn!(error = %e, "placing attempts stopped partway; the rest wait for the next pass");
    }
    placed.resize(placements.len(), false);
    Ok(placed)
}

/// One transaction of placements; for each, its run if it was placed.
async fn place_chunk(
    db: &Db,
    chunk: &[(i64, &str)],
    now: i64,
    lease_ms: i64,
) -> Result<Vec<Option<i64>>, StorageError> {
    let mut tx = db.begin_write().await?;
    let mut done = Vec::with_capacity(chunk.len());
    // Each run placed on and its first agent here: a `together` run is
    // pinned to it once every attempt row is written (attempt rows before
    // run rows, the lock order of every writer), and meanwhile no later
    // placement of this chunk puts the run on another agent.
    let mut runs: BTreeMap<i64, &str> = BTreeMap::new();
    for (id, agent) in chunk {
        let run: Option<(i64, String)> = sqlx::query_as(
            "SELECT r.id, r.placement FROM task_attempts a JOIN runs r ON r.id = a.run_id \
             WHERE a.id = $1",
        )
        .bind(*id)
        .fetch_optional(&mut *tx)
        .await?;
        let elsewhere = run.is_some_and(|(run, placement)| {
            placement == "together" && runs.get(&run).is_some_and(|first| first != agent)
        });
        if elsewhere {
            done.push(None);
            continue;
        }
        let Some(run_id) = place_one(&mut tx, *id, agent, now, lease_ms).await? else {
            done.push(None);
            continue;
        };
        runs.entry(run_id).or_insert(agent);
        done.push(Some(run_id));
    }
    for (run_id, agent) in runs {
        mark_run_placed(&mut tx, run_id, agent, now).await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// Places one ready attempt on `agent` in `tx`; its run if it was placed.
/// A draining agent takes no new task, except of a run it holds under
/// `together` (that run goes on there). A run pinned to another agent, an
/// ended run, an ended task or a run at its `concurrency` takes nothing,
/// whatever the placer read: two placers (the scheduler and a handoff)
/// each count from their own reads.
/// The caller then marks the run placed (`mark_run_placed`), once.
pub(super) async fn place_one(
    tx: &mut WriteTx,
    id: i64,
    agent: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<i64>, StorageError> {
    let row = sqlx::query(
        "UPDATE task_attempts SET status = 'placed', agent_id = $1, placed_at = $2, \
         lease_expires_at = $3, scheduler_reason = NULL WHERE id = $4 AND status = 'ready' \
         AND EXISTS (SELECT 1 FROM agents g WHERE g.id = $1 AND g.revoked = 0 AND (g.draining = 0 \
         OR EXISTS (SELECT 1 FROM runs r WHERE r.id = task_attempts.run_id AND r.pinned_agent = $1))) \
         AND EXISTS (SELECT 1 FROM runs r WHERE r.id = task_attempts.run_id \
             AND r.status IN ('queued', 'starting_up', 'running') AND r.cancel_requested = 0 \
             AND (r.placement <> 'together' OR r.pinned_agent IS NULL OR r.pinned_agent = $1) \
             AND (r.concurrency IS NULL OR (SELECT COUNT(*) FROM task_attempts o \
                 WHERE o.run_id = r.id AND o.status IN ('placed', 'running')) < r.concurrency)) \
         AND EXISTS (SELECT 1 FROM task_runs t WHERE t.run_id = task_attempts.run_id \
             AND t.task = task_attempts.task AND t.status IN ('pending', 'running')) \
         RETURNING run_id, task, number",
    )
    .bind(agent)
    .bind(now)
    .bind(now + lease_ms)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (run_id, task, number): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
    sqlx::query(
        "UPDATE task_runs SET status = 'running', agent_id = $1, attempt = $2 \
         WHERE run_id = $3 AND task = $4 AND status IN ('pending', 'running')",
    )
    .bind(agent)
    .bind(number)
    .bind(run_id)
    .bind(&task)
    .execute(&mut **tx)
    .await?;
    Ok(Some(run_id))
}

/// A run that got a placement: started up, scheduled, pinned under
/// `together` to `agent` if it was not yet.
pub(super) async fn mark_run_placed(
    tx: &mut WriteTx,
    run_id: i64,
    agent: &str,
    now: i64,
) -> Result<(), StorageError> {
    // The run's reason mirrors its oldest waiting attempt's (none: NULL).
    sqlx::query(
        "UPDATE runs SET status = CASE WHEN status = 'queued' THEN 'starting_up' ELSE status END, \
         scheduler_status = 'scheduled', scheduled_at = COALESCE(scheduled_at, $1), \
         pinned_agent = CASE WHEN placement = 'together' AND pinned_agent IS NULL THEN $2 ELSE pinned_agent END, \
         scheduler_reason = (SELECT a.scheduler_reason FROM task_attempts a \
             WHERE a.run_id = $3 AND a.status = 'ready' ORDER BY a.id LIMIT 1) \
         WHERE id = $3",
    )
    .bind(now)
    .bind(agent)
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
