//! `/api/v1/workflows`: apply, list, get, delete workflows and their
//! versions, and start runs of their pipelines.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::access::audit;
use crate::storage::approvals;
use crate::storage::runs;
use crate::storage::secrets;
use crate::storage::workflows;
use xene_api::run::{Run, StartRun};
use xene_api::workflows::{
    Applied, Approved, Revoked, VersionList, WorkflowDetail, WorkflowList, WorkflowVersion,
};
use xene_core::access::Role;
use xene_core::draft::EditorLayout;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(apply_workflow, list_workflows))
        .routes(routes!(get_workflow, delete_workflow))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(put_layout))
        .routes(routes!(approve_version, revoke_approval))
        .routes(routes!(start_run))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ApplyOptions {
    /// Validate and say what would change (the answer's `changed` and
    /// `version`, faults as a 422), storing nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The version this text was edited from (0 for a new workflow): when
    /// the current version is another, nothing is stored and the answer is
    /// 409 naming the current version.
    pub base: Option<i64>,
    /// Approve the version applied for the protected secrets it uses
    /// (admins only: an editor asking gets 403 and nothing is stored).
    /// Without it a version is stored unapproved, whoever applies it.
    #[serde(default)]
    pub approve: bool,
    /// With `approve`: approve even though whoever starts a run chooses
    /// what runs with the protected secrets (an image or env taken from a
    /// template); without it such a version is refused with 409 naming
    /// each place, and nothing is stored.
    #[serde(default)]
    pub accept_run_time_choices: bool,
}

/// Apply a workflow from YAML or JSON. A changed spec becomes a new version.
#[utoipa::path(
    post, path = "/api/v1/workflows", tag = "workflows", params(ApplyOptions),
    request_body(content = String, description = "The workflow, YAML or JSON", content_type = "application/yaml"),
    responses(
        (status = 201, description = "Stored as a new version (or would be, with dry_run); approved for protected secrets only with `approve`", body = Applied),
        (status = 200, description = "Unchanged: same as the current version (approved with `approve`)", body = Applied),
        (status = 403, description = "The caller's role is below the route's, or `approve` was asked by someone who is not an admin (nothing is stored)"),
        (status = 409, description = "`base` is no longer the current version, or with `approve`, a run's starter would choose what runs with protected secrets and `accept_run_time_choices` is not set"),
        (status = 503, description = "Busy validating others: try again after `Retry-After` seconds"),
        (status = 413, description = "Body over the size limit"),
        (status = 422, description = "Invalid: every fault with its YAML path and line"),
    )
)]
async fn apply_workflow(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    options: Result<Query<ApplyOptions>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Applied>), ApiError> {
    let Query(options) = options?;
    if options.approve && principal.role != Role::Admin {
        return Err(ApiError::Forbidden(
            "only an admin approves a version (apply without approve, then ask an admin to run `xenectl approve`)".into(),
        ));
    }
    let body = body?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
    // Validation is CPU and memory in the size of the body: off the async
    // workers, and only so many at once (503 past that).
    let workflow = super::validation::parse_workflow(text.to_owned())
        .await?
        .map_err(ApiError::Invalid)?;
    // Told before anything is stored or approved.
    let protected = approvals::protected_used(&state.db, &workflow).await?;
    if options.approve {
        refuse_run_time_choices(&workflow, &protected, options.accept_run_time_choices)?;
    }
    let mut applied = if options.dry_run {
        workflows::preview(&state.db, &workflow, text).await?
    } else {
        workflows::apply(&state.db, &workflow, text, options.base)
            .await?
            .map_err(|stale| {
                ApiError::Conflict(format!(
                    "workflow {:?} changed meanwhile: this edit started from version {}, the current one is {}",
                    workflow.name,
                    options.base.unwrap_or_default(),
                    stale.current
                ))
            })?
    };
    let used: std::collections::BTreeSet<String> = workflow
        .pipelines
        .values()
        .flat_map(secrets::names_used)
        .collect();
    let missing = secrets::missing(&state.db, &workflow.name, &used).await?;
    if !missing.is_empty() {
        applied.warnings.push(format!(
            "the tasks use secrets that do not exist yet: {}; runs that need them are refused until they are created",
            missing.join(", ")
        ));
    }
    protection_warnings(
        &state,
        &principal,
        &workflow,
        &protected,
        &mut applied,
        &options,
    )
    .await?;
    let status = if applied.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if applied.changed && !options.dry_run {
        super::audit::record(
            &state,
            &principal,
            "workflow.apply",
            &applied.name,
            &format!("version {}", applied.version),
        )
        .await;
    }
    Ok((status, Json(applied)))
}

