//! Quotas per workflow (`--cache-quota`, `--artifact-quota`) and the
//! bytes each workflow keeps, for the refusals past them and the
//! `xene_workflow_stored_bytes` gauge.

use crate::storage::{Db, StorageError};

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
