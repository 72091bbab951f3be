//! Access policy: who may reach what. The rule table, who is admitted at
//! sign-in, API tokens, the OpenID provider client, the host check and the
//! first admin's bootstrap. The HTTP side (the guard middlewares, the `/auth`
//! routes, `xenectl login`) lives under `http/` and asks this module.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use xene_core::access::Role;

use crate::config::Args;
use crate::storage::access::{
    self as store, FIRST_ADMIN_SUBJECT, Identity, LOCAL_CLI_SUBJECT, LOCAL_ISSUER,
};
use crate::storage::{Db, StorageError, now_ms};

pub mod admit;
pub mod oidc;
pub mod principal;
pub mod rules;
pub mod tokens;

pub use principal::{Principal, SESSION_USER, SessionUser};

/// Why access could not be set up, or a sign-in with the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    ClientSecret(#[from] crate::config::access::ClientSecretError),
    #[error("bad --oidc-issuer {issuer:?}: {reason}")]
    Issuer { issuer: String, reason: String },
    #[error("bad --public-url {url:?}: {reason}")]
    PublicUrl { url: String, reason: String },
    #[error("cannot make the OpenID provider's HTTP client")]
    HttpClient(#[source] openidconnect::reqwest::Error),
    #[error("OpenID discovery at {issuer} failed: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("the sign-in's state does not match, or it took too long")]
    Flow,
    #[error("the provider has no token endpoint: {0}")]
    NoTokenEndpoint(String),
    #[error("exchanging the authorization code failed: {0}")]
    CodeExchange(String),
    #[error("the provider answered without an ID token")]
    NoIdToken,
    #[error("the ID token did not verify: {0}")]
    IdToken(String),
    #[error("writing the local admin token {path}")]
    TokenFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Secrets(#[from] crate::storage::secrets::SecretsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The file in the data directory holding the local admin token for `xenectl`.
pub const LOCAL_TOKEN_FILE: &str = "admin-token";

/// How long the printed first-admin link works.
const SIGN_IN_LINK_TTL_MS: i64 = 24 * 3600 * 1000;

/// Everything the guard and the sign-in routes need; built once at start.
#[derive(Debug)]
pub struct AccessState {
    pub keys: tokens::TokenKeys,
    pub oidc: Option<oidc::Oidc>,
    pub policy: admit::Policy,
    pub admin_emails: Vec<String>,
    pub default_role: Role,
    pub hosts: HostCheck,
    pub session_idle: Duration,
    pub session_max: Duration,
    /// Cookies are marked `Secure` when the server speaks HTTPS.
    pub https: bool,
    /// The public URL's origin (`scheme://host[:port]`, lowercase, no
    /// default port): what a browser on our own pages sends as `Origin`.
    pub origin: String,
}

impl AccessState {
    pub async fn new(
        db: &Db,
        vault: &crate::vault::Vault,
        args: &Args,
        addr: SocketAddr,
        public_url: &str,
        https: bool,
    ) -> Result<Self, AccessError> {
        let access = &args.access;
        let lower = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let oidc = match &access.oidc_client_id {
            None => None,
            Some(client_id) => Some(oidc::Oidc::new(
                &access.oidc_issuer,
                client_id,
                access.client_secret()?,
                public_url,
            )?),
        };
        let policy = admit::Policy {
            allowed_domains: lower(&access.allowed_domains),
            allowed_emails: lower(&access.allowed_emails),
            require_hd: access.require_hd(),
        };
        if oidc.is_some() && policy.allowed_domains.is_empty() && policy.allowed_emails.is_empty() {
            tracing::warn!(
                "OpenID sign-in is on but no --allowed-domains or --allowed-emails are set: nobody can sign in with it"
            );
        }
        Ok(Self {
            keys: tokens::TokenKeys::new(&store::signing_key(db, vault).await?),
            oidc,
            policy,
            admin_emails: lower(&access.admin_emails),
            default_role: access.default_role,
            hosts: HostCheck::new(
                addr,
                public_url,
                &access.allowed_hosts,
                args.public_url.is_some(),
            ),
            session_idle: access.session_idle,
            session_max: access.session_max,
            https,
            origin: normalize_origin(public_url).unwrap_or_default(),
        })
    }

    /// The session cookie's name: `__Host-` over HTTPS, so no other host
    /// (a sibling subdomain) can set or shadow it. Browsers refuse that
    /// prefix without `Secure`, so plain HTTP keeps the bare name.
    pub fn session_cookie(&self) -> &'static str {
        if self.https {
            "__Host-xene_session"
        } else {
            "xene_session"
        }
    }

    /// Mints an API token for a user; the token is shown once and never stored.
    /// A token made with another token (`parent`) ends no later than it and
    /// is revoked with it, so a leaked short-lived token cannot outlive
    /// itself.
    pub async fn mint_token(
        &self,
        db: &Db,
        user_id: &str,
        name: &str,
        role: Role,
        ttl_ms: i64,
        parent: Option<&str>,
    ) -> Result<(String, store::TokenInfo), StorageError> {
        let ttl_ms = ttl_ms.clamp(60_000, tokens::MAX_TTL_MS);
        let mut expires_at = now_ms() + ttl_ms;
        if let Some(parent) = parent
            && let Some(info) = store::token(db, parent).await?
            && let Some(parent_expiry) = info.expires_at
        {
            expires_at = expires_at.min(parent_expiry);
        }
        let info = store::create_token(db, user_id, name, role, Some(expires_at), parent).await?;
        let token = self.keys.sign(
            &info.id,
            user_id,
            role,
            info.created_at,
            info.expires_at.unwrap_or_default(),
        );
        Ok((token, info))
    }
}

/// The host names the server answers to. A browser on the user's machine
/// can be made to send requests for `evil.example` to a loopback server (DNS
/// rebinding); checking `Host` turns those away.
#[derive(Debug, Clone)]
pub struct HostCheck {
    any: bool,
    names: Vec<String>,
}

impl HostCheck {
    pub fn new(addr: SocketAddr, public_url: &str, extra: &[String], explicit_url: bool) -> Self {
        let mut names: Vec<String> = extra
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(host) = url_host(public_url) {
            names.push(host);
        }
        let ip = addr.ip();
        names.push(ip_name(ip));
        if ip.is_loopback() {
            names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
        }
        // Bound to every interface with no name given: the names it is
        // reached by are unknown, so any is accepted (and said so).
        let any = ip.is_unspecified() && extra.is_empty() && !explicit_url;
        if any {
            tracing::warn!(
                "listening on {addr} with no --public-url or --allowed-hosts: requests for any host name are accepted"
            );
        }
        Self { any, names }
    }

    /// Whether a `Host` header value (with or without port) is ours.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let name = host_name(host);
        self.names.contains(&name)
    }
}

