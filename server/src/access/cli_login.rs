//! `xenectl login`, as `gh auth login` does it: the CLI listens on a
//! loopback port and opens the browser at `/auth/cli?port=P&state=S`; a
//! signed-in browser is sent on to `http://127.0.0.1:P/callback` with a
//! one-time code, which the CLI spends at `POST /auth/cli/token` for an API
//! token. The code is useless to anyone but the first to spend it, within
//! two minutes, and only its hash is stored.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::Principal;
use super::guard::Remote;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::tokens::NewToken;
use crate::storage::access as store;
use crate::storage::auth::{hash, secret};
use crate::storage::{Db, StorageError, now_ms};

/// How long a code can wait to be spent.
const CODE_TTL_MS: i64 = 2 * 60 * 1000;
/// How long the token the CLI gets works.
const TOKEN_TTL_MS: i64 = 90 * 24 * 3600 * 1000;
const STATE_MIN: usize = 16;
const STATE_MAX: usize = 128;
const HOSTNAME_MAX: usize = 64;
const CODE_PREFIX: &str = "xcc_";

pub fn router() -> Router<AppState> {
    Router::new().route("/auth/cli", get(start)).route(
        "/auth/cli/token",
        post(exchange).layer(DefaultBodyLimit::max(4096)),
    )
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    port: u32,
    state: String,
}

/// Only an unprivileged port: the callback goes to a process of the user's.
fn valid_port(port: u32) -> bool {
    (1024..=65535).contains(&port)
}

/// The state comes back in a URL unchanged, so only URL-safe characters, and
/// long enough that another local process cannot guess it.
fn valid_state(state: &str) -> bool {
    (STATE_MIN..=STATE_MAX).contains(&state.len())
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn start(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<StartQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    if !valid_port(query.port) {
        return Err(ApiError::BadRequest(
            "port must be between 1024 and 65535".into(),
        ));
    }
    if !valid_state(&query.state) {
        return Err(ApiError::BadRequest(format!(
            "state must be {STATE_MIN} to {STATE_MAX} characters of A-Z, a-z, 0-9, - and _"
        )));
    }
    // A token could otherwise mint tokens that outlive it: only a person at
    // a browser hands one out.
    if principal.token.is_some() {
        return Err(ApiError::Forbidden(
            "sign in with a browser to log xenectl in".into(),
        ));
    }
    let code = create_code(&state.db, &principal.user_id).await?;
    Ok(Redirect::to(&format!(
        "http://127.0.0.1:{}/callback?code={code}&state={}",
        query.port, query.state
    ))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    code: String,
    /// Names the token `xenectl on HOSTNAME`, so the tokens page tells
    /// machines apart.
    #[serde(default)]
    hostname: Option<String>,
}

async fn exchange(
    State(state): State<AppState>,
    Remote(remote): Remote,
    body: Result<Json<Exchange>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let invalid = || ApiError::Unauthorized("the code is invalid, used or expired".into());
    let user_id = spend_code(&state.db, &body.code)
        .await?
        .ok_or_else(invalid)?;
    let user = store::user(&state.db, &user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(invalid)?;
    let name = match body.hostname.as_deref().map(clean_hostname) {
        Some(host) if !host.is_empty() => format!("xenectl on {host}"),
        _ => "xenectl".to_string(),
    };
    let (token, info) = state
        .access
        // A browser session made it, not another token: it has no parent.
        .mint_token(&state.db, &user.id, &name, user.role, TOKEN_TTL_MS, None)
        .await?;
    store::audit(
        &state.db,
        &user.id,
        "token.create",
        &info.id,
        &format!("{name} ({}) by xenectl login", user.role),
        &remote,
    )
    .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(NewToken { token, info }),
    )
        .into_response())
}

/// A host name as a label: printable, bounded.
fn clean_hostname(host: &str) -> String {
    host.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(HOSTNAME_MAX)
        .collect()
}

async fn create_code(db: &Db, user_id: &str) -> Result<String, StorageError> {
    let code = secret(CODE_PREFIX);
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM cli_codes WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO cli_codes (code_hash, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(hash(&code))
        .bind(user_id)
        .bind(now + CODE_TTL_MS)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(code)
}

/// The user a code was made for, once, while it is valid.
async fn spend_code(db: &Db, code: &str) -> Result<Option<String>, StorageError> {
    if code.len() > 100 || !code.starts_with(CODE_PREFIX) {
        return Ok(None);
    }
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let user: Option<String> = sqlx::query_scalar(
        "UPDATE cli_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at >= $1 RETURNING user_id",
    )
    .bind(now)
    .bind(hash(code))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_states() {
        assert!(valid_port(1024) && valid_port(65535));
        assert!(!valid_port(80) && !valid_port(65536));
        assert!(valid_state("abcdefghij-_0123456789"));
        assert!(!valid_state("short"));
        assert!(!valid_state("abcdefghijklmnop&x=1"));
        assert!(!valid_state(&"a".repeat(STATE_MAX + 1)));
    }

    #[test]
    fn host_names_become_labels() {
        assert_eq!(clean_hostname("build-01.example"), "build-01.example");
        assert_eq!(clean_hostname("a b<script>"), "abscript");
        assert_eq!(clean_hostname(&"x".repeat(100)).len(), HOSTNAME_MAX);
    }
}
