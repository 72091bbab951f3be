//! `xenectl login`, as `gh auth login` does it, with the consent and PKCE
//! of RFC 8252: the CLI listens on a loopback port and opens the browser at
//! `/auth/cli?port=P&state=S&code_challenge=C&code_challenge_method=S256`.
//! A signed-in browser is shown what is asked (a token with the user's
//! role) and posts Allow or Deny to the same path: a same-origin POST, so
//! the cross-site check of every state-changing request applies and a
//! foreign page that navigates here gets the question, never a code. Allow
//! sends the browser on to `http://127.0.0.1:P/callback` with a one-time
//! code bound to the challenge; the CLI spends it at `POST /auth/cli/token`
//! with the verifier. A code is spent by its first use, right or wrong,
//! within two minutes, and only its hash is stored.

use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use super::guard::Remote;
use crate::access::Principal;
use crate::storage::access as store;
use crate::storage::auth::{hash, secret};
use crate::storage::{Db, StorageError, now_ms};
use xene_api::access::{CliTokenRequest, NewToken};

/// How long a code can wait to be spent.
const CODE_TTL_MS: i64 = 2 * 60 * 1000;
/// How long the token the CLI gets works.
const TOKEN_TTL_MS: i64 = 90 * 24 * 3600 * 1000;
const STATE_MIN: usize = 16;
const STATE_MAX: usize = 128;
const HOSTNAME_MAX: usize = 64;
const CODE_PREFIX: &str = "xcc_";
/// An S256 challenge: the unpadded base64url of 32 bytes.
const CHALLENGE_LEN: usize = 43;
/// RFC 7636: a verifier is 43 to 128 unreserved characters.
const VERIFIER_MIN: usize = 43;
const VERIFIER_MAX: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/auth/cli",
            get(ask).post(answer).layer(DefaultBodyLimit::max(4096)),
        )
        .route(
            "/auth/cli/token",
            post(exchange).layer(DefaultBodyLimit::max(4096)),
        )
}

