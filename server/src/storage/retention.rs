//! What is kept for how long, besides logs and events (`logs::prune`):
//! spent or expired join tokens, revoked agents, workflow versions nothing
//! refers to any more, and expired one-time codes. Runs themselves stay.
//! Artifacts of runs that ended before their own retention go too, unless
//! the run is pinned (`prune_artifacts`).

use super::{Db, StorageError, now_ms};

/// Join tokens are pruned this long after they expire, whatever the retention.
const EXPIRED_TOKEN_GRACE_MS: i64 = 24 * 3600 * 1000;

/// Deletes what is older than `before` (UTC ms); returns how many rows.
pub async fn prune_records(db: &Db, before: i64) -> Result<u64, StorageError> {
    let mut pruned = 0;
    let token_cutoff = before.max(now_ms() - EXPIRED_TOKEN_GRACE_MS);
    pruned += sqlx::query("DELETE FROM join_tokens WHERE expires_at < $1")
        .bind(token_cutoff)
        .execute(&mut *db.write_conn().await?)
        .await?
        .rows_affected();
    // A revoked agent is kept while runs may still name it in their history
    // view: its row goes once it has been silent past the retention.
    pruned += sqlx::query(
        "DELETE FROM agents WHERE revoked <> 0 AND builtin = 0 AND last_seen_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.agent_id = agents.id \
         AND runs.status IN ('queued', 'starting_up', 'running', 'shutting_down'))",
    )
    .bind(before)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    // Versions no run was made from and that are not current.
    pruned += sqlx::query(
        "DELETE FROM workflow_versions WHERE created_at < $1 \
         AND version <> (SELECT w.current_version FROM workflows w WHERE w.name = workflow_versions.workflow) \
         AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.workflow = workflow_versions.workflow \
         AND runs.version = workflow_versions.version)",
    )
    .bind(before)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    pruned += sqlx::query("DELETE FROM cli_codes WHERE expires_at < $1")
        .bind(now_ms())
        .execute(&mut *db.write_conn().await?)
        .await?
        .rows_affected();
    Ok(pruned)
}

/// Batches of 500 `prune_artifacts` deletes per call at most: the
/// collector calls it every pass, so what is left goes at the next.
const PRUNE_BATCHES: usize = 20;

/// Deletes the published artifacts of runs that finished before `before`
/// (UTC ms) and are not pinned, a bounded batch at a time (their files go
/// with them; the collector removes blobs nothing names any more); returns
/// how many artifacts went.
pub async fn prune_artifacts(db: &Db, before: i64) -> Result<u64, StorageError> {
    let mut pruned = 0;
    for _ in 0..PRUNE_BATCHES {
        // An artifact is made before its run ends: `created_at` narrows the
        // scan to old ones by its index.
        let batch = sqlx::query(
            "DELETE FROM artifacts WHERE id IN (SELECT a.id FROM artifacts a JOIN runs r ON r.id = a.run_id \
             WHERE a.created_at < $1 AND r.finished_at IS NOT NULL AND r.finished_at < $1 \
             AND r.pinned_at IS NULL LIMIT 500)",
        )
        .bind(before)
        .execute(&mut *db.write_conn().await?)
        .await?
        .rows_affected();
        pruned += batch;
        if batch < 500 {
            break;
        }
    }
    Ok(pruned)
}
