//! Signing in: the OpenID Connect authorization code flow (PKCE, state,
//! nonce; the ID token's signature, issuer, audience, expiry and nonce
//! checked by `openidconnect`), one-time sign-in links, and signing out.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use tower_sessions::Session;
use xene_core::access::Role;

use super::admit::{Claims, Refusal};
use super::guard::{SESSION_USER, SessionUser, encode_component, remote};
use crate::http::AppState;
use crate::storage::access::{self as store, Identity};
use crate::storage::now_ms;

/// Discovery documents (and their keys) are fetched again after this, so a
/// provider's key rotation is picked up.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// A sign-in that takes longer than this at the provider starts over.
const FLOW_TTL_MS: i64 = 10 * 60 * 1000;
const PENDING: &str = "oidc_pending";

/// A configured OpenID provider.
pub struct Oidc {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    http: openidconnect::reqwest::Client,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .finish_non_exhaustive()
    }
}

impl Oidc {
    pub fn new(
        issuer: &str,
        client_id: &str,
        client_secret: Option<String>,
        public_url: &str,
    ) -> anyhow::Result<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider's answer send us anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            issuer: IssuerUrl::new(issuer.trim_end_matches('/').to_string())
                .map_err(|e| anyhow::anyhow!("bad --oidc-issuer {issuer:?}: {e}"))?,
            client_id: ClientId::new(client_id.to_string()),
            client_secret: client_secret.map(ClientSecret::new),
            redirect: RedirectUrl::new(format!(
                "{}/auth/callback",
                public_url.trim_end_matches('/')
            ))
            .map_err(|e| anyhow::anyhow!("bad --public-url {public_url:?}: {e}"))?,
            http,
            metadata: Mutex::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    async fn metadata(&self) -> anyhow::Result<CoreProviderMetadata> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, metadata)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                anyhow::anyhow!("OpenID discovery at {} failed: {e}", self.issuer.as_str())
            })?;
        *cached = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }
}

/// The flow's secrets, kept in the session between leaving for the
/// provider and coming back.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    started: i64,
}

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
    let metadata = match oidc.metadata().await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a sign-in");
            return refused(Refusal::Failed);
        }
    };
    let client = CoreClient::from_provider_metadata(
        metadata,
        oidc.client_id.clone(),
        oidc.client_secret.clone(),
    )
    .set_redirect_uri(oidc.redirect.clone());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        next: local_path(query.next.as_deref()),
        started: now_ms(),
    };
    if let Err(e) = session.insert(PENDING, pending).await {
        tracing::error!(error = %e, "cannot store a sign-in in the session");
        return refused(Refusal::Failed);
    }
    Redirect::to(url.as_str()).into_response()
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
    if now_ms() - pending.started > FLOW_TTL_MS
        || !bool::from(returned_state.as_bytes().ct_eq(pending.state.as_bytes()))
    {
        return Err(fail(Refusal::Failed));
    }
    let metadata = oidc.metadata().await.map_err(|e| {
        tracing::error!(error = %e, "cannot finish a sign-in");
        fail(Refusal::Failed)
    })?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        oidc.client_id.clone(),
        oidc.client_secret.clone(),
    )
    .set_redirect_uri(oidc.redirect.clone());
    let request = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| {
            tracing::error!(error = %e, "the provider has no token endpoint");
            fail(Refusal::Failed)
        })?;
    let response = request
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
        .request_async(&oidc.http)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "exchanging the authorization code failed");
            fail(Refusal::Failed)
        })?;
    let id_token = response.id_token().ok_or(fail(Refusal::Failed))?;
    let verifier = client.id_token_verifier();
    let verified = id_token
        .claims(&verifier, &Nonce::new(pending.nonce))
        .map_err(|e| {
            tracing::warn!(error = %e, "the ID token did not verify");
            fail(Refusal::Failed)
        })?;
    let claims = Claims {
        email: verified.email().map(|e| e.as_str().to_string()),
        email_verified: verified.email_verified(),
        // Read from the token just verified as a whole: `hd` is not one of
        // the standard claims the library types.
        hd: hosted_domain(&id_token.to_string()),
    };
    let seen_email = claims.email.clone().unwrap_or_default();
    let email = state
        .access
        .policy
        .admit(&claims)
        .map_err(|r| (r, seen_email.clone()))?;
    let identity = Identity {
        issuer: oidc.issuer().to_string(),
        subject: verified.subject().as_str().to_string(),
        email: email.clone(),
        name: verified
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().chars().take(200).collect())
            .unwrap_or_default(),
    };
    let role = newcomer_role(state, &email)
        .await
        .map_err(|_| fail(Refusal::Failed))?;
    let user = sign_in(state, session, &identity, role).await?;
    Ok((user, pending.next))
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

/// The `hd` claim of a compact JWT whose signature was already checked.
fn hosted_domain(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("hd")?.as_str().map(str::to_string)
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
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    match sign_in(&state, &session, &super::first_admin_identity(), role).await {
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
    Redirect::to(&format!("/signin?next={}", encode_component("/"))).into_response()
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

    #[test]
    fn reads_hd_from_the_payload() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"hd":"example.com"}"#);
        assert_eq!(
            hosted_domain(&format!("x.{payload}.y")).as_deref(),
            Some("example.com")
        );
        assert_eq!(hosted_domain("garbage"), None);
    }
}