/// 409 naming every place where whoever starts a run of this version
/// chooses what runs with its protected secrets, unless accepted.
fn refuse_run_time_choices(
    spec: &xene_core::spec::Workflow,
    protected: &[String],
    accepted: bool,
) -> Result<Vec<String>, ApiError> {
    let choices = approvals::run_time_choices(spec, protected);
    if choices.is_empty() || accepted {
        return Ok(choices);
    }
    Err(ApiError::Conflict(format!(
        "not approved: whoever starts a run would choose what runs with the protected secrets: {}. \
         Take these from the spec instead, or approve knowing it (`accept_run_time_choices=true`, \
         `xenectl approve --accept-run-time-choices`, `xenectl apply --approve --accept-run-time-choices`)",
        choices.join("; ")
    )))
}

/// Says what protected secrets mean for this version, and approves it when
/// an admin asked for that (`approve`): storing a version approves nothing
/// by itself, so an admin saving an editor's text is not taken as having
/// read it.
async fn protection_warnings(
    state: &AppState,
    principal: &Principal,
    workflow: &xene_core::spec::Workflow,
    protected: &[String],
    applied: &mut Applied,
    options: &ApplyOptions,
) -> Result<(), ApiError> {
    for (pipeline, names) in approvals::not_allowed(&state.db, workflow).await? {
        applied.warnings.push(format!(
            "pipeline {pipeline} uses protected secret(s) {} whose allow-list does not name it: its runs are refused until an admin allows it",
            names.join(", ")
        ));
    }
    let name = &workflow.name;
    let version = applied.version;
    if options.approve {
        applied
            .warnings
            .extend(approvals::run_time_choices(workflow, protected));
        if options.dry_run {
            return Ok(());
        }
        let (_, made) = approvals::approve(&state.db, name, version, &principal.user_id)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!("workflow {name:?} has no version {version}"))
            })?;
        if made {
            let detail = format!(
                "approved on apply; protected secrets: {}",
                protected.join(", ")
            );
            audit_version(state, principal, "workflow.approve", name, version, &detail).await?;
        }
        return Ok(());
    }
    if protected.is_empty() {
        return Ok(());
    }
    // A dry run's new version would be unapproved; an unchanged one is
    // what is stored.
    let approved = !(applied.changed && options.dry_run)
        && approvals::approval_of(&state.db, name, version)
            .await?
            .flatten()
            .is_some();
    if !approved {
        applied.warnings.push(format!(
            "version {version} uses the protected secret(s) {}: its runs are refused until an admin approves it (`xenectl approve {name} --version {version}`, or apply it with `xenectl apply --approve`)",
            protected.join(", ")
        ));
    }
    Ok(())
}

/// List workflows.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", responses((status = 200, body = WorkflowList)))]
async fn list_workflows(State(state): State<AppState>) -> Result<Json<WorkflowList>, ApiError> {
    let now = crate::storage::now_ms();
    let workflows = workflows::list(&state.db)
        .await?
        .into_iter()
        .map(|mut listed| {
            for (pipeline, trigger) in listed.summary.summaries.iter_mut().zip(&listed.triggers) {
                pipeline.next_fire = trigger.as_ref().and_then(|trigger| {
                    crate::controllers::cron::next_fires(trigger, now, 1)
                        .first()
                        .copied()
                });
            }
            listed.summary
        })
        .collect();
    Ok(Json(WorkflowList { workflows }))
}

/// A workflow's current version, with its pipelines' scheduling state.
#[utoipa::path(
    get, path = "/api/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    responses((status = 200, body = WorkflowDetail), (status = 404, description = "No such workflow"))
)]
async fn get_workflow(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<WorkflowDetail>, ApiError> {
    let Path(name) = name?;
    let mut current = workflows::get(&state.db, &name, None)
        .await?
        .ok_or_else(|| unknown_workflow(&name))?;
    current.protected_secrets = approvals::protected_used(&state.db, &current.spec).await?;
    let mut pipelines = workflows::pipelines(&state.db, &name).await?;
    let now = crate::storage::now_ms();
    for p in &mut pipelines {
        if let Some(spec) = current.spec.pipelines.get(&p.name) {
            p.next_fires = crate::controllers::cron::next_fires(&spec.trigger, now, 5);
        }
    }
    Ok(Json(WorkflowDetail { current, pipelines }))
}

/// Delete a workflow: it takes no new runs; past runs keep their history.
#[utoipa::path(
    delete, path = "/api/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such workflow"))
)]
async fn delete_workflow(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(name) = name?;
    if workflows::delete(&state.db, &name).await? {
        super::audit::record(&state, &principal, "workflow.delete", &name, "").await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_workflow(&name))
    }
}