fn ip_name(ip: IpAddr) -> String {
    ip.to_string()
}

/// The host of a URL, lowercased, without port or brackets.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    Some(host_name(authority)).filter(|h| !h.is_empty())
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `::1`.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `HTTPS://Example.com:443/x` -> `https://example.com`: an origin as
/// browsers compare them. None for anything but an http(s) URL.
pub fn normalize_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

/// Makes what a fresh installation needs to be usable and closed: the local
/// admin token for `xenectl` (written to the data directory, mode 0600), and
/// while no person is admin, a one-time sign-in link for the first one.
/// Returns that link.
pub async fn bootstrap(
    db: &Db,
    access: &AccessState,
    data_dir: &Path,
    public_url: &str,
) -> Result<Option<String>, AccessError> {
    local_admin_token(db, access, data_dir).await?;
    if store::has_person_admin(db).await? {
        return Ok(None);
    }
    let token = store::create_sign_in_link(db, Role::Admin, SIGN_IN_LINK_TTL_MS).await?;
    Ok(Some(format!(
        "{}/auth/link?token={token}",
        public_url.trim_end_matches('/')
    )))
}

async fn local_admin_token(
    db: &Db,
    access: &AccessState,
    data_dir: &Path,
) -> Result<(), AccessError> {
    let path = data_dir.join(LOCAL_TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(verified) = access.keys.verify(text.trim())
        && let Some(info) = store::token(db, &verified.jti).await?
        && info.revoked_at.is_none()
    {
        return Ok(());
    }
    let user = store::sign_in(
        db,
        &Identity {
            issuer: LOCAL_ISSUER.into(),
            subject: LOCAL_CLI_SUBJECT.into(),
            email: String::new(),
            name: "local xenectl".into(),
        },
        Role::Admin,
    )
    .await?;
    let (token, _) = access
        .mint_token(
            db,
            &user.id,
            "local admin token",
            Role::Admin,
            tokens::MAX_TTL_MS,
            None,
        )
        .await?;
    let written = std::fs::create_dir_all(data_dir).and_then(|_| write_private(&path, &token));
    written.map_err(|source| AccessError::TokenFile {
        path: path.clone(),
        source,
    })?;
    store::audit(
        db,
        "xene",
        "token.create",
        &user.id,
        "local admin token",
        "",
    )
    .await?;
    Ok(())
}

/// Writes a file only its owner can read, replacing any earlier one.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The identity a first-admin link signs in.
pub fn first_admin_identity() -> Identity {
    Identity {
        issuer: LOCAL_ISSUER.into(),
        subject: FIRST_ADMIN_SUBJECT.into(),
        email: String::new(),
        name: "first admin".into(),
    }
}

/// Shared for the router.
pub type SharedAccess = Arc<AccessState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("Example.com:8080"), "example.com");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("localhost."), "localhost");
        assert_eq!(
            url_host("https://u@xene.example.com:443/x").as_deref(),
            Some("xene.example.com")
        );
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            normalize_origin("HTTPS://Xene.Example:443/x").as_deref(),
            Some("https://xene.example")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(normalize_origin("ftp://x"), None);
        assert_eq!(normalize_origin("http://u@evil"), None);
    }

    #[test]
    fn loopback_server_refuses_other_hosts() {
        let check = HostCheck::new(
            "127.0.0.1:8080".parse().unwrap(),
            "http://127.0.0.1:8080",
            &[],
            false,
        );
        assert!(check.allows("127.0.0.1:8080"));
        assert!(check.allows("localhost:8080"));
        assert!(!check.allows("evil.example:8080"));
        assert!(!check.allows("127.0.0.1.evil.example"));
    }
}
