//! Runs of model 1 (one agent walks the whole DAG) that still wait in the
//! queue once new runs are of model 2: converted, so the server places
//! their tasks. Their rules are filled from their version's spec (as
//! `insert` does for a new run), and the readiness backstop decides their
//! tasks from their rows; tasks that succeeded in an earlier attempt keep
//! their results. Runs under way on an old agent have their leases ended
//! at a server's start, are requeued by the supervisor, then converted
//! here.

use xene_core::dag::Dag;

use super::fail_attempt;
use crate::storage::readiness::TaskRules;
use crate::storage::{Db, StorageError};

/// Runs converted in one call.
pub const CONVERT_PAGE: i64 = 100;

/// Ends the leases of runs of model 1 under way, once new runs are of
/// model 2: their agents speak protocol 1 and are refused, so the
/// supervisor requeues the runs now (and `convert_queued` converts them)
/// rather than when their leases run out. Returns how many.
pub async fn end_model_1_leases(db: &Db) -> Result<u64, StorageError> {
    if db.run_model() != 2 {
        return Ok(0);
    }
    let ended = sqlx::query(
        "UPDATE runs SET lease_expires_at = 0 WHERE model = 1 \
         AND status IN ('starting_up', 'running', 'shutting_down')",
    )
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    if ended > 0 {
        db.news().leases_ended();
    }
    Ok(ended)
}

/// Converts queued runs of model 1, when new runs are of model 2. Returns
/// how many were converted.
pub async fn convert_queued(db: &Db) -> Result<usize, StorageError> {
    if db.run_model() != 2 {
        return Ok(0);
    }
    let queued: Vec<(i64, i64, String, i64, String)> = sqlx::query_as(
        "SELECT id, attempt, workflow, version, pipeline FROM runs \
         WHERE status = 'queued' AND model = 1 ORDER BY id LIMIT $1",
    )
    .bind(CONVERT_PAGE)
    .fetch_all(db.pool())
    .await?;
    let mut converted = 0;
    for (id, attempt, workflow, version, pipeline) in queued {
        let spec = crate::storage::workflows::spec_of_version(db, &workflow, version)
            .await
            .ok()
            .flatten()
            .and_then(|mut w| w.pipelines.remove(&pipeline));
        let dag = spec.as_ref().map(Dag::new);
        let (Some(spec), Some(Ok(dag))) = (spec, dag) else {
            let reason = format!(
                "version {version} of {workflow} no longer reads: the run cannot be placed"
            );
            fail_attempt(db, id, attempt, &reason).await?;
            continue;
        };
        let mut tx = db.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE runs SET model = 2, placement = $1, concurrency = $2, dirty = dirty + 1, \
             tasks_left = (SELECT COUNT(*) FROM task_runs t WHERE t.run_id = $3 AND t.status IN ('pending', 'running')) \
             WHERE id = $3 AND model = 1 AND status = 'queued'",
        )
        .bind(spec.placement.as_str())
        .bind(spec.concurrency.map(i64::from))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            continue;
        }
        for (name, task) in &spec.tasks {
            let rules = TaskRules::of(&spec, &dag, name, task);
            sqlx::query(
                "UPDATE task_runs SET selector = $1, runtime = $2, condition = $3, dependants = $4, \
                 retries = $5, backoff_ms = $6, depends_on = COALESCE(depends_on, $7) \
                 WHERE run_id = $8 AND task = $9",
            )
            .bind(rules.selector)
            .bind(rules.runtime)
            .bind(rules.condition)
            .bind(rules.dependants)
            .bind(rules.retries)
            .bind(rules.backoff_ms)
            .bind(serde_json::to_string(&task.depends_on).expect("names serialize"))
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        // Unfinished tasks wait again: the backstop decides them.
        sqlx::query(
            "UPDATE task_runs SET status = 'pending' WHERE run_id = $1 AND status = 'running'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        converted += 1;
    }
    if converted > 0 {
        db.news().runs_dirty();
    }
    Ok(converted)
}