/// A workflow's versions, newest first.
#[utoipa::path(
    get, path = "/api/v1/workflows/{name}/versions", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    responses((status = 200, body = VersionList), (status = 404, description = "No such workflow"))
)]
async fn list_versions(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<VersionList>, ApiError> {
    let Path(name) = name?;
    let versions = workflows::versions(&state.db, &name)
        .await?
        .ok_or_else(|| unknown_workflow(&name))?;
    Ok(Json(VersionList { versions }))
}

/// One version of a workflow.
#[utoipa::path(
    get, path = "/api/v1/workflows/{name}/versions/{version}", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name"), ("version" = i64, Path, description = "Version number")),
    responses((status = 200, body = WorkflowVersion), (status = 404, description = "No such workflow or version"))
)]
async fn get_version(
    State(state): State<AppState>,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<Json<WorkflowVersion>, ApiError> {
    let Path((name, version)) = path?;
    let mut found = workflows::get(&state.db, &name, Some(version))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workflow {name:?} has no version {version}")))?;
    found.protected_secrets = approvals::protected_used(&state.db, &found.spec).await?;
    Ok(Json(found))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ApproveOptions {
    /// Approve even though whoever starts a run chooses what runs with the
    /// protected secrets (an image or env taken from a template); without
    /// it such a version is refused with 409 naming each place.
    #[serde(default)]
    pub accept_run_time_choices: bool,
}

/// Approve a version for the protected secrets it uses (admins). Its runs
/// may then have them, in the workflows and pipelines their allow-lists
/// name. Read the version first: whatever it runs sees those values.
#[utoipa::path(
    post, path = "/api/v1/workflows/{name}/versions/{version}/approve", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name"), ("version" = i64, Path, description = "Version number"), ApproveOptions),
    responses(
        (status = 200, description = "Approved (now or before)", body = Approved),
        (status = 404, description = "No such workflow or version"),
        (status = 409, description = "Whoever starts a run would choose what runs with protected secrets (each place named) and `accept_run_time_choices` is not set: not approved"),
    )
)]
async fn approve_version(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<(String, i64)>, PathRejection>,
    options: Result<Query<ApproveOptions>, QueryRejection>,
) -> Result<Json<Approved>, ApiError> {
    let Path((name, version)) = path?;
    let Query(options) = options?;
    let missing = || ApiError::NotFound(format!("workflow {name:?} has no version {version}"));
    let spec = workflows::get(&state.db, &name, Some(version))
        .await?
        .ok_or_else(missing)?
        .spec;
    // Told before approving, not after.
    let protected_secrets = approvals::protected_used(&state.db, &spec).await?;
    let warnings =
        refuse_run_time_choices(&spec, &protected_secrets, options.accept_run_time_choices)?;
    let (approval, changed) = approvals::approve(&state.db, &name, version, &principal.user_id)
        .await?
        .ok_or_else(missing)?;
    if changed {
        let accepted = if warnings.is_empty() {
            String::new()
        } else {
            format!("; run-time choices accepted: {}", warnings.join("; "))
        };
        let detail = format!(
            "protected secrets: {}{accepted}",
            protected_secrets.join(", ")
        );
        audit_version(
            &state,
            &principal,
            "workflow.approve",
            &name,
            version,
            &detail,
        )
        .await?;
    }
    Ok(Json(Approved {
        name,
        version,
        approved_by: approval.approved_by,
        approved_at: approval.approved_at,
        changed,
        protected_secrets,
        warnings,
    }))
}

