//! The HTTP surface: one router per feature, merged by `router()`.

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::middleware::from_fn_with_state;
use leptos::prelude::LeptosOptions;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::access::SharedAccess;
use crate::storage::sessions::DbSessionStore;

use crate::controllers;
use crate::storage::Db;

pub mod agent_auth;
pub mod agents;
pub mod api;
pub mod artifacts;
pub mod audit;
pub mod blobs;
pub mod caches;
pub mod cli_login;
pub mod connect;
pub mod cookies;
pub mod cron;
pub mod dashboard;
pub mod error;
pub mod feed;
pub mod guard;
pub mod headers;
pub mod health;
pub mod hooks;
pub mod install;
pub mod metrics;
pub mod openapi;
pub mod runs;
pub mod secrets;
pub mod signin;
pub mod tokens;
pub mod ui;
pub mod users;
pub mod validation;
pub mod workflows;

/// The largest request body the API reads: a workflow at its size limit.
pub const MAX_BODY_BYTES: usize = xene_core::parse::MAX_SPEC_BYTES;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub leptos: LeptosOptions,
    pub ctx: controllers::Context,
    pub gateway: std::sync::Arc<crate::gateway::Gateway>,
    /// How agents and people reach this server, for install commands.
    pub public_url: String,
    /// The `xene-agent` binary `/install.sh` hands out.
    pub agent_binary: Option<std::path::PathBuf>,
    /// Sign-in, tokens, the host check.
    pub access: SharedAccess,
    /// This process serves HTTPS itself (not only behind a proxy).
    pub serves_tls: bool,
    /// When set, `/metrics` answers only a bearer of this token.
    pub metrics_token: Option<std::sync::Arc<str>>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// The whole application: API, health, metrics, and the web UI (which also
/// serves the static bundle and answers every other path).
///
/// Every route passes the access guard, which applies its rule from
/// `access::rules`; pages pass the page guard, which sends strangers to sign
/// in; everything passes the host check first.
pub fn router(state: AppState) -> Router {
    let metrics = state.ctx.metrics.clone();
    let guard = from_fn_with_state(state.clone(), guard::guard);
    let sessions = session_layer(&state);
    let router = Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(install::router())
        .merge(connect::router())
        .merge(blobs::router())
        .merge(signin::router())
        .merge(cli_login::router())
        .merge(api::router().layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
        .route_layer(guard)
        .merge(ui::router(&state).route_layer(from_fn_with_state(state.clone(), guard::page_guard)))
        .layer(sessions)
        .layer(from_fn_with_state(state.clone(), cookies::clean_cookies))
        .layer(from_fn_with_state(state.clone(), guard::host_guard))
        .layer(from_fn_with_state(state.clone(), headers::security_headers))
        .with_state(state);
    crate::telemetry::instrument(router, metrics)
}

/// Browser sessions: a cookie naming a row of the sessions table.
pub fn session_layer(state: &AppState) -> SessionManagerLayer<DbSessionStore> {
    SessionManagerLayer::new(DbSessionStore::new(state.db.clone()))
        .with_name(state.access.session_cookie())
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.access.https)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(
            time::Duration::try_from(state.access.session_idle).unwrap_or(time::Duration::HOUR),
        ))
}

/// The REST API alone behind the same guards as in `router`: what the web
/// UI's pages and server functions call in process, with the caller's own
/// headers, so a page can never do more than its user could with the API.
pub fn api_only(state: AppState) -> Router {
    Router::new()
        .merge(api::router().layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
        .route_layer(from_fn_with_state(state.clone(), guard::guard))
        .layer(session_layer(&state))
        .layer(from_fn_with_state(state.clone(), cookies::clean_cookies))
        .layer(from_fn_with_state(state.clone(), guard::host_guard))
        .with_state(state)
}

/// A JSON request body; an empty (or blank) body means the defaults.
pub fn json_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, error::ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| error::ApiError::BadRequest(format!("malformed JSON body: {e}")))
}
