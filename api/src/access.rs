//! People and their access: who is calling (`Me`), users, invites, API
//! tokens and the audit log.

use serde::{Deserialize, Serialize};
use xene_core::access::Role;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub user: User,
    /// The role this request acts with: a token's may be lower than its user's.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "editor"))]
    pub role: Role,
    /// The API token's id when the request carried one.
    pub token: Option<String>,
}

impl Me {
    /// Whether this caller may change workflows (editors and admins).
    pub fn can_edit(&self) -> bool {
        self.role >= Role::Editor
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    /// The OpenID issuer that vouched for this user (`xene:local` for Xene's own).
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "viewer"))]
    pub role: Role,
    pub disabled: bool,
    /// UTC milliseconds.
    pub created_at: i64,
    /// UTC milliseconds.
    pub last_sign_in: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// `viewer`, `editor` or `admin`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "editor"))]
    pub role: Option<Role>,
    /// A disabled user's sessions and tokens stop working at once.
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invite {
    pub id: i64,
    /// Exactly one of `email` and `domain` is set.
    pub email: Option<String>,
    pub domain: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "editor"))]
    pub role: Role,
    pub created_by: String,
    /// UTC milliseconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InviteList {
    pub invites: Vec<Invite>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// One address, or...
    pub email: Option<String>,
    /// ...every address of a domain (its users still need the domain allowed to sign in).
    pub domain: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "editor"))]
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    /// The token's id (its `jti` claim).
    pub id: String,
    pub user_id: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "editor"))]
    pub role: Role,
    /// UTC milliseconds.
    pub created_at: i64,
    /// UTC milliseconds; absent for a token that never expires.
    pub expires_at: Option<i64>,
    /// UTC milliseconds, to the minute.
    pub last_used_at: Option<i64>,
    /// UTC milliseconds.
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for, e.g. `ci` (1 to 100 characters).
    pub name: String,
    /// At most the creator's role; default the creator's role.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "viewer"))]
    pub role: Option<Role>,
    /// How long it works, like `30d` (default 90d, at most 366d).
    pub expires_in: Option<String>,
}

/// `POST /auth/cli/token`: what `xenectl login` trades for its token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliTokenRequest {
    /// The one-time code the consent page handed to xenectl.
    pub code: String,
    /// The PKCE verifier whose S256 is the code's challenge. Optional here
    /// so that a request without it still spends (burns) the code.
    #[serde(default)]
    pub code_verifier: Option<String>,
    /// Names the token `xenectl on HOSTNAME`, so the tokens page tells
    /// machines apart.
    #[serde(default)]
    pub hostname: Option<String>,
}

impl std::fmt::Debug for CliTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliTokenRequest")
            .field("code", &crate::Redacted)
            .field("code_verifier", &crate::Redacted)
            .field("hostname", &self.hostname)
            .finish()
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    /// Shown once: send it as `Authorization: Bearer TOKEN`.
    pub token: String,
    pub info: TokenInfo,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &crate::Redacted)
            .field("info", &self.info)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    /// UTC milliseconds.
    pub at: i64,
    /// Who: a user id, `agent:ID`, or `anonymous`.
    pub actor: String,
    /// What, as `object.verb`: `sign_in.ok`, `sign_in.refused`, `token.create`...
    pub action: String,
    pub target: String,
    pub detail: String,
    /// The client's address.
    pub remote: String,
    /// The person `actor` names, when it is a user Xene knows.
    #[serde(default)]
    pub who: Option<Person>,
    /// The person `target` names, when it is a user Xene knows.
    #[serde(default)]
    pub target_person: Option<Person>,
}

/// A person as pages show them: by name and email, never by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Person {
    pub name: String,
    pub email: String,
}

impl Person {
    /// The name, or the email for someone without one.
    pub fn shown(&self) -> &str {
        if self.name.trim().is_empty() {
            &self.email
        } else {
            &self.name
        }
    }
}

/// `GET /api/v1/sign-in-methods`: how people can sign in to this server,
/// for the sign-in page (which shows only these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignInMethods {
    /// The identity provider's name (`Google`, or its host) when one is
    /// configured; absent otherwise, and then only one-time links work.
    pub provider: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next page; absent on the last.
    pub next_before: Option<i64>,
}