/// Withdraw a version's approval (admins). Runs of it are refused the
/// protected secrets again from their next check (start, or hand-out to
/// an agent); a run that already has them keeps running.
#[utoipa::path(
    delete, path = "/api/v1/workflows/{name}/versions/{version}/approve", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name"), ("version" = i64, Path, description = "Version number")),
    responses(
        (status = 200, description = "Not approved any more (or was not)", body = Revoked),
        (status = 404, description = "No such workflow or version"),
    )
)]
async fn revoke_approval(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<Json<Revoked>, ApiError> {
    let Path((name, version)) = path?;
    let changed = approvals::revoke(&state.db, &name, version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workflow {name:?} has no version {version}")))?;
    if changed {
        audit_version(
            &state,
            &principal,
            "workflow.revoke_approval",
            &name,
            version,
            "approval withdrawn: its runs are refused protected secrets again",
        )
        .await?;
    }
    Ok(Json(Revoked {
        name,
        version,
        changed,
    }))
}

/// Records an admin's act on a workflow version in the audit log and the
/// server's log.
async fn audit_version(
    state: &AppState,
    principal: &Principal,
    action: &str,
    name: &str,
    version: i64,
    detail: &str,
) -> Result<(), ApiError> {
    let target = format!("{name} version {version}");
    audit(
        &state.db,
        &principal.user_id,
        action,
        &target,
        detail,
        &principal.remote,
    )
    .await?;
    tracing::info!(workflow = %name, version, by = %principal.user_id, action, "{detail}");
    Ok(())
}

/// Store where the visual editor placed a version's tasks.
#[utoipa::path(
    put, path = "/api/v1/workflows/{name}/versions/{version}/layout", tag = "workflows",
    params(("name" = String, Path, description = "Workflow name"), ("version" = i64, Path, description = "Version number")),
    request_body(content = Object, description = "`direction` (`left-right` or `top-down`) and `positions`: pipeline, then task, to `[x, y]`", content_type = "application/json"),
    responses(
        (status = 204, description = "Stored"),
        (status = 404, description = "No such workflow or version"),
        (status = 422, description = "Names no spec could hold, or beyond the bounds"),
    )
)]
async fn put_layout(
    State(state): State<AppState>,
    path: Result<Path<(String, i64)>, PathRejection>,
    body: Result<Json<EditorLayout>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((name, version)) = path?;
    let Json(layout) = body?;
    layout.check().map_err(ApiError::Unprocessable)?;
    if workflows::set_layout(&state.db, &name, version, &layout).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "workflow {name:?} has no version {version}"
        )))
    }
}

/// JSON scalars as the text a param holds; anything else is a fault.
pub(crate) fn param_texts(
    given: BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let mut faults = Vec::new();
    for (name, value) in given {
        match value {
            serde_json::Value::String(s) => {
                out.insert(name, s);
            }
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                out.insert(name, value.to_string());
            }
            _ => faults.push(xene_core::params::ParamFault {
                param: name,
                message: "must be a string, a number or a boolean".into(),
            }),
        }
    }
    if faults.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::InvalidParams(faults))
    }
}

/// Start a manual run of a pipeline, on the workflow's current version or
/// the `version` asked for; answers with the queued run and its `id`.
#[utoipa::path(
    post, path = "/api/v1/workflows/{name}/pipelines/{pipeline}/runs", tag = "runs",
    params(("name" = String, Path, description = "Workflow name"), ("pipeline" = String, Path, description = "Pipeline name")),
    request_body(content = Option<StartRun>, description = "Optional params", content_type = "application/json"),
    responses(
        (status = 201, description = "Queued", body = Run),
        (status = 400, description = "Malformed body"),
        (status = 404, description = "No such workflow or pipeline"),
        (status = 403, description = "The caller's role is below the route's; or the version uses protected secrets and no admin approved it, or the pipeline is not on a protected secret's allow-list (the error names the version and the secrets); or a `version` other than the current one was asked for a pipeline that uses protected secrets, by a caller who is not an admin"),
        (status = 422, description = "Invalid params (every fault at once, in `faults`; an empty value does not satisfy a required param), secrets the tasks use that do not exist (named in the error), or a `version` the workflow does not have or whose pipelines lack this one"),
    )
)]
async fn start_run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    let Path((name, pipeline)) = path?;
    let body = body?;
    let request: StartRun = super::json_body(&body)?;
    let params = param_texts(request.params)?;
    let asked = runs::Asked {
        version: request.version,
        by_admin: principal.role == Role::Admin,
    };
    let run = runs::create_at(&state.db, &name, &pipeline, asked, params, "manual").await?;
    state.ctx.metrics.run_started("manual", &name, &pipeline);
    state.ctx.metrics.run_traces.remember(run.id);
    tracing::info!(run_id = run.id, workflow = %name, pipeline = %pipeline, "run queued");
    super::audit::record(
        &state,
        &principal,
        "run.start",
        &format!("run {}", run.id),
        &format!("{name}/{pipeline} version {}", run.version),
    )
    .await;
    Ok((StatusCode::CREATED, Json(run)))
}

fn unknown_workflow(name: &str) -> ApiError {
    ApiError::NotFound(format!("no workflow named {name:?}"))
}
