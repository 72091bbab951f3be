//! How run attempts end: failed by the server, or lost when their lease
//! expired (retried while attempts are left); a run that becomes final
//! leaves no task or step running or pending.

use sqlx::Row;
use xene_core::status::RunStatus;

use crate::storage::{Db, StorageError, now_ms};

/// Fails an attempt that has not finished (its secrets are missing, its
/// pipeline is gone), with the reason people will read. A run whose tasks
/// the server places (model 2) may have tasks placed or running: it ends
/// through a cancel, so none is left running after it ended (`error` if
/// nothing of it was placed, else `cancelled` with the reason as error).
pub async fn fail_attempt(
    db: &Db,
    id: i64,
    attempt: i64,
    reason: &str,
) -> Result<(), StorageError> {
    let mut tx = db.begin_write().await?;
    let model: Option<i64> = sqlx::query_scalar(
        "SELECT model FROM runs WHERE id = $1 AND attempt = $2 \
         AND status IN ('queued', 'starting_up', 'running')",
    )
    .bind(id)
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await?;
    if model == Some(2) {
        let cancelling = cancel_tasks(&mut tx, id).await?;
        // Ended now (nothing of it was placed): it failed, as a run placed
        // whole does. Else it ends `cancelled` once its agents stopped its
        // tasks, with the reason as its error.
        sqlx::query(
            "UPDATE runs SET error = COALESCE(error, $1), \
             status = CASE WHEN $2 = 1 AND status = 'cancelled' THEN 'error' ELSE status END \
             WHERE id = $3",
        )
        .bind(reason)
        .bind(i64::from(cancelling.ended))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for agent in &cancelling.agents {
            db.news().agent_has_work(Some(agent));
        }
        db.news().room_freed();
        db.news().run_changed(id).await;
        return Ok(());
    }
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
        // A run whose tasks the server places (model 2) may have attempts
        // waiting to be placed: they go with it.
        sqlx::query(
            "UPDATE task_attempts SET status = 'cancelled', finished_at = $1 \
             WHERE run_id = $2 AND status = 'ready'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
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
        // Once new runs are of model 2, a run of model 1 lost with its
        // (old) agent is requeued whatever its attempts, and converted: the
        // upgrade re-runs its unfinished tasks, as its notes say.
        let upgrading = db.run_model() == 2;
        if (attempt < max_attempts || upgrading) && cancel == 0 {
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

/// What cancelling a run of model 2 did.
pub(super) struct Cancelling {
    /// The run is final now (nothing of it was placed or running).
    pub ended: bool,
    /// Agents holding its attempts, which must stop them.
    pub agents: Vec<String>,
}

/// Cancels a run of model 2 (§4.5 of the design): its ready attempts are
/// cancelled, its tasks that never started end `not_executed` (a retry
/// waiting on its backoff, `cancelled`), and its attempts under way are
/// asked to stop; the run ends `cancelled` once they have (`tasks_left`
/// reaches 0). Every task ends through readiness, so the counters stay exact.
pub(super) async fn cancel_tasks(
    tx: &mut crate::storage::WriteTx,
    id: i64,
) -> Result<Cancelling, sqlx::Error> {
    use xene_core::status::TaskStatus;

    use crate::storage::{attempts, readiness};

    let now = now_ms();
    // Attempt rows first (in id order), then the run's: the order every
    // writer of a run's attempts takes (events, placement, the
    // supervisor), so two transactions on PostgreSQL never wait on each
    // other in a circle.
    readiness::lock_run(tx, id).await?;
    // Ready attempts first: one placed meanwhile (PostgreSQL reads each
    // statement's own snapshot) is then seen by the next statement and
    // asked to stop, rather than missed by both.
    let waiting: Vec<String> = sqlx::query_scalar(
        "UPDATE task_attempts SET status = 'cancelled', finished_at = $1 \
         WHERE run_id = $2 AND status = 'ready' RETURNING task",
    )
    .bind(now)
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    let mut agents: Vec<String> = sqlx::query_scalar(
        "UPDATE task_attempts SET cancel_requested = 1 WHERE run_id = $1 \
         AND status IN ('placed', 'running') AND agent_id IS NOT NULL RETURNING agent_id",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    agents.sort();
    agents.dedup();
    // Before any task ends: what it unblocks must not start. Nothing of it
    // waits for an agent any more, so no reason why it waits stays.
    sqlx::query("UPDATE runs SET cancel_requested = 1, scheduler_reason = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let mut ended = None;
    for task in &waiting {
        let done =
            if readiness::end_pending(tx, id, task, TaskStatus::NotExecuted, None, now).await? {
                readiness::task_ended(tx, id, task, TaskStatus::NotExecuted).await?
            } else {
                attempts::end_task(tx, id, task, TaskStatus::Cancelled, None, now).await?
            };
        ended = ended.or(done.run_final);
    }
    let pending: Vec<String> = sqlx::query_scalar(
        "SELECT task FROM task_runs WHERE run_id = $1 AND status = 'pending' ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    for task in &pending {
        if readiness::end_pending(tx, id, task, TaskStatus::NotExecuted, None, now).await? {
            let done = readiness::task_ended(tx, id, task, TaskStatus::NotExecuted).await?;
            ended = ended.or(done.run_final);
        }
    }
    Ok(Cancelling {
        ended: ended.is_some(),
        agents,
    })
}
