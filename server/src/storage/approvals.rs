//! Approvals of workflow versions for protected secrets.
//!
//! Editors may change any workflow, so a secret's scope alone is no
//! boundary: whoever can store a version can print what it names. A
//! protected secret reaches a run only when its workflow (or pipeline) is
//! on the secret's allow-list and an admin approved that very version
//! (storing it as an admin counts). A version is approved as a whole: a new
//! step, image or param is a new version and needs a new approval.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::Row;
use xene_core::spec::Workflow;

use super::secrets::{self, Chosen};
use super::{Db, StorageError, now_ms};

/// Who approved a version, and when (UTC ms).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Approval {
    pub approved_by: String,
    pub approved_at: i64,
}

/// A version's approval; `Ok(None)` when there is no such version of a
/// live workflow, `Some(None)` when nobody approved it.
pub async fn approval_of(
    db: &Db,
    workflow: &str,
    version: i64,
) -> Result<Option<Option<Approval>>, StorageError> {
    let row = sqlx::query(
        "SELECT v.approved_by, v.approved_at FROM workflow_versions v \
         JOIN workflows w ON w.name = v.workflow \
         WHERE v.workflow = $1 AND v.version = $2 AND w.deleted = 0",
    )
    .bind(workflow)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| {
        let by: Option<String> = r.get(0);
        let at: Option<i64> = r.get(1);
        by.zip(at).map(|(approved_by, approved_at)| Approval {
            approved_by,
            approved_at,
        })
    }))
}

/// Approves a version of a live workflow. An approval is never replaced:
/// the first one stands. `None` when there is no such version; with the
/// approval, true when this call made it.
pub async fn approve(
    db: &Db,
    workflow: &str,
    version: i64,
    actor: &str,
) -> Result<Option<(Approval, bool)>, StorageError> {
    let made = sqlx::query(
        "UPDATE workflow_versions SET approved_by = $1, approved_at = $2 \
         WHERE workflow = $3 AND version = $4 AND approved_by IS NULL \
         AND EXISTS (SELECT 1 FROM workflows w WHERE w.name = $3 AND w.deleted = 0)",
    )
    .bind(actor)
    .bind(now_ms())
    .bind(workflow)
    .bind(version)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected()
        == 1;
    Ok(approval_of(db, workflow, version)
        .await?
        .flatten()
        .map(|a| (a, made)))
}

/// Whether an allow-list lets `pipeline` of `workflow` use a protected
/// secret. A workflow's own secret with an empty list allows that workflow.
pub fn allows(row: &Chosen, workflow: &str, pipeline: &str) -> bool {
    if row.allow.is_empty() {
        return row.scope == workflow;
    }
    row.allow.iter().any(|entry| match entry.split_once('/') {
        Some((w, p)) => w == workflow && p == pipeline,
        None => entry == workflow,
    })
}

/// The protected secrets a whole workflow version names, by name.
pub async fn protected_used(db: &Db, spec: &Workflow) -> Result<Vec<String>, StorageError> {
    let names: BTreeSet<String> = spec
        .pipelines
        .values()
        .flat_map(secrets::names_used)
        .collect();
    Ok(secrets::chosen(db, &spec.name, &names)
        .await?
        .into_values()
        .filter(|c| c.protected)
        .map(|c| c.name)
        .collect())
}

/// What whoever starts a run still chooses in an approved version: a task
/// that has protected secrets and takes its image from a template runs the
/// image the run's params name.
pub fn run_time_choices(spec: &Workflow, protected: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (pipeline, p) in &spec.pipelines {
        for (name, task) in &p.tasks {
            let uses = task.secrets.iter().any(|s| protected.contains(s));
            if let Some(image) = &task.image
                && uses
                && image.contains("{{")
            {
                out.push(format!(
                    "task {pipeline}/{name} takes its image from a template ({image}): whoever starts a run chooses the image that gets the protected secrets"
                ));
            }
        }
    }
    out
}

/// Pipelines of a version that name protected secrets their workflow is
/// not allowed to use: `(pipeline, secrets)`.
pub async fn not_allowed(
    db: &Db,
    spec: &Workflow,
) -> Result<Vec<(String, Vec<String>)>, StorageError> {
    let mut out = Vec::new();
    for (pipeline, p) in &spec.pipelines {
        let chosen = secrets::chosen(db, &spec.name, &secrets::names_used(p)).await?;
        let refused: Vec<String> = chosen
            .values()
            .filter(|c| c.protected && !allows(c, &spec.name, pipeline))
            .map(|c| c.name.clone())
            .collect();
        if !refused.is_empty() {
            out.push((pipeline.clone(), refused));
        }
    }
    Ok(out)
}

/// Why a run of `pipeline` of this version may not have the protected
/// secrets among `chosen`, if it may not.
pub async fn refusal(
    db: &Db,
    workflow: &str,
    version: i64,
    pipeline: &str,
    chosen: &BTreeMap<String, Chosen>,
) -> Result<Option<String>, StorageError> {
    let protected: Vec<&Chosen> = chosen.values().filter(|c| c.protected).collect();
    if protected.is_empty() {
        return Ok(None);
    }
    let outside: Vec<&str> = protected
        .iter()
        .filter(|c| !allows(c, workflow, pipeline))
        .map(|c| c.name.as_str())
        .collect();
    if !outside.is_empty() {
        return Ok(Some(format!(
            "pipeline {workflow}/{pipeline} is not on the allow-list of the protected secret(s) {}: \
             an admin must add it to their `allow` before it can use them",
            outside.join(", ")
        )));
    }
    // Any stored version, deleted workflow or not: a queued run keeps its version.
    let approved: Option<Option<String>> = sqlx::query_scalar(
        "SELECT approved_by FROM workflow_versions WHERE workflow = $1 AND version = $2",
    )
    .bind(workflow)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    if approved.flatten().is_some() {
        return Ok(None);
    }
    let names: Vec<&str> = protected.iter().map(|c| c.name.as_str()).collect();
    Ok(Some(format!(
        "version {version} of workflow {workflow} uses the protected secret(s) {} and is not approved: \
         an admin must approve it (`xenectl approve {workflow} --version {version}`)",
        names.join(", ")
    )))
}

/// The same check at a run's start, before anything is queued.
pub async fn check_start(
    db: &Db,
    workflow: &str,
    version: i64,
    pipeline: &str,
    spec: &xene_core::spec::Pipeline,
) -> Result<Option<String>, StorageError> {
    let chosen = secrets::chosen(db, workflow, &secrets::names_used(spec)).await?;
    refusal(db, workflow, version, pipeline, &chosen).await
}
