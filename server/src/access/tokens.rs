//! API tokens: JWTs (HS256) signed with a key kept in the database, so every
//! replica verifies them; each carries a `jti` whose row decides, at every
//! use, whether it still works.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use xene_core::access::Role;

/// Who issues and who accepts our tokens: a token minted for anything else
/// (another audience or issuer) is refused.
const ISSUER: &str = "xene";
const AUDIENCE: &str = "xene-api";

/// The longest a token may live: the local admin token's ten years.
pub const MAX_TTL_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    jti: String,
    role: Role,
    iat: i64,
    exp: i64,
}

/// What a verified token says; its row must still be checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub jti: String,
    pub user_id: String,
    pub role: Role,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Self {
        // Only HS256: a token whose header names `none` or any other
        // algorithm fails before its signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a token for a stored token row.
    pub fn sign(&self, jti: &str, user_id: &str, role: Role, iat_ms: i64, exp_ms: i64) -> String {
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: user_id.into(),
            jti: jti.into(),
            role,
            iat: iat_ms / 1000,
            exp: exp_ms / 1000,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Checks signature, algorithm, issuer, audience and expiry. The error
    /// is for the server's log only; callers answer a bare 401.
    pub fn verify(&self, token: &str) -> Result<Verified, String> {
        if token.len() > 4096 {
            return Err("token too long".into());
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| e.to_string())?;
        Ok(Verified {
            jti: data.claims.jti,
            user_id: data.claims.sub,
            role: data.claims.role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> i64 {
        crate::storage::now_ms()
    }

    #[test]
    fn round_trip_and_refusals() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let now = now_ms();
        let token = keys.sign("j1", "u1", Role::Editor, now, now + 60_000);
        let ok = keys.verify(&token).unwrap();
        assert_eq!(
            (ok.jti.as_str(), ok.user_id.as_str(), ok.role),
            ("j1", "u1", Role::Editor)
        );

        let expired = keys.sign("j1", "u1", Role::Editor, now - 120_000, now - 60_000);
        assert!(keys.verify(&expired).is_err());

        let other = TokenKeys::new(b"another key entirely, 32 bytes!!");
        assert!(
            keys.verify(&other.sign("j1", "u1", Role::Admin, now, now + 60_000))
                .is_err()
        );

        // Flip a character of the payload: the signature no longer matches.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = parts[1].replacen('e', "f", 1);
        assert!(keys.verify(&parts.join(".")).is_err());
    }
}
