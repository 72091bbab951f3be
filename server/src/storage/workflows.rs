//! Workflows and their versions.

use std::collections::BTreeMap;

use sqlx::Row;
use xene_api::workflows::{trigger_kind, trigger_text};
use xene_core::draft::EditorLayout;
use xene_core::spec::{Trigger, Workflow};

use super::{Db, StorageError, now_ms};

pub use xene_api::workflows::{
    Applied, LastRun, PipelineState, PipelineSummary, VersionSummary, WorkflowSummary,
    WorkflowVersion,
};

/// An apply made against a version that is no longer the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    /// The current version (0: the workflow does not exist).
    pub current: i64,
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
            "INSERT INTO pipelines (workflow, name, trigger_type, trigger_spec, scheduler_status, updated_at) \
             VALUES ($1, $2, $3, $4, 'not_scheduled', $5)",
        )
        .bind(&workflow.name)
        .bind(name)
        .bind(trigger_kind(&pipeline.trigger))
        .bind(serde_json::to_string(&pipeline.trigger).expect("triggers serialize"))
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

/// A workflow of the list, with each pipeline's trigger for the caller to
/// compute its next fire (the scheduler's clock is not storage's).
#[derive(Debug, Clone)]
pub struct Listed {
    pub summary: WorkflowSummary,
    /// The triggers of `summary.summaries`, in their order; `None` when a
    /// pipeline's stored trigger does not read (it shows its kind only).
    pub triggers: Vec<Option<Trigger>>,
}

/// Every live workflow with its pipelines' triggers and last runs, in one
/// query over rows (never a spec): the list's page asks once, however many
/// pipelines there are.
pub async fn list(db: &Db) -> Result<Vec<Listed>, StorageError> {
    let rows = sqlx::query(
        "SELECT w.name, w.description, w.current_version, w.created_at, w.updated_at, \
         p.name, p.trigger_type, p.trigger_spec, r.id, r.status, r.requested_at, r.started_at, r.finished_at \
         FROM workflows w \
         LEFT JOIN pipelines p ON p.workflow = w.name \
         LEFT JOIN runs r ON r.id = \
           (SELECT MAX(l.id) FROM runs l WHERE l.workflow = w.name AND l.pipeline = p.name) \
         WHERE w.deleted = 0 ORDER BY w.name, p.name",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out: Vec<Listed> = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        if out.last().is_none_or(|l| l.summary.name != name) {
            out.push(Listed {
                summary: WorkflowSummary {
                    name: name.clone(),
                    description: row.get(1),
                    version: row.get(2),
                    pipelines: Vec::new(),
                    summaries: Vec::new(),
                    created_at: row.get(3),
                    updated_at: row.get(4),
                },
                triggers: Vec::new(),
            });
        }
        let listed = out.last_mut().expect("pushed above");
        let Some(pipeline) = row.get::<Option<String>, _>(5) else {
            continue;
        };
        let kind: String = row.get(6);
        let last_run = match row.get::<Option<i64>, _>(8) {
            Some(id) => Some(LastRun {
                id,
                status: row.get::<String, _>(9).parse().map_err(
                    |e: xene_core::status::UnknownStatus| StorageError::Corrupt(e.to_string()),
                )?,
                requested_at: row.get(10),
                started_at: row.get(11),
                finished_at: row.get(12),
            }),
            None => None,
        };
        let trigger = stored_trigger(&name, &pipeline, row.get(7));
        listed.summary.summaries.push(PipelineSummary {
            name: pipeline.clone(),
            trigger_text: trigger.as_ref().map_or_else(|| kind.clone(), trigger_text),
            trigger: kind,
            next_fire: None,
            last_run,
        });
        listed.summary.pipelines.push(pipeline);
        listed.triggers.push(trigger);
    }
    Ok(out)
}

/// A pipelines row's stored trigger; `None` when it was never filled (its
/// spec did not parse at start), or, with a warning, when it does not read.
fn stored_trigger(workflow: &str, pipeline: &str, stored: Option<String>) -> Option<Trigger> {
    // Unfilled: the start's backfill warned once that its spec does not read.
    let stored = stored?;
    match serde_json::from_str(&stored) {
        Ok(trigger) => Some(trigger),
        Err(e) => {
            tracing::warn!(workflow, pipeline, error = %e, "a stored trigger does not read: listed by its kind only");
            None
        }
    }
}

/// How many workflows one step of the backfill reads (one spec at a time).
const BACKFILL_BATCH: i64 = 100;

/// Fills the stored trigger of pipelines rows from before it was stored, from
/// each live workflow's current spec, once at start: the list then reads
/// rows only. A spec that does not parse leaves its rows unfilled (listed by
/// their kind) with a warning; it never stops the server. Returns how many
/// workflows were filled.
pub async fn backfill_triggers(db: &Db) -> Result<usize, StorageError> {
    let mut filled = 0;
    let mut after = String::new();
    loop {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT p.workflow FROM pipelines p JOIN workflows w ON w.name = p.workflow \
             WHERE p.trigger_spec IS NULL AND w.deleted = 0 AND p.workflow > $1 \
             ORDER BY p.workflow LIMIT $2",
        )
        .bind(&after)
        .bind(BACKFILL_BATCH)
        .fetch_all(db.pool())
        .await?;
        let Some(last) = names.last() else {
            return Ok(filled);
        };
        after = last.clone();
        for name in names {
            let spec: Option<String> = sqlx::query_scalar(
                "SELECT v.spec FROM workflows w JOIN workflow_versions v \
                 ON v.workflow = w.name AND v.version = w.current_version WHERE w.name = $1",
            )
            .bind(&name)
            .fetch_optional(db.pool())
            .await?;
            let triggers = match spec.as_deref().map(pipeline_triggers) {
                Some(Ok(triggers)) => triggers,
                Some(Err(e)) => {
                    tracing::warn!(workflow = %name, error = %e, "a stored spec does not read: its pipelines are listed by their trigger's kind only");
                    continue;
                }
                None => continue,
            };
            let mut tx = db.begin_write().await?;
            for (pipeline, trigger) in triggers {
                sqlx::query(
                    "UPDATE pipelines SET trigger_spec = $1 \
                     WHERE workflow = $2 AND name = $3 AND trigger_spec IS NULL",
                )
                .bind(serde_json::to_string(&trigger).expect("triggers serialize"))
                .bind(&name)
                .bind(&pipeline)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            filled += 1;
        }
    }
}

/// Each pipeline's trigger in a stored spec, read without the rest of it.
fn pipeline_triggers(spec: &str) -> Result<BTreeMap<String, Trigger>, StorageError> {
    #[derive(serde::Deserialize)]
    struct Spec {
        pipelines: BTreeMap<String, Pipeline>,
    }
    #[derive(serde::Deserialize)]
    struct Pipeline {
        #[serde(default)]
        trigger: Trigger,
    }
    let spec: Spec =
        serde_json::from_str(spec).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok(spec
        .pipelines
        .into_iter()
        .map(|(name, p)| (name, p.trigger))
        .collect())
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
    let mut tx = db.begin_write().await?;
    let result = sqlx::query(
        "UPDATE workflows SET deleted = 1, updated_at = $1 WHERE name = $2 AND deleted = 0",
    )
    .bind(now_ms())
    .bind(name)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() == 0 {
        return Ok(false);
    }
    // Caches outlive runs, not their workflow (a new one of its name
    // starts without them); the collector removes their blobs.
    super::caches::delete_workflow(&mut tx, name).await?;
    tx.commit().await?;
    Ok(true)
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