#[derive(Debug, Deserialize)]
struct Request {
    port: u32,
    state: String,
    /// Absent from xenectl before PKCE: refused with a word on what to do.
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    port: u32,
    state: String,
    code_challenge: String,
    /// `allow` or `deny`: the button pressed.
    decision: String,
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

fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == CHALLENGE_LEN
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_verifier(verifier: &str) -> bool {
    (VERIFIER_MIN..=VERIFIER_MAX).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// RFC 7636's S256: the unpadded base64url of the verifier's SHA-256.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The checks both steps make; the challenge when all pass.
fn check(
    principal: &Principal,
    port: u32,
    state: &str,
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<String, ApiError> {
    if !valid_port(port) {
        return Err(ApiError::BadRequest(
            "port must be between 1024 and 65535".into(),
        ));
    }
    if !valid_state(state) {
        return Err(ApiError::BadRequest(format!(
            "state must be {STATE_MIN} to {STATE_MAX} characters of A-Z, a-z, 0-9, - and _"
        )));
    }
    let challenge = challenge.ok_or_else(|| {
        ApiError::BadRequest(
            "code_challenge is missing: this server needs PKCE (RFC 7636); update xenectl".into(),
        )
    })?;
    if method.is_some_and(|m| m != "S256") {
        return Err(ApiError::BadRequest(
            "code_challenge_method must be S256".into(),
        ));
    }
    if !valid_challenge(challenge) {
        return Err(ApiError::BadRequest(format!(
            "code_challenge must be the S256 challenge: {CHALLENGE_LEN} characters of base64url"
        )));
    }
    // A token could otherwise mint tokens that outlive it: only a person at
    // a browser hands one out.
    if principal.token.is_some() {
        return Err(ApiError::Forbidden(
            "sign in with a browser to log xenectl in".into(),
        ));
    }
    Ok(challenge.to_string())
}

/// The question: a page with Allow and Deny, whatever site sent the
/// browser here.
async fn ask(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<Request>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let challenge = check(
        &principal,
        query.port,
        &query.state,
        query.code_challenge.as_deref(),
        query.code_challenge_method.as_deref(),
    )?;
    let user = store::user(&state.db, &principal.user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("sign in again".into()))?;
    let who = [&user.email, &user.name, &user.id]
        .into_iter()
        .find(|v| !v.is_empty())
        .cloned()
        .unwrap_or_default();
    let page = consent_page(
        &who,
        &principal.role.to_string(),
        query.port,
        &query.state,
        &challenge,
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Nothing runs, nothing frames it (no clicking Allow through a
            // transparent frame); the form goes only to this server.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        page,
    )
        .into_response())
}

fn consent_page(who: &str, role: &str, port: u32, state: &str, challenge: &str) -> String {
    let who = escape(who);
    let role = escape(role);
    // The state and challenge passed `check`: URL-safe characters only.
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Allow xenectl?</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:4em auto;padding:0 1em;line-height:1.5}}button{{font-size:1em;padding:.4em 1.2em;margin-right:1em}}</style>
</head><body>
<h1>Allow xenectl?</h1>
<p id="ask">xenectl on this machine asks for an API token with role <strong>{role}</strong> for <strong>{who}</strong>, valid 90 days.</p>
<p>Allow only if you just ran <code>xenectl login</code>. The token goes to the program listening on port {port} of this machine.</p>
<form method="post" action="/auth/cli">
<input type="hidden" name="port" value="{port}">
<input type="hidden" name="state" value="{state}">
<input type="hidden" name="code_challenge" value="{challenge}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>
"#
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The person's answer, posted from the page above (the guard refuses it
/// from any other site): Allow sends a code bound to the challenge to the
/// CLI, Deny tells the CLI so.
async fn answer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    form: Result<Form<Answer>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(form) = form.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let challenge = check(
        &principal,
        form.port,
        &form.state,
        Some(&form.code_challenge),
        None,
    )?;
    let callback = format!("http://127.0.0.1:{}/callback", form.port);
    match form.decision.as_str() {
        "allow" => {
            let code = create_code(&state.db, &principal.user_id, &challenge).await?;
            Ok(
                Redirect::to(&format!("{callback}?code={code}&state={}", form.state))
                    .into_response(),
            )
        }
        "deny" => Ok(Redirect::to(&format!(
            "{callback}?error=access_denied&state={}",
            form.state
        ))
        .into_response()),
        _ => Err(ApiError::BadRequest(
            "decision must be allow or deny".into(),
        )),
    }
}

async fn exchange(
    State(state): State<AppState>,
    Remote(remote): Remote,
    body: Result<Json<CliTokenRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let invalid = || {
        ApiError::Unauthorized(
            "the code is invalid, used or expired, or the code_verifier is not its".into(),
        )
    };
    let (user_id, challenge) = spend_code(&state.db, &body.code)
        .await?
        .ok_or_else(invalid)?;
    // The code is spent by now: a wrong verifier burns it.
    let proven = body
        .code_verifier
        .as_deref()
        .is_some_and(|v| valid_verifier(v) && !challenge.is_empty() && s256(v) == challenge);
    if !proven {
        tracing::warn!(%remote, "refused a xenectl login code without its PKCE verifier; the code is spent");
        return Err(invalid());
    }
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

async fn create_code(db: &Db, user_id: &str, challenge: &str) -> Result<String, StorageError> {
    let code = secret(CODE_PREFIX);
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM cli_codes WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO cli_codes (code_hash, user_id, expires_at, challenge) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash(&code))
    .bind(user_id)
    .bind(now + CODE_TTL_MS)
    .bind(challenge)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(code)
}

/// The user a code was made for and its PKCE challenge, once, while it is
/// valid: the first attempt spends it, whatever it proves.
async fn spend_code(db: &Db, code: &str) -> Result<Option<(String, String)>, StorageError> {
    if code.len() > 100 || !code.starts_with(CODE_PREFIX) {
        return Ok(None);
    }
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let row: Option<(String, String)> = sqlx::query_as(
        "UPDATE cli_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at >= $1 RETURNING user_id, challenge",
    )
    .bind(now)
    .bind(hash(code))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
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
    fn pkce_s256() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_verifier(verifier));
        assert!(valid_challenge(&s256(verifier)));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&format!("{verifier}/")));
        assert!(!valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="
        ));
    }

    #[test]
    fn the_question_escapes_names() {
        let page = consent_page("<b>&\"", "admin", 5000, "s", "c");
        assert!(page.contains("&lt;b&gt;&amp;&quot;"), "{page}");
        assert!(!page.contains("<b>&"));
    }

    #[test]
    fn host_names_become_labels() {
        assert_eq!(clean_hostname("build-01.example"), "build-01.example");
        assert_eq!(clean_hostname("a b<script>"), "abscript");
        assert_eq!(clean_hostname(&"x".repeat(100)).len(), HOSTNAME_MAX);
    }
}
