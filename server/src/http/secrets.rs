//! `/api/v1/secrets`: secrets for pipelines' tasks. Admins set, protect and
//! delete them; anyone signed in sees their names (the editor picks from
//! them); nobody ever reads a value back. An unprotected secret is readable
//! by every editor whose workflow names it (a step can print it transformed:
//! masking is a courtesy); a protected one only by versions an admin
//! approved.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xene_core::parse::{MAX_ENV_NAME_LEN, is_env_name, is_name};

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::access::audit;
use crate::storage::secrets::{self as store, MAX_VALUE_BYTES, MIN_VALUE_CHARS};
use crate::storage::{placement, rotation, runs, workflows};
use crate::vault::VaultError;
use xene_api::secrets::{Rotated, SecretInfo, SecretList, SecretValueRequest};

/// Queued runs looked at when a secret is deleted: a bound on the work.
const MAX_RUNS_CHECKED: i64 = 10_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, delete_secret))
        .routes(routes!(rotate_key))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The workflow the secret belongs to; without it, the global secret.
    /// A workflow's own secret wins over a global one of the same name.
    pub workflow: Option<String>,
}

/// Secrets' names, scopes and who changed them when; never their values.
/// With `workflow`, the secrets its runs see.
#[utoipa::path(
    get, path = "/api/v1/secrets", tag = "secrets", params(Scope),
    responses((status = 200, body = SecretList), (status = 400, description = "Bad workflow name"))
)]
async fn list_secrets(
    State(state): State<AppState>,
    scope: Result<Query<Scope>, QueryRejection>,
) -> Result<Json<SecretList>, ApiError> {
    let Query(scope) = scope?;
    let workflow = checked_scope(&scope)?;
    Ok(Json(SecretList {
        secrets: store::list(&state.db, workflow).await?,
    }))
}

/// Create or replace a secret, or change its protection (admins).
#[utoipa::path(
    put, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name, as tasks list it (letters, digits, _)"), Scope),
    request_body(content = SecretValueRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = SecretInfo),
        (status = 200, description = "Replaced", body = SecretInfo),
        (status = 400, description = "Bad name or malformed body"),
        (status = 404, description = "No such workflow"),
        (status = 413, description = "Value over 64 KiB"),
        (status = 422, description = "Empty, short or otherwise unusable value; no value for a new secret; an allow-list that is malformed, names another workflow for a workflow's own secret, is empty for a protected global one, or is given for an unprotected one"),
    )
)]
async fn put_secret(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    name: Result<Path<String>, PathRejection>,
    scope: Result<Query<Scope>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SecretInfo>), ApiError> {
    let Path(name) = name?;
    let Query(scope) = scope?;
    check_name(&name)?;
    let workflow = checked_scope(&scope)?;
    let body = body?;
    if body.len() > MAX_VALUE_BYTES * 7 + 1024 {
        // More than the largest value could take even fully escaped.
        return Err(too_large());
    }
    // Serde's message would quote the body, and so the value: never.
    let request: SecretValueRequest = serde_json::from_slice(&body).map_err(|_| {
        ApiError::BadRequest(
            r#"the body must be JSON like {"value": "...", "protected": true, "allow": ["WORKFLOW", "WORKFLOW/PIPELINE"]}"#.into(),
        )
    })?;
    if let Some(value) = &request.value {
        check_value(value)?;
    }
    let allow = request.allow.as_deref().map(checked_allow).transpose()?;
    if let Some(w) = workflow
        && !workflows::exists(&state.db, w).await?
    {
        return Err(ApiError::NotFound(format!("no workflow named {w:?}")));
    }
    let change = store::Change {
        value: request.value.as_deref(),
        protected: request.protected,
        allow: allow.as_deref(),
    };
    let created = store::put(
        &state.db,
        &state.ctx.vault,
        workflow,
        &name,
        change,
        &principal.user_id,
    )
    .await
    .map_err(secrets_error)?;
    audit(
        &state.db,
        &principal.user_id,
        if created {
            "secret.create"
        } else {
            "secret.replace"
        },
        &target(workflow, &name),
        "",
        &principal.remote,
    )
    .await?;
    let info = store::list(&state.db, workflow)
        .await?
        .into_iter()
        .find(|s| s.name == name && s.workflow.as_deref() == workflow)
        .ok_or_else(|| ApiError::Internal("the secret just stored is gone".into()))?;
    if request.protected.is_some() || request.allow.is_some() {
        let detail = if info.protected {
            format!("protected; allow: {}", info.allow.join(", "))
        } else {
            "not protected".to_string()
        };
        audit(
            &state.db,
            &principal.user_id,
            "secret.protect",
            &target(workflow, &name),
            &detail,
            &principal.remote,
        )
        .await?;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info)))
}

