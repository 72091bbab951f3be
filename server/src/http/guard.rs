//! The guard in front of every route: the host check, then authentication
//! (an API token, or a browser session with a cross-site check on anything
//! that changes state), then the route's rule from `rules`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::AppState;
use super::error::ApiError;
use crate::access::rules::{self, Access};
use crate::access::{Principal, SESSION_USER, SessionUser, normalize_origin};
use crate::storage::access as store;
use crate::storage::{StorageError, now_ms};

/// Why a request got no principal.
enum Denied {
    /// No credential at all.
    Anonymous,
    /// A credential that does not work; the reason is logged, never sent.
    Invalid(String),
    /// A session cookie on a state-changing request from another site.
    CrossSite,
    /// More than one session cookie: one may have been planted, and which
    /// one a layer reads is not something to rely on.
    TwoSessions,
    Storage(StorageError),
    Session(tower_sessions::session::Error),
}

impl From<StorageError> for Denied {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// Refuses requests for host names that are not this server's.
pub async fn host_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // A NUL has no business in a path or a query, and PostgreSQL refuses it
    // in text: refused here, before any handler turns it into a 500.
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    if target.to_ascii_lowercase().contains("%00") {
        return ApiError::BadRequest("a NUL character (%00) in the path or query".into())
            .into_response();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    if state.access.hosts.allows(host) {
        return next.run(req).await;
    }
    tracing::warn!(host = %host.chars().take(200).collect::<String>(), "refused a request for an unknown host name");
    ApiError::Misdirected("this server does not answer to that host name".into()).into_response()
}

/// The guard for the API and every other non-page route.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = matched_path(&req);
    match rules::lookup(req.method(), &path) {
        Some(access) => {
            let page = rules::SIGN_IN_FIRST.contains(&path.as_str());
            enforce(&state, access, req, next, page).await
        }
        // A known path asked with a method it does not take: say so, as
        // the router would, without running anything.
        None if rules::RULES.iter().any(|r| r.path == path) => {
            ApiError::MethodNotAllowed(format!("method not allowed on {}", req.uri().path()))
                .into_response()
        }
        None => {
            tracing::error!(method = %req.method(), %path, "a route has no access rule: refused");
            ApiError::Forbidden("no access rule for this route".into()).into_response()
        }
    }
}

/// The guard for pages: a request without a session is sent to sign in.
pub async fn page_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = matched_path(&req);
    let access = if path.starts_with(rules::SERVER_FN_PREFIX) {
        rules::SERVER_FN_ACCESS
    } else {
        rules::page_access(&path)
    };
    let is_page = !path.starts_with(rules::SERVER_FN_PREFIX);
    enforce(&state, access, req, next, is_page).await
}

fn matched_path(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string())
}

async fn enforce(
    state: &AppState,
    access: Access,
    mut req: Request,
    next: Next,
    page: bool,
) -> Response {
    let Access::Role(needed) = access else {
        return next.run(req).await;
    };
    let asking = Asking {
        method: req.method().clone(),
        headers: req.headers().clone(),
        session: req.extensions().get::<Session>().cloned(),
        remote: remote(&req),
        two_sessions: req
            .extensions()
            .get::<super::cookies::TwoSessionCookies>()
            .is_some(),
    };
    match authenticate(state, &asking).await {
        Ok(principal) if principal.role >= needed => {
            // A signed-in client's connection leaves the strangers' budget.
            crate::listen::trust(req.extensions());
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(principal) => {
            tracing::info!(user = %principal.user_id, role = %principal.role, needed = %needed, path = %req.uri().path(), "refused: role too low");
            ApiError::Forbidden(format!("this needs the {needed} role")).into_response()
        }
        Err(Denied::Anonymous) if page => {
            let next_path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            Redirect::to(&format!(
                "/signin?next={}",
                xene_api::paths::encode_path(next_path)
            ))
            .into_response()
        }
        Err(Denied::Anonymous) => {
            ApiError::Unauthorized("sign in or send an API token".into()).into_response()
        }
        Err(Denied::Invalid(reason)) => {
            tracing::warn!(%reason, remote = %remote(&req), path = %req.uri().path(), "refused a credential");
            if page {
                return Redirect::to("/signin").into_response();
            }
            ApiError::Unauthorized("invalid or expired credentials".into()).into_response()
        }
        Err(Denied::TwoSessions) => {
            tracing::warn!(remote = %remote(&req), path = %req.uri().path(), "refused a request with two session cookies");
            ApiError::Unauthorized(
                "the request carries two session cookies: clear this site's cookies and sign in again"
                    .into(),
            )
            .into_response()
        }
        Err(Denied::CrossSite) => {
            tracing::warn!(remote = %remote(&req), path = %req.uri().path(), "refused a cross-site request");
            ApiError::Forbidden("cross-site request refused".into()).into_response()
        }
        Err(Denied::Storage(e)) => ApiError::from(e).into_response(),
        Err(Denied::Session(e)) => ApiError::Internal(e.into()).into_response(),
    }
}

/// The client's address, for logs and the audit log.
pub fn remote(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

/// The parts of a request authentication reads (a `Request` itself cannot
/// be held across an await: its body is not `Sync`).
struct Asking {
    method: Method,
    headers: HeaderMap,
    session: Option<Session>,
    remote: String,
    /// `cookies::clean_cookies` found more than one session cookie (and
    /// passed none of them on).
    two_sessions: bool,
}

/// The client's address as an extractor, for handlers outside the guard.
#[derive(Debug, Clone)]
pub struct Remote(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Remote(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
        ))
    }
}

