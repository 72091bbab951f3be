//! A freed slot handed on. The transaction that ends a task attempt on an
//! agent places there the oldest ready attempt that agent fits, so the
//! slot goes from one task to the next without the scheduler's hop (news,
//! a pass over the queue, a placement transaction of its own). The agent's
//! count of held attempts never changes on the way, so no placer ever sees
//! the slot free and fills it twice. What the agent does not fit waits for
//! the scheduler, which still decides with the whole fleet in view.
//!
//! SQLite only: there the write turn makes the transaction alone. On
//! PostgreSQL several replicas write at once, and locking another run's
//! rows inside the transaction that ends this one would cross the lock
//! order every other writer keeps (a run's attempts first).

use sqlx::Row;

use super::place::{mark_run_placed, place_one};
use super::{ReadyAttempt, ready_page_on};
use crate::choose::{Need, Slot, choose};
use crate::storage::{StorageError, WriteTx};

/// Ready attempts looked at, oldest first: the head of the queue, where
/// the scheduler would look too.
const LOOK_AT: i64 = 8;

/// An attempt placed where a slot was freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandedOff {
    pub attempt_id: i64,
    pub run_id: i64,
    /// When it could first be placed (for the queue-wait metric).
    pub ready_at: i64,
    /// The run whose attempt ended has a `concurrency`: its end may let
    /// one of its waiting tasks go to another agent, which only the
    /// scheduler can see.
    pub ended_run_limited: bool,
}

/// Places on `agent`, in `tx`, the oldest ready attempt it fits, after an
/// attempt of `ended_run` ended there. Best effort: whatever fails in it
/// is undone alone (a savepoint) and the slot goes back to the scheduler,
/// never failing the end it follows.
pub(crate) async fn hand_off(
    tx: &mut WriteTx,
    agent: &str,
    ended_run: i64,
    now: i64,
    lease_ms: i64,
) -> Option<HandedOff> {
    if tx.backend_name() != "SQLite" {
        return None;
    }
    sqlx::query("SAVEPOINT hand_off")
        .execute(&mut **tx)
        .await
        .ok()?;
    let handed = try_hand_off(tx, agent, ended_run, now, lease_ms).await;
    let end = if handed.is_ok() {
        "RELEASE SAVEPOINT hand_off"
    } else {
        "ROLLBACK TO SAVEPOINT hand_off"
    };
    if let Err(e) = &handed {
        tracing::warn!(agent, error = %e, "handing a freed slot on failed; the scheduler fills it");
    }
    // A savepoint that cannot be released or rolled back leaves the
    // transaction in doubt: its commit then fails, and the agent resends.
    sqlx::query(end).execute(&mut **tx).await.ok()?;
    handed.ok().flatten()
}

async fn try_hand_off(
    tx: &mut WriteTx,
    agent: &str,
    ended_run: i64,
    now: i64,
    lease_ms: i64,
) -> Result<Option<HandedOff>, StorageError> {
    let Some(slot) = slot(tx, agent).await? else {
        return Ok(None);
    };
    if !slot.has_room() {
        return Ok(None);
    }
    let candidates = ready_page_on(tx, 0, now, LOOK_AT).await?;
    for attempt in &candidates {
        // Lost there before: the scheduler picks among every agent (and
        // skipping it here would let newer work keep it waiting).
        if attempt.avoid_agent.as_deref() == Some(agent) {
            return Ok(None);
        }
        let run_active = match attempt.concurrency {
            Some(_) => run_active(tx, attempt.run_id).await?,
            None => 0,
        };
        if choose(std::slice::from_ref(&slot), &need(attempt, run_active)).is_err() {
            continue;
        }
        if let Some(run_id) = place_one(tx, attempt.id, agent, now, lease_ms).await? {
            mark_run_placed(tx, run_id, agent, now).await?;
            // What the scheduler last said of the pipeline (it waits) is
            // no longer true, and the scheduler may not look at it again.
            sqlx::query(
                "UPDATE pipelines SET scheduler_status = 'scheduled', scheduler_reason = NULL, \
                 updated_at = $1 WHERE workflow = $2 AND name = $3 AND scheduler_reason IS NOT NULL",
            )
            .bind(now)
            .bind(&attempt.workflow)
            .bind(&attempt.pipeline)
            .execute(&mut **tx)
            .await?;
            let limited: Option<i64> =
                sqlx::query_scalar("SELECT concurrency FROM runs WHERE id = $1")
                    .bind(ended_run)
                    .fetch_optional(&mut **tx)
                    .await?
                    .flatten();
            return Ok(Some(HandedOff {
                attempt_id: attempt.id,
                run_id,
                ready_at: attempt.ready_at,
                ended_run_limited: limited.is_some(),
            }));
        }
    }
    Ok(None)
}

fn need(attempt: &ReadyAttempt, run_active: i64) -> Need<'_> {
    Need {
        task: &attempt.task,
        selector: &attempt.selector,
        runtime: &attempt.runtime,
        pinned: attempt.pinned_agent.as_deref(),
        together: attempt.placement == "together",
        run_runtimes: &attempt.run_runtimes,
        concurrency: attempt.concurrency,
        run_active,
        avoid: None,
        warm: &[],
    }
}

/// The agent as a placement sees it, read in `tx`: what it offers and what
/// it holds now (the attempt that just ended no longer counts).
async fn slot(tx: &mut WriteTx, agent: &str) -> Result<Option<Slot>, StorageError> {
    let row = sqlx::query(
        "SELECT labels, runtimes, capacity, draining, \
         (SELECT COUNT(*) FROM task_attempts a WHERE a.agent_id = agents.id \
             AND a.status IN ('placed', 'running')) \
         FROM agents WHERE id = $1 AND revoked = 0 AND state = 'online'",
    )
    .bind(agent)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let corrupt = |e: serde_json::Error| StorageError::Corrupt(e.to_string());
    Ok(Some(Slot {
        id: agent.to_string(),
        labels: serde_json::from_str(&row.get::<String, _>(0)).map_err(corrupt)?,
        runtimes: serde_json::from_str(&row.get::<String, _>(1)).map_err(corrupt)?,
        capacity: row.get(2),
        draining: row.get::<i64, _>(3) != 0,
        held: row.get(4),
        // It is reporting right now.
        fresh: true,
    }))
}

/// Attempts of the run placed or running.
async fn run_active(tx: &mut WriteTx, run_id: i64) -> Result<i64, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM task_attempts WHERE run_id = $1 AND status IN ('placed', 'running')",
    )
    .bind(run_id)
    .fetch_one(&mut **tx)
    .await?)
}
