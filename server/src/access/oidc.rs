//! The OpenID provider client: discovery (cached, refreshed for key
//! rotation), the authorization URL with PKCE, state and nonce, and the code
//! exchange with the ID token's signature, issuer, audience, expiry and
//! nonce checked by `openidconnect`. The `/auth` routes that drive it are in
//! `http/signin.rs`.

use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use super::AccessError;
use super::admit::Claims;
use crate::storage::now_ms;

/// Discovery documents (and their keys) are fetched again after this, so a
/// provider's key rotation is picked up.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// A sign-in that takes longer than this at the provider starts over.
const FLOW_TTL_MS: i64 = 10 * 60 * 1000;

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
    ) -> Result<Self, AccessError> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider's answer send us anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(AccessError::HttpClient)?;
        Ok(Self {
            issuer: IssuerUrl::new(issuer.trim_end_matches('/').to_string()).map_err(|e| {
                AccessError::Issuer {
                    issuer: issuer.to_string(),
                    reason: e.to_string(),
                }
            })?,
            client_id: ClientId::new(client_id.to_string()),
            client_secret: client_secret.map(ClientSecret::new),
            redirect: RedirectUrl::new(format!(
                "{}/auth/callback",
                public_url.trim_end_matches('/')
            ))
            .map_err(|e| AccessError::PublicUrl {
                url: public_url.to_string(),
                reason: e.to_string(),
            })?,
            http,
            metadata: Mutex::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, AccessError> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, metadata)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| AccessError::Discovery {
                issuer: self.issuer.as_str().to_string(),
                reason: e.to_string(),
            })?;
        *cached = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    async fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        AccessError,
    > {
        let metadata = self.metadata().await?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            self.client_id.clone(),
            self.client_secret.clone(),
        )
        .set_redirect_uri(self.redirect.clone()))
    }

    /// Starts a sign-in: where to send the browser, and the flow's secrets
    /// to keep in its session until it comes back. `next` is where it goes
    /// after (a path on this server, checked by the caller).
    pub async fn start(&self, next: String) -> Result<(String, Pending), AccessError> {
        let client = self.client().await?;
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
            next,
            started: now_ms(),
        };
        Ok((url.to_string(), pending))
    }

    /// Finishes a sign-in the provider sent back with `code` and `state`:
    /// the state must be the pending flow's and recent, then the code is
    /// exchanged and the ID token verified.
    pub async fn finish(
        &self,
        pending: Pending,
        code: String,
        returned_state: &str,
    ) -> Result<Verified, AccessError> {
        if now_ms() - pending.started > FLOW_TTL_MS
            || !bool::from(returned_state.as_bytes().ct_eq(pending.state.as_bytes()))
        {
            return Err(AccessError::Flow);
        }
        let client = self.client().await?;
        let request = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| AccessError::NoTokenEndpoint(e.to_string()))?;
        let response = request
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| AccessError::CodeExchange(e.to_string()))?;
        let id_token = response.id_token().ok_or(AccessError::NoIdToken)?;
        let verifier = client.id_token_verifier();
        let verified = id_token
            .claims(&verifier, &Nonce::new(pending.nonce))
            .map_err(|e| AccessError::IdToken(e.to_string()))?;
        Ok(Verified {
            claims: Claims {
                email: verified.email().map(|e| e.as_str().to_string()),
                email_verified: verified.email_verified(),
                // Read from the token just verified as a whole: `hd` is not
                // one of the standard claims the library types.
                hd: hosted_domain(&id_token.to_string()),
            },
            subject: verified.subject().as_str().to_string(),
            name: verified
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().chars().take(200).collect())
                .unwrap_or_default(),
        })
    }
}

/// The flow's secrets, kept in the session between leaving for the
/// provider and coming back.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    /// Where the browser goes once signed in.
    pub next: String,
    started: i64,
}

/// What the provider vouched for about who signed in.
#[derive(Debug)]
pub struct Verified {
    pub claims: Claims,
    pub subject: String,
    /// The display name, cut at 200 characters.
    pub name: String,
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

#[cfg(test)]
mod tests {
    use super::*;

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
