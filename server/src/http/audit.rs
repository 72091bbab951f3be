//! `/api/v1/audit`: who did what, when and from where (admins only), and
//! [`record`], how handlers add to it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::access::{self as store, AuditFilter};
use xene_api::access::AuditPage;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit_log))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// 1 to 500, default 100.
    pub limit: Option<i64>,
    /// Only this action (`run.start`), or every action of a kind (`run`).
    pub action: Option<String>,
    /// Only what this actor did (a user id, `agent:ID`, `anonymous`).
    pub actor: Option<String>,
}

/// The audit log, newest first: sign-ins and refusals, token, role and
/// invite changes, agent joins and revocations, secrets, webhooks,
/// workflows applied, approved and deleted, runs started and cancelled.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "access", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400), (status = 401), (status = 403))
)]
async fn audit_log(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 500, not {limit}"
        )));
    }
    let filter = AuditFilter {
        before: query.before,
        action: checked("action", query.action)?,
        actor: checked("actor", query.actor)?,
        limit,
    };
    let entries = store::audit_entries(&state.db, &filter).await?;
    let next_before = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}

/// A filter's value: empty means no filter; longer than any stored value
/// (512 characters) or holding a control character is refused.
fn checked(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > 512 || v.chars().any(char::is_control) => Err(
            ApiError::BadRequest(format!("{name} must be at most 512 printable characters")),
        ),
        other => Ok(other),
    }
}

/// Records what `principal` did in the audit log. The act itself is done
/// already: a failure to record it is logged, and does not undo it.
pub async fn record(
    state: &AppState,
    principal: &Principal,
    action: &str,
    target: &str,
    detail: &str,
) {
    if let Err(e) = store::audit(
        &state.db,
        &principal.user_id,
        action,
        target,
        detail,
        &principal.remote,
    )
    .await
    {
        tracing::error!(error = %e, action, target, "cannot record in the audit log");
    }
}
