//! `/api/v1/me`, `/api/v1/users` and `/api/v1/invites`: who is signed in,
//! the people Xene knows with their roles, and the roles newcomers get.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::access::{self as store, UserChangeError};
use xene_api::access::{
    Invite, InviteList, InviteRequest, Me, SignInMethods, User, UserChange, UserList,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(sign_in_methods))
        .routes(routes!(list_users))
        .routes(routes!(update_user))
        .routes(routes!(list_invites, put_invite))
        .routes(routes!(delete_invite))
}

/// The user (and role) behind this request.
#[utoipa::path(get, path = "/api/v1/me", tag = "access", responses((status = 200, body = Me), (status = 401)))]
async fn me(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Me>, ApiError> {
    let user = store::user(&state.db, &principal.user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid or expired credentials".into()))?;
    Ok(Json(Me {
        user,
        role: principal.role,
        token: principal.token,
    }))
}

/// How people sign in here, for the sign-in page: the identity provider's
/// name when one is configured. Anyone may ask.
#[utoipa::path(get, path = "/api/v1/sign-in-methods", tag = "access", responses((status = 200, body = SignInMethods)))]
async fn sign_in_methods(State(state): State<AppState>) -> Json<SignInMethods> {
    let provider = state
        .access
        .oidc
        .as_ref()
        .map(|oidc| provider_name(oidc.issuer()));
    Json(SignInMethods { provider })
}

/// `Google` for Google's issuer, else the issuer's host.
fn provider_name(issuer: &str) -> String {
    let issuer = issuer.trim_end_matches('/');
    if issuer == crate::config::access::GOOGLE_ISSUER {
        return "Google".into();
    }
    let host = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    host.split('/').next().unwrap_or(host).to_string()
}

/// Every user with their role (admins only).
#[utoipa::path(get, path = "/api/v1/users", tag = "access", responses((status = 200, body = UserList), (status = 401), (status = 403)))]
async fn list_users(State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    Ok(Json(UserList {
        users: store::users(&state.db).await?,
    }))
}

/// Change a user's role or disable them (admins only). The last admin stays.
#[utoipa::path(
    patch, path = "/api/v1/users/{id}", tag = "access",
    params(("id" = String, Path, description = "User id")),
    request_body(content = UserChange, content_type = "application/json"),
    responses((status = 200, body = User), (status = 400), (status = 404), (status = 409, description = "Would leave no admin"))
)]
async fn update_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<User>, ApiError> {
    let Path(id) = id?;
    let change: UserChange = super::json_body(&body?)?;
    let user = store::update_user(&state.db, &id, change.role, change.disabled)
        .await
        .map_err(|e| match e {
            UserChangeError::Unknown(_) => ApiError::NotFound(e.to_string()),
            UserChangeError::LastAdmin => ApiError::Conflict(e.to_string()),
            UserChangeError::Storage(e) => e.into(),
        })?;
    let detail = format!("role={} disabled={}", user.role, user.disabled);
    store::audit(
        &state.db,
        &principal.user_id,
        "user.update",
        &user.id,
        &detail,
        &principal.remote,
    )
    .await?;
    Ok(Json(user))
}

/// Invites: the role a newcomer gets by email or by domain (admins only).
#[utoipa::path(get, path = "/api/v1/invites", tag = "access", responses((status = 200, body = InviteList), (status = 401), (status = 403)))]
async fn list_invites(State(state): State<AppState>) -> Result<Json<InviteList>, ApiError> {
    Ok(Json(InviteList {
        invites: store::invites(&state.db).await?,
    }))
}

/// Give an email or a domain a role at first sign-in (admins only).
#[utoipa::path(
    post, path = "/api/v1/invites", tag = "access",
    request_body(content = InviteRequest, content_type = "application/json"),
    responses((status = 201, body = Invite), (status = 400))
)]
async fn put_invite(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Invite>), ApiError> {
    let body = body?;
    let request: InviteRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    let valid = |s: &str, email: bool| {
        !s.is_empty()
            && s.len() <= 254
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.+@".contains(c))
            && (s.contains('@') == email)
    };
    match (&request.email, &request.domain) {
        (Some(email), None) if valid(email, true) => {}
        (None, Some(domain)) if valid(domain, false) && domain.contains('.') => {}
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of a valid `email` or `domain`".into(),
            ));
        }
    }
    let invite = store::put_invite(
        &state.db,
        request.email.as_deref(),
        request.domain.as_deref(),
        request.role,
        &principal.user_id,
    )
    .await?;
    let target = invite
        .email
        .clone()
        .or(invite.domain.clone())
        .unwrap_or_default();
    store::audit(
        &state.db,
        &principal.user_id,
        "invite.put",
        &target,
        invite.role.as_str(),
        &principal.remote,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

/// Remove an invite (admins only).
#[utoipa::path(
    delete, path = "/api/v1/invites/{id}", tag = "access",
    params(("id" = i64, Path, description = "Invite id")),
    responses((status = 204), (status = 404))
)]
async fn delete_invite(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    if !store::delete_invite(&state.db, id).await? {
        return Err(ApiError::NotFound(format!("no invite with id {id}")));
    }
    store::audit(
        &state.db,
        &principal.user_id,
        "invite.delete",
        &id.to_string(),
        "",
        &principal.remote,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
