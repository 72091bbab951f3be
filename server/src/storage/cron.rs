//! Cron fires: one row per fire handled (started, skipped, queued), keyed by
//! pipeline and fire time, so a fire happens once across replicas.

use sqlx::Row;

use super::runs::{self, Prepared, RunError};
use super::{Db, StorageError, now_ms};

/// A pipeline with a cron trigger, in its workflow's current version.
pub struct CronPipeline {
    pub workflow: String,
    pub pipeline: String,
    pub version: i64,
    /// When the version in force was applied (UTC ms): fires before it
    /// belong to an older schedule and are not caught up.
    pub applied_at: i64,
}

pub async fn pipelines(db: &Db) -> Result<Vec<CronPipeline>, StorageError> {
    let rows = sqlx::query(
        "SELECT p.workflow, p.name, w.current_version, w.updated_at FROM pipelines p \
         JOIN workflows w ON w.name = p.workflow \
         WHERE p.trigger_type = 'cron' AND w.deleted = 0 ORDER BY p.workflow, p.name",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| CronPipeline {
            workflow: r.get(0),
            pipeline: r.get(1),
            version: r.get(2),
            applied_at: r.get(3),
        })
        .collect())
}

/// The latest fire handled, whatever came of it.
pub async fn last_fire(
    db: &Db,
    workflow: &str,
    pipeline: &str,
) -> Result<Option<i64>, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT MAX(fire_at) FROM cron_fires WHERE workflow = $1 AND pipeline = $2",
    )
    .bind(workflow)
    .bind(pipeline)
    .fetch_one(db.pool())
    .await?)
}

/// The oldest fire waiting for an earlier run to finish.
pub async fn queued_fire(
    db: &Db,
    workflow: &str,
    pipeline: &str,
) -> Result<Option<i64>, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(fire_at) FROM cron_fires WHERE workflow = $1 AND pipeline = $2 AND outcome = 'queued'",
    )
    .bind(workflow)
    .bind(pipeline)
    .fetch_one(db.pool())
    .await?)
}

/// A run of the pipeline that has not finished, if any.
pub async fn unfinished_run(
    db: &Db,
    workflow: &str,
    pipeline: &str,
) -> Result<Option<i64>, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(id) FROM runs WHERE workflow = $1 AND pipeline = $2 AND finished_at IS NULL",
    )
    .bind(workflow)
    .bind(pipeline)
    .fetch_one(db.pool())
    .await?)
}

/// What a fire came to.
pub enum Outcome<'a> {
    /// Start this run now.
    Start(&'a Prepared, &'a str),
    /// Start nothing, for this reason.
    Skipped(&'a str),
    /// Start later, when the runs before it have finished.
    Queued(&'a str),
}

/// Records fire `fire_at` and does what it came to, in one transaction:
/// `Ok(None)` when the fire was already handled (by this or another
/// replica), else the run started, if one was.
pub async fn fire(
    db: &Db,
    workflow: &str,
    pipeline: &str,
    fire_at: i64,
    outcome: Outcome<'_>,
) -> Result<Option<Option<i64>>, RunError> {
    let (word, reason) = match &outcome {
        Outcome::Start(_, reason) => ("started", *reason),
        Outcome::Skipped(reason) => ("skipped", *reason),
        Outcome::Queued(reason) => ("queued", *reason),
    };
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO cron_fires (workflow, pipeline, fire_at, outcome, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workflow, pipeline, fire_at) DO NOTHING",
    )
    .bind(workflow)
    .bind(pipeline)
    .bind(fire_at)
    .bind(word)
    .bind(reason)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    let mut started = None;
    if let Outcome::Start(prepared, reason) = outcome {
        let id = runs::insert(&mut tx, prepared, "cron", Some(reason), Some(fire_at)).await?;
        sqlx::query(
            "UPDATE cron_fires SET run_id = $1 WHERE workflow = $2 AND pipeline = $3 AND fire_at = $4",
        )
        .bind(id)
        .bind(workflow)
        .bind(pipeline)
        .bind(fire_at)
        .execute(&mut *tx)
        .await?;
        started = Some(id);
    }
    tx.commit().await?;
    if let Some(id) = started {
        db.news().run_queued(id).await;
    }
    Ok(Some(started))
}

/// Starts the queued fire `fire_at`; `None` when another replica did.
pub async fn start_queued(
    db: &Db,
    workflow: &str,
    pipeline: &str,
    fire_at: i64,
    prepared: &Prepared,
    reason: &str,
) -> Result<Option<i64>, RunError> {
    let mut tx = db.begin_write().await?;
    let claimed = sqlx::query(
        "UPDATE cron_fires SET outcome = 'started' \
         WHERE workflow = $1 AND pipeline = $2 AND fire_at = $3 AND outcome = 'queued'",
    )
    .bind(workflow)
    .bind(pipeline)
    .bind(fire_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    let id = runs::insert(&mut tx, prepared, "cron", Some(reason), Some(fire_at)).await?;
    sqlx::query(
        "UPDATE cron_fires SET run_id = $1 WHERE workflow = $2 AND pipeline = $3 AND fire_at = $4",
    )
    .bind(id)
    .bind(workflow)
    .bind(pipeline)
    .bind(fire_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    db.news().run_queued(id).await;
    Ok(Some(id))
}

/// Records the queued fire `fire_at` as skipped, for `reason` (its run
/// was refused when its turn came); false when another replica handled it.
pub async fn skip_queued(
    db: &Db,
    workflow: &str,
    pipeline: &str,
    fire_at: i64,
    reason: &str,
) -> Result<bool, StorageError> {
    Ok(sqlx::query(
        "UPDATE cron_fires SET outcome = 'skipped', reason = $1 \
         WHERE workflow = $2 AND pipeline = $3 AND fire_at = $4 AND outcome = 'queued'",
    )
    .bind(reason)
    .bind(workflow)
    .bind(pipeline)
    .bind(fire_at)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected()
        == 1)
}

/// Forgets fires older than `keep_ms`, but never a pipeline's latest: it
/// is where the schedule goes on from.
pub async fn prune(db: &Db, keep_ms: i64) -> Result<u64, StorageError> {
    Ok(sqlx::query(
        "DELETE FROM cron_fires WHERE created_at < $1 AND outcome <> 'queued' AND fire_at < \
         (SELECT MAX(f.fire_at) FROM cron_fires f WHERE f.workflow = cron_fires.workflow AND f.pipeline = cron_fires.pipeline)",
    )
    .bind(now_ms() - keep_ms)
    .execute(db.pool())
    .await?
    .rows_affected())
}
