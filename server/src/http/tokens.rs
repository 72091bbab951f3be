//! `/api/v1/tokens`: API tokens for the CLI and scripts. Everyone manages
//! their own; admins see and revoke everyone's.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xene_core::access::Role;

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::access as store;
use xene_api::access::{NewToken, TokenList, TokenRequest};

/// A token lives 90 days unless asked otherwise, and at most a year.
const DEFAULT_TTL_MS: i64 = 90 * 24 * 3600 * 1000;
const MAX_TTL_MS: i64 = 366 * 24 * 3600 * 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// Your API tokens (an admin's list holds everyone's).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", responses((status = 200, body = TokenList), (status = 401)))]
async fn list_tokens(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<TokenList>, ApiError> {
    let own = (principal.role < Role::Admin).then_some(principal.user_id.as_str());
    let mut tokens = store::tokens(&state.db, own).await?;
    if own.is_some() {
        // A token given to a dashboard does not learn of the stronger
        // tokens beside it.
        let user_role = user_role(&state, &principal.user_id).await?;
        tokens.retain(|t| t.role.min(user_role) <= principal.role);
    }
    Ok(Json(TokenList { tokens }))
}

/// The user's role today (a token never acts above it).
async fn user_role(state: &AppState, user_id: &str) -> Result<Role, ApiError> {
    Ok(store::user(&state.db, user_id)
        .await?
        .map_or(Role::Viewer, |u| u.role))
}

/// Create an API token with a role no higher than yours.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "access",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses((status = 201, body = NewToken), (status = 400), (status = 403, description = "Role above yours"))
)]
async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    let request: TokenRequest = serde_json::from_slice(&body?)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "a token's name is 1 to 100 printable characters".into(),
        ));
    }
    let role = request.role.unwrap_or(principal.role);
    if role > principal.role {
        return Err(ApiError::Forbidden(format!(
            "a token cannot have a role ({role}) above yours ({})",
            principal.role
        )));
    }
    let ttl_ms = match request.expires_in.as_deref() {
        None => DEFAULT_TTL_MS,
        Some(text) => {
            let d = xene_core::duration::parse(text)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            if !(60_000..=MAX_TTL_MS).contains(&ms) {
                return Err(ApiError::BadRequest(
                    "expires_in must be between 1m and 366d".into(),
                ));
            }
            ms
        }
    };
    let (token, info) = state
        .access
        .mint_token(
            &state.db,
            &principal.user_id,
            name,
            role,
            ttl_ms,
            principal.token.as_deref(),
        )
        .await?;
    store::audit(
        &state.db,
        &principal.user_id,
        "token.create",
        &info.id,
        &format!("{name} ({role})"),
        &principal.remote,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(NewToken { token, info })))
}

/// Revoke an API token: it stops working at once.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "access",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 404))
)]
async fn revoke_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    let not_found = || ApiError::NotFound("no such token".into());
    let info = store::token(&state.db, &id).await?.ok_or_else(not_found)?;
    // Someone else's token looks just like one that does not exist.
    if info.user_id != principal.user_id && principal.role < Role::Admin {
        return Err(not_found());
    }
    // A viewer token cannot lock out its user's admin token: only tokens
    // that do no more than the caller may be revoked by it.
    let acts_as = info.role.min(user_role(&state, &info.user_id).await?);
    if acts_as > principal.role {
        return Err(ApiError::Forbidden(format!(
            "this token acts as {acts_as}, above your {}: revoke it with an {acts_as} token or a browser session",
            principal.role
        )));
    }
    store::revoke_token(&state.db, &id).await?;
    store::audit(
        &state.db,
        &principal.user_id,
        "token.revoke",
        &id,
        &info.name,
        &principal.remote,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
