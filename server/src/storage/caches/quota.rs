//! Quotas per workflow (`--cache-quota`, `--artifact-quota`) and the
//! bytes each workflow keeps, for the refusals past them and the
//! `xene_workflow_stored_bytes` gauge.

use crate::storage::{Db, StorageError, WriteTx};

/// The default of `--cache-quota`: 10 GiB per workflow.
pub const DEFAULT_CACHE_QUOTA: u64 = 10 << 30;

/// The most workflows the stored-bytes gauge reports (in name order).
pub const MAX_WORKFLOWS_REPORTED: i64 = 1000;

/// What a workflow may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Bytes of saved cache entries; past it the least recently used are
    /// evicted, an entry larger is refused; 0: caches are never saved.
    pub cache_bytes: u64,
    /// Bytes of artifacts (published and staged); none: no quota.
    pub artifact_bytes: Option<u64>,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_QUOTA,
            artifact_bytes: None,
        }
    }
}

/// Bytes of `workflow`'s artifacts, published and staged, besides those of
/// (`run_id`, `name`), which a commit of that name in that run replaces.
/// Each state is summed on its own, through its partial index by run.
pub async fn artifact_bytes_besides(
    conn: &mut sqlx::AnyConnection,
    workflow: &str,
    run_id: i64,
    name: &str,
) -> Result<u64, sqlx::Error> {
    let mut total: u64 = 0;
    for state in ["published", "staged"] {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(a.bytes), 0) AS BIGINT) FROM runs r \
             JOIN artifacts a ON a.run_id = r.id AND a.state = '{state}' \
             WHERE r.workflow = $1 AND NOT (a.run_id = $2 AND a.name = $3)"
        );
        let bytes: i64 = sqlx::query_scalar(&sql)
            .bind(workflow)
            .bind(run_id)
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
        total = total.saturating_add(u64::try_from(bytes).unwrap_or(0));
    }
    Ok(total)
}

/// Serializes, until `tx` ends, the writers that count `workflow`'s bytes
/// against a quota and then add or evict (a stage past `--artifact-quota`,
/// an eviction past `--cache-quota`), so two never both pass on one count.
/// PostgreSQL only: a SQLite write transaction holds the database's lock.
/// The two-key form (25 for issue 25) keeps apart from the one-key lock
/// `workflows::apply` takes on the same name.
pub async fn lock_workflow(tx: &mut WriteTx, workflow: &str) -> Result<(), sqlx::Error> {
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock(25, hashtext($1))")
            .bind(workflow)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// What one workflow keeps in the store (each artifact and cache entry
/// counted whole, even where blobs are shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowStored {
    pub workflow: String,
    /// Published artifacts.
    pub artifacts: u64,
    /// Saved cache entries.
    pub caches: u64,
}

/// What each workflow (not deleted; the first `MAX_WORKFLOWS_REPORTED` by
/// name) keeps.
pub async fn stored_by_workflow(db: &Db) -> Result<Vec<WorkflowStored>, StorageError> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT w.name, \
         CAST(COALESCE((SELECT SUM(a.bytes) FROM artifacts a JOIN runs r ON r.id = a.run_id \
             WHERE r.workflow = w.name AND a.state = 'published'), 0) AS BIGINT), \
         CAST(COALESCE((SELECT SUM(c.bytes) FROM caches c \
             WHERE c.workflow = w.name AND c.state = 'saved'), 0) AS BIGINT) \
         FROM workflows w WHERE w.deleted = 0 ORDER BY w.name LIMIT $1",
    )
    .bind(MAX_WORKFLOWS_REPORTED)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(workflow, artifacts, caches)| WorkflowStored {
            workflow,
            artifacts: u64::try_from(artifacts).unwrap_or(0),
            caches: u64::try_from(caches).unwrap_or(0),
        })
        .collect())
}
