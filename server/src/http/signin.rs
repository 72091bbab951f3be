//! Signing in, as HTTP: the OpenID Connect authorization code flow's two
//! routes (the provider client is `access::oidc`), one-time sign-in links,
//! and signing out.

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_sessions::Session;
use xene_core::access::Role;

use super::AppState;
use super::error::ApiError;
use super::guard::remote;
use crate::access::admit::Refusal;
use crate::access::oidc::Pending;
use crate::access::{AccessError, SESSION_USER, SessionUser, first_admin_identity};
use crate::storage::access::{self as store, Identity};
use crate::storage::now_ms;

const PENDING: &str = "oidc_pending";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/link", get(link))
        .route("/auth/logout", post(logout))
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Only a path on this server: never `//host` or `https://...`, which
/// would make the sign-in an open redirect.
fn local_path(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and newlines from a Location, so `/\t/evil` would
        // become `//evil`: no control character or space gets through.
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.len() < 2048
                && !p
                    .chars()
                    .any(|c| c == '\\' || c.is_control() || c.is_whitespace()) =>
        {
            p.to_string()
        }
        _ => "/".into(),
    }
}

fn refused(refusal: Refusal) -> Response {
    Redirect::to(&format!("/signin?error={}", refusal.code())).into_response()
}

async fn login(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<LoginQuery>,
) -> Response {
    let Some(oidc) = state.access.oidc.as_ref() else {
        return refused(Refusal::NotConfigured);
    };
    let (url, pending) = match oidc.start(local_path(query.next.as_deref())).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a sign-in");
            return refused(Refusal::Failed);
        }
    };
    if let Err(e) = session.insert(PENDING, pending).await {
        tracing::error!(error = %e, "cannot store a sign-in in the session");
        return refused(Refusal::Failed);
    }
    Redirect::to(&url).into_response()
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(State(state): State<AppState>, session: Session, req: Request) -> Response {
    let remote = remote(&req);
    let query: CallbackQuery = match Query::try_from_uri(req.uri()) {
        Ok(Query(q)) => q,
        Err(_) => return refused(Refusal::Failed),
    };
    match finish(&state, &session, query).await {
        Ok((user, next)) => {
            state.ctx.metrics.sign_in("ok");
            let _ = store::audit(
                &state.db,
                &user.id,
                "sign_in.ok",
                &user.id,
                &user.email,
                &remote,
            )
            .await;
            Redirect::to(&next).into_response()
        }
        Err((refusal, email)) => {
            state.ctx.metrics.sign_in(refusal.code());
            tracing::info!(reason = refusal.code(), email = %email, %remote, "sign-in refused");
            let _ = store::audit(
                &state.db,
                "anonymous",
                "sign_in.refused",
                &email,
                refusal.code(),
                &remote,
            )
            .await;
            refused(refusal)
        }
    }
}

type Failure = (Refusal, String);

async fn finish(
    state: &AppState,
    session: &Session,
    query: CallbackQuery,
) -> Result<(store::User, String), Failure> {
    let fail = |r: Refusal| (r, String::new());
    let oidc = state
        .access
        .oidc
        .as_ref()
        .ok_or(fail(Refusal::NotConfigured))?;
    // Taken out at once: a state and a code are good for one try.
    let pending: Pending = session
        .remove(PENDING)
        .await
        .ok()
        .flatten()
        .ok_or(fail(Refusal::Failed))?;
    if let Some(error) = &query.error {
        tracing::info!(error = %error.chars().take(100).collect::<String>(), "the provider refused the sign-in");
        return Err(fail(Refusal::Failed));
    }
    let (Some(code), Some(returned_state)) = (query.code, query.state) else {
        return Err(fail(Refusal::Failed));
    };
    let next = pending.next.clone();
    let verified = oidc
        .finish(pending, code, &returned_state)
        .await
        .map_err(|e| {
            match e {
                AccessError::Flow => {}
                AccessError::Discovery { .. } => {
                    tracing::error!(error = %e, "cannot finish a sign-in")
                }
                e => tracing::warn!(error = %e, "finishing a sign-in failed"),
            }
            fail(Refusal::Failed)
        })?;
    let claims = verified.claims;
    let seen_email = claims.email.clone().unwrap_or_default();
    let email = state
        .access
        .policy
        .admit(&claims)
        .map_err(|r| (r, seen_email.clone()))?;
    let identity = Identity {
        issuer: oidc.issuer().to_string(),
        subject: verified.subject,
        email: email.clone(),
        name: verified.name,
    };
    let role = newcomer_role(state, &email)
        .await
        .map_err(|_| fail(Refusal::Failed))?;
    let user = sign_in(state, session, &identity, role).await?;
    Ok((user, next))
}

