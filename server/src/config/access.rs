//! Flags for sign-in and access: the OpenID provider, who may get in, the
//! host names the server answers to, and browser session lifetimes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use xene_core::access::Role;

/// Google's issuer: the default OpenID provider.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// The OpenID Connect issuer people sign in with (its discovery document
    /// is at ISSUER/.well-known/openid-configuration).
    #[arg(long, env = "XENE_OIDC_ISSUER", default_value = GOOGLE_ISSUER)]
    pub oidc_issuer: String,

    /// The OAuth client id registered with the issuer. Without it, sign-in
    /// with OpenID is off and only the printed admin link signs anyone in.
    #[arg(long, env = "XENE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// The OAuth client secret. Prefer --oidc-client-secret-file.
    #[arg(long, env = "XENE_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,

    /// A file holding the OAuth client secret (its first line).
    #[arg(
        long,
        env = "XENE_OIDC_CLIENT_SECRET_FILE",
        conflicts_with = "oidc_client_secret"
    )]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// Require Google's signed `hd` (hosted domain) claim to name an allowed
    /// domain. Default: on when the issuer is Google.
    #[arg(long, env = "XENE_OIDC_REQUIRE_HD", action = clap::ArgAction::Set)]
    pub oidc_require_hd: Option<bool>,

    /// Email domains whose verified addresses may sign in, comma-separated,
    /// matched exactly (`example.com` does not admit `sub.example.com`).
    #[arg(long, env = "XENE_ALLOWED_DOMAINS", value_delimiter = ',')]
    pub allowed_domains: Vec<String>,

    /// Single verified email addresses that may sign in whatever their domain.
    #[arg(long, env = "XENE_ALLOWED_EMAILS", value_delimiter = ',')]
    pub allowed_emails: Vec<String>,

    /// Email addresses that become admins at their first sign-in.
    #[arg(long, env = "XENE_ADMIN_EMAILS", value_delimiter = ',')]
    pub admin_emails: Vec<String>,

    /// The role of a newcomer with no invite (viewer, editor or admin).
    #[arg(long, env = "XENE_DEFAULT_ROLE", default_value = "viewer")]
    pub default_role: Role,

    /// Host names (without port) this server answers to, comma-separated,
    /// besides the --public-url's and, on loopback, localhost's. Requests
    /// for any other host are refused, which defeats DNS rebinding.
    #[arg(long, env = "XENE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// A browser session ends after this long without a request.
    #[arg(long, env = "XENE_SESSION_IDLE", default_value = "12h", value_parser = parse_session)]
    pub session_idle: Duration,

    /// A browser session ends this long after sign-in, however active.
    #[arg(long, env = "XENE_SESSION_MAX", default_value = "7d", value_parser = parse_session)]
    pub session_max: Duration,
}

impl Default for AccessArgs {
    fn default() -> Self {
        Self {
            oidc_issuer: GOOGLE_ISSUER.into(),
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_client_secret_file: None,
            oidc_require_hd: None,
            allowed_domains: Vec::new(),
            allowed_emails: Vec::new(),
            admin_emails: Vec::new(),
            default_role: Role::Viewer,
            allowed_hosts: Vec::new(),
            session_idle: Duration::from_secs(12 * 3600),
            session_max: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl AccessArgs {
    /// Whether `hd` must be checked: asked for, or Google by default.
    pub fn require_hd(&self) -> bool {
        self.oidc_require_hd
            .unwrap_or_else(|| self.oidc_issuer.trim_end_matches('/') == GOOGLE_ISSUER)
    }

    /// The client secret from the flag, the environment or the file.
    pub fn client_secret(&self) -> Result<Option<String>, ClientSecretError> {
        if let Some(secret) = &self.oidc_client_secret {
            return Ok(Some(secret.clone()));
        }
        match &self.oidc_client_secret_file {
            None => Ok(None),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ClientSecretError::Read {
                        path: path.clone(),
                        source,
                    })?;
                let secret = text.lines().next().unwrap_or_default().trim().to_string();
                if secret.is_empty() {
                    return Err(ClientSecretError::Empty(path.clone()));
                }
                Ok(Some(secret))
            }
        }
    }
}

/// Why `--oidc-client-secret-file` gave no secret.
#[derive(Debug, thiserror::Error)]
pub enum ClientSecretError {
    #[error("cannot read the OIDC client secret {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is empty", .0.display())]
    Empty(PathBuf),
}

fn parse_session(text: &str) -> Result<Duration, String> {
    let d = xene_core::duration::parse(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(60) {
        return Err("a session shorter than 1m would end while in use".into());
    }
    Ok(d)
}
