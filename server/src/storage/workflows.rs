//! Workflows and their versions.

use serde::Serialize;
use sqlx::Row;
use xene_core::draft::EditorLayout;
use xene_core::spec::{Trigger, Workflow};

use super::{Db, StorageError, now_ms};

/// The result of applying a workflow.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Applied {
    pub name: String,
    pub version: i64,
    /// False when the spec was the same as the current version's.
    pub changed: bool,
    /// What is stored but will not work yet, like secrets the tasks name
    /// that do not exist (runs of such a pipeline are refused until they do).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkflowSummary {
    pub name: String,
    pub description: String,
    pub version: i64,
    pub pipelines: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PipelineState {
    pub name: String,
    pub trigger: String,
    /// `scheduled` or `not_scheduled`: the scheduler's latest decision.
    pub scheduler_status: String,
    pub scheduler_reason: Option<String>,
    /// A cron pipeline's next fire times (UTC ms), the soonest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_fires: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkflowVersion {
    pub name: String,
    pub version: i64,
    /// The validated spec, as JSON.
    #[schema(value_type = Object)]
    pub spec: Workflow,
    /// The text that was applied.
    pub source: String,
    pub created_at: i64,
    /// Where the visual editor placed tasks; carried over from version to
    /// version.
    #[schema(value_type = Option<Object>)]
    pub layout: Option<EditorLayout>,
    /// The admin who approved this version for protected secrets (storing
    /// it as an admin approves it); absent while nobody has.
    pub approved_by: Option<String>,
    /// When it was approved, UTC ms.
    pub approved_at: Option<i64>,
    /// The protected secrets its pipelines use: its runs need the approval.
    pub protected_secrets: Vec<String>,
}

/// An apply made against a version that is no longer the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    /// The current version (0: the workflow does not exist).
    pub current: i64,
}

fn trigger_name(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::Manual => "manual",
        Trigger::Webhook => "webhook",
        Trigger::Cron { .. } => "cron",
    }
}

/// What `apply` would answer, storing nothing (a dry run).
pub async fn preview(db: &Db, workflow: &Workflow, source: &str) -> Result<Applied, StorageError> {
    let spec = serde_json::to_string(workflow).expect("specs serialize");
    let current = sqlx::query(
        "SELECT w.current_version, w.deleted, v.spec, v.source FROM workflows w \
         JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.current_version \
         WHERE w.name = $1",
    )
    .bind(&workflow.name)
    .fetch_optional(db.pool())
    .await?;
    let (version, changed) = match current {
        Some(row) => {
            let version: i64 = row.get(0);
            let deleted: i64 = row.get(1);
            let old_spec: String = row.get(2);
            let old_source: String = row.get(3);
            if deleted == 0 && old_spec == spec && old_source == source {
                (version, false)
            } else {
                (version + 1, true)
            }
        }
        None => (1, true),
    };
    Ok(Applied {
        name: workflow.name.clone(),
        version,
        changed,
        warnings: Vec::new(),
    })
}

