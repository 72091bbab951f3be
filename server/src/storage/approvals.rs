//! Approvals of workflow versions for protected secrets.
//!
//! Editors may change any workflow, so a secret's scope alone is no
//! boundary: whoever can store a version can print what it names. A
//! protected secret reaches a run only when its workflow (or pipeline) is
//! on the secret's allow-list and an admin approved that very version
//! (with `approve`, or by applying it with `?approve=true`: storing it is
//! not enough, whoever stores it). A version is approved as a whole: a new
//! step, image or param is a new version and needs a new approval. An
//! approval can be revoked.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use xene_core::spec::Workflow;

use super::secrets::{self, Chosen};
use super::{Db, StorageError, now_ms};

/// Who approved a version, and when (UTC ms).
#[derive(Debug, Clone)]
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

/// Withdraws the approval of a stored version (of a live or deleted
/// workflow: a queued run keeps its version); its runs are refused the
/// protected secrets again from their next check. `None` when there is no
/// such version; else true when it was approved.
pub async fn revoke(db: &Db, workflow: &str, version: i64) -> Result<Option<bool>, StorageError> {
    let mut conn = db.write_conn().await?;
    let revoked = sqlx::query(
        "UPDATE workflow_versions SET approved_by = NULL, approved_at = NULL \
         WHERE workflow = $1 AND version = $2 AND approved_by IS NOT NULL",
    )
    .bind(workflow)
    .bind(version)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if revoked {
        return Ok(Some(true));
    }
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM workflow_versions WHERE workflow = $1 AND version = $2",
    )
    .bind(workflow)
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(exists.map(|_| false))
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

/// The most run-time choices named one by one; the rest are counted.
const MAX_CHOICES: usize = 50;

/// What whoever starts a run still chooses in an approved version: a task
/// that has protected secrets and takes its image, or any environment
/// variable of its steps (from the pipeline, the task or a step), from a
/// template. Env is code as much as a script is (`BASH_ENV`, `PATH`,
/// `LD_PRELOAD`, `GIT_SSH_COMMAND`...), so approving such a version lets
/// the starter choose what runs with the values. Computed before an
/// approval is made, so an admin is told before approving.
pub fn run_time_choices(spec: &Workflow, protected: &[String]) -> Vec<String> {
    let templated = |value: &str| value.contains("{{");
    let mut out = Vec::new();
    for (pipeline, p) in &spec.pipelines {
        for (name, task) in &p.tasks {
            if !task.secrets.iter().any(|s| protected.contains(s)) {
                continue;
            }
            let task_id = format!("task {pipeline}/{name}");
            if let Some(image) = task.image.as_deref().filter(|i| templated(i)) {
                out.push(format!(
                    "{task_id} takes its image from a template ({image}): whoever starts a run chooses the image that gets the protected secrets"
                ));
            }
            let envs = p
                .env
                .iter()
                .map(|(k, v)| (format!("pipeline {pipeline}"), k, v))
                .chain(task.env.iter().map(|(k, v)| ("the task".to_string(), k, v)))
                .chain(task.steps.iter().chain(&task.post).flat_map(|step| {
                    step.env
                        .iter()
                        .map(move |(k, v)| (format!("step {}", step.name), k, v))
                }));
            for (owner, key, value) in envs.filter(|(_, _, v)| templated(v)) {
                out.push(format!(
                    "{task_id} takes env {key} (of {owner}) from a template ({value}): whoever starts a run chooses it, and env can be code (BASH_ENV, PATH, LD_PRELOAD...) run with the protected secrets"
                ));
            }
        }
    }
    if out.len() > MAX_CHOICES {
        let more = out.len() - MAX_CHOICES;
        out.truncate(MAX_CHOICES);
        out.push(format!("and {more} more"));
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