/// Delete a secret (admins). Queued runs that need it and have no other
/// value for it fail, saying which secret went.
#[utoipa::path(
    delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name"), Scope),
    responses((status = 204), (status = 400, description = "Bad name"), (status = 404, description = "No such secret"))
)]
async fn delete_secret(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    name: Result<Path<String>, PathRejection>,
    scope: Result<Query<Scope>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(name) = name?;
    let Query(scope) = scope?;
    check_name(&name)?;
    let workflow = checked_scope(&scope)?;
    if !store::delete(&state.db, workflow, &name).await? {
        return Err(ApiError::NotFound(format!(
            "no secret {}",
            target(workflow, &name)
        )));
    }
    audit(
        &state.db,
        &principal.user_id,
        "secret.delete",
        &target(workflow, &name),
        "",
        &principal.remote,
    )
    .await?;
    fail_runs_waiting_for(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Re-encrypt every secret under the first configured master key (admins).
/// Add the new key first in every replica's key file, keeping the old one
/// below it, then call this; then the old key can go.
#[utoipa::path(
    post, path = "/api/v1/secrets/rotate-key", tag = "secrets",
    responses((status = 200, body = Rotated), (status = 500, description = "A key is missing: nothing changed"))
)]
async fn rotate_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Rotated>, ApiError> {
    let reencrypted = rotation::rotate(&state.db, &state.ctx.vault)
        .await
        .map_err(secrets_error)?;
    let key_id = state.ctx.vault.primary_id();
    audit(
        &state.db,
        &principal.user_id,
        "secret.rotate_key",
        &key_id,
        &format!("{reencrypted} re-encrypted"),
        &principal.remote,
    )
    .await?;
    Ok(Json(Rotated {
        reencrypted,
        key_id,
    }))
}

/// Fails queued runs whose tasks use `name` when no scope provides it now.
async fn fail_runs_waiting_for(state: &AppState, name: &str) -> Result<(), ApiError> {
    let wanted = BTreeSet::from([name.to_string()]);
    let queued = placement::queued(&state.db, 0, MAX_RUNS_CHECKED).await?;
    for run in queued {
        let Some(pipeline) = runs::pipeline_of(&state.db, &run).await? else {
            continue;
        };
        if !store::names_used(&pipeline).contains(name) {
            continue;
        }
        if store::missing(&state.db, &run.workflow, &wanted)
            .await?
            .is_empty()
        {
            continue;
        }
        let reason =
            format!("the secret {name} was deleted while the run waited; create it and run again");
        runs::fail_attempt(&state.db, run.id, run.attempt, &reason).await?;
    }
    Ok(())
}

fn target(workflow: Option<&str>, name: &str) -> String {
    match workflow {
        Some(w) => format!("{name} (workflow {w})"),
        None => format!("{name} (global)"),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if !is_env_name(name) || name.len() > MAX_ENV_NAME_LEN {
        return Err(ApiError::BadRequest(format!(
            "a secret's name is up to {MAX_ENV_NAME_LEN} letters, digits and \"_\", not starting with a digit"
        )));
    }
    if name.starts_with("XENE_") {
        return Err(ApiError::BadRequest(
            "names starting with XENE_ are Xene's own variables".into(),
        ));
    }
    Ok(())
}

fn checked_scope(scope: &Scope) -> Result<Option<&str>, ApiError> {
    match scope.workflow.as_deref() {
        None => Ok(None),
        Some(w) if is_name(w) && w.len() <= 128 => Ok(Some(w)),
        Some(_) => Err(ApiError::BadRequest("malformed workflow name".into())),
    }
}

/// Allow-list entries: `WORKFLOW` or `WORKFLOW/PIPELINE`, bounded, each once.
fn checked_allow(allow: &[String]) -> Result<Vec<String>, ApiError> {
    if allow.len() > store::MAX_ALLOW {
        return Err(ApiError::Unprocessable(format!(
            "`allow` has at most {} entries",
            store::MAX_ALLOW
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(allow.len());
    for entry in allow {
        let parts: Vec<&str> = entry.split('/').collect();
        if parts.len() > 2 || parts.iter().any(|p| !is_name(p) || p.len() > 128) {
            return Err(ApiError::Unprocessable(format!(
                "{entry:?} in `allow` is not WORKFLOW or WORKFLOW/PIPELINE"
            )));
        }
        if !out.contains(entry) {
            out.push(entry.clone());
        }
    }
    Ok(out)
}

fn check_value(value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(too_large());
    }
    if value.trim().is_empty() {
        return Err(ApiError::Unprocessable(
            "a secret's value cannot be empty".into(),
        ));
    }
    if value.chars().count() < MIN_VALUE_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "a secret's value has at least {MIN_VALUE_CHARS} characters: masking a shorter one in logs would shred them"
        )));
    }
    if value.contains('\0') {
        return Err(ApiError::Unprocessable(
            "a secret's value cannot hold a NUL character (it goes into an environment variable)"
                .into(),
        ));
    }
    Ok(())
}

fn too_large() -> ApiError {
    ApiError::TooLarge(format!(
        "a secret's value is at most {MAX_VALUE_BYTES} bytes"
    ))
}

fn secrets_error(e: store::SecretsError) -> ApiError {
    match e {
        store::SecretsError::TooMany => ApiError::Conflict(e.to_string()),
        store::SecretsError::Invalid(message) => ApiError::Unprocessable(message),
        store::SecretsError::Vault(VaultError::UnknownKey(_)) => ApiError::Unavailable(
            "this server lacks the current master key of secrets; try again when its key file is updated".into(),
        ),
        other => ApiError::Internal(other.into()),
    }
}
