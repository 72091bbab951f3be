//! Checking a run request before it is queued: the version asked for, the
//! params, the secrets and their approvals.

use std::collections::BTreeMap;

use xene_core::spec::Workflow;

use super::RunError;
use crate::storage::Db;

/// Which version a start asks for (`None`: the current one), and whether
/// its caller is an admin, who alone may start an earlier version that
/// uses protected secrets (see `prepare_at`).
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    pub version: Option<i64>,
    pub by_admin: bool,
}

impl Asked {
    /// The current version, as every trigger but a manual start asks.
    pub const CURRENT: Asked = Asked {
        version: None,
        by_admin: false,
    };
}

/// A run checked and ready to insert: the pipeline's current version, the
/// params resolved against its declarations.
pub struct Prepared {
    pub(super) workflow: String,
    pub(super) pipeline: String,
    pub(super) version: i64,
    /// The workflow's current version when the run was checked.
    pub(super) current: i64,
    pub(super) spec: xene_core::spec::Pipeline,
    pub(super) resolved: BTreeMap<String, String>,
    /// The run's model (see `storage::RUN_MODEL`).
    pub(super) model: i64,
}

impl Prepared {
    /// The pipeline as its current version declares it.
    pub fn spec(&self) -> &xene_core::spec::Pipeline {
        &self.spec
    }
}

/// Checks a run request against the pipeline's current version.
pub async fn prepare(
    db: &Db,
    workflow: &str,
    pipeline: &str,
    params: BTreeMap<String, String>,
) -> Result<Prepared, RunError> {
    prepare_at(db, workflow, pipeline, Asked::CURRENT, params).await
}

/// Checks a run request against the version asked for. Only a workflow
/// that is not deleted takes runs, whichever version they ask for.
///
/// An approval is the boundary around protected secrets, and applying a
/// fixed version (approved anew) is how an admin retires a flawed one: so
/// only an admin may start a version other than the current one when the
/// pipeline uses protected secrets. Anyone who may start runs can still
/// start any earlier version without them: an editor could apply its text
/// again anyway.
pub async fn prepare_at(
    db: &Db,
    workflow: &str,
    pipeline: &str,
    asked: Asked,
    params: BTreeMap<String, String>,
) -> Result<Prepared, RunError> {
    let Asked {
        version: asked,
        by_admin,
    } = asked;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT current_version FROM workflows WHERE name = $1 AND deleted = 0")
            .bind(workflow)
            .fetch_optional(db.pool())
            .await?;
    let current = current.ok_or_else(|| RunError::UnknownWorkflow(workflow.to_string()))?;
    let version = asked.unwrap_or(current);
    let spec: Workflow = crate::storage::workflows::spec_of_version(db, workflow, version)
        .await?
        .ok_or_else(|| match asked {
            Some(version) => RunError::UnknownVersion {
                workflow: workflow.to_string(),
                version,
                current,
            },
            None => RunError::UnknownWorkflow(workflow.to_string()),
        })?;
    let spec_pipeline = spec.pipelines.get(pipeline).ok_or_else(|| match asked {
        Some(version) => RunError::PipelineNotInVersion {
            workflow: workflow.to_string(),
            pipeline: pipeline.to_string(),
            version,
        },
        None => RunError::UnknownPipeline {
            workflow: workflow.to_string(),
            pipeline: pipeline.to_string(),
        },
    })?;
    // Every trigger passes here: a stored version whose scripts hold a
    // template now refused never runs, whoever starts it.
    if let Some(refused) = RunError::unsafe_script(version, spec_pipeline) {
        return Err(refused);
    }
    if version != current && !by_admin {
        let used = crate::storage::secrets::names_used(spec_pipeline);
        let protected: Vec<String> = crate::storage::secrets::chosen(db, workflow, &used)
            .await?
            .into_values()
            .filter(|c| c.protected)
            .map(|c| c.name)
            .collect();
        if !protected.is_empty() {
            return Err(RunError::ProtectedSecrets(format!(
                "version {version} of workflow {workflow} is not the current one ({current}), and \
                 pipeline {pipeline} uses the protected secret(s) {}: only an admin may start an \
                 earlier version of it; leave the version out to run the current one \
                 (`xenectl rerun RUN --latest`)",
                protected.join(", ")
            )));
        }
    }
    let resolved = xene_core::params::resolve(&spec_pipeline.params, &params)
        .map_err(RunError::InvalidParams)?;
    let missing = crate::storage::secrets::missing(
        db,
        workflow,
        &crate::storage::secrets::names_used(spec_pipeline),
    )
    .await?;
    if !missing.is_empty() {
        return Err(RunError::MissingSecrets(missing));
    }
    if let Some(refusal) =
        crate::storage::approvals::check_start(db, workflow, version, pipeline, spec_pipeline)
            .await?
    {
        return Err(RunError::ProtectedSecrets(refusal));
    }
    Ok(Prepared {
        workflow: workflow.to_string(),
        pipeline: pipeline.to_string(),
        version,
        current,
        spec: spec_pipeline.clone(),
        resolved,
        model: db.run_model(),
    })
}
