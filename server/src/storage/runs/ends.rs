//! How run attempts end: failed by the server, or lost when their lease
//! expired (retried while attempts are left); a run that becomes final
//! leaves no task or step running or pending.

use sqlx::Row;
use xene_core::status::RunStatus;

use crate::storage::{Db, StorageError, now_ms};

/// Fails an attempt that has not finished (its secrets are missing, its
/// pipeline is gone), with the reason people will read.
pub async fn fail_attempt(
    db: &Db,
    id: i64,
    attempt: i64,
    reason: &str,
) -> Result<(), StorageError> {
    let mut tx = db.begin_write().await?;
    let failed = sqlx::query(
        "UPDATE runs SET status = $1, error = $2, finished_at = $3, lease_expires_at = NULL \
         WHERE id = $4 AND attempt = $5 AND status IN ('queued', 'starting_up', 'running')",
    )
    .bind(RunStatus::Error.as_str())
    .bind(reason)
    .bind(now_ms())
    .bind(id)
    .bind(attempt)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if failed == 1 {
        finish_unfinished(&mut tx, id).await?;
    }
    tx.commit().await?;
    db.news().run_changed(id).await;
    if failed == 1 {
        // Its agent, if it had one, has room again.
        db.news().room_freed();
    }
    Ok(())
}

/// Marks runs whose lease ended `unknown`, then puts back in the queue those
/// with attempts left (tasks that already succeeded keep their results and
/// are not run again). Returns (lost, requeued).
pub async fn expire_leases(db: &Db) -> Result<(u64, u64), StorageError> {
    let now = now_ms();
    let expired = sqlx::query(
        "SELECT id, attempt, max_attempts, cancel_requested FROM runs \
         WHERE status IN ('starting_up', 'running', 'shutting_down') AND lease_expires_at < $1",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let (mut lost, mut requeued) = (0, 0);
    for row in expired {
        let (id, attempt, max_attempts, cancel): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let mut tx = db.begin_write().await?;
        // Checked again in the UPDATE: the agent may have renewed meanwhile.
        let marked = sqlx::query(
            "UPDATE runs SET status = 'unknown', error = 'its agent stopped renewing the lease', finished_at = $1 \
             WHERE id = $2 AND status IN ('starting_up', 'running', 'shutting_down') AND lease_expires_at < $1",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            continue;
        }
        lost += 1;
        if attempt < max_attempts && cancel == 0 {
            sqlx::query(
                "UPDATE runs SET status = 'queued', attempt = attempt + 1, agent_id = NULL, lease_expires_at = NULL, \
                 scheduler_status = 'not_scheduled', scheduler_reason = 'its previous agent was lost', \
                 error = NULL, finished_at = NULL WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // Unfinished work goes back to pending; what succeeded stays.
            move_unfinished(&mut tx, id, "running", "pending").await?;
            requeued += 1;
        } else if cancel != 0 {
            // Somebody asked for it to stop, and its agent is gone: it stopped.
            sqlx::query("UPDATE runs SET status = 'cancelled', error = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            move_unfinished(&mut tx, id, "running", "cancelled").await?;
            move_unfinished(&mut tx, id, "pending", "not_executed").await?;
        } else {
            // Final: nothing of it runs any more, whatever it last reported.
            finish_unfinished(&mut tx, id).await?;
        }
        tx.commit().await?;
        db.news().run_changed(id).await;
    }
    if requeued > 0 {
        db.news().queue_grew();
    }
    Ok((lost, requeued))
}

/// A run became final: what was running ends `unknown` (nobody knows how
/// far it got), what never started ends `not_executed`.
async fn finish_unfinished(tx: &mut crate::storage::WriteTx, id: i64) -> Result<(), sqlx::Error> {
    move_unfinished(tx, id, "running", "unknown").await?;
    move_unfinished(tx, id, "pending", "not_executed").await
}

/// An agent reported the run final (`status`): what it left running ends
/// `cancelled` when the run was, else `unknown`; what never started ends
/// `not_executed`. Its caller's transaction made the run final.
pub(crate) async fn leave_nothing_running(
    tx: &mut crate::storage::WriteTx,
    id: i64,
    status: RunStatus,
) -> Result<(), sqlx::Error> {
    if status == RunStatus::Cancelled {
        move_unfinished(tx, id, "running", "cancelled").await?;
        move_unfinished(tx, id, "pending", "not_executed").await
    } else {
        finish_unfinished(tx, id).await
    }
}

/// Moves a run's tasks and steps in status `from` to status `to`.
pub(super) async fn move_unfinished(
    tx: &mut crate::storage::WriteTx,
    id: i64,
    from: &str,
    to: &str,
) -> Result<(), sqlx::Error> {
    for table in ["task_runs", "step_runs"] {
        sqlx::query(&format!(
            "UPDATE {table} SET status = $1 WHERE run_id = $2 AND status = $3"
        ))
        .bind(to)
        .bind(id)
        .bind(from)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