async fn authenticate(state: &AppState, req: &Asking) -> Result<Principal, Denied> {
    if let Some(value) = req.headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| Denied::Invalid("not a bearer token".into()))?;
        return token_principal(state, token, req.remote.clone()).await;
    }
    if req.two_sessions {
        return Err(Denied::TwoSessions);
    }
    let Some(session) = req.session.as_ref() else {
        return Err(Denied::Anonymous);
    };
    let user: Option<SessionUser> = session.get(SESSION_USER).await.map_err(Denied::Session)?;
    let Some(mut user) = user else {
        return Err(Denied::Anonymous);
    };
    let now = now_ms();
    if now - user.signed_in_at > state.access.session_max.as_millis() as i64 {
        let _ = session.flush().await;
        return Err(Denied::Anonymous);
    }
    // A WebSocket handshake is a GET, but a foreign page may open one with
    // our cookie and read what it says: it gets the cross-site check too.
    let websocket = req
        .headers
        .get(header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if (websocket || !is_safe(&req.method))
        && !same_origin(&req.headers, state.access.https, &state.access.origin)
    {
        return Err(Denied::CrossSite);
    }
    let Some(stored) = store::user(&state.db, &user.user_id).await? else {
        let _ = session.flush().await;
        return Err(Denied::Anonymous);
    };
    if stored.disabled {
        let _ = session.flush().await;
        return Err(Denied::Invalid(format!("user {} is disabled", stored.id)));
    }
    if now - user.seen_at > 60_000 {
        user.seen_at = now;
        session
            .insert(SESSION_USER, &user)
            .await
            .map_err(Denied::Session)?;
    }
    Ok(Principal {
        user_id: stored.id,
        role: stored.role,
        token: None,
        remote: req.remote.clone(),
    })
}

async fn token_principal(
    state: &AppState,
    token: &str,
    remote: String,
) -> Result<Principal, Denied> {
    let verified = state.access.keys.verify(token).map_err(Denied::Invalid)?;
    let info = store::token(&state.db, &verified.jti)
        .await?
        .ok_or_else(|| Denied::Invalid(format!("token {} is unknown", verified.jti)))?;
    if info.revoked_at.is_some() {
        return Err(Denied::Invalid(format!("token {} is revoked", info.id)));
    }
    if info.user_id != verified.user_id {
        return Err(Denied::Invalid(format!(
            "token {} names another user",
            info.id
        )));
    }
    let user = store::user(&state.db, &info.user_id)
        .await?
        .ok_or_else(|| Denied::Invalid(format!("token {} has no user", info.id)))?;
    if user.disabled {
        return Err(Denied::Invalid(format!("user {} is disabled", user.id)));
    }
    store::touch_token(&state.db, &info.id).await?;
    Ok(Principal {
        user_id: user.id,
        // A token never does more than its row says, nor more than its
        // user may do today.
        role: info.role.min(user.role).min(verified.role),
        token: Some(info.id),
        remote,
    })
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a state-changing request with a session cookie comes from our
/// own pages. Browsers send `Sec-Fetch-Site` (and `Origin` on every POST);
/// a foreign page can forge neither. Without `Sec-Fetch-Site` (older
/// browsers) the whole origin must be ours, scheme included: the public
/// URL's, or this server's scheme with the `Host` asked for (which the host
/// check has already accepted).
fn same_origin(headers: &HeaderMap, https: bool, public_origin: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin") | Ok("none"));
    }
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .and_then(normalize_origin)
    else {
        return false;
    };
    if !public_origin.is_empty() && origin == public_origin {
        return true;
    }
    let scheme = if https { "https" } else { "http" };
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|host| normalize_origin(&format!("{scheme}://{host}")))
        .is_some_and(|own| own == origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_checks() {
        let check = |pairs: &[(&'static str, &'static str)]| {
            same_origin(&headers(pairs), false, "http://127.0.0.1:8080")
        };
        assert!(check(&[("sec-fetch-site", "same-origin")]));
        assert!(!check(&[("sec-fetch-site", "cross-site")]));
        assert!(!check(&[("sec-fetch-site", "same-site")]));
        assert!(check(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ]));
        assert!(check(&[
            ("origin", "http://localhost:8080"),
            ("host", "localhost:8080")
        ]));
        // The scheme counts: an https page is another origin.
        assert!(!check(&[
            ("origin", "https://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ]));
        assert!(!check(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080")
        ]));
        assert!(!check(&[("origin", "null"), ("host", "127.0.0.1:8080")]));
        assert!(!check(&[("host", "127.0.0.1:8080")]));
        // Behind a proxy that ends TLS: the public URL's origin.
        let proxied = headers(&[
            ("origin", "https://xene.example"),
            ("host", "10.0.0.5:8080"),
        ]);
        assert!(same_origin(&proxied, true, "https://xene.example"));
        assert!(!same_origin(&proxied, true, "https://other.example"));
    }
}