/// Stores `workflow` as a new version unless it equals the current one
/// (spec and text). With `base`, only if the current version is still
/// `base` (0: the workflow must not exist), so that an editor never
/// overwrites a version it has not seen.
pub async fn apply(
    db: &Db,
    workflow: &Workflow,
    source: &str,
    base: Option<i64>,
) -> Result<Result<Applied, Stale>, StorageError> {
    let spec = serde_json::to_string(workflow).expect("specs serialize");
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    if db.backend() == super::Backend::Postgres {
        // Two applies of one workflow at once would both take the next
        // version number (SQLite's writers already take turns).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&workflow.name)
            .execute(&mut *tx)
            .await?;
    }
    let current = sqlx::query(
        "SELECT w.current_version, w.deleted, v.spec, v.source, v.layout FROM workflows w \
         JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.current_version \
         WHERE w.name = $1",
    )
    .bind(&workflow.name)
    .fetch_optional(&mut *tx)
    .await?;
    let live = current
        .as_ref()
        .filter(|row| row.get::<i64, _>(1) == 0)
        .map_or(0, |row| row.get::<i64, _>(0));
    if let Some(base) = base
        && base != live
    {
        tx.rollback().await?;
        return Ok(Err(Stale { current: live }));
    }
    let mut layout: Option<String> = None;
    let (version, exists) = match &current {
        Some(row) => {
            let version: i64 = row.get(0);
            let deleted: i64 = row.get(1);
            let old_spec: String = row.get(2);
            let old_source: String = row.get(3);
            if deleted == 0 && old_spec == spec && old_source == source {
                tx.rollback().await?;
                return Ok(Ok(Applied {
                    name: workflow.name.clone(),
                    version,
                    changed: false,
                    warnings: Vec::new(),
                }));
            }
            layout = row.get(4);
            (version + 1, true)
        }
        None => (1, false),
    };
    if exists {
        sqlx::query(
            "UPDATE workflows SET current_version = $1, description = $2, deleted = 0, updated_at = $3 WHERE name = $4",
        )
        .bind(version)
        .bind(&workflow.description)
        .bind(now)
        .bind(&workflow.name)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "INSERT INTO workflows (name, current_version, description, deleted, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, $4, $4)",
        )
        .bind(&workflow.name)
        .bind(version)
        .bind(&workflow.description)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("INSERT INTO workflow_versions (workflow, version, spec, source, created_at, layout) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&workflow.name)
        .bind(version)
        .bind(&spec)
        .bind(source)
        .bind(now)
        .bind(layout)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM pipelines WHERE workflow = $1")
        .bind(&workflow.name)
        .execute(&mut *tx)
        .await?;
    for (name, pipeline) in &workflow.pipelines {
        sqlx::query(
            "INSERT INTO pipelines (workflow, name, trigger_type, scheduler_status, updated_at) \
             VALUES ($1, $2, $3, 'not_scheduled', $4)",
        )
        .bind(&workflow.name)
        .bind(name)
        .bind(trigger_name(&pipeline.trigger))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Ok(Applied {
        name: workflow.name.clone(),
        version,
        changed: true,
        warnings: Vec::new(),
    }))
}

/// Stores the editor's layout with a version; false when there is no such
/// version of a live workflow.
pub async fn set_layout(
    db: &Db,
    name: &str,
    version: i64,
    layout: &EditorLayout,
) -> Result<bool, StorageError> {
    let json = serde_json::to_string(layout).expect("layouts serialize");
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE workflow_versions SET layout = $1 WHERE workflow = $2 AND version = $3 \
         AND EXISTS (SELECT 1 FROM workflows w WHERE w.name = $2 AND w.deleted = 0)",
    )
    .bind(json)
    .bind(name)
    .bind(version)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(done == 1)
}

pub async fn list(db: &Db) -> Result<Vec<WorkflowSummary>, StorageError> {
    let rows = sqlx::query(
        "SELECT w.name, w.description, w.current_version, w.created_at, w.updated_at FROM workflows w \
         WHERE w.deleted = 0 ORDER BY w.name",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        let pipelines = sqlx::query_scalar::<_, String>(
            "SELECT name FROM pipelines WHERE workflow = $1 ORDER BY name",
        )
        .bind(&name)
        .fetch_all(db.pool())
        .await?;
        out.push(WorkflowSummary {
            name,
            description: row.get(1),
            version: row.get(2),
            pipelines,
            created_at: row.get(3),
            updated_at: row.get(4),
        });
    }
    Ok(out)
}