/// The role of someone signing in for the first time (ignored for people
/// Xene knows: their role is what an admin made it).
async fn newcomer_role(
    state: &AppState,
    email: &str,
) -> Result<Role, crate::storage::StorageError> {
    if state.access.admin_emails.iter().any(|e| e == email) {
        return Ok(Role::Admin);
    }
    Ok(store::invited_role(&state.db, email)
        .await?
        .unwrap_or(state.access.default_role))
}

/// Records the sign-in and starts a fresh session (a new id, so a session
/// id planted before sign-in is worth nothing after).
async fn sign_in(
    state: &AppState,
    session: &Session,
    identity: &Identity,
    role: Role,
) -> Result<store::User, Failure> {
    if let Some(known) = store::user_by_identity(&state.db, &identity.issuer, &identity.subject)
        .await
        .map_err(|_| (Refusal::Failed, identity.email.clone()))?
        && known.disabled
    {
        return Err((Refusal::Disabled, identity.email.clone()));
    }
    let user = store::sign_in(&state.db, identity, role)
        .await
        .map_err(|_| (Refusal::Failed, identity.email.clone()))?;
    let now = now_ms();
    let stored = async {
        session.cycle_id().await?;
        session
            .insert(
                SESSION_USER,
                SessionUser {
                    user_id: user.id.clone(),
                    signed_in_at: now,
                    seen_at: now,
                },
            )
            .await
    };
    stored.await.map_err(|e| {
        tracing::error!(error = %e, "cannot store the session");
        (Refusal::Failed, identity.email.clone())
    })?;
    Ok(user)
}

#[derive(Debug, Deserialize)]
struct LinkQuery {
    token: Option<String>,
}

/// A one-time sign-in link, as printed for the first admin.
async fn link(State(state): State<AppState>, session: Session, req: Request) -> Response {
    let remote = remote(&req);
    let token = Query::<LinkQuery>::try_from_uri(req.uri())
        .ok()
        .and_then(|Query(q)| q.token)
        .unwrap_or_default();
    let role = match store::use_sign_in_link(&state.db, &token).await {
        Ok(Some(role)) => role,
        Ok(None) => {
            state.ctx.metrics.sign_in("link_invalid");
            let _ = store::audit(
                &state.db,
                "anonymous",
                "sign_in.refused",
                "",
                "link_invalid",
                &remote,
            )
            .await;
            return Redirect::to("/signin?error=link_invalid").into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    match sign_in(&state, &session, &first_admin_identity(), role).await {
        Ok(user) => {
            state.ctx.metrics.sign_in("ok");
            let _ = store::audit(
                &state.db,
                &user.id,
                "sign_in.ok",
                &user.id,
                "one-time link",
                &remote,
            )
            .await;
            Redirect::to("/").into_response()
        }
        Err((refusal, _)) => refused(refusal),
    }
}

async fn logout(session: Session) -> Response {
    let _ = session.flush().await;
    Redirect::to(&format!(
        "/signin?next={}",
        xene_api::paths::encode_path("/")
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_always_local() {
        assert_eq!(local_path(Some("/runs/1?x=2")), "/runs/1?x=2");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(Some("/\t/evil.example")), "/");
        assert_eq!(local_path(Some("/\n/evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }
}