/// A version of a live (not deleted) workflow; the current one when `version` is `None`.
pub async fn get(
    db: &Db,
    name: &str,
    version: Option<i64>,
) -> Result<Option<WorkflowVersion>, StorageError> {
    let row = sqlx::query(
        "SELECT v.version, v.spec, v.source, v.created_at, v.layout, v.approved_by, v.approved_at FROM workflows w \
         JOIN workflow_versions v ON v.workflow = w.name \
         WHERE w.name = $1 AND w.deleted = 0 AND v.version = COALESCE($2, w.current_version)",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        let spec: String = row.get(1);
        Ok(WorkflowVersion {
            name: name.to_string(),
            version: row.get(0),
            spec: serde_json::from_str(&spec).map_err(|e| StorageError::Corrupt(e.to_string()))?,
            source: row.get(2),
            created_at: row.get(3),
            // A layout that no longer reads is dropped: it only places boxes.
            layout: row
                .get::<Option<String>, _>(4)
                .and_then(|l| serde_json::from_str(&l).ok()),
            approved_by: row.get(5),
            approved_at: row.get(6),
            // Filled by who shows it: it depends on the secrets of now.
            protected_secrets: Vec::new(),
        })
    })
    .transpose()
}

/// Any stored version, whether or not the workflow was deleted since: runs
/// keep running the version they were started with.
pub async fn spec_of_version(
    db: &Db,
    name: &str,
    version: i64,
) -> Result<Option<Workflow>, StorageError> {
    let spec: Option<String> = sqlx::query_scalar(
        "SELECT spec FROM workflow_versions WHERE workflow = $1 AND version = $2",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    spec.map(|s| serde_json::from_str(&s).map_err(|e| StorageError::Corrupt(e.to_string())))
        .transpose()
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionSummary {
    pub version: i64,
    pub created_at: i64,
}

pub async fn versions(db: &Db, name: &str) -> Result<Option<Vec<VersionSummary>>, StorageError> {
    if !exists(db, name).await? {
        return Ok(None);
    }
    let rows = sqlx::query("SELECT version, created_at FROM workflow_versions WHERE workflow = $1 ORDER BY version DESC")
        .bind(name)
        .fetch_all(db.pool())
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| VersionSummary {
                version: r.get(0),
                created_at: r.get(1),
            })
            .collect(),
    ))
}

pub async fn pipelines(db: &Db, name: &str) -> Result<Vec<PipelineState>, StorageError> {
    let rows = sqlx::query(
        "SELECT name, trigger_type, scheduler_status, scheduler_reason FROM pipelines WHERE workflow = $1 ORDER BY name",
    )
    .bind(name)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| PipelineState {
            name: r.get(0),
            trigger: r.get(1),
            scheduler_status: r.get(2),
            scheduler_reason: r.get(3),
            next_fires: Vec::new(),
        })
        .collect())
}

pub async fn exists(db: &Db, name: &str) -> Result<bool, StorageError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT current_version FROM workflows WHERE name = $1 AND deleted = 0")
            .bind(name)
            .fetch_optional(db.pool())
            .await?;
    Ok(found.is_some())
}

/// Deletes a workflow: it disappears from listings and takes no new runs;
/// its versions stay for the runs that ran them. Returns false when unknown.
pub async fn delete(db: &Db, name: &str) -> Result<bool, StorageError> {
    let result = sqlx::query(
        "UPDATE workflows SET deleted = 1, updated_at = $1 WHERE name = $2 AND deleted = 0",
    )
    .bind(now_ms())
    .bind(name)
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Records the scheduler's latest decision for a pipeline.
pub async fn set_pipeline_schedule(
    db: &Db,
    workflow: &str,
    pipeline: &str,
    scheduled: bool,
    reason: Option<&str>,
) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE pipelines SET scheduler_status = $1, scheduler_reason = $2, updated_at = $3 WHERE workflow = $4 AND name = $5",
    )
    .bind(if scheduled { "scheduled" } else { "not_scheduled" })
    .bind(reason)
    .bind(now_ms())
    .bind(workflow)
    .bind(pipeline)
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok(())
}
